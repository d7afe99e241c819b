// airlock run's contract: exit codes, stdio, environment, errors.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>

#include "harness.h"

namespace airlock::test {

TEST(Run, ExitStatusIsTheCommands) {
  SandboxFixture fx;
  EXPECT_EQ(fx.run({"/bin/true"}).code, 0);
  EXPECT_EQ(fx.run({"/bin/false"}).code, 1);
  EXPECT_EQ(fx.sh("exit 42").code, 42);
}

TEST(Run, KilledBySignalIs128PlusN) {
  SandboxFixture fx;
  EXPECT_EQ(fx.sh("kill -TERM $$").code, 128 + 15);
  EXPECT_EQ(fx.sh("kill -KILL $$").code, 128 + 9);
}

TEST(Run, StdioPassesThrough) {
  SandboxFixture fx;
  RunOptions o;
  o.stdin_data = "line one\nline two\n";
  auto r = fx.run({"/bin/sh", "-c", "cat; echo to-stderr >&2"}, {}, o);
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "line one\nline two\n");
  EXPECT_NE(r.err.find("to-stderr"), std::string::npos);
}

TEST(Run, CommandSearchUsesPath) {
  SandboxFixture fx;
  auto r = fx.run({"echo", "found"});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "found\n");
  auto missing = fx.run({"no-such-command-airlock"});
  EXPECT_EQ(missing.code, 127);
  EXPECT_NE(missing.err.find("not found"), std::string::npos);
}

TEST(Run, StartsInTheCallersFolderInsideTheWorkspace) {
  SandboxFixture fx;
  fx.tree.mkdir("ws/sub/dir");
  RunOptions o;
  o.cwd = fx.ws + "/sub/dir";
  auto r = fx.run({"/bin/pwd"}, {}, o);
  EXPECT_EQ(r.out, fx.ws + "/sub/dir\n");
}

TEST(Run, WorkspaceIsWritableAndChangesPersist) {
  SandboxFixture fx;
  auto r = fx.sh("echo made-inside > out.txt && cat README.md");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "project\n");
  EXPECT_EQ(fx.tree.read("ws/out.txt"), "made-inside\n");
}

TEST(Run, ExplicitWorkspaceOption) {
  SandboxFixture fx;
  fx.tree.mkdir("other");
  auto r = fx.sh("echo y > " + fx.tree.path("other") + "/f && pwd", {"--workspace", fx.tree.path("other")});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(fx.tree.read("other/f"), "y\n");
  // The caller's folder is not inside that workspace: start at its root.
  EXPECT_EQ(r.out, fx.tree.path("other") + "\n");
  EXPECT_NE(fx.sh("echo n > " + fx.ws + "/x", {"--workspace", fx.tree.path("other")}).code, 0);
}

TEST(Run, AllowWriteOption) {
  SandboxFixture fx;
  fx.tree.mkdir("cache");
  auto r = fx.sh("echo c > " + fx.tree.path("cache/f"), {"--allow-write", fx.tree.path("cache")});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(fx.tree.read("cache/f"), "c\n");
}

TEST(Run, SecretEnvironmentIsRemoved) {
  SandboxFixture fx;
  RunOptions o;
  o.env = {{"GITHUB_TOKEN", "ghp_secret"}, {"ANTHROPIC_API_KEY", "sk-ant-secret"}, {"MY_SERVICE_PASSWORD", "pw"},
           {"AWS_SECRET_ACCESS_KEY", "aws"}, {"my_api_key", "lower"}, {"SSH_AUTH_SOCK", "/tmp/agent"},
           {"PLAIN_VALUE", "kept"}, {"AIRLOCK", "0"}};
  auto r = fx.run({"/usr/bin/env"}, {}, o);
  EXPECT_EQ(r.code, 0);
  for (const char* s : {"ghp_secret", "sk-ant-secret", "=pw", "AWS_SECRET", "lower", "SSH_AUTH_SOCK"})
    EXPECT_EQ(r.out.find(s), std::string::npos) << s;
  EXPECT_NE(r.out.find("PLAIN_VALUE=kept"), std::string::npos);
  EXPECT_NE(r.out.find("AIRLOCK=1\n"), std::string::npos);
  EXPECT_EQ(r.out.find("AIRLOCK=0"), std::string::npos);
}

TEST(Run, SettingsCanKeepOrRemoveVariables) {
  SandboxFixture fx;
  fx.tree.write("s.json", R"({"environment": {"keep": ["CI_JOB_TOKEN"], "remove": ["INTERNAL_*"]}})");
  RunOptions o;
  o.env = {{"CI_JOB_TOKEN", "kept-token"}, {"INTERNAL_URL", "hidden"}};
  auto r = fx.run({"/usr/bin/env"}, {"--settings", fx.tree.path("s.json")}, o);
  EXPECT_NE(r.out.find("CI_JOB_TOKEN=kept-token"), std::string::npos);
  EXPECT_EQ(r.out.find("INTERNAL_URL"), std::string::npos);
}

TEST(Run, CredentialEnvVarsFromSrtSettingsAreRemoved) {
  SandboxFixture fx;
  fx.tree.write("s.json", R"({"credentials": {"envVars": [{"name": "DEPLOY_KEY_X", "mode": "deny"}]}})");
  RunOptions o;
  o.env = {{"DEPLOY_KEY_X", "value"}};
  auto r = fx.run({"/usr/bin/env"}, {"--settings", fx.tree.path("s.json")}, o);
  EXPECT_EQ(r.out.find("DEPLOY_KEY_X"), std::string::npos);
}

TEST(Run, NoCapabilitiesAndNoNewPrivs) {
  SandboxFixture fx;
  auto r = fx.run({"/bin/grep", "-E", "^(Cap|NoNewPrivs)", "/proc/self/status"});
  EXPECT_EQ(r.code, 0) << r.err;
  for (const char* set : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"})
    EXPECT_NE(r.out.find(std::string(set) + ":\t0000000000000000"), std::string::npos) << set << "\n" << r.out;
  EXPECT_NE(r.out.find("NoNewPrivs:\t1"), std::string::npos);
}

TEST(Run, RunsAsTheCallersIds) {
  SandboxFixture fx;
  auto r = fx.sh("id -u; id -g");
  EXPECT_EQ(r.out, std::to_string(::getuid()) + "\n" + std::to_string(::getgid()) + "\n");
}

TEST(Run, OwnNamespaces) {
  SandboxFixture fx;
  auto r = fx.sh("hostname; echo $$; ls /proc | grep -c '^[0-9]'");
  EXPECT_EQ(r.code, 0) << r.err;
  // hostname, the shell's pid (init is 1, the command 2), and only a few pids.
  EXPECT_EQ(r.out.substr(0, r.out.find('\n')), "airlock");
  EXPECT_EQ(r.out.substr(r.out.find('\n') + 1, 2), "2\n");
}

TEST(Run, NetworkIsOff) {
  SandboxFixture fx;
  auto r = fx.sh("cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '");
  EXPECT_EQ(r.out, "lo\n");
  auto c = fx.run({probe_bin(), "connect-inet", "1.1.1.1", "80"});
  EXPECT_NE(c.out.find("ERR ENETUNREACH"), std::string::npos) << c.out;
}

// Bad input: one line naming the file and key, exit 125, nothing started.
struct BadSettings {
  const char* name;
  const char* json;
  const char* expect;  // substring of the error line
};

void PrintTo(const BadSettings& b, std::ostream* os) { *os << b.name; }

class RunBadSettings : public ::testing::TestWithParam<BadSettings> {};

TEST_P(RunBadSettings, OneLineExit125NothingStarted) {
  SandboxFixture fx;
  fx.tree.write("s.json", GetParam().json);
  auto r = fx.sh("touch started", {"--settings", fx.tree.path("s.json")});
  EXPECT_EQ(r.code, 125) << r.err;
  EXPECT_FALSE(fx.tree.exists("ws/started"));
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(r.err.rfind("airlock: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find(GetParam().expect), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("s.json"), std::string::npos) << r.err;
}

INSTANTIATE_TEST_SUITE_P(
    All, RunBadSettings,
    ::testing::Values(
        BadSettings{"invalid_json", "{\"filesystem\": ", "invalid JSON"},
        BadSettings{"unknown_key", R"({"filesystem": {"denyread": []}})", "did you mean 'filesystem.denyRead'"},
        BadSettings{"unknown_top", R"({"sandbox": true})", "unknown key"},
        BadSettings{"wrong_type", R"({"filesystem": {"denyRead": "~/.ssh"}})", "filesystem.denyRead: expected a list"},
        BadSettings{"wrong_elem", R"({"filesystem": {"allowWrite": [3]}})", "filesystem.allowWrite[0]"},
        BadSettings{"escape", R"({"filesystem": {"allowWrite": ["../.."]}})", "leads outside the workspace"},
        BadSettings{"missing", R"({"filesystem": {"allowWrite": ["/nonexistent/airlock/x"]}})", "does not exist"},
        BadSettings{"not_object", "[1,2]", "top level must be a JSON object"},
        BadSettings{"disabled", R"({"filesystem": {"disabled": true}})", "never runs without"},
        BadSettings{"depth", "{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
                    "nested deeper"},
        BadSettings{"bad_port", R"({"network": {"httpProxyPort": 70000}})", "port must be"},
        BadSettings{"glob_allow", R"({"filesystem": {"allowWrite": ["/var/*"]}})", "must be a plain path"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(Run, MissingSettingsFileIsAnError) {
  SandboxFixture fx;
  auto r = fx.sh("touch started", {"--settings", fx.tree.path("nope.json")});
  EXPECT_EQ(r.code, 125);
  EXPECT_NE(r.err.find("nope.json"), std::string::npos);
  EXPECT_FALSE(fx.tree.exists("ws/started"));
}

TEST(Run, HugeSettingsFileIsRefused) {
  SandboxFixture fx;
  fx.tree.write("s.json", "{\"x\": \"" + std::string(2 << 20, 'a') + "\"}");
  auto r = fx.sh("touch started", {"--settings", fx.tree.path("s.json")});
  EXPECT_EQ(r.code, 125);
  EXPECT_NE(r.err.find("larger than"), std::string::npos) << r.err;
}

TEST(Run, UsageErrorsExit125) {
  SandboxFixture fx;
  EXPECT_EQ(run_program({airlock_bin(), "run"}).code, 125);
  EXPECT_EQ(run_program({airlock_bin(), "run", "--bogus", "--", "true"}).code, 125);
  EXPECT_EQ(run_program({airlock_bin(), "run", "-c", "true", "--", "true"}).code, 125);
  auto v = run_program({airlock_bin(), "--version"});
  EXPECT_EQ(v.code, 0);
  EXPECT_EQ(v.out.rfind("airlock ", 0), 0u);
  EXPECT_EQ(run_program({airlock_bin(), "help"}).code, 0);
}

}  // namespace airlock::test

namespace airlock::test {

// A workspace under the host's /tmp is bound into the private /tmp; the rest
// of the host's /tmp stays invisible.
TEST(Run, WorkspaceUnderHostTmp) {
  char t[] = "/tmp/airlock-ws-XXXXXX";
  ASSERT_NE(::mkdtemp(t), nullptr);
  std::string ws = t;
  auto r = run_program({airlock_bin(), "run", "--", "/bin/sh", "-c", "echo in > made.txt; ls /tmp"},
                       RunOptions{ws, {}, "", 20000});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, ws.substr(5) + "\n");  // only the workspace's own folder
  struct stat st {};
  EXPECT_EQ(::stat((ws + "/made.txt").c_str(), &st), 0);
  (void)!std::system(("rm -rf " + ws).c_str());
}

}  // namespace airlock::test
