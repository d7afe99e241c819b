#include "policy/defaults.h"

#include <algorithm>
#include <cctype>

namespace airlock::policy {

const std::vector<std::string>& default_secret_paths() {
  static const std::vector<std::string> v = {
      ".ssh", ".aws", ".gnupg", ".config/gcloud", ".azure", ".kube", ".docker/config.json",
      ".netrc", ".git-credentials", ".config/gh", ".password-store", ".config/hub",
      ".npmrc", ".pypirc", ".cargo/credentials", ".cargo/credentials.toml",
      ".config/op", ".vault-token", ".terraform.d/credentials.tfrc.json",
      ".config/rclone", ".local/share/keyrings", ".pki", ".mozilla", ".config/google-chrome",
      ".config/chromium", ".config/BraveSoftware", ".config/microsoft-edge", ".config/vivaldi",
      ".config/opera", ".thunderbird", ".local/share/fish/fish_history", ".bash_history",
      ".zsh_history", ".python_history", ".psql_history", ".mysql_history",
      ".config/airlock", ".srt-settings.json", ".cache/airlock",
      // Agent and engine sockets that live in the home folder (unix sockets
      // stay connectable on a read-only mount, so they must be hidden).
      ".1password", ".config/1Password", ".docker/run", ".docker/desktop", ".colima", ".lima", ".rd",
      // Tools' own credential files.
      ".config/git/credentials", ".pgpass", ".my.cnf", ".claude/.credentials.json", ".codex/auth.json",
      ".config/github-copilot", ".m2/settings.xml", ".gradle/gradle.properties", ".yarnrc.yml",
      ".gem/credentials", ".config/composer/auth.json", ".huggingface/token", ".cache/huggingface/token",
      ".kaggle/kaggle.json", ".s3cfg", ".boto", ".databrickscfg", ".oci", ".config/doctl", ".wrangler",
      ".config/gcloud-legacy", ".bitwarden-ssh-agent.sock", ".netlify", ".vercel", ".fly",
  };
  return v;
}

const std::vector<std::string>& default_system_secrets() {
  static const std::vector<std::string> v = {
      "/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/sudoers", "/etc/sudoers.d",
      "/etc/ssh/ssh_host_*_key", "/etc/ssl/private", "/etc/security/opasswd", "/etc/krb5.keytab",
      "/var/lib/sss/secrets", "/etc/libvirt/secrets", "/etc/NetworkManager/system-connections",
      "/etc/wireguard", "/var/snap/lxd/common/lxd/unix.socket", "/var/lib/lxd/unix.socket",
  };
  return v;
}

const std::vector<SocketScan>& default_socket_scans() {
  static const std::vector<SocketScan> v = {{"~/", 2}, {"/var/tmp", 2}, {"/var/lib", 1}, {"/srv", 1}, {"/opt", 1}};
  return v;
}

const std::vector<ProtectedName>& default_protected_names() {
  // What runs later, outside the sandbox, if the command may write it.
  static const std::vector<ProtectedName> v = {
      {".git/hooks", false, true}, {".git/config", true, false}, {".git/config.worktree", true, false},
      {".git/commondir", false, false},
      {".bashrc", false, true}, {".bash_profile", false, true}, {".bash_login", false, true},
      {".bash_logout", false, true}, {".zshrc", false, true}, {".zprofile", false, true}, {".zshenv", false, true},
      {".zlogin", false, true}, {".profile", false, true}, {".gitconfig", false, true}, {".gitmodules", false, true},
      {".mcp.json", false, true}, {".vscode", false, true}, {".idea", false, true}, {".claude", false, true},
      {".cursor", false, true}, {".gemini", false, true}, {".envrc", false, true}, {kProjectConfigDir, false, true},
      // Hook managers' files: protected where they exist (they only run
      // when already installed, and then they exist).
      {".husky", false, false}, {".pre-commit-config.yaml", false, false}, {"lefthook.yml", false, false},
      {".lefthook.yml", false, false}, {"lefthook.yaml", false, false}, {".devcontainer", false, false},
      // Other agents' and editors' project settings (MCP servers, hooks,
      // commands they run on their own), where they exist.
      {".codex", false, false}, {".zed", false, false}, {".windsurf", false, false}, {".amazonq", false, false},
      {".roo", false, false}, {".kiro", false, false}, {".continue", false, false}, {".aider.conf.yml", false, false},
  };
  return v;
}

const std::vector<std::string>& walk_skip_dirs() {
  static const std::vector<std::string> v = {"node_modules", ".git", "target", "build", ".venv", "venv",
                                             "__pycache__", "dist", ".cache", ".pyenv", ".rustup", ".nvm",
                                             ".npm", ".m2", ".gradle", ".cargo", "site-packages", ".tox"};
  return v;
}

const std::vector<std::string>& env_secret_patterns() {
  static const std::vector<std::string> v = {
      "*_TOKEN", "*_TOKEN_*", "TOKEN_*", "*AUTHTOKEN*", "*_SECRET", "*_SECRET_*", "*SECRET_KEY*", "*_PASSWORD*",
      "*_PASSWD", "*_PASS", "*_PWD", "*PASSPHRASE*", "*_KEY", "*_KEY_*", "*_APIKEY", "*ACCESS_KEY*",
      "*PRIVATE_KEY*", "*_CREDENTIALS", "*_CREDENTIAL", "*_AUTH", "*_AUTH_*", "*_PAT", "*_SESSION",
      "*_SESSION_*", "*JWT*", "*WEBHOOK*", "*_COOKIE", "AWS_*", "GITHUB_TOKEN", "GH_TOKEN", "GITLAB_TOKEN",
      "ANTHROPIC_API_KEY", "OPENAI_API_KEY", "SSH_AUTH_SOCK", "SSH_AGENT_PID", "GPG_AGENT_INFO",
      "VAULT_TOKEN", "NPM_TOKEN", "DOCKER_AUTH_CONFIG", "KUBECONFIG", "GOOGLE_APPLICATION_CREDENTIALS",
      "AZURE_*", "DATABASE_URL", "*_DSN", "PGPASSWORD", "MYSQL_PWD", "TOKEN", "PASSWORD", "SECRET",
      "API_KEY", "APIKEY", "OP_SESSION_*", "BW_SESSION",
  };
  return v;
}

namespace {
// Glob with '*' only, case-insensitive (variable names are conventionally
// upper case, but an attacker-chosen spelling must not slip through).
bool match(const std::string& pat, const std::string& s, size_t pi = 0, size_t si = 0) {
  while (pi < pat.size()) {
    if (pat[pi] == '*') {
      for (size_t k = si; k <= s.size(); ++k)
        if (match(pat, s, pi + 1, k)) return true;
      return false;
    }
    if (si >= s.size() || std::toupper(static_cast<unsigned char>(pat[pi])) !=
                              std::toupper(static_cast<unsigned char>(s[si])))
      return false;
    ++pi;
    ++si;
  }
  return si == s.size();
}
}  // namespace

bool env_value_is_secret(const std::string& value) {
  // A URL with a password in it: scheme://user:password@host (or ://:pw@).
  auto scheme = value.find("://");
  if (scheme == std::string::npos || scheme == 0) return false;
  auto at = value.find('@', scheme + 3);
  if (at == std::string::npos) return false;
  std::string userinfo = value.substr(scheme + 3, at - scheme - 3);
  return userinfo.find(':') != std::string::npos && userinfo.find('/') == std::string::npos;
}

bool env_name_is_secret(const std::string& name) {
  const auto& pats = env_secret_patterns();
  return std::any_of(pats.begin(), pats.end(), [&](const std::string& p) { return match(p, name); });
}

}  // namespace airlock::policy
