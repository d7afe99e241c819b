// Helpers shared by the attack tests: run many probe calls in one sandbox
// and read back one result line per label.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "../integration/harness.h"

namespace airlock::test {

::testing::AssertionResult contains(const std::string& hay, const std::string& needle);
::testing::AssertionResult lacks(const std::string& hay, const std::string& needle);

// Single-quotes a string for sh.
std::string sq(const std::string& s);

// One probe call inside the sandbox: its label and its arguments (already
// shell-quoted where needed).
struct Try {
  std::string label, args;
};

// A shell script that runs each probe and prints "LABEL RESULT" on one line
// (a probe that prints several lines has them joined with '|'). A probe
// killed by a signal shows as "killed <status>".
std::string probe_script(const std::vector<Try>& tries, const std::string& prologue = "",
                         const std::string& epilogue = "");

std::map<std::string, std::string> parse_results(const std::string& out);

// The result is one of the given errnos.
::testing::AssertionResult refused(const std::map<std::string, std::string>& r, const std::string& label,
                                   const std::set<std::string>& errnos);
::testing::AssertionResult allowed(const std::map<std::string, std::string>& r, const std::string& label);
// The result is one of `ok`.
::testing::AssertionResult is(const std::map<std::string, std::string>& r, const std::string& label,
                              const std::set<std::string>& ok);

// Runs `probe sys CALL` for each call in one sandbox (with `extra` airlock
// options) and expects every one refused with one of `errnos`.
void expect_calls_refused(const SandboxFixture& fx, const std::vector<std::string>& calls,
                          const std::set<std::string>& errnos, const std::vector<std::string>& extra = {});

std::string write_settings(const SandboxFixture& fx, const std::string& json);
std::string slurp(const std::string& path);
bool lexists(const std::string& path);
bool is_symlink(const std::string& path);

}  // namespace airlock::test
