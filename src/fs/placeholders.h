// Placeholders: the empty files and folders airlock must create in a
// writable workspace so that a protected path that does not exist yet
// (.vscode, .mcp.json, ...) has a mount point for its read-only stand-in.
//
// They are shared between concurrent airlock runs on one workspace and
// removed when the last run exits, even if it was killed with SIGKILL (a
// janitor process waits for the supervisor's death). Only placeholders that
// are still empty are removed; anything the user put there is kept.
#pragma once

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

#include "fs/plan.h"
#include "util/fd.h"
#include "util/result.h"

namespace airlock::fs {

class PlaceholderLease {
 public:
  PlaceholderLease() = default;
  PlaceholderLease(PlaceholderLease&& o) noexcept { *this = std::move(o); }
  PlaceholderLease& operator=(PlaceholderLease&& o) noexcept;
  ~PlaceholderLease();

  // Creates the plan's placeholders (those not already there), holds them
  // and every registered placeholder among `watched` (the plan's protected
  // mount points), and starts the janitor when anything is held.
  static Result<PlaceholderLease> acquire(const std::vector<Placeholder>& items,
                                          const std::vector<std::string>& watched);

  // Tells the janitor which process must be gone before it may clean up.
  void watch(pid_t init);

  // Gives the lease back; the last holder removes the placeholders.
  void release();

 private:
  void release_now();

  UniqueFd lock_, hold_, janitor_pipe_;
  std::vector<std::string> holds_;  // registry entries this run holds
  pid_t janitor_ = -1;
  bool active_ = false;
};

// The shared release step (also run by the janitor).
void release_placeholders(int lock_fd, int hold_fd, const std::vector<std::string>& held);

}  // namespace airlock::fs
