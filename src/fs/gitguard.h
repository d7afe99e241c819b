// After the run: what the command did to git metadata that would run code
// on the host later, where the mount plan cannot stop it ahead of time.
//  - a `.git/commondir` that appeared is removed (it would point git at a
//    config and hooks the command wrote);
//  - a repository that appeared is reported if its config or hooks would
//    run something (core.fsmonitor, core.hooksPath, aliases with '!', ...).
#pragma once

#include <set>
#include <string>
#include <vector>

namespace airlock::fs {

struct GitSnapshot {
  std::set<std::string> repos;       // worktree roots with a .git, before the run
  std::set<std::string> commondirs;  // .git/commondir files that existed
};

GitSnapshot git_snapshot(const std::string& workspace, int depth);

// The settings in a git config file that make git run a program.
std::vector<std::string> dangerous_git_keys(const std::string& config_file);

// Returns one warning line per finding; removes new commondir files.
std::vector<std::string> git_check_after(const GitSnapshot& before, const std::string& workspace, int depth);

}  // namespace airlock::fs
