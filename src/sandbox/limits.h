// Resource limits: a cgroup when the caller can have one (v2 delegated, or
// v1 as root), rlimits otherwise, and a wall-clock timeout in the
// supervisor. What was used is said in --debug and in the report.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "policy/policy.h"
#include "util/result.h"

namespace airlock::sandbox {

using Limits = policy::Limits;

// A cgroup of the sandbox's own, removed when the last process has gone.
class Cgroup {
 public:
  Cgroup() = default;
  Cgroup(Cgroup&&) noexcept;
  Cgroup& operator=(Cgroup&&) noexcept;
  ~Cgroup();

  // Creates the cgroup(s) with the limits and moves `pid` in. Returns an
  // empty Cgroup (mechanism "rlimit") when the caller cannot have one.
  static Result<Cgroup> create(const Limits& l, pid_t pid);

  const std::string& mechanism() const { return mechanism_; }
  // True if the cgroup holds the process count / memory (else rlimits do).
  bool holds_processes() const { return holds_pids_; }
  bool holds_memory() const { return holds_mem_; }
  // One line for each limit that was hit ("the process limit (512) was reached").
  std::vector<std::string> events() const;

 private:
  static Result<Cgroup> create_for(const Limits& l, pid_t pid, Cgroup cg);
  bool holds_pids_ = false, holds_mem_ = false;
  std::vector<std::string> dirs_;  // removed in reverse order
  std::string mechanism_ = "rlimit";
  bool v2_ = false;
  uint64_t max_processes_ = 0, memory_ = 0;
};

// In the sandbox's init, before the command is forked: rlimits for what the
// cgroup does not cover (file size, open files, cpu seconds always; process
// count and memory when there is no cgroup).
Status apply_rlimits(const Limits& l, bool cgroup_pids, bool cgroup_memory);

}  // namespace airlock::sandbox
