// Resource limits: bombs inside leave the host responsive and airlock says
// what happened.
#include <gtest/gtest.h>

#include <chrono>

#include "harness.h"

namespace airlock::test {

namespace {
std::string settings(SandboxFixture& fx, const std::string& json) {
  fx.tree.write("limits.json", json);
  return fx.tree.path("limits.json");
}
}  // namespace

TEST(Limits, TimeoutKillsTheWholeTreeAndExits124) {
  SandboxFixture fx;
  auto s = settings(fx, R"({"limits": {"timeoutSeconds": 1}})");
  auto t0 = std::chrono::steady_clock::now();
  auto r = fx.sh("(sleep 30 &) ; sleep 30", {"--settings", s});
  auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.code, 124);
  EXPECT_LT(secs, 10);
  EXPECT_NE(r.err.find("timed out after 1 s"), std::string::npos) << r.err;
}

TEST(Limits, ForkBombIsContained) {
  SandboxFixture fx;
  auto s = settings(fx, R"({"limits": {"maxProcesses": 64, "timeoutSeconds": 20}})");
  // A real fork bomb (bounded in time by the timeout, in case). The shell
  // then waits and reports with builtins only: once the bomb has used up
  // the process limit, the shell itself could not fork a `sleep`.
  auto r = fx.sh("(bomb() { bomb | bomb & }; bomb); i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; echo survived",
                 {"--settings", s});
  EXPECT_NE(r.code, 124) << "the fork bomb was not stopped by the process limit";
  EXPECT_NE(r.out.find("survived"), std::string::npos);
  // And the host still forks fine.
  EXPECT_EQ(run_program({"/bin/true"}).code, 0);
}

TEST(Limits, MemoryBombIsStopped) {
  SandboxFixture fx;
  auto s = settings(fx, R"({"limits": {"memoryBytes": 268435456}})");
  // 1 GiB, touched, against a 256 MiB cap.
  auto r = fx.run({"/usr/bin/perl", "-e", "my $x = 'a' x (1024*1024*1024); print length($x), qq(\n);"},
                  {"--settings", s});
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(r.out.find("1073741824"), std::string::npos);
}

TEST(Limits, OpenFilesAndFileSize) {
  SandboxFixture fx;
  auto s = settings(fx, R"({"limits": {"openFiles": 32, "fileSizeBytes": 4096}})");
  auto r = fx.sh("ulimit -n; head -c 10000 /dev/zero > big; echo rc=$?", {"--settings", s});
  EXPECT_NE(r.out.find("32\n"), std::string::npos) << r.out;
  EXPECT_EQ(fx.tree.read("ws/big").size(), 4096u);
  auto fds = fx.run({"/usr/bin/perl", "-e",
                     "my @f; for (1..100) { open(my $h, '<', '/dev/null') or do { print qq(EMFILE at $_\n); exit 0 }; "
                     "push @f, $h } print qq(no limit\n);"},
                    {"--settings", s});
  EXPECT_NE(fds.out.find("EMFILE at"), std::string::npos) << fds.out;
}

TEST(Limits, BadLimitIsASettingsError) {
  SandboxFixture fx;
  auto s = settings(fx, R"({"limits": {"maxProcesses": 0}})");
  auto r = fx.sh("true", {"--settings", s});
  EXPECT_EQ(r.code, 125);
  EXPECT_NE(r.err.find("limits.maxProcesses: must be a positive integer"), std::string::npos) << r.err;
}

TEST(Doctor, ReportsTheLayersAndATrialRun) {
  auto r = run_program({airlock_bin(), "doctor"});
  EXPECT_EQ(r.code, 0) << r.out;
  for (const char* s : {"namespaces", "Landlock", "seccomp", "limits", "trial run"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s;
  EXPECT_EQ(r.out.find("MISSING"), std::string::npos) << r.out;
}

}  // namespace airlock::test
