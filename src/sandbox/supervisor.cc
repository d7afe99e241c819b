// The supervisor: airlock's process on the host side. It creates the
// namespaces, writes the id maps, relays the terminal and signals, and turns
// the command's end into airlock's exit status.
#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>

#include <sys/eventfd.h>
#include <sys/random.h>

#include <atomic>
#include <mutex>

#include "fs/gitguard.h"
#include "net/ask.h"
#include "net/proxy.h"
#include "policy/settings.h"
#include "fs/placeholders.h"
#include "sandbox/limits.h"
#include "sandbox/protocol.h"
#include "sandbox/sandbox.h"
#include "sandbox/terminal.h"
#include "sandbox/watch.h"
#include "seccomp/filter.h"
#include "util/log.h"
#include "util/sys.h"

namespace airlock::sandbox {

namespace {

constexpr uint64_t kNamespaces = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS |
                                 CLONE_NEWNET | CLONE_NEWCGROUP;

std::string clone_hint(int e) {
  if (e == EPERM || e == EACCES)
    return " (unprivileged user namespaces are disabled here: check sysctl kernel.unprivileged_userns_clone, "
           "user.max_user_namespaces and AppArmor's kernel.apparmor_restrict_unprivileged_userns)";
  if (e == ENOSPC) return " (user.max_user_namespaces is exhausted or 0)";
  if (e == ENOSYS) return " (the kernel lacks clone3: Linux 5.3 or later is needed)";
  return "";
}

// The uid/gid maps: the command keeps the caller's ids, and nothing else
// exists inside. setgroups is denied so supplementary groups cannot be
// dropped to get around a group-deny permission.
Status write_id_maps(pid_t pid, uid_t uid, gid_t gid) {
  std::string base = fmt::format("/proc/{}/", pid);
  AIRLOCK_TRY(sys::write_file(base + "setgroups", "deny"));
  AIRLOCK_TRY(sys::write_file(base + "uid_map", fmt::format("{} {} 1\n", uid, uid)));
  AIRLOCK_TRY(sys::write_file(base + "gid_map", fmt::format("{} {} 1\n", gid, gid)));
  return {};
}

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return kExitAirlockError;
}

class Supervisor {
 public:
  explicit Supervisor(const Spec& s) : spec_(s) {}

  int run() {
    // Signals we relay are taken as data from a signalfd; SIGPIPE is kept
    // blocked so a closed stdout is an error code, not our death.
    sigset_t set;
    sigemptyset(&set);
    for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT}) sigaddset(&set, s);
    sigset_t blocked = set;
    sigaddset(&blocked, SIGPIPE);
    ::sigprocmask(SIG_BLOCK, &blocked, nullptr);
    sigfd_.reset(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!sigfd_) return fail(sys_err("signalfd").message);

    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return fail(sys_err("socketpair").message);
    UniqueFd mine(sv[0]), theirs(sv[1]);

    int pidfd = -1;
    struct clone_args ca {};
    ca.flags = kNamespaces | CLONE_PIDFD;
    ca.pidfd = reinterpret_cast<uint64_t>(&pidfd);
    ca.exit_signal = SIGCHLD;
    long pid = ::syscall(SYS_clone3, &ca, sizeof ca);
    if (pid < 0) {
      int e = errno;
      return fail(sys_err("clone3(new user, mount, pid, net, ipc, uts, cgroup namespaces)", e).message + clone_hint(e));
    }
    if (pid == 0) {
      // The child keeps stdio and its end of the channel, nothing else.
      int keep = theirs.get();
      if (keep > 3) ::syscall(SYS_close_range, 3U, static_cast<unsigned>(keep - 1), 0U);
      ::syscall(SYS_close_range, static_cast<unsigned>(keep + 1), ~0U, 0U);
      init_main(spec_, keep);
    }
    child_ = static_cast<pid_t>(pid);
    pidfd_.reset(pidfd);
    log::debug("namespaces created (init is pid {})", child_);
    theirs.reset();
    sock_ = std::move(mine);

    if (auto st = write_id_maps(child_, spec_.policy->uid, spec_.policy->gid); !st)
      return fail_and_reap(st.error().message);
    auto watch = MountWatch::start(spec_.plan->watch);
    if (!watch) return fail_and_reap(watch.error().message);
    watch_ = std::move(*watch);
    GoMessage go;
    go.use_pty = spec_.use_pty;
    if (spec_.use_pty && ::ioctl(tty_fd(), TIOCGWINSZ, &go.ws) == 0) go.have_winsize = 1;
    if (!sys::write_all(sock_.get(), &go, sizeof go)) return fail_and_reap("the sandbox died during setup");

    // While init builds the root, on the other core: the placeholders it
    // will mount on, then the cgroup it must be in before the command runs.
    {
      struct timespec now {};
      ::clock_gettime(CLOCK_REALTIME, &now);
      started_ = static_cast<int64_t>(now.tv_sec) * 1000000000LL + now.tv_nsec;
    }
    git_before_.repos.insert(spec_.policy->git_repos.begin(), spec_.policy->git_repos.end());
    git_before_.commondirs.insert(spec_.policy->git_commondirs.begin(), spec_.policy->git_commondirs.end());
    // Placeholders, after signals are blocked: a ^C now cannot leave
    // placeholders that were never recorded.
    auto lease = fs::PlaceholderLease::acquire(spec_.plan->placeholders, spec_.plan->watch);
    if (!lease) return fail_and_reap(lease.error().message);
    lease_ = std::move(*lease);
    log::debug("placeholders ready");

    lease_.watch(child_);
    PhaseMessage placed{'P', 1, 0, 0};
    if (!sys::write_all(sock_.get(), &placed, sizeof placed)) return fail_and_reap("the sandbox died during setup");
    const std::string& bpf = *spec_.seccomp_bpf;
    // Limits: a cgroup holds init (and so everything it starts) before it
    // runs a single step of its own.
    auto cg = Cgroup::create(spec_.policy->limits, child_);
    if (!cg) return fail_and_reap(fmt::format("{} (setting up resource limits)", cg.error().message));
    cgroup_ = std::move(*cg);
    log::debug("limits: processes {} and memory {} by {}; timeout {}", spec_.policy->limits.max_processes,
               spec_.policy->limits.memory_bytes, cgroup_.mechanism(), spec_.policy->limits.timeout_seconds);
    PhaseMessage limited{'L', 1, static_cast<uint8_t>(cgroup_.holds_processes()),
                         static_cast<uint8_t>(cgroup_.holds_memory())};
    if (!sys::write_all(sock_.get(), &limited, sizeof limited) || !sys::write_all(sock_.get(), bpf.data(), bpf.size()))
      return fail_and_reap("the sandbox died during setup");

    auto ready = recv_msg(sock_.get());
    log::debug("sandbox ready");
    if (!ready) return fail_and_reap(ready.error().message);
    if (ready->type == MsgType::Error) return fail_and_reap(ready->payload);
    if (ready->type != MsgType::Ready) return fail_and_reap("unexpected message from the sandbox");
    UniqueFd http_listener, socks_listener;
    for (size_t i = 0; i < ready->payload.size() && i < ready->fds.size(); ++i) {
      if (ready->payload[i] == 'p') master_ = std::move(ready->fds[i]);
      if (ready->payload[i] == 's') listener_ = std::move(ready->fds[i]);
      if (ready->payload[i] == 'h') http_listener = std::move(ready->fds[i]);
      if (ready->payload[i] == 'k') socks_listener = std::move(ready->fds[i]);
    }
    if (http_listener) {
      if (auto st = start_proxy(std::move(http_listener), std::move(socks_listener)); !st)
        return fail_and_reap(st.error().message);
    }
    return relay();
  }

 private:
  int fail(const std::string& msg) {
    log::line(msg);
    return kExitAirlockError;
  }

  int fail_and_reap(const std::string& msg) {
    if (child_ > 0) {
      ::kill(child_, SIGKILL);
      ::waitpid(child_, nullptr, 0);
      child_ = -1;
    }
    return fail(msg);
  }

  // The egress proxy, on a thread of its own, serving the listening
  // sockets init made in the sandbox's network namespace.
  Status start_proxy(UniqueFd http_listener, UniqueFd socks_listener) {
    const auto& np = spec_.policy->network;
    net::ProxyConfig pc;
    pc.policy = np;
    pc.http_listener = std::move(http_listener);
    pc.socks_listener = std::move(socks_listener);
    if (spec_.audit_fd >= 0) pc.audit.reset(::fcntl(spec_.audit_fd, F_DUPFD_CLOEXEC, 3));
    uint8_t rnd[8] = {};
    (void)!::getrandom(rnd, sizeof rnd, 0);
    for (uint8_t b : rnd) pc.sandbox_id += fmt::format("{:02x}", b);
    int cfd = spec_.policy->control_fd;
    if (cfd >= 0) {
      auto sink = rules_sink_;
      pc.asker = net::make_control_asker(cfd, pc.sandbox_id, [sink, cfd](const std::string& line) {
        // srt's live updates: a whole settings object per line; its
        // network rules replace the running ones.
        auto s = policy::parse_settings(line, fmt::format("control fd {}", cfd));
        if (!s) {
          log::line(fmt::format("{}; ignored, the previous rules stay in force", s.error().message));
          return;
        }
        auto n = net::build_network_policy({{s->source, &s->network}});
        if (!n) {
          log::line(fmt::format("{}; ignored, the previous rules stay in force", n.error().message));
          return;
        }
        sink->set(std::move(*n));
      });
    } else if (np.ask == net::AskMode::Tty) {
      wake_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
      pc.asker = net::make_tty_asker([this](bool pause) {
        stdin_paused_ = pause;
        uint64_t one = 1;
        if (wake_) (void)!::write(wake_.get(), &one, sizeof one);
      });
    }
    if (spec_.materials) {
      // From here on this process holds keys and secrets in memory that
      // OpenSSL and the HTTP buffers own: no core dump, no ptrace by other
      // processes of this user. (Only now: the sandbox's id maps, written
      // through /proc, are done.)
      if (spec_.materials->ca || spec_.materials->secrets) (void)::prctl(PR_SET_DUMPABLE, 0);
      pc.ca = spec_.materials->ca;
      pc.secrets = spec_.materials->secrets;
      pid_t child = child_;
      pc.end_sandbox = [child](const std::string&) {
        log::line("credentials.onExfiltration is \"end\": stopping the sandbox");
        if (child > 0) ::kill(child, SIGKILL);
      };
    }
    std::string file = spec_.user_settings;
    if (!file.empty()) pc.remember = [file](const std::string& p) { return net::remember_in_user_settings(file, p); };
    auto proxy = net::Proxy::start(std::move(pc));
    if (!proxy) return proxy.error();
    proxy_ = std::move(*proxy);
    rules_sink_->attach(proxy_.get());
    log::debug("proxy: http on 127.0.0.1:{}, socks5 on 127.0.0.1:{} (inside)", np.http_port, np.socks_port);
    return {};
  }

  // Live rule updates may arrive (on the control reader's thread) before
  // the proxy runs: the last one waits here.
  struct RulesSink {
    std::mutex mu;
    net::Proxy* proxy = nullptr;
    std::optional<net::NetworkPolicy> pending;
    void set(net::NetworkPolicy p) {
      std::lock_guard<std::mutex> g(mu);
      if (proxy) proxy->update_rules(std::move(p));
      else pending = std::move(p);
    }
    void attach(net::Proxy* p) {
      std::lock_guard<std::mutex> g(mu);
      proxy = p;
      if (pending) p->update_rules(std::move(*pending));
      pending.reset();
    }
    void detach() {
      std::lock_guard<std::mutex> g(mu);
      proxy = nullptr;
    }
  };

  void forward(int sig) {
    if (sig == SIGWINCH && master_) {
      copy_winsize(tty_fd(), master_.get());  // the kernel tells the pty's foreground job
      return;
    }
    (void)::kill(child_, sig);  // init passes it on to the command's process group
  }

  // The caller's terminal: the first of stdin, stdout, stderr that is one.
  int tty_fd() const {
    for (int i = 0; i < 3; ++i)
      if (spec_.stdio_tty[i]) return i;
    return STDIN_FILENO;
  }

  int out_fd() const {
    if (spec_.stdio_tty[1]) return STDOUT_FILENO;
    if (spec_.stdio_tty[2]) return STDERR_FILENO;
    return -1;
  }

  bool pump(int from, int to) {
    char buf[16384];
    ssize_t n = ::read(from, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
    if (n <= 0) return false;
    if (to >= 0) (void)sys::write_all(to, buf, static_cast<size_t>(n));
    return true;
  }

  int relay() {
    if (spec_.policy->limits.timeout_seconds)
      deadline_ = std::chrono::steady_clock::now() + std::chrono::seconds(spec_.policy->limits.timeout_seconds);
    std::optional<RawTerminal> raw;
    if (master_ && spec_.stdio_tty[0]) raw.emplace(STDIN_FILENO);
    bool stdin_open = master_ && spec_.stdio_tty[0];
    std::optional<int> status;
    bool sock_open = true;
    for (;;) {
      struct pollfd p[8];
      int n = 0;
      p[n++] = {sigfd_.get(), POLLIN, 0};
      p[n++] = {pidfd_.get(), POLLIN, 0};
      int timeout_ms = -1;
      if (deadline_) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*deadline_ - std::chrono::steady_clock::now());
        timeout_ms = static_cast<int>(std::max<long>(0, left.count()));
      }
      int i_sock = -1, i_in = -1, i_master = -1, i_filter = -1;
      if (listener_) { i_filter = n; p[n++] = {listener_.get(), POLLIN, 0}; }
      int i_watch = -1;
      if (watch_.fd() >= 0 && tampered_.empty()) { i_watch = n; p[n++] = {watch_.fd(), POLLIN, 0}; }
      if (sock_open) { i_sock = n; p[n++] = {sock_.get(), POLLIN, 0}; }
      if (stdin_open && !stdin_paused_) { i_in = n; p[n++] = {STDIN_FILENO, POLLIN, 0}; }
      int i_wake = -1;
      if (wake_) { i_wake = n; p[n++] = {wake_.get(), POLLIN, 0}; }
      if (master_) { i_master = n; p[n++] = {master_.get(), POLLIN, 0}; }
      int ready = ::poll(p, static_cast<nfds_t>(n), timeout_ms);
      if (ready < 0) {
        if (errno == EINTR) continue;
        break;
      }
      if (ready == 0 && deadline_) {
        // Wall clock is up: the whole sandbox goes (init's death ends the
        // pid namespace), and airlock says so.
        ::kill(child_, SIGKILL);
        deadline_.reset();
        timed_out_ = true;
        continue;
      }
      if (p[0].revents & POLLIN) {
        struct signalfd_siginfo si;
        while (::read(sigfd_.get(), &si, sizeof si) == sizeof si) forward(static_cast<int>(si.ssi_signo));
      }
      if (i_watch >= 0 && p[i_watch].revents) {
        tampered_ = watch_.check();
        if (!tampered_.empty()) ::kill(child_, SIGKILL);  // fail closed: the sandbox goes
      }
      if (i_filter >= 0 && p[i_filter].revents) {
        if (p[i_filter].revents & (POLLHUP | POLLERR)) listener_.reset();  // nobody left under the filter
        else record(seccomp::answer(listener_.get(), filter_opts()));
      }
      if (i_wake >= 0 && p[i_wake].revents) {
        uint64_t v;
        (void)!::read(wake_.get(), &v, sizeof v);  // a prompt began or ended: poll again with or without stdin
      }
      if (i_master >= 0 && p[i_master].revents) {
        if (!pump(master_.get(), out_fd())) master_.reset();
      }
      if (i_in >= 0 && p[i_in].revents) {
        if (!pump(STDIN_FILENO, master_ ? master_.get() : -1)) stdin_open = false;
      }
      if (i_sock >= 0 && p[i_sock].revents) {
        auto m = recv_msg(sock_.get());
        if (m && m->type == MsgType::Status && m->payload.size() == sizeof(int)) {
          int st;
          std::memcpy(&st, m->payload.data(), sizeof st);
          status = st;
        }
        if (!m) sock_open = false;
      }
      if (p[1].revents & POLLIN) break;  // init is gone: the sandbox is over
    }
    // The status message may still be queued behind init's exit.
    if (!status && sock_open) {
      auto m = recv_msg(sock_.get());
      if (m && m->type == MsgType::Status && m->payload.size() == sizeof(int)) {
        int st;
        std::memcpy(&st, m->payload.data(), sizeof st);
        status = st;
      }
    }
    // Drain what the command wrote to its terminal before it ended.
    if (master_) {
      ::fcntl(master_.get(), F_SETFL, ::fcntl(master_.get(), F_GETFL) | O_NONBLOCK);
      char buf[16384];
      ssize_t n;
      while ((n = ::read(master_.get(), buf, sizeof buf)) > 0)
        if (out_fd() >= 0) (void)sys::write_all(out_fd(), buf, static_cast<size_t>(n));
    }
    log::debug("command ended");
    siginfo_t info{};
    ::waitid(P_PIDFD, static_cast<id_t>(pidfd_.get()), &info, WEXITED);
    log::debug("init reaped");
    child_ = -1;
    watch_.release_later();
    raw.reset();
    lease_.release();
    log::debug("placeholders released");
    if (proxy_) {
      rules_sink_->detach();
      for (const auto& line : proxy_->stop_and_summarize()) log::info("{}", line);
    }
    for (const auto& e : cgroup_.events()) log::info("{}", e);
    for (const auto& w :
         fs::git_check_after(git_before_, spec_.policy->workspace, spec_.policy->protect_depth, started_))
      log::info("{}", w);
    if (!tampered_.empty()) {
      log::info("{} was removed or replaced on the host while the command ran, which takes away its protection "
                "inside the sandbox; the sandbox was stopped",
                tampered_);
      // Between the host's rename and the stop, the command could write the
      // new file. Say what a git config now asks git to run.
      if (tampered_.size() > 7 && tampered_.compare(tampered_.size() - 7, 7, "/config") == 0) {
        auto keys = fs::dangerous_git_keys(tampered_);
        if (!keys.empty()) {
          std::string list;
          for (const auto& k : keys) list += (list.empty() ? "" : ", ") + k;
          log::info("warning: {} now sets {}; check it before you use git there", tampered_, list);
        }
      }
      return kExitAirlockError;
    }
    if (timed_out_) {
      log::info("timed out after {} s (limits.timeoutSeconds): the sandbox was killed", spec_.policy->limits.timeout_seconds);
      return kExitTimeout;
    }
    if (status) {
      int code = exit_code_of(*status);
      if (code != 0) summarize_denials();
      return code;
    }
    if (info.si_code == CLD_EXITED && info.si_status == kExitAirlockError) return kExitAirlockError;
    return fail(fmt::format("the sandbox's init ended unexpectedly ({} {})",
                            info.si_code == CLD_EXITED ? "exit" : "signal", info.si_status));
  }

  seccomp::Options filter_opts() const { return seccomp::Options{spec_.policy->allow_nested_userns}; }

  void record(const Result<std::vector<seccomp::Denial>>& r) {
    if (!r) {
      log::line(r.error().message);
      return;
    }
    for (const auto& d : *r) {
      log::debug("refused syscall {} ({}, group '{}') from pid {} ({})", d.syscall,
                 d.errnum ? strerrorname_np(d.errnum) : "killed", d.group, d.pid, d.comm);
      ++denial_count_;
      auto it = std::find_if(denials_.begin(), denials_.end(), [&](const auto& e) {
        return e.first.syscall == d.syscall && e.first.group == d.group;
      });
      if (it != denials_.end()) {
        it->first = d;
        ++it->second;
      } else if (denials_.size() < 8) {
        denials_.emplace_back(d, 1);
      }
    }
  }

  // When the command failed, say which refusals may explain it.
  void summarize_denials() {
    for (const auto& [d, n] : denials_)
      log::info("refused syscall {} ({}) {} time{}, last by pid {} ({}): the '{}' rule of the syscall filter", d.syscall,
                strerrorname_np(d.errnum), n, n == 1 ? "" : "s", d.pid, d.comm, d.group);
  }

  const Spec& spec_;
  std::unique_ptr<net::Proxy> proxy_;
  std::shared_ptr<RulesSink> rules_sink_ = std::make_shared<RulesSink>();
  std::atomic<bool> stdin_paused_{false};
  UniqueFd wake_;
  fs::PlaceholderLease lease_;
  UniqueFd sigfd_, sock_, pidfd_, master_, listener_;
  Cgroup cgroup_;
  MountWatch watch_;
  std::string tampered_;
  fs::GitSnapshot git_before_;
  int64_t started_ = 0;
  std::optional<std::chrono::steady_clock::time_point> deadline_;
  bool timed_out_ = false;
  std::vector<std::pair<seccomp::Denial, int>> denials_;
  long denial_count_ = 0;
  pid_t child_ = -1;
};

}  // namespace

int run(const Spec& spec) { return Supervisor(spec).run(); }

}  // namespace airlock::sandbox
