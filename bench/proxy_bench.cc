// Egress proxy benchmark: a TCP server on the host's loopback, and the same
// client run up to four ways, side by side in one run:
//   direct   client and server on the host, no sandbox, no proxy
//   relay    client on the host, through a bare CONNECT relay on the host
//            (no sandbox): the cost of the extra hop alone, for reference
//   airlock  client inside `airlock run`, through airlock's proxy (CONNECT)
//   srt      client inside srt, through srt's proxy (CONNECT), when installed
//            (srt lets a sandboxed client reach host loopback when
//            "localhost" is on its allowedDomains; the client must send the
//            Proxy-Authorization that srt puts in HTTPS_PROXY)
// Metrics: bulk throughput of one tunnel, new connections per second with
// many clients at once, latency added to a new connection (p50/p99), and the
// airlock supervisor's memory while it holds many idle tunnels.
//
//   bench-proxy [--airlock PATH] [--srt "NODE CLI.js"] [--rounds N]
//               [--bulk-mib N] [--bulk-max-seconds S] [--rps-seconds S] [--conc N]
//               [--lat N] [--lat-max-seconds S] [--hold N] [--settle-ms MS]
//   bench-proxy client <direct|proxy|proxy=IP:PORT> TARGET MODE ARGS...  (what runs inside)
//   bench-proxy serve                                                   (the server alone)
// BENCH_VERBOSE=1 prints every run's figures on stderr as it goes. A runner
// too slow for the bulk size or the latency count in the time given stops
// early; its figures are then over what it did (and the output says so).
//
// The server speaks a two-command protocol: 'S' + 8-byte count: it sends
// that many bytes and closes; 'E': it echoes every byte after the 'E'.
// The client reads its proxy from HTTPS_PROXY (user:password@ becomes
// Proxy-Authorization, which srt needs).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

static void raise_nofile() {
  struct rlimit rl {};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

static bool read_exact(int fd, void* p, size_t n) {
  auto* c = static_cast<char*>(p);
  while (n) {
    ssize_t r = ::recv(fd, c, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    c += r, n -= static_cast<size_t>(r);
  }
  return true;
}

// ---------------------------------------------------------------- server

struct Server {
  struct Conn {
    int fd = -1;
    char hdr[9] = {};
    size_t have = 0;
    char mode = 0;          // 0 until known, 'S' or 'E'
    uint64_t left = 0;      // 'S': bytes still to send
    std::string pending;    // 'E': echo bytes not yet written
  };
  std::vector<int> listeners;
  uint16_t port = 0;
  std::vector<std::thread> threads;
  static inline char blob[1 << 20];

  bool start(int nthreads) {
    int s = listen_tcp("127.0.0.1", 0, SOCK_NONBLOCK, 4096, port);
    if (s < 0) return false;
    listeners.push_back(s);
    int one = 1;
    // The same port on ::1 too, in case a proxy resolves "localhost" there.
    int s6 = ::socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s6 >= 0) {
      setsockopt(s6, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
      setsockopt(s6, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      sockaddr_in6 b{};
      b.sin6_family = AF_INET6;
      b.sin6_addr = in6addr_loopback;
      b.sin6_port = htons(port);
      if (::bind(s6, reinterpret_cast<sockaddr*>(&b), sizeof b) == 0 && ::listen(s6, 4096) == 0) listeners.push_back(s6);
      else ::close(s6);
    }
    memset(blob, 'x', sizeof blob);
    for (int i = 0; i < nthreads; ++i) threads.emplace_back([this] { loop(); });
    for (auto& t : threads) t.detach();
    return true;
  }

  void loop() {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    for (int l : listeners) {
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLEXCLUSIVE;
      ev.data.ptr = nullptr;
      ev.data.u64 = static_cast<uint64_t>(l) << 1 | 1;  // odd: a listener
      epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
    }
    epoll_event evs[256];
    std::vector<char> buf(1 << 16);
    for (;;) {
      int n = epoll_wait(ep, evs, 256, -1);
      for (int i = 0; i < n; ++i) {
        if (evs[i].data.u64 & 1) {
          int l = static_cast<int>(evs[i].data.u64 >> 1);
          for (;;) {
            int c = accept4(l, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (c < 0) break;
            int one = 1;
            setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            auto* conn = new Conn;
            conn->fd = c;
            epoll_event ev{};
            ev.events = EPOLLIN;
            ev.data.ptr = conn;
            epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
          }
          continue;
        }
        auto* c = static_cast<Conn*>(evs[i].data.ptr);
        if (!serve(ep, c, buf)) {
          ::close(c->fd);
          delete c;
        }
      }
    }
  }

  static void want(int ep, Conn* c, uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.ptr = c;
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
  }

  // false: close the connection
  static bool serve(int ep, Conn* c, std::vector<char>& buf) {
    if (c->mode == 'S') return send_more(ep, c);
    if (c->mode == 'E' && !c->pending.empty()) {
      if (!flush(c)) return false;
      if (c->pending.empty()) want(ep, c, EPOLLIN);
      return true;
    }
    ssize_t r = ::recv(c->fd, buf.data(), buf.size(), 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return true;
    if (r <= 0) return false;
    size_t off = 0;
    if (!c->mode) {
      while (off < static_cast<size_t>(r) && c->have < 9) {
        c->hdr[c->have++] = buf[off++];
        if (c->hdr[0] == 'E') break;
      }
      if (c->hdr[0] == 'E') c->mode = 'E';
      else if (c->hdr[0] == 'S' && c->have == 9) {
        c->mode = 'S';
        memcpy(&c->left, c->hdr + 1, 8);
        want(ep, c, EPOLLOUT);
        return send_more(ep, c);
      } else if (c->hdr[0] != 'S') return false;
    }
    if (c->mode == 'E' && off < static_cast<size_t>(r)) {
      c->pending.append(buf.data() + off, static_cast<size_t>(r) - off);
      if (!flush(c)) return false;
      if (!c->pending.empty()) want(ep, c, EPOLLOUT);
    }
    return true;
  }

  static bool flush(Conn* c) {
    while (!c->pending.empty()) {
      ssize_t w = ::send(c->fd, c->pending.data(), c->pending.size(), MSG_NOSIGNAL);
      if (w < 0 && errno == EAGAIN) return true;
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return false;
      c->pending.erase(0, static_cast<size_t>(w));
    }
    return true;
  }

  static bool send_more(int, Conn* c) {
    while (c->left) {
      size_t k = std::min<uint64_t>(c->left, sizeof blob);
      ssize_t w = ::send(c->fd, blob, k, MSG_NOSIGNAL);
      if (w < 0 && errno == EAGAIN) return true;
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return false;
      c->left -= static_cast<uint64_t>(w);
    }
    return false;  // all sent: close (the client reads to EOF)
  }
};


// ---------------------------------------------------------------- reference relay

// About the least a CONNECT proxy on the host can do, the way airlock's
// does it: one thread, one epoll loop; read the request, dial the server
// without blocking, answer 200, then splice both ways through a pipe each
// (1 MiB). No sandbox, no rules, no Asio. What it costs next to direct is
// the price of the extra hop itself; what airlock costs beyond it is
// airlock's own.
struct Relay {
  struct Dir {
    int from = -1, to = -1, pr = -1, pw = -1;
    size_t queued = 0;  // bytes in the pipe
    bool eof = false, done = false;
  };
  struct Tunnel {
    int c = -1, u = -1;
    int state = 0;  // 0 reading the request, 1 dialling, 2 tunnelling, 3 closed
    std::string req;
    Dir up, down;  // client -> server, server -> client
  };
  uint16_t port = 0;
  sockaddr_in upstream{};
  int ep = -1;

  bool start(uint16_t server_port) {
    int l = listen_tcp("127.0.0.1", 0, SOCK_NONBLOCK, 4096, port);
    if (l < 0) return false;
    upstream.sin_family = AF_INET;
    upstream.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    upstream.sin_port = htons(server_port);
    ep = epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = 0;
    epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
    std::thread([this, l] { loop(l); }).detach();
    return true;
  }

  // Events: the tunnel's address, low bit 1 for the server side.
  void watch(Tunnel* t, bool server_side, bool add) {
    int fd = server_side ? t->u : t->c;
    uint32_t e = 0;
    if (t->state == 0 && !server_side) e = EPOLLIN;
    if (t->state == 1 && server_side) e = EPOLLOUT;
    if (t->state == 2) {
      Dir& rd = server_side ? t->down : t->up;  // this side reads for rd
      Dir& wr = server_side ? t->up : t->down;  // and writes for wr
      if (!rd.eof && rd.queued == 0) e |= EPOLLIN;
      if (wr.queued) e |= EPOLLOUT;
    }
    epoll_event ev{};
    ev.events = e;
    ev.data.u64 = reinterpret_cast<uint64_t>(t) | (server_side ? 1 : 0);
    epoll_ctl(ep, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev);
  }

  static bool make_pipe(Dir& d) {
    int p[2];
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) return false;
    fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
    d.pr = p[0], d.pw = p[1];
    return true;
  }

  // Moves what it can; false on an error.
  static bool pump(Dir& d) {
    for (;;) {
      if (d.queued) {
        ssize_t m = splice(d.pr, nullptr, d.to, nullptr, d.queued, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (m < 0) return errno == EAGAIN;
        d.queued -= static_cast<size_t>(m);
        if (d.queued) return true;  // the receiver is full
      }
      if (d.eof) {
        if (!d.done) ::shutdown(d.to, SHUT_WR);
        d.done = true;
        return true;
      }
      ssize_t n = splice(d.from, nullptr, d.pw, nullptr, 1 << 20, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n < 0) return errno == EAGAIN;
      if (n == 0) d.eof = true;
      d.queued += static_cast<size_t>(n);
    }
  }

  static void close_tunnel(Tunnel* t) {
    for (int fd : {t->c, t->u, t->up.pr, t->up.pw, t->down.pr, t->down.pw})
      if (fd >= 0) ::close(fd);
    t->state = 3;
  }

  void loop(int l) {
    epoll_event evs[256];
    std::vector<Tunnel*> dead;  // freed after the batch, which may name them again
    for (;;) {
      int n = epoll_wait(ep, evs, 256, -1);
      for (Tunnel* t : dead) delete t;
      dead.clear();
      for (int i = 0; i < n; ++i) {
        if (evs[i].data.u64 == 0) {
          for (;;) {
            int c = accept4(l, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (c < 0) break;
            int one = 1;
            setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            auto* t = new Tunnel;
            t->c = c;
            watch(t, false, true);
          }
          continue;
        }
        auto* t = reinterpret_cast<Tunnel*>(evs[i].data.u64 & ~uint64_t(1));
        if (t->state == 3) continue;
        if (!step(t)) {
          close_tunnel(t);
          dead.push_back(t);
        }
      }
    }
  }

  bool step(Tunnel* t) {
    if (t->state == 0) {
      char b[1024];
      ssize_t r = ::recv(t->c, b, sizeof b, 0);
      if (r < 0) return errno == EAGAIN;
      if (r == 0) return false;
      t->req.append(b, static_cast<size_t>(r));
      if (t->req.find("\r\n\r\n") == std::string::npos) return true;
      if (t->req.rfind("CONNECT ", 0) != 0) return false;
      t->u = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      int one = 1;
      setsockopt(t->u, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (::connect(t->u, reinterpret_cast<sockaddr*>(&upstream), sizeof upstream) != 0 && errno != EINPROGRESS) return false;
      t->state = 1;
      watch(t, false, false);
      watch(t, true, true);
      return true;
    }
    if (t->state == 1) {
      int e = 0;
      socklen_t len = sizeof e;
      getsockopt(t->u, SOL_SOCKET, SO_ERROR, &e, &len);
      static const char ok[] = "HTTP/1.1 200 Connection Established\r\n\r\n";
      if (e || !write_all(t->c, ok, sizeof ok - 1)) return false;
      t->up.from = t->c, t->up.to = t->u, t->down.from = t->u, t->down.to = t->c;
      if (!make_pipe(t->up) || !make_pipe(t->down)) return false;
      t->state = 2;
    }
    if (!pump(t->up) || !pump(t->down)) return false;
    if (t->up.done && t->down.done) return false;
    watch(t, false, false);
    watch(t, true, false);
    return true;
  }
};

// ---------------------------------------------------------------- client

struct Dialer {
  bool via_proxy = false;
  std::string target;   // host:port, as sent in CONNECT (direct: a numeric IPv4 host)
  sockaddr_in addr{};   // where to connect: the proxy, or the target
  std::string auth;     // "Proxy-Authorization: Basic ...\r\n" or ""
  double timeout_s = 10;  // for each connect, send and receive

  // how: "direct", "proxy" (the one HTTPS_PROXY names) or "proxy=IP:PORT"
  std::string setup(const std::string& how, const std::string& tgt) {
    via_proxy = how != "direct";
    target = tgt;
    if (!via_proxy) return parse_hostport(tgt, addr) ? "" : "bad target " + tgt;
    return proxy_address(how, addr, auth);
  }

  // A connected socket to the target (through the proxy when asked), or -1.
  int open(std::string* why = nullptr) const {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      if (why) *why = std::string("socket: ") + strerror(errno);
      return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    timeval tv{static_cast<time_t>(timeout_s), static_cast<suseconds_t>((timeout_s - std::floor(timeout_s)) * 1e6)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
      if (why) *why = std::string("connect: ") + strerror(errno);
      ::close(fd);
      return -1;
    }
    if (!via_proxy) return fd;
    std::string req = "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n" + auth + "\r\n";
    if (!write_all(fd, req.data(), req.size())) {
      if (why) *why = "write CONNECT failed";
      ::close(fd);
      return -1;
    }
    // The server never speaks first: nothing past the header can arrive.
    std::string resp;
    char b[512];
    while (resp.find("\r\n\r\n") == std::string::npos) {
      ssize_t r = ::recv(fd, b, sizeof b, 0);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        if (why) *why = "proxy closed during CONNECT";
        ::close(fd);
        return -1;
      }
      resp.append(b, static_cast<size_t>(r));
    }
    if (resp.compare(0, 9, "HTTP/1.1 ") != 0 && resp.compare(0, 9, "HTTP/1.0 ") != 0) resp = "?? " + resp;
    if (resp.compare(9, 3, "200") != 0) {
      if (why) *why = "CONNECT answered: " + resp.substr(0, resp.find("\r\n"));
      ::close(fd);
      return -1;
    }
    return fd;
  }
};

static int client_main(int argc, char** argv) {
  // client <direct|proxy> TARGET MODE ARGS...
  if (argc < 5) {
    fprintf(stderr, "usage: client <direct|proxy|proxy=IP:PORT> TARGET MODE ARGS...\n");
    return 2;
  }
  raise_nofile();
  signal(SIGPIPE, SIG_IGN);
  Dialer d;
  if (auto e = d.setup(argv[2], argv[3]); !e.empty()) {
    fprintf(stderr, "client: %s\n", e.c_str());
    return 1;
  }
  std::string mode = argv[4];
  std::string why;
  if (d.via_proxy) wait_for_proxy(d.addr);
  if (mode == "bulk") {  // bulk BYTES MAX_SECONDS: stops early (and says so) at MAX_SECONDS
    uint64_t n = std::stoull(argv[5]);
    double cap = argc > 6 ? atof(argv[6]) : 1e9;
    int fd = d.open(&why);
    if (fd < 0) {
      fprintf(stderr, "client: %s\n", why.c_str());
      return 1;
    }
    auto t0 = Clock::now();
    char hdr[9] = {'S'};
    memcpy(hdr + 1, &n, 8);
    write_all(fd, hdr, 9);
    static char buf[1 << 20];
    uint64_t got = 0;
    bool capped = false;
    for (;;) {
      ssize_t r = ::recv(fd, buf, sizeof buf, 0);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      got += static_cast<uint64_t>(r);
      if (secs(Clock::now() - t0) > cap) {
        capped = got < n;
        break;
      }
    }
    double s = secs(Clock::now() - t0);
    ::close(fd);
    if (got != n && !capped) {
      fprintf(stderr, "client: got %llu of %llu bytes\n", (unsigned long long)got, (unsigned long long)n);
      return 1;
    }
    printf("bulk %llu %.6f %d\n", (unsigned long long)got, s, capped ? 1 : 0);
    return 0;
  }
  if (mode == "rps") {  // rps SECONDS CONC PAYLOAD
    double dur = atof(argv[5]);
    int conc = atoi(argv[6]);
    size_t payload = static_cast<size_t>(atoi(argv[7]));
    d.timeout_s = 2;  // a connection stuck past the window counts as failed
    std::atomic<long> ok{0}, bad{0};
    std::atomic<bool> go{false};
    std::string first_error;
    std::atomic<bool> have_error{false};
    Clock::time_point end;
    std::vector<std::thread> ts;
    for (int i = 0; i < conc; ++i)
      ts.emplace_back([&] {
        std::string req(payload + 1, 'q'), resp(payload, 0);
        req[0] = 'E';
        while (!go.load()) std::this_thread::yield();
        while (Clock::now() < end) {
          std::string w;
          int fd = d.open(&w);
          bool good = fd >= 0 && write_all(fd, req.data(), req.size()) && read_exact(fd, resp.data(), payload);
          if (fd >= 0) ::close(fd);
          if (good && Clock::now() > end) break;  // finished after the window: not counted
          if (good) {
            ok.fetch_add(1, std::memory_order_relaxed);
          } else {
            bad.fetch_add(1, std::memory_order_relaxed);
            if (!have_error.exchange(true)) first_error = w.empty() ? "echo failed" : w;
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
          }
        }
      });
    auto t0 = Clock::now();
    end = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(dur));
    go = true;
    for (auto& t : ts) t.join();
    double s = secs(end - t0);
    if (bad) fprintf(stderr, "client: %ld failed connections, first: %s\n", bad.load(), first_error.c_str());
    printf("rps %ld %ld %.6f\n", ok.load(), bad.load(), s);
    return ok > 0 ? 0 : 1;
  }
  if (mode == "lat") {  // lat N MAX_SECONDS: sequential connect (+ CONNECT) + 1-byte echo
    int n = atoi(argv[5]);
    double cap = argc > 6 ? atof(argv[6]) : 1e9;
    int warm = std::max(10, n / 20);
    std::vector<double> us;
    auto start = Clock::now();
    for (int i = 0; i < n + warm && secs(Clock::now() - start) < cap; ++i) {
      auto t0 = Clock::now();
      int fd = d.open(&why);
      if (fd < 0) {
        fprintf(stderr, "client: %s\n", why.c_str());
        return 1;
      }
      char b[2] = {'E', 'x'};
      bool good = write_all(fd, b, 2) && read_exact(fd, b, 1);
      auto t1 = Clock::now();
      ::close(fd);
      if (!good) {
        fprintf(stderr, "client: echo failed\n");
        return 1;
      }
      if (i >= warm) us.push_back(secs(t1 - t0) * 1e6);
    }
    printf("lat");
    for (double v : us) printf(" %.1f", v);
    printf("\n");
    return 0;
  }
  if (mode == "hold") {  // hold N: open N tunnels, hold them until told
    int n = atoi(argv[5]);
    char line[64];
    printf("ready\n");
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin)) return 1;
    std::vector<int> fds;
    for (int i = 0; i < n; ++i) {
      int fd = d.open(&why);
      char b[2] = {'E', 'x'};
      if (fd < 0 || !write_all(fd, b, 2) || !read_exact(fd, b, 1)) {  // the tunnel is through to the server
        if (fd >= 0) ::close(fd);
        fprintf(stderr, "client: tunnel %d: %s\n", i, why.empty() ? "echo failed" : why.c_str());
        break;
      }
      fds.push_back(fd);
    }
    printf("held %zu\n", fds.size());
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin)) return 1;
    for (int fd : fds) ::close(fd);
    printf("done\n");
    return 0;
  }
  fprintf(stderr, "client: unknown mode %s\n", mode.c_str());
  return 2;
}

// ---------------------------------------------------------------- driver

struct Runner {
  std::string name;
  std::vector<std::string> prefix;  // what wraps the client
  std::string how, target;          // "direct"/"proxy", and the CONNECT target
  bool ok = true;
  std::string why;                  // first failure
  std::vector<double> mbps, rps, lat;  // per run; lat: every sample
  std::vector<double> p50s, p99s;      // latency, per run
  std::string rps_err;                 // first failure the conns/s client reported
  long rps_errors = 0;
  bool bulk_capped = false;
};

static std::string self_exe;
static std::string errdir;

// Runs one client; returns its stdout's first line, or nullopt on failure.
static std::optional<std::string> run_client(Runner& r, const std::vector<std::string>& args, double timeout_s) {
  std::vector<std::string> argv = r.prefix;
  argv.push_back(self_exe);
  argv.push_back("client");
  argv.push_back(r.how);
  argv.push_back(r.target);
  for (auto& a : args) argv.push_back(a);
  Child c;
  auto t0 = Clock::now();
  if (!c.spawn(argv, errdir + "/" + r.name + ".err")) return std::nullopt;
  auto l = c.line(timeout_s);
  int st = c.finish(10);
  if (st == 0 && args[0] == "rps" && r.rps_err.empty()) r.rps_err = c.err_tail();
  if (getenv("BENCH_VERBOSE")) fprintf(stderr, "  (%s %s: %.1f s wall)\n", r.name.c_str(), args[0].c_str(), secs(Clock::now() - t0));
  if (!l || st != 0) {
    if (r.why.empty())
      r.why = (args.empty() ? std::string() : args[0]) + ": exit " + std::to_string(st) + ": " + c.err_tail();
    return std::nullopt;
  }
  return l;
}

// /proc helpers
static std::map<std::string, long> proc_status(pid_t pid) {
  std::map<std::string, long> m;
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  for (std::string l; std::getline(f, l);) {
    auto c = l.find(':');
    if (c == std::string::npos) continue;
    m[l.substr(0, c)] = atol(l.c_str() + c + 1);
  }
  return m;
}
static long pss_kb(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/smaps_rollup");
  for (std::string l; std::getline(f, l);)
    if (l.rfind("Pss:", 0) == 0) return atol(l.c_str() + 4);
  return 0;
}
static std::string comm(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/comm");
  std::string s;
  std::getline(f, s);
  return s;
}
static std::string nspid(pid_t pid) {
  char b[128] = {};
  ssize_t n = readlink(("/proc/" + std::to_string(pid) + "/ns/pid").c_str(), b, sizeof b - 1);
  return n > 0 ? std::string(b, static_cast<size_t>(n)) : "";
}
static std::map<pid_t, std::vector<pid_t>> children_map() {
  std::map<pid_t, std::vector<pid_t>> m;
  DIR* d = opendir("/proc");
  while (auto* e = readdir(d)) {
    pid_t p = atoi(e->d_name);
    if (p <= 0) continue;
    std::ifstream f(std::string("/proc/") + e->d_name + "/stat");
    std::string s;
    std::getline(f, s);
    auto rp = s.rfind(')');
    if (rp == std::string::npos) continue;
    std::istringstream ss(s.substr(rp + 2));
    char state;
    pid_t pp;
    ss >> state >> pp;
    m[pp].push_back(p);
  }
  closedir(d);
  return m;
}
static std::vector<pid_t> descendants(pid_t root) {
  auto m = children_map();
  std::vector<pid_t> out{root};
  for (size_t i = 0; i < out.size(); ++i)
    for (pid_t c : m[out[i]]) out.push_back(c);
  return out;
}
// The airlock supervisor: the host-side process whose child lives in
// another pid namespace (the sandbox), among what `airlock run` started.
static pid_t find_supervisor(pid_t root) {
  auto m = children_map();
  std::vector<pid_t> todo{root};
  for (size_t i = 0; i < todo.size(); ++i) {
    for (pid_t c : m[todo[i]]) {
      if (nspid(c) != nspid(todo[i]) && comm(todo[i]) == "airlock") return todo[i];
      todo.push_back(c);
    }
  }
  return -1;
}

struct Mem {
  bool ok = false;
  std::string why;
  size_t held = 0;
  long idle_kb = 0, held_kb = 0, hwm_kb = 0;
};

// hold N tunnels through the runner; `sample` reads the memory figure.
template <class F>
static Mem hold(Runner& r, int n, F sample_idle_held) {
  Mem m;
  std::vector<std::string> argv = r.prefix;
  for (auto s : {self_exe, std::string("client"), r.how, r.target, std::string("hold"), std::to_string(n)}) argv.push_back(s);
  Child c;
  c.spawn(argv, errdir + "/" + r.name + "-hold.err");
  auto l = c.line(30);
  if (!l || *l != "ready") {
    c.finish(5);
    m.why = "did not start: " + c.err_tail();
    return m;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  sample_idle_held(c.pid, m, false);
  c.say("go\n");
  l = c.line(120);
  if (!l || l->rfind("held ", 0) != 0) {
    c.finish(5);
    m.why = "no answer while opening tunnels: " + c.err_tail();
    return m;
  }
  m.held = std::stoul(l->substr(5));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  sample_idle_held(c.pid, m, true);
  c.say("done\n");
  c.line(60);
  c.finish(30);
  m.ok = m.held == static_cast<size_t>(n);
  if (!m.ok) m.why = "held only " + std::to_string(m.held) + ": " + c.err_tail();
  return m;
}

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "client") return client_main(argc, argv);
  if (argc > 1 && std::string(argv[1]) == "serve") {  // the server alone, for trying clients by hand
    Server server;
    raise_nofile();
    if (!server.start(2)) return 1;
    printf("%d\n", server.port);
    fflush(stdout);
    pause();
    return 0;
  }
  signal(SIGPIPE, SIG_IGN);
  raise_nofile();
  std::string airlock = "build/airlock", srt;
  int rounds = 3, conc = 64, lat_n = 1000, hold_n = 1000;
  double rps_s = 2, bulk_cap = 3, lat_cap = 3;
  int settle_ms = 300;
  uint64_t bulk_mib = 1024;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    if (k == "--airlock") airlock = argv[i + 1];
    else if (k == "--srt") srt = argv[i + 1];
    else if (k == "--rounds") rounds = atoi(argv[i + 1]);
    else if (k == "--bulk-mib") bulk_mib = std::stoull(argv[i + 1]);
    else if (k == "--rps-seconds") rps_s = atof(argv[i + 1]);
    else if (k == "--bulk-max-seconds") bulk_cap = atof(argv[i + 1]);
    else if (k == "--conc") conc = atoi(argv[i + 1]);
    else if (k == "--lat") lat_n = atoi(argv[i + 1]);
    else if (k == "--lat-max-seconds") lat_cap = atof(argv[i + 1]);
    else if (k == "--settle-ms") settle_ms = atoi(argv[i + 1]);
    else if (k == "--hold") hold_n = atoi(argv[i + 1]);
    else {
      fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  self_exe = self_exe_path();
  errdir = cwd_path();

  Server server;
  if (!server.start(2)) {
    perror("server");
    return 1;
  }
  std::string port = std::to_string(server.port);
  Relay relay;
  if (!relay.start(server.port)) {
    perror("relay");
    return 1;
  }
  {
    std::ofstream a("airlock-settings.json");
    a << R"({"network":{"allowedDomains":["bench.test:)" << port
      << R"("],"hosts":{"bench.test":"127.0.0.1"},"allowPrivateAddresses":["127.0.0.1/32"]}})" << "\n";
    // srt: "localhost" on the allow list lets its proxy dial loopback (its
    // resolved-address guard keeps loopback answers for loopback names).
    std::ofstream s("srt-settings.json");
    s << R"({"network":{"allowedDomains":["localhost"],"deniedDomains":[]},)"
      << R"("filesystem":{"denyRead":[],"allowWrite":["."],"denyWrite":[]}})" << "\n";
  }
  std::vector<Runner> rs;
  auto runner = [](std::string name, std::vector<std::string> prefix, std::string how, std::string target) {
    Runner r;
    r.name = std::move(name), r.prefix = std::move(prefix), r.how = std::move(how), r.target = std::move(target);
    return r;
  };
  rs.push_back(runner("direct", {}, "direct", "127.0.0.1:" + port));
  rs.push_back(runner("relay", {}, "proxy=127.0.0.1:" + std::to_string(relay.port), "127.0.0.1:" + port));
  rs.push_back(runner("airlock", {airlock, "run", "--settings", "airlock-settings.json", "--"}, "proxy", "bench.test:" + port));
  if (!srt.empty()) {
    Runner r = runner("srt", {}, "proxy", "localhost:" + port);
    add_srt(r.prefix, srt, "srt-settings.json");
    rs.push_back(r);
  }

  uint64_t bulk_bytes = bulk_mib << 20;
  printf("server 127.0.0.1:%s; %d rounds, runners interleaved; bulk %llu MiB, %d clients x %.0f s, %d connections for latency\n",
         port.c_str(), rounds, (unsigned long long)bulk_mib, conc, rps_s, lat_n);
  fflush(stdout);
  double idle_before = idle_share();
  auto t_start = Clock::now();
  // One run of each runner in turn, metric by metric, round by round; a
  // pause before each run lets the kernel finish tearing down what the
  // last one left (a network namespace, thousands of sockets) so that it
  // weighs on nobody's figures.
  bool verbose = getenv("BENCH_VERBOSE") != nullptr;
  auto settle = [&] { std::this_thread::sleep_for(std::chrono::milliseconds(settle_ms)); };
  for (int round = 0; round < rounds; ++round) {
    for (auto& r : rs) {
      settle();
      if (auto l = run_client(r, {"bulk", std::to_string(bulk_bytes), std::to_string(bulk_cap)}, bulk_cap + 60)) {
        auto v = nums(*l);
        if (v.size() == 3) r.mbps.push_back(v[0] / 1e6 / v[1]), r.bulk_capped |= v[2] != 0;
        if (verbose && !r.mbps.empty()) fprintf(stderr, "round %d %-8s bulk %.0f MB/s\n", round, r.name.c_str(), r.mbps.back());
      }
    }
    for (auto& r : rs) {
      settle();
      if (auto l = run_client(r, {"rps", std::to_string(rps_s), std::to_string(conc), "64"}, rps_s + 60)) {
        auto v = nums(*l);
        if (v.size() == 3) r.rps.push_back(v[0] / v[2]), r.rps_errors += static_cast<long>(v[1]);
        if (verbose && !r.rps.empty()) fprintf(stderr, "round %d %-8s conns/s %.0f\n", round, r.name.c_str(), r.rps.back());
      }
    }
    for (auto& r : rs) {
      settle();
      if (auto l = run_client(r, {"lat", std::to_string(lat_n), std::to_string(lat_cap)}, lat_cap + 60)) {
        auto v = nums(*l);
        r.lat.insert(r.lat.end(), v.begin(), v.end());
        if (!v.empty()) r.p50s.push_back(pct(v, 0.50)), r.p99s.push_back(pct(v, 0.99));
        if (verbose) fprintf(stderr, "round %d %-8s latency p50 %.0f us p99 %.0f us (%zu)\n", round, r.name.c_str(), pct(v, 0.5), pct(v, 0.99), v.size());
      }
    }
  }

  // Memory with idle tunnels held open.
  enum { kDirect, kRelay, kAirlock, kSrt };
  bool have_srt = rs.size() > kSrt;
  Mem mem_airlock, mem_srt;
  pid_t sup = -1;
  mem_airlock = hold(rs[kAirlock], hold_n, [&](pid_t root, Mem& m, bool held) {
    if (sup < 0) sup = find_supervisor(root);
    if (sup < 0) return;
    auto st = proc_status(sup);
    (held ? m.held_kb : m.idle_kb) = st["VmRSS"];
    m.hwm_kb = st["VmHWM"];
  });
  if (sup < 0 && mem_airlock.why.empty()) mem_airlock.why = "supervisor not found in /proc", mem_airlock.ok = false;
  if (have_srt) {
    // srt is a tree (node, socat bridges on both sides): the sum of its PSS.
    mem_srt = hold(rs[kSrt], hold_n, [&](pid_t root, Mem& m, bool held) {
      long sum = 0;
      for (pid_t p : descendants(root))
        if (comm(p) != "bench-proxy") sum += pss_kb(p);
      (held ? m.held_kb : m.idle_kb) = sum;
    });
  }
  double elapsed = secs(Clock::now() - t_start);
  double idle_after = idle_share();

  // ---- the table
  // Ratio columns: each sandbox against direct, and airlock against the
  // bare relay (what airlock adds beyond the extra hop).
  std::vector<std::pair<int, int>> cmp = {{kAirlock, kDirect}};
  if (have_srt) cmp.push_back({kSrt, kDirect});
  cmp.push_back({kAirlock, kRelay});
  printf("\n%-36s", "metric");
  for (auto& r : rs) printf(" %9s", r.name.c_str());
  for (auto [x, y] : cmp) printf(" %15s", (rs[x].name + "/" + rs[y].name).c_str());
  printf("\n");
  auto row = [&](const std::string& label, auto get, const char* fmt, bool added) {
    printf("%-36s", label.c_str());
    std::vector<double> v;
    for (auto& r : rs) v.push_back(get(r));
    for (double x : v) printf(" %9s", cell(x, fmt).c_str());
    for (auto [x, y] : cmp) {
      std::string c = added ? cell(v[x] - v[y], "%+.0f us") : cell(ratio(v[x], v[y]), "%.2fx");
      printf(" %15s", c.c_str());
    }
    printf("\n");
  };
  row("1 tunnel bulk, MB/s (median)", [](const Runner& r) { return median(r.mbps); }, "%.0f", false);
  row("conns/s, " + std::to_string(conc) + " clients (median)", [](const Runner& r) { return median(r.rps); }, "%.0f", false);
  row("new conn + 1 B echo, p50 us (median)", [](const Runner& r) { return median(r.p50s); }, "%.0f", true);
  row("new conn + 1 B echo, p99 us (median)", [](const Runner& r) { return median(r.p99s); }, "%.0f", true);
  row("  p99 over all runs' samples pooled", [](const Runner& r) { return pct(r.lat, 0.99); }, "%.0f", true);

  printf("\nmemory, %d idle tunnels held open:\n", hold_n);
  auto mb = [](long kb) { return kb / 1024.0; };
  if (mem_airlock.ok)
    printf("  airlock supervisor (pid %d): VmRSS %.1f MB idle -> %.1f MB held (%.1f KB per tunnel); VmHWM %.1f MB\n", sup,
           mb(mem_airlock.idle_kb), mb(mem_airlock.held_kb),
           static_cast<double>(mem_airlock.held_kb - mem_airlock.idle_kb) / static_cast<double>(hold_n), mb(mem_airlock.hwm_kb));
  else
    printf("  airlock: failed: %s\n", mem_airlock.why.c_str());
  if (have_srt) {
    if (mem_srt.ok)
      printf("  srt (node + socat relays on both sides, summed PSS): %.1f MB idle -> %.1f MB held (%.1f KB per tunnel)\n",
             mb(mem_srt.idle_kb), mb(mem_srt.held_kb),
             static_cast<double>(mem_srt.held_kb - mem_srt.idle_kb) / static_cast<double>(hold_n));
    else
      printf("  srt: failed: %s\n", mem_srt.why.c_str());
  } else {
    printf("  srt: not installed (skipped)\n");
  }

  printf("\n");
  for (auto& r : rs)
    if (!r.why.empty()) printf("%s failed at least once: %s\n", r.name.c_str(), r.why.c_str());
  for (auto& r : rs)
    if (r.bulk_capped)
      printf("%s: bulk stopped at %.0f s, before %llu MiB (MB/s over what arrived)\n", r.name.c_str(), bulk_cap,
             (unsigned long long)bulk_mib);
  for (auto& r : rs)
    if (!r.lat.empty() && r.lat.size() < static_cast<size_t>(lat_n * rounds))
      printf("%s: %zu latency samples (%.0f s cap per run), not %d\n", r.name.c_str(), r.lat.size(), lat_cap, lat_n * rounds);
  for (auto& r : rs)
    if (r.rps_errors)
      printf("%s: %ld connections failed during the conns/s runs (%s)\n", r.name.c_str(), r.rps_errors,
             r.rps_err.substr(0, r.rps_err.find_last_not_of("\n") + 1).c_str());
  note_if_busy(idle_before, idle_after);

  const Runner &D = rs[kDirect], &R = rs[kRelay], &A = rs[kAirlock];
  printf("relay: a bare splice CONNECT relay on the host (no sandbox): the cost of the extra hop alone\n");
  printf("airlock bulk / direct = %s (target >= 0.80), / relay = %s; airlock p99 added = %s ms (target < 1 ms); %.0f s\n",
         cell(ratio(median(A.mbps), median(D.mbps)), "%.2f").c_str(), cell(ratio(median(A.mbps), median(R.mbps)), "%.2f").c_str(),
         cell((median(A.p99s) - median(D.p99s)) / 1000, "%.3f").c_str(), elapsed);
  return 0;
}
