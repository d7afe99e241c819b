#include "sandbox/caps.h"

#include <linux/capability.h>
#include <linux/securebits.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace airlock::sandbox {

Status drop_all_privileges() {
  // Bounding set first (it needs CAP_SETPCAP, which we still hold): nothing
  // exec'd later can gain a capability back, not even a file capability.
  for (int cap = 0; cap <= 63; ++cap) {
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL)
      return sys_err(fmt::format("prctl(PR_CAPBSET_DROP, {})", cap));
  }
  // Root inside the namespace must not be special at exec time either.
  if (::prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                                     SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
                                     SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED,
              0, 0, 0) != 0)
    return sys_err("prctl(PR_SET_SECUREBITS)");
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0)
    return sys_err("prctl(PR_CAP_AMBIENT_CLEAR_ALL)");
  struct __user_cap_header_struct hdr {};
  hdr.version = _LINUX_CAPABILITY_VERSION_3;
  struct __user_cap_data_struct data[2] {};
  if (::syscall(SYS_capset, &hdr, data) != 0) return sys_err("capset(empty)");
  // No exec may grant privilege from here on (setuid bits, file caps).
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return sys_err("prctl(PR_SET_NO_NEW_PRIVS)");
  return {};
}

}  // namespace airlock::sandbox
