// Builds and installs the BPF program for the syscall policy. Every refused
// call is routed to the supervisor as a user notification, so airlock can
// report it by name; the supervisor answers with the group's errno.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "seccomp/policy.h"
#include "util/fd.h"
#include "util/result.h"

namespace airlock::seccomp {

// Compiles the policy to a BPF program (raw struct sock_filter array). Done
// by the supervisor while the sandbox is being built, off its critical path.
Result<std::string> compile(const Options& opt);

// Installs a compiled program on the calling thread (it is inherited by
// everything the thread forks) and returns the notification listener.
// Requires no_new_privs. This must be the last step of setup: afterwards the
// calling process can no longer mount, unshare, etc.
Result<UniqueFd> load(const std::string& bpf);

// One refused call, as seen by the supervisor.
struct Denial {
  std::string syscall;
  std::string group;
  int errnum;
  int pid;  // in the sandbox's pid namespace when known, else the host's
  std::string comm;
};

// Answers one pending notification on `listener`. Returns the denial it
// refused (if it refused one). A notification whose process has gone is
// not an error.
Result<std::vector<Denial>> answer(int listener, const Options& opt);

}  // namespace airlock::seccomp
