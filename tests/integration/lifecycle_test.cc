// Lifecycle: signals reach the command; when airlock ends, by exit, signal
// or SIGKILL, nothing of the sandbox is left: no processes, no mounts, no
// files in the workspace.
#include <gtest/gtest.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "harness.h"

namespace airlock::test {

namespace {

// airlock started in the background, stdout readable line by line.
class Background {
 public:
  Background(const SandboxFixture& fx, const std::string& script) {
    int out[2];
    EXPECT_EQ(::pipe2(out, O_CLOEXEC), 0);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], 1);
      int devnull = ::open("/dev/null", O_RDONLY);
      ::dup2(devnull, 0);
      if (::chdir(fx.ws.c_str()) != 0) ::_exit(121);
      ::setenv("HOME", fx.home.c_str(), 1);
      std::string bin = airlock_bin();
      ::execl(bin.c_str(), bin.c_str(), "run", "-c", script.c_str(), nullptr);
      ::_exit(122);
    }
    ::close(out[1]);
    out_ = out[0];
  }
  ~Background() {
    if (pid_ > 0) { ::kill(pid_, SIGKILL); ::waitpid(pid_, nullptr, 0); }
    ::close(out_);
  }
  // Reads until `marker` appears in stdout (or 10 s pass).
  bool wait_for(const std::string& marker) {
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (buf_.find(marker) == std::string::npos) {
      int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      end - std::chrono::steady_clock::now()).count());
      if (left <= 0) return false;
      struct pollfd p = {out_, POLLIN, 0};
      if (::poll(&p, 1, left) <= 0) continue;
      char b[4096];
      ssize_t n = ::read(out_, b, sizeof b);
      if (n <= 0) return buf_.find(marker) != std::string::npos;
      buf_.append(b, static_cast<size_t>(n));
    }
    return true;
  }
  int wait_exit() {
    int st = 0;
    ::waitpid(pid_, &st, 0);
    pid_ = -1;
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    return 128 + WTERMSIG(st);
  }
  pid_t pid() const { return pid_; }
  std::string output() {
    wait_for("\x01never");
    return buf_;
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  std::string buf_;
};

// Host processes whose command line contains `marker`.
int count_processes(const std::string& marker) {
  int n = 0;
  DIR* d = ::opendir("/proc");
  while (struct dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream f(std::string("/proc/") + e->d_name + "/cmdline");
    std::string cmd((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (cmd.find(marker) != std::string::npos) ++n;
  }
  ::closedir(d);
  return n;
}

std::string mountinfo() {
  std::ifstream f("/proc/self/mountinfo");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool eventually(const std::function<bool()>& cond, int ms = 5000) {
  for (int i = 0; i < ms / 50; ++i) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return cond();
}

// A daemon that leaves its session and would outlive a careless sandbox.
// (The marker is computed so that only the daemon's own command line holds it.)
const char* kDaemon = "setsid sh -c 'exec sleep $((900+87)).654' </dev/null >/dev/null 2>&1 & ";

}  // namespace

TEST(Lifecycle, SigtermReachesTheCommand) {
  SandboxFixture fx;
  Background bg(fx, "trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.05; done");
  ASSERT_TRUE(bg.wait_for("ready"));
  ::kill(bg.pid(), SIGTERM);
  EXPECT_EQ(bg.wait_exit(), 3);
  EXPECT_NE(bg.output().find("got-term"), std::string::npos);
}

TEST(Lifecycle, SigintAndSighupReachTheCommand) {
  for (int sig : {SIGINT, SIGHUP}) {
    SandboxFixture fx;
    Background bg(fx, "trap 'echo got-it; exit 4' INT HUP; echo ready; while :; do sleep 0.05; done");
    ASSERT_TRUE(bg.wait_for("ready"));
    ::kill(bg.pid(), sig);
    EXPECT_EQ(bg.wait_exit(), 4) << sig;
  }
}

TEST(Lifecycle, DaemonsDieWhenTheCommandExits) {
  SandboxFixture fx;
  auto r = fx.sh(std::string(kDaemon) + "sleep 0.2; echo done");
  EXPECT_EQ(r.code, 0);
  EXPECT_TRUE(eventually([] { return count_processes("987.654") == 0; }));
}

TEST(Lifecycle, SigkillOfAirlockLeavesNothing) {
  SandboxFixture fx;
  auto before = fx.listing(fx.ws);
  auto mounts_before = mountinfo();
  Background bg(fx, std::string(kDaemon) + "echo ready; sleep 1000");
  ASSERT_TRUE(bg.wait_for("ready"));
  ASSERT_TRUE(eventually([] { return count_processes("987.654") == 1; }));
  // While it runs, placeholders for protected names exist in the workspace.
  ::kill(bg.pid(), SIGKILL);
  bg.wait_exit();
  EXPECT_TRUE(eventually([] { return count_processes("987.654") == 0; })) << "a daemon outlived airlock";
  EXPECT_TRUE(eventually([&] { return fx.listing(fx.ws) == before; })) << "files were left in the workspace";
  EXPECT_EQ(mountinfo(), mounts_before);
}

TEST(Lifecycle, NormalExitLeavesWorkspaceAsItWas) {
  SandboxFixture fx;
  auto before = fx.listing(fx.ws);
  EXPECT_EQ(fx.sh("ls -a >/dev/null").code, 0);
  EXPECT_EQ(fx.listing(fx.ws), before);
}

TEST(Lifecycle, ConcurrentRunsShareProtection) {
  // Two runs on one workspace: the first to finish must not remove the
  // placeholders (and with them the protection) of the one still running.
  SandboxFixture fx;
  auto before = fx.listing(fx.ws);
  Background longer(fx, "echo ready; sleep 1.5; echo evil > .mcp.json 2>/dev/null && echo WROTE; echo end");
  ASSERT_TRUE(longer.wait_for("ready"));
  EXPECT_EQ(fx.sh("true").code, 0);  // a short run starts and ends meanwhile
  EXPECT_EQ(longer.wait_exit(), 0);
  EXPECT_EQ(longer.output().find("WROTE"), std::string::npos);
  EXPECT_TRUE(eventually([&] { return fx.listing(fx.ws) == before; }));
}

TEST(Lifecycle, ALaterRunKeepsProtectionWhenTheCreatorExits) {
  // The first run creates the placeholders; a second run starts while they
  // exist (so it creates none itself) and outlives the first. The first run's
  // exit must not remove them from under the second.
  SandboxFixture fx;
  auto before = fx.listing(fx.ws);
  Background creator(fx, "echo ready; sleep 0.5");
  ASSERT_TRUE(creator.wait_for("ready"));
  Background later(fx, "echo ready; sleep 1.5; mkdir -p .vscode 2>/dev/null; "
                       "echo '{}' > .vscode/tasks.json 2>/dev/null && echo WROTE; echo '#evil' > .envrc 2>/dev/null && "
                       "echo WROTE; echo end");
  ASSERT_TRUE(later.wait_for("ready"));
  EXPECT_EQ(creator.wait_exit(), 0);
  EXPECT_EQ(later.wait_exit(), 0);
  EXPECT_EQ(later.output().find("WROTE"), std::string::npos) << later.output();
  EXPECT_TRUE(eventually([&] { return fx.listing(fx.ws) == before; }));
}

TEST(Lifecycle, TerminalGetsItsOwnPty) {
  SandboxFixture fx;
  // script(1) gives airlock a terminal; inside, the command has a tty of the
  // sandbox's own devpts.
  auto r = run_program({"/usr/bin/script", "-qec", airlock_bin() + " run -- sh -c 'tty; test -t 0 && echo interactive'",
                        "/dev/null"},
                       RunOptions{fx.ws, {{"HOME", fx.home}}, "", 20000});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("/dev/pts/0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("interactive"), std::string::npos) << r.out;
}

TEST(Lifecycle, CallersTerminalOnStdoutIsNotHandedOver) {
  SandboxFixture fx;
  // stdin is not a terminal but stdout is: the command still gets a pty of
  // its own on stdout, never the caller's terminal (which it could read).
  auto r = run_program({"/usr/bin/script", "-qec",
                        airlock_bin() + " run -- sh -c '[ $(stat -L -c %d /proc/$$/fd/1) = $(stat -c %d /dev/pts/ptmx) ] "
                                        "&& echo own-pty' </dev/null",
                        "/dev/null"},
                       RunOptions{fx.ws, {{"HOME", fx.home}}, "", 20000});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("own-pty"), std::string::npos) << r.out;  // fd 1 is on the sandbox's devpts
}

TEST(Lifecycle, NoKeystrokeInjectionIntoTheCallersTerminal) {
  SandboxFixture fx;
  // stdout is the caller's terminal (script's pty), stdin is not a tty, so
  // no pty of our own: the command must still not be able to push input.
  auto r = run_program({"/usr/bin/script", "-qec", airlock_bin() + " run -- " + probe_bin() + " tiocsti 1 </dev/null",
                        "/dev/null"},
                       RunOptions{fx.ws, {{"HOME", fx.home}}, "", 20000});
  EXPECT_NE(r.out.find("ERR EPERM"), std::string::npos) << r.out;
}

}  // namespace airlock::test
