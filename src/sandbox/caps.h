// Where privilege ends: after drop_all_privileges() the process has no
// capability in any set, cannot regain one by exec, and no_new_privs is set.
#pragma once

#include "util/result.h"

namespace airlock::sandbox {

Status drop_all_privileges();

}  // namespace airlock::sandbox
