#include "fs/path.h"

#include <glob.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace airlock::fs {

std::vector<std::string> split_on(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = s.find(sep, i);
    if (j == std::string::npos) j = s.size();
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

namespace {
std::vector<std::string> split(const std::string& p) { return split_on(p, '/'); }

std::string join(const std::vector<std::string>& parts) {
  if (parts.empty()) return "/";
  std::string out;
  for (const auto& c : parts) out += "/" + c;
  return out;
}
}  // namespace

std::string normalize(const std::string& abs) {
  std::vector<std::string> out;
  for (auto& c : split(abs)) {
    if (c == ".") continue;
    if (c == "..") {
      if (!out.empty()) out.pop_back();
      continue;
    }
    out.push_back(c);
  }
  return join(out);
}

std::string absolutize(const std::string& raw, const std::string& home, const std::string& base) {
  if (raw == "~") return normalize(home);
  if (raw.rfind("~/", 0) == 0) return normalize(home + "/" + raw.substr(2));
  if (!raw.empty() && raw[0] == '/') return normalize(raw);
  return normalize(base + "/" + raw);
}

bool is_within(const std::string& path, const std::string& dir) {
  if (dir == "/") return true;
  if (path.size() < dir.size() || path.compare(0, dir.size(), dir) != 0) return false;
  return path.size() == dir.size() || path[dir.size()] == '/';
}

// Both take normalised paths (no "//", no trailing "/"), as every path in
// a policy is; they are on the planner's hot path, so no allocation.
int depth(const std::string& abs) {
  if (abs == "/") return 0;
  return static_cast<int>(std::count(abs.begin(), abs.end(), '/'));
}

std::string parent(const std::string& abs) {
  auto slash = abs.rfind('/');
  if (slash == std::string::npos || slash == 0) return "/";
  return abs.substr(0, slash);
}

std::string relative_to(const std::string& abs, const std::string& dir) {
  if (abs == dir) return "";
  if (dir == "/") return abs.substr(1);
  return abs.substr(dir.size() + 1);
}

Result<Resolved> resolve(const std::string& abs) {
  std::vector<std::string> todo = split(normalize(abs));
  std::vector<std::string> done;  // resolved, existing components
  int links = 0;
  size_t i = 0;
  while (i < todo.size()) {
    const std::string c = todo[i];
    if (c == ".") { ++i; continue; }
    if (c == "..") {
      if (!done.empty()) done.pop_back();
      ++i;
      continue;
    }
    std::string candidate = join(done) == "/" ? "/" + c : join(done) + "/" + c;
    struct stat st {};
    if (::lstat(candidate.c_str(), &st) != 0) {
      if (errno != ENOENT && errno != ENOTDIR) return sys_err(fmt::format("lstat({})", candidate));
      // The rest does not exist: append it lexically.
      Resolved r;
      std::vector<std::string> rest(done);
      for (size_t k = i; k < todo.size(); ++k) {
        if (todo[k] == ".") continue;
        if (todo[k] == "..") { if (!rest.empty()) rest.pop_back(); continue; }
        rest.push_back(todo[k]);
      }
      r.path = join(rest);
      r.first_missing = candidate;
      return r;
    }
    if (S_ISLNK(st.st_mode)) {
      if (++links > 40) return err("{}: too many levels of symbolic links", abs);
      std::string target(4096, '\0');
      ssize_t n = ::readlink(candidate.c_str(), target.data(), target.size());
      if (n < 0) return sys_err(fmt::format("readlink({})", candidate));
      target.resize(static_cast<size_t>(n));
      std::vector<std::string> repl = split(target);
      if (!target.empty() && target[0] == '/') done.clear();
      // Splice the link's components in place of this one.
      std::vector<std::string> next(repl);
      next.insert(next.end(), todo.begin() + static_cast<long>(i) + 1, todo.end());
      todo = std::move(next);
      i = 0;
      continue;
    }
    done.push_back(c);
    ++i;
  }
  Resolved r;
  r.path = join(done);
  r.exists = true;
  struct stat st {};
  r.is_dir = ::stat(r.path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
  return r;
}

bool has_glob(const std::string& s) { return s.find_first_of("*?[") != std::string::npos; }

std::vector<std::string> expand_glob(const std::string& pattern) {
  std::vector<std::string> out;
  glob_t g{};
  if (::glob(pattern.c_str(), GLOB_NOSORT | GLOB_PERIOD, nullptr, &g) == 0)
    for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  ::globfree(&g);
  return out;
}

}  // namespace airlock::fs
