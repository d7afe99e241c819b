// probe: tries one thing an attacker inside the sandbox would try, and
// prints "OK" or "ERR <errno-name>" so tests can assert the exact outcome.
//   probe read PATH | write PATH | create PATH | unlink PATH | rename A B |
//         link A B | symlink TARGET PATH | truncate PATH | mkdir PATH |
//         remount-rw PATH | umount PATH | bind SRC DST |
//         userns-remount-rw PATH | userns-umount PATH |
//         handle PATH | chroot PATH | tiocsti FD | caps | kill PID SIG |
//         ptrace PID | connect-inet IP PORT | connect-unix PATH |
//         umount-read MNT FILE | remount-write MNT FILE | nested OP ARGS... |
//         sys NAME | socket FAMILY TYPE PROTO | socketpair FAMILY TYPE PROTO |
//         ioctl FD CMD | udp-send IP PORT | unix-self PATH | abstract-self NAME |
//         creds | int80 | x32 | notify-continue | open-w PATH | tcp-self IP |
//         shmget KEY
// "sys NAME" makes one raw system call with harmless arguments (see
// sys_attempt); numbers may be given in hex, with high bits set, to test
// that a filter compares only what the kernel reads.
// "nested OP ..." first enters a new user + mount namespace (where the probe
// holds every capability), then runs OP there: the attack an unprivileged
// process can always try. Its uid map is best effort: mapping root needs
// CAP_SETFCAP above, and capabilities do not depend on the map.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/io_uring.h>
#include <linux/keyctl.h>
#include <linux/perf_event.h>
#include <linux/filter.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/quota.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
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
#include <utility>

static int report(int rc) {
  if (rc == 0) {
    printf("OK\n");
    return 0;
  }
  printf("ERR %s\n", strerrorname_np(errno) ? strerrorname_np(errno) : "?");
  return 1;
}

// A new user + mount namespace with uid/gid 0 mapped to ours. `strict`:
// a map that cannot be written is a failure (with loose maps, as root, the
// namespace is entered even though uid 0 cannot be mapped there).
static int enter_userns(bool strict = true) {
  uid_t uid = getuid();
  gid_t gid = getgid();
  if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) return -1;
  int fd = open("/proc/self/setgroups", O_WRONLY);
  if (fd >= 0) { (void)!write(fd, "deny", 4); close(fd); }
  char buf[64];
  for (auto [file, id] : {std::pair<const char*, unsigned>{"/proc/self/uid_map", uid}, {"/proc/self/gid_map", gid}}) {
    snprintf(buf, sizeof buf, "0 %u 1", id);
    fd = open(file, O_WRONLY);
    bool ok = fd >= 0 && write(fd, buf, strlen(buf)) >= 0;
    if (fd >= 0) close(fd);
    if (!ok && strict) return -1;
  }
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

static int dispatch(int argc, char** argv);

extern char** environ;

static uint64_t num(const char* s) { return strtoull(s, nullptr, 0); }

// A child that only waits to be killed, for the calls that need a target
// process the caller owns.
static pid_t idle_child() {
  pid_t pid = fork();
  if (pid == 0) {
    for (;;) pause();
  }
  return pid;
}

static void reap(pid_t pid) {
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
}

// A fork-like raw clone/clone3 whose child exits at once; 0 if the child
// ran and exited 0.
static long raw_clone(unsigned long flags) {
  long pid = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
  if (pid < 0) return -1;
  if (pid == 0) syscall(SYS_exit_group, 0);
  int st = 0;
  waitpid(static_cast<pid_t>(pid), &st, 0);
  return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : (errno = ECHILD, -1);
}

static long raw_clone3(uint64_t flags) {
  struct clone_args ca {};
  ca.flags = flags;
  ca.exit_signal = SIGCHLD;
  long pid = syscall(SYS_clone3, &ca, sizeof ca);
  if (pid < 0) return -1;
  if (pid == 0) syscall(SYS_exit_group, 0);
  int st = 0;
  waitpid(static_cast<pid_t>(pid), &st, 0);
  return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : (errno = ECHILD, -1);
}

static void* thread_body(void*) { return nullptr; }

static char pvm_word[16] = "airlock";

// Reads or writes pvm_word in process `pid` (the same address in a forked
// child).
static long vm_copy(pid_t pid, bool write) {
  char buf[16] = "probe";
  struct iovec local {buf, sizeof buf}, remote {pvm_word, sizeof pvm_word};
  ssize_t n = write ? process_vm_writev(pid, &local, 1, &remote, 1, 0)
                    : process_vm_readv(pid, &local, 1, &remote, 1, 0);
  return n == static_cast<ssize_t>(sizeof buf) ? 0 : -1;
}

// Closes an fd a call returned and maps the result to 0 / -1.
static long fd_result(long fd) {
  if (fd < 0) return -1;
  close(static_cast<int>(fd));
  return 0;
}

// One raw system call with arguments that cannot harm the machine even if
// the call is allowed (and the caller privileged): queries, calls on bad
// descriptors, objects owned by the probe itself. Returns 0 on success,
// -1 with errno set on failure; *known is false for an unknown name.
static long sys_attempt(const std::string& n, bool* known) {
  *known = true;
  // io_uring: a second syscall interface.
  if (n == "io_uring_setup") {
    struct io_uring_params p {};
    return fd_result(syscall(SYS_io_uring_setup, 1, &p));
  }
  if (n == "io_uring_enter") return syscall(SYS_io_uring_enter, -1, 0, 0, 0, nullptr, 0) < 0 ? -1 : 0;
  if (n == "io_uring_register") return syscall(SYS_io_uring_register, -1, 0, nullptr, 0) < 0 ? -1 : 0;
  // Processes.
  if (n == "clone3") return raw_clone3(0);
  if (n == "clone3-newuser") return raw_clone3(CLONE_NEWUSER);
  if (n == "clone") return raw_clone(0);
  if (n == "clone-newuser") return raw_clone(CLONE_NEWUSER);
  if (n == "clone-newns") return raw_clone(CLONE_NEWNS);
  if (n == "clone-newnet") return raw_clone(CLONE_NEWNET);
  if (n == "fork") {
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) _exit(0);
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : (errno = ECHILD, -1);
  }
  if (n == "thread") {  // glibc tries clone3 first, then clone
    pthread_t t;
    int e = pthread_create(&t, nullptr, thread_body, nullptr);
    if (e != 0) return errno = e, -1;
    pthread_join(t, nullptr);
    return 0;
  }
  if (n == "spawn") {  // posix_spawn, also clone3 first in recent glibc
    pid_t pid;
    char* args[] = {const_cast<char*>("true"), nullptr};
    int e = posix_spawn(&pid, "/bin/true", nullptr, nullptr, args, environ);
    if (e != 0) return errno = e, -1;
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : (errno = ECHILD, -1);
  }
  if (n == "unshare-user") return unshare(CLONE_NEWUSER);
  if (n == "unshare-ns") return unshare(CLONE_NEWNS);
  if (n == "unshare-net") return unshare(CLONE_NEWNET);
  if (n == "unshare-files") return unshare(CLONE_FILES);  // no namespace: allowed
  if (n == "setns") {
    int fd = open("/proc/self/ns/uts", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    long rc = setns(fd, CLONE_NEWUTS);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
  }
  // Kernel extension.
  if (n == "bpf") {
    union bpf_attr a {};
    a.map_type = BPF_MAP_TYPE_ARRAY;
    a.key_size = 4;
    a.value_size = 4;
    a.max_entries = 1;
    return fd_result(syscall(SYS_bpf, BPF_MAP_CREATE, &a, sizeof a));
  }
  if (n == "init_module") return syscall(SYS_init_module, nullptr, 0, "") < 0 ? -1 : 0;
  if (n == "finit_module") return syscall(SYS_finit_module, -1, "", 0) < 0 ? -1 : 0;
  if (n == "delete_module") return syscall(SYS_delete_module, "airlock_no_such_module", O_NONBLOCK) < 0 ? -1 : 0;
  if (n == "kexec_load") return syscall(SYS_kexec_load, 0, 0, nullptr, 0) < 0 ? -1 : 0;
  if (n == "kexec_file_load") return syscall(SYS_kexec_file_load, -1, -1, 0, "", 0) < 0 ? -1 : 0;
  // Kernel observation.
  if (n == "perf_event_open") {
    struct perf_event_attr a {};
    a.type = PERF_TYPE_SOFTWARE;
    a.size = sizeof a;
    a.config = PERF_COUNT_SW_TASK_CLOCK;
    a.disabled = 1;
    a.exclude_kernel = 1;
    a.exclude_hv = 1;
    return fd_result(syscall(SYS_perf_event_open, &a, 0, -1, -1, 0));
  }
  if (n == "syslog") return syscall(SYS_syslog, 10 /* SYSLOG_ACTION_SIZE_BUFFER */, nullptr, 0) < 0 ? -1 : 0;
  if (n == "userfaultfd") return fd_result(syscall(SYS_userfaultfd, O_CLOEXEC | 1 /* UFFD_USER_MODE_ONLY */));
  // Keyrings.
  if (n == "keyctl")
    return syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_PROCESS_KEYRING, 1) < 0 ? -1 : 0;
  if (n == "add_key")
    return syscall(SYS_add_key, "user", "airlock-probe", "x", 1, KEY_SPEC_PROCESS_KEYRING) < 0 ? -1 : 0;
  if (n == "request_key")
    return syscall(SYS_request_key, "user", "airlock-probe-none", nullptr, KEY_SPEC_PROCESS_KEYRING) < 0 ? -1 : 0;
  // Other processes: the probe's own child, which it could debug anywhere
  // else, and the sandbox's init.
  if (n == "ptrace-child") {
    pid_t c = idle_child();
    long rc = ptrace(PTRACE_ATTACH, c, nullptr, nullptr);
    int e = errno;
    reap(c);
    errno = e;
    return rc < 0 ? -1 : 0;
  }
  if (n == "traceme") {  // the child asks to be traced by the probe
    int p[2];
    if (pipe(p) != 0) return -1;
    pid_t c = fork();
    if (c == 0) {
      int r = ptrace(PTRACE_TRACEME, 0, nullptr, nullptr) == 0 ? 0 : errno;
      (void)!write(p[1], &r, sizeof r);
      _exit(0);
    }
    int r = EIO;
    (void)!read(p[0], &r, sizeof r);
    close(p[0]);
    close(p[1]);
    waitpid(c, nullptr, 0);
    return r == 0 ? 0 : (errno = r, -1);
  }
  if (n == "process_vm_readv-child" || n == "process_vm_writev-child") {
    pid_t c = idle_child();
    long rc = vm_copy(c, n == "process_vm_writev-child");
    int e = errno;
    reap(c);
    errno = e;
    return rc;
  }
  if (n == "process_vm_readv-init") return vm_copy(1, false);
  if (n == "pidfd_getfd-self") {
    long pfd = syscall(SYS_pidfd_open, getpid(), 0);
    if (pfd < 0) return -1;
    long fd = syscall(SYS_pidfd_getfd, pfd, 1, 0);
    int e = errno;
    close(static_cast<int>(pfd));
    errno = e;
    return fd_result(fd);
  }
  if (n == "kcmp-self") return syscall(SYS_kcmp, getpid(), getpid(), 0 /* KCMP_FILE */, 1, 1) < 0 ? -1 : 0;
  // The machine.
  if (n == "reboot") return syscall(SYS_reboot, 0, 0, 0, nullptr) < 0 ? -1 : 0;  // bad magic: a no-op at most
  if (n == "swapon") return syscall(SYS_swapon, "/airlock-no-such-swap", 0) < 0 ? -1 : 0;
  if (n == "acct") return syscall(SYS_acct, nullptr) < 0 ? -1 : 0;
  if (n == "quotactl") return syscall(SYS_quotactl, QCMD(Q_SYNC, USRQUOTA), nullptr, 0, nullptr) < 0 ? -1 : 0;
  if (n == "settimeofday") {
    struct timeval tv;
    gettimeofday(&tv, nullptr);
    return syscall(SYS_settimeofday, &tv, nullptr) < 0 ? -1 : 0;
  }
  if (n == "clock_settime") {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return syscall(SYS_clock_settime, CLOCK_REALTIME, &ts) < 0 ? -1 : 0;
  }
  // Personality: READ_IMPLIES_EXEC is refused, the default and a query are
  // not. A successful change is undone at once.
  if (n == "personality-rie") {
    long old = syscall(SYS_personality, 0x0400000UL /* READ_IMPLIES_EXEC */);
    if (old < 0) return -1;
    syscall(SYS_personality, static_cast<unsigned long>(old));
    return 0;
  }
  if (n == "personality-query") return syscall(SYS_personality, 0xffffffffUL) < 0 ? -1 : 0;
  if (n == "personality-linux") return syscall(SYS_personality, 0UL) < 0 ? -1 : 0;
  // The mount table.
  if (n == "mount") return mount("none", "/tmp", "tmpfs", 0, nullptr);
  if (n == "umount2") return umount2("/tmp", MNT_DETACH);
  if (n == "pivot_root") return syscall(SYS_pivot_root, ".", ".") < 0 ? -1 : 0;
  if (n == "chroot") return chroot("/");
  if (n == "fsopen") return fd_result(syscall(SYS_fsopen, "tmpfs", 0));
  if (n == "open_tree") return fd_result(syscall(SYS_open_tree, AT_FDCWD, "/tmp", 1 /* OPEN_TREE_CLONE */));
  if (n == "move_mount") return syscall(SYS_move_mount, AT_FDCWD, "/tmp", AT_FDCWD, "/tmp", 0) < 0 ? -1 : 0;
  if (n == "mount_setattr") {
    uint64_t attr[4] = {0x1 /* MOUNT_ATTR_RDONLY */, 0, 0, 0};
    return syscall(SYS_mount_setattr, AT_FDCWD, "/tmp", 0, attr, sizeof attr) < 0 ? -1 : 0;
  }
  if (n == "name_to_handle_at") {
    struct file_handle* fh = static_cast<struct file_handle*>(malloc(sizeof(*fh) + MAX_HANDLE_SZ));
    fh->handle_bytes = MAX_HANDLE_SZ;
    int mount_id;
    long rc = name_to_handle_at(AT_FDCWD, ".", fh, &mount_id, 0);
    free(fh);
    return rc;
  }
  if (n == "open_by_handle_at") {  // a made-up handle: refused before it is looked at
    struct file_handle* fh = static_cast<struct file_handle*>(calloc(1, sizeof(*fh) + 8));
    fh->handle_bytes = 8;
    fh->handle_type = 1;
    long fd = open_by_handle_at(AT_FDCWD, fh, O_RDONLY);
    int e = errno;
    free(fh);
    errno = e;
    return fd_result(fd);
  }
  *known = false;
  return -1;
}

// The known way around a filter that answers through user notification:
// install a second filter that sends the same call to a listener of our
// own, and answer "continue". The kernel refuses a second listener in one
// filter chain (EBUSY); should it ever accept, the call is made and its
// result reported. Prints "listener ..." and, if it got that far, "unshare ...".
static void* continue_one(void* arg) {
  int fd = *static_cast<int*>(arg);
  struct seccomp_notif req {};
  if (ioctl(fd, SECCOMP_IOCTL_NOTIF_RECV, &req) != 0) return nullptr;
  struct seccomp_notif_resp resp {};
  resp.id = req.id;
  resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
  ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, &resp);
  return nullptr;
}

static int notify_continue() {
  struct sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_unshare, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog {static_cast<unsigned short>(sizeof code / sizeof code[0]), code};
  int fd = static_cast<int>(syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog));
  if (step("listener", fd < 0 ? -1 : 0) != 0) return 1;
  pthread_t t;
  pthread_create(&t, nullptr, continue_one, &fd);
  int rc = step("unshare", unshare(CLONE_NEWUSER));
  return rc;
}

// The caller's credentials as the kernel sees them.
static int print_creds() {
  uid_t r, e, s;
  getresuid(&r, &e, &s);
  FILE* f = fopen("/proc/self/status", "r");
  if (!f) return report(-1);
  std::string caps;
  char line[256];
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "Cap", 3) == 0 || strncmp(line, "NoNewPrivs", 10) == 0) {
      line[strcspn(line, "\n")] = 0;
      for (char* c = line; *c; ++c)
        if (*c == '\t') *c = ' ';
      caps += std::string(" ") + line;
    }
  }
  fclose(f);
  printf("OK uid=%u,%u,%u%s\n", r, e, s, caps.c_str());
  return 0;
}

int main(int argc, char** argv) { return dispatch(argc, argv); }

static int dispatch(int argc, char** argv) {
  if (argc < 2) return 2;
  std::string op = argv[1];
  const char* a = argc > 2 ? argv[2] : "";
  const char* b = argc > 3 ? argv[3] : "";
  if (op == "nested") {
    if (step("userns", enter_userns(false)) != 0) return 1;
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
  if (op == "sys") {
    bool known;
    long rc = sys_attempt(a, &known);
    if (!known) {
      fprintf(stderr, "probe: unknown syscall attempt %s\n", a);
      return 2;
    }
    return report(rc == 0 ? 0 : -1);
  }
  if (op == "socket" || op == "socketpair") {
    // Raw calls: the family may carry high bits the kernel ignores.
    const char* c = argc > 4 ? argv[4] : "0";
    if (op == "socket") return report(fd_result(syscall(SYS_socket, num(a), num(b), num(c))) == 0 ? 0 : -1);
    int sv[2];
    if (syscall(SYS_socketpair, num(a), num(b), num(c), sv) != 0) return report(-1);
    close(sv[0]);
    close(sv[1]);
    return report(0);
  }
  if (op == "ioctl") {  // FD CMD: the command as a full 64-bit register
    // Big enough for any argument a tty ioctl reads or writes; the first
    // byte is TIOCSTI's character and TIOCLINUX's subcode.
    unsigned char arg[64] = {};
    uint64_t cmd = num(b);
    arg[0] = (cmd & 0xffffffffULL) == 0x541C ? 7 /* TIOCL_GETMOUSEREPORTING */ : 'x';
    return report(syscall(SYS_ioctl, atoi(a), cmd, arg) < 0 ? -1 : 0);
  }
  if (op == "udp-send") {
    bool v6 = strchr(a, ':') != nullptr;
    int s = socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM, 0);
    if (s < 0) return report(-1);
    struct sockaddr_storage ss {};
    socklen_t len;
    if (v6) {
      auto* sa = reinterpret_cast<sockaddr_in6*>(&ss);
      sa->sin6_family = AF_INET6;
      sa->sin6_port = htons(static_cast<uint16_t>(atoi(b)));
      inet_pton(AF_INET6, a, &sa->sin6_addr);
      len = sizeof *sa;
    } else {
      auto* sa = reinterpret_cast<sockaddr_in*>(&ss);
      sa->sin_family = AF_INET;
      sa->sin_port = htons(static_cast<uint16_t>(atoi(b)));
      inet_pton(AF_INET, a, &sa->sin_addr);
      len = sizeof *sa;
    }
    // A DNS query header's worth of bytes.
    const char msg[12] = {0x12, 0x34, 1, 0, 0, 1};
    return report(sendto(s, msg, sizeof msg, 0, reinterpret_cast<sockaddr*>(&ss), len) == sizeof msg ? 0 : -1);
  }
  if (op == "unix-self" || op == "abstract-self") {  // a server and its client, both in here
    struct sockaddr_un sa {};
    sa.sun_family = AF_UNIX;
    socklen_t len;
    if (op == "abstract-self") {
      strncpy(sa.sun_path + 1, a, sizeof sa.sun_path - 2);
      len = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(a));
    } else {
      strncpy(sa.sun_path, a, sizeof sa.sun_path - 1);
      len = sizeof sa;
    }
    int srv = socket(AF_UNIX, SOCK_STREAM, 0);
    if (srv < 0 || bind(srv, reinterpret_cast<sockaddr*>(&sa), len) != 0 || listen(srv, 1) != 0)
      return report(-1);
    int cl = socket(AF_UNIX, SOCK_STREAM, 0);
    return report(connect(cl, reinterpret_cast<sockaddr*>(&sa), len));
  }
  if (op == "tcp-self") {  // a TCP server and its client on one address, both in here
    bool v6 = strchr(a, ':') != nullptr;
    struct sockaddr_storage ss {};
    socklen_t len = v6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
    if (v6) {
      auto* sa = reinterpret_cast<sockaddr_in6*>(&ss);
      sa->sin6_family = AF_INET6;
      inet_pton(AF_INET6, a, &sa->sin6_addr);
    } else {
      auto* sa = reinterpret_cast<sockaddr_in*>(&ss);
      sa->sin_family = AF_INET;
      inet_pton(AF_INET, a, &sa->sin_addr);
    }
    int srv = socket(ss.ss_family, SOCK_STREAM, 0);
    if (srv < 0 || bind(srv, reinterpret_cast<sockaddr*>(&ss), len) != 0 || listen(srv, 1) != 0 ||
        getsockname(srv, reinterpret_cast<sockaddr*>(&ss), &len) != 0)
      return report(-1);
    int cl = socket(ss.ss_family, SOCK_STREAM, 0);
    return report(connect(cl, reinterpret_cast<sockaddr*>(&ss), len));
  }
  if (op == "shmget") return report(shmget(static_cast<key_t>(num(a)), 0, 0) >= 0 ? 0 : -1);  // an existing SysV segment
  if (op == "creds") return print_creds();
  if (op == "notify-continue") return notify_continue();
  if (op == "open-w") {  // open for writing, write nothing
    int fd = open(a, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return report(-1);
    close(fd);
    return report(0);
  }
  if (op == "int80") {  // getpid through the 32-bit ABI
#if defined(__x86_64__)
    long ret;
    asm volatile("int $0x80" : "=a"(ret) : "a"(20L /* __NR_getpid, i386 */) : "memory");
    if (ret < 0) return errno = static_cast<int>(-ret), report(-1);
    printf("OK %ld\n", ret);
    return 0;
#else
    fprintf(stderr, "probe: int80 is x86_64 only\n");
    return 2;
#endif
  }
  if (op == "x32") {  // getpid through the x32 ABI
#if defined(__x86_64__)
    return report(syscall(0x40000000L | SYS_getpid) < 0 ? -1 : 0);
#else
    fprintf(stderr, "probe: x32 is x86_64 only\n");
    return 2;
#endif
  }
  fprintf(stderr, "probe: unknown op %s\n", op.c_str());
  return 2;
}
