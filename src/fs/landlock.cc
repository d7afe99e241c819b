#include "fs/landlock.h"

#include <fcntl.h>
#include <linux/landlock.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "util/log.h"
#include "util/sys.h"

namespace airlock::fs {

namespace {
// Debian 12's headers stop at ABI 2; the struct grows with the ABI, so keep
// our own copy with every field the running kernel may know.
struct RulesetAttr {
  uint64_t handled_access_fs;
  uint64_t handled_access_net;  // ABI 4
  uint64_t scoped;              // ABI 6
};
constexpr uint64_t kScopeAbstractUnix = 1ULL << 0;
constexpr uint64_t kScopeSignal = 1ULL << 1;

uint64_t handled_for(int abi) {
  uint64_t h = (1ULL << 13) - 1;  // ABI 1
  if (abi >= 2) h |= ll::kRefer;
  if (abi >= 3) h |= ll::kTruncate;
  if (abi >= 5) h |= ll::kIoctlDev;
  return h;
}
}  // namespace

int landlock_abi(std::string* why) {
  long v = ::syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
  if (v < 0) {
    if (why) *why = errno == EOPNOTSUPP ? "Landlock is built in but disabled (add 'landlock' to the lsm= boot option)"
                                        : "the kernel has no Landlock (needs Linux 5.13+ with CONFIG_SECURITY_LANDLOCK)";
    return 0;
  }
  return static_cast<int>(v);
}

Result<LandlockReport> apply_landlock(const std::vector<LandlockRule>& rules, int abi) {
  LandlockReport rep;
  rep.abi = abi;
  RulesetAttr attr{};
  attr.handled_access_fs = handled_for(abi);
  // Signals and abstract unix sockets stay inside the sandbox (ABI 6+).
  if (abi >= 6) attr.scoped = kScopeAbstractUnix | kScopeSignal;
  size_t attr_size = abi >= 6 ? sizeof(RulesetAttr) : (abi >= 4 ? 2 * sizeof(uint64_t) : sizeof(uint64_t));
  long rfd = ::syscall(SYS_landlock_create_ruleset, &attr, attr_size, 0);
  if (rfd < 0) return sys_err("landlock_create_ruleset");
  UniqueFd ruleset(static_cast<int>(rfd));
  for (const auto& r : rules) {
    auto fd = sys::open_path_nofollow(r.path);
    if (!fd) {
      ++rep.skipped;
      log::debug("landlock: skip {}: {}", r.path, fd.error().message);
      continue;
    }
    struct stat st {};
    if (::fstat(fd->get(), &st) != 0) return sys_err(fmt::format("fstat({})", r.path));
    uint64_t access = r.access & attr.handled_access_fs;
    if (!S_ISDIR(st.st_mode)) access &= ll::kFileOnly;
    if (S_ISLNK(st.st_mode) || access == 0) continue;
    struct landlock_path_beneath_attr pb {};
    pb.allowed_access = access;
    pb.parent_fd = fd->get();
    if (::syscall(SYS_landlock_add_rule, ruleset.get(), LANDLOCK_RULE_PATH_BENEATH, &pb, 0) != 0)
      return sys_err(fmt::format("landlock_add_rule({}, {:#x})", r.path, access));
    ++rep.rules;
  }
  if (::syscall(SYS_landlock_restrict_self, ruleset.get(), 0) != 0) return sys_err("landlock_restrict_self");
  return rep;
}

}  // namespace airlock::fs
