// The built-in default policy: what an agent on a developer's laptop may not
// read, which files inside the workspace it may not change, and which
// environment variables it never sees. docs/defaults.md lists the same data;
// a unit test keeps the two in step.
#pragma once

#include <string>
#include <vector>

namespace airlock::policy {

// Secret stores under $HOME that are never readable (relative to $HOME).
const std::vector<std::string>& default_secret_paths();

// System files no sandboxed command reads, even as root (absolute; globs).
const std::vector<std::string>& default_system_secrets();

// Where host sockets are looked for at start (absolute, or "~/" for the home
// folder), with how many folders deep. A socket stays connectable on a
// read-only mount, so each one found is hidden.
struct SocketScan {
  std::string root;
  int depth;
};
const std::vector<SocketScan>& default_socket_scans();

// Names that stay read-only inside writable paths (relative to the workspace
// and to every nested folder the protected-file walk finds).
struct ProtectedName {
  std::string rel;          // e.g. ".git/hooks"
  bool git_config;          // lifted by allowGitConfig
  bool even_if_missing;     // at the workspace root, protected before it exists (placeholder)
};
const std::vector<ProtectedName>& default_protected_names();

// airlock's own project config folder inside a workspace.
inline constexpr const char* kProjectConfigDir = ".airlock";

// Folders the protected-file walk does not descend into (they are large and
// never hold files that run outside the sandbox).
const std::vector<std::string>& walk_skip_dirs();

// True if an environment variable with this name looks like a credential.
bool env_name_is_secret(const std::string& name);
// True if the value carries a credential whatever the name (a URL with a
// password, like postgres://u:pw@db or redis://:pw@host).
bool env_value_is_secret(const std::string& value);
// The patterns behind env_name_is_secret, for the docs.
const std::vector<std::string>& env_secret_patterns();

}  // namespace airlock::policy
