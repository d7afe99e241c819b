// The syscall policy as data: named groups, each with the errno it answers,
// the reason, and the calls (with argument conditions) it covers. The BPF
// program (filter.h) and the supervisor's answer to each refused call are
// both derived from this one table.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace airlock::seccomp {

// A test on one argument: (arg & mask) == value.
struct ArgTest {
  unsigned arg;
  uint64_t mask;
  uint64_t value;
};

struct Rule {
  const char* syscall;
  std::vector<ArgTest> when;            // all must hold (at most one test per argument)
  std::vector<uint64_t> except_arg0;    // refused unless arg0 is one of these (checked by the supervisor)
};

struct Group {
  const char* name;
  int errnum;                 // the answer; 0 means the process is killed
  const char* why;
  bool lifted_by_nested_userns;
  std::vector<Rule> rules;
};

const std::vector<Group>& groups();

struct Options {
  bool allow_nested_userns = false;
};

// Which group refuses syscall `nr` with these arguments, if any.
const Group* refusing_group(const Options& opt, int nr, const uint64_t args[6]);

}  // namespace airlock::seccomp
