#include "sandbox/watch.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>

#include "fs/path.h"
#include "util/sys.h"

namespace airlock::sandbox {

Result<MountWatch> MountWatch::start(const std::vector<std::string>& paths) {
  MountWatch w;
  if (paths.empty()) return w;
  w.fd_.reset(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (!w.fd_) return sys_err("inotify_init1");
  for (const auto& p : paths) {
    std::string dir = fs::parent(p);
    std::string name = p.substr(p.rfind('/') + 1);
    if (!w.names_.count(dir)) {
      int wd = ::inotify_add_watch(w.fd_.get(), dir.c_str(),
                                   IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF |
                                       IN_DONT_FOLLOW | IN_ONLYDIR);
      if (wd < 0) return sys_err(fmt::format("inotify_add_watch({})", dir));
      w.dirs_[wd] = dir;
    }
    w.names_[dir].insert(name);
  }
  return w;
}

void MountWatch::release_later() {
  if (!fd_) return;
  int pfd[2];
  if (::pipe2(pfd, O_CLOEXEC) != 0) return;  // then it is released here, slowly
  pid_t pid = ::fork();
  if (pid == 0) {
    // Holds the watch until the supervisor is gone (EOF), then exits.
    ::setsid();
    ::close(pfd[1]);
    for (int fd = 0; fd < 3; ++fd) ::close(fd);
    sys::close_all_except({pfd[0], fd_.get()});
    char c;
    while (::read(pfd[0], &c, 1) < 0 && errno == EINTR) {
    }
    ::_exit(0);
  }
  ::close(pfd[0]);
  if (pid < 0) ::close(pfd[1]);
  // The write end stays open (close-on-exec) until this process exits.
  fd_.reset();
}

std::string MountWatch::check() {
  alignas(struct inotify_event) char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd_.get(), buf, sizeof buf);
    if (n <= 0) return "";
    for (char* p = buf; p < buf + n;) {
      auto* ev = reinterpret_cast<struct inotify_event*>(p);
      p += sizeof(struct inotify_event) + ev->len;
      // Lost events could hide a replacement: fail closed.
      if (ev->mask & IN_Q_OVERFLOW) return "(the watch's event queue overflowed, so a protected path)";
      auto it = dirs_.find(ev->wd);
      if (it == dirs_.end()) continue;
      const std::string& dir = it->second;
      if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF)) return dir;
      std::string name = ev->len ? std::string(ev->name) : "";
      if (names_[dir].count(name)) return dir + "/" + name;
    }
  }
}

}  // namespace airlock::sandbox
