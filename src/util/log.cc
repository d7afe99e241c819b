#include "util/log.h"

#include <unistd.h>

#include "util/sys.h"

namespace airlock::log {
namespace {
bool g_debug = false;
}

void set_debug(bool on) { g_debug = on; }
bool debug_enabled() { return g_debug; }

void line(const std::string& msg) {
  // One write per line so lines from the supervisor and the sandbox's init
  // never interleave mid-line.
  std::string s = "airlock: " + msg + "\n";
  (void)sys::write_all(STDERR_FILENO, s.data(), s.size());
}

}  // namespace airlock::log
