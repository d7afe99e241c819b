// Git metadata the mount plan cannot pin ahead of time: a new commondir in an
// existing repository, and a repository the command creates.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "../integration/harness.h"

namespace airlock::test {

TEST(GitGuard, NewCommondirIsRemovedAfterTheRun) {
  SandboxFixture fx;
  ASSERT_EQ(run_program({"/usr/bin/git", "init", "-q", fx.ws}).code, 0);
  auto r = fx.sh("mkdir .evil && cp -r .git/refs .git/HEAD .evil/ && "
                 "printf '[core]\\n\\tfsmonitor = touch /tmp/pwned\\n' > .evil/config && echo ../.evil > .git/commondir");
  EXPECT_EQ(r.code, 0) << r.err;
  struct stat st {};
  EXPECT_NE(::lstat((fx.ws + "/.git/commondir").c_str(), &st), 0) << "commondir survived the run";
  EXPECT_NE(r.err.find("removed"), std::string::npos) << r.err;
}

TEST(GitGuard, NewRepositoryWithARunnableConfigIsReported) {
  SandboxFixture fx;
  auto r = fx.sh("git init -q sub && git -C sub config core.fsmonitor 'touch /tmp/pwned' && "
                 "printf '#!/bin/sh\\n' > sub/.git/hooks/pre-commit");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("warning: the command created the git repository"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("core.fsmonitor"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("hook pre-commit"), std::string::npos) << r.err;
  // A plain new repository is not worth a warning.
  auto plain = fx.sh("git init -q plain");
  EXPECT_EQ(plain.err.find("warning"), std::string::npos) << plain.err;
}

}  // namespace airlock::test

namespace airlock::test {

// A repository's git files are read by airlock itself: a FIFO or a link to
// an endless device must not hang it (it would block an agent forever).
TEST(GitGuard, SpecialFilesInGitMetadataDoNotHangAirlock) {
  SandboxFixture fx;
  ASSERT_EQ(run_program({"/usr/bin/git", "init", "-q", fx.ws}).code, 0);
  ASSERT_EQ(::mkfifo((fx.ws + "/.git/commondir").c_str(), 0644), 0);
  ASSERT_EQ(::symlink("/dev/zero", (fx.ws + "/.gitmodules").c_str()), 0);
  RunOptions o;
  o.timeout_ms = 10000;
  auto r = fx.sh("true", {}, o);
  EXPECT_EQ(r.code, 0) << r.err;
  auto made = fx.sh("mkfifo sub-fifo && git init -q sub && rm sub/.git/config && ln -s /dev/zero sub/.git/config", {}, o);
  EXPECT_NE(made.code, -1) << "airlock hung";
}

}  // namespace airlock::test
