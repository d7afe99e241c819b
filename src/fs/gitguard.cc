#include "fs/gitguard.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <linux/openat2.h>

#include "fs/path.h"
#include "fs/walk.h"
#include "policy/defaults.h"
#include "util/fd.h"
#include "util/result.h"
#include "util/sys.h"

namespace airlock::fs {

namespace {

// Worktree roots (folders holding .git) at depth 0..depth, symlinks never
// followed, tool folders skipped.
std::vector<std::string> find_repos(const std::string& ws, int depth) {
  std::vector<std::string> out;
  size_t budget = 50000;
  walk_entries(ws, depth, budget, [&](const std::string& dir, const std::string& name, unsigned char, int) {
    if (name == ".git") out.push_back(dir);
    return true;
  });
  return out;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), ::tolower);
  return s;
}

// Keys of a git config that make git run a program.
std::vector<std::string> dangerous_keys(const std::string& file) {
  static const std::set<std::string> exact = {
      "core.fsmonitor", "core.hookspath", "core.sshcommand", "core.pager", "core.editor", "core.askpass",
      "core.gitproxy", "sequence.editor", "diff.external", "credential.helper", "gpg.program",
      "gpg.ssh.program", "include.path", "uploadpack.packobjectshook", "merge.tool", "diff.tool"};
  std::vector<std::string> out;
  // The command may have written this file: a regular file of at most 1 MiB.
  auto text = sys::read_regular_file(file);
  if (!text) {
    struct stat st {};
    if (::lstat(file.c_str(), &st) == 0 && !(S_ISREG(st.st_mode) && st.st_size == 0))
      out.push_back("a config airlock could not read (" + text.error().message + ")");
    return out;
  }
  std::istringstream f(*text);
  std::string section;
  for (std::string line; std::getline(f, line);) {
    auto first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#' || line[first] == ';') continue;
    line = line.substr(first);
    if (line[0] == '[') {
      auto close = line.find(']');
      section = lower(line.substr(1, close == std::string::npos ? std::string::npos : close - 1));
      if (section.rfind("includeif", 0) == 0) out.push_back("includeIf");
      // git also reads a key written on the section's own line.
      line = close == std::string::npos ? "" : line.substr(close + 1);
      auto k = line.find_first_not_of(" \t");
      if (k == std::string::npos || line[k] == '#' || line[k] == ';') continue;
      line = line.substr(k);
    }
    auto eq = line.find('=');
    std::string key = lower(line.substr(0, eq));
    key.erase(key.find_last_not_of(" \t") + 1);
    std::string value = eq == std::string::npos ? "" : line.substr(eq + 1);
    value.erase(0, value.find_first_not_of(" \t\""));
    std::string head = section.substr(0, section.find(' '));
    std::string full = head + "." + key;
    if (exact.count(full) || (head == "alias" && !value.empty() && value[0] == '!') ||
        (head == "filter" && (key == "clean" || key == "smudge" || key == "process")) ||
        (head == "diff" && (key == "textconv" || key == "command")) || (head == "merge" && key == "driver"))
      out.push_back(full);
  }
  return out;
}

std::vector<std::string> active_hooks(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (struct dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n == "." || n == ".." || (n.size() > 7 && n.compare(n.size() - 7, 7, ".sample") == 0)) continue;
    out.push_back(n);
  }
  ::closedir(d);
  return out;
}

}  // namespace

std::vector<std::string> dangerous_git_keys(const std::string& config_file) { return dangerous_keys(config_file); }


// How deep the check after the run looks for repositories the command made:
// deeper than the protection walk, since a new repository can be anywhere.
constexpr int kNewRepoDepth = 8;

std::vector<std::string> git_check_after(const GitSnapshot& before, const std::string& workspace, int depth,
                                         int64_t started_ns) {
  std::vector<std::string> out;
  auto ws = sys::open_path_nofollow(workspace, O_DIRECTORY);
  if (!ws) return out;
  for (const auto& r : find_repos(workspace, std::max(depth, kNewRepoDepth))) {
    std::string rel = relative_to(r, workspace);
    if (before.repos.count(r)) {
      // Only a real .git folder beneath the workspace, opened without
      // following any link: the command may have made .git a symlink to
      // somebody else's repository.
      auto git = sys::open_beneath(ws->get(), rel.empty() ? ".git" : rel + "/.git", O_PATH | O_DIRECTORY);
      if (!git) continue;
      struct stat st {};
      std::string cd = r + "/.git/commondir";
      if (::fstatat(git->get(), "commondir", &st, AT_SYMLINK_NOFOLLOW) == 0 && !before.commondirs.count(cd)) {
        auto dir = sys::openat2(git->get(), ".", O_DIRECTORY | O_RDONLY, 0);
        if (S_ISREG(st.st_mode) && dir && ::unlinkat(dir->get(), "commondir", 0) == 0)
          out.push_back(fmt::format("removed {}: the command created it to point git at another config and hooks", cd));
        else
          out.push_back(fmt::format("warning: the command created {}, which points git at another config and hooks; "
                                    "remove it before you use git there", cd));
      }
      continue;
    }
    // Deeper than the snapshot: new only if its .git was born during the run.
    struct statx sx {};
    if (::statx(AT_FDCWD, (r + "/.git").c_str(), AT_SYMLINK_NOFOLLOW, STATX_BTIME, &sx) == 0 &&
        (sx.stx_mask & STATX_BTIME) &&
        sx.stx_btime.tv_sec * 1000000000LL + sx.stx_btime.tv_nsec < started_ns)
      continue;
    // A repository the command created: git would honour its config and
    // hooks when you use that folder. Its git folder may be elsewhere
    // (a .git file or link).
    std::string gd = r + "/.git";
    if (auto linked = linked_git_dir(r); !linked.empty()) gd = linked;
    std::vector<std::string> bad = dangerous_keys(gd + "/config");
    if (auto common = git_common_dir(gd); !common.empty()) {
      auto more = dangerous_keys(common + "/config");
      bad.insert(bad.end(), more.begin(), more.end());
    }
    for (const auto& h : active_hooks(gd + "/hooks")) bad.push_back("hook " + h);
    if (!bad.empty()) {
      std::string list;
      for (const auto& b : bad) list += (list.empty() ? "" : ", ") + b;
      out.push_back(fmt::format("warning: the command created the git repository {} whose {} would run programs "
                                "when you use git there; inspect it before you do",
                                r, list));
    }
  }
  return out;
}

}  // namespace airlock::fs
