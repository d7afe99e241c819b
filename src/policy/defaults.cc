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
  };
  return v;
}

const std::vector<ProtectedName>& default_protected_names() {
  static const std::vector<ProtectedName> v = {
      {".git/hooks", false}, {".git/config", true}, {".git/config.worktree", true}, {".bashrc", false}, {".bash_profile", false},
      {".bash_login", false}, {".bash_logout", false}, {".zshrc", false}, {".zprofile", false},
      {".zshenv", false}, {".zlogin", false}, {".profile", false}, {".gitconfig", false},
      {".gitmodules", false}, {".mcp.json", false}, {".vscode", false}, {".idea", false},
      {".claude", false}, {".envrc", false}, {kProjectConfigDir, false},
  };
  return v;
}

const std::vector<std::string>& walk_skip_dirs() {
  static const std::vector<std::string> v = {"node_modules", ".git", "target", "build", ".venv",
                                             "venv", "__pycache__", "dist", ".cache"};
  return v;
}

const std::vector<std::string>& env_secret_patterns() {
  static const std::vector<std::string> v = {
      "*_TOKEN", "*_TOKEN_*", "*_SECRET", "*_SECRET_*", "*SECRET_KEY*", "*_PASSWORD", "*_PASSWD",
      "*_PASS", "*_API_KEY", "*_APIKEY", "*_ACCESS_KEY*", "*_PRIVATE_KEY*", "*_CREDENTIALS",
      "*_AUTH", "AWS_*", "GITHUB_TOKEN", "GH_TOKEN", "GITLAB_TOKEN", "ANTHROPIC_API_KEY",
      "OPENAI_API_KEY", "SSH_AUTH_SOCK", "SSH_AGENT_PID", "GPG_AGENT_INFO", "VAULT_TOKEN",
      "NPM_TOKEN", "DOCKER_AUTH_CONFIG", "KUBECONFIG", "GOOGLE_APPLICATION_CREDENTIALS",
      "AZURE_*", "DATABASE_URL", "*_DSN", "PGPASSWORD", "MYSQL_PWD", "TOKEN", "PASSWORD",
      "SECRET", "API_KEY", "APIKEY",
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

bool env_name_is_secret(const std::string& name) {
  const auto& pats = env_secret_patterns();
  return std::any_of(pats.begin(), pats.end(), [&](const std::string& p) { return match(p, name); });
}

}  // namespace airlock::policy
