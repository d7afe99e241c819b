// The sandbox's init, pid 1 of the new pid namespace. It finishes the
// sandbox from the inside, in an order that is the security argument:
// nothing of the host is reachable before the command runs, and privilege
// ends before any untrusted code exists.
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>

#include "fs/landlock.h"
#include "sandbox/caps.h"
#include "sandbox/limits.h"
#include "sandbox/mounts.h"
#include "sandbox/protocol.h"
#include "seccomp/filter.h"
#include "sandbox/sandbox.h"
#include "util/log.h"
#include "util/sys.h"

namespace airlock::sandbox {

namespace {

const int kForwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT};

[[noreturn]] void fail(int sock, const std::string& msg) {
  (void)send_msg(sock, MsgType::Error, msg);
  ::_exit(kExitAirlockError);
}

std::string env_get(const std::vector<std::string>& env, const std::string& name) {
  for (const auto& kv : env)
    if (kv.compare(0, name.size() + 1, name + "=") == 0) return kv.substr(name.size() + 1);
  return "";
}

// In the forked command: become a session leader (no way back to the
// caller's terminal), take the pty if there is one, exec.
[[noreturn]] void exec_command(const Spec& spec, const std::string& pty_slave) {
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  // A new session: the command has no controlling terminal of the caller's,
  // so TIOCSTI and friends cannot reach it.
  if (::setsid() < 0) { log::info("setsid: {}", std::strerror(errno)); ::_exit(kExitAirlockError); }
  if (!pty_slave.empty()) {
    int s = ::open(pty_slave.c_str(), O_RDWR);  // the first tty a leader opens becomes its own
    if (s < 0 || ::ioctl(s, TIOCSCTTY, 0) != 0) {
      log::info("open({}): {}", pty_slave, std::strerror(errno));
      ::_exit(kExitAirlockError);
    }
    for (int i = 0; i < 3; ++i)
      if (spec.stdio_tty[i]) ::dup2(s, i);
    if (s > 2) ::close(s);
  }
  // Nothing but stdio crosses into the command.
  ::syscall(SYS_close_range, 3U, ~0U, 0U);

  const auto& argv_s = spec.policy->argv;
  std::vector<char*> argv, envp;
  for (const auto& a : argv_s) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : spec.policy->env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  const std::string& cmd = argv_s[0];
  int saved = ENOENT;
  if (cmd.find('/') != std::string::npos) {
    ::execve(cmd.c_str(), argv.data(), envp.data());
    saved = errno;
  } else {
    std::string path = env_get(spec.policy->env, "PATH");
    if (path.empty()) path = "/usr/local/bin:/usr/bin:/bin";
    size_t i = 0;
    while (i <= path.size()) {
      size_t j = path.find(':', i);
      if (j == std::string::npos) j = path.size();
      std::string dir = path.substr(i, j - i);
      if (dir.empty()) dir = ".";
      std::string full = dir + "/" + cmd;
      ::execve(full.c_str(), argv.data(), envp.data());
      // An unsearchable PATH folder is not a found-but-refused command.
      if (errno != ENOENT && errno != ENOTDIR && ::access(full.c_str(), F_OK) == 0) saved = errno;
      i = j + 1;
    }
  }
  if (saved == ENOENT) {
    log::info("{}: command not found inside the sandbox", cmd);
    ::_exit(127);
  }
  log::info("execve({}): {}", cmd, std::strerror(saved));
  ::_exit(126);
}

}  // namespace

[[noreturn]] void init_main(const Spec& spec, int sock) {
  // 1. Die with the supervisor, whatever kills it: the whole sandbox (this
  //    pid namespace) goes with pid 1.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail(sock, "prctl(PR_SET_PDEATHSIG) failed");
  // This process began as a copy of the supervisor: the TLS CA's private
  // keys go at once. (Real secrets were never copied: their pages are
  // MADV_DONTFORK, and every other copy was wiped before the clone.)
  if (spec.materials && spec.materials->ca) spec.materials->ca->drop_private_keys();
  // 2. Wait until the supervisor has written our uid/gid maps. A missing
  //    message means the supervisor is gone: stop here.
  GoMessage go;
  if (!sys::read_exact(sock, &go, sizeof go)) ::_exit(kExitAirlockError);
  // 3. Our own hostname (the uts namespace is private).
  if (::sethostname("airlock", 7) != 0) fail(sock, "sethostname(airlock) failed");
  // The sandbox's own loopback, up: a test suite's local server works, and
  // nothing else exists in this network namespace to reach.
  {
    UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    struct ifreq ifr {};
    std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    if (!s || ::ioctl(s.get(), SIOCGIFFLAGS, &ifr) != 0) fail(sock, "ioctl(lo, SIOCGIFFLAGS) failed");
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
    if (::ioctl(s.get(), SIOCSIFFLAGS, &ifr) != 0) fail(sock, "ioctl(lo, SIOCSIFFLAGS, IFF_UP) failed");
  }
  // The egress proxy's doors, if the policy has a network: listening
  //    sockets on this loopback, handed to the supervisor, whose event loop
  //    on the host side accepts on them. Nothing else leads out.
  UniqueFd http_listener, socks_listener;
  if (spec.policy->network.enabled) {
    auto listen_on = [&](uint16_t port) {
      UniqueFd l(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
      int one = 1;
      struct sockaddr_in a {};
      a.sin_family = AF_INET;
      a.sin_port = htons(port);
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (!l || ::setsockopt(l.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
          ::bind(l.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(l.get(), 4096) != 0)
        fail(sock, fmt::format("the proxy's listening socket on 127.0.0.1:{}: {}", port, std::strerror(errno)));
      return l;
    };
    http_listener = listen_on(spec.policy->network.http_port);
    socks_listener = listen_on(spec.policy->network.socks_port);
  }
  // 4. The new root: host read-only, writable paths bound in, secrets
  //    replaced, fresh /proc, /dev, /tmp. Afterwards the host's tree is gone.
  auto phase = [sock](char want) -> Result<PhaseMessage> {
    PhaseMessage pm;
    if (!sys::read_exact(sock, &pm, sizeof pm) || pm.phase != want || !pm.ok) ::_exit(kExitAirlockError);
    return pm;
  };
  std::function<Status()> wait_placeholders = [&]() -> Status {
    (void)phase('P');
    return {};
  };
  if (auto st = build_and_enter_root(*spec.plan, wait_placeholders); !st) fail(sock, st.error().message);
  // 5. Start where the caller was (inside the workspace), or at its root.
  {
    UniqueFd root(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
    auto cwd = sys::open_beneath(root.get(), spec.policy->cwd, O_PATH | O_DIRECTORY);
    if (!cwd || ::fchdir(cwd->get()) != 0)
      fail(sock, fmt::format("cannot enter {} inside the sandbox", spec.policy->cwd));
  }
  // 6. A terminal of the sandbox's own, if the caller has one: the command
  //    gets a real tty (job control, window size) that is not the caller's.
  UniqueFd master;
  std::string slave;
  if (go.use_pty) {
    master.reset(::open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC));
    if (!master || ::unlockpt(master.get()) != 0) fail(sock, fmt::format("open(/dev/ptmx): {}", std::strerror(errno)));
    char name[64];
    if (::ptsname_r(master.get(), name, sizeof name) != 0) fail(sock, "ptsname failed");
    slave = name;
    if (go.have_winsize) (void)::ioctl(master.get(), TIOCSWINSZ, &go.ws);
  }
  // 7. Not dumpable: the command cannot ptrace init or read its memory.
  (void)::prctl(PR_SET_DUMPABLE, 0);
  // 8. Resource limits the cgroup does not cover (or all, without one).
  auto limits = phase('L');
  // The compiled syscall filter follows in a message of its own.
  std::string bpf(1 << 16, '\0');
  ssize_t got;
  do got = ::recv(sock, bpf.data(), bpf.size(), 0);
  while (got < 0 && errno == EINTR);
  if (got <= 0) ::_exit(kExitAirlockError);
  bpf.resize(static_cast<size_t>(got));
  if (auto st = apply_rlimits(spec.policy->limits, limits->cgroup_pids, limits->cgroup_memory); !st)
    fail(sock, st.error().message);
  // --- privilege ends here: no capabilities, no_new_privs -----------------
  if (auto st = drop_all_privileges(); !st) fail(sock, st.error().message);
  // 9. Landlock: the second filesystem layer, on init and all it forks.
  if (spec.landlock_abi > 0) {
    auto rep = fs::apply_landlock(spec.plan->landlock, spec.landlock_abi);
    if (!rep) fail(sock, rep.error().message);
    log::debug("landlock ABI {}: {} rules ({} paths vanished since planning)", rep->abi, rep->rules, rep->skipped);
  }
  // 10. The syscall filter, last: everything above needed calls it refuses.
  //    Refusals are answered by the supervisor through the listener.
  auto listener = seccomp::load(bpf);
  if (!listener) fail(sock, listener.error().message);
  log::debug("syscall filter installed");
  // 11. Signals arrive as data (sigwaitinfo), never as handlers.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  for (int s : kForwarded) sigaddset(&set, s);
  ::sigprocmask(SIG_BLOCK, &set, nullptr);
  // 12. The command.
  pid_t cmd = ::fork();
  if (cmd < 0) fail(sock, fmt::format("fork: {}", std::strerror(errno)));
  if (cmd == 0) {
    master.reset();
    listener->reset();
    http_listener.reset();
    socks_listener.reset();
    exec_command(spec, slave);
  }
  // The supervisor gets the pty master ("p") and the filter's listener ("s").
  std::string tags;
  std::vector<int> fds;
  if (go.use_pty) { tags += 'p'; fds.push_back(master.get()); }
  tags += 's';
  fds.push_back(listener->get());
  if (http_listener) {
    tags += "hk";
    fds.push_back(http_listener.get());
    fds.push_back(socks_listener.get());
  }
  if (!send_msg(sock, MsgType::Ready, tags, fds)) ::_exit(kExitAirlockError);
  master.reset();
  listener->reset();
  http_listener.reset();
  socks_listener.reset();
  // 13. Reap everything; forward signals to the command's process group;
  //     when the command ends, report and end the namespace with it.
  for (;;) {
    siginfo_t si;
    int sig = ::sigwaitinfo(&set, &si);
    if (sig < 0) continue;
    if (sig != SIGCHLD) {
      if (::kill(-cmd, sig) != 0) (void)::kill(cmd, sig);
      continue;
    }
    int status;
    pid_t p;
    while ((p = ::waitpid(-1, &status, WNOHANG)) > 0) {
      if (p != cmd) continue;
      (void)send_msg(sock, MsgType::Status, std::string(reinterpret_cast<char*>(&status), sizeof status));
      ::_exit(0);
    }
  }
}

}  // namespace airlock::sandbox
