#include <gtest/gtest.h>

#include "policy/defaults.h"
#include "policy/settings.h"

namespace airlock::policy {

TEST(Settings, ReadsAnSrtFileAsItIs) {
  auto s = parse_settings(R"({
    "network": {"allowedDomains": ["example.com", "*.npmjs.org"], "deniedDomains": []},
    "filesystem": {
      "denyRead": ["~/.ssh", {"path": "/etc/sec[ret]", "literal": true}],
      "allowRead": ["~/.ssh/known_hosts"],
      "allowWrite": ["/tmp/x"],
      "denyWrite": [".env"],
      "allowGitConfig": true
    },
    "mandatoryDenySearchDepth": 5
  })", "s.json");
  ASSERT_TRUE(s) << s.error().message;
  ASSERT_EQ(s->deny_read.size(), 2u);
  EXPECT_EQ(s->deny_read[0].raw, "~/.ssh");
  EXPECT_FALSE(s->deny_read[0].literal);
  EXPECT_EQ(s->deny_read[1].raw, "/etc/sec[ret]");
  EXPECT_TRUE(s->deny_read[1].literal);
  EXPECT_EQ(s->deny_read[1].where, "s.json: filesystem.denyRead[1]");
  EXPECT_EQ(s->allow_write[0].raw, "/tmp/x");
  EXPECT_TRUE(*s->allow_git_config);
  EXPECT_EQ(*s->protect_depth, 5);
  EXPECT_TRUE(s->has_network);
  EXPECT_TRUE(s->not_enforced.empty());  // the network keys are enforced by the proxy
}

TEST(Settings, EmptyObjectIsValid) {
  auto s = parse_settings("{}", "s.json");
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->deny_read.empty());
}

struct Bad {
  const char* json;
  const char* expect;
};

void PrintTo(const Bad& b, std::ostream* os) { *os << b.json; }

class SettingsBad : public ::testing::TestWithParam<Bad> {};

TEST_P(SettingsBad, NamesFileKeyAndProblem) {
  auto s = parse_settings(GetParam().json, "conf.json");
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find(GetParam().expect), std::string::npos) << s.error().message;
  EXPECT_EQ(s.error().message.rfind("conf.json", 0), 0u) << s.error().message;
  EXPECT_EQ(s.error().message.find('\n'), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(
    All, SettingsBad,
    ::testing::Values(
        Bad{"", "invalid JSON"}, Bad{"{", "invalid JSON"}, Bad{"null", "must be a JSON object"},
        Bad{R"({"filesystem": []})", "filesystem: expected an object"},
        Bad{R"({"filesystem": {"denyRead": [""]}})", "filesystem.denyRead[0]: empty path"},
        Bad{R"({"filesystem": {"denyRead": [{"path": "/x", "extra": 1}]}})", "filesystem.denyRead[0].extra"},
        Bad{R"({"filesystem": {"denyRead": [{"literal": true}]}})", "missing 'path'"},
        Bad{R"({"filesystem": {"allowGitConfig": "yes"}})", "expected a boolean, got string"},
        Bad{R"({"filesystem": {"allowwrite": []}})", "did you mean 'filesystem.allowWrite'"},
        Bad{R"({"mandatoryDenySearchDepth": 0})", "between 1 and 10"},
        Bad{R"({"mandatoryDenySearchDepth": 2.5})", "expected an integer"},
        Bad{R"({"environment": {"keep": ["A B"]}})", "not a variable name"},
        Bad{R"({"network": {"socksProxyPort": 0}})", "port must be"},
        Bad{R"({"a": 1, "a": 2})", "unknown key"}));

TEST(Settings, DeepNestingIsRefusedWithoutRecursion) {
  std::string deep(100000, '[');
  auto s = parse_settings("{\"x\":" + deep, "deep.json");
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("nested deeper"), std::string::npos) << s.error().message;
}

TEST(Settings, OversizedTextIsRefused) {
  auto s = parse_settings(std::string(kMaxSettingsBytes + 1, ' '), "big.json");
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("larger than"), std::string::npos);
}

TEST(Settings, EveryKeyHasItsParentObject) {
  for (const auto& k : settings_keys()) {
    std::string key = k.key;
    auto dot = key.rfind('.');
    if (dot == std::string::npos) continue;
    std::string parent = key.substr(0, dot);
    bool found = false;
    for (const auto& p : settings_keys())
      if (parent == p.key) found = p.type == KeyType::Object || p.type == KeyType::Opaque;
    EXPECT_TRUE(found) << key;
  }
}

TEST(Defaults, SecretEnvironmentNames) {
  for (const char* n : {"GITHUB_TOKEN", "ANTHROPIC_API_KEY", "OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY",
                        "AWS_ACCESS_KEY_ID", "MY_SERVICE_PASSWORD", "npm_token", "SSH_AUTH_SOCK", "STRIPE_SECRET_KEY",
                        "DB_PASSWORD", "SLACK_BOT_TOKEN", "X_API_KEY", "KUBECONFIG", "DATABASE_URL", "OP_SESSION_abc",
                        "BW_SESSION", "GITHUB_PAT", "OPENAI_KEY", "PRIVATE_KEY", "GPG_PASSPHRASE", "DB_PWD",
                        "ACCESS_KEY", "CI_JOB_JWT", "SLACK_WEBHOOK_URL", "npm_config_//registry/:_authToken"})
    EXPECT_TRUE(env_name_is_secret(n)) << n;
  for (const char* n : {"PATH", "HOME", "TERM", "LANG", "EDITOR", "TOKENIZERS_PARALLELISM", "PWD", "OLDPWD", "SHELL",
                        "GIT_AUTHOR_NAME", "KEYBOARD", "LESSKEY"})
    EXPECT_FALSE(env_name_is_secret(n)) << n;
  EXPECT_TRUE(env_value_is_secret("redis://:pw@h:6379"));
  EXPECT_TRUE(env_value_is_secret("postgres://user:secret@db/app"));
  EXPECT_FALSE(env_value_is_secret("https://example.com/a@b"));
  EXPECT_FALSE(env_value_is_secret("https://user@example.com/"));
  EXPECT_FALSE(env_value_is_secret("plain"));
}

}  // namespace airlock::policy
