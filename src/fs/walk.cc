#include "fs/walk.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <fstream>
#include <sstream>
#include <set>

#include "fs/path.h"
#include "policy/defaults.h"
#include "util/fd.h"
#include "util/sys.h"

namespace airlock::fs {

Result<WorkspaceScan> scan_workspace(const std::string& root, int max_depth) {
  WorkspaceScan scan;
  std::set<std::string> protected_first;  // first components of protected names
  for (const auto& pn : policy::default_protected_names())
    protected_first.insert(pn.rel.substr(0, pn.rel.find('/')));
  std::set<std::string> found;
  size_t budget = kWalkMaxEntries;
  walk_entries(root, max_depth, budget, [&](const std::string& dir, const std::string& name, unsigned char type, int) {
    if (type == DT_SOCK) scan.sockets.push_back(dir + "/" + name);
    if (name == ".git") {
      scan.repos.push_back(dir);
      struct stat st {};
      if (::lstat((dir + "/.git/commondir").c_str(), &st) == 0) scan.commondirs.push_back(dir + "/.git/commondir");
    }
    if (protected_first.count(name)) {
      if (dir != root) found.insert(dir);
      return false;  // not into .vscode, .claude, ...
    }
    return true;
  });
  // Fail closed: an unfinished search could miss a repository's hooks.
  if (budget == 0)
    return err("{}: more than {} files within {} folders of the workspace; airlock cannot check them all for "
               "repositories and editor settings to protect. Lower mandatoryDenySearchDepth or choose a smaller "
               "--workspace",
               root, kWalkMaxEntries, max_depth);
  scan.nested_roots.assign(found.begin(), found.end());
  return scan;
}

void walk_entries(const std::string& root, int max_depth, size_t& budget,
                  const std::function<bool(const std::string&, const std::string&, unsigned char, int)>& visit) {
  std::set<std::string> skip(policy::walk_skip_dirs().begin(), policy::walk_skip_dirs().end());
  // Breadth-first, so shallow folders are seen before a deep or huge one
  // can use up the budget.
  std::deque<std::pair<std::string, int>> todo = {{root, 0}};
  while (!todo.empty() && budget > 0) {
    auto [dir, level] = todo.front();
    todo.pop_front();
    UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) continue;
    DIR* d = ::fdopendir(fd.release());
    if (!d) continue;
    while (struct dirent* e = ::readdir(d)) {
      if (budget == 0) break;
      --budget;
      std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      bool descend = visit(dir, name, e->d_type, level);
      if (descend && e->d_type == DT_DIR && level < max_depth && !skip.count(name))
        todo.emplace_back(dir == "/" ? "/" + name : dir + "/" + name, level + 1);
    }
    ::closedir(d);
  }
}

std::vector<std::string> find_sockets(const std::string& root, int max_depth, size_t& budget) {
  std::vector<std::string> out;
  walk_entries(root, max_depth, budget, [&](const std::string& dir, const std::string& name, unsigned char type, int) {
    if (type == DT_SOCK) out.push_back(dir == "/" ? "/" + name : dir + "/" + name);
    return true;
  });
  return out;
}

namespace {
// core.hooksPath from one git config file (no includes; enough to find the
// common cases: husky, lefthook, shared hook folders).
std::string hooks_path_in(const std::string& file) {
  auto text = sys::read_regular_file(file);
  if (!text) return "";
  std::istringstream f(*text);
  std::string section, value;
  for (std::string line; std::getline(f, line);) {
    auto first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#' || line[first] == ';') continue;
    line = line.substr(first);
    if (line[0] == '[') {
      auto end = line.find(']');
      section = line.substr(1, end == std::string::npos ? std::string::npos : end - 1);
      std::transform(section.begin(), section.end(), section.begin(), ::tolower);
      continue;
    }
    auto eq = line.find('=');
    if (section != "core" || eq == std::string::npos) continue;
    std::string key = line.substr(0, eq);
    key.erase(key.find_last_not_of(" \t") + 1);
    std::transform(key.begin(), key.end(), key.begin(), ::tolower);
    if (key != "hookspath") continue;
    value = line.substr(eq + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    value.erase(value.find_last_not_of(" \t\r") + 1);
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
  }
  return value;
}
}  // namespace

std::vector<std::string> git_hooks_paths(const std::string& root, const std::string& home) {
  std::vector<std::string> out;
  for (const std::string& cfg : {root + "/.git/config", home + "/.gitconfig", home + "/.config/git/config"}) {
    std::string v = hooks_path_in(cfg);
    if (v.empty()) continue;
    out.push_back(absolutize(v, home, root));
  }
  return out;
}

namespace {
std::string first_line(const std::string& file) {
  auto text = sys::read_regular_file(file, 64 << 10);
  if (!text) return "";
  std::string line = text->substr(0, text->find('\n'));
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
  return line;
}

std::string existing_dir(const std::string& path) {
  auto r = resolve(path);
  return (r && r->exists && r->is_dir) ? r->path : "";
}
}  // namespace

std::vector<std::string> submodule_names(const std::string& gitmodules) {
  std::vector<std::string> out;
  auto text = sys::read_regular_file(gitmodules);
  if (!text) return out;
  std::istringstream f(*text);
  for (std::string line; std::getline(f, line);) {
    auto a = line.find("[submodule \"");
    if (a == std::string::npos) continue;
    auto b = line.find("\"]", a + 12);
    if (b == std::string::npos) continue;
    std::string name = line.substr(a + 12, b - a - 12);
    if (name.empty() || name[0] == '/' || normalize("/" + name) != "/" + name) continue;
    out.push_back(name);
    if (out.size() >= 256) break;
  }
  return out;
}

std::string linked_git_dir(const std::string& root) {
  std::string dotgit = root + "/.git";
  struct stat st {};
  if (::lstat(dotgit.c_str(), &st) != 0) return "";
  if (S_ISLNK(st.st_mode)) return existing_dir(dotgit);
  if (!S_ISREG(st.st_mode)) return "";
  std::string line = first_line(dotgit);
  if (line.rfind("gitdir:", 0) != 0) return "";
  std::string target = line.substr(7);
  target.erase(0, target.find_first_not_of(" \t"));
  if (target.empty()) return "";
  return existing_dir(target[0] == '/' ? target : root + "/" + target);
}

std::string git_common_dir(const std::string& gitdir) {
  std::string line = first_line(gitdir + "/commondir");
  if (line.empty()) return "";
  return existing_dir(line[0] == '/' ? line : gitdir + "/" + line);
}

std::vector<std::string> find_git_dirs(const std::string& dot_git) {
  std::vector<std::string> out;
  size_t budget = 10000;
  // Breadth-first over modules/ and worktrees/, a few levels deep (nested
  // submodules live in modules/a/modules/b).
  std::vector<std::pair<std::string, int>> todo = {{dot_git, 0}};
  while (!todo.empty() && budget > 0) {
    auto [dir, level] = todo.back();
    todo.pop_back();
    for (const char* sub : {"modules", "worktrees"}) {
      std::string base = dir + "/" + sub;
      UniqueFd fd(::open(base.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!fd) continue;
      DIR* d = ::fdopendir(fd.release());
      if (!d) continue;
      while (struct dirent* e = ::readdir(d)) {
        if (--budget == 0) break;
        std::string name = e->d_name;
        if (name == "." || name == ".." || e->d_type != DT_DIR) continue;
        std::string gd = base + "/" + name;
        out.push_back(gd);
        // A submodule's name may contain slashes: modules/a/b. Look one
        // level further for folders that are not git dirs themselves.
        if (level < 4) todo.push_back({gd, level + 1});
      }
      ::closedir(d);
    }
  }
  return out;
}

}  // namespace airlock::fs
