// Network escapes (THREATS.md, "Network"), tried from inside a real sandbox
// whose only way out is airlock's egress proxy. Every test starts real
// servers on the host's loopback, names them through network.hosts, does
// the allowed thing (which must work) and then the attack (which must
// fail with the proxy's own refusal), and finally asks the servers what
// reached them: a forbidden request must never arrive, whatever the
// client was told.
//
// The attacks are written in Python (stdlib only) inside the sandbox: raw
// sockets let them send exactly the bytes a hostile client would, which no
// well-behaved HTTP client does. Each prints "LABEL RESULT", where RESULT
// for HTTP is one "STATUS X-PROXY-ERROR SERVER" triple per response ("-"
// when absent; SERVER is the name of the test server that answered), e.g.
// "403 blocked-by-allowlist -" or, for a CONNECT tunnel, "200 - -,200 - A".
#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../integration/harness.h"
#include "../integration/net_support.h"
#include "attack.h"

namespace airlock::test {
namespace {

using nlohmann::json;
using Results = std::map<std::string, std::string>;

// ---------------------------------------------------------------------------
// Host side: servers that record what reached them.

struct Seen {
  std::string method, target, host, body;
};

std::string trim_ws(const std::string& s) {
  const char* ws = " \t\r\n\v\f";
  auto b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

// Parses one request at the front of `buf` the way a lenient origin server
// does (the kind a smuggling attack hopes to find behind a proxy):
// Content-Length wins over Transfer-Encoding, and any Transfer-Encoding
// that mentions "chunked" after trimming any white space is chunked.
// 1: a request was taken off `buf`; 0: incomplete; -1: hopeless.
int take_request(std::string& buf, Seen& out, bool& close_after) {
  auto end = buf.find("\r\n\r\n");
  if (end == std::string::npos) return buf.size() > (1u << 20) ? -1 : 0;
  std::vector<std::string> lines;
  for (size_t i = 0; i <= end;) {
    size_t j = buf.find("\r\n", i);
    if (j == std::string::npos || j > end) j = end;
    lines.push_back(buf.substr(i, j - i));
    i = j + 2;
  }
  std::istringstream rl(lines.empty() ? "" : lines[0]);
  rl >> out.method >> out.target;
  std::string cl, te, conn;
  bool have_cl = false;
  for (size_t i = 1; i < lines.size(); ++i) {
    auto c = lines[i].find(':');
    if (c == std::string::npos) continue;
    std::string name = lower(trim_ws(lines[i].substr(0, c))), value = trim_ws(lines[i].substr(c + 1));
    if (name == "host") out.host = value;
    if (name == "content-length" && !have_cl) cl = value, have_cl = true;
    if (name == "transfer-encoding") te = lower(value);
    if (name == "connection") conn = lower(value);
  }
  size_t pos = end + 4;
  if (have_cl) {
    size_t n = std::strtoull(cl.c_str(), nullptr, 10);
    if (n > (1u << 24)) return -1;
    if (buf.size() < pos + n) return 0;
    out.body = buf.substr(pos, n);
    pos += n;
  } else if (te.find("chunked") != std::string::npos) {
    for (;;) {
      auto le = buf.find("\r\n", pos);
      if (le == std::string::npos) return 0;
      size_t sz = std::strtoull(buf.substr(pos, le - pos).c_str(), nullptr, 16);
      if (sz > (1u << 24)) return -1;
      pos = le + 2;
      if (sz == 0) {  // trailers up to an empty line
        for (;;) {
          auto t = buf.find("\r\n", pos);
          if (t == std::string::npos) return 0;
          bool empty = t == pos;
          pos = t + 2;
          if (empty) break;
        }
        break;
      }
      if (buf.size() < pos + sz + 2) return 0;
      out.body += buf.substr(pos, sz);
      pos += sz + 2;
    }
  }
  buf.erase(0, pos);
  close_after = conn.find("close") != std::string::npos;
  return 1;
}

// A keep-alive HTTP/1.1 server on one address and port that answers every
// request with "served-by=NAME METHOD TARGET" and remembers everything.
class Server {
 public:
  Server(std::string name, const std::string& ip, uint16_t port = 0) : name_(std::move(name)) {
    bool v6 = ip.find(':') != std::string::npos;
    sockaddr_storage ss{};
    socklen_t len;
    if (v6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      a->sin6_family = AF_INET6;
      a->sin6_port = htons(port);
      if (::inet_pton(AF_INET6, ip.c_str(), &a->sin6_addr) != 1) return;
      len = sizeof *a;
    } else {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      a->sin_family = AF_INET;
      a->sin_port = htons(port);
      if (::inet_pton(AF_INET, ip.c_str(), &a->sin_addr) != 1) return;
      len = sizeof *a;
    }
    int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(fd, 512) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0 || ::pipe2(wake_, O_CLOEXEC) != 0) {
      ::close(fd);
      return;
    }
    port_ = ntohs(v6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    fd_ = fd;
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~Server() {
    if (fd_ < 0) return;
    (void)!::write(wake_[1], "x", 1);  // never drained: wakes every poller
    acceptor_.join();
    for (auto& t : conns_) t.join();
    ::close(fd_);
    ::close(wake_[0]);
    ::close(wake_[1]);
  }
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  bool ok() const { return fd_ >= 0; }
  uint16_t port() const { return port_; }
  int connections() const {
    std::lock_guard<std::mutex> l(mu_);
    return connections_;
  }
  std::vector<Seen> requests() const {
    std::lock_guard<std::mutex> l(mu_);
    return seen_;
  }
  std::string raw() const {
    std::lock_guard<std::mutex> l(mu_);
    return raw_;
  }
  // A request whose target contains `needle` reached this server.
  bool saw(const std::string& needle) const {
    for (const auto& r : requests())
      if (r.target.find(needle) != std::string::npos) return true;
    return false;
  }
  const Seen* find(const std::string& target, std::vector<Seen>& store) const {
    store = requests();
    for (const auto& r : store)
      if (r.target == target) return &r;
    return nullptr;
  }
  // For failure messages: every request line this server got.
  std::string log() const {
    std::string s = "server " + name_ + " got " + std::to_string(connections()) + " connection(s):\n";
    for (const auto& r : requests()) s += "  " + r.method + " " + r.target + " (Host: " + r.host + ")\n";
    return s;
  }

 private:
  void accept_loop() {
    for (;;) {
      pollfd p[2] = {{fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
      if (::poll(p, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (p[1].revents) return;
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      {
        std::lock_guard<std::mutex> l(mu_);
        ++connections_;
      }
      conns_.emplace_back([this, c] { serve(c); });
    }
  }

  void serve(int fd) {
    std::string buf;
    for (bool open = true; open;) {
      pollfd p[2] = {{fd, POLLIN, 0}, {wake_[0], POLLIN, 0}};
      if (::poll(p, 2, -1) < 0) {
        if (errno == EINTR) continue;
        break;
      }
      if (p[1].revents) break;
      char tmp[65536];
      ssize_t n = ::read(fd, tmp, sizeof tmp);
      if (n <= 0) break;
      {
        std::lock_guard<std::mutex> l(mu_);
        raw_.append(tmp, static_cast<size_t>(n));
      }
      buf.append(tmp, static_cast<size_t>(n));
      for (;;) {
        Seen s;
        bool close_after = false;
        int rc = take_request(buf, s, close_after);
        if (rc < 0) open = false;
        if (rc <= 0) break;
        {
          std::lock_guard<std::mutex> l(mu_);
          seen_.push_back(s);
        }
        std::string body = "served-by=" + name_ + " " + s.method + " " + s.target + "\n";
        std::string resp = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
                           std::to_string(body.size()) + "\r\n" + (close_after ? "Connection: close\r\n" : "") +
                           "\r\n" + body;
        for (size_t off = 0; off < resp.size();) {
          ssize_t w = ::send(fd, resp.data() + off, resp.size() - off, MSG_NOSIGNAL);
          if (w <= 0) {
            open = false;
            break;
          }
          off += static_cast<size_t>(w);
        }
        if (close_after || !open) {
          open = false;
          break;
        }
      }
    }
    ::close(fd);
  }

  std::string name_;
  int fd_ = -1;
  int wake_[2] = {-1, -1};
  uint16_t port_ = 0;
  std::thread acceptor_;
  std::vector<std::thread> conns_;  // touched by the acceptor only, joined after it
  mutable std::mutex mu_;
  int connections_ = 0;
  std::vector<Seen> seen_;
  std::string raw_;
};

using Servers = std::vector<std::unique_ptr<Server>>;

// Servers named name_ip[i].first on addresses name_ip[i].second, all on
// one port: a request that slips past a name rule lands on a server of the
// same port, so the port rule cannot hide the name rule's failure.
Servers servers_on_one_port(const std::vector<std::pair<std::string, std::string>>& name_ip) {
  for (int attempt = 0; attempt < 20; ++attempt) {
    Servers v;
    v.push_back(std::make_unique<Server>(name_ip[0].first, name_ip[0].second));
    if (!v[0]->ok()) return {};
    bool all = true;
    for (size_t i = 1; i < name_ip.size() && all; ++i) {
      v.push_back(std::make_unique<Server>(name_ip[i].first, name_ip[i].second, v[0]->port()));
      all = v.back()->ok();
    }
    if (all) return v;
  }
  return {};
}

// A UDP socket on the host that counts what it receives.
class UdpSink {
 public:
  explicit UdpSink(const std::string& ip) {
    fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    ::inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
    socklen_t len = sizeof a;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), len) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      if (fd_ >= 0) ::close(fd_);
      fd_ = -1;
      return;
    }
    port_ = ntohs(a.sin_port);
  }
  ~UdpSink() {
    if (fd_ >= 0) ::close(fd_);
  }
  UdpSink(const UdpSink&) = delete;
  UdpSink& operator=(const UdpSink&) = delete;
  bool ok() const { return fd_ >= 0; }
  uint16_t port() const { return port_; }
  int received() {
    char b[2048];
    while (::recv(fd_, b, sizeof b, 0) >= 0) ++count_;
    return count_;
  }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
  int count_ = 0;
};

// This machine's first non-loopback IPv4 address, or "".
std::string host_ipv4() {
  std::string out;
  struct ifaddrs* ifs = nullptr;
  if (::getifaddrs(&ifs) != 0) return out;
  for (auto* i = ifs; i && out.empty(); i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || (i->ifa_flags & IFF_LOOPBACK) || !(i->ifa_flags & IFF_UP))
      continue;
    char buf[INET_ADDRSTRLEN];
    ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, buf, sizeof buf);
    out = buf;
  }
  ::freeifaddrs(ifs);
  return out;
}

std::string host_resolver() {
  std::ifstream rc("/etc/resolv.conf");
  for (std::string line; std::getline(rc, line);)
    if (line.rfind("nameserver ", 0) == 0 && line.find(':') == std::string::npos) return trim_ws(line.substr(11));
  return "10.255.255.53";
}

// A TCP port nobody on the host listens on (at the time of asking).
uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  uint16_t p = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), len) == 0 && ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    p = ntohs(a.sin_port);
  ::close(fd);
  return p;
}

// From the host: connect to ip:port; 0 if it connected (the socket is
// returned in *out, or closed), else errno.
int host_connect(const std::string& ip, uint16_t port, int* out = nullptr) {
  bool v6 = ip.find(':') != std::string::npos;
  int fd = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_storage ss{};
  socklen_t len;
  if (v6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    ::inet_pton(AF_INET6, ip.c_str(), &a->sin6_addr);
    len = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    ::inet_pton(AF_INET, ip.c_str(), &a->sin_addr);
    len = sizeof *a;
  }
  struct timeval tv {2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) == 0 ? 0 : errno;
  if (rc == 0 && out) *out = fd;
  else ::close(fd);
  return rc;
}

// From the host: sends `data` to ip:port and reads for at most a second.
std::string host_talk(const std::string& ip, uint16_t port, const std::string& data) {
  int fd = -1;
  if (host_connect(ip, port, &fd) != 0) return "";
  (void)!::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
  std::string out;
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  while (std::chrono::steady_clock::now() < until) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char b[4096];
    ssize_t n = ::recv(fd, b, sizeof b, 0);
    if (n <= 0) break;
    out.append(b, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

bool wait_for_file(const std::string& path, int ms) {
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (std::chrono::steady_clock::now() < until) {
    if (lexists(path)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// ---------------------------------------------------------------------------
// Sandbox side: the attacker's toolkit, prepended to every test's script.

const char* const kPyLib = R"PY(
import os, random, socket, struct, sys, threading, time
from concurrent.futures import ThreadPoolExecutor

HTTP, SOCKS = 3128, 1080
T = 4.0

def conn(port=HTTP, timeout=T):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)

def read_all(s, timeout=T):
    s.settimeout(timeout)
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                return out
            out += b
    except socket.timeout:
        return out + b"\0TIMEOUT"
    except OSError:
        return out

def recv_n(s, n):
    out = b""
    try:
        while len(out) < n:
            b = s.recv(n - len(out))
            if not b:
                break
            out += b
    except OSError:
        pass
    return out

def responses(data):
    out = []
    while data.startswith(b"HTTP/"):
        end = data.find(b"\r\n\r\n")
        if end < 0:
            break
        lines = data[:end].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        h = {}
        for l in lines[1:]:
            k, _, v = l.partition(":")
            h[k.strip().lower()] = v.strip()
        try:
            n = int(h.get("content-length") or 0)
        except ValueError:
            n = 0
        out.append((parts[1] if len(parts) > 1 else "?", h, data[end + 4:end + 4 + n]))
        data = data[end + 4 + n:]
    return out, data

def who(body):
    parts = body.split(b"served-by=")
    return parts[1].split()[0].decode() if len(parts) > 1 else "-"

def summary(data):
    timeout = data.endswith(b"\0TIMEOUT")
    if timeout:
        data = data[:-len(b"\0TIMEOUT")]
    rs, rest = responses(data)
    parts = ["%s %s %s" % (c, h.get("x-proxy-error", "-"), who(b)) for c, h, b in rs]
    if rest:
        parts.append("junk:" + rest[:16].hex())
    if timeout:
        parts.append("timeout")
    return ",".join(parts) if parts else "none"

def send(data, port=HTTP, timeout=T, shut=False):
    if isinstance(data, str):
        data = data.encode()
    s = conn(port, timeout)
    try:
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    r = read_all(s, timeout)
    s.close()
    return r

def raw(data, port=HTTP):
    return summary(send(data, port))

# GET http://AUTH/PATH through the HTTP proxy. host: the Host header (None:
# AUTH, False: none).
def get(auth, path="/", host=None, headers="", port=HTTP):
    r = "GET http://%s%s HTTP/1.1\r\n" % (auth, path)
    if host is not False:
        r += "Host: %s\r\n" % (auth if host is None else host)
    return raw(r + headers + "Connection: close\r\n\r\n", port)

def inner(path, host):
    return ("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (path, host)).encode()

# CONNECT AUTH, with a request for PATH sent at once behind it (as eager
# TLS clients do): if the tunnel opens, the server's answer follows.
def connect_get(auth, path="/", host=None, port=HTTP):
    r = ("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (auth, auth)).encode()
    return summary(send(r + inner(path, host or auth), port))

# SOCKS5: "socks-XX" with XX the reply code, then the tunnel's answer to
# `then` if it opened.
def socks5(host, port, cmd=1, atyp=3, then=None, proxy=SOCKS, methods=b"\0", eager=False):
    s = conn(proxy)
    if atyp == 1:
        a = socket.inet_pton(socket.AF_INET, host)
    elif atyp == 4:
        a = socket.inet_pton(socket.AF_INET6, host)
    else:
        hb = host if isinstance(host, bytes) else host.encode()
        a = bytes([len(hb)]) + hb
    greet = b"\x05" + bytes([len(methods)]) + methods
    request = b"\x05" + bytes([cmd, 0, atyp]) + a + struct.pack(">H", port)
    if eager:
        s.sendall(greet + request + (then or b""))
    else:
        s.sendall(greet)
    g = recv_n(s, 2)
    if g != b"\x05\x00":
        return "greet-" + (g.hex() or "closed")
    if not eager:
        s.sendall(request)
    r = recv_n(s, 10)
    if len(r) < 2:
        return "socks-closed"
    out = "socks-%02x" % r[1]
    if r[1] == 0 and then:
        if not eager:
            s.sendall(then)
        out += " " + summary(read_all(s))
    s.close()
    return out

def socks4(ip, port, domain=None, then=b""):
    s = conn(SOCKS)
    msg = b"\x04\x01" + struct.pack(">H", port) + socket.inet_aton(ip) + b"user\0"
    if domain:
        msg += domain.encode() + b"\0"
    s.sendall(msg + then)
    r = read_all(s)
    if r.endswith(b"\0TIMEOUT"):
        r = r[:-len(b"\0TIMEOUT")]
    return "socks4-" + (r[1:2].hex() if len(r) >= 2 else "none") + (" more:" + summary(r[8:]) if len(r) > 8 else "")
)PY";

std::string net_settings(const SandboxFixture& fx, const json& network) {
  return write_settings(fx, json{{"network", network}}.dump());
}

// The settings most attacks run under: api.test (allowed, on 127.0.0.1) and
// evil.test (refused, on 127.0.0.2) on the same port, as set up by
// servers_on_one_port({{"A", "127.0.0.1"}, {"B", "127.0.0.2"}}).
std::string api_and_evil_settings(const SandboxFixture& fx, uint16_t port, const char* private_cidr = "127.0.0.0/8") {
  return net_settings(fx, {{"allowedDomains", {"api.test:" + std::to_string(port)}},
                           {"hosts", {{"api.test", "127.0.0.1"}, {"evil.test", "127.0.0.2"}}},
                           {"allowPrivateAddresses", {private_cidr}}});
}

// Runs `body` (after the toolkit and `vars`) with python3 in a sandbox.
RunResult run_py(const SandboxFixture& fx, const std::string& settings, const std::string& vars, const std::string& body,
                 std::vector<std::string> extra = {}) {
  std::string program = std::string(kPyLib) + py_run_all(32) + "\n" + vars + "\n" + body;
  return fx.sh(python_command(fx, "nettest", program), settings_args(settings, extra), proxy_free_options());
}

std::string pyvar(const std::string& name, long v) { return name + " = " + std::to_string(v) + "\n"; }

// A refusal by the proxy itself: one response, status in `codes`, not from
// any server. (The X-Proxy-Error tag is not checked.)
::testing::AssertionResult refused_http(const Results& r, const std::string& label,
                                        const std::set<std::string>& codes = {"400", "403"}) {
  auto it = r.find(label);
  if (it == r.end()) return ::testing::AssertionFailure() << label << ": no result (did the script run?)";
  const std::string& v = it->second;
  auto sp = v.find(' ');
  if (v.find(',') == std::string::npos && sp != std::string::npos && codes.count(v.substr(0, sp)) &&
      v.size() >= 2 && v.compare(v.size() - 2, 2, " -") == 0)
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << label << ": got '" << v << "', expected a refusal by the proxy";
}

const std::string kDeniedByName = "403 blocked-by-allowlist -";
const std::string kDeniedByAddress = "403 blocked-by-address -";

// No server ever got a request whose target contains `needle`.
void expect_never_reached(const Servers& servers, const std::string& needle) {
  for (const auto& s : servers) EXPECT_FALSE(s->saw(needle)) << s->log();
}

// ---------------------------------------------------------------------------

// Direct connections, bypassing the proxy: the sandbox's network namespace
// has only its own loopback, with or without a proxy. The host's loopback
// services, its other addresses, the internet, UDP (DNS to a public
// resolver or to the host's), IPv6 and raw or packet sockets all fail;
// the proxy, asked properly, works.
TEST(NetEscape, DirectConnectionsBypassingTheProxyGoNowhere) {
  SandboxFixture fx;
  Server a("A", "127.0.0.1");
  ASSERT_TRUE(a.ok());
  Server a6("A6", "::1");
  std::string hip = host_ipv4();
  std::unique_ptr<Server> d;
  if (!hip.empty()) d = std::make_unique<Server>("D", "0.0.0.0");
  UdpSink udp_lo("127.0.0.1");
  ASSERT_TRUE(udp_lo.ok());
  // A host service on an abstract unix socket (D-Bus, X11 style).
  std::string abstract_name = "airlock-nettest-" + std::to_string(::getpid());
  int abstract_fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path + 1, abstract_name.data(), abstract_name.size());
    auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + abstract_name.size());
    ASSERT_EQ(::bind(abstract_fd, reinterpret_cast<sockaddr*>(&sa), len), 0) << std::strerror(errno);
    ASSERT_EQ(::listen(abstract_fd, 8), 0);
  }
  std::unique_ptr<UdpSink> udp_host;
  if (!hip.empty()) udp_host = std::make_unique<UdpSink>(hip);
  std::string api = "api.test:" + std::to_string(a.port());
  auto settings = net_settings(fx, {{"allowedDomains", {api}},
                                    {"hosts", {{"api.test", "127.0.0.1"}}},
                                    {"allowPrivateAddresses", {"127.0.0.1/32"}}});
  std::vector<Try> tries = {
      {"tcp-host-lo", "connect-inet 127.0.0.1 " + std::to_string(a.port())},
      {"tcp-public", "connect-inet 1.1.1.1 443"},
      {"tcp-dns", "connect-inet 8.8.8.8 53"},
      {"tcp-metadata", "connect-inet 169.254.169.254 80"},
      {"tcp6-public", "connect-inet 2606:4700::1111 443"},
      {"tcp6-metadata", "connect-inet fd00:ec2::254 80"},
      {"tcp-mapped", "connect-inet ::ffff:1.1.1.1 443"},
      {"udp-dns", "udp-send 8.8.8.8 53"},
      {"udp6-dns", "udp-send 2001:4860:4860::8888 53"},
      {"udp-resolver", "udp-send " + host_resolver() + " 53"},
      {"udp-host-lo", "udp-send 127.0.0.1 " + std::to_string(udp_lo.port())},
      {"raw-inet", "socket 2 3 1"},
      {"raw-inet6", "socket 10 3 58"},
      {"packet", "socket 17 3 0"},
      {"packet-dgram", "socket 17 2 0"},
      {"abstract-unix", "connect-abstract " + abstract_name},
  };
  if (a6.ok()) tries.push_back({"tcp6-host-lo", "connect-inet ::1 " + std::to_string(a6.port())});
  if (d && d->ok()) tries.push_back({"tcp-host-addr", "connect-inet " + hip + " " + std::to_string(d->port())});
  if (udp_host && udp_host->ok()) tries.push_back({"udp-host-addr", "udp-send " + hip + " " + std::to_string(udp_host->port())});
  std::string epilogue =
      "printf 'links %s\\n' \"$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ' ')\"\n"
      "getent hosts example.com >/dev/null; echo \"dns $?\"\n"
      "printf 'curl-direct %s\\n' \"$(curl -sS -m 3 --noproxy '*' http://127.0.0.1:" + std::to_string(a.port()) +
      "/attack-direct 2>&1 | head -c 200 | tr '\\n' ' ')\"\n"
      "printf 'curl-proxy %s\\n' \"$(curl -sS -m 5 http://" + api + "/ok-proxy 2>&1 | tr '\\n' ' ')\"\n";
  auto r = fx.sh(probe_script(tries, "", epilogue), {"--settings", settings}, proxy_free_options());
  ASSERT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);

  const std::set<std::string> no_route = {"ENETUNREACH", "EADDRNOTAVAIL", "EHOSTUNREACH"};
  std::set<std::string> own_lo = no_route;
  own_lo.insert("ECONNREFUSED");  // the sandbox's loopback, with nothing listening
  EXPECT_TRUE(refused(res, "tcp-host-lo", own_lo));
  if (a6.ok()) { EXPECT_TRUE(refused(res, "tcp6-host-lo", own_lo)); }
  if (d && d->ok()) { EXPECT_TRUE(refused(res, "tcp-host-addr", no_route)); }
  for (const char* l : {"tcp-public", "tcp-dns", "tcp-metadata", "tcp6-public", "tcp6-metadata", "tcp-mapped", "udp-dns",
                        "udp6-dns", "udp-resolver"})
    EXPECT_TRUE(refused(res, l, no_route));
  if (udp_host && udp_host->ok()) { EXPECT_TRUE(refused(res, "udp-host-addr", no_route)); }
  // UDP to 127.0.0.1 goes to the sandbox's own loopback: sent, but never
  // arrives on the host.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(udp_lo.received(), 0) << "a datagram from the sandbox reached the host's 127.0.0.1";
  if (udp_host && udp_host->ok()) { EXPECT_EQ(udp_host->received(), 0); }
  for (const char* l : {"raw-inet", "raw-inet6", "packet", "packet-dgram"})
    EXPECT_TRUE(refused(res, l, {"EPERM", "EACCES", "EAFNOSUPPORT"}));
  EXPECT_TRUE(refused(res, "abstract-unix", {"ECONNREFUSED", "EPERM"}));
  EXPECT_LT(::accept4(abstract_fd, nullptr, nullptr, SOCK_CLOEXEC), 0) << "the host's abstract socket got a connection";
  ::close(abstract_fd);
  EXPECT_EQ(res["links"], "lo ") << "the sandbox's network namespace has an interface besides loopback";
  EXPECT_EQ(res["dns"], "2") << "a name resolved inside the sandbox";
  EXPECT_TRUE(lacks(res["curl-direct"], "served-by"));
  // The allowed way works.
  EXPECT_TRUE(contains(res["curl-proxy"], "served-by=A GET /ok-proxy"));
  EXPECT_FALSE(a.saw("/attack")) << a.log();
  EXPECT_EQ(a.requests().size(), 1u) << a.log();
  if (a6.ok()) { EXPECT_EQ(a6.connections(), 0) << a6.log(); }
  if (d && d->ok()) { EXPECT_EQ(d->connections(), 0) << d->log(); }
}

// A host that is not allowed, dressed up as one that is (or as nothing the
// rules know): every spelling reaches the rules in one canonical form.
// The look-alike names all point (network.hosts) at server B, which shares
// the allowed server's port, so only the name rule stands between them.
TEST(NetEscape, HostDisguisesAreRefused) {
  SandboxFixture fx;
  auto srv = servers_on_one_port({{"A", "127.0.0.1"}, {"B", "127.0.0.2"}, {"C", "127.0.0.3"}});
  ASSERT_EQ(srv.size(), 3u) << "cannot bind 127.0.0.1-3 on one port";
  const Server &a = *srv[0], &b = *srv[1], &c = *srv[2];
  int p = a.port();
  std::string ps = ":" + std::to_string(p);
  json hosts = {{"api.test", "127.0.0.1"},       {"x.wild.test", "127.0.0.1"},        {"wild.test", "127.0.0.2"},
                {"secret.wild.test", "127.0.0.2"}, {"evil.test", "127.0.0.2"},        {"evil-api.test", "127.0.0.2"},
                {"api.test.evil.test", "127.0.0.2"}, {"\xd0\xb0pi.test", "127.0.0.2"}};  // Cyrillic a
  auto settings = net_settings(fx, {{"allowedDomains", {"api.test" + ps, "*.wild.test" + ps, "127.0.0.3" + ps}},
                                    {"deniedDomains", {"secret.wild.test"}},
                                    {"hosts", hosts},
                                    {"allowPrivateAddresses", {"127.0.0.0/8"}}});
  // Host spellings that must be refused by the name rules, via each door.
  const std::vector<std::pair<std::string, std::string>> disguises = {
      {"evil", "evil.test"},
      {"upper", "EVIL.TEST"},
      {"trailing-dot", "evil.test."},
      {"denied-case", "SECRET.Wild.TEST"},
      {"denied-dot", "secret.wild.test."},
      {"wildcard-apex", "wild.test"},
      {"suffix-lookalike", "evil-api.test"},
      {"prefix-lookalike", "api.test.evil.test"},
      {"idn", "\xd0\xb0pi.test"},
      {"idn-punycode", "xn--pi-6kc.test"},
      {"ip-dotted", "127.0.0.2"},
      {"ip-decimal", "2130706434"},
      {"ip-octal", "0177.0.0.2"},
      {"ip-octal-int", "017700000002"},
      {"ip-hex", "0x7f.0.0.2"},
      {"ip-hex-int", "0x7f000002"},
      {"ip-short", "127.2"},
      {"ip-mapped", "[::ffff:127.0.0.2]"},
      {"ip-mapped-hex", "[::ffff:7f00:2]"},
      {"ip-mapped-long", "[0:0:0:0:0:ffff:127.0.0.2]"},
      // The allowed server's own address, which only its name may use.
      {"ip-a", "127.0.0.1"},
      {"ip-a-decimal", "2130706433"},
      {"ip-a-mapped", "[::ffff:127.0.0.1]"},
  };
  std::string body = "tests = []\n";
  for (const auto& [label, h] : disguises) {
    std::string hj = json(h).dump();  // a Python string literal too
    body += "tests.append(('h-" + label + "', get, " + hj + " + PS, '/attack-h-" + label + "'))\n";
    body += "tests.append(('c-" + label + "', connect_get, " + hj + " + PS, '/attack-c-" + label + "'))\n";
    body += "tests.append(('s-" + label + "', socks5, " + hj + ", P, 1, 3, inner('/attack-s-" + label +
            "', 'x')))\n";
  }
  body += R"PY(
A = "api.test" + PS
E = "evil.test" + PS
tests += [
    ("ok-h", get, A, "/ok-h"),
    ("ok-h-upper", get, "API.TEST" + PS, "/ok-h-upper"),
    ("ok-h-dot", get, "api.test." + PS, "/ok-h-dot"),
    ("ok-h-wild", get, "x.wild.test" + PS, "/ok-h-wild"),
    ("ok-h-wild-upper", get, "X.WILD.TEST." + PS, "/ok-h-wild-upper"),
    ("ok-c", connect_get, A, "/ok-c"),
    ("ok-s", socks5, "api.test", P, 1, 3, inner("/ok-s", A)),
    ("ok-ip", get, "127.0.0.3" + PS, "/ok-ip"),
    ("ok-ip-hex", get, "0x7f.0.0.3" + PS, "/ok-ip-hex"),
    ("ok-ip-mapped", get, "[::ffff:127.0.0.3]" + PS, "/ok-ip-mapped"),
    ("ok-ip-s", socks5, "127.0.0.3", P, 1, 1, inner("/ok-ip-s", "x")),
    # URL tricks: whose host is it?
    ("url-userinfo", raw, "GET http://%s@%s/attack-u1 HTTP/1.1\r\nConnection: close\r\n\r\n" % (A, E)),
    ("url-userinfo-name", raw, "GET http://api.test@%s/attack-u2 HTTP/1.1\r\nConnection: close\r\n\r\n" % E),
    ("url-fragment", raw, "GET http://%s#@%s/attack-u3 HTTP/1.1\r\nConnection: close\r\n\r\n" % (E, A)),
    ("url-query", raw, "GET http://%s?@%s/attack-u4 HTTP/1.1\r\nConnection: close\r\n\r\n" % (E, A)),
    ("url-backslash", raw, "GET http://%s\\@%s/attack-u5 HTTP/1.1\r\nConnection: close\r\n\r\n" % (A, E)),
    ("url-percent", raw, "GET http://evil%%2etest%s/attack-u6 HTTP/1.1\r\nConnection: close\r\n\r\n" % PS),
    ("url-scheme-case", raw, "GET HTTP://EVIL.TEST%s/attack-u7 HTTP/1.1\r\nConnection: close\r\n\r\n" % PS),
    ("url-double-dot", get, "api.test.." + PS, "/attack-u8"),
    ("url-two-ports", get, A + PS, "/attack-u9"),
    ("url-zone-id", get, "[fe80::1%25lo]" + PS, "/attack-u10"),
    ("url-mapped-zone", get, "[::ffff:127.0.0.2%25lo]" + PS, "/attack-u11"),
    ("c-userinfo", raw, "CONNECT %s@%s HTTP/1.1\r\n\r\n" % (A, E)),
    ("c-userinfo-name", raw, "CONNECT api.test@%s HTTP/1.1\r\n\r\n" % E),
    ("c-host-header", raw, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (E, A)),
    ("c-absolute", raw, "CONNECT http://%s/ HTTP/1.1\r\n\r\n" % E),
    ("s-nul", socks5, b"api.test\0.evil.test", P, 1, 3, inner("/attack-s-nul", "x")),
    ("s-ip4", socks5, "127.0.0.2", P, 1, 1, inner("/attack-s-ip4", "x")),
    ("s-ip6-mapped", socks5, "::ffff:127.0.0.2", P, 1, 4, inner("/attack-s-ip6", "x")),
    ("s-ip4-a", socks5, "127.0.0.1", P, 1, 1, inner("/attack-s-ip4-a", "x")),
    ("s-hostport", socks5, "api.test" + PS, P, 1, 3, inner("/attack-s-hostport", "x")),
]
run_all(tests)
)PY";
  auto r = run_py(fx, settings, pyvar("P", p) + "PS = ':%d' % P\n", body);
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  auto res = parse_results(r.out);

  for (const auto& [label, h] : disguises) {
    if (label == "idn") {  // raw UTF-8 in a request line may be refused as malformed first
      EXPECT_TRUE(refused_http(res, "h-" + label));
      EXPECT_TRUE(refused_http(res, "c-" + label));
    } else {
      EXPECT_TRUE(is(res, "h-" + label, {kDeniedByName}));
      EXPECT_TRUE(is(res, "c-" + label, {kDeniedByName}));
    }
    EXPECT_TRUE(is(res, "s-" + label, {"socks-02"}));
  }
  for (const char* l : {"ok-h", "ok-h-upper", "ok-h-dot", "ok-h-wild", "ok-h-wild-upper"}) EXPECT_TRUE(is(res, l, {"200 - A"}));
  EXPECT_TRUE(is(res, "ok-c", {"200 - -,200 - A"}));
  EXPECT_TRUE(is(res, "ok-s", {"socks-00 200 - A"}));
  for (const char* l : {"ok-ip", "ok-ip-hex", "ok-ip-mapped"}) EXPECT_TRUE(is(res, l, {"200 - C"}));
  EXPECT_TRUE(is(res, "ok-ip-s", {"socks-00 200 - C"}));
  for (const char* l : {"url-userinfo", "url-userinfo-name", "url-backslash", "url-percent", "url-double-dot",
                        "url-two-ports", "c-userinfo", "c-userinfo-name", "c-absolute"})
    EXPECT_TRUE(refused_http(res, l, {"400"}));
  for (const char* l : {"url-fragment", "url-query", "url-scheme-case", "url-zone-id", "url-mapped-zone", "c-host-header"})
    EXPECT_TRUE(refused_http(res, l));
  for (const char* l : {"s-nul", "s-ip4", "s-ip6-mapped", "s-ip4-a", "s-hostport"}) EXPECT_TRUE(is(res, l, {"socks-02"}));

  expect_never_reached(srv, "/attack");
  EXPECT_EQ(b.connections(), 0) << b.log();
  EXPECT_GE(c.requests().size(), 4u) << c.log();
}

// An allowed name that resolves (here: through network.hosts, as DNS
// rebinding would) to loopback, a private range, link-local, the cloud
// metadata service or this machine's own address is refused by address.
// Literal metadata addresses and metadata names are refused too.
TEST(NetEscape, NamesResolvingToPrivateOrMetadataAddressesAreRefused) {
  SandboxFixture fx;
  auto srv = servers_on_one_port({{"A", "127.0.0.1"}, {"B", "127.0.0.2"}, {"C", "127.0.0.3"}});
  ASSERT_EQ(srv.size(), 3u);
  int p = srv[0]->port();
  std::string ps = ":" + std::to_string(p);
  Server b6("B6", "::1", static_cast<uint16_t>(p));
  std::string hip = host_ipv4();
  std::unique_ptr<Server> d;
  if (!hip.empty()) d = std::make_unique<Server>("D", hip, static_cast<uint16_t>(p));
  std::map<std::string, json> targets = {
      {"lo", "127.0.0.2"},
      {"lo6", "::1"},
      {"ten", "10.0.0.1"},
      {"p172", "172.16.0.1"},
      {"p192", "192.168.0.1"},
      {"cgnat", "100.64.0.1"},
      {"linklocal", "169.254.1.1"},
      {"meta", "169.254.169.254"},
      {"meta-ecs", "169.254.170.2"},
      {"meta-alibaba", "100.100.100.200"},
      {"meta-azure", "168.63.129.16"},
      {"meta6", "fd00:ec2::254"},
      {"ula", "fd00::1"},
      {"linklocal6", "fe80::1"},
      {"zero", "0.0.0.0"},
      {"mapped", "::ffff:127.0.0.2"},
      {"sixtofour", "2002:7f00:2::1"},
      {"nat64", "64:ff9b::7f00:2"},
      {"v4compat", "::127.0.0.2"},
      {"multicast", "224.0.0.1"},
      {"broadcast", "255.255.255.255"},
      {"mixed", json::array({"93.184.215.14", "127.0.0.2"})},
      {"denied-public", "93.184.216.34"},
  };
  if (d && d->ok()) targets["self"] = hip;
  json hosts = {{"metadata.google.internal", "127.0.0.3"},
                {"instance-data.ec2.internal", "127.0.0.3"},
                {"ok.google.internal", "127.0.0.3"}};
  for (const auto& [n, addr] : targets) hosts[n + ".rebind.test"] = addr;
  auto settings = net_settings(
      fx, {{"allowedDomains", {"*.rebind.test" + ps, "*.rebind.test", "127.0.0.1" + ps, "*.google.internal" + ps,
                               "*.ec2.internal" + ps}},
           {"deniedResolvedAddresses", {"93.184.216.0/24"}},
           {"hosts", hosts},
           {"allowPrivateAddresses", {"127.0.0.3/32"}}});
  std::string body = "tests = []\n";
  for (const auto& [n, addr] : targets) {
    body += "tests.append(('h-" + n + "', get, '" + n + ".rebind.test' + PS, '/attack-h-" + n + "'))\n";
    body += "tests.append(('s-" + n + "', socks5, '" + n + ".rebind.test', P, 1, 3, inner('/attack-s-" + n + "', 'x')))\n";
  }
  for (const char* n : {"lo", "lo6", "meta", "meta6", "zero", "mixed", "self"})
    if (targets.count(n))
      body += std::string("tests.append(('c-") + n + "', connect_get, '" + n + ".rebind.test' + PS, '/attack-c-" + n + "'))\n";
  body += R"PY(
tests += [
    ("h-port80", get, "lo.rebind.test", "/attack-port80"),
    ("lit-meta", get, "169.254.169.254", "/latest/meta-data/"),
    ("lit-meta-port", get, "169.254.169.254" + PS, "/attack-lit1"),
    ("lit-meta-hex", get, "0xa9fea9fe", "/latest/meta-data/"),
    ("lit-meta-decimal", get, "2852039166", "/latest/meta-data/"),
    ("lit-meta6", get, "[fd00:ec2::254]", "/latest/meta-data/"),
    ("lit-meta-azure", get, "168.63.129.16", "/machine"),
    ("lit-meta-c", connect_get, "169.254.169.254:80", "/latest/meta-data/"),
    ("lit-meta-s", socks5, "169.254.169.254", 80, 1, 1),
    ("lit-lo6", get, "[::1]" + PS, "/attack-lit-lo6"),
    ("lit-lo2", get, "127.0.0.2" + PS, "/attack-lit-lo2"),
    ("name-google", get, "metadata.google.internal" + PS, "/attack-name-google"),
    ("name-google-case", get, "METADATA.Google.Internal." + PS, "/attack-name-google2"),
    ("name-ec2", get, "instance-data.ec2.internal" + PS, "/attack-name-ec2"),
    ("name-google-s", socks5, "metadata.google.internal", P, 1, 3, inner("/attack-name-google-s", "x")),
    ("ok-lit", get, "127.0.0.1" + PS, "/ok-lit"),
    ("ok-lit-hex", get, "0x7f.1" + PS, "/ok-lit-hex"),
    ("ok-wild-private", get, "ok.google.internal" + PS, "/ok-wild-private"),
]
run_all(tests)
)PY";
  auto r = run_py(fx, settings, pyvar("P", p) + "PS = ':%d' % P\n", body);
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  auto res = parse_results(r.out);
  for (const auto& [n, addr] : targets) {
    EXPECT_TRUE(is(res, "h-" + n, {kDeniedByAddress})) << "resolves to " << addr.dump();
    EXPECT_TRUE(is(res, "s-" + n, {"socks-02"})) << "resolves to " << addr.dump();
  }
  for (const char* n : {"lo", "lo6", "meta", "meta6", "zero", "mixed", "self"})
    if (targets.count(n)) { EXPECT_TRUE(is(res, std::string("c-") + n, {kDeniedByAddress})); }
  EXPECT_TRUE(is(res, "h-port80", {kDeniedByAddress}));
  for (const char* l : {"lit-meta", "lit-meta-port", "lit-meta-hex", "lit-meta-decimal", "lit-meta6", "lit-meta-azure",
                        "lit-meta-c", "lit-lo6", "lit-lo2", "name-google", "name-google-case", "name-ec2"})
    EXPECT_TRUE(is(res, l, {kDeniedByName, kDeniedByAddress}));
  EXPECT_TRUE(is(res, "lit-meta-s", {"socks-02"}));
  EXPECT_TRUE(is(res, "name-google-s", {"socks-02"}));
  EXPECT_TRUE(is(res, "ok-lit", {"200 - A"}));
  EXPECT_TRUE(is(res, "ok-lit-hex", {"200 - A"}));
  EXPECT_TRUE(is(res, "ok-wild-private", {"200 - C"}));

  expect_never_reached(srv, "/attack");
  EXPECT_EQ(srv[1]->connections(), 0) << srv[1]->log();
  if (b6.ok()) { EXPECT_EQ(b6.connections(), 0) << b6.log(); }
  if (d && d->ok()) { EXPECT_EQ(d->connections(), 0) << d->log(); }
}

// An allowed host on a port nobody allowed: a rule with a port covers that
// port only, a rule without one covers 80 and 443 only.
TEST(NetEscape, AllowedHostOnAnotherPortIsRefused) {
  SandboxFixture fx;
  Server a("A", "127.0.0.1"), other("A-other-port", "127.0.0.1");
  ASSERT_TRUE(a.ok() && other.ok());
  auto settings = net_settings(fx, {{"allowedDomains", {"api.test:" + std::to_string(a.port()), "web.test"}},
                                    {"hosts", {{"api.test", "127.0.0.1"}, {"web.test", "127.0.0.1"}}},
                                    {"allowPrivateAddresses", {"127.0.0.1/32"}}});
  std::string body = R"PY(
run_all([
    ("ok", get, "api.test:%d" % P, "/ok"),
    ("ok-s", socks5, "api.test", P, 1, 3, inner("/ok-s", "api.test")),
    ("h-other", get, "api.test:%d" % Q, "/attack-1"),
    ("c-other", connect_get, "api.test:%d" % Q, "/attack-2"),
    ("s-other", socks5, "api.test", Q, 1, 3, inner("/attack-3", "x")),
    ("h-portless-rule", get, "web.test:%d" % Q, "/attack-4"),
    ("c-portless-rule", connect_get, "web.test:%d" % Q, "/attack-5"),
    ("s-portless-rule", socks5, "web.test", Q, 1, 3, inner("/attack-6", "x")),
    ("h-port-wrap", get, "api.test:%d" % (Q + 65536), "/attack-7"),
    ("c-port-wrap", connect_get, "api.test:%d" % (Q + 65536), "/attack-8"),
    ("h-two-ports", get, "api.test:%d:%d" % (P, Q), "/attack-9"),
    ("c-two-ports", connect_get, "api.test:%d:%d" % (P, Q), "/attack-10"),
    ("s-port-zero", socks5, "api.test", 0),
])
)PY";
  auto r = run_py(fx, settings, pyvar("P", a.port()) + pyvar("Q", other.port()), body);
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  auto res = parse_results(r.out);
  EXPECT_TRUE(is(res, "ok", {"200 - A"}));
  EXPECT_TRUE(is(res, "ok-s", {"socks-00 200 - A"}));
  for (const char* l : {"h-other", "c-other", "h-portless-rule", "c-portless-rule"}) EXPECT_TRUE(is(res, l, {kDeniedByName}));
  for (const char* l : {"s-other", "s-portless-rule", "s-port-zero"}) EXPECT_TRUE(is(res, l, {"socks-02"}));
  for (const char* l : {"h-port-wrap", "c-port-wrap", "h-two-ports", "c-two-ports"})
    EXPECT_TRUE(refused_http(res, l, {"400"}));
  EXPECT_EQ(other.connections(), 0) << other.log();
  EXPECT_FALSE(a.saw("/attack")) << a.log();
}

// Domain fronting in the clear: the URL names an allowed host and the Host
// header another (or the other way round), so that a shared front end
// would route to the one nobody allowed. Refused as ambiguous. Through a
// CONNECT or SOCKS tunnel the proxy cannot see the inner request, but the
// tunnel goes to the allowed host's address and nowhere else.
TEST(NetEscape, DomainFrontingIsRefused) {
  SandboxFixture fx;
  auto srv = servers_on_one_port({{"A", "127.0.0.1"}, {"B", "127.0.0.2"}});
  ASSERT_EQ(srv.size(), 2u);
  const Server &a = *srv[0], &b = *srv[1];
  std::string ps = ":" + std::to_string(a.port());
  auto settings = api_and_evil_settings(fx, a.port());
  std::string body = R"PY(
A = "api.test" + PS
E = "evil.test" + PS
run_all([
    ("front", get, A, "/attack-f1", E),
    ("front-no-port", get, A, "/attack-f2", "evil.test"),
    ("front-ip", get, A, "/attack-f3", "127.0.0.2" + PS),
    ("front-reverse", get, E, "/attack-f4", A),
    ("two-hosts", get, A, "/attack-f5", None, "Host: %s\r\n" % E),
    ("two-hosts-reverse", get, A, "/attack-f6", E, "Host: %s\r\n" % A),
    ("host-list", get, A, "/attack-f7", "%s, %s" % (A, E)),
    ("host-userinfo", get, A, "/attack-f8", "api.test@" + E),
    ("origin-form", raw, "GET /attack-f9 HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % A),
    ("origin-form-evil", raw, "GET /attack-f10 HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % E),
    ("https-url", raw, "GET https://%s/attack-f11 HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (E, E)),
    ("http10-front", raw, "GET http://%s/attack-f12 HTTP/1.0\r\nHost: %s\r\n\r\n" % (A, E)),
    ("ok-host-case", get, A, "/ok-case", "API.Test" + PS),
    ("ok-no-host", get, A, "/ok-no-host", False),
    ("connect-front", connect_get, A, "/ok-connect-front", E),
    ("socks-front", socks5, "api.test", P, 1, 3, inner("/ok-socks-front", E)),
])
)PY";
  auto r = run_py(fx, settings, pyvar("P", a.port()) + "PS = ':%d' % P\n", body);
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  auto res = parse_results(r.out);
  for (const char* l : {"front", "front-no-port", "front-ip", "two-hosts", "two-hosts-reverse", "host-list",
                        "host-userinfo", "origin-form", "origin-form-evil", "https-url", "http10-front"})
    EXPECT_TRUE(refused_http(res, l, {"400"}));
  EXPECT_TRUE(refused_http(res, "front-reverse"));
  EXPECT_TRUE(is(res, "ok-host-case", {"200 - A"}));
  EXPECT_TRUE(is(res, "ok-no-host", {"200 - A"}));
  EXPECT_TRUE(is(res, "connect-front", {"200 - -,200 - A"}));
  EXPECT_TRUE(is(res, "socks-front", {"socks-00 200 - A"}));
  expect_never_reached(srv, "/attack");
  EXPECT_EQ(b.connections(), 0) << b.log();
  // The proxy tells the server which host was judged, whatever the client wrote.
  std::vector<Seen> store;
  for (const char* t : {"/ok-case", "/ok-no-host"}) {
    const Seen* s = a.find(t, store);
    ASSERT_NE(s, nullptr) << a.log();
    EXPECT_EQ(s->host, "api.test" + ps) << t;
  }
}

// Request smuggling: framing that the proxy and the server could read
// differently (Content-Length against Transfer-Encoding, duplicates, codings
// other than chunked, hop-by-hop tricks), and a second request on a
// kept-alive or pipelined connection to a host nobody allowed. The server
// here is the lenient kind (Content-Length wins, any "chunked" counts):
// whatever the proxy forwards, it must never read GET /smuggled.
TEST(NetEscape, RequestSmugglingIsRefused) {
  SandboxFixture fx;
  auto srv = servers_on_one_port({{"A", "127.0.0.1"}, {"B", "127.0.0.2"}});
  ASSERT_EQ(srv.size(), 2u);
  const Server &a = *srv[0], &b = *srv[1];
  std::string ps = ":" + std::to_string(a.port());
  auto settings = api_and_evil_settings(fx, a.port());
  std::string body = R"PY(
A = "api.test" + PS
E = "evil.test" + PS
S = "GET /smuggled HTTP/1.1\r\nHost: %s\r\n\r\n" % E
CS = "%x\r\n%s\r\n0\r\n\r\n" % (len(S), S)
Z = "0\r\n\r\n" + S

def post(headers, body, path, connection="close"):
    r = "POST http://%s%s HTTP/1.1\r\nHost: %s\r\n%sConnection: %s\r\n\r\n" % (A, path, A, headers, connection)
    return raw(r + body)

def one_response(s):
    data = b""
    while True:
        rs, rest = responses(data)
        if rs and not rest:
            return data
        b = s.recv(65536)
        if not b:
            return data
        data += b

def keepalive(second, pipelined=False):
    s = conn()
    first = ("GET http://%s/ok-ka HTTP/1.1\r\nHost: %s\r\n\r\n" % (A, A)).encode()
    second = second if isinstance(second, bytes) else second.encode()
    if pipelined:
        s.sendall(first + second)
        return summary(read_all(s))
    s.sendall(first)
    data = one_response(s)
    s.sendall(second)
    return summary(data + read_all(s))

run_all([
    ("cl-te", post, "Content-Length: %d\r\nTransfer-Encoding: chunked\r\n" % len(Z), Z, "/attack-cl-te"),
    ("te-cl", post, "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", Z, "/attack-te-cl"),
    ("cl-cl", post, "Content-Length: 0\r\nContent-Length: %d\r\n" % len(S), S, "/attack-cl-cl"),
    ("cl-cl-same", post, "Content-Length: %d\r\nContent-Length: %d\r\n" % (len(S), len(S)), S, "/attack-cl-cl-same"),
    ("cl-list", post, "Content-Length: %d, 0\r\n" % len(S), S, "/attack-cl-list"),
    ("cl-plus", post, "Content-Length: +%d\r\n" % len(S), S, "/attack-cl-plus"),
    ("te-gzip", post, "Transfer-Encoding: gzip\r\n", S, "/attack-te-gzip"),
    ("te-identity", post, "Transfer-Encoding: identity\r\n", S, "/attack-te-identity"),
    ("te-gzip-chunked", post, "Transfer-Encoding: gzip, chunked\r\n", CS, "/attack-te-gzip-chunked"),
    ("te-chunked-identity", post, "Transfer-Encoding: chunked, identity\r\n", CS, "/attack-te-chunked-identity"),
    ("te-twice", post, "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", CS, "/attack-te-twice"),
    ("te-xchunked", post, "Transfer-Encoding: xchunked\r\n", Z, "/attack-te-xchunked"),
    ("te-vtab", post, "Transfer-Encoding:\x0bchunked\r\n", Z, "/attack-te-vtab"),
    ("te-space-before-colon", post, "Transfer-Encoding : chunked\r\n", Z, "/attack-te-colon"),
    ("te-leading-space", post, "Transfer-Encoding:  chunked\r\n", CS, "/ok-te-space"),
    ("te-upper", post, "Transfer-Encoding: CHUNKED\r\n", CS, "/ok-te-upper"),
    ("obs-fold", post, "X-Folded: a\r\n Transfer-Encoding: chunked\r\n", "", "/ok-obs-fold"),
    ("ok-chunked", post, "Transfer-Encoding: chunked\r\n", CS, "/ok-chunked"),
    ("chunk-trailer", post, "Transfer-Encoding: chunked\r\n", CS[:-2] + "X-Trailer: 1\r\n\r\n", "/ok-chunk-trailer"),
    ("chunk-ext", post, "Transfer-Encoding: chunked\r\n", CS.replace("\r\n", ";ext=1\r\n", 1), "/ok-chunk-ext"),
    ("chunk-lf-only", post, "Transfer-Encoding: chunked\r\n", "%x\n%s\n0\n\n" % (len(S), S), "/ok-chunk-lf"),
    ("pl-after-body", raw, "POST http://%s/ok-pl-body HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n%sGET http://%s/attack-pl-body HTTP/1.1\r\nHost: %s\r\n\r\n" % (A, A, len(S), S, E, E)),
    ("ok-cl", post, "Content-Length: %d\r\n" % len(S), S, "/ok-cl"),
    ("ka-other-host", keepalive, "GET http://%s/attack-ka1 HTTP/1.1\r\nHost: %s\r\n\r\n" % (E, E)),
    ("ka-ip", keepalive, "GET http://127.0.0.2%s/attack-ka2 HTTP/1.1\r\n\r\n" % PS),
    ("ka-origin-form", keepalive, "GET /attack-ka3 HTTP/1.1\r\nHost: %s\r\n\r\n" % E),
    ("ka-front", keepalive, "GET http://%s/attack-ka4 HTTP/1.1\r\nHost: %s\r\n\r\n" % (A, E)),
    ("ka-connect", keepalive, ("CONNECT %s HTTP/1.1\r\n\r\n" % E).encode() + inner("/attack-ka5", E)),
    ("ka-socks", keepalive, b"\x05\x01\x00\x05\x01\x00\x03\x09evil.test" + struct.pack(">H", P) + inner("/attack-ka6", E)),
    ("ka-allowed", keepalive, "GET http://%s/ok-ka-2 HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (A, A)),
    ("pl-other-host", keepalive, "GET http://%s/attack-pl1 HTTP/1.1\r\nHost: %s\r\n\r\n" % (E, E), True),
    ("pl-ip", keepalive, "GET http://127.0.0.2%s/attack-pl2 HTTP/1.1\r\n\r\n" % PS, True),
    ("pl-three", keepalive, "GET http://%s/attack-pl3 HTTP/1.1\r\nHost: %s\r\n\r\nGET http://%s/attack-pl4 HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (E, E, A, A), True),
    ("pl-front", keepalive, "GET http://%s/attack-pl5 HTTP/1.1\r\nHost: %s\r\n\r\n" % (A, E), True),
    ("pl-allowed", keepalive, "GET http://%s/ok-pl-2 HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (A, A), True),
])
)PY";
  auto r = run_py(fx, settings, pyvar("P", a.port()) + "PS = ':%d' % P\n", body);
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  auto res = parse_results(r.out);
  for (const char* l : {"cl-te", "te-cl", "cl-cl", "cl-cl-same", "te-gzip", "te-identity", "te-gzip-chunked",
                        "te-chunked-identity", "te-twice", "te-xchunked", "te-vtab", "te-space-before-colon"})
    EXPECT_TRUE(refused_http(res, l, {"400"}));
  // Odd but unambiguous, or refused: either is fine as long as the server
  // reads exactly what the proxy judged (checked below).
  for (const char* l : {"cl-list", "cl-plus", "obs-fold"}) EXPECT_TRUE(is(res, l, {"200 - A", "400 bad-request -"}));
  for (const char* l : {"te-leading-space", "te-upper", "ok-chunked", "ok-cl"})
    EXPECT_TRUE(is(res, l, {"200 - A", "400 bad-request -"}));
  EXPECT_TRUE(is(res, "ok-chunked", {"200 - A"}));
  for (const char* l : {"chunk-trailer", "chunk-ext"}) EXPECT_TRUE(is(res, l, {"200 - A", "400 bad-request -"}));
  // A body that turns out malformed after the header went ahead: the proxy
  // can only hang up (the server gets an unfinished request, nothing more).
  EXPECT_TRUE(is(res, "chunk-lf-only", {"200 - A", "400 bad-request -", "none"}));
  EXPECT_TRUE(is(res, "pl-after-body", {"200 - A," + kDeniedByName}));
  EXPECT_TRUE(is(res, "ok-cl", {"200 - A"}));
  EXPECT_TRUE(is(res, "ka-other-host", {"200 - A," + kDeniedByName}));
  EXPECT_TRUE(is(res, "ka-ip", {"200 - A," + kDeniedByName}));
  EXPECT_TRUE(is(res, "ka-origin-form", {"200 - A,400 bad-request -"}));
  EXPECT_TRUE(is(res, "ka-front", {"200 - A,400 host-mismatch -"}));
  EXPECT_TRUE(is(res, "ka-connect", {"200 - A," + kDeniedByName}));
  EXPECT_TRUE(contains(res["ka-socks"], "200 - A,400 ")) << "a SOCKS greeting on a kept-alive HTTP connection";
  EXPECT_TRUE(is(res, "ka-allowed", {"200 - A,200 - A"}));
  EXPECT_TRUE(is(res, "pl-other-host", {"200 - A," + kDeniedByName}));
  EXPECT_TRUE(is(res, "pl-ip", {"200 - A," + kDeniedByName}));
  EXPECT_TRUE(is(res, "pl-three", {"200 - A," + kDeniedByName}));
  EXPECT_TRUE(is(res, "pl-front", {"200 - A,400 host-mismatch -"}));
  EXPECT_TRUE(is(res, "pl-allowed", {"200 - A,200 - A"}));

  expect_never_reached(srv, "/smuggled");
  expect_never_reached(srv, "/attack");
  EXPECT_EQ(b.connections(), 0) << b.log();
  // What was forwarded was framed as the proxy judged it: each POST that
  // got through arrived once, with its whole body.
  std::vector<Seen> store;
  for (const char* t : {"/ok-te-space", "/ok-te-upper", "/ok-chunked", "/ok-cl",
                        "/ok-chunk-trailer", "/ok-chunk-ext", "/ok-chunk-lf", "/ok-pl-body"}) {
    const Seen* s = a.find(t, store);
    if (!s) continue;  // refused (400): also fine
    EXPECT_TRUE(contains(s->body, "GET /smuggled")) << t << ": the body did not arrive as a body\n" << a.log();
  }
  EXPECT_TRUE(lacks(a.raw(), "\r\n Transfer-Encoding")) << "an obs-fold header was forwarded as written";
}

// Connection names the headers that end at this hop, and a proxy removes
// them: but Content-Length and Transfer-Encoding frame the very message
// being forwarded. A client that lists them in Connection must not get a
// body forwarded without its framing, which the server would then read as
// the next request (here one for evil.test: domain fronting by smuggling).
TEST(NetEscape, HopByHopHeadersCannotStripTheFraming) {
  SandboxFixture fx;
  auto srv = servers_on_one_port({{"A", "127.0.0.1"}, {"B", "127.0.0.2"}});
  ASSERT_EQ(srv.size(), 2u);
  const Server& a = *srv[0];
  std::string ps = ":" + std::to_string(a.port());
  auto settings = api_and_evil_settings(fx, a.port());
  std::string body = R"PY(
A = "api.test" + PS
S = "GET /smuggled HTTP/1.1\r\nHost: evil.test%s\r\n\r\n" % PS
CS = "%x\r\n%s\r\n0\r\n\r\n" % (len(S), S)
def post(headers, body, path, connection):
    r = "POST http://%s%s HTTP/1.1\r\nHost: %s\r\n%sConnection: %s\r\n\r\n" % (A, path, A, headers, connection)
    return raw(r + body)
run_all([
    ("hop-by-hop-cl", post, "Content-Length: %d\r\n" % len(S), S, "/ok-hbh-cl", "close, Content-Length"),
    ("hop-by-hop-te", post, "Transfer-Encoding: chunked\r\n", CS, "/ok-hbh-te", "close, Transfer-Encoding"),
    ("hop-by-hop-cl-keepalive", post, "Content-Length: %d\r\n" % len(S),
     S + "GET http://%s/ok-hbh-next HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (A, A), "/ok-hbh-cl-ka",
     "Content-Length"),
    ("hop-by-hop-host", post, "Content-Length: 0\r\n", "", "/ok-hbh-host", "close, Host"),
], 1)
)PY";
  auto r = run_py(fx, settings, pyvar("P", a.port()) + "PS = ':%d' % P\n", body);
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  auto res = parse_results(r.out);
  for (const char* l : {"hop-by-hop-cl", "hop-by-hop-te", "hop-by-hop-host"})
    EXPECT_TRUE(is(res, l, {"200 - A", "400 bad-request -"}));
  EXPECT_TRUE(is(res, "hop-by-hop-cl-keepalive", {"200 - A,200 - A", "400 bad-request -"}));
  expect_never_reached(srv, "/smuggled");
  EXPECT_EQ(srv[1]->connections(), 0) << srv[1]->log();
  std::vector<Seen> store;
  for (const char* t : {"/ok-hbh-cl", "/ok-hbh-te", "/ok-hbh-cl-ka"}) {
    const Seen* s = a.find(t, store);
    if (!s) continue;  // refused (400): also fine
    EXPECT_TRUE(contains(s->body, "GET /smuggled")) << t << ": the body did not arrive as a body\n" << a.log();
  }
  const Seen* h = a.find("/ok-hbh-host", store);
  if (h) { EXPECT_EQ(h->host, "api.test" + ps); }
}

// SOCKS: only CONNECT, only SOCKS5, only to allowed hosts; both listeners
// speak both protocols and judge the same way.
TEST(NetEscape, SocksOnlyConnectsToAllowedHosts) {
  SandboxFixture fx;
  auto srv = servers_on_one_port({{"A", "127.0.0.1"}, {"B", "127.0.0.2"}});
  ASSERT_EQ(srv.size(), 2u);
  const Server &a = *srv[0], &b = *srv[1];
  std::string ps = ":" + std::to_string(a.port());
  auto settings = api_and_evil_settings(fx, a.port());
  std::string body = R"PY(
A = "api.test" + PS
E = "evil.test" + PS
run_all([
    ("ok", socks5, "api.test", P, 1, 3, inner("/ok", A)),
    ("ok-on-http-port", socks5, "api.test", P, 1, 3, inner("/ok-on-http-port", A), HTTP),
    ("ok-eager", socks5, "api.test", P, 1, 3, inner("/ok-eager", A), SOCKS, b"\0", True),
    ("ok-http-on-socks-port", get, A, "/ok-http-on-socks-port", None, "", SOCKS),
    ("ok-inner-front", socks5, "api.test", P, 1, 3, inner("/ok-inner-front", E)),
    ("bind", socks5, "api.test", P, 2, 3, inner("/attack-bind", A)),
    ("bind-on-http-port", socks5, "api.test", P, 2, 3, inner("/attack-bind2", A), HTTP),
    ("udp-associate", socks5, "api.test", P, 3, 3, inner("/attack-udp", A)),
    ("udp-associate-ip", socks5, "0.0.0.0", 0, 3, 1),
    ("unknown-command", socks5, "api.test", P, 9, 3, inner("/attack-cmd9", A)),
    ("auth-only", socks5, "api.test", P, 1, 3, None, SOCKS, b"\x02"),
    ("evil", socks5, "evil.test", P, 1, 3, inner("/attack-s1", E)),
    ("evil-upper-dot", socks5, "EVIL.TEST.", P, 1, 3, inner("/attack-s2", E)),
    ("evil-eager", socks5, "evil.test", P, 1, 3, inner("/attack-s3", E), SOCKS, b"\0", True),
    ("evil-ip4", socks5, "127.0.0.2", P, 1, 1, inner("/attack-s4", E)),
    ("evil-ip6-mapped", socks5, "::ffff:127.0.0.2", P, 1, 4, inner("/attack-s5", E)),
    ("evil-ip-as-name", socks5, "127.0.0.2", P, 1, 3, inner("/attack-s6", E)),
    ("bad-atyp", socks5, "api.test", P, 1, 9),
    ("empty-name", socks5, "", P, 1, 3, inner("/attack-s7", A)),
    ("socks4", socks4, "127.0.0.2", P, None, inner("/attack-s8", E)),
    ("socks4-allowed-address", socks4, "127.0.0.1", P, None, inner("/attack-s9", A)),
    ("socks4a", socks4, "0.0.0.1", P, "api.test", inner("/attack-s10", A)),
])
)PY";
  auto r = run_py(fx, settings, pyvar("P", a.port()) + "PS = ':%d' % P\n", body);
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  auto res = parse_results(r.out);
  for (const char* l : {"ok", "ok-on-http-port", "ok-eager", "ok-inner-front"})
    EXPECT_TRUE(is(res, l, {"socks-00 200 - A"}));
  EXPECT_TRUE(is(res, "ok-http-on-socks-port", {"200 - A"}));
  for (const char* l : {"bind", "bind-on-http-port", "udp-associate", "udp-associate-ip", "unknown-command"})
    EXPECT_TRUE(is(res, l, {"socks-07"}));
  EXPECT_TRUE(is(res, "auth-only", {"greet-05ff"}));
  for (const char* l : {"evil", "evil-upper-dot", "evil-eager", "evil-ip4", "evil-ip6-mapped", "evil-ip-as-name",
                        "empty-name"})
    EXPECT_TRUE(is(res, l, {"socks-02"}));
  EXPECT_TRUE(is(res, "bad-atyp", {"socks-08"}));
  for (const char* l : {"socks4", "socks4-allowed-address", "socks4a"}) EXPECT_TRUE(is(res, l, {"socks4-5b"}));
  expect_never_reached(srv, "/attack");
  EXPECT_EQ(b.connections(), 0) << b.log();
}

// The proxy's listeners live in the sandbox's network namespace: from the
// host (another local user, say) there is nothing at their ports. With
// ports nobody on the host uses, a connection is refused outright; at the
// default ports, whatever answers (if anything) is not this sandbox's
// proxy: it cannot name api.test, which only that proxy's rules map.
TEST(NetEscape, TheProxyIsNotReachableFromTheHost) {
  SandboxFixture fx_default, fx_custom;
  Server a("A", "127.0.0.1");
  ASSERT_TRUE(a.ok());
  uint16_t hp = free_port(), sp = free_port();
  ASSERT_TRUE(hp && sp && hp != sp);
  std::string api = "api.test:" + std::to_string(a.port());
  json base = {{"allowedDomains", {api}},
               {"hosts", {{"api.test", "127.0.0.1"}}},
               {"allowPrivateAddresses", {"127.0.0.1/32"}}};
  json custom = base;
  custom["httpProxyPort"] = hp;
  custom["socksProxyPort"] = sp;
  auto script = [&](const std::string& tag) {
    return "curl -sS -m 5 -o /dev/null -w 'before %{http_code}\\n' http://" + api + "/ok-" + tag +
           "-before\ntouch ready\ni=0; while [ ! -e go ] && [ $i -lt 300 ]; do sleep 0.05; i=$((i+1)); done\n"
           "curl -sS -m 5 -o /dev/null -w 'after %{http_code}\\n' http://" + api + "/ok-" + tag + "-after\n";
  };
  RunResult r1, r2;
  std::string s1 = net_settings(fx_default, base), s2 = net_settings(fx_custom, custom);
  std::thread t1([&] { r1 = fx_default.sh(script("default"), {"--settings", s1}, proxy_free_options()); });
  std::thread t2([&] { r2 = fx_custom.sh(script("custom"), {"--settings", s2}, proxy_free_options()); });
  bool up1 = wait_for_file(fx_default.ws + "/ready", 15000), up2 = wait_for_file(fx_custom.ws + "/ready", 15000);

  std::string hip = host_ipv4();
  std::map<std::string, int> refused_here;
  for (uint16_t port : {hp, sp}) {
    for (const std::string& ip : std::vector<std::string>{"127.0.0.1", "::1", hip}) {
      if (ip.empty()) continue;
      refused_here[ip + " " + std::to_string(port)] = host_connect(ip, port);
    }
  }
  std::string req = "GET http://" + api + "/attack-from-host HTTP/1.1\r\nHost: " + api + "\r\nConnection: close\r\n\r\n";
  std::string socks = std::string("\x05\x01\x00\x05\x01\x00\x03\x08" "api.test", 16) +
                      std::string{static_cast<char>(a.port() >> 8), static_cast<char>(a.port() & 0xff)} +
                      "GET /attack-from-host-socks HTTP/1.1\r\nHost: x\r\n\r\n";
  std::map<std::string, std::string> answers;
  for (uint16_t port : {3128, 1080}) {
    answers["http " + std::to_string(port)] = host_talk("127.0.0.1", port, req);
    answers["socks " + std::to_string(port)] = host_talk("127.0.0.1", port, socks);
  }
  fx_default.tree.write("ws/go", "");
  fx_custom.tree.write("ws/go", "");
  t1.join();
  t2.join();

  ASSERT_TRUE(up1 && up2) << r1.err << r2.err;
  for (const auto& [where, e] : refused_here)
    EXPECT_NE(e, 0) << "the host connected to " << where << ", a sandbox's proxy port";
  for (const auto& [what, ans] : answers) {
    EXPECT_TRUE(lacks(ans, "airlock:")) << what;
    EXPECT_TRUE(lacks(ans, "served-by=A")) << what;
  }
  EXPECT_FALSE(a.saw("/attack")) << a.log();
  // Both proxies worked for their own sandboxes, before and after.
  EXPECT_EQ(r1.code, 0) << r1.err;
  EXPECT_EQ(r2.code, 0) << r2.err;
  auto res1 = parse_results(r1.out), res2 = parse_results(r2.out);
  for (auto* res : {&res1, &res2}) {
    EXPECT_EQ((*res)["before"], "200");
    EXPECT_EQ((*res)["after"], "200");
  }
}

// One sandbox cannot use another's proxy (or its rules): each has its own
// loopback, so the other's proxy port is empty there.
TEST(NetEscape, ASandboxCannotReachAnothersProxy) {
  SandboxFixture fx1, fx2, fx3;
  Server a("A", "127.0.0.1");
  ASSERT_TRUE(a.ok());
  uint16_t hp = free_port(), sp = free_port();
  ASSERT_TRUE(hp && sp && hp != sp);
  std::string api = "api.test:" + std::to_string(a.port());
  json owner = {{"allowedDomains", {api}},
                {"hosts", {{"api.test", "127.0.0.1"}}},
                {"allowPrivateAddresses", {"127.0.0.1/32"}},
                {"httpProxyPort", hp},
                {"socksProxyPort", sp}};
  std::string s1 = net_settings(fx1, owner);
  RunResult r1;
  std::thread t1([&] {
    r1 = fx1.sh("curl -sS -m 5 -o /dev/null -w 'before %{http_code}\\n' http://" + api +
                    "/ok-owner-before\ntouch ready\ni=0; while [ ! -e go ] && [ $i -lt 300 ]; do sleep 0.05; "
                    "i=$((i+1)); done\ncurl -sS -m 5 -o /dev/null -w 'after %{http_code}\\n' http://" +
                    api + "/ok-owner-after\n",
                {"--settings", s1}, proxy_free_options());
  });
  bool up = wait_for_file(fx1.ws + "/ready", 15000);

  // A neighbour with a proxy of its own (other rules), and one without.
  std::string s2 = net_settings(fx2, {{"allowedDomains", {"other.test"}}});
  std::string body = R"PY(
run_all([
    ("http-other-proxy", get, "api.test:%d" % P, "/attack-1", None, "", HP),
    ("socks-other-proxy", socks5, "api.test", P, 1, 3, inner("/attack-2", "x"), SP),
    ("own-proxy", get, "api.test:%d" % P, "/attack-3"),
    ("own-socks", socks5, "api.test", P, 1, 3, inner("/attack-4", "x")),
], 1)
)PY";
  auto r2 = run_py(fx2, s2, pyvar("P", a.port()) + pyvar("HP", hp) + pyvar("SP", sp), body);
  auto r3 = fx3.sh(probe_script({{"http", "connect-inet 127.0.0.1 " + std::to_string(hp)},
                                 {"socks", "connect-inet 127.0.0.1 " + std::to_string(sp)}}),
                   {}, proxy_free_options());
  fx1.tree.write("ws/go", "");
  t1.join();

  ASSERT_TRUE(up) << r1.err;
  ASSERT_EQ(r2.code, 0) << r2.err << r2.out;
  auto res2 = parse_results(r2.out);
  EXPECT_TRUE(is(res2, "http-other-proxy", {"exc:ConnectionRefusedError"}));
  EXPECT_TRUE(is(res2, "socks-other-proxy", {"exc:ConnectionRefusedError"}));
  EXPECT_TRUE(is(res2, "own-proxy", {kDeniedByName}));
  EXPECT_TRUE(is(res2, "own-socks", {"socks-02"}));
  ASSERT_EQ(r3.code, 0) << r3.err;
  auto res3 = parse_results(r3.out);
  EXPECT_TRUE(refused(res3, "http", {"ECONNREFUSED"}));
  EXPECT_TRUE(refused(res3, "socks", {"ECONNREFUSED"}));
  EXPECT_FALSE(a.saw("/attack")) << a.log();
  EXPECT_EQ(r1.code, 0) << r1.err;
  auto res1 = parse_results(r1.out);
  EXPECT_EQ(res1["before"], "200");
  EXPECT_EQ(res1["after"], "200");
}

// A flood of idle connections, clients that send half a header (or half a
// SOCKS greeting) and stall, one that trickles a byte at a time, and a
// burst of refused requests: none of it delays an honest request.
TEST(NetEscape, FloodsAndSlowClientsDoNotBlockOthers) {
  SandboxFixture fx;
  auto srv = servers_on_one_port({{"A", "127.0.0.1"}, {"B", "127.0.0.2"}});
  ASSERT_EQ(srv.size(), 2u);
  std::string ps = ":" + std::to_string(srv[0]->port());
  auto settings = api_and_evil_settings(fx, srv[0]->port(), "127.0.0.1/32");
  std::string body = R"PY(
import resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft < 2048:
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(2048, hard), hard))
A = "api.test" + PS
E = "evil.test" + PS
held = []
def hold(port, data=b""):
    s = conn(port)
    if data:
        s.sendall(data)
    held.append(s)
for i in range(150):
    hold(HTTP)
for i in range(50):
    hold(SOCKS)
for i in range(40):
    hold(HTTP, ("GET http://%s/slow HTTP/1.1\r\nHost: api" % A).encode())
for i in range(20):
    hold(HTTP, b"CONNECT api.te")
for i in range(20):
    hold(SOCKS, b"\x05\x02")
for i in range(20):
    hold(SOCKS, b"\x05\x01\x00\x05\x01\x00\x03\x08api.t")
stop = False
def trickle():
    s = conn(HTTP)
    for ch in ("GET http://%s/trickle HTTP/1.1\r\nHost: %s\r\n" % (A, A)).encode():
        if stop:
            break
        s.send(bytes([ch]))
        time.sleep(0.02)
    held.append(s)
t = threading.Thread(target=trickle)
t.start()
print("held", len(held), flush=True)
t0 = time.time()
print("during", get(A, "/ok-during"), flush=True)
print("during-ms", int((time.time() - t0) * 1000), flush=True)
with ThreadPoolExecutor(64) as ex:
    results = list(ex.map(lambda i: get(E, "/attack-burst-%d" % i), range(300)))
print("burst", "%d/%d" % (sum(r == "403 blocked-by-allowlist -" for r in results), len(results)), flush=True)
t0 = time.time()
print("after", get(A, "/ok-after"), flush=True)
print("after-ms", int((time.time() - t0) * 1000), flush=True)
stop = True
t.join()
for s in held:
    s.close()
)PY";
  auto start = std::chrono::steady_clock::now();
  auto r = run_py(fx, settings, "", "PS = '" + ps + "'\n" + body);
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  auto res = parse_results(r.out);
  EXPECT_EQ(res["held"], "300");
  EXPECT_EQ(res["during"], "200 - A");
  EXPECT_LT(std::atoi(res["during-ms"].c_str()), 2000) << "an honest request waited behind stalled clients";
  EXPECT_EQ(res["burst"], "300/300");
  EXPECT_EQ(res["after"], "200 - A");
  EXPECT_LT(std::atoi(res["after-ms"].c_str()), 2000);
  EXPECT_LT(secs, 30);
  expect_never_reached(srv, "/attack");
  EXPECT_FALSE(srv[0]->saw("/slow")) << "half a header was forwarded";
  EXPECT_EQ(srv[1]->connections(), 0) << srv[1]->log();
}

// Behind a parent proxy (a corporate one, say) the rules still decide:
// nothing refused is passed on to the parent, and names are still checked
// by address when this machine can resolve them.
TEST(NetEscape, AParentProxyGetsOnlyAllowedRequests) {
  SandboxFixture fx;
  Server parent("PARENT", "127.0.0.1");
  ASSERT_TRUE(parent.ok());
  auto settings = net_settings(
      fx, {{"allowedDomains", {"api.test:8080", "lo.test:8080"}},
           {"hosts", {{"api.test", "93.184.215.14"}, {"evil.test", "93.184.215.15"}, {"lo.test", "127.0.0.2"}}},
           {"parentProxy", {{"http", "http://127.0.0.1:" + std::to_string(parent.port())}}}});
  std::string body = R"PY(
A = "api.test:8080"
E = "evil.test:8080"
def keepalive_evil():
    s = conn()
    s.sendall(("GET http://%s/ok-ka HTTP/1.1\r\nHost: %s\r\n\r\nGET http://%s/attack-ka HTTP/1.1\r\nHost: %s\r\n\r\n" % (A, A, E, E)).encode())
    return summary(read_all(s))
run_all([
    ("ok", get, A, "/ok-parent"),
    ("evil", get, E, "/attack-1"),
    ("parent-itself", get, "127.0.0.1:%d" % PP, "/attack-2"),
    ("private", get, "lo.test:8080", "/attack-3"),
    ("front", get, A, "/attack-4", E),
    ("connect-evil", connect_get, "evil.test:443", "/attack-5"),
    ("connect-parent", connect_get, "127.0.0.1:%d" % PP, "/attack-6"),
    ("socks-evil", socks5, "evil.test", 443, 1, 3, inner("/attack-7", E)),
    ("keepalive", keepalive_evil),
])
)PY";
  auto r = run_py(fx, settings, pyvar("PP", parent.port()), body);
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  auto res = parse_results(r.out);
  EXPECT_TRUE(is(res, "ok", {"200 - PARENT"}));
  for (const char* l : {"evil", "parent-itself", "connect-evil", "connect-parent"}) EXPECT_TRUE(is(res, l, {kDeniedByName}));
  EXPECT_TRUE(is(res, "private", {kDeniedByAddress}));
  EXPECT_TRUE(refused_http(res, "front", {"400"}));
  EXPECT_TRUE(is(res, "socks-evil", {"socks-02"}));
  EXPECT_TRUE(is(res, "keepalive", {"200 - PARENT," + kDeniedByName}));
  EXPECT_FALSE(parent.saw("/attack")) << parent.log();
  std::vector<Seen> store;
  const Seen* s = parent.find("http://api.test:8080/ok-parent", store);
  ASSERT_NE(s, nullptr) << parent.log();
  EXPECT_EQ(s->host, "api.test:8080");
}

// More connections than the proxy takes at once: the ones over the limit
// are turned away, and once the flood ends the proxy serves again.
TEST(NetEscape, AFloodBeyondTheSessionLimitPasses) {
  SandboxFixture fx;
  Server a("A", "127.0.0.1");
  ASSERT_TRUE(a.ok());
  std::string api = "api.test:" + std::to_string(a.port());
  auto settings = net_settings(fx, {{"allowedDomains", {api}},
                                    {"hosts", {{"api.test", "127.0.0.1"}}},
                                    {"allowPrivateAddresses", {"127.0.0.1/32"}}});
  std::string body = R"PY(
import resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(12000, hard), hard))
held = []
try:
    for i in range(5000):
        held.append(conn(HTTP if i % 2 == 0 else SOCKS, 2))
except OSError as e:
    pass
print("opened", "many" if len(held) >= 4200 else len(held), flush=True)
for s in held:
    s.close()
held = []
deadline = time.time() + 5
r = "none"
while time.time() < deadline:
    try:
        r = get(A, "/ok-after-flood")
    except OSError:
        r = "refused"
    if r == "200 - A":
        break
    time.sleep(0.1)
print("after", r, flush=True)
print("after-s", socks5("api.test", P, 1, 3, inner("/ok-after-flood-s", A)), flush=True)
)PY";
  auto r = run_py(fx, settings, pyvar("P", a.port()) + "A = 'api.test:%d' % P\n", body);
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  auto res = parse_results(r.out);
  EXPECT_EQ(res["opened"], "many");
  EXPECT_TRUE(is(res, "after", {"200 - A"}));
  EXPECT_TRUE(is(res, "after-s", {"socks-00 200 - A"}));
}

// The names and reasons the proxy refused are shown to the user at exit:
// text chosen inside the sandbox must not reach the terminal as control
// sequences, neither C0 (ESC, BEL) nor C1 (CSI, OSC: 0x80-0x9f, raw or
// UTF-8 encoded, which xterm and others obey).
TEST(NetEscape, RefusalSummaryCarriesNoTerminalControls) {
  SandboxFixture fx;
  auto settings = net_settings(fx, {{"allowedDomains", {"api.test"}}});
  std::string body = R"PY(
run_all([
    ("s-esc", socks5, b"\x1b]0;PWNED\x07x.test", 443),
    ("s-c1-utf8", socks5, b"\xc2\x9b" b"31mC1UTF8.test", 443),
    ("s-osc-utf8", socks5, b"\xc2\x9d" b"52;c;cHduZWQ=\xc2\x9c.test", 443),
    ("s-c1-raw", socks5, b"\x9b" b"31mC1RAW.test", 443),
    ("h-host-c1", raw, b"GET http://api.test/ HTTP/1.1\r\nHost: \xc2\x9b" b"31mHOST\r\nConnection: close\r\n\r\n"),
], 1)
)PY";
  auto r = run_py(fx, settings, "", body);
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  auto res = parse_results(r.out);
  for (const char* l : {"s-esc", "s-c1-utf8", "s-osc-utf8", "s-c1-raw"}) EXPECT_TRUE(is(res, l, {"socks-02"}));
  EXPECT_TRUE(refused_http(res, "h-host-c1", {"400"}));
  ASSERT_TRUE(contains(r.err, "refused network access"));
  // C0 and DEL anywhere (but newlines); C1 raw (a byte 0x80-0x9f that is
  // not the continuation of a UTF-8 lead byte) or UTF-8 encoded (C2 80-9F).
  std::string c0, c1_raw, c1_utf8;
  for (size_t i = 0; i < r.err.size(); ++i) {
    auto b = static_cast<unsigned char>(r.err[i]);
    auto prev = i > 0 ? static_cast<unsigned char>(r.err[i - 1]) : 0;
    char hex[8];
    std::snprintf(hex, sizeof hex, "%02x ", b);
    if ((b < 0x20 && b != '\n') || b == 0x7f) c0 += hex;
    else if (b >= 0x80 && b <= 0x9f && prev == 0xc2) c1_utf8 += hex;
    else if (b >= 0x80 && b <= 0x9f && !(prev >= 0xc2 || (prev >= 0x80 && prev <= 0xbf))) c1_raw += hex;
  }
  EXPECT_EQ(c0, "") << "C0 control bytes reached the terminal:\n" << r.err;
  EXPECT_EQ(c1_raw, "") << "raw C1 control bytes (8-bit CSI/OSC) reached the terminal:\n" << r.err;
  EXPECT_EQ(c1_utf8, "") << "UTF-8 encoded C1 controls (U+0080-U+009F) reached the terminal:\n" << r.err;
}

// Garbage of every kind on both ports: the proxy answers or hangs up, never
// dies, and an honest request still works in the same run. A header over
// 16 KiB gets 431.
TEST(NetEscape, MalformedInputNeverCrashesTheProxy) {
  SandboxFixture fx;
  Server a("A", "127.0.0.1");
  ASSERT_TRUE(a.ok());
  std::string api = "api.test:" + std::to_string(a.port());
  auto settings = net_settings(fx, {{"allowedDomains", {api}},
                                    {"hosts", {{"api.test", "127.0.0.1"}}},
                                    {"allowPrivateAddresses", {"127.0.0.1/32"}}});
  std::string body = R"PY(
rng = random.Random(20240611)
def junk(data, port=HTTP):
    if isinstance(data, str):
        data = data.encode("latin-1")
    s = conn(port, 3)
    try:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    r = read_all(s, 3)
    s.close()
    if r.startswith(b"HTTP/"):
        return summary(r)
    timeout = r.endswith(b"\0TIMEOUT")
    return "bytes-%d%s" % (len(r) - (8 if timeout else 0), " timeout" if timeout else "")

tests = []
firsts = [0x00, 0x04, 0x05, 0x16, ord("G"), ord("C"), 0xff, None]
for i in range(48):
    n = rng.randint(1, 8192)
    data = bytes(rng.getrandbits(8) for _ in range(n))
    f = firsts[i % len(firsts)]
    if f is not None:
        data = bytes([f]) + data[1:]
    tests.append(("random-%d" % i, junk, data, HTTP if i % 2 == 0 else SOCKS))
H = "GET http://%s/ HTTP/1.1\r\nHost: %s\r\n" % (A, A)
tests += [
    ("big-header", junk, H + "X-Big: " + "a" * 20000 + "\r\n\r\n"),
    ("many-headers", junk, H + "".join("X-H-%d: v\r\n" % i for i in range(3000)) + "\r\n"),
    ("big-url", junk, "GET http://%s/%s HTTP/1.1\r\nHost: %s\r\n\r\n" % (A, "a" * 20000, A)),
    ("big-header-socks-port", junk, H + "X-Big: " + "a" * 20000 + "\r\n\r\n", SOCKS),
    ("nul-in-header", junk, H + "X-Nul: a\0b\r\n\r\n"),
    ("no-colon", junk, H + "Broken header line\r\n\r\n"),
    ("bad-version", junk, "GET http://%s/ HTTP/9.9\r\nHost: %s\r\n\r\n" % (A, A)),
    ("no-version", junk, "GET http://%s/\r\n\r\n" % A),
    ("bad-method", junk, "G\x01T http://%s/ HTTP/1.1\r\n\r\n" % A),
    ("lf-only", junk, "GET http://%s/ HTTP/1.1\nHost: %s\n\n" % (A, A)),
    ("connect-no-port", junk, "CONNECT api.test HTTP/1.1\r\n\r\n"),
    ("connect-unclosed", junk, "CONNECT [::1 HTTP/1.1\r\n\r\n"),
    ("connect-no-host", junk, "CONNECT :443 HTTP/1.1\r\n\r\n"),
    ("connect-big-port", junk, "CONNECT api.test:99999 HTTP/1.1\r\n\r\n"),
    ("connect-negative-port", junk, "CONNECT api.test:-1 HTTP/1.1\r\n\r\n"),
    ("cl-overflow", junk, H + "Content-Length: 99999999999999999999999\r\n\r\n"),
    ("cl-negative", junk, H + "Content-Length: -1\r\n\r\n"),
    ("chunk-overflow", junk, "POST http://%s/junk-chunk HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffffff\r\nabc\r\n" % (A, A)),
    ("chunk-junk", junk, "POST http://%s/junk-chunk2 HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\nzz;;\r\n\r\n" % (A, A)),
    ("partial-body", junk, "POST http://%s/junk-partial HTTP/1.1\r\nHost: %s\r\nContent-Length: 100\r\n\r\nabc" % (A, A)),
    ("tls-hello", junk, b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(range(160))),
    ("h2-preface", junk, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    ("crlf-flood", junk, "\r\n" * 20000),
    ("socks-no-methods", junk, b"\x05\x00", SOCKS),
    ("socks-empty-name", junk, b"\x05\x01\x00\x05\x01\x00\x03\x00\x00\x50", SOCKS),
    ("socks-long-name", junk, b"\x05\x01\x00\x05\x01\x00\x03\xff" + b"\xff" * 255 + b"\x00\x50", SOCKS),
    ("socks-bad-version", junk, b"\x05\x01\x00\x04\x01\x00\x01\x7f\x00\x00\x01\x00\x50", SOCKS),
    ("socks-truncated", junk, b"\x05\x01\x00\x05\x01\x00\x03", SOCKS),
    ("socks-255-methods", junk, b"\x05\xff" + b"\x01" * 10, SOCKS),
    ("socks4-truncated", junk, b"\x04\x01\x00", SOCKS),
]
run_all(tests, 16)
run_all([("mid", get, A, "/ok-mid")])
run_all([("after-" + l, get, A, "/ok-after") for l in ("1", "2")] + [("after-s", socks5, "api.test", P, 1, 3, inner("/ok-after-s", A))], 1)
)PY";
  auto r = run_py(fx, settings, pyvar("P", a.port()) + "A = 'api.test:%d' % P\n", body);
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  auto res = parse_results(r.out);
  EXPECT_TRUE(is(res, "big-header", {"431 bad-request -"}));
  EXPECT_TRUE(is(res, "many-headers", {"431 bad-request -"}));
  EXPECT_TRUE(is(res, "big-header-socks-port", {"431 bad-request -"}));
  EXPECT_TRUE(refused_http(res, "big-url", {"400", "414", "431"}));
  for (const char* l : {"nul-in-header", "no-colon", "bad-method", "connect-no-port", "connect-unclosed", "connect-no-host",
                        "connect-big-port", "connect-negative-port", "cl-overflow", "cl-negative", "tls-hello", "h2-preface"})
    EXPECT_TRUE(refused_http(res, l, {"400"}));
  // Every connection ended: answered or hung up on, none left hanging.
  for (const auto& [label, v] : res) EXPECT_TRUE(lacks(v, "timeout")) << label;
  EXPECT_TRUE(is(res, "mid", {"200 - A"}));
  EXPECT_TRUE(is(res, "after-1", {"200 - A"}));
  EXPECT_TRUE(is(res, "after-2", {"200 - A"}));
  EXPECT_TRUE(is(res, "after-s", {"socks-00 200 - A"}));
  EXPECT_TRUE(lacks(r.err, "proxy: ")) << "an error escaped a session";
}

// Every decision is one JSON line in the audit file (allowed and refused,
// each door), and refused hosts are summarised on stderr at exit.
TEST(NetEscape, AuditRecordsAllowsAndDenies) {
  SandboxFixture fx;
  Server a("A", "127.0.0.1");
  ASSERT_TRUE(a.ok());
  int p = a.port();
  std::string ps = ":" + std::to_string(p);
  auto settings = net_settings(fx, {{"allowedDomains", {"api.test" + ps, "lo.test" + ps}},
                                    {"hosts", {{"api.test", "127.0.0.1"}, {"evil.test", "127.0.0.2"}, {"lo.test", "127.0.0.2"}}},
                                    {"allowPrivateAddresses", {"127.0.0.1/32"}}});
  std::string audit = fx.tree.path("audit.jsonl");
  std::string body = R"PY(
A = "api.test" + PS
E = "evil.test" + PS
run_all([
    ("http-ok", get, A, "/audit-http?token=SECRETTOKEN"),
    ("connect-ok", connect_get, A, "/audit-connect"),
    ("socks-ok", socks5, "api.test", P, 1, 3, inner("/audit-socks", A)),
    ("http-deny", get, E, "/audit-deny"),
    ("connect-deny", connect_get, E, "/x"),
    ("socks-deny", socks5, "evil.test", P),
    ("socks-bind", socks5, "api.test", P, 2),
    ("http-address", get, "lo.test" + PS, "/x"),
    ("http-mismatch", get, A, "/x", E),
], 1)
)PY";
  auto r = run_py(fx, settings, pyvar("P", p) + "PS = ':%d' % P\n", body, {"--audit", audit});
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  auto res = parse_results(r.out);
  EXPECT_TRUE(is(res, "http-ok", {"200 - A"}));
  EXPECT_TRUE(is(res, "connect-ok", {"200 - -,200 - A"}));
  EXPECT_TRUE(is(res, "socks-ok", {"socks-00 200 - A"}));
  EXPECT_TRUE(is(res, "http-deny", {kDeniedByName}));
  EXPECT_TRUE(is(res, "http-address", {kDeniedByAddress}));

  std::string text = slurp(audit);
  ASSERT_FALSE(text.empty()) << "no audit file written";
  EXPECT_TRUE(lacks(text, "SECRETTOKEN")) << "a query string reached the audit file";
  std::vector<json> lines;
  std::istringstream in(text);
  std::set<std::string> sandboxes;
  for (std::string line; std::getline(in, line);) {
    json j;
    try {
      j = json::parse(line);
    } catch (const std::exception&) {
      ADD_FAILURE() << "not JSON: " << line;
      continue;
    }
    for (const char* k : {"time", "sandbox", "kind", "client", "host", "port", "address", "rule", "decision", "bytes_up",
                          "bytes_down", "duration_ms"})
      EXPECT_TRUE(j.contains(k)) << k << " missing in " << line;
    EXPECT_EQ(j.value("kind", ""), "network") << line;
    sandboxes.insert(j.value("sandbox", ""));
    lines.push_back(j);
  }
  EXPECT_EQ(sandboxes.size(), 1u);
  EXPECT_FALSE(sandboxes.count("")) << "audit lines without a sandbox id";
  auto find = [&](const std::string& client, const std::string& host, const std::string& decision) -> const json* {
    for (const auto& j : lines)
      if (j.value("client", "") == client && j.value("host", "") == host && j.value("decision", "") == decision) return &j;
    return nullptr;
  };
  auto dump = [&] { return text; };
  const json* h = find("http", "api.test", "allow");
  ASSERT_NE(h, nullptr) << dump();
  EXPECT_EQ(h->value("port", 0), p);
  EXPECT_EQ(h->value("method", ""), "GET");
  EXPECT_EQ(h->value("path", "").rfind("/audit-http", 0), 0u) << h->dump();
  EXPECT_EQ(h->value("address", ""), "127.0.0.1");
  EXPECT_GT(h->value("bytes_down", 0), 0);
  for (const char* client : {"connect", "socks"}) {
    const json* j = find(client, "api.test", "allow");
    ASSERT_NE(j, nullptr) << client << "\n" << dump();
    EXPECT_GT(j->value("bytes_up", 0), 0) << j->dump();
    EXPECT_GT(j->value("bytes_down", 0), 0) << j->dump();
  }
  for (const char* client : {"http", "connect", "socks"}) {
    const json* j = find(client, "evil.test", "deny");
    ASSERT_NE(j, nullptr) << client << "\n" << dump();
    EXPECT_FALSE(j->value("rule", "").empty()) << j->dump();
    EXPECT_EQ(j->value("port", 0), p);
  }
  const json* addr = find("http", "lo.test", "deny");
  ASSERT_NE(addr, nullptr) << dump();
  EXPECT_EQ(addr->value("address", ""), "127.0.0.2");
  bool bind_logged = false, mismatch_logged = false;
  for (const auto& j : lines) {
    if (j.value("decision", "") != "deny") continue;
    if (j.value("client", "") == "socks" && j.value("rule", "").find("CONNECT") != std::string::npos) bind_logged = true;
    if (j.value("client", "") == "http" && j.value("rule", "").find("Host") != std::string::npos) mismatch_logged = true;
  }
  EXPECT_TRUE(bind_logged) << "SOCKS BIND refused without an audit line\n" << dump();
  EXPECT_TRUE(mismatch_logged) << "a Host mismatch refused without an audit line\n" << dump();
  EXPECT_TRUE(contains(r.err, "airlock: refused network access to evil.test" + ps));
  EXPECT_TRUE(contains(r.err, "airlock: refused network access to lo.test" + ps));
}

}  // namespace
}  // namespace airlock::test
