// The proxy's event loop. One thread runs every session as a coroutine;
// name lookups run on short-lived threads of their own (getaddrinfo blocks)
// and hand their answer back to the loop. Memory per connection is bounded:
// a 16 KiB header limit while a request is read, a 16 KiB relay buffer
// while a body is copied, and none at all for a tunnel, whose bytes move
// socket -> pipe -> socket inside the kernel (splice).
#include <utility>  // before Asio: Boost 1.74's coroutine support needs it under g++ 12

#define BOOST_BEAST_USE_STD_STRING_VIEW  // Beast speaks std::string_view, like the rest of airlock

#include "net/proxy.h"

#include <fcntl.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <nlohmann/json.hpp>
#include <thread>

#include "util/log.h"

namespace airlock::net {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using asio::awaitable;
using asio::use_awaitable;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kHeaderTimeout = std::chrono::seconds(30);   // a request's header, from its first byte to the last
constexpr auto kConnectTimeout = std::chrono::seconds(10);
constexpr auto kIdleTimeout = std::chrono::seconds(600);    // a tunnel or kept-alive connection with no traffic
constexpr size_t kHeaderLimit = 16 * 1024;
constexpr size_t kMaxSessions = 4096;
constexpr int kMaxLookups = 64;

// A one-shot event a coroutine can wait for: a timer that never expires
// on its own and is cancelled to wake the waiter.
class Event {
 public:
  explicit Event(asio::any_io_executor ex) : t_(ex, Clock::time_point::max()) {}
  awaitable<void> wait() {
    if (set_) co_return;
    error_code ec;
    co_await t_.async_wait(asio::redirect_error(use_awaitable, ec));
  }
  void set() {
    set_ = true;
    t_.cancel();
  }

 private:
  asio::steady_timer t_;
  bool set_ = false;
};

// One client connection and what it opened.
struct Session {
  explicit Session(tcp::socket s) : client(std::move(s)), upstream(client.get_executor()), watchdog(client.get_executor()) {}
  tcp::socket client;
  tcp::socket upstream;
  asio::steady_timer watchdog;
  Clock::time_point deadline = Clock::now() + kHeaderTimeout;
  bool closed = false;
  std::string upstream_key;  // "host:port" the upstream socket is connected to

  void touch(Clock::duration d = kIdleTimeout) { deadline = Clock::now() + d; }
  void close() {
    if (closed) return;
    closed = true;
    error_code ec;
    client.close(ec);
    upstream.close(ec);
    watchdog.cancel();
  }
};

// One decision, as the audit file and the summary see it.
struct Record {
  std::string client, requested, host, address, rule, decision, method, path;
  uint16_t port = 0;
  uint64_t up = 0, down = 0;
  Clock::time_point start = Clock::now();
};

struct Refusal : std::runtime_error {
  Refusal(int s, std::string tag, std::string why, uint8_t socks)
      : std::runtime_error(why), status(s), tag(std::move(tag)), socks_code(socks) {}
  int status;
  std::string tag;   // X-Proxy-Error
  uint8_t socks_code;
};

std::string now_iso() {
  struct timespec ts {};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm {};
  ::gmtime_r(&ts.tv_sec, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:03}Z", buf, ts.tv_nsec / 1000000);
}

std::vector<Address> local_addresses() {
  std::vector<Address> out;
  struct ifaddrs* ifs = nullptr;
  if (::getifaddrs(&ifs) != 0) return out;
  for (auto* i = ifs; i; i = i->ifa_next) {
    if (!i->ifa_addr || (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6)) continue;
    sockaddr_storage ss{};
    std::memcpy(&ss, i->ifa_addr, i->ifa_addr->sa_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6));
    out.push_back(from_sockaddr(ss));
  }
  ::freeifaddrs(ifs);
  return out;
}

struct Pipe {
  UniqueFd r, w;
  static Pipe make() {
    int p[2];
    if (::pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe2");
    return Pipe{UniqueFd(p[0]), UniqueFd(p[1])};
  }
};

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  return true;
}

// host:port as a person reads it back: [v6]:port.
std::string hostport(const std::string& host, uint16_t port) {
  return host.find(':') != std::string::npos ? fmt::format("[{}]:{}", host, port) : fmt::format("{}:{}", host, port);
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return std::string(s);
}

}  // namespace

struct Proxy::Impl {
  explicit Impl(ProxyConfig c) : cfg(std::move(c)), io(std::make_shared<asio::io_context>(1)) {}

  ProxyConfig cfg;
  std::shared_ptr<asio::io_context> io;
  std::unique_ptr<tcp::acceptor> http_acc, socks_acc;
  std::thread thread;
  std::vector<Address> local;
  size_t sessions = 0;
  std::atomic<int> lookups{0};
  std::set<std::string> allowed_for_run;  // "host:port" answered "for this run"
  struct Pending {
    std::vector<std::shared_ptr<std::pair<Event, Answer>>> waiters;
  };
  std::map<std::string, Pending> pending_asks;
  uint64_t next_question = 1;
  struct Refused {
    std::string reason;
    long count = 0;
  };
  std::map<std::string, Refused> refused;  // "host:port" -> why
  bool told_full = false, told_audit = false;

  // ---------- audit ----------

  void audit(const Record& r) {
    if (r.decision != "allow") {
      std::string key = !r.host.empty()        ? hostport(r.host, r.port)
                        : !r.requested.empty() ? r.requested
                                               : std::string("(a malformed request)");
      auto& e = refused[key];
      e.reason = r.rule;
      ++e.count;
    }
    if (!cfg.audit) return;
    nlohmann::json j = {
        {"time", now_iso()},
        {"sandbox", cfg.sandbox_id},
        {"kind", "network"},
        {"client", r.client},
        {"host", r.host.empty() ? r.requested : r.host},
        {"port", r.port},
        {"address", r.address},
        {"rule", r.rule},
        {"decision", r.decision},
        {"bytes_up", r.up},
        {"bytes_down", r.down},
        {"duration_ms", std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - r.start).count()},
    };
    if (!r.requested.empty() && r.requested != r.host) j["requested"] = r.requested;
    if (!r.method.empty()) j["method"] = r.method;
    if (!r.path.empty()) j["path"] = r.path;
    std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    if (::write(cfg.audit.get(), line.data(), line.size()) < 0 && !told_audit) {  // O_APPEND: one write, one line
      told_audit = true;
      log::line(fmt::format("warning: cannot write the audit file: {}", std::strerror(errno)));
    }
  }

  // ---------- the session's watchdog ----------

  awaitable<void> watch(std::shared_ptr<Session> s) {
    while (!s->closed) {
      s->watchdog.expires_at(s->deadline);
      error_code ec;
      co_await s->watchdog.async_wait(asio::redirect_error(use_awaitable, ec));
      if (s->closed) break;
      if (Clock::now() >= s->deadline) s->close();  // idle or too slow: everything pending fails
    }
  }

  // ---------- deciding ----------

  // Where an allowed connection goes: exactly the checked addresses, or the
  // parent proxy.
  struct Route {
    std::vector<Address> addrs;
    bool via_parent = false;
  };

  // Names are judged, then resolved here (never inside the sandbox), then
  // every address is judged; the caller dials exactly those addresses.
  awaitable<Route> decide(Record& rec, const std::string& raw_host, uint16_t port) {
    rec.requested = raw_host;
    rec.port = port;
    auto host = normalize_host(raw_host);
    if (!host) {
      rec.rule = "malformed host: " + host.error().message;
      throw Refusal(400, "bad-host", rec.rule, 0x02);
    }
    rec.host = host->name;
    Verdict v = judge_name(cfg.policy, *host, port);
    std::string key = hostport(host->name, port);
    if (v.kind == Verdict::Unknown && allowed_for_run.count(key)) v = {Verdict::Allow, "allowed for this run (asked)", nullptr};
    if (v.kind == Verdict::Unknown && cfg.asker && !cfg.policy.strict) {
      Answer a = co_await ask(host->name, port, rec.client);
      if (a == Answer::Deny) {
        v = {Verdict::Deny, fmt::format("{} (asked: denied)", v.rule), nullptr};
      } else {
        v = {Verdict::Allow, a == Answer::Once ? "allowed once (asked)" : "allowed for this run (asked)", nullptr};
        if (a == Answer::Run || a == Answer::Always) allowed_for_run.insert(key);
        if (a == Answer::Always && cfg.remember) {
          bool v6 = host->ip && host->ip->family == AF_INET6;  // a pattern brackets it, port or not
          std::string pattern = (port == 80 || port == 443) && !v6 ? host->name : key;
          std::string e = cfg.remember(pattern);
          if (!e.empty()) log::line(fmt::format("warning: '{}' is allowed for this run only: {}", pattern, e));
          v.rule = e.empty() ? fmt::format("allowed always (asked; '{}' added to the user settings)", pattern)
                             : fmt::format("allowed for this run (asked; not saved: {})", e);
        }
      }
    }
    rec.rule = v.rule;
    if (v.kind != Verdict::Allow) throw Refusal(403, "blocked-by-allowlist", v.rule, 0x02);

    Route route;
    route.via_parent = cfg.policy.parent && !bypasses_parent(*cfg.policy.parent, *host);
    auto& addrs = route.addrs;
    if (host->ip) {
      addrs.push_back(*host->ip);
    } else if (auto it = cfg.policy.hosts.find(host->name); it != cfg.policy.hosts.end()) {
      addrs = it->second;
    } else {
      auto r = co_await lookup(host->name);
      if (!r) {
        // Through a parent proxy the parent resolves names this machine
        // cannot; nothing to check here then.
        if (route.via_parent) co_return route;
        rec.rule = fmt::format("{}: {}", v.rule, r.error().message);
        throw Refusal(502, "dns-failed", fmt::format("cannot resolve {}: {}", host->name, r.error().message), 0x04);
      }
      addrs = std::move(*r);
    }
    // One refused address refuses the name: a name that points at both the
    // internet and the metadata service is not one to trust.
    for (const auto& a : addrs) {
      if (auto why = judge_address(cfg.policy, *host, port, a, local)) {
        rec.address = a.str();
        rec.rule = *why;
        throw Refusal(403, "blocked-by-address", *why, 0x02);
      }
    }
    co_return route;
  }

  // A refusal, whenever it came: recorded once, with its own reason when
  // the connection was allowed and then failed.
  void record_refusal(Record& rec, const Refusal& r) {
    rec.decision = "deny";
    if (rec.rule.empty() || r.status == 502) rec.rule = r.what();
    audit(rec);
  }

  awaitable<Answer> ask(const std::string& host, uint16_t port, const std::string& client) {
    std::string key = hostport(host, port);
    auto waiter = std::make_shared<std::pair<Event, Answer>>(Event(io->get_executor()), Answer::Deny);
    bool first = pending_asks.find(key) == pending_asks.end();
    pending_asks[key].waiters.push_back(waiter);
    if (first) {
      Question q{next_question++, host, port, client};
      std::weak_ptr<asio::io_context> weak = io;
      auto finish = [this, key, weak](Answer a) {
        auto ioc = weak.lock();
        if (!ioc) return;
        asio::post(*ioc, [this, key, a] {
          auto it = pending_asks.find(key);
          if (it == pending_asks.end()) return;
          for (auto& w : it->second.waiters) {
            w->second = a;
            w->first.set();
          }
          pending_asks.erase(it);
        });
      };
      cfg.asker->ask(q, finish);
      // No answer in time is a refusal.
      asio::co_spawn(
          *io,
          [this, key, finish]() -> awaitable<void> {
            asio::steady_timer t(*io, std::chrono::seconds(cfg.ask_timeout_seconds));
            error_code ec;
            co_await t.async_wait(asio::redirect_error(use_awaitable, ec));
            if (pending_asks.count(key)) finish(Answer::Deny);
          },
          asio::detached);
    }
    co_await waiter->first.wait();
    co_return waiter->second;
  }

  // getaddrinfo blocks: run it on a thread of its own and come back here.
  awaitable<Result<std::vector<Address>>> lookup(const std::string& name) {
    if (lookups.fetch_add(1) >= kMaxLookups) {
      lookups.fetch_sub(1);
      co_return Result<std::vector<Address>>(err("too many name lookups at once"));
    }
    // (A named initiation: g++ 12 destroys a temporary with a destructor
    // twice when it lives across a co_await.)
    auto initiation = [this, name](auto handler) {
          std::thread([ioc = io, name, h = std::move(handler)]() mutable {
            struct addrinfo hints {};
            hints.ai_socktype = SOCK_STREAM;
            hints.ai_flags = AI_ADDRCONFIG;
            struct addrinfo* res = nullptr;
            int rc = ::getaddrinfo(name.c_str(), nullptr, &hints, &res);
            Result<std::vector<Address>> out = Error{rc == EAI_SYSTEM ? std::strerror(errno) : gai_strerror(rc)};
            if (rc == 0) {
              std::vector<Address> v;
              for (auto* a = res; a; a = a->ai_next) {
                sockaddr_storage ss{};
                std::memcpy(&ss, a->ai_addr, std::min<size_t>(a->ai_addrlen, sizeof ss));
                Address ad = from_sockaddr(ss);
                if (std::find(v.begin(), v.end(), ad) == v.end()) v.push_back(ad);
              }
              ::freeaddrinfo(res);
              out = std::move(v);
            }
            asio::post(*ioc, [h = std::move(h), out = std::move(out)]() mutable { h(std::move(out)); });
          }).detach();
        };
    auto r = co_await asio::async_initiate<decltype(use_awaitable), void(Result<std::vector<Address>>)>(
        std::move(initiation), use_awaitable);
    lookups.fetch_sub(1);
    co_return r;
  }

  // ---------- dialling ----------

  static tcp::endpoint endpoint(const Address& a, uint16_t port) {
    if (a.family == AF_INET) {
      asio::ip::address_v4::bytes_type b;
      std::memcpy(b.data(), a.b.data(), 4);
      return {asio::ip::address_v4(b), port};
    }
    asio::ip::address_v6::bytes_type b;
    std::memcpy(b.data(), a.b.data(), 16);
    return {asio::ip::address_v6(b), port};
  }

  awaitable<void> dial(Session& s, Record& rec, const std::vector<Address>& addrs, uint16_t port) {
    error_code last;
    for (const auto& a : addrs) {
      error_code ec;
      s.upstream.close(ec);
      s.upstream = tcp::socket(s.client.get_executor());
      s.touch(kConnectTimeout);
      co_await s.upstream.async_connect(endpoint(a, port), asio::redirect_error(use_awaitable, ec));
      if (!ec) {
        rec.address = a.str();
        s.upstream.set_option(tcp::no_delay(true), ec);
        s.touch();
        co_return;
      }
      last = ec;
      if (s.closed) break;
    }
    throw Refusal(502, "connect-failed", fmt::format("cannot connect to {}: {}", hostport(rec.host, port), last.message()), 0x05);
  }

  // Through the parent proxy: CONNECT there, then it is a plain tunnel.
  awaitable<void> dial_parent_connect(Session& s, Record& rec, uint16_t port) {
    const auto& pp = *cfg.policy.parent;
    co_await dial_parent(s, rec, pp.https);
    std::string target = hostport(rec.host, port);
    std::string req = fmt::format("CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n\r\n", target);
    co_await asio::async_write(s.upstream, asio::buffer(req), use_awaitable);
    boost::beast::flat_buffer buf;
    http::response_parser<http::empty_body> p;
    p.skip(true);  // a CONNECT response has no body
    co_await http::async_read_header(s.upstream, buf, p, use_awaitable);
    if (p.get().result_int() != 200)
      throw Refusal(502, "parent-proxy", fmt::format("the parent proxy answered {} to CONNECT {}", p.get().result_int(), target),
                    0x05);
    if (buf.size() != 0) throw Refusal(502, "parent-proxy", "the parent proxy sent data before the tunnel opened", 0x01);
    rec.address = "via parent proxy " + pp.https;
  }

  awaitable<void> dial_parent(Session& s, Record& rec, const std::string& hostport) {
    auto hp = split_host_port(hostport, true, 0);
    auto h = normalize_host(hp ? hp->host : "");
    if (!hp || !h) throw Refusal(502, "parent-proxy", "bad parent proxy address " + hostport, 0x01);
    std::vector<Address> addrs;
    if (h->ip) {
      addrs.push_back(*h->ip);
    } else {
      auto r = co_await lookup(h->name);
      if (!r) throw Refusal(502, "parent-proxy", fmt::format("cannot resolve the parent proxy {}: {}", h->name, r.error().message), 0x04);
      addrs = *r;
    }
    Record dummy = rec;
    dummy.host = h->name;
    co_await dial(s, dummy, addrs, hp->port);
  }

  // The upstream end of a tunnel (CONNECT or SOCKS).
  awaitable<void> open_tunnel(Session& s, Record& rec, const Route& route, uint16_t port) {
    if (route.via_parent) co_await dial_parent_connect(s, rec, port);
    else co_await dial(s, rec, route.addrs, port);
  }

  // ---------- tunnels ----------

  // Copies one direction until EOF, through a pipe: the bytes never enter
  // this process. Returns the bytes moved.
  static awaitable<uint64_t> pump(std::shared_ptr<Session> s, tcp::socket& from, tcp::socket& to) {
    uint64_t total = 0;
    Pipe pipe;
    try {
      pipe = Pipe::make();
    } catch (const std::exception&) {
      s->close();
      co_return 0;
    }
    bool grown = false;
    for (;;) {
      // Splice until the socket is empty; wait only then (one wakeup per
      // burst, not per chunk).
      ssize_t n = ::splice(from.native_handle(), nullptr, pipe.w.get(), nullptr, 1 << 20, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) {
        error_code ec;
        co_await from.async_wait(tcp::socket::wait_read, asio::redirect_error(use_awaitable, ec));
        if (ec || s->closed) break;
        continue;
      }
      if (n == 0) {
        ::shutdown(to.native_handle(), SHUT_WR);  // pass the half-close on
        co_return total;
      }
      if (n < 0) break;
      s->touch();
      size_t left = static_cast<size_t>(n);
      while (left > 0) {
        ssize_t m = ::splice(pipe.r.get(), nullptr, to.native_handle(), nullptr, left, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (m > 0) {
          left -= static_cast<size_t>(m);
          total += static_cast<uint64_t>(m);
          continue;
        }
        if (m < 0 && (errno == EAGAIN || errno == EINTR)) {
          error_code ec;
          co_await to.async_wait(tcp::socket::wait_write, asio::redirect_error(use_awaitable, ec));
          if (ec || s->closed) co_return total;
          continue;
        }
        s->close();
        co_return total;
      }
      // A bulk transfer: a larger pipe moves more per call. Idle tunnels
      // keep the default (the kernel caps pipe memory per user).
      if (!grown && total > (4u << 20)) {
        grown = true;
        (void)::fcntl(pipe.w.get(), F_SETPIPE_SZ, 1 << 20);
      }
    }
    s->close();
    co_return total;
  }

  // Both directions; `pending` is what the client already sent past the
  // request (a TLS ClientHello sent eagerly, say).
  awaitable<void> tunnel(std::shared_ptr<Session> s, Record& rec, boost::beast::flat_buffer& pending) {
    if (pending.size()) {
      rec.up += pending.size();
      co_await asio::async_write(s->upstream, pending.data(), use_awaitable);
      pending.consume(pending.size());
    }
    pending.shrink_to_fit();
    s->client.native_non_blocking(true);
    s->upstream.native_non_blocking(true);
    s->touch();
    Event down_done(io->get_executor());
    uint64_t down = 0;
    asio::co_spawn(
        *io,
        [s, &down, &down_done]() -> awaitable<void> {
          down = co_await pump(s, s->upstream, s->client);
          down_done.set();
        },
        asio::detached);
    rec.up += co_await pump(s, s->client, s->upstream);
    co_await down_done.wait();
    rec.down += down;
  }

  // ---------- responses of our own ----------

  // A refusal the client can read. (Built outside any co_await: g++ 12
  // mishandles temporaries that live across a suspension.)
  static std::string error_response(int status, const std::string& tag, const std::string& text) {
    const char* reason = status == 400 ? "Bad Request" : status == 403 ? "Forbidden" : status == 431 ? "Request Header Fields Too Large"
                         : status == 502 ? "Bad Gateway" : status == 503 ? "Service Unavailable" : "Error";
    std::string body = fmt::format("airlock: {}\n", text);
    return fmt::format(
        "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nX-Proxy-Error: {}\r\nConnection: close\r\n"
        "Content-Length: {}\r\n\r\n{}",
        status, reason, tag, body.size(), body);
  }

  static awaitable<void> send_text(Session& s, const std::string& msg) {
    error_code ec;
    co_await asio::async_write(s.client, asio::buffer(msg), asio::redirect_error(use_awaitable, ec));
  }

  // ---------- SOCKS5 ----------

  // At least n bytes of the request in buf.
  static awaitable<void> need_bytes(Session& s, boost::beast::flat_buffer& buf, size_t n) {
    while (buf.size() < n) {
      size_t got = co_await s.client.async_read_some(buf.prepare(n - buf.size()), use_awaitable);
      buf.commit(got);
    }
  }

  // (g++ 12 cannot hold a braced list in a coroutine's frame.)
  static std::vector<uint8_t> two_bytes(uint8_t a, uint8_t b) { return {a, b}; }

  static awaitable<void> send_bytes(Session& s, std::vector<uint8_t> v) {
    co_await asio::async_write(s.client, asio::buffer(v), use_awaitable);
  }

  static awaitable<void> socks_reply(Session& s, uint8_t code) {
    std::vector<uint8_t> v(10, 0);  // (g++ 12 cannot take a braced list into a coroutine call)
    v[0] = 0x05, v[1] = code, v[3] = 0x01;
    co_await send_bytes(s, std::move(v));
  }

  awaitable<void> socks(std::shared_ptr<Session> s, boost::beast::flat_buffer& buf) {
    Record rec;
    rec.client = "socks";
    auto byte = [&](size_t i) { return static_cast<const uint8_t*>(buf.data().data())[i]; };
    co_await need_bytes(*s, buf, 2);
    size_t nmethods = byte(1);
    co_await need_bytes(*s, buf, 2 + nmethods);
    bool no_auth = false;
    for (size_t i = 0; i < nmethods; ++i) no_auth |= byte(2 + i) == 0x00;
    buf.consume(2 + nmethods);
    if (!no_auth) {
      auto no = two_bytes(0x05, 0xFF);
      co_await send_bytes(*s, std::move(no));
      co_return;
    }
    auto yes = two_bytes(0x05, 0x00);
    co_await send_bytes(*s, std::move(yes));
    co_await need_bytes(*s, buf, 4);
    if (byte(0) != 0x05) co_return;
    uint8_t cmd = byte(1), atyp = byte(3);
    if (cmd != 0x01) {  // only CONNECT: no BIND, no UDP ASSOCIATE
      rec.rule = "SOCKS command other than CONNECT";
      rec.decision = "deny";
      audit(rec);
      co_await socks_reply(*s, 0x07);
      co_return;
    }
    std::string host;
    size_t len;
    if (atyp == 0x01) {
      co_await need_bytes(*s, buf, 4 + 4 + 2);
      Address a;
      a.family = AF_INET;
      for (int i = 0; i < 4; ++i) a.b[i] = byte(4 + i);
      host = a.str();
      len = 4 + 4;
    } else if (atyp == 0x04) {
      co_await need_bytes(*s, buf, 4 + 16 + 2);
      Address a;
      a.family = AF_INET6;
      for (int i = 0; i < 16; ++i) a.b[i] = byte(4 + i);
      host = "[" + a.str() + "]";
      len = 4 + 16;
    } else if (atyp == 0x03) {
      co_await need_bytes(*s, buf, 5);
      size_t n = byte(4);
      co_await need_bytes(*s, buf, 5 + n + 2);
      host.assign(static_cast<const char*>(buf.data().data()) + 5, n);
      len = 5 + n;
    } else {
      co_await socks_reply(*s, 0x08);
      co_return;
    }
    uint16_t port = static_cast<uint16_t>(byte(len) << 8 | byte(len + 1));
    buf.consume(len + 2);
    std::optional<Refusal> refused;  // (no co_await inside a catch block)
    try {
      if (port == 0) throw Refusal(400, "bad-port", "port 0", 0x02);
      auto route = co_await decide(rec, host, port);
      co_await open_tunnel(*s, rec, route, port);
    } catch (const Refusal& r) {
      refused = r;
    }
    if (refused) {
      record_refusal(rec, *refused);
      co_await socks_reply(*s, refused->socks_code);
      co_return;
    }
    rec.decision = "allow";
    co_await socks_reply(*s, 0x00);
    co_await tunnel(s, rec, buf);
    audit(rec);
  }

  // ---------- HTTP ----------

  // The host a request names, checked three ways: the target's authority,
  // the Host header and (later) the rules must all agree.
  struct Target {
    std::string host;  // as written
    uint16_t port = 80;
    std::string path;  // origin-form
  };

  static Target parse_absolute(std::string_view t) {
    constexpr std::string_view scheme = "http://";
    if (t.size() < scheme.size() || !iequals(t.substr(0, scheme.size()), scheme)) {
      if (!t.empty() && t.front() == '/')
        throw Refusal(400, "bad-request", "origin-form request: airlock's proxy takes absolute URLs (http://host/path) or CONNECT", 0);
      throw Refusal(400, "bad-request", "only http:// URLs can be proxied in the clear; use CONNECT for https", 0);
    }
    t.remove_prefix(scheme.size());
    size_t end = t.find_first_of("/?#");
    std::string_view authority = t.substr(0, end);
    if (authority.find('@') != std::string_view::npos)
      throw Refusal(400, "bad-request", "user information in the URL (user@host) is refused", 0);
    auto hp = split_host_port(authority, false, 80);
    if (!hp) throw Refusal(400, "bad-request", hp.error().message, 0);
    Target out;
    out.host = hp->host;
    out.port = hp->port;
    out.path = end == std::string_view::npos ? "/" : std::string(t.substr(end));
    if (out.path.front() != '/') out.path = "/" + out.path;
    if (out.path.find('#') != std::string::npos) throw Refusal(400, "bad-request", "a fragment in the request target", 0);
    return out;
  }

  // Ambiguous framing is refused, never forwarded: two parsers (ours and
  // the server's) must not disagree about where a request ends.
  template <class Msg>
  static void check_framing(const Msg& m) {
    size_t cl = m.count(http::field::content_length), te = m.count(http::field::transfer_encoding);
    if (cl > 1) throw Refusal(400, "bad-request", "more than one Content-Length", 0);
    if (cl && te) throw Refusal(400, "bad-request", "both Content-Length and Transfer-Encoding", 0);
    if (te > 1) throw Refusal(400, "bad-request", "more than one Transfer-Encoding", 0);
    if (te && !iequals(trim(m[http::field::transfer_encoding]), "chunked"))
      throw Refusal(400, "bad-request", "Transfer-Encoding other than 'chunked'", 0);
    if (m.count(http::field::host) > 1) throw Refusal(400, "bad-request", "more than one Host header", 0);
  }

  template <class Msg>
  static void strip_hop_by_hop(Msg& m, bool keep_upgrade) {
    std::vector<std::string> listed;
    for (auto const& tok : http::token_list{m[http::field::connection]}) listed.emplace_back(tok);
    for (const auto& t : listed) {
      // "Connection: Content-Length" would strip the framing after it was
      // parsed, and the body would reach the server as requests of its own.
      if (iequals(t, "content-length") || iequals(t, "transfer-encoding") || iequals(t, "host"))
        throw Refusal(400, "bad-request", fmt::format("Connection names the {} header", t), 0);
      if (!(keep_upgrade && iequals(t, "upgrade"))) m.erase(t);
    }
    for (auto f : {http::field::proxy_connection, http::field::proxy_authorization, http::field::keep_alive,
                   http::field::te, http::field::trailer, http::field::proxy_authenticate})
      m.erase(f);
    m.erase(http::field::connection);
    if (!keep_upgrade) m.erase(http::field::upgrade);
    else m.set(http::field::connection, "upgrade");
  }

  template <bool isRequest>
  static awaitable<uint64_t> relay(Session& s, tcp::socket& in, boost::beast::flat_buffer& buf,
                                   http::parser<isRequest, http::buffer_body>& p, tcp::socket& out) {
    http::serializer<isRequest, http::buffer_body> sr{p.get()};
    std::array<char, 16384> chunk;
    uint64_t total = 0;
    co_await http::async_write_header(out, sr, use_awaitable);
    do {
      if (!p.is_done()) {
        p.get().body().data = chunk.data();
        p.get().body().size = chunk.size();
        error_code ec;
        co_await http::async_read(in, buf, p, asio::redirect_error(use_awaitable, ec));
        if (ec == http::error::need_buffer) ec = {};
        if (ec) throw boost::system::system_error(ec);
        p.get().body().size = chunk.size() - p.get().body().size;
        p.get().body().data = chunk.data();
        p.get().body().more = !p.is_done();
        total += p.get().body().size;
        s.touch();
      } else {
        p.get().body().data = nullptr;
        p.get().body().size = 0;
      }
      error_code ec;
      co_await http::async_write(out, sr, asio::redirect_error(use_awaitable, ec));
      if (ec == http::error::need_buffer) ec = {};
      if (ec) throw boost::system::system_error(ec);
    } while (!p.is_done() && !sr.is_done());
    co_return total;
  }

  awaitable<void> http_session(std::shared_ptr<Session> s, boost::beast::flat_buffer& buf) {
    for (bool first = true;; first = false) {
      s->touch(first ? kHeaderTimeout : kIdleTimeout);
      http::request_parser<http::buffer_body> req;
      req.header_limit(kHeaderLimit);
      req.body_limit(std::numeric_limits<std::uint64_t>::max());
      Record rec;
      rec.client = "http";
      {
        error_code ec;
        if (!first && buf.size() == 0) {
          // Between requests: wait for the next one without a deadline
          // shorter than the idle one, then give it the header timeout.
          co_await s->client.async_wait(tcp::socket::wait_read, asio::redirect_error(use_awaitable, ec));
          if (ec || s->closed) co_return;
          s->touch(kHeaderTimeout);
        }
        co_await http::async_read_header(s->client, buf, req, asio::redirect_error(use_awaitable, ec));
        if (ec == http::error::end_of_stream || s->closed) co_return;
        if (ec) {
          bool big = ec == http::error::header_limit;
          rec.rule = fmt::format("malformed request: {}", ec.message());
          rec.decision = "deny";
          audit(rec);
          std::string msg = error_response(big ? 431 : 400, "bad-request", rec.rule);
          co_await send_text(*s, msg);
          co_return;
        }
      }
      auto& m = req.get();
      rec.method = std::string(m.method_string());
      std::optional<Refusal> refused;  // (no co_await inside a catch block)
      try {
        check_framing(m);
        if (m.method() == http::verb::connect) {
          rec.client = "connect";
          rec.requested = std::string(m.target());
          auto hp = split_host_port(m.target(), true, 0);
          if (!hp) throw Refusal(400, "bad-request", fmt::format("CONNECT target: {}", hp.error().message), 0);
          auto route = co_await decide(rec, hp->host, hp->port);
          co_await open_tunnel(*s, rec, route, hp->port);
          rec.decision = "allow";
          static const std::string ok = "HTTP/1.1 200 Connection Established\r\n\r\n";
          co_await asio::async_write(s->client, asio::buffer(ok), use_awaitable);
          rec.method.clear();
          co_await tunnel(s, rec, buf);
          audit(rec);
          co_return;
        }
        Target t = parse_absolute(m.target());
        rec.requested = t.host;
        rec.port = t.port;
        auto a = normalize_host(t.host);
        if (!a) throw Refusal(400, "bad-host", "malformed host: " + a.error().message, 0);
        if (m.count(http::field::host)) {
          auto hh = split_host_port(m[http::field::host], false, 80);
          auto b = hh ? normalize_host(hh->host) : Result<Host>(hh.error());
          if (!b || a->name != b->name || hh->port != t.port)
            throw Refusal(400, "host-mismatch",
                          fmt::format("the Host header '{}' does not name the URL's host '{}:{}'",
                                      std::string(m[http::field::host]), t.host, t.port),
                          0);
        }
        auto q = t.path.find('?');
        rec.path = q == std::string::npos ? t.path : t.path.substr(0, q) + "?…";
        auto route = co_await decide(rec, t.host, t.port);
        std::string key = hostport(rec.host, t.port);
        if (s->upstream_key != key || !s->upstream.is_open()) {
          s->upstream_key.clear();
          if (route.via_parent) co_await dial_parent(*s, rec, cfg.policy.parent->http);
          else co_await dial(*s, rec, route.addrs, t.port);
          s->upstream_key = key;
        }
        rec.decision = "allow";
        bool upgrade = m.count(http::field::upgrade) > 0;
        bool client_keep_alive = m.keep_alive();
        strip_hop_by_hop(m, upgrade);
        std::string authority = hostport(rec.host, t.port);
        if (t.port == 80) authority.resize(authority.rfind(':'));  // the default port is not written
        m.set(http::field::host, authority);
        if (!route.via_parent) m.target(t.path);
        else m.target(fmt::format("http://{}{}", authority, t.path));
        if (iequals(trim(m[http::field::expect]), "100-continue")) {
          m.erase(http::field::expect);
          static const std::string cont = "HTTP/1.1 100 Continue\r\n\r\n";
          co_await asio::async_write(s->client, asio::buffer(cont), use_awaitable);
        }
        rec.up += co_await relay<true>(*s, s->client, buf, req, s->upstream);

        // The response, relayed the same way (1xx interim ones first).
        boost::beast::flat_buffer ubuf;
        for (;;) {
          http::response_parser<http::buffer_body> res;
          res.header_limit(64 * 1024);
          res.body_limit(std::numeric_limits<std::uint64_t>::max());
          if (m.method() == http::verb::head) res.skip(true);
          co_await http::async_read_header(s->upstream, ubuf, res, use_awaitable);
          auto& r = res.get();
          int code = r.result_int();
          check_framing(r);
          bool switching = code == 101 && upgrade;
          bool server_keep_alive = r.keep_alive() && !res.need_eof();
          strip_hop_by_hop(r, switching);
          if (code >= 100 && code < 200 && !switching) {
            co_await relay<false>(*s, s->upstream, ubuf, res, s->client);
            continue;
          }
          bool keep = client_keep_alive && server_keep_alive;
          if (!switching) r.keep_alive(keep);
          rec.down += co_await relay<false>(*s, s->upstream, ubuf, res, s->client);
          if (switching) {
            // WebSocket and friends: the request was checked; now bytes.
            if (ubuf.size()) co_await asio::async_write(s->client, ubuf.data(), use_awaitable);
            co_await tunnel(s, rec, buf);
            audit(rec);
            co_return;
          }
          audit(rec);
          if (ubuf.size() || !keep) {  // the server sent more than it said, or either side ends here
            error_code ec;
            s->upstream.close(ec);
            s->upstream_key.clear();
          }
          if (!keep) co_return;
          break;
        }
      } catch (const Refusal& r) {
        refused = r;
      }
      if (refused) {
        record_refusal(rec, *refused);
        std::string who = !rec.host.empty() ? hostport(rec.host, rec.port)
                          : !rec.requested.empty() ? fmt::format("{}:{}", rec.requested, rec.port)
                                                   : std::string("request");
        std::string msg = error_response(refused->status, refused->tag, fmt::format("{}: {}", who, refused->what()));
        co_await send_text(*s, msg);
        co_return;
      }
    }
  }

  // ---------- sessions ----------

  awaitable<void> session(tcp::socket sock) {
    auto s = std::make_shared<Session>(std::move(sock));
    ++sessions;
    error_code ec;
    s->client.set_option(tcp::no_delay(true), ec);
    asio::co_spawn(*io, watch(s), asio::detached);
    boost::beast::flat_buffer buf(kHeaderLimit + 4096);
    try {
      // The first byte says which protocol: 5 is SOCKS5, a letter HTTP.
      size_t n = co_await s->client.async_read_some(buf.prepare(1), use_awaitable);
      buf.commit(n);
      uint8_t b0 = static_cast<const uint8_t*>(buf.data().data())[0];
      if (b0 == 0x05) co_await socks(s, buf);
      else if (b0 == 0x04) {
        // SOCKS4 has no way to name a host safely (4a aside) and no IPv6.
        static const uint8_t no[8] = {0x00, 0x5B, 0, 0, 0, 0, 0, 0};
        co_await asio::async_write(s->client, asio::buffer(no), use_awaitable);
      } else {
        co_await http_session(s, buf);
      }
    } catch (const std::exception& e) {
      log::debug("proxy: connection ended: {}", e.what());
    }
    s->close();
    --sessions;
  }

  awaitable<void> accept_loop(tcp::acceptor& acc) {
    for (;;) {
      error_code ec;
      tcp::socket sock = co_await acc.async_accept(asio::redirect_error(use_awaitable, ec));
      if (ec) {
        if (ec == asio::error::operation_aborted || !acc.is_open()) co_return;
        // Out of descriptors, say: back off a little instead of spinning.
        asio::steady_timer t(*io, std::chrono::milliseconds(50));
        co_await t.async_wait(asio::redirect_error(use_awaitable, ec));
        continue;
      }
      if (sessions >= kMaxSessions) {
        if (!told_full) log::info("proxy: more than {} connections at once; refusing new ones", kMaxSessions);
        told_full = true;
        continue;  // the socket closes here
      }
      asio::co_spawn(*io, session(std::move(sock)), asio::detached);
    }
  }
};

Proxy::Proxy(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<Proxy>> Proxy::start(ProxyConfig cfg) {
  auto impl = std::make_unique<Impl>(std::move(cfg));
  impl->local = local_addresses();
  // Each tunnel holds two sockets and two pipes: lift the soft descriptor
  // limit to the hard one (the sandbox was cloned before, and keeps its own).
  struct rlimit rl {};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, 1 << 16);
    (void)::setrlimit(RLIMIT_NOFILE, &rl);
  }
  try {
    auto adopt = [&](UniqueFd& fd) {
      auto acc = std::make_unique<tcp::acceptor>(*impl->io);
      struct sockaddr_storage ss {};
      socklen_t len = sizeof ss;
      ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len);
      acc->assign(ss.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), fd.release());
      return acc;
    };
    if (impl->cfg.http_listener) impl->http_acc = adopt(impl->cfg.http_listener);
    if (impl->cfg.socks_listener) impl->socks_acc = adopt(impl->cfg.socks_listener);
  } catch (const std::exception& e) {
    return err("proxy: cannot use the listening sockets: {}", e.what());
  }
  Impl* p = impl.get();
  if (p->http_acc) asio::co_spawn(*p->io, p->accept_loop(*p->http_acc), asio::detached);
  if (p->socks_acc) asio::co_spawn(*p->io, p->accept_loop(*p->socks_acc), asio::detached);
  p->thread = std::thread([p] {
    for (;;) {
      try {
        p->io->run();
        return;
      } catch (const std::exception& e) {
        log::line(fmt::format("proxy: {}", e.what()));  // one session's bug must not end the others
      }
    }
  });
  return std::make_unique<Proxy>(std::move(impl));
}

void Proxy::update_rules(NetworkPolicy rules) {
  Impl* p = impl_.get();
  asio::post(*p->io, [p, r = std::move(rules)]() mutable {
    p->cfg.policy.allowed = std::move(r.allowed);
    p->cfg.policy.denied = std::move(r.denied);
    p->cfg.policy.denied_reasons = std::move(r.denied_reasons);
    p->cfg.policy.denied_addresses = std::move(r.denied_addresses);
    p->cfg.policy.strict = r.strict;
  });
}

std::vector<std::string> Proxy::stop_and_summarize() {
  if (impl_->thread.joinable()) {
    impl_->io->stop();
    impl_->thread.join();
  }
  std::vector<std::string> out;
  for (const auto& [key, r] : impl_->refused)
    out.push_back(fmt::format("refused network access to {}{}: {}", key,
                              r.count > 1 ? fmt::format(" ({} times)", r.count) : "", r.reason));
  return out;
}

Proxy::~Proxy() { (void)stop_and_summarize(); }

}  // namespace airlock::net
