// airlock run: start the sandbox described by a policy and its plan, relay
// the terminal and signals, and return the command's exit status.
#pragma once

#include "fs/plan.h"
#include "policy/policy.h"
#include "tls/materials.h"

#include <string>

namespace airlock::sandbox {

// Exit status of airlock's own failures, so callers can tell them from the
// command's.
inline constexpr int kExitAirlockError = 125;
// Exit status when limits.timeoutSeconds ran out (as timeout(1) does).
inline constexpr int kExitTimeout = 124;

struct Spec {
  const policy::Policy* policy;
  const fs::Plan* plan;
  int landlock_abi;  // 0: not available (already reported)
  bool use_pty;
  bool stdio_tty[3];
  const std::string* seccomp_bpf;  // the compiled syscall filter (seccomp::compile)
  int audit_fd = -1;               // --audit / audit.file, opened for appending
  std::string user_settings;       // where "always" answers are saved
  const tls::Materials* materials = nullptr;  // the CA and secrets, for the proxy
};

// Runs the sandbox to completion. Returns the exit status airlock should
// exit with: the command's, 128+N if it was killed by signal N, or 125.
int run(const Spec& spec);

// Inside the clone: the sandbox's init (pid 1). Never returns.
[[noreturn]] void init_main(const Spec& spec, int sock);

}  // namespace airlock::sandbox
