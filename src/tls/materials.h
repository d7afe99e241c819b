// What a run with TLS inspection or masked credentials needs before its
// sandbox is built: the CA (in this process only), the trust bundle and the
// placeholder files the sandbox sees, and the table of real secrets the
// proxy swaps in. Fills Policy::overlays and the placeholders in
// Policy::env; the plan then mounts the overlays like any other file.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "net/secrets.h"
#include "policy/policy.h"
#include "tls/ca.h"
#include "util/result.h"

namespace airlock::tls {

struct Materials {
  std::shared_ptr<Authority> ca;              // null: no inspection
  std::shared_ptr<net::SecretTable> secrets;  // null: no masked credentials
  std::string dir;                            // the files' folder on the host, removed with this
  std::vector<std::string> files;             // what was written there, removed with this
  Materials() = default;
  Materials(Materials&&) = default;
  Materials& operator=(Materials&&) = default;
  ~Materials();
};

// `caller_env` is the caller's environment (as given to build_policy):
// the real values of masked variables are taken from it and then wiped
// there, in the policy and in this process's own environment.
Result<Materials> prepare(policy::Policy& p, std::vector<std::string>& caller_env);

// The variables that point the command's TLS clients at `bundle`.
std::vector<std::string> bundle_environment(const std::string& bundle);

}  // namespace airlock::tls
