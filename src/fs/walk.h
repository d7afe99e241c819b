// airlock's own bounded walk of the workspace, to find nested folders that
// hold protected files (a vendored repository's .git/hooks, a sub-project's
// .vscode). Symlinks are never followed; large tool folders are skipped.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace airlock::fs {

// Folders at depth 1..max_depth below `root` that contain at least one of
// the default protected names. Stops after kWalkMaxEntries entries.
std::vector<std::string> find_nested_roots(const std::string& root, int max_depth);

inline constexpr size_t kWalkMaxEntries = 50000;

// Breadth-first walk below `root`, never following symlinks and never
// entering the tool folders of walk_skip_dirs(). `visit(dir, name, d_type,
// level)` sees every entry; folders are entered while level < max_depth and
// visit returns true. Stops when `budget` entries have been read (budget is
// then 0).
void walk_entries(const std::string& root, int max_depth, size_t& budget,
                  const std::function<bool(const std::string&, const std::string&, unsigned char, int)>& visit);

// Unix socket files below `root`, at most `max_depth` folders down, without
// following symlinks or entering the skipped tool folders. `budget` is the
// number of entries left to read; it is decreased, and 0 means the walk
// stopped early.
std::vector<std::string> find_sockets(const std::string& root, int max_depth, size_t& budget);

// The hooks folders git would use for the worktree at `root` according to
// core.hooksPath in its .git/config and the user's global config (absolute;
// relative values are relative to `root`).
std::vector<std::string> git_hooks_paths(const std::string& root, const std::string& home);

// Git directories kept inside a repository's .git folder: submodules
// (.git/modules/NAME, nested) and linked worktrees (.git/worktrees/NAME).
std::vector<std::string> find_git_dirs(const std::string& dot_git);

}  // namespace airlock::fs
