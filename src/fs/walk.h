// airlock's own bounded walk of the workspace, to find nested folders that
// hold protected files (a vendored repository's .git/hooks, a sub-project's
// .vscode). Symlinks are never followed; large tool folders are skipped.
#pragma once

#include <string>
#include <vector>

namespace airlock::fs {

// Folders at depth 1..max_depth below `root` that contain at least one of
// the default protected names. Stops after kWalkMaxEntries entries.
std::vector<std::string> find_nested_roots(const std::string& root, int max_depth);

inline constexpr size_t kWalkMaxEntries = 50000;

// Git directories kept inside a repository's .git folder: submodules
// (.git/modules/NAME, nested) and linked worktrees (.git/worktrees/NAME).
std::vector<std::string> find_git_dirs(const std::string& dot_git);

}  // namespace airlock::fs
