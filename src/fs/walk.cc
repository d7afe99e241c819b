#include "fs/walk.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <set>

#include "fs/path.h"
#include "policy/defaults.h"
#include "util/fd.h"

namespace airlock::fs {

namespace {
struct Walker {
  std::set<std::string> protected_first;  // first components of protected names
  std::set<std::string> skip;
  size_t seen = 0;
  std::vector<std::string> found;

  void visit(int dirfd, const std::string& path, int depth, int max_depth) {
    UniqueFd own(::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!own) return;
    DIR* d = ::fdopendir(own.release());
    if (!d) return;
    std::vector<std::string> subdirs;
    bool has_protected = false;
    while (struct dirent* e = ::readdir(d)) {
      if (++seen > kWalkMaxEntries) break;
      std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      if (protected_first.count(name)) has_protected = true;
      if (e->d_type == DT_DIR && depth < max_depth && !skip.count(name) && !protected_first.count(name))
        subdirs.push_back(name);
    }
    if (has_protected && depth > 0) found.push_back(path);
    for (const auto& s : subdirs) {
      if (seen > kWalkMaxEntries) break;
      // O_NOFOLLOW|O_DIRECTORY: a symlink to a folder is not a folder here.
      UniqueFd sub(::openat(::dirfd(d), s.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (sub) visit(sub.get(), path + "/" + s, depth + 1, max_depth);
    }
    ::closedir(d);
  }
};
}  // namespace

std::vector<std::string> find_nested_roots(const std::string& root, int max_depth) {
  Walker w;
  for (const auto& pn : policy::default_protected_names())
    w.protected_first.insert(pn.rel.substr(0, pn.rel.find('/')));
  for (const auto& s : policy::walk_skip_dirs()) w.skip.insert(s);
  UniqueFd fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd) w.visit(fd.get(), root, 0, max_depth);
  return w.found;
}

void walk_entries(const std::string& root, int max_depth, size_t& budget,
                  const std::function<bool(const std::string&, const std::string&, unsigned char, int)>& visit) {
  std::set<std::string> skip(policy::walk_skip_dirs().begin(), policy::walk_skip_dirs().end());
  std::vector<std::pair<std::string, int>> todo = {{root, 0}};
  while (!todo.empty() && budget > 0) {
    auto [dir, level] = todo.back();
    todo.pop_back();
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
  std::ifstream f(file);
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
