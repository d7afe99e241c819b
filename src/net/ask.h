// Who answers the proxy's questions about hosts no rule covers: the person
// at the terminal (network.ask = "tty"), or a program on --control-fd that
// speaks JSON lines. Both run on threads of their own and never block the
// proxy's event loop.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "net/proxy.h"

namespace airlock::net {

// Asks on the controlling terminal (/dev/tty), one question at a time.
// `pause_input(true)` is called before a prompt so the caller stops
// reading the terminal (its keystrokes are the answer), false after.
std::shared_ptr<Asker> make_tty_asker(std::function<void(bool)> pause_input);

// JSON lines on `fd` (a socket, or a pipe for srt's one-way updates):
//   out: {"type":"ask","id":7,"host":"example.org","port":443,"client":"connect","sandbox":"..."}
//   in:  {"type":"answer","id":7,"decision":"once"|"run"|"always"|"deny"}
//   in:  any other JSON object (srt's whole-config lines) -> on_config(line)
// Bad lines are reported on stderr and ignored.
std::shared_ptr<Asker> make_control_asker(int fd, std::string sandbox_id,
                                          std::function<void(const std::string&)> on_config);

// Adds `pattern` to network.allowedDomains of the user's settings file
// (an "always" answer). Returns "" or an error message.
std::string remember_in_user_settings(const std::string& settings_file, const std::string& pattern);

}  // namespace airlock::net
