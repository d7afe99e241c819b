// Process, kernel and network escapes (THREATS.md, "Process and kernel",
// "Network", "Credentials"): each test runs a real sandbox, tries the attack
// from inside with the probe or a shell, and checks that it failed for the
// expected reason (the errno the layer that stops it gives). Where a sandbox
// that forbids everything would also pass, the test does the allowed
// neighbour too and checks it worked; where the target is a host object the
// test created (a process, a listening socket), the test checks on the host
// that nothing reached it.
#include <fcntl.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <arpa/inet.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "../integration/harness.h"
#include "attack.h"

namespace airlock::test {
namespace {

// What the sandbox's empty network namespace answers for an address it has
// no route or no local address for. ECONNREFUSED or ETIMEDOUT would mean a
// packet went somewhere.
const std::set<std::string> kNoRoute = {"ENETUNREACH", "EADDRNOTAVAIL", "EHOSTUNREACH"};

std::string unique_name(const std::string& what) {
  static int n = 0;
  return "airlock-test-" + what + "-" + std::to_string(::getpid()) + "-" + std::to_string(++n);
}

// A host process the sandbox must not reach: `sleep 60`, killed and reaped
// at destruction.
class HostProcess {
 public:
  HostProcess() {
    pid_ = ::fork();
    if (pid_ == 0) {
      ::execl("/bin/sleep", "sleep", "60", nullptr);
      ::_exit(127);
    }
  }
  ~HostProcess() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  HostProcess(const HostProcess&) = delete;
  HostProcess& operator=(const HostProcess&) = delete;
  pid_t pid() const { return pid_; }
  bool alive() const { return ::waitpid(pid_, nullptr, WNOHANG) == 0 && ::kill(pid_, 0) == 0; }

 private:
  pid_t pid_;
};

// A listening socket of the host's: TCP on a loopback address, or unix on a
// path or an abstract name. Closed (and its path removed) at destruction.
class HostListener {
 public:
  static HostListener tcp(const char* ip) {
    HostListener l;
    bool v6 = std::strchr(ip, ':') != nullptr;
    l.fd_ = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_storage ss{};
    socklen_t len;
    if (v6) {
      auto* sa = reinterpret_cast<sockaddr_in6*>(&ss);
      sa->sin6_family = AF_INET6;
      ::inet_pton(AF_INET6, ip, &sa->sin6_addr);
      len = sizeof *sa;
    } else {
      auto* sa = reinterpret_cast<sockaddr_in*>(&ss);
      sa->sin_family = AF_INET;
      ::inet_pton(AF_INET, ip, &sa->sin_addr);
      len = sizeof *sa;
    }
    if (l.fd_ < 0 || ::bind(l.fd_, reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(l.fd_, 8) != 0) {
      l.close();
      return l;
    }
    ::getsockname(l.fd_, reinterpret_cast<sockaddr*>(&ss), &len);
    l.port_ = ntohs(v6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    l.addr_ = ss;
    l.len_ = len;
    return l;
  }

  // name starting with '@': abstract.
  static HostListener unix_socket(const std::string& name) {
    HostListener l;
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    socklen_t len;
    if (name[0] == '@') {
      std::memcpy(sa.sun_path + 1, name.data() + 1, name.size() - 1);
      len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
    } else {
      std::strncpy(sa.sun_path, name.c_str(), sizeof sa.sun_path - 1);
      len = sizeof sa;
      l.path_ = name;
    }
    l.fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (l.fd_ < 0 || ::bind(l.fd_, reinterpret_cast<sockaddr*>(&sa), len) != 0 || ::listen(l.fd_, 8) != 0) {
      l.close();
      l.path_.clear();
      return l;
    }
    if (!l.path_.empty()) ::chmod(l.path_.c_str(), 0777);  // reachable by any uid, as services' sockets often are
    std::memcpy(&l.addr_, &sa, sizeof sa);
    l.len_ = len;
    return l;
  }

  HostListener(HostListener&& o) noexcept
      : fd_(o.fd_), port_(o.port_), path_(std::move(o.path_)), addr_(o.addr_), len_(o.len_) {
    o.fd_ = -1;
    o.path_.clear();
  }
  HostListener& operator=(HostListener&&) = delete;
  ~HostListener() {
    close();
    if (!path_.empty()) ::unlink(path_.c_str());
  }

  bool ok() const { return fd_ >= 0; }
  int port() const { return port_; }

  // A connection is waiting (and is taken off the queue).
  bool accepted() {
    int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) return false;
    ::close(c);
    return true;
  }

  // The test itself can connect: the listener was live all along.
  bool reachable_from_host() {
    int s = ::socket(addr_.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok = s >= 0 && ::connect(s, reinterpret_cast<sockaddr*>(&addr_), len_) == 0;
    if (s >= 0) ::close(s);
    return ok && accepted();
  }

 private:
  HostListener() = default;
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int fd_ = -1;
  int port_ = 0;
  std::string path_;
  sockaddr_storage addr_{};
  socklen_t len_ = 0;
};

// airlock run -c SCRIPT, where every "@SUPERVISOR@" in the script is
// replaced by the host pid of airlock itself (the supervisor): the child
// knows its pid before it execs airlock.
RunResult run_naming_the_supervisor(const SandboxFixture& fx, const std::string& script) {
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) || ::pipe2(err, O_CLOEXEC)) throw std::runtime_error("pipe");
  pid_t pid = ::fork();
  if (pid == 0) {
    std::string s = script;
    std::string me = std::to_string(::getpid());
    for (size_t at; (at = s.find("@SUPERVISOR@")) != std::string::npos;) s.replace(at, 12, me);
    int null = ::open("/dev/null", O_RDONLY);
    ::dup2(null, 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    ::setpgid(0, 0);
    if (::chdir(fx.ws.c_str()) != 0) ::_exit(121);
    ::setenv("HOME", fx.home.c_str(), 1);
    std::string bin = airlock_bin();
    ::execl(bin.c_str(), bin.c_str(), "run", "-c", s.c_str(), nullptr);
    ::_exit(122);
  }
  ::close(out[1]);
  ::close(err[1]);
  RunResult r;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  bool open[2] = {true, true};
  int fds[2] = {out[0], err[0]};
  while (open[0] || open[1]) {
    pollfd p[2] = {{open[0] ? fds[0] : -1, POLLIN, 0}, {open[1] ? fds[1] : -1, POLLIN, 0}};
    int left = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count());
    if (left <= 0) {
      ::kill(-pid, SIGKILL);
      break;
    }
    if (::poll(p, 2, left) < 0 && errno != EINTR) break;
    char buf[65536];
    for (int i = 0; i < 2; ++i) {
      if (!p[i].revents) continue;
      ssize_t n = ::read(fds[i], buf, sizeof buf);
      if (n <= 0) {
        open[i] = false;
        continue;
      }
      (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
    }
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  ::close(out[0]);
  ::close(err[0]);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1;
  return r;
}

std::set<long> pid_list(const std::string& line) {
  std::set<long> pids;
  std::istringstream in(line);
  for (long p; in >> p;) pids.insert(p);
  return pids;
}

// ---------------------------------------------------------------------------
// Other processes

TEST(ProcessEscape, HostProcessesAndTheSupervisorAreInvisibleAndCannotBeSignalled) {
  SandboxFixture fx;
  HostProcess victim;
  std::string v = std::to_string(victim.pid());
  std::string me = std::to_string(::getpid());
  auto r = run_naming_the_supervisor(
      fx, probe_script(
              {
                  {"kill-victim", "kill " + v + " 0"},
                  {"term-victim", "kill " + v + " 15"},
                  {"kill-supervisor", "kill @SUPERVISOR@ 0"},
                  {"term-supervisor", "kill @SUPERVISOR@ 15"},
                  {"kill-test", "kill " + me + " 0"},
                  {"environ-victim", "read /proc/" + v + "/environ"},
                  {"environ-supervisor", "read /proc/@SUPERVISOR@/environ"},
                  {"cmdline-supervisor", "read /proc/@SUPERVISOR@/cmdline"},
                  {"ptrace-victim", "ptrace " + v},
                  {"own", "kill $own 0"},  // allowed: the sandbox's own process
              },
              "sleep 30 & own=$!",
              // Every process the sandbox can see, then the widest kill there is.
              "printf 'pids %s\\n' \"$(ls /proc | grep -E '^[0-9]+$' | tr '\\n' ' ')\"\n"
              "kill -KILL -1 2>/dev/null; wait; echo after-kill-all"));
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  for (const char* l : {"kill-victim", "term-victim", "kill-supervisor", "term-supervisor", "kill-test"})
    EXPECT_TRUE(refused(res, l, {"ESRCH"})) << "host pids must not exist in the sandbox's pid namespace";
  // The filter refuses ptrace before the kernel looks the pid up.
  EXPECT_TRUE(refused(res, "ptrace-victim", {"EPERM", "ESRCH"}));
  for (const char* l : {"environ-victim", "environ-supervisor", "cmdline-supervisor"})
    EXPECT_TRUE(refused(res, l, {"ENOENT"}));
  EXPECT_TRUE(allowed(res, "own"));
  // /proc lists the sandbox's processes only: init is 1, and no host pid
  // is among them.
  auto pids = pid_list(res["pids"]);
  EXPECT_TRUE(pids.count(1)) << res["pids"];
  EXPECT_FALSE(pids.count(victim.pid())) << res["pids"];
  EXPECT_FALSE(pids.count(::getpid())) << res["pids"];
  EXPECT_LT(pids.empty() ? 0 : *pids.rbegin(), 100) << "a fresh pid namespace counts from 1: " << res["pids"];
  EXPECT_TRUE(contains(r.out, "after-kill-all"));
  EXPECT_TRUE(victim.alive()) << "a host process died while the sandbox ran";
}

TEST(ProcessEscape, SandboxInitCannotBeTracedReadOrKilled) {
  SandboxFixture fx;
  auto r = fx.sh(probe_script(
      {
          {"ptrace-init", "ptrace 1"},
          {"mem-init", "read /proc/1/mem"},
          {"environ-init", "read /proc/1/environ"},
          {"vm-read-init", "sys process_vm_readv-init"},
          {"kill-init", "kill 1 9"},  // accepted and ignored: init has no handler for it
          {"environ-self", "read /proc/self/environ"},  // allowed: its own
      },
      "", "sleep 0.1; echo init-survived"));
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_TRUE(refused(res, "ptrace-init", {"EPERM"}));
  EXPECT_TRUE(refused(res, "mem-init", {"EACCES", "EPERM"}));
  EXPECT_TRUE(refused(res, "environ-init", {"EACCES", "EPERM"}));
  EXPECT_TRUE(refused(res, "vm-read-init", {"EPERM"}));
  EXPECT_TRUE(allowed(res, "environ-self"));
  EXPECT_TRUE(contains(r.out, "init-survived"));
}

// The host's terminals, POSIX shared memory and SysV IPC objects: the
// sandbox has its own devpts, /dev/shm and IPC namespace.
TEST(ProcessEscape, HostTerminalsAndSharedMemoryAreOutOfReach) {
  SandboxFixture fx;
  int master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  ASSERT_GE(master, 0);
  ASSERT_EQ(::grantpt(master), 0);
  ASSERT_EQ(::unlockpt(master), 0);
  std::string pts = ::ptsname(master);
  ::chmod(pts.c_str(), 0666);
  std::string shm = "/dev/shm/" + unique_name("shm");
  {
    std::ofstream(shm) << "HOST-SHM\n";
  }
  ::chmod(shm.c_str(), 0666);
  key_t key = static_cast<key_t>(0x41000000 | (::getpid() & 0xffffff));
  int seg = ::shmget(key, 4096, IPC_CREAT | IPC_EXCL | 0666);
  auto r = fx.sh(probe_script({
      {"host-pts", "read " + pts},
      {"host-shm", "read " + shm},
      {"host-sysv", "shmget " + std::to_string(key)},
      {"own-shm", "create /dev/shm/own"},  // allowed: the sandbox's own
  }));
  ::close(master);
  ::unlink(shm.c_str());
  if (seg >= 0) ::shmctl(seg, IPC_RMID, nullptr);
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_TRUE(refused(res, "host-pts", {"ENOENT"}));
  EXPECT_TRUE(refused(res, "host-shm", {"ENOENT"}));
  if (seg >= 0) {
    EXPECT_TRUE(refused(res, "host-sysv", {"ENOENT"}));
  }
  EXPECT_TRUE(allowed(res, "own-shm"));
  EXPECT_TRUE(lacks(r.out, "HOST-SHM"));
}

// ---------------------------------------------------------------------------
// Privilege

// A setuid-root program the sandbox can run: passwd blocks reading the old
// (or, for root, the new) password from a FIFO nobody writes to, long
// enough to read its credentials from /proc; closing the FIFO ends it.
TEST(ProcessEscape, SetuidBinariesGainNeitherUidNorCapabilities) {
  struct stat st {};
  if (::stat("/usr/bin/passwd", &st) != 0 || !(st.st_mode & S_ISUID) || st.st_uid != 0)
    GTEST_SKIP() << "/usr/bin/passwd is not setuid root here";
  SandboxFixture fx;
  auto r = fx.sh(
      "mkfifo /tmp/pw; passwd </tmp/pw >/dev/null 2>&1 & exec 3>/tmp/pw\n"
      "for i in $(seq 60); do\n"
      "  for d in /proc/[0-9]*; do\n"
      "    if [ \"$(cat $d/comm 2>/dev/null)\" = passwd ]; then\n"
      "      printf 'passwd %s\\n' \"$(grep -E '^(Uid|CapPrm|CapEff):' $d/status | tr '\\t\\n' ' |')\"; kill ${d#/proc/}; break 2\n"
      "    fi\n"
      "  done; sleep 0.05\n"
      "done\n"
      "su -c 'echo SU-RAN' root </dev/null >/dev/null 2>&1; echo \"su $?\"\n"
      "su -c 'echo SU-RAN' nobody </dev/null 2>&1 | grep -q SU-RAN && echo su-nobody-ran\n"
      "mount -t tmpfs none /tmp 2>/dev/null; echo \"mount $?\"\n"
      "exec 3>&-; wait\n");
  auto res = parse_results(r.out);
  std::string u = std::to_string(::getuid());
  ASSERT_TRUE(res.count("passwd")) << "passwd never ran\n" << r.out << r.err;
  EXPECT_TRUE(contains(res["passwd"], "Uid: " + u + " " + u + " " + u + " " + u + "|"))
      << "the setuid bit changed the uid";
  EXPECT_TRUE(contains(res["passwd"], "CapPrm: 0000000000000000"));
  EXPECT_TRUE(contains(res["passwd"], "CapEff: 0000000000000000"));
  EXPECT_NE(res["su"], "0") << "su succeeded";
  EXPECT_TRUE(lacks(r.out, "su-nobody-ran"));
  EXPECT_NE(res["mount"], "0") << "setuid mount mounted";
}

TEST(ProcessEscape, NoCapabilitiesAfterExecAndNoNewPrivileges) {
  SandboxFixture fx;
  auto r = fx.sh(probe_script({{"self", "creds"}}, "",
                              // Two execs deeper.
                              "printf 'grandchild %s\\n' \"$(sh -c 'sh -c \"$0 creds\"' \"$p\" | tr '\\n' '|')\""));
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  std::string u = std::to_string(::getuid());
  for (const char* l : {"self", "grandchild"}) {
    EXPECT_TRUE(allowed(res, l));
    EXPECT_TRUE(contains(res[l], "uid=" + u + "," + u + "," + u)) << l;
    for (const char* set : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"})
      EXPECT_TRUE(contains(res[l], std::string(set) + ": 0000000000000000")) << l;
    EXPECT_TRUE(contains(res[l], "NoNewPrivs: 1")) << l;
  }
}

// File capabilities on a program the sandbox runs are ignored (no_new_privs,
// an empty bounding set). Setting them needs CAP_SETFCAP on the host.
TEST(ProcessEscape, FileCapabilitiesAreNotGranted) {
  if (!is_root()) GTEST_SKIP() << "setting file capabilities needs root";
  SandboxFixture fx;
  std::string copy = fx.ws + "/probe-fcap";
  {
    std::ifstream in(probe_bin(), std::ios::binary);
    std::ofstream out(copy, std::ios::binary);
    out << in.rdbuf();
  }
  ::chmod(copy.c_str(), 0755);
  // struct vfs_cap_data, revision 2, effective bit set; permitted:
  // CAP_DAC_OVERRIDE (1), CAP_NET_RAW (13), CAP_SYS_PTRACE (19),
  // CAP_SYS_ADMIN (21).
  uint32_t low = (1u << 1) | (1u << 13) | (1u << 19) | (1u << 21);
  uint32_t cap[5] = {0x02000000u | 0x000001u, low, 0, 0, 0};
  ASSERT_EQ(::setxattr(copy.c_str(), "security.capability", cap, sizeof cap, 0), 0) << std::strerror(errno);
  ASSERT_GT(::getxattr(copy.c_str(), "security.capability", nullptr, 0), 0);
  // Readable only with CAP_DAC_OVERRIDE.
  fx.tree.write("ws/locked", "LOCKED-CONTENT\n");
  ASSERT_EQ(::chown(fx.tree.path("ws/locked").c_str(), 65534, 65534), 0);
  ASSERT_EQ(::chmod(fx.tree.path("ws/locked").c_str(), 0), 0);
  auto r = fx.sh(
      "for a in creds 'read locked' 'ptrace 1' 'read README.md'; do\n"
      "  r=$(./probe-fcap $a 2>&1); printf 'fcap-%s %s\\n' \"$(echo $a | tr ' .' '--')\" \"$(printf %s \"$r\" | tr '\\n' '|')\"\n"
      "done\n");
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  for (const char* set : {"CapPrm", "CapEff", "CapAmb"})
    EXPECT_TRUE(contains(res["fcap-creds"], std::string(set) + ": 0000000000000000"));
  EXPECT_TRUE(refused(res, "fcap-read-locked", {"EACCES"})) << "CAP_DAC_OVERRIDE from the file took effect";
  EXPECT_TRUE(refused(res, "fcap-ptrace-1", {"EPERM"}));
  EXPECT_TRUE(lacks(r.out, "LOCKED-CONTENT"));
  EXPECT_TRUE(allowed(res, "fcap-read-README-md"));  // the copy runs at all
}

// Files through which root writes to the kernel: hidden or read-only, even
// for a sandbox whose uid is the host's root. Opened for writing only (no
// byte is written, so nothing changes even if an open succeeded).
TEST(ProcessEscape, KernelControlFilesCannotBeOpenedForWriting) {
  SandboxFixture fx;
  std::vector<Try> tries;
  for (const char* f : {"/proc/sysrq-trigger", "/proc/sys/kernel/core_pattern", "/proc/sys/kernel/modprobe",
                        "/proc/sys/vm/drop_caches", "/proc/sys/kernel/hostname", "/proc/sys/fs/binfmt_misc/register",
                        "/sys/kernel/uevent_helper", "/sys/fs/cgroup/cgroup.procs",
                        "/sys/fs/cgroup/unified/cgroup.procs", "/dev/userfaultfd", "/dev/kmsg", "/dev/mem"})
    tries.push_back({f, "open-w " + std::string(f)});
  tries.push_back({"ws-file", "open-w README.md"});  // allowed
  auto r = fx.sh(probe_script(tries));
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  for (const auto& t : tries) {
    if (t.label == "ws-file") continue;
    EXPECT_TRUE(refused(res, t.label, {"EROFS", "EACCES", "EPERM", "ENOENT"}));
  }
  EXPECT_TRUE(allowed(res, "ws-file"));
}

// Descriptors the caller leaks into airlock (a secret file, the host's
// home folder) would reach past every mount: airlock must close them.
TEST(ProcessEscape, DescriptorsInheritedFromTheCallerAreClosed) {
  SandboxFixture fx;
  int file = ::open((fx.home + "/.ssh/id_rsa").c_str(), O_RDONLY);  // no O_CLOEXEC: inherited on purpose
  int dir = ::open(fx.home.c_str(), O_RDONLY | O_DIRECTORY);
  int path = ::open("/", O_PATH | O_DIRECTORY);
  ASSERT_TRUE(file >= 0 && dir >= 0 && path >= 0);
  std::string f = std::to_string(file), d = std::to_string(dir), pa = std::to_string(path);
  auto r = fx.sh(probe_script({
      {"file", "read /proc/self/fd/" + f},
      {"dir", "read /proc/self/fd/" + d + "/.ssh/id_rsa"},
      {"dir-netrc", "read /proc/self/fd/" + d + "/.netrc"},
      {"root", "read /proc/self/fd/" + pa + sq(fx.home + "/.aws/credentials")},
      {"stdin", "read /proc/self/fd/0"},  // allowed: stdio stays
  }));
  ::close(file);
  ::close(dir);
  ::close(path);
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  for (const char* l : {"file", "dir", "dir-netrc", "root"}) EXPECT_TRUE(refused(res, l, {"ENOENT"}));
  EXPECT_TRUE(allowed(res, "stdin"));
  for (const char* s : {"PRIVATE-KEY-MATERIAL", "NETRCSECRET", "AKIASECRET"}) EXPECT_TRUE(lacks(r.out, s));
}

// stdin redirected from a host file is the one host file the command holds
// open. Reopening it through /proc/self/fd reaches the host's own (writable)
// mount, past the read-only view: Landlock must still refuse writing.
TEST(ProcessEscape, StdinFromAHostFileCannotBeReopenedForWriting) {
  SandboxFixture fx;
  std::string script = "p=" + sq(probe_bin()) +
                       "\n"
                       "printf 'reopen-w %s\\n' \"$($p write /proc/self/fd/0)\"\n"
                       "printf 'reopen-rw %s\\n' \"$($p truncate /proc/self/fd/0)\"\n"
                       "printf 'read %s\\n' \"$(cat)\"\n";  // allowed: reading stdin
  auto r = run_program({"/bin/sh", "-c", "exec " + sq(airlock_bin()) + " run -c " + sq(script) + " < " +
                                             sq(fx.home + "/.bashrc")},
                       RunOptions{fx.ws, {{"HOME", fx.home}}, "", 20000});
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_TRUE(refused(res, "reopen-w", {"EACCES", "EROFS"}));
  EXPECT_TRUE(refused(res, "reopen-rw", {"EACCES", "EROFS"}));
  EXPECT_EQ(res["read"], "# user's bashrc");
  EXPECT_EQ(fx.tree.read("home/.bashrc"), "# user's bashrc\n");
}

// ---------------------------------------------------------------------------
// The syscall filter, group by group: each refused call with its errno, and
// the allowed neighbours that prove the filter is not simply refusing
// everything.

TEST(ProcessEscape, IoUringIsNotImplemented) {
  SandboxFixture fx;
  expect_calls_refused(fx, {"io_uring_setup", "io_uring_enter", "io_uring_register"}, {"ENOSYS"});
}

TEST(ProcessEscape, Clone3IsNotImplementedButForkThreadsAndSpawnWork) {
  SandboxFixture fx;
  auto r = fx.sh(probe_script(
      {
          {"clone3", "sys clone3"},
          {"clone3-newuser", "sys clone3-newuser"},
          {"clone", "sys clone"},
          {"fork", "sys fork"},
          {"thread", "sys thread"},
          {"spawn", "sys spawn"},
      },
      "", "sh -c 'true & wait $!'; echo \"background $?\""));
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_TRUE(refused(res, "clone3", {"ENOSYS"}));
  EXPECT_TRUE(refused(res, "clone3-newuser", {"ENOSYS"}));
  for (const char* l : {"clone", "fork", "thread", "spawn"}) EXPECT_TRUE(allowed(res, l));
  EXPECT_EQ(res["background"], "0");
}

TEST(ProcessEscape, KernelExtensionAndObservationAreRefused) {
  SandboxFixture fx;
  expect_calls_refused(fx,
                       {"bpf", "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
                        "perf_event_open", "syslog", "userfaultfd"},
                       {"EPERM"});
}

TEST(ProcessEscape, KeyringsAreRefused) {
  SandboxFixture fx;
  expect_calls_refused(fx, {"keyctl", "add_key", "request_key"}, {"EPERM"});
}

// Even the probe's own child, which any unsandboxed process may debug.
TEST(ProcessEscape, NoProcessCanBeTracedOrHaveItsMemoryOrFilesTaken) {
  SandboxFixture fx;
  std::vector<std::string> calls = {"ptrace-child",           "traceme",          "process_vm_readv-child",
                                    "process_vm_writev-child", "pidfd_getfd-self", "kcmp-self"};
  std::vector<Try> tries;
  for (const auto& c : calls) tries.push_back({c, "sys " + c});
  tries.push_back({"fork", "sys fork"});  // allowed
  auto r = fx.sh(probe_script(tries));
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  for (const auto& c : calls) EXPECT_TRUE(refused(res, c, {"EPERM"}));
  EXPECT_TRUE(allowed(res, "fork"));
}

TEST(ProcessEscape, MachineWideCallsAreRefused) {
  SandboxFixture fx;
  std::vector<std::string> calls = {"reboot", "swapon", "acct", "quotactl", "settimeofday", "clock_settime"};
  std::vector<Try> tries;
  for (const auto& c : calls) tries.push_back({c, "sys " + c});
  auto r = fx.sh(probe_script(tries));
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  for (const auto& c : calls) EXPECT_TRUE(refused(res, c, {"EPERM"}));
}

TEST(ProcessEscape, FileHandlesAreRefused) {
  SandboxFixture fx;
  auto r = fx.sh(probe_script({
      {"name_to_handle_at", "sys name_to_handle_at"},
      {"open_by_handle_at", "sys open_by_handle_at"},
  }));
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_TRUE(refused(res, "name_to_handle_at", {"EPERM"}));
  EXPECT_TRUE(refused(res, "open_by_handle_at", {"EPERM"}));
}

TEST(ProcessEscape, PersonalityAllowsOnlyTheDefaultAndQueries) {
  SandboxFixture fx;
  auto r = fx.sh(probe_script({
      {"read-implies-exec", "sys personality-rie"},
      {"query", "sys personality-query"},  // allowed
      {"linux", "sys personality-linux"},  // allowed
  }));
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_TRUE(refused(res, "read-implies-exec", {"EPERM"}));
  EXPECT_TRUE(allowed(res, "query"));
  EXPECT_TRUE(allowed(res, "linux"));
}

TEST(ProcessEscape, MountCallsAreRefused) {
  SandboxFixture fx;
  std::vector<std::string> calls = {"mount",  "umount2",   "pivot_root", "chroot",
                                    "fsopen", "open_tree", "move_mount", "mount_setattr"};
  std::vector<Try> tries;
  for (const auto& c : calls) tries.push_back({c, "sys " + c});
  auto r = fx.sh(probe_script(tries));
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  for (const auto& c : calls) EXPECT_TRUE(refused(res, c, {"EPERM"}));
}

const std::vector<std::string> kNamespaceCalls = {"unshare-user", "unshare-ns",  "unshare-net", "clone-newuser",
                                                  "clone-newns",  "clone-newnet", "setns"};

TEST(ProcessEscape, NewNamespacesAreRefusedByDefault) {
  SandboxFixture fx;
  std::vector<Try> tries;
  for (const auto& c : kNamespaceCalls) tries.push_back({c, "sys " + c});
  tries.push_back({"nested-fsopen", "nested sys fsopen"});
  tries.push_back({"unshare-files", "sys unshare-files"});  // allowed: no namespace flag
  auto r = fx.sh(probe_script(tries, "", "unshare -U true 2>/dev/null; echo \"unshare-cmd $?\""));
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  for (const auto& c : kNamespaceCalls) EXPECT_TRUE(refused(res, c, {"EPERM"}));
  EXPECT_EQ(res["nested-fsopen"], "userns ERR EPERM");
  EXPECT_TRUE(allowed(res, "unshare-files"));
  EXPECT_NE(res["unshare-cmd"], "0");
}

// allowNestedUserNamespaces lifts the namespaces and mounts groups, and
// nothing else.
TEST(ProcessEscape, AllowNestedUserNamespacesLiftsOnlyNamespacesAndMounts) {
  SandboxFixture fx;
  std::string settings = write_settings(fx, R"({"allowNestedUserNamespaces": true})");
  auto r = fx.sh(probe_script({
                     {"unshare-user", "sys unshare-user"},
                     {"clone-newuser", "sys clone-newuser"},
                     {"nested-fsopen", "nested sys fsopen"},
                     {"clone3", "sys clone3"},
                     {"io_uring", "sys io_uring_setup"},
                     {"ptrace-child", "sys ptrace-child"},
                     {"keyctl", "sys keyctl"},
                     {"tiocsti", "ioctl 3 0x5412"},
                     {"packet", "socket 17 3 0"},
                 },
                 "exec 3<README.md"),
                 {"--settings", settings});
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_TRUE(allowed(res, "unshare-user"));
  EXPECT_TRUE(allowed(res, "clone-newuser"));
  EXPECT_EQ(res["nested-fsopen"], "userns OK|OK");
  EXPECT_TRUE(refused(res, "clone3", {"ENOSYS"}));
  EXPECT_TRUE(refused(res, "io_uring", {"ENOSYS"}));
  EXPECT_TRUE(refused(res, "ptrace-child", {"EPERM"}));
  EXPECT_TRUE(refused(res, "keyctl", {"EPERM"}));
  EXPECT_TRUE(refused(res, "tiocsti", {"EPERM"}));
  EXPECT_TRUE(refused(res, "packet", {"EAFNOSUPPORT"}));
}

// The filter compares the ioctl command on the 32 bits the kernel reads, so
// the same command with high bits set is refused too. fd 3 is a plain file:
// without the filter these calls would fail with ENOTTY, not EPERM.
TEST(ProcessEscape, TerminalInjectionIoctlsAreRefusedWhateverTheHighBits) {
  SandboxFixture fx;
  auto r = fx.sh(probe_script(
      {
          {"tiocsti", "ioctl 3 0x5412"},
          {"tiocsti-high", "ioctl 3 0xffffffff00005412"},
          {"tiocsti-high2", "ioctl 3 0x100005412"},
          {"tioclinux", "ioctl 3 0x541c"},
          {"tioclinux-high", "ioctl 3 0xffffffff0000541c"},
          {"fionread", "ioctl 3 0x541b"},  // allowed
      },
      "exec 3<README.md"));
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  for (const char* l : {"tiocsti", "tiocsti-high", "tiocsti-high2", "tioclinux", "tioclinux-high"})
    EXPECT_TRUE(refused(res, l, {"EPERM"}));
  EXPECT_TRUE(allowed(res, "fionread"));
}

TEST(ProcessEscape, RareSocketFamiliesAndRawSocketsAreRefused) {
  SandboxFixture fx;
  struct Sock {
    std::string label, args, expect;  // expect: an errno name or "OK"
  };
  const std::vector<Sock> socks = {
      {"packet", "socket 17 3 0", "EAFNOSUPPORT"},
      {"packet-dgram", "socket 17 2 0", "EAFNOSUPPORT"},
      {"packet-high-bits", "socket 0xffffffff00000011 3 0", "EAFNOSUPPORT"},
      {"vsock", "socket 40 1 0", "EAFNOSUPPORT"},
      {"alg", "socket 38 5 0", "EAFNOSUPPORT"},
      {"key", "socket 15 3 2", "EAFNOSUPPORT"},
      {"bluetooth", "socket 31 1 0", "EAFNOSUPPORT"},
      {"tipc", "socket 30 5 0", "EAFNOSUPPORT"},
      {"xdp", "socket 44 3 0", "EAFNOSUPPORT"},
      {"netlink-audit", "socket 16 3 9", "EAFNOSUPPORT"},
      {"netlink-uevent", "socket 16 3 15", "EAFNOSUPPORT"},
      {"netlink-generic", "socket 16 3 16", "EAFNOSUPPORT"},
      {"netlink-netfilter", "socket 16 3 12", "EAFNOSUPPORT"},
      {"vsock-pair", "socketpair 40 1 0", "EAFNOSUPPORT"},
      {"raw-inet", "socket 2 3 1", "EPERM"},
      {"raw-inet-cloexec", "socket 2 0x80003 1", "EPERM"},
      {"raw-inet6", "socket 10 3 58", "EPERM"},
      // Allowed neighbours.
      {"netlink-route", "socket 16 3 0", "OK"},
      {"netlink-sock-diag", "socket 16 3 4", "OK"},
      {"unix", "socket 1 1 0", "OK"},
      {"unix-pair", "socketpair 1 1 0", "OK"},
      {"unix-dgram-pair", "socketpair 1 2 0", "OK"},
      {"inet-stream", "socket 2 1 0", "OK"},
      {"inet6-dgram", "socket 10 2 0", "OK"},
  };
  std::vector<Try> tries;
  for (const auto& s : socks) tries.push_back({s.label, s.args});
  auto r = fx.sh(probe_script(tries));
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  for (const auto& s : socks) {
    if (s.expect == "OK") EXPECT_TRUE(allowed(res, s.label));
    else EXPECT_TRUE(refused(res, s.label, {s.expect}));
  }
}

// A 32-bit (int 0x80) or x32 system call is not answered but kills the
// process: SIGSYS, 159 to the shell.
TEST(ProcessEscape, ForeignSyscallAbisKillTheProcess) {
  SandboxFixture fx;
  auto r = fx.sh(probe_script({{"int80", "int80"}, {"x32", "x32"}, {"native", "creds"}}));
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_EQ(res["int80"], "killed 159");
  EXPECT_EQ(res["x32"], "killed 159");
  EXPECT_TRUE(allowed(res, "native"));
  // Run directly, airlock reports the signal as 128 + SIGSYS.
  EXPECT_EQ(fx.run({probe_bin(), "int80"}).code, 128 + SIGSYS);
}

// The filter answers through user notification; whoever holds the listener
// decides. The command must neither hold airlock's listener nor be able to
// put a listener of its own in front of it and answer "continue".
TEST(ProcessEscape, TheFilterCannotBeAnsweredFromInside) {
  SandboxFixture fx;
  auto r = fx.sh(probe_script({{"own-listener", "notify-continue"}}, "",
                              "printf 'fds %s\\n' \"$(ls -l /proc/self/fd/ /proc/$$/fd/ | tr '\\n' '|')\"\n"
                              "printf 'mode %s\\n' \"$(grep -E '^Seccomp:' /proc/self/status | tr '\\t\\n' '  ')\""));
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_EQ(res["own-listener"], "listener ERR EBUSY");
  EXPECT_TRUE(lacks(res["own-listener"], "unshare OK"));
  EXPECT_TRUE(lacks(res["fds"], "seccomp"));
  EXPECT_TRUE(contains(res["mode"], "Seccomp: 2"));
}

// ---------------------------------------------------------------------------
// Network

TEST(ProcessEscape, DirectConnectionsToTheInternetFindNoRoute) {
  SandboxFixture fx;
  // The host's own resolver, wherever it is.
  std::string resolver = "10.255.255.53";
  {
    std::ifstream rc("/etc/resolv.conf");
    for (std::string line; std::getline(rc, line);)
      if (line.rfind("nameserver ", 0) == 0 && line.find(':') == std::string::npos) {
        resolver = line.substr(11);
        break;
      }
  }
  auto r = fx.sh(probe_script(
      {
          {"tcp4", "connect-inet 1.1.1.1 443"},
          {"tcp4-dns", "connect-inet 8.8.8.8 53"},
          {"metadata", "connect-inet 169.254.169.254 80"},
          {"tcp6", "connect-inet 2606:4700::1111 443"},
          {"metadata6", "connect-inet fd00:ec2::254 80"},
          {"mapped", "connect-inet ::ffff:1.1.1.1 443"},
          {"udp4", "udp-send 8.8.8.8 53"},
          {"udp6", "udp-send 2001:4860:4860::8888 53"},
          {"resolver", "udp-send " + resolver + " 53"},
      },
      "",
      "printf 'links %s\\n' \"$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ' ')\""));
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  for (const char* l : {"tcp4", "tcp4-dns", "metadata", "tcp6", "metadata6", "mapped", "udp4", "udp6", "resolver"})
    EXPECT_TRUE(refused(res, l, kNoRoute));
  EXPECT_EQ(res["links"], "lo ") << "the sandbox's network namespace has an interface besides loopback";
}

TEST(ProcessEscape, DnsLookupsFail) {
  SandboxFixture fx;
  auto r = fx.sh(
      "getent hosts example.com; echo \"hosts $?\"\n"
      "getent ahosts example.com; echo \"ahosts $?\"\n"
      "printf 'localhost %s\\n' \"$(getent hosts localhost | tr -s ' \\n' ' ')\"\n");  // allowed: /etc/hosts
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_EQ(res["hosts"], "2");
  EXPECT_EQ(res["ahosts"], "2");
  EXPECT_TRUE(contains(res["localhost"], "localhost")) << "getent itself does not work";
}

// The sandbox has its own loopback: the host's 127.0.0.1 and ::1 services
// are not on it.
TEST(ProcessEscape, HostLoopbackServicesAreUnreachable) {
  SandboxFixture fx;
  auto v4 = HostListener::tcp("127.0.0.1");
  auto v6 = HostListener::tcp("::1");
  ASSERT_TRUE(v4.ok());
  std::vector<Try> tries = {{"tcp4", "connect-inet 127.0.0.1 " + std::to_string(v4.port())},
                            {"tcp4-any", "connect-inet 0.0.0.0 " + std::to_string(v4.port())}};
  if (v6.ok()) tries.push_back({"tcp6", "connect-inet ::1 " + std::to_string(v6.port())});
  auto r = fx.sh(probe_script(tries));
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  std::set<std::string> no = kNoRoute;
  no.insert("ECONNREFUSED");  // a loopback that is up, with nothing listening
  EXPECT_TRUE(refused(res, "tcp4", no));
  EXPECT_TRUE(refused(res, "tcp4-any", no));
  EXPECT_FALSE(v4.accepted()) << "the host's 127.0.0.1 listener got a connection from the sandbox";
  EXPECT_TRUE(v4.reachable_from_host());
  if (v6.ok()) {
    EXPECT_TRUE(refused(res, "tcp6", no));
    EXPECT_FALSE(v6.accepted()) << "the host's ::1 listener got a connection from the sandbox";
    EXPECT_TRUE(v6.reachable_from_host());
  }
}

// The sandbox's own loopback carries the command's own local servers (a
// test suite's HTTP server, a dev database): only the host's are out of
// reach.
TEST(ProcessEscape, TheSandboxesOwnLoopbackWorks) {
  SandboxFixture fx;
  auto r = fx.sh(probe_script({{"tcp4", "tcp-self 127.0.0.1"}, {"tcp6", "tcp-self ::1"}}));
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_TRUE(allowed(res, "tcp4")) << "loopback is down in the sandbox's network namespace";
  EXPECT_TRUE(allowed(res, "tcp6"));
}

// Abstract unix sockets belong to a network namespace (and Landlock ABI 6
// scopes them as well): the host's D-Bus or X11-style abstract sockets are
// out of reach; the sandbox's own still work.
TEST(ProcessEscape, HostAbstractUnixSocketsAreUnreachable) {
  SandboxFixture fx;
  std::string name = unique_name("abstract");
  auto host = HostListener::unix_socket("@" + name);
  ASSERT_TRUE(host.ok());
  auto r = fx.sh(probe_script({
      {"host", "connect-abstract " + name},
      {"own", "abstract-self " + unique_name("own")},  // allowed
  }));
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_TRUE(refused(res, "host", {"ECONNREFUSED", "EPERM"}));
  EXPECT_TRUE(allowed(res, "own"));
  EXPECT_FALSE(host.accepted()) << "the host's abstract socket got a connection from the sandbox";
  EXPECT_TRUE(host.reachable_from_host());
}

// Where host services usually put their sockets (the ssh agent and X11 in
// /tmp, D-Bus, docker, systemd and $XDG_RUNTIME_DIR in /run): private in
// the sandbox, so the paths do not exist.
TEST(ProcessEscape, HostUnixSocketsInTmpAndRunAreHidden) {
  SandboxFixture fx;
  std::vector<std::string> paths = {"/tmp/" + unique_name("tmp") + ".sock"};
  std::string run_dir = ::access("/run", W_OK) == 0 ? "/run" : "/run/user/" + std::to_string(::getuid());
  if (::access(run_dir.c_str(), W_OK) == 0) paths.push_back(run_dir + "/" + unique_name("run") + ".sock");
  std::vector<HostListener> hosts;
  std::vector<Try> tries;
  for (size_t i = 0; i < paths.size(); ++i) {
    hosts.push_back(HostListener::unix_socket(paths[i]));
    ASSERT_TRUE(hosts.back().ok()) << paths[i];
    tries.push_back({"host-" + std::to_string(i), "connect-unix " + sq(paths[i])});
  }
  tries.push_back({"own", "unix-self own.sock"});  // allowed: in the workspace
  auto r = fx.sh(probe_script(tries));
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  for (size_t i = 0; i < paths.size(); ++i) {
    EXPECT_TRUE(refused(res, "host-" + std::to_string(i), {"ENOENT"})) << paths[i];
    EXPECT_FALSE(hosts[i].accepted()) << paths[i] << " got a connection from the sandbox";
    EXPECT_TRUE(hosts[i].reachable_from_host()) << paths[i];
  }
  EXPECT_TRUE(allowed(res, "own"));
  if (paths.size() < 2) std::cout << "[ NOTE ] no writable /run here: only /tmp was tried\n";
}

// Host services also listen on sockets in the home folder and elsewhere in
// the read-only host view: Docker Desktop, the 1Password and gpg agents, a
// developer's own database. Read-only mounts do not stop connect(2), so
// each must be unreachable some other way: the well-known ones are hidden,
// and a socket at a path nobody listed must be unreachable too.
TEST(ProcessEscape, HostUnixSocketsElsewhereInTheHostViewAreUnreachable) {
  SandboxFixture fx;
  const std::vector<std::string> rels = {"home/.docker/desktop/docker.sock", "home/.docker/run/docker.sock",
                                         "home/.1password/agent.sock",       "home/.gnupg/S.gpg-agent",
                                         "home/.ssh/agent.sock",             "home/pgdata/.s.PGSQL.5432",
                                         "services/db.sock"};
  std::vector<HostListener> hosts;
  std::vector<Try> tries;
  for (size_t i = 0; i < rels.size(); ++i) {
    fx.tree.mkdir(rels[i].substr(0, rels[i].rfind('/')));
    hosts.push_back(HostListener::unix_socket(fx.tree.path(rels[i])));
    ASSERT_TRUE(hosts.back().ok()) << rels[i];
    tries.push_back({rels[i], "connect-unix " + sq(fx.tree.path(rels[i]))});
  }
  auto r = fx.sh(probe_script(tries));
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  for (size_t i = 0; i < rels.size(); ++i) {
    EXPECT_TRUE(res.count(rels[i]) && res[rels[i]].rfind("ERR ", 0) == 0)
        << rels[i] << ": connect from the sandbox got '" << res[rels[i]] << "'";
    EXPECT_FALSE(hosts[i].accepted()) << rels[i] << ": the host's service got a connection from the sandbox";
  }
}

// ---------------------------------------------------------------------------
// Terminal

// script(1) gives airlock a terminal. With stdin a terminal too, the command
// gets the sandbox's own pty as its controlling terminal. With stdin not a
// terminal, its stdout is a terminal without being its controlling one
// (the caller's terminal itself, or a pty of the sandbox's standing in for
// it). TIOCSTI and TIOCLINUX are refused on both, and TIOCGWINSZ (allowed)
// shows the fd really is a terminal.
TEST(ProcessEscape, KeystrokesCannotBeInjectedIntoAnyTerminal) {
  SandboxFixture fx;
  std::string p = probe_bin();
  auto line = [&](const std::string& label, const std::string& args) {
    return "printf '" + label + " %s\\n' \"$(" + p + " " + args + " 2>&1)\"; ";
  };
  std::string own = line("own-tiocsti", "tiocsti 0") + line("own-tiocsti-high", "ioctl 0 0xffffffff00005412") +
                    line("own-tioclinux", "ioctl 0 0x541c") + line("own-winsz", "ioctl 0 0x5413");
  // The probe writes its results to the very terminal it attacks (fd 1);
  // TIOCGWINSZ last.
  std::string caller_direct = p + " tiocsti 1; " + p + " ioctl 1 0xffffffff00005412; " + p + " ioctl 1 0x5413";
  std::string cmd = airlock_bin() + " run -- sh -c " + sq(own) + "; echo caller-begin; " + airlock_bin() +
                    " run -- sh -c " + sq(caller_direct) + " </dev/null; echo caller-end";
  auto r = run_program({"/usr/bin/script", "-qec", cmd, "/dev/null"}, RunOptions{fx.ws, {{"HOME", fx.home}}, "", 20000});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  auto res = parse_results(r.out);
  EXPECT_TRUE(refused(res, "own-tiocsti", {"EPERM"}));
  EXPECT_TRUE(refused(res, "own-tiocsti-high", {"EPERM"}));
  EXPECT_TRUE(refused(res, "own-tioclinux", {"EPERM"}));
  EXPECT_TRUE(allowed(res, "own-winsz")) << "stdin was not a terminal: the test proves nothing";
  // The caller's terminal: three results, in order.
  std::string out = r.out;
  for (size_t at; (at = out.find('\r')) != std::string::npos;) out.erase(at, 1);
  auto b = out.find("caller-begin\n"), e = out.find("caller-end");
  ASSERT_TRUE(b != std::string::npos && e != std::string::npos) << out;
  std::string section = out.substr(b + 13, e - b - 13);
  EXPECT_EQ(section, "ERR EPERM\nERR EPERM\nOK\n") << "TIOCSTI, TIOCSTI with high bits, TIOCGWINSZ";
}

}  // namespace
}  // namespace airlock::test
