// airlock's own messages on stderr: one line each, prefixed "airlock: ".
// Debug lines are printed only with --debug.
#pragma once

#include <string>

#include <fmt/format.h>

namespace airlock::log {

void set_debug(bool on);
bool debug_enabled();
void line(const std::string& msg);  // always printed
// Microseconds since the process started (for --debug timings).
long elapsed_us();

template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
  line(fmt::format(f, std::forward<Args>(args)...));
}

template <typename... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) {
  if (debug_enabled()) line("debug: " + fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace airlock::log
