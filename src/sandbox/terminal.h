// The caller's terminal while a pty-backed command runs: raw mode (so keys,
// ^C and ^Z reach the sandbox's own pty), restored on every way out.
#pragma once

#include <termios.h>

namespace airlock::sandbox {

class RawTerminal {
 public:
  explicit RawTerminal(int fd);
  ~RawTerminal();
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

 private:
  int fd_;
  bool active_ = false;
  struct termios saved_ {};
};

// Copies the caller's window size to the sandbox's pty.
void copy_winsize(int from_tty, int to_pty);

}  // namespace airlock::sandbox
