// After the run: what the command did to git metadata that would run code
// on the host later, where the mount plan cannot stop it ahead of time.
//  - a `.git/commondir` that appeared is removed (it would point git at a
//    config and hooks the command wrote);
//  - a repository that appeared is reported if its config or hooks would
//    run something (core.fsmonitor, core.hooksPath, aliases with '!', ...).
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace airlock::fs {

// Taken by the workspace walk before the run (fs::scan_workspace).
struct GitSnapshot {
  std::set<std::string> repos;       // worktree roots with a .git, before the run
  std::set<std::string> commondirs;  // .git/commondir files that existed
};

// The settings in a git config file that make git run a program.
std::vector<std::string> dangerous_git_keys(const std::string& config_file);

// Returns one warning line per finding; removes new commondir files.
// `started_ns` is when the run began (CLOCK_REALTIME, ns): a repository
// deeper than the snapshot whose .git was born before it is not new.
std::vector<std::string> git_check_after(const GitSnapshot& before, const std::string& workspace, int depth,
                                         int64_t started_ns);

}  // namespace airlock::fs
