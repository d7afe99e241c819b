// airlock's own bounded walk of the workspace, to find nested folders that
// hold protected files (a vendored repository's .git/hooks, a sub-project's
// .vscode). Symlinks are never followed; large tool folders are skipped.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "util/result.h"

namespace airlock::fs {

// One walk of the workspace, depth 0..max_depth: the folders below it that
// contain one of the default protected names, and the unix sockets in it.
// An error when more than kWalkMaxEntries entries would have to be read (the
// search must not stop half-way).
struct WorkspaceScan {
  std::vector<std::string> nested_roots;
  std::vector<std::string> sockets;
  std::vector<std::string> repos;       // folders holding a .git
  std::vector<std::string> commondirs;  // existing <repo>/.git/commondir files
};
Result<WorkspaceScan> scan_workspace(const std::string& root, int max_depth);

inline constexpr size_t kWalkMaxEntries = 200000;

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

// The git folder a `.git` file ("gitdir: X") or a `.git` symlink at `root`
// names, resolved; "" when `.git` is a plain folder or absent.
std::string linked_git_dir(const std::string& root);

// The common git folder `gitdir/commondir` names, resolved; "" if none.
std::string git_common_dir(const std::string& gitdir);

// Submodule names declared in a .gitmodules file ([submodule "NAME"]);
// names that could leave .git/modules ("..", absolute) are dropped.
std::vector<std::string> submodule_names(const std::string& gitmodules);

// Git directories kept inside a repository's .git folder: submodules
// (.git/modules/NAME, nested) and linked worktrees (.git/worktrees/NAME).
std::vector<std::string> find_git_dirs(const std::string& dot_git);

}  // namespace airlock::fs
