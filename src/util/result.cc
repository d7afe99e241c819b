#include "util/result.h"

#include <cerrno>
#include <cstring>

namespace airlock {

Error sys_err(const std::string& what, int errnum) {
  return Error{fmt::format("{}: {}", what, std::strerror(errnum))};
}

Error sys_err(const std::string& what) { return sys_err(what, errno); }

}  // namespace airlock
