#include "fs/placeholders.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

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
Result<std::string> state_dir() {
  std::string base;
  const char* xdg = ::getenv("XDG_RUNTIME_DIR");
  struct stat st {};
  if (xdg && xdg[0] == '/' && ::stat(xdg, &st) == 0 && st.st_uid == ::getuid())
    base = std::string(xdg) + "/airlock";
  else
    base = fmt::format("/tmp/airlock-{}", ::getuid());
  if (::mkdir(base.c_str(), 0700) != 0 && errno != EEXIST) return sys_err(fmt::format("mkdir({})", base));
  if (::lstat(base.c_str(), &st) != 0) return sys_err(fmt::format("lstat({})", base));
  if (!S_ISDIR(st.st_mode) || st.st_uid != ::getuid() || (st.st_mode & 077) != 0)
    return err("{}: not a private folder of this user; refusing to keep state there", base);
  return base;
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

// Removes one placeholder if it is still empty. Looked up without following
// symlinks: a link planted in its place is left alone.
void remove_if_empty(const std::string& line) {
  if (line.size() < 3) return;
  bool dir = line[0] == 'd';
  std::string path = line.substr(2);
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

}  // namespace

void release_placeholders(int lock_fd, int hold_fd) {
  (void)::flock(lock_fd, LOCK_EX);
  // Only the last holder cleans up: the exclusive hold succeeds only when no
  // other airlock run on this workspace still holds its shared one.
  if (::flock(hold_fd, LOCK_EX | LOCK_NB) == 0) {
    std::istringstream in(read_all(lock_fd));
    for (std::string line; std::getline(in, line);) remove_if_empty(line);
    write_registry(lock_fd, "");
  }
  (void)::flock(hold_fd, LOCK_UN);
  (void)::flock(lock_fd, LOCK_UN);
}

Result<PlaceholderLease> PlaceholderLease::acquire(const std::string& workspace,
                                                   const std::vector<Placeholder>& items) {
  PlaceholderLease lease;
  if (items.empty()) return lease;
  auto dir = state_dir();
  if (!dir) return dir.error();
  std::string key = fmt::format("{}/ws-{:016x}", *dir, std::hash<std::string>{}(workspace));
  lease.lock_.reset(::open((key + ".lock").c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
  lease.hold_.reset(::open((key + ".hold").c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!lease.lock_ || !lease.hold_) return sys_err(fmt::format("open({}.lock)", key));
  if (::flock(lease.lock_.get(), LOCK_EX) != 0) return sys_err("flock(placeholder registry)");
  std::string registry = read_all(lease.lock_.get());
  if (::flock(lease.hold_.get(), LOCK_EX | LOCK_NB) == 0) {
    // Nobody else is running here: leftovers of a run that died with its
    // janitor are cleaned now.
    std::istringstream in(registry);
    for (std::string line; std::getline(in, line);) remove_if_empty(line);
    registry.clear();
  }
  if (::flock(lease.hold_.get(), LOCK_SH) != 0) return sys_err("flock(placeholder hold)");
  Status status;
  for (const auto& p : items) {
    auto parent_fd = sys::open_path_nofollow(parent(p.path), O_DIRECTORY);
    if (!parent_fd) { status = err("placeholder {}: {}", p.path, parent_fd.error().message); break; }
    std::string name = p.path.substr(p.path.rfind('/') + 1);
    std::string line = fmt::format("{} {}\n", p.dir ? 'd' : 'f', p.path);
    int rc;
    if (p.dir) {
      rc = ::mkdirat(parent_fd->get(), name.c_str(), 0755);
    } else {
      int f = ::openat(parent_fd->get(), name.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
      rc = f < 0 ? -1 : ::close(f);
    }
    if (rc != 0 && errno != EEXIST) { status = sys_err(fmt::format("create placeholder {}", p.path)); break; }
    if (rc == 0 && registry.find(line) == std::string::npos) registry += line;
    log::debug("placeholder {} {}", p.dir ? "folder" : "file", p.path);
  }
  write_registry(lease.lock_.get(), registry);
  (void)::flock(lease.lock_.get(), LOCK_UN);
  lease.active_ = true;
  if (!status) {
    lease.release();
    return status.error();
  }
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
    for (int fd = 0; fd < 3; ++fd) {
      int n = ::open("/dev/null", O_RDWR);
      if (n >= 0 && n != fd) { ::dup2(n, fd); ::close(n); }
    }
    char c = 0;
    ssize_t n;
    do n = ::read(rd.get(), &c, 1);
    while (n < 0 && errno == EINTR);
    if (n == 1 && c == 'x') ::_exit(0);
    release_placeholders(lease.lock_.get(), lease.hold_.get());
    ::_exit(0);
  }
  lease.janitor_ = pid;
  lease.janitor_pipe_ = std::move(wr);
  return lease;
}

void PlaceholderLease::release() {
  if (!active_) return;
  active_ = false;
  release_placeholders(lock_.get(), hold_.get());
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
    janitor_pipe_ = std::move(o.janitor_pipe_);
    janitor_ = std::exchange(o.janitor_, -1);
    active_ = std::exchange(o.active_, false);
  }
  return *this;
}

PlaceholderLease::~PlaceholderLease() { release(); }

}  // namespace airlock::fs
