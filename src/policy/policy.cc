#include "policy/policy.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <cstring>
#include <set>

#include "fs/path.h"
#include "policy/defaults.h"
#include "fs/walk.h"

namespace airlock::policy {

const char* rule_kind_name(RuleKind k) {
  switch (k) {
    case RuleKind::DenyRead: return "deny-read";
    case RuleKind::AllowRead: return "allow-read";
    case RuleKind::AllowWrite: return "allow-write";
    case RuleKind::DenyWrite: return "deny-write";
    case RuleKind::NoDelete: return "no-delete";
  }
  return "?";
}

namespace {

// The home folder /etc/passwd names for this uid (the binary is static, so
// no NSS: read the file directly).
Result<std::string> passwd_home() {
  std::ifstream pw("/etc/passwd");
  std::string uid = std::to_string(::getuid());
  for (std::string line; std::getline(pw, line);) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string x; std::getline(ss, x, ':');) f.push_back(x);
    if (f.size() >= 6 && f[2] == uid && !f[5].empty() && f[5][0] == '/') return fs::normalize(f[5]);
  }
  return err("cannot tell the home folder: $HOME is unset and /etc/passwd has no entry for uid {}", uid);
}

Result<std::string> caller_home() {
  const char* h = ::getenv("HOME");
  if (h && h[0] == '/') return fs::normalize(h);
  return passwd_home();
}

class Builder {
 public:
  Builder(Policy& p) : p_(p) {}

  // Adds a rule for a path as the user wrote it. Relative paths are relative
  // to the workspace and may not climb out of it.
  Status add(RuleKind kind, const std::string& raw, bool literal, const std::string& why,
             bool must_exist) {
    std::string abs = fs::absolutize(raw, p_.home, p_.workspace);
    bool relative = !raw.empty() && raw[0] != '/' && raw[0] != '~';
    if (relative && !fs::is_within(abs, p_.workspace))
      return err("{}: relative path '{}' leads outside the workspace ({}); write it as an absolute path",
                 why, raw, abs);
    if (!literal && fs::has_glob(abs)) {
      if (abs.find("**") != std::string::npos)
        return err("{}: '**' is not supported in '{}'; use a folder path instead", why, raw);
      if (kind == RuleKind::AllowWrite || kind == RuleKind::AllowRead || kind == RuleKind::NoDelete)
        return err("{}: patterns widen access unpredictably; '{}' must be a plain path", why, raw);
      for (const auto& m : fs::expand_glob(abs)) AIRLOCK_TRY(add_resolved(kind, m, why, false));
      return {};
    }
    return add_resolved(kind, abs, why, must_exist);
  }

  Status add_resolved(RuleKind kind, const std::string& abs, const std::string& why, bool must_exist) {
    auto r = fs::resolve(abs);
    if (!r) return err("{}: {}", why, r.error().message);
    if (must_exist && !r->exists) return err("{}: '{}' does not exist", why, abs);
    PathRule rule{kind, r->path, r->exists, r->is_dir, why, ""};
    // A write-protected name that is itself a symlink: its target is
    // protected by the rule, and the link is pinned too (see fs/plan).
    if (kind == RuleKind::DenyWrite || kind == RuleKind::NoDelete) {
      std::string lexical = fs::normalize(abs);
      auto dir = fs::resolve(fs::parent(lexical));
      struct stat st {};
      if (dir && dir->exists) {
        std::string self = fs::normalize(dir->path + "/" + lexical.substr(lexical.rfind('/') + 1));
        if (self != r->path && ::lstat(self.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) rule.link = self;
      }
    }
    p_.rules.push_back(rule);
    return {};
  }

  Policy& p_;
};

bool env_matches(const std::string& pattern, const std::string& name) {
  if (!pattern.empty() && pattern.back() == '*')
    return name.compare(0, pattern.size() - 1, pattern, 0, pattern.size() - 1) == 0;
  return name == pattern;
}

}  // namespace

Result<Policy> build_policy(const RunOptions& opts, const std::vector<Settings>& layers,
                            const std::vector<std::string>& environ_in) {
  Policy p;
  p.uid = ::getuid();
  p.gid = ::getgid();
  auto home = caller_home();
  if (!home) return home.error();
  p.home = *home;

  // The workspace: must exist and be a folder; judged by its real path.
  char cwdbuf[4096];
  if (!::getcwd(cwdbuf, sizeof cwdbuf)) return sys_err("getcwd");
  std::string cwd = cwdbuf;
  std::string ws_raw = opts.workspace.empty() ? cwd : opts.workspace;
  auto ws = fs::resolve(fs::absolutize(ws_raw, p.home, cwd));
  if (!ws) return err("--workspace: {}", ws.error().message);
  if (!ws->exists || !ws->is_dir) return err("--workspace: '{}' is not an existing folder", ws_raw);
  if (ws->path == "/") return err("--workspace: the whole filesystem cannot be the workspace");
  p.workspace = ws->path;
  auto rcwd = fs::resolve(cwd);
  p.cwd = (rcwd && fs::is_within(rcwd->path, p.workspace)) ? rcwd->path : p.workspace;

  // A memory bomb must not take the host down: by default, half the memory.
  long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) p.limits.memory_bytes = static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) / 2;

  Builder b(p);
  // 1. Built-in default: the workspace is writable; secret stores are hidden.
  p.rules.push_back({RuleKind::AllowWrite, p.workspace, true, true, "workspace (--workspace or the current folder)"});
  // For $HOME and, if different, the home /etc/passwd names: agents and CI
  // often run with another $HOME, and the keys stay where they are.
  std::vector<std::string> homes = {p.home};
  if (auto pw = passwd_home(); pw && *pw != p.home) homes.push_back(*pw);
  for (const auto& h : homes)
    for (const auto& s : default_secret_paths())
      AIRLOCK_TRY(b.add(RuleKind::DenyRead, h + "/" + s, true, "built-in secret store ~/" + s, false));
  // System secrets matter when the caller is root: inside, root keeps uid 0
  // (without capabilities), so files it owns stay readable. For anyone else
  // the kernel's own permissions already keep them out.
  if (p.uid == 0)
    for (const auto& s : default_system_secrets())
      AIRLOCK_TRY(b.add(RuleKind::DenyRead, s, false, "built-in system secret " + s, false));

  // 2. Settings files, in order.
  bool allow_git_config = false;
  for (const auto& s : layers) {
    for (const auto& e : s.deny_read) AIRLOCK_TRY(b.add(RuleKind::DenyRead, e.raw, e.literal, e.where, false));
    for (const auto& e : s.allow_read) AIRLOCK_TRY(b.add(RuleKind::AllowRead, e.raw, e.literal, e.where, false));
    for (const auto& e : s.allow_write) AIRLOCK_TRY(b.add(RuleKind::AllowWrite, e.raw, e.literal, e.where, true));
    for (const auto& e : s.deny_write) AIRLOCK_TRY(b.add(RuleKind::DenyWrite, e.raw, e.literal, e.where, false));
    for (const auto& e : s.no_delete) AIRLOCK_TRY(b.add(RuleKind::NoDelete, e.raw, e.literal, e.where, true));
    if (s.allow_git_config) allow_git_config = *s.allow_git_config;
    // Host sockets exposed on purpose: bound into the sandbox where they are
    // (a socket under the private /run or /tmp is bound into it).
    for (const auto& e : s.allow_unix_sockets) AIRLOCK_TRY(b.add(RuleKind::AllowRead, e.raw, true, e.where, true));
    if (s.allow_all_unix_sockets) p.host_run = *s.allow_all_unix_sockets;
    if (s.protect_depth) p.protect_depth = *s.protect_depth;
    if (s.allow_nested_userns) p.allow_nested_userns = *s.allow_nested_userns;
    for (const auto& [k, v] : s.limits) {
      if (k == "timeoutSeconds") p.limits.timeout_seconds = v;
      else if (k == "maxProcesses") p.limits.max_processes = v, p.limits.processes_explicit = true;
      else if (k == "memoryBytes") p.limits.memory_bytes = v, p.limits.memory_explicit = true;
      else if (k == "openFiles") p.limits.open_files = v;
      else if (k == "fileSizeBytes") p.limits.file_size_bytes = v;
      else if (k == "cpuSeconds") p.limits.cpu_seconds = v;
    }
    for (const auto& k : s.not_enforced)
      p.notes.push_back(fmt::format("{}: '{}' is checked but not enforced yet", s.source, k));
  }

  // Network and credentials come first: they add rules of their own.
  std::vector<std::pair<std::string, const nlohmann::json*>> net_layers;
  for (const auto& s : layers)
    if (s.has_network) net_layers.emplace_back(s.source, &s.network);
  auto net = net::build_network_policy(net_layers);
  if (!net) return net.error();
  p.network = std::move(*net);
  if (opts.control_fd >= 0) p.network.enabled = true;
  if (p.network.enabled && !p.network.parent) {
    // Like srt: a caller behind a corporate proxy keeps using it.
    auto var = [&](const char* a, const char* b) -> std::string {
      for (const char* n : {a, b})
        for (const auto& kv : environ_in)
          if (kv.size() > strlen(n) && kv.compare(0, strlen(n), n) == 0 && kv[strlen(n)] == '=')
            if (kv.size() > strlen(n) + 1) return kv.substr(strlen(n) + 1);
      return {};
    };
    std::string http = var("HTTP_PROXY", "http_proxy"), https = var("HTTPS_PROXY", "https_proxy");
    if (!http.empty() || !https.empty()) {
      nlohmann::json pp = nlohmann::json::object();
      if (!http.empty()) pp["http"] = http;
      if (!https.empty()) pp["https"] = https;
      std::string no = var("NO_PROXY", "no_proxy");
      if (!no.empty()) pp["noProxy"] = no;
      nlohmann::json wrap = {{"parentProxy", pp}};
      auto env_net = net::build_network_policy({{"the caller's HTTP(S)_PROXY", &wrap}});
      if (!env_net) return env_net.error();
      p.network.parent = env_net->parent;
    }
  }
  {
    std::vector<std::pair<std::string, const nlohmann::json*>> cred_layers;
    for (const auto& s : layers)
      if (!s.credentials.is_null()) cred_layers.emplace_back(s.source, &s.credentials);
    auto creds = net::build_credential_policy(cred_layers, p.network);
    if (!creds) return creds.error();
    p.credentials = std::move(*creds);
  }
  // The CA's key stays on the host side: never readable inside.
  if (!p.network.tls.ca_key.empty())
    AIRLOCK_TRY(b.add(RuleKind::DenyRead, p.network.tls.ca_key, true, "network.tlsTerminate.caKeyPath", false));
  // Credential files: hidden; a masked one gets its placeholder on top.
  for (size_t i = 0; i < p.credentials.items.size(); ++i) {
    const auto& c = p.credentials.items[i];
    if (c.kind != net::CredentialSpec::Kind::File) continue;
    AIRLOCK_TRY(b.add(RuleKind::DenyRead, c.name, true, c.where, false));
    if (!c.mask) continue;
    // The file's bytes become a secret the proxy hands out: it must be the
    // file named, not wherever a link there points (a repository can ship
    // `.env -> ~/.ssh/id_ed25519`).
    std::string lexical = fs::absolutize(c.name, p.home, p.workspace);
    struct stat lst {};
    if (::lstat(lexical.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode))
      return err("{}: '{}' is a symbolic link; name the credential file itself", c.where, c.name);
    const std::string& real = p.rules.back().path;
    if (fs::is_within(lexical, p.workspace) && !fs::is_within(real, p.workspace))
      return err("{}: '{}' leads outside the workspace (to {}) through a link", c.where, c.name, real);
    p.masked_files.emplace_back(i, real);
  }

  // 3. Command line.
  for (const auto& w : opts.allow_write) AIRLOCK_TRY(b.add(RuleKind::AllowWrite, w, true, "--allow-write " + w, true));
  for (const auto& d : opts.deny_read) AIRLOCK_TRY(b.add(RuleKind::DenyRead, d, true, "--deny-read " + d, false));
  // The audit file (already opened by the caller): the command must not
  // rewrite what airlock recorded about it.
  if (!opts.audit_file.empty())
    AIRLOCK_TRY(b.add(RuleKind::DenyWrite, opts.audit_file, true, "the audit file", false));
  // airlock's user settings (where "always" answers go): a command that
  // could write them would choose its next sandbox's rules.
  if (!opts.user_settings_dir.empty())
    AIRLOCK_TRY(b.add(RuleKind::DenyWrite, opts.user_settings_dir, true, "airlock's user settings", false));

  // 4. Protected files inside the workspace and in nested folders found by
  // airlock's own walk (no external tool, symlinks never followed).
  std::vector<std::string> roots = {p.workspace};
  auto scan = fs::scan_workspace(p.workspace, p.protect_depth);
  if (!scan) return scan.error();
  for (const auto& n : scan->nested_roots) roots.push_back(n);
  p.git_repos = scan->repos;
  p.git_commondirs = scan->commondirs;
  for (const auto& root : roots) {
    bool top = root == p.workspace;
    struct stat gst {};
    bool git_dir = ::lstat((root + "/.git").c_str(), &gst) == 0 && S_ISDIR(gst.st_mode);
    bool git_file = !git_dir && ::lstat((root + "/.git").c_str(), &gst) == 0 && S_ISREG(gst.st_mode);
    for (const auto& pn : default_protected_names()) {
      if (pn.git_config && allow_git_config) continue;
      std::string path = root + "/" + pn.rel;
      bool in_git = pn.rel.rfind(".git/", 0) == 0;
      struct stat st {};
      if (in_git && !git_dir) continue;  // no repository here: nothing to protect, and `git init` must work
      if (::lstat(path.c_str(), &st) != 0 && (!top || !pn.even_if_missing))
        continue;  // nested, or not worth a placeholder: only what exists
      AIRLOCK_TRY(b.add(RuleKind::DenyWrite, path, true, "protected file " + pn.rel, false));
    }
    // A worktree's or submodule's .git file names the repository git uses:
    // rewriting it would point git at hooks the command wrote.
    if (git_file) AIRLOCK_TRY(b.add(RuleKind::DenyWrite, root + "/.git", true, "protected file .git (gitdir link)", false));
    // core.hooksPath moves the hooks, often into the worktree (husky's
    // .husky): wherever it points inside the workspace is protected too.
    if (git_dir)
      for (const auto& hp : fs::git_hooks_paths(root, p.home))
        if (fs::is_within(hp, p.workspace))
          AIRLOCK_TRY(b.add(RuleKind::DenyWrite, hp, true, "protected hooks folder (core.hooksPath)", false));
    // Submodules and worktrees keep their own hooks and config inside .git.
    // A .git file (gitdir: X) or a .git symlink names the real git folder,
    // which may be anywhere in the workspace (`.bare` layouts); its commondir
    // names the one holding the shared config and hooks. All of them get the
    // same protection.
    std::vector<std::string> gitdirs;
    if (git_dir) gitdirs.push_back(root + "/.git");
    if (auto gd = fs::linked_git_dir(root); !gd.empty()) gitdirs.push_back(gd);
    for (size_t i = 0; i < gitdirs.size() && i < 64; ++i) {
      if (auto common = fs::git_common_dir(gitdirs[i]); !common.empty()) gitdirs.push_back(common);
      for (const auto& sub : fs::find_git_dirs(gitdirs[i])) gitdirs.push_back(sub);
    }
    // A submodule listed in .gitmodules but not cloned yet: its git folder
    // (.git/modules/NAME) does not exist, and `git submodule update` would
    // adopt whatever the command put there, hooks included.
    if (git_dir)
      for (const auto& name : fs::submodule_names(root + "/.gitmodules")) {
        std::string md = root + "/.git/modules/" + name;
        struct stat st {};
        if (::lstat(md.c_str(), &st) != 0)
          AIRLOCK_TRY(b.add(RuleKind::DenyWrite, md, true, "protected: git folder of submodule " + name, false));
      }
    std::set<std::string> seen_gitdirs;
    for (const auto& gd : gitdirs) {
      if (!seen_gitdirs.insert(gd).second) continue;
      bool main_dir = gd == root + "/.git";
      for (const char* name : {"hooks", "config", "config.worktree", "commondir"}) {
        bool is_config = std::string(name) == "config" || std::string(name) == "config.worktree";
        if (is_config && allow_git_config) continue;
        if (main_dir && std::string(name) != "commondir") continue;  // the protected names above cover these
        struct stat st {};
        bool missing_hooks = std::string(name) == "hooks" && ::lstat((gd + "/hooks").c_str(), &st) != 0;
        if (::lstat((gd + "/" + name).c_str(), &st) == 0 || missing_hooks)
          AIRLOCK_TRY(b.add(RuleKind::DenyWrite, gd + "/" + name, true, fmt::format("protected file {} of {}", name, gd),
                            false));
      }
    }
  }

  // 5. Host unix sockets: a read-only mount does not stop connect(), so each
  //    socket found where they usually live is hidden. (The private /run and
  //    /tmp hide the usual places wholesale.)
  std::vector<std::pair<std::string, int>> scans;
  for (const auto& sc : default_socket_scans())
    for (const auto& h : (sc.root == "~/" ? homes : std::vector<std::string>{sc.root}))
      scans.emplace_back(h, sc.depth);
  std::set<std::string> exposed;  // network.allowUnixSockets, already resolved
  for (const auto& r : p.rules)
    if (r.kind == RuleKind::AllowRead && r.why.find("allowUnixSockets") != std::string::npos) exposed.insert(r.path);
  for (const auto& sock : scan->sockets)  // the workspace's, from the complete walk above
    if (!exposed.count(sock))
      p.rules.push_back({RuleKind::DenyRead, sock, true, false, "host socket (found at start)", "", true});
  for (const auto& [root, depth] : scans) {
    size_t budget = 20000;  // per root: one crowded folder cannot hide the others
    for (const auto& sock : fs::find_sockets(root, depth, budget))
      if (!exposed.count(sock))
        p.rules.push_back({RuleKind::DenyRead, sock, true, false, "host socket (found at start)", "", true});
    if (budget == 0)
      p.notes.push_back(fmt::format("warning: the search for host unix sockets in {} stopped early (too many files); "
                                    "a socket there may stay reachable",
                                    root));
  }

  // 6. Environment: everything but secrets; AIRLOCK=1.
  std::vector<std::string> keep, remove;
  for (const auto& s : layers) {
    keep.insert(keep.end(), s.env_keep.begin(), s.env_keep.end());
    remove.insert(remove.end(), s.env_remove.begin(), s.env_remove.end());
    if (s.credentials.is_object() && s.credentials.contains("envVars") && s.credentials["envVars"].is_array())
      for (const auto& ev : s.credentials["envVars"])
        if (ev.is_object() && ev.contains("name") && ev["name"].is_string())
          remove.push_back(ev["name"].get<std::string>());
  }
  std::set<std::string> seen;
  for (const auto& kv : environ_in) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) continue;
    std::string name = kv.substr(0, eq);
    if (name == "AIRLOCK" || !seen.insert(name).second) continue;
    bool kept = std::any_of(keep.begin(), keep.end(), [&](auto& k) { return env_matches(k, name); });
    bool removed = std::any_of(remove.begin(), remove.end(), [&](auto& r) { return env_matches(r, name); });
    if (removed || (!kept && (env_name_is_secret(name) || env_value_is_secret(kv.substr(eq + 1))))) {
      p.env_removed.push_back(name);
      continue;
    }
    p.env.push_back(kv);
  }
  p.env.push_back("AIRLOCK=1");

  // 7. Network: the variables that point the command's tools at the proxy.
  if (p.network.enabled) {
    auto env_vars = net::proxy_environment(p.network, opts.self_exe);
    std::set<std::string> names;
    for (const auto& kv : env_vars) names.insert(kv.substr(0, kv.find('=')));
    std::string java_opts;
    std::erase_if(p.env, [&](const std::string& kv) {
      std::string name = kv.substr(0, kv.find('='));
      if (name == "JAVA_TOOL_OPTIONS") java_opts = kv.substr(kv.find('=') + 1);
      return names.count(name) > 0;
    });
    for (auto kv : env_vars) {
      if (kv.rfind("JAVA_TOOL_OPTIONS=", 0) == 0 && !java_opts.empty()) kv += " " + java_opts;
      p.env.push_back(kv);
    }
  }
  p.audit_file = opts.audit_file;
  p.control_fd = opts.control_fd;

  if (opts.argv.empty()) return err("no command given: use 'airlock run -- COMMAND' or 'airlock run -c STRING'");
  p.argv = opts.argv;
  return p;
}

}  // namespace airlock::policy
