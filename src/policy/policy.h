// Policy: validated plain data. Every path is absolute and resolved; every
// rule remembers where it came from. Nothing here touches the kernel; the
// planner (fs/plan.h) turns a Policy into the exact mounts and rules.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "policy/settings.h"
#include "net/rules.h"
#include "net/secrets.h"
#include "util/result.h"

namespace airlock::policy {

enum class RuleKind { DenyRead, AllowRead, AllowWrite, DenyWrite, NoDelete };
const char* rule_kind_name(RuleKind k);

struct PathRule {
  RuleKind kind;
  std::string path;  // absolute, symlinks resolved
  bool exists = false;
  bool is_dir = false;
  std::string why;  // the setting or default that produced it
  // When the path as written ends in a symlink: the link's own location.
  // Protecting only the target would let the command replace the link.
  std::string link;
  // Found by a scan, not asked for (host sockets): may vanish before the
  // sandbox is built, and then there is nothing left to hide.
  bool transient = false;
};

// Resource limits (settings "limits"); 0 means none.
struct Limits {
  uint64_t timeout_seconds = 0;
  uint64_t max_processes = 4096;  // a fork bomb stops here
  uint64_t memory_bytes = 0;      // default: half the machine's memory (policy.cc)
  bool memory_explicit = false;   // set by the settings: worth a cgroup
  bool processes_explicit = false;
  uint64_t open_files = 0;
  uint64_t file_size_bytes = 0;
  uint64_t cpu_seconds = 0;
};

// What the command line adds on top of the settings files.
struct RunOptions {
  std::string workspace;  // default: current directory
  std::vector<std::string> settings_files;
  std::vector<std::string> allow_write, deny_read;
  std::vector<std::string> argv;  // the command
  bool debug = false;
  std::string audit_file;         // --audit
  int control_fd = -1;            // --control-fd: ask and live rule updates as JSON lines
  std::string self_exe;           // airlock's own binary (ssh's ProxyCommand inside), or empty
  std::string user_settings_dir;  // ~/.config/airlock: never writable inside
};

// A file the sandbox sees in place of a host path: the trust bundle over
// the system's, a masked credential's placeholder over the real file.
// `source` is a file airlock writes before the sandbox is built.
struct Overlay {
  std::string target;  // absolute, resolved
  std::string source;
  std::string why;
};

struct Policy {
  std::string workspace;  // resolved
  std::string cwd;        // where the command starts (inside the sandbox, same path)
  std::string home;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<PathRule> rules;
  int protect_depth = 3;
  bool allow_nested_userns = false;  // allowNestedUserNamespaces
  bool host_run = false;             // network.allowAllUnixSockets: the host's /run, read-only
  Limits limits;
  // Git state before the run, for the check after it (fs/gitguard.h).
  std::vector<std::string> git_repos, git_commondirs;
  std::vector<std::string> argv;
  std::vector<std::string> env;          // NAME=value, final
  std::vector<std::string> env_removed;  // names removed
  std::vector<std::string> notes;        // one-line notices for the user
  net::NetworkPolicy network;            // egress; network.enabled == false: no network at all
  net::CredentialPolicy credentials;
  // Masked credential files: (index in credentials.items, resolved path).
  std::vector<std::pair<size_t, std::string>> masked_files;
  std::vector<Overlay> overlays;         // filled by the run's preparation (tls/materials.h)
  std::string audit_file;                // absolute, or empty
  int control_fd = -1;
};

// Builds the policy from the built-in default, the settings files and the
// command line. `environ_in` is the caller's environment.
Result<Policy> build_policy(const RunOptions& opts, const std::vector<Settings>& layers,
                            const std::vector<std::string>& environ_in);

}  // namespace airlock::policy
