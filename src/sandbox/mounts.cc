#include "sandbox/mounts.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <set>
#include <vector>

#include "fs/path.h"
#include "util/log.h"
#include "util/sys.h"

namespace airlock::sandbox {

namespace {

using fs::MountOp;
using K = MountOp::Kind;

constexpr unsigned kSafe = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;

Status set_attr(int mnt_fd, unsigned set, bool recursive, const std::string& what) {
  struct mount_attr a {};
  a.attr_set = set;
  if (::mount_setattr(mnt_fd, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &a, sizeof a) != 0)
    return sys_err(fmt::format("mount_setattr({})", what));
  return {};
}

// A fresh filesystem instance (tmpfs, proc, devpts) as a detached mount.
Result<UniqueFd> new_fs(const char* type, const std::vector<std::pair<const char*, const char*>>& opts,
                        unsigned attrs) {
  UniqueFd fsfd(::fsopen(type, FSOPEN_CLOEXEC));
  if (!fsfd) return sys_err(fmt::format("fsopen({})", type));
  for (const auto& [k, v] : opts) {
    int rc = v ? ::fsconfig(fsfd.get(), FSCONFIG_SET_STRING, k, v, 0)
               : ::fsconfig(fsfd.get(), FSCONFIG_SET_FLAG, k, nullptr, 0);
    if (rc != 0) return sys_err(fmt::format("fsconfig({}, {}={})", type, k, v ? v : ""));
  }
  if (::fsconfig(fsfd.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0)
    return sys_err(fmt::format("fsconfig({}, create)", type));
  int m = ::fsmount(fsfd.get(), FSMOUNT_CLOEXEC, attrs);
  if (m < 0) return sys_err(fmt::format("fsmount({})", type));
  return UniqueFd(m);
}

// A detached clone of the mount tree at an already-open path.
Result<UniqueFd> clone_tree(int src_fd, bool recursive, const std::string& what) {
  int m = ::open_tree(src_fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0));
  if (m < 0) return sys_err(fmt::format("open_tree({})", what));
  return UniqueFd(m);
}

class RootBuilder {
 public:
  RootBuilder(const fs::Plan& plan, const std::function<Status()>& wait) : plan_(plan), wait_(wait) {}

  Status run() {
    // 1. Nothing we mount may propagate back to the host, and nothing the
    //    host mounts later appears in here.
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
      return sys_err("mount(/, MS_REC|MS_PRIVATE)");
    // 2. Open every host source now, while "/" is still the host's tree and
    //    before anything is mounted in this namespace. Opened with no symlinks
    //    allowed: the policy resolved them on purpose, a swap since fails.
    for (const auto& m : plan_.mounts) {
      if (m.kind != K::BindHost && m.kind != K::DevNode) continue;
      auto fd = sys::open_path_nofollow(m.source);
      if (!fd) return err("{} (for {})", fd.error().message, m.why);
      sources_.emplace(&m, std::move(*fd));  // by step: two steps may share a target
    }
    // 3. Staging: a private tmpfs that holds the empty stand-in file. It is
    //    never attached anywhere the host can see.
    auto staging = new_fs("tmpfs", {{"mode", "0700"}, {"size", "64k"}}, kSafe | MOUNT_ATTR_NOEXEC);
    if (!staging) return staging.error();
    staging_ = std::move(*staging);
    UniqueFd empty(::openat(staging_.get(), "empty", O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0444));
    if (!empty) return sys_err("create staging stand-in file");
    // 4. The new root: a recursive clone of the host's tree, read-only,
    //    nosuid and nodev on every mount in it.
    auto rootfd = sys::open_path_nofollow("/", O_DIRECTORY);
    if (!rootfd) return rootfd.error();
    auto root = clone_tree(rootfd->get(), true, "/");
    if (!root) return root.error();
    AIRLOCK_TRY(set_attr(root->get(), MOUNT_ATTR_RDONLY | kSafe, true, "new root"));
    // Attached over /proc only so that it is part of this namespace's tree
    // (a detached tree cannot be mounted on before Linux 6.15). /proc, because
    // no policy path may lie under it: a recursive bind of a source would
    // otherwise carry the new root along (e.g. a workspace at /tmp). The
    // host's /proc is untouched, this namespace is private.
    auto proc = sys::open_path_nofollow("/proc", O_DIRECTORY);
    if (!proc) return proc.error();
    if (::move_mount(root->get(), "", proc->get(), "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) != 0)
      return sys_err("move_mount(new root, /proc)");
    root_ = std::move(*root);
    // 5. The plan's steps, in order. Steps on placeholders wait until the
    //    supervisor, working in parallel, has created them.
    bool waited = false;
    for (const auto& m : plan_.mounts) {
      if (m.after_placeholders && !waited) {
        AIRLOCK_TRY(wait_());
        waited = true;
      }
      auto st = step(m);
      if (!st) return err("{} (mounting {} for {})", st.error().message, m.target, m.why);
      log::debug("mounted {} ({})", m.target, m.why);
    }
    if (!waited) AIRLOCK_TRY(wait_());
    // 6. Seal: stand-ins and /dev become read-only now that nothing more is
    //    mounted inside them.
    for (auto& [what, fd] : seal_) AIRLOCK_TRY(set_attr(fd.get(), MOUNT_ATTR_RDONLY, false, what));
    // 7. Enter: the new root becomes "/", the host's tree is detached and
    //    unreachable from here on.
    if (::fchdir(root_.get()) != 0) return sys_err("fchdir(new root)");
    if (sys::pivot_root(".", ".") != 0) return sys_err("pivot_root(., .)");
    if (::umount2(".", MNT_DETACH) != 0) return sys_err("umount2(old root, MNT_DETACH)");
    if (::chdir("/") != 0) return sys_err("chdir(/)");
    return {};
  }

 private:
  Status step(const MountOp& m) {
    switch (m.kind) {
      case K::BindHost: {
        auto mnt = clone_tree(sources_.at(&m).get(), true, m.source);
        if (!mnt) return mnt.error();
        AIRLOCK_TRY(set_attr(mnt->get(), kSafe | (m.read_only ? MOUNT_ATTR_RDONLY : 0), true, m.target));
        return attach(*mnt, m);
      }
      case K::StandIn: {
        if (m.is_dir) {
          auto mnt = new_fs("tmpfs", {{"mode", "0555"}, {"size", "16k"}, {"nr_inodes", "64"}}, kSafe | MOUNT_ATTR_NOEXEC);
          if (!mnt) return mnt.error();
          AIRLOCK_TRY(attach(*mnt, m));
          track_ours(m.target);
          seal_.emplace_back(m.target, std::move(*mnt));
          return {};
        }
        auto src = sys::openat2(staging_.get(), "empty", O_PATH | O_NOFOLLOW, RESOLVE_BENEATH);
        if (!src) return src.error();
        auto mnt = clone_tree(src->get(), false, "stand-in file");
        if (!mnt) return mnt.error();
        AIRLOCK_TRY(set_attr(mnt->get(), kSafe | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOEXEC, false, m.target));
        return attach(*mnt, m);
      }
      case K::Tmpfs:
      case K::DevTmpfs: {
        std::string size = std::to_string(m.size_bytes ? m.size_bytes : (1ULL << 20));
        std::vector<std::pair<const char*, const char*>> opts = {
            {"mode", m.kind == K::Tmpfs && m.target != "/run" ? "1777" : "0755"}};
        if (m.kind == K::DevTmpfs || m.size_bytes) opts.emplace_back("size", size.c_str());
        auto mnt = new_fs("tmpfs", opts, kSafe | (m.kind == K::DevTmpfs ? MOUNT_ATTR_NOEXEC : 0));
        if (!mnt) return mnt.error();
        AIRLOCK_TRY(attach(*mnt, m));
        track_ours(m.target);
        if (m.kind == K::DevTmpfs) seal_.emplace_back(m.target, std::move(*mnt));
        return {};
      }
      case K::Proc: {
        auto mnt = new_fs("proc", {}, kSafe | MOUNT_ATTR_NOEXEC);
        if (!mnt) return mnt.error();
        return attach(*mnt, m);
      }
      case K::ProcReadOnly: {
        auto src = sys::open_beneath(root_.get(), m.target, O_PATH);
        if (!src) return {};  // not present on this kernel: nothing to protect
        auto mnt = clone_tree(src->get(), true, m.target);
        if (!mnt) return mnt.error();
        AIRLOCK_TRY(set_attr(mnt->get(), kSafe | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOEXEC, true, m.target));
        if (::move_mount(mnt->get(), "", src->get(), "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) != 0)
          return sys_err("move_mount");
        return {};
      }
      case K::DevNode: {
        auto mnt = clone_tree(sources_.at(&m).get(), false, m.source);
        if (!mnt) return mnt.error();
        AIRLOCK_TRY(set_attr(mnt->get(), MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, false, m.target));
        return attach(*mnt, m);
      }
      case K::Devpts: {
        auto mnt = new_fs("devpts", {{"newinstance", nullptr}, {"ptmxmode", "0666"}, {"mode", "0620"}},
                          MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC);
        if (!mnt) return mnt.error();
        return attach(*mnt, m);
      }
      case K::Symlink: {
        auto dir = sys::open_beneath(root_.get(), fs::parent(m.target), O_PATH | O_DIRECTORY);
        if (!dir) return dir.error();
        AIRLOCK_TRY(check_ours(dir->get(), m.target));
        std::string name = m.target.substr(m.target.rfind('/') + 1);
        if (::symlinkat(m.source.c_str(), dir->get(), name.c_str()) != 0)
          return sys_err(fmt::format("symlinkat({})", m.target));
        return {};
      }
    }
    return {};
  }

  // Opens the mount point, creating it first when the plan says it lies in
  // an airlock tmpfs (checked again here: never create in a host folder).
  Status attach(const UniqueFd& mnt, const MountOp& m) {
    auto target = sys::open_beneath(root_.get(), m.target, O_PATH);
    struct stat gone {};
    if (!target && m.optional && ::fstatat(root_.get(), m.target.c_str() + 1, &gone, AT_SYMLINK_NOFOLLOW) != 0 &&
        errno == ENOENT) {
      log::debug("skipped {}: gone since the policy was made", m.target);
      return {};
    }
    if (!target && m.create_target) {
      AIRLOCK_TRY(create_in_ours(m.target, m.is_dir));
      target = sys::open_beneath(root_.get(), m.target, O_PATH);
    }
    if (!target) return target.error();
    struct stat st {};
    if (::fstat(target->get(), &st) != 0) return sys_err("fstat(mount point)");
    if (S_ISDIR(st.st_mode) != m.is_dir)
      return err("{} changed type since the policy was made (a folder and a file swapped)", m.target);
    if (::move_mount(mnt.get(), "", target->get(), "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) != 0)
      return sys_err("move_mount");
    return {};
  }

  void track_ours(const std::string& target) {
    auto fd = sys::open_beneath(root_.get(), target, O_PATH | O_DIRECTORY);
    struct stat st {};
    if (fd && ::fstat(fd->get(), &st) == 0) ours_.insert(st.st_dev);
  }

  Status check_ours(int dirfd, const std::string& what) {
    struct stat st {};
    if (::fstat(dirfd, &st) != 0) return sys_err("fstat");
    if (!ours_.count(st.st_dev)) return err("internal: refusing to create {} outside airlock's own tmpfs", what);
    return {};
  }

  Status create_in_ours(const std::string& target, bool is_dir) {
    // Walk down from the deepest existing ancestor, creating each missing
    // component inside an airlock tmpfs only.
    std::vector<std::string> comps;
    for (std::string p = target; p != "/"; p = fs::parent(p)) comps.insert(comps.begin(), p);
    for (size_t i = 0; i < comps.size(); ++i) {
      if (sys::open_beneath(root_.get(), comps[i], O_PATH)) continue;
      auto dir = sys::open_beneath(root_.get(), fs::parent(comps[i]), O_PATH | O_DIRECTORY);
      if (!dir) return dir.error();
      AIRLOCK_TRY(check_ours(dir->get(), comps[i]));
      std::string name = comps[i].substr(comps[i].rfind('/') + 1);
      bool last = i + 1 == comps.size();
      if (!last || is_dir) {
        if (::mkdirat(dir->get(), name.c_str(), 0755) != 0 && errno != EEXIST)
          return sys_err(fmt::format("mkdirat({})", comps[i]));
      } else {
        UniqueFd f(::openat(dir->get(), name.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644));
        if (!f && errno != EEXIST) return sys_err(fmt::format("create({})", comps[i]));
      }
    }
    return {};
  }

  const fs::Plan& plan_;
  const std::function<Status()>& wait_;
  std::map<const MountOp*, UniqueFd> sources_;
  UniqueFd staging_, root_;
  std::set<dev_t> ours_;
  std::vector<std::pair<std::string, UniqueFd>> seal_;
};

}  // namespace

Status build_and_enter_root(const fs::Plan& plan, const std::function<Status()>& wait_placeholders) {
  return RootBuilder(plan, wait_placeholders).run();
}

}  // namespace airlock::sandbox
