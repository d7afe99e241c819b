#include "fs/placeholders.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <set>
#include <cerrno>
#include <cstring>
#include <functional>
#include <sstream>

#include "fs/path.h"
#include "util/log.h"
#include "util/sys.h"

namespace airlock::fs {

namespace {

// Per-user folder for the registry: $XDG_RUNTIME_DIR/airlock, else
// /tmp/airlock-UID; must be ours, mode 0700, not a symlink.
// A private folder of this user for the registry, outside every sandbox's
// view: $XDG_RUNTIME_DIR/airlock (the sandbox's /run is private), else
// /tmp/airlock-UID (its /tmp is private), else ~/.cache/airlock when another
// user squats the /tmp name (a built-in secret path, so hidden inside).
Result<std::string> state_dir() {
  auto usable = [](const std::string& dir) {
    struct stat st {};
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return false;
    return ::lstat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == ::getuid() &&
           (st.st_mode & 077) == 0;
  };
  const char* xdg = ::getenv("XDG_RUNTIME_DIR");
  struct stat st {};
  if (xdg && xdg[0] == '/' && ::stat(xdg, &st) == 0 && st.st_uid == ::getuid() && usable(std::string(xdg) + "/airlock"))
    return std::string(xdg) + "/airlock";
  std::string tmp = fmt::format("/tmp/airlock-{}", ::getuid());
  if (usable(tmp)) return tmp;
  const char* home = ::getenv("HOME");
  if (home && home[0] == '/') {
    std::string cache = std::string(home) + "/.cache";
    (void)::mkdir(cache.c_str(), 0700);
    if (usable(cache + "/airlock")) return cache + "/airlock";
  }
  return err("{}: not a private folder of this user, and no other place for airlock's state", tmp);
}

std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  ::lseek(fd, 0, SEEK_SET);
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}

void write_registry(int fd, const std::string& s) {
  // Best effort: a registry that failed to write only means a leftover
  // placeholder is not cleaned by a later run.
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, s.data(), s.size(), 0) < 0)
    log::debug("placeholder registry: {}", std::strerror(errno));
}

// Registry entries are "d PATH" / "f PATH", NUL-separated: a path may hold
// any byte but NUL. The registry lives in a folder no sandbox can see.
std::vector<std::string> entries(const std::string& registry) { return split_on(registry, '\0'); }

// Removes one placeholder if it is still empty. Looked up without following
// symlinks: a link planted in its place is left alone.
void remove_if_empty(const std::string& entry) {
  if (entry.size() < 3 || entry[1] != ' ') return;
  bool dir = entry[0] == 'd';
  std::string path = entry.substr(2);
  if (path.empty() || path[0] != '/' || path != normalize(path) || path == "/") return;
  auto parent_fd = sys::open_path_nofollow(parent(path), O_DIRECTORY);
  if (!parent_fd) return;
  std::string name = path.substr(path.rfind('/') + 1);
  struct stat st {};
  if (::fstatat(parent_fd->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return;
  if (dir && S_ISDIR(st.st_mode)) {
    (void)::unlinkat(parent_fd->get(), name.c_str(), AT_REMOVEDIR);  // fails if not empty: kept
  } else if (!dir && S_ISREG(st.st_mode) && st.st_size == 0) {
    (void)::unlinkat(parent_fd->get(), name.c_str(), 0);
  }
}

void sweep(const std::string& registry) {
  for (const auto& e : entries(registry)) remove_if_empty(e);
}

}  // namespace

namespace {
std::string entry_path(const std::string& e) { return e.size() > 2 ? e.substr(2) : ""; }

// Each placeholder has a one-byte range of the hold file, at an offset
// derived from its path: a run that relies on the placeholder keeps a shared
// (open-file-description) lock on it; whoever can take it exclusively is the
// last user and removes the placeholder. No file per placeholder, and the
// janitor shares the locks by inheriting the description.
off_t range_of(const std::string& entry) {
  return static_cast<off_t>(std::hash<std::string>{}(entry_path(entry)) & ((1ULL << 40) - 1));
}

bool range_lock(int fd, const std::string& entry, short type, bool wait) {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = range_of(entry);
  fl.l_len = 1;
  return ::fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl) == 0;
}
}  // namespace

void release_placeholders(int lock_fd, int hold_fd, const std::vector<std::string>& held) {
  (void)::flock(lock_fd, LOCK_EX);
  std::set<std::string> done;
  for (const auto& entry : held) {
    // Last user: nobody else holds it shared.
    if (range_lock(hold_fd, entry, F_WRLCK, false)) {
      remove_if_empty(entry);
      done.insert(entry);
    }
    (void)range_lock(hold_fd, entry, F_UNLCK, false);
  }
  std::string registry;
  for (const auto& e : entries(read_all(lock_fd)))
    if (!done.count(e)) registry += e + std::string(1, '\0');
  write_registry(lock_fd, registry);
  (void)::flock(lock_fd, LOCK_UN);
}

Result<PlaceholderLease> PlaceholderLease::acquire(const std::vector<Placeholder>& items,
                                                   const std::vector<std::string>& watched) {
  PlaceholderLease lease;
  // One registry for all of the user's runs (a run on ws/proj creates
  // placeholders a run on ws binds as if they were real files), and a hold
  // per placeholder: every run that relies on a placeholder, because it made
  // it or because it found it registered, holds it; the last one removes it.
  auto dir = state_dir();
  if (!dir) return dir.error();
  lease.lock_.reset(::open((*dir + "/placeholders.lock").c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
  lease.hold_.reset(::open((*dir + "/placeholders.hold").c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!lease.lock_ || !lease.hold_) return sys_err(fmt::format("open({}/placeholders.lock)", *dir));
  if (::flock(lease.lock_.get(), LOCK_EX) != 0) return sys_err("flock(placeholder registry)");
  std::vector<std::string> registry = entries(read_all(lease.lock_.get()));
  std::set<std::string> watched_set(watched.begin(), watched.end());
  auto hold = [&](const std::string& entry) -> bool {
    if (!range_lock(lease.hold_.get(), entry, F_RDLCK, true)) return false;
    lease.holds_.push_back(entry);
    return true;
  };
  // Registered placeholders: ours to rely on (held), or left over by runs
  // that are all gone (removed now).
  std::vector<std::string> kept;
  for (const auto& e : registry) {
    if (watched_set.count(entry_path(e))) {
      if (hold(e)) kept.push_back(e);
      continue;
    }
    if (range_lock(lease.hold_.get(), e, F_WRLCK, false)) {
      remove_if_empty(e);
      (void)range_lock(lease.hold_.get(), e, F_UNLCK, false);
    } else {
      kept.push_back(e);  // another run still relies on it
    }
  }
  Status status;
  for (const auto& p : items) {
    auto parent_fd = sys::open_path_nofollow(parent(p.path), O_DIRECTORY);
    if (!parent_fd) { status = err("placeholder {}: {}", p.path, parent_fd.error().message); break; }
    std::string name = p.path.substr(p.path.rfind('/') + 1);
    std::string entry = fmt::format("{} {}", p.dir ? 'd' : 'f', p.path);
    int rc;
    if (p.dir) {
      rc = ::mkdirat(parent_fd->get(), name.c_str(), 0755);
    } else {
      int f = ::openat(parent_fd->get(), name.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
      rc = f < 0 ? -1 : ::close(f);
    }
    if (rc != 0 && errno != EEXIST) { status = sys_err(fmt::format("create placeholder {}", p.path)); break; }
    bool registered = std::find(kept.begin(), kept.end(), entry) != kept.end();
    if (rc == 0 && !registered) {
      kept.push_back(entry);
      if (!hold(entry)) { status = err("placeholder {}: cannot hold it", p.path); break; }
    }
    log::debug("placeholder {} {}", p.dir ? "folder" : "file", p.path);
  }
  std::string out;
  for (const auto& e : kept) out += e + std::string(1, '\0');
  write_registry(lease.lock_.get(), out);
  (void)::flock(lease.lock_.get(), LOCK_UN);
  lease.active_ = true;
  if (!status) {
    lease.release();
    return status.error();
  }
  if (lease.holds_.empty()) return lease;  // nothing to clean up after a SIGKILL
  // The janitor: a process of its own session that outlives a SIGKILL of
  // airlock. It waits for EOF on the pipe; "x" first means a clean release.
  int pfd[2];
  if (::pipe2(pfd, O_CLOEXEC) != 0) return sys_err("pipe2(janitor)");
  UniqueFd rd(pfd[0]), wr(pfd[1]);
  pid_t pid = ::fork();
  if (pid < 0) return sys_err("fork(janitor)");
  if (pid == 0) {
    ::setsid();
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    wr.reset();
    // Keep only what the janitor needs: the registry lock, the holds and the pipe.
    sys::close_all_except({lease.lock_.get(), lease.hold_.get(), rd.get()});
    for (int fd = 0; fd < 3; ++fd) {
      int n = ::open("/dev/null", O_RDWR);
      if (n >= 0 && n != fd) { ::dup2(n, fd); ::close(n); }
    }
    // Messages: "p" + pid of the sandbox's init once it exists; "x" for a
    // clean release by the supervisor. EOF without "x": airlock died.
    pid_t init = -1;
    for (;;) {
      char msg[1 + sizeof(pid_t)];
      ssize_t n;
      do n = ::read(rd.get(), msg, 1);
      while (n < 0 && errno == EINTR);
      if (n != 1) break;
      if (msg[0] == 'x') ::_exit(0);
      if (msg[0] == 'p' && sys::read_exact(rd.get(), &init, sizeof init)) continue;
    }
    // Remove nothing while the sandbox may still run: wait for init to go
    // (it dies with the supervisor, so this is short).
    if (init > 0) {
      int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, init, 0));
      if (pidfd >= 0) {
        struct pollfd pf = {pidfd, POLLIN, 0};
        (void)::poll(&pf, 1, 10000);
      }
    }
    lease.release_now();
    ::_exit(0);
  }
  lease.janitor_ = pid;
  lease.janitor_pipe_ = std::move(wr);
  return lease;
}

void PlaceholderLease::watch(pid_t init) {
  if (!janitor_pipe_) return;
  char msg[1 + sizeof(pid_t)];
  msg[0] = 'p';
  std::memcpy(msg + 1, &init, sizeof init);
  (void)sys::write_all(janitor_pipe_.get(), msg, sizeof msg);
}

void PlaceholderLease::release_now() { release_placeholders(lock_.get(), hold_.get(), holds_); }

void PlaceholderLease::release() {
  if (!active_) return;
  active_ = false;
  release_now();
  if (janitor_pipe_) {
    (void)sys::write_all(janitor_pipe_.get(), "x", 1);
    janitor_pipe_.reset();
    (void)::waitpid(janitor_, nullptr, 0);
  }
}

PlaceholderLease& PlaceholderLease::operator=(PlaceholderLease&& o) noexcept {
  if (this != &o) {
    release();
    lock_ = std::move(o.lock_);
    hold_ = std::move(o.hold_);
    holds_ = std::move(o.holds_);
    janitor_pipe_ = std::move(o.janitor_pipe_);
    janitor_ = std::exchange(o.janitor_, -1);
    active_ = std::exchange(o.active_, false);
  }
  return *this;
}

PlaceholderLease::~PlaceholderLease() { release(); }

}  // namespace airlock::fs
