#include "util/log.h"

#include <cstdint>

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
// Text from inside the sandbox (process names, file names, host names)
// reaches the user's terminal through these lines: control characters are
// shown, not sent. That covers C0 and DEL, C1 (raw 0x80-0x9f and its UTF-8
// form: 8-bit CSI and OSC work in many terminals), bidi overrides, and any
// byte that is not part of valid UTF-8.
std::string printable(const std::string& msg) {
  std::string out;
  out.reserve(msg.size());
  auto esc = [&](unsigned char c) { out += fmt::format("\\x{:02x}", c); };
  const auto* p = reinterpret_cast<const unsigned char*>(msg.data());
  size_t n = msg.size();
  for (size_t i = 0; i < n;) {
    unsigned char c = p[i];
    if (c < 0x80) {
      if (c < 0x20 || c == 0x7f) esc(c);
      else out += static_cast<char>(c);
      ++i;
      continue;
    }
    size_t len = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
    uint32_t cp = len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
    bool ok = len > 0 && i + len <= n;
    for (size_t k = 1; ok && k < len; ++k) {
      if ((p[i + k] & 0xc0) != 0x80) ok = false;
      else cp = cp << 6 | (p[i + k] & 0x3f);
    }
    if (ok) ok = !(len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) && !(len == 4 && (cp < 0x10000 || cp > 0x10ffff));
    bool control = ok && ((cp >= 0x80 && cp <= 0x9f) || (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069));
    if (!ok || control) {
      for (size_t k = 0; k < (ok ? len : 1); ++k) esc(p[i + k]);
      i += ok ? len : 1;
      continue;
    }
    out.append(msg, i, len);
    i += len;
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
