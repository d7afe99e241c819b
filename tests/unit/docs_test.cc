// The docs are checked against the code: the settings table is generated
// from the key table, and the defaults page names every default.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
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
