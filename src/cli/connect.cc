// airlock connect HOST PORT: ssh's ProxyCommand inside the sandbox. It asks
// airlock's own SOCKS5 proxy (on the sandbox's loopback) for HOST:PORT and
// then copies stdin -> socket and socket -> stdout, so `git` over ssh goes
// through the same rules as everything else (no socat, no nc).
#include "cli/connect.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "util/fd.h"
#include "util/log.h"
#include "util/sys.h"

namespace airlock::cli {

int connect_main(const std::string& host, int port, int proxy_port) {
  auto fail = [](const std::string& m) {
    log::line(fmt::format("connect: {}", m));
    return 1;
  };
  if (host.empty() || host.size() > 255 || port < 1 || port > 65535) return fail("bad host or port");
  UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  struct sockaddr_in a {};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(proxy_port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (!s || ::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    return fail(fmt::format("cannot reach airlock's proxy on 127.0.0.1:{}: {}", proxy_port, std::strerror(errno)));
  std::string req = {0x05, 0x01, 0x00};
  req += std::string{0x05, 0x01, 0x00, 0x03, static_cast<char>(host.size())};
  req += host;
  req += static_cast<char>(port >> 8);
  req += static_cast<char>(port & 0xff);
  if (!sys::write_all(s.get(), req.data(), req.size())) return fail("proxy closed the connection");
  unsigned char greet[2], rep[10];
  if (!sys::read_exact(s.get(), greet, 2) || greet[1] != 0x00) return fail("proxy refused the SOCKS greeting");
  if (!sys::read_exact(s.get(), rep, 10)) return fail("proxy closed the connection");
  if (rep[1] != 0x00)
    return fail(fmt::format("airlock's proxy refused {}:{} (SOCKS reply {}; see airlock's message when it exits)", host,
                            port, rep[1]));
  bool in_open = true;
  char buf[65536];
  for (;;) {
    struct pollfd p[2] = {{s.get(), POLLIN, 0}, {in_open ? STDIN_FILENO : -1, POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    if (p[0].revents) {
      ssize_t n = ::read(s.get(), buf, sizeof buf);
      if (n <= 0) return 0;
      if (!sys::write_all(STDOUT_FILENO, buf, static_cast<size_t>(n))) return 1;
    }
    if (in_open && p[1].revents) {
      ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
      if (n <= 0) {
        in_open = false;
        ::shutdown(s.get(), SHUT_WR);
      } else if (!sys::write_all(s.get(), buf, static_cast<size_t>(n))) {
        return 1;
      }
    }
  }
}

}  // namespace airlock::cli
