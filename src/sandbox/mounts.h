// Inside the new mount namespace: assemble the sandbox's root from the plan
// and pivot into it. Every lookup is fd-relative and refuses symlinks, so a
// hostile workspace cannot redirect a mount.
#pragma once

#include <functional>

#include "fs/plan.h"
#include "util/result.h"

namespace airlock::sandbox {

// Runs every mount step of the plan, then pivot_root()s into the result and
// detaches the host's tree. On return "/" is the sandbox's root.
// `wait_placeholders` is called once, before the first step that mounts on a
// placeholder (or at the end): the supervisor creates them meanwhile.
Status build_and_enter_root(const fs::Plan& plan, const std::function<Status()>& wait_placeholders);

}  // namespace airlock::sandbox
