// The plan: the exact mounts, placeholders and Landlock rules that carry out
// a Policy. Made by pure code from the Policy (plus directory listings of the
// host, for Landlock); applied by code that decides nothing (sandbox/).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "policy/policy.h"
#include "util/result.h"

namespace airlock::fs {

enum class Access { Hidden, ReadOnly, ReadWrite, ReadWriteNoDelete };
const char* access_name(Access a);

struct MountOp {
  enum class Kind {
    BindHost,  // bind `source` from the host (recursive) at `target`
    StandIn,   // empty read-only stand-in (tmpfs folder, or empty file)
    Tmpfs,     // fresh writable tmpfs (/tmp, /run, /dev/shm)
    Proc,      // fresh procfs for the pid namespace
    DevTmpfs,  // the tmpfs that holds the minimal /dev
    DevNode,   // bind one host device node (source) at target
    Devpts,    // new devpts instance at /dev/pts
    Symlink,   // symlink target -> source (in /dev)
    ProcReadOnly,  // re-bind a /proc subtree read-only over itself
  };
  Kind kind;
  std::string target;
  std::string source;
  bool read_only = true;
  bool is_dir = true;
  bool create_target = false;  // target lives in an airlock-owned tmpfs: create it
  std::string why;
  uint64_t size_bytes = 0;  // Tmpfs: its size cap (0: the kernel's default)
  // Mounted on a placeholder the supervisor creates while the sandbox is
  // being built: the builder waits for them before this step.
  bool after_placeholders = false;
  // The target may be gone by the time the sandbox is built (a socket found
  // by a scan): then the step is skipped instead of failing.
  bool optional = false;
};

struct Placeholder {
  std::string path;  // host path (first missing component)
  bool dir;
  std::string why;
};

// Landlock access bits (the kernel's values, ABI 1-5); the applier masks
// them to what the running kernel handles.
namespace ll {
inline constexpr uint64_t kExecute = 1ULL << 0, kWriteFile = 1ULL << 1, kReadFile = 1ULL << 2,
                          kReadDir = 1ULL << 3, kRemoveDir = 1ULL << 4, kRemoveFile = 1ULL << 5,
                          kMakeChar = 1ULL << 6, kMakeDir = 1ULL << 7, kMakeReg = 1ULL << 8,
                          kMakeSock = 1ULL << 9, kMakeFifo = 1ULL << 10, kMakeBlock = 1ULL << 11,
                          kMakeSym = 1ULL << 12, kRefer = 1ULL << 13, kTruncate = 1ULL << 14,
                          kIoctlDev = 1ULL << 15;
inline constexpr uint64_t kAll = (1ULL << 16) - 1;
inline constexpr uint64_t kFileOnly = kExecute | kWriteFile | kReadFile | kTruncate | kIoctlDev;
inline constexpr uint64_t kRead = kExecute | kReadFile | kReadDir;
inline constexpr uint64_t kReadWrite = kAll & ~(kMakeChar | kMakeBlock);
inline constexpr uint64_t kNoDelete = kReadWrite & ~(kRemoveDir | kRemoveFile);
}  // namespace ll

struct LandlockRule {
  std::string path;
  uint64_t access;
  std::string why;
};

struct Plan {
  std::vector<MountOp> mounts;  // in order
  std::vector<Placeholder> placeholders;
  std::vector<LandlockRule> landlock;
  std::vector<std::string> landlock_gaps;  // narrowings only the mount layer enforces
  std::vector<std::string> no_delete;      // paths that need Landlock to mean anything
  // Mount points inside writable host folders. If the host itself removes
  // or renames over one while the sandbox runs, the kernel drops the mount
  // in the sandbox too, and the protection with it: the supervisor watches
  // these and stops the sandbox.
  std::vector<std::string> watch;
};

Result<Plan> make_plan(const policy::Policy& policy);

// Human-readable plan, one line per step (for --debug).
std::string describe(const Plan& plan);

}  // namespace airlock::fs
