// probe: tries one thing an attacker inside the sandbox would try, and
// prints "OK" or "ERR <errno-name>" so tests can assert the exact outcome.
//   probe read PATH | write PATH | create PATH | unlink PATH | rename A B |
//         link A B | symlink TARGET PATH | truncate PATH | mkdir PATH |
//         remount-rw PATH | umount PATH | bind SRC DST |
//         userns-remount-rw PATH | userns-umount PATH |
//         handle PATH | chroot PATH | tiocsti FD | caps | kill PID SIG |
//         ptrace PID | connect-inet IP PORT | connect-unix PATH |
//         umount-read MNT FILE | remount-write MNT FILE | nested OP ARGS...
// "nested OP ..." first enters a new user + mount namespace (where the probe
// holds every capability), then runs OP there: the attack an unprivileged
// process can always try. Its uid map is best effort: mapping root needs
// CAP_SETFCAP above, and capabilities do not depend on the map.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <string>

static int report(int rc) {
  if (rc == 0) {
    printf("OK\n");
    return 0;
  }
  printf("ERR %s\n", strerrorname_np(errno) ? strerrorname_np(errno) : "?");
  return 1;
}

static int enter_userns() {
  uid_t uid = getuid();
  gid_t gid = getgid();
  if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) return -1;
  char buf[64];
  int fd = open("/proc/self/setgroups", O_WRONLY);
  if (fd >= 0) { (void)!write(fd, "deny", 4); close(fd); }
  snprintf(buf, sizeof buf, "0 %u 1", uid);
  fd = open("/proc/self/uid_map", O_WRONLY);
  if (fd < 0 || write(fd, buf, strlen(buf)) < 0) return -1;
  close(fd);
  snprintf(buf, sizeof buf, "0 %u 1", gid);
  fd = open("/proc/self/gid_map", O_WRONLY);
  if (fd < 0 || write(fd, buf, strlen(buf)) < 0) return -1;
  close(fd);
  return 0;
}

// Like report(), with the step's name first: "NAME OK" or "NAME ERR <errno>".
static int step(const char* name, int rc) {
  if (rc == 0) {
    printf("%s OK\n", name);
  } else {
    printf("%s ERR %s\n", name, strerrorname_np(errno) ? strerrorname_np(errno) : "?");
  }
  fflush(stdout);
  return rc == 0 ? 0 : 1;
}

static int enter_userns_loose() {
  uid_t uid = getuid();
  gid_t gid = getgid();
  if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) return -1;
  char buf[64];
  int fd = open("/proc/self/setgroups", O_WRONLY);
  if (fd >= 0) { (void)!write(fd, "deny", 4); close(fd); }
  snprintf(buf, sizeof buf, "0 %u 1", uid);
  fd = open("/proc/self/uid_map", O_WRONLY);
  if (fd >= 0) { (void)!write(fd, buf, strlen(buf)); close(fd); }
  snprintf(buf, sizeof buf, "0 %u 1", gid);
  fd = open("/proc/self/gid_map", O_WRONLY);
  if (fd >= 0) { (void)!write(fd, buf, strlen(buf)); close(fd); }
  return 0;
}

static int dispatch(int argc, char** argv);

int main(int argc, char** argv) { return dispatch(argc, argv); }

static int dispatch(int argc, char** argv) {
  if (argc < 2) return 2;
  std::string op = argv[1];
  const char* a = argc > 2 ? argv[2] : "";
  const char* b = argc > 3 ? argv[3] : "";
  if (op == "nested") {
    if (step("userns", enter_userns_loose()) != 0) return 1;
    return dispatch(argc - 1, argv + 1);
  }
  if (op == "umount-read") {  // detach a mount, then read what it covered
    step("umount", umount2(a, MNT_DETACH));
    int fd = open(b, O_RDONLY);
    if (fd < 0) return step("read", -1);
    char buf[256];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n < 0) return step("read", -1);
    buf[n] = 0;
    printf("read OK %s\n", buf);
    return 0;
  }
  if (op == "remount-write") {  // make a mount writable, then write below it
    step("remount", mount(nullptr, a, nullptr, MS_REMOUNT | MS_BIND, nullptr));
    int fd = open(b, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) return step("write", -1);
    return step("write", write(fd, "pwned\n", 6) == 6 ? 0 : -1);
  }
  if (op == "read") {
    int fd = open(a, O_RDONLY);
    if (fd < 0) return report(-1);
    char buf[256];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n < 0) return report(-1);
    buf[n] = 0;
    printf("OK %s\n", buf);
    return 0;
  }
  if (op == "write") {
    int fd = open(a, O_WRONLY | O_APPEND);
    if (fd < 0) return report(-1);
    return report(write(fd, "pwned\n", 6) == 6 ? 0 : -1);
  }
  if (op == "create") return report(open(a, O_WRONLY | O_CREAT | O_EXCL, 0644) >= 0 ? 0 : -1);
  if (op == "unlink") return report(unlink(a));
  if (op == "rmdir") return report(rmdir(a));
  if (op == "rename") return report(rename(a, b));
  if (op == "link") return report(link(a, b));
  if (op == "symlink") return report(symlink(a, b));
  if (op == "truncate") return report(truncate(a, 0));
  if (op == "mkdir") return report(mkdir(a, 0755));
  if (op == "remount-rw") return report(mount(nullptr, a, nullptr, MS_REMOUNT | MS_BIND, nullptr));
  if (op == "umount") return report(umount2(a, MNT_DETACH));
  if (op == "bind") return report(mount(a, b, nullptr, MS_BIND | MS_REC, nullptr));
  if (op == "userns-remount-rw") {
    if (enter_userns() != 0) return report(-1);
    return report(mount(nullptr, a, nullptr, MS_REMOUNT | MS_BIND, nullptr));
  }
  if (op == "userns-umount") {
    if (enter_userns() != 0) return report(-1);
    return report(umount2(a, MNT_DETACH));
  }
  if (op == "userns-bind") {  // bind a stand-in's underlying path elsewhere
    if (enter_userns() != 0) return report(-1);
    return report(mount(a, b, nullptr, MS_BIND, nullptr));
  }
  if (op == "handle") {
    struct file_handle* fh = static_cast<struct file_handle*>(malloc(sizeof(*fh) + MAX_HANDLE_SZ));
    fh->handle_bytes = MAX_HANDLE_SZ;
    int mount_id;
    if (name_to_handle_at(AT_FDCWD, a, fh, &mount_id, 0) != 0) return report(-1);
    int fd = open_by_handle_at(AT_FDCWD, fh, O_RDONLY);
    return report(fd >= 0 ? 0 : -1);
  }
  if (op == "chroot") return report(chroot(a));
  if (op == "tiocsti") {
    char c = 'x';
    return report(ioctl(atoi(a), TIOCSTI, &c));
  }
  if (op == "kill") return report(kill(atoi(a), atoi(b)));
  if (op == "ptrace") return report(static_cast<int>(ptrace(PTRACE_ATTACH, atoi(a), nullptr, nullptr)));
  if (op == "connect-inet") {
    int s = socket(strchr(a, ':') ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
    if (s < 0) return report(-1);
    if (strchr(a, ':')) {
      struct sockaddr_in6 sa {};
      sa.sin6_family = AF_INET6;
      sa.sin6_port = htons(static_cast<uint16_t>(atoi(b)));
      inet_pton(AF_INET6, a, &sa.sin6_addr);
      return report(connect(s, reinterpret_cast<sockaddr*>(&sa), sizeof sa));
    }
    struct sockaddr_in sa {};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(atoi(b)));
    inet_pton(AF_INET, a, &sa.sin_addr);
    return report(connect(s, reinterpret_cast<sockaddr*>(&sa), sizeof sa));
  }
  if (op == "connect-unix" || op == "connect-abstract") {
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa {};
    sa.sun_family = AF_UNIX;
    socklen_t len;
    if (op == "connect-abstract") {
      sa.sun_path[0] = 0;
      strncpy(sa.sun_path + 1, a, sizeof sa.sun_path - 2);
      len = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(a));
    } else {
      strncpy(sa.sun_path, a, sizeof sa.sun_path - 1);
      len = sizeof sa;
    }
    return report(connect(s, reinterpret_cast<sockaddr*>(&sa), len));
  }
  fprintf(stderr, "probe: unknown op %s\n", op.c_str());
  return 2;
}
