#include "attack.h"

#include <sys/stat.h>

#include <fstream>
#include <sstream>

namespace airlock::test {

::testing::AssertionResult contains(const std::string& hay, const std::string& needle) {
  if (hay.find(needle) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << needle << "' not found in:\n" << hay;
}

::testing::AssertionResult lacks(const std::string& hay, const std::string& needle) {
  if (hay.find(needle) == std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << needle << "' found in:\n" << hay;
}

std::string sq(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += "'\\''";
    else out += c;
  }
  return out + "'";
}

std::string probe_script(const std::vector<Try>& tries, const std::string& prologue, const std::string& epilogue) {
  std::string s = "p=" + sq(probe_bin()) + "\n" + prologue + "\n";
  for (const auto& t : tries)
    s += "r=$($p " + t.args + " 2>&1); c=$?; [ $c -gt 128 ] && r=\"killed $c\"; printf '%s %s\\n' " + sq(t.label) +
         " \"$(printf %s \"$r\" | tr '\\n' '|')\"\n";
  return s + epilogue + "\n";
}

std::map<std::string, std::string> parse_results(const std::string& out) {
  std::map<std::string, std::string> r;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();  // through a pty
    auto sp = line.find(' ');
    if (sp == std::string::npos) r[line] = "";
    else r[line.substr(0, sp)] = line.substr(sp + 1);
  }
  return r;
}

::testing::AssertionResult refused(const std::map<std::string, std::string>& r, const std::string& label,
                                   const std::set<std::string>& errnos) {
  auto it = r.find(label);
  if (it == r.end()) return ::testing::AssertionFailure() << label << ": no result (did the script run?)";
  for (const auto& e : errnos)
    if (it->second == "ERR " + e) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << label << ": got '" << it->second << "'";
}

::testing::AssertionResult allowed(const std::map<std::string, std::string>& r, const std::string& label) {
  auto it = r.find(label);
  if (it == r.end()) return ::testing::AssertionFailure() << label << ": no result (did the script run?)";
  if (it->second == "OK" || it->second.rfind("OK ", 0) == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << label << ": expected OK, got '" << it->second << "'";
}

void expect_calls_refused(const SandboxFixture& fx, const std::vector<std::string>& calls,
                          const std::set<std::string>& errnos, const std::vector<std::string>& extra) {
  std::vector<Try> tries;
  for (const auto& c : calls) tries.push_back({c, "sys " + c});
  auto r = fx.sh(probe_script(tries), extra);
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  for (const auto& c : calls) EXPECT_TRUE(refused(res, c, errnos));
}

::testing::AssertionResult is(const std::map<std::string, std::string>& r, const std::string& label,
                              const std::set<std::string>& ok) {
  auto it = r.find(label);
  if (it == r.end()) return ::testing::AssertionFailure() << label << ": no result (did the script run?)";
  if (ok.count(it->second)) return ::testing::AssertionSuccess();
  std::string want;
  for (const auto& o : ok) want += (want.empty() ? "'" : " or '") + o + "'";
  return ::testing::AssertionFailure() << label << ": got '" << it->second << "', expected " << want;
}

std::string write_settings(const SandboxFixture& fx, const std::string& json) {
  static int n = 0;
  std::string rel = "settings-" + std::to_string(++n) + ".json";
  fx.tree.write(rel, json);
  return fx.tree.path(rel);
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool lexists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

bool is_symlink(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode);
}

}  // namespace airlock::test
