#include "sandbox/terminal.h"

#include <sys/ioctl.h>
#include <unistd.h>

namespace airlock::sandbox {

RawTerminal::RawTerminal(int fd) : fd_(fd) {
  if (::tcgetattr(fd_, &saved_) != 0) return;
  struct termios raw = saved_;
  ::cfmakeraw(&raw);
  active_ = ::tcsetattr(fd_, TCSAFLUSH, &raw) == 0;
}

RawTerminal::~RawTerminal() {
  if (active_) (void)::tcsetattr(fd_, TCSAFLUSH, &saved_);
}

void copy_winsize(int from_tty, int to_pty) {
  struct winsize ws {};
  if (::ioctl(from_tty, TIOCGWINSZ, &ws) == 0) (void)::ioctl(to_pty, TIOCSWINSZ, &ws);
}

}  // namespace airlock::sandbox
