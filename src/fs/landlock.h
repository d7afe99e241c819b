// Landlock: the second, independent filesystem layer. Applied inside the
// sandbox after the new root is in place, from the plan's rules.
#pragma once

#include <string>
#include <vector>

#include "fs/plan.h"
#include "util/result.h"

namespace airlock::fs {

// The kernel's Landlock ABI version, or 0 when Landlock is unavailable
// (with the reason in *why).
int landlock_abi(std::string* why = nullptr);

struct LandlockReport {
  int abi = 0;
  size_t rules = 0;
  size_t skipped = 0;  // paths that vanished between planning and applying
};

// Builds the ruleset from `rules` and restricts the calling thread (and so
// everything it forks). Requires no_new_privs. Paths are opened without
// following symlinks.
Result<LandlockReport> apply_landlock(const std::vector<LandlockRule>& rules, int abi);

}  // namespace airlock::fs
