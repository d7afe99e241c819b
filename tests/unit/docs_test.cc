// The docs are checked against the code: the settings table is generated
// from the key table, and the defaults page names every default.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>

#include "policy/defaults.h"
#include "policy/settings.h"

namespace airlock {

static std::string slurp(const std::string& rel) {
  const char* dir = ::getenv("AIRLOCK_SOURCE_DIR");
  std::ifstream f(std::string(dir && *dir ? dir : AIRLOCK_SOURCE_DIR) + "/" + rel);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST(Docs, SettingsTableMatchesTheCode) {
  std::string doc = slurp("docs/settings.md");
  ASSERT_FALSE(doc.empty());
  EXPECT_NE(doc.find(policy::settings_table_markdown()), std::string::npos)
      << "docs/settings.md is out of date: regenerate the table with 'airlock help settings'";
}

TEST(Docs, DefaultsPageNamesEveryDefault) {
  std::string doc = slurp("docs/defaults.md");
  ASSERT_FALSE(doc.empty());
  for (const auto& s : policy::default_secret_paths()) EXPECT_NE(doc.find("`~/" + s + "`"), std::string::npos) << s;
  for (const auto& p : policy::default_protected_names()) EXPECT_NE(doc.find("`" + p.rel + "`"), std::string::npos) << p.rel;
  for (const auto& e : policy::env_secret_patterns()) EXPECT_NE(doc.find("`" + e + "`"), std::string::npos) << e;
}

}  // namespace airlock

namespace airlock {

// Every `Suite.Name` in the security model's table must be a test that exists.
TEST(Docs, SecurityModelNamesOnlyExistingTests) {
  std::string doc = slurp("docs/security-model.md");
  ASSERT_FALSE(doc.empty());
  std::string sources;
  for (const char* f : {"tests/escape/fs_escape_test.cc", "tests/escape/process_escape_test.cc",
                        "tests/escape/git_guard_test.cc", "tests/integration/run_test.cc",
                        "tests/integration/lifecycle_test.cc", "tests/integration/limits_test.cc",
                        "tests/integration/tools_test.cc", "tests/unit/docs_test.cc",
                        "tests/escape/net_escape_test.cc", "tests/integration/network_test.cc",
                        "tests/unit/net_rules_test.cc", "tests/unit/net_inspect_test.cc",
                        "tests/integration/tls_test.cc", "tests/escape/tls_escape_test.cc"})
    sources += slurp(f);
  std::regex name("`([A-Z][A-Za-z]+)\\.([A-Z][A-Za-z0-9_]+)`");
  int count = 0;
  for (auto it = std::sregex_iterator(doc.begin(), doc.end(), name); it != std::sregex_iterator(); ++it) {
    std::string suite = (*it)[1], test = (*it)[2];
    ++count;
    std::regex def("TEST(_F|_P)?\\(" + suite + ", " + test + "\\)");
    EXPECT_TRUE(std::regex_search(sources, def)) << suite << "." << test << " is named in docs/security-model.md";
  }
  EXPECT_GT(count, 30);
}

}  // namespace airlock
