#include "util/log.h"

#include <unistd.h>

#include <chrono>

#include "util/sys.h"

namespace airlock::log {
namespace {
bool g_debug = false;
const auto g_start = std::chrono::steady_clock::now();
}

long elapsed_us() {
  return static_cast<long>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - g_start).count());
}

void set_debug(bool on) { g_debug = on; }
bool debug_enabled() { return g_debug; }

namespace {
// Text from inside the sandbox (process names, file names) reaches the
// user's terminal through these lines: control bytes are shown, not sent.
std::string printable(const std::string& msg) {
  std::string out;
  out.reserve(msg.size());
  for (unsigned char c : msg) {
    if (c < 0x20 || c == 0x7f) out += fmt::format("\\x{:02x}", c);
    else out += static_cast<char>(c);
  }
  return out;
}
}  // namespace

void line(const std::string& raw) {
  const std::string msg = printable(raw);
  // One write per line so lines from the supervisor and the sandbox's init
  // never interleave mid-line.
  std::string s = g_debug ? fmt::format("airlock: [{:>6}us] {}\n", elapsed_us(), msg) : "airlock: " + msg + "\n";
  (void)sys::write_all(STDERR_FILENO, s.data(), s.size());
}

}  // namespace airlock::log
