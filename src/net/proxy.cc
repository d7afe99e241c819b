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

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <functional>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <nlohmann/json.hpp>
#include <thread>

#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "net/requests.h"
#include "tls/hello.h"
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
constexpr size_t kResponseHeaderLimit = 64 * 1024;
constexpr size_t kMaxSummaryLines = 200;  // refused hosts (and reasons) remembered for the summary
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
  std::string tls;     // "inspected" or "opaque" for tunnels
  bool exfil = false;  // a placeholder was on its way somewhere it is not bound to
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

// What a request body may carry: at most `max` bytes, and none of the
// `banned` placeholders (they would leave for a host they are not bound
// to). `tail` keeps the end of the last piece: a placeholder may straddle
// two.
struct BodyCheck {
  std::optional<uint64_t> max;
  uint64_t seen = 0;
  std::vector<const Secret*> banned;
  size_t keep = 0;
  std::string tail;
  std::function<void(const Secret&)> found;

  void feed(const char* p, size_t n) {
    seen += n;
    if (max && seen > *max)
      throw Refusal(413, "body-too-large", fmt::format("the request body is over maxBodyBytes ({} bytes)", *max), 0);
    if (banned.empty() || n == 0) return;
    std::string window = tail;
    window.append(p, n);
    for (const Secret* s : banned)
      if (window.find(s->placeholder) != std::string::npos) found(*s);
    tail = window.substr(window.size() - std::min(window.size(), keep > 0 ? keep - 1 : 0));
  }
};

// What a response may not carry into the sandbox: the real value of a
// secret (an API that echoes what it was sent). Each is turned back into its
// placeholder; the last bytes of each piece wait for the next one, since a
// value may straddle two. A value whose placeholder has another length
// cannot be swapped in a body of fixed length: the response is cut off.
struct Scrub {
  std::vector<const Secret*> secrets;
  size_t hold = 0;
  bool strict_encoding = false;  // secrets may have gone to this host: no compressed bodies
  std::string out, pending;

  std::string_view take(const char* p, size_t n, bool last) {
    out.swap(pending);
    pending.clear();
    out.append(p, n);
    for (const Secret* s : secrets) {
      std::string_view real = s->real->view();
      for (size_t at = out.find(real); at != std::string::npos; at = out.find(real, at + 1)) {
        if (real.size() != s->placeholder.size())
          throw Refusal(502, "secret-in-response",
                        fmt::format("the response carries the real value of {}; it was cut off", s->label), 0);
        out.replace(at, real.size(), s->placeholder);
      }
    }
    if (!last) {
      size_t keep = std::min(out.size(), hold);
      pending.assign(out, out.size() - keep, keep);
      out.resize(out.size() - keep);
    }
    return out;
  }

  template <class Fields>
  void headers(Fields& f) {
    std::vector<std::pair<std::string, std::string>> changed;
    for (auto it = f.begin(); it != f.end();) {
      std::string v(it->value());
      bool hit = false;
      for (const Secret* s : secrets)
        for (size_t at = v.find(s->real->view()); at != std::string::npos; at = v.find(s->real->view(), at + 1)) {
          v.replace(at, s->real->view().size(), s->placeholder);
          hit = true;
        }
      if (!hit) {
        ++it;
        continue;
      }
      changed.emplace_back(std::string(it->name_string()), std::move(v));
      it = f.erase(it);
    }
    for (auto& [n, v] : changed) f.insert(n, v);
  }
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
  std::unique_ptr<asio::ssl::context> server_tls, client_tls;  // TLS inspection: towards the sandbox, upstream
  size_t inspected = 0;                                        // inspected tunnels open now
  bool told_full = false, told_audit = false;

  // ---------- TLS contexts ----------

  struct SniChoice {
    tls::Authority* ca;
    const Host* host;
    std::string sni;
    bool mismatch = false;
  };

  // Where the SNI callback finds its connection's SniChoice. (Not the SSL's
  // app data: Asio's engine owns that and deletes what it finds there.)
  static int sni_index() {
    static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
  }

  static int on_server_name(SSL* ssl, int*, void*) {
    auto* c = static_cast<SniChoice*>(SSL_get_ex_data(ssl, sni_index()));
    const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!c || !name) return SSL_TLSEXT_ERR_OK;
    c->sni = name;
    auto n = normalize_host(c->sni);
    if (n && n->name == c->host->name) return SSL_TLSEXT_ERR_OK;
    c->mismatch = true;
    if (n) {
      auto other = c->ca->leaf(n->ip ? n->ip->str() : n->name);
      if (other) SSL_use_certificate(ssl, other->get());  // same key: the leaves share one
    }
    return SSL_TLSEXT_ERR_OK;
  }

  // Towards the sandbox: TLS 1.2 and up, HTTP/1.1 by ALPN. Upstream: the
  // host's trust store (OpenSSL's defaults, so SSL_CERT_FILE works) plus
  // upstreamCaCertPaths, peer verification on, no renegotiation.
  Status make_tls_contexts() {
    try {
      server_tls = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
      server_tls->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                              asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
      SSL_CTX_set_options(server_tls->native_handle(), SSL_OP_NO_RENEGOTIATION);

      SSL_CTX_set_alpn_select_cb(
          server_tls->native_handle(),
          [](SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned inlen, void*) {
            // Only HTTP/1.1 is spoken here: a client that offers it gets
            // it, one that offers only h2 gets no ALPN (and HTTP/1.1).
            for (unsigned i = 0; i < inlen;) {
              unsigned n = in[i];
              if (i + 1 + n > inlen) break;
              if (n == 8 && std::memcmp(in + i + 1, "http/1.1", 8) == 0) {
                *out = in + i + 1;
                *outlen = 8;
                return SSL_TLSEXT_ERR_OK;
              }
              i += 1 + n;
            }
            return SSL_TLSEXT_ERR_NOACK;
          },
          nullptr);
      SSL_CTX_set_tlsext_servername_callback(server_tls->native_handle(), on_server_name);
      client_tls = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
      client_tls->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                              asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
      client_tls->set_verify_mode(asio::ssl::verify_peer);
      SSL_CTX_set_options(client_tls->native_handle(), SSL_OP_NO_RENEGOTIATION);

      if (SSL_CTX_set_default_verify_paths(client_tls->native_handle()) != 1)
        return err("network.tlsTerminate: cannot load this machine's trust store: {}", tls::openssl_error());
      for (const auto& f : cfg.policy.tls.upstream_ca)
        if (SSL_CTX_load_verify_locations(client_tls->native_handle(), f.c_str(), nullptr) != 1)
          return err("network.tlsTerminate.upstreamCaCertPaths: {}: {}", f, tls::openssl_error());
      static const unsigned char alpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
      SSL_CTX_set_alpn_protos(client_tls->native_handle(), alpn, sizeof alpn);
    } catch (const std::exception& e) {
      return err("network.tlsTerminate: {}", e.what());
    }
    return {};
  }

  // ---------- audit ----------

  void audit(const Record& r) {
    if (r.decision != "allow") {
      std::string key = !r.host.empty()        ? hostport(r.host, r.port)
                        : !r.requested.empty() ? r.requested
                                               : std::string("(a malformed request)");
      // Requests refused inside an allowed connection: one line per reason.
      // Bounded: the reasons quote what the client sent.
      if (r.client == "https" || !r.method.empty()) key += "\n" + r.rule.substr(0, 200);
      if (refused.size() >= kMaxSummaryLines && !refused.count(key)) key = "(more hosts and reasons: see the audit file)";
      auto& e = refused[key];
      e.reason = r.rule.substr(0, 300);
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
    if (!r.tls.empty()) j["tls"] = r.tls;
    if (r.exfil) j["event"] = "exfiltration";
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
    if (cfg.secrets)
      if (const Secret* sec = cfg.secrets->find_in_name(raw_host))
        exfiltration(rec, *sec, fmt::format("was hidden in the host name '{}'", raw_host));
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
    rec.rule = r.what();
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
                         : status == 413 ? "Content Too Large" : status == 421 ? "Misdirected Request"
                         : status == 502 ? "Bad Gateway" : status == 503 ? "Service Unavailable" : "Error";
    std::string body = fmt::format("airlock: {}\n", text);
    return fmt::format(
        "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nX-Proxy-Error: {}\r\nConnection: close\r\n"
        "Content-Length: {}\r\n\r\n{}",
        status, reason, tag, body.size(), body);
  }

  static awaitable<void> send_text(Session& s, const std::string& msg) { co_await send_on(s.client, msg); }

  template <class Stream>
  static awaitable<void> send_on(Stream& to, const std::string& msg) {
    error_code ec;
    co_await asio::async_write(to, asio::buffer(msg), asio::redirect_error(use_awaitable, ec));
  }

  // ---------- placeholders, request rules, foreign tokens ----------

  [[noreturn]] void exfiltration(Record& rec, const Secret& sec, const std::string& how) {
    rec.exfil = true;
    std::string why = fmt::format("a placeholder for {} {}: refused as an exfiltration attempt", sec.label, how);
    log::line(why);
    if (cfg.secrets->end_on_exfiltration && cfg.end_sandbox) cfg.end_sandbox(why);
    rec.rule = why;
    throw Refusal(403, "exfiltration", why, 0x02);
  }

  // "Basic base64(user:password)": the decoded text, where a placeholder
  // hides from a plain search.
  static std::optional<std::string> basic_credentials(std::string_view v) {
    if (v.size() < 7 || !iequals(v.substr(0, 6), "basic ")) return std::nullopt;
    std::string b = trim(v.substr(6));
    if (b.empty() || b.size() % 4 != 0 || b.size() > 8192) return std::nullopt;
    std::string out(b.size() / 4 * 3, '\0');
    int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()), reinterpret_cast<const unsigned char*>(b.data()),
                            static_cast<int>(b.size()));
    if (n < 0) return std::nullopt;
    size_t pad = b.size() - b.find_last_not_of('=') - 1;
    out.resize(static_cast<size_t>(n) - std::min<size_t>(pad, 2));
    return out;
  }

  static std::string basic_encode(const std::string& s) {
    std::string out((s.size() + 2) / 3 * 4 + 1, '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), reinterpret_cast<const unsigned char*>(s.data()),
                            static_cast<int>(s.size()));
    out.resize(static_cast<size_t>(n));
    return "Basic " + out;
  }

  static std::string swap_in(std::string v, const std::vector<const Secret*>& found) {
    for (const Secret* sec : found)
      for (size_t at = v.find(sec->placeholder); at != std::string::npos; at = v.find(sec->placeholder, at)) {
        v.replace(at, sec->placeholder.size(), sec->real->view());
        at += sec->real->view().size();
      }
    return v;
  }

  // Every request, plain or inspected: the host's request rules, then the
  // placeholders (swapped in where bound, an exfiltration anywhere else),
  // then, on verified hosts, no credential but the user's own. Returns the
  // body cap that applies.
  // Query parameters that carry a token, for verified hosts.
  static bool credential_param(std::string name) {
    std::transform(name.begin(), name.end(), name.begin(), ::tolower);
    for (const char* n : {"access_token", "api_key", "apikey", "key", "token", "auth", "private_token", "client_secret",
                          "api-key", "auth_token", "x-api-key"})
      if (name == n) return true;
    return false;
  }

  // A credential value on a verified host, with the user's placeholders
  // taken out: what is left may be a scheme ("Bearer"), a user name, and
  // separators, but nothing that looks like a token of its own (16 or more
  // letters and digits in a row): "Bearer FOREIGNKEY... <placeholder>" or
  // Basic "foreignkey:<placeholder>" carry someone else's credential.
  static bool carries_other_token(std::string v, const std::vector<const Secret*>& ours) {
    for (const Secret* sec : ours)
      for (size_t at = v.find(sec->placeholder); at != std::string::npos; at = v.find(sec->placeholder))
        v.replace(at, sec->placeholder.size(), " ");
    size_t run = 0;
    for (char c : v) {
      run = std::isalnum(static_cast<unsigned char>(c)) ? run + 1 : 0;
      if (run >= 16) return true;
    }
    return false;
  }

  // Headers a placeholder is swapped in: the credential headers, and any
  // whose name says it holds a key or token. Never others (Origin, Referer,
  // X-Anything): a server that echoes those would hand the real value back.
  bool swappable_header(const SecretTable& t, const std::string& lower) const {
    if (credential_header(t, lower)) return true;
    for (const char* w : {"token", "key", "auth", "secret", "password", "credential", "signature"})
      if (lower.find(w) != std::string::npos) return true;
    return false;
  }

  // `target` is the origin-form target; `swap`: the connection is inspected
  // TLS (or plain HTTP with allowPlaintextInject) and its Host is the
  // tunnel's, so a bound placeholder may become its real value here.
  template <class Header>
  std::optional<uint64_t> check_request(Record& rec, Header& m, std::string_view origin_target, const Host& host,
                                        uint16_t port, bool tls) {
    auto v = judge_request(cfg.policy, host, port, m.method_string(), origin_target);
    if (!v.allowed) {
      rec.rule = v.rule;
      throw Refusal(v.status, v.status == 400 ? "ambiguous-path" : "blocked-by-request-rule", v.rule, 0);
    }
    if (v.has_rules) {
      rec.rule = rec.rule.empty() ? v.rule : rec.rule + "; " + v.rule;
      // Rules name methods; a server must not read another one than the
      // one judged.
      for (const char* o : {"x-http-method-override", "x-http-method", "x-method-override"})
        if (m.count(o))
          throw Refusal(403, "blocked-by-request-rule", fmt::format("{} is refused on hosts with request rules", o), 0);
    }
    const SecretTable* t = cfg.secrets.get();
    // Where requests are checked one by one (rules, credentials), upgrades
    // are WebSocket only: after a 101 the bytes are no longer read as
    // requests, so "Upgrade: h2c" would carry unchecked ones.
    if ((v.has_rules || t) && m.count(http::field::upgrade) && !iequals(trim(m[http::field::upgrade]), "websocket"))
      throw Refusal(400, "bad-request",
                    fmt::format("Upgrade '{}' is refused: only WebSocket upgrades pass where requests are checked",
                                std::string(m[http::field::upgrade])), 0);
    if (!t) return v.max_body;
    auto usable = [&](const Secret& sec) { return t->usable_at(sec, host, port, tls); };
    std::string to = tls ? host.name : host.name + " in plain HTTP";
    // Anywhere else a placeholder could ride: the method, header names, and
    // the URL once percent-decoded (the server decodes it).
    for (const Secret* sec : t->find(m.method_string()))
      exfiltration(rec, *sec, fmt::format("was on its way to {} as the method", to));
    for (const auto& f : m)
      for (const Secret* sec : t->find(f.name_string()))
        exfiltration(rec, *sec, fmt::format("was on its way to {} in a header name", to));
    std::string target(m.target());
    for (const Secret* sec : t->find(percent_decode(target)))
      if (target.find(sec->placeholder) == std::string::npos)
        exfiltration(rec, *sec, fmt::format("was on its way to {} percent-encoded in the URL", to));
    auto in_target = t->find(target);
    bool any_usable = std::any_of(t->secrets.begin(), t->secrets.end(), usable);
    // TRACE echoes the request, swapped credentials and all.
    if (any_usable && (m.method() == http::verb::trace || iequals(m.method_string(), "TRACK")))
      throw Refusal(403, "blocked-by-request-rule", "TRACE and TRACK are refused on hosts credentials go to", 0);
    for (const Secret* sec : in_target) {
      if (!usable(*sec)) exfiltration(rec, *sec, fmt::format("was on its way to {} in the URL", to));
      if (!sec->inject_query)
        throw Refusal(403, "placeholder-in-url",
                      fmt::format("a placeholder for {} is in the URL; airlock swaps it there only with injectInto "
                                  "[\"query\"]", sec->label), 0);
    }
    bool verify = t->verified(host, port);
    // A response that echoes a secret must be readable to be scrubbed.
    if (any_usable) m.erase(http::field::accept_encoding);
    struct Change {
      std::string name, value;
    };
    std::vector<Change> changes;
    if (verify) {
      // Tokens in the query: on a verified host, the user's own only.
      std::string_view q = origin_target.substr(std::min(origin_target.size(), origin_target.find('?')));
      if (!q.empty()) q.remove_prefix(1);
      while (!q.empty()) {
        std::string_view pair = q.substr(0, q.find('&'));
        q.remove_prefix(std::min(q.size(), pair.size() + 1));
        std::string_view pname = pair.substr(0, pair.find('='));
        std::string_view pval = pair.substr(std::min(pair.size(), pname.size() + 1));
        if (!credential_param(std::string(pname)) || pval.empty()) continue;
        std::vector<const Secret*> ours;
        for (const Secret* sec : t->find(pval))
          if (usable(*sec)) ours.push_back(sec);
        if (ours.empty() || carries_other_token(std::string(pval), ours))
          throw Refusal(403, "foreign-credential",
                        fmt::format("{} is a verified host: the '{}' query parameter must carry one of your own masked "
                                    "credentials, and it carries something else", host.name, std::string(pname)), 0);
      }
    }
    for (auto it = m.begin(); it != m.end();) {
      std::string name(it->name_string());
      std::transform(name.begin(), name.end(), name.begin(), ::tolower);
      std::replace(name.begin(), name.end(), '_', '-');  // CGI-style servers read X_Api_Key as X-Api-Key
      std::string value(it->value());
      auto basic = basic_credentials(value);
      auto found = t->find(value);
      if (basic)
        for (const Secret* sec : t->find(*basic))
          if (std::find(found.begin(), found.end(), sec) == found.end()) found.push_back(sec);
      for (const Secret* sec : found)
        if (!usable(*sec)) exfiltration(rec, *sec, fmt::format("was on its way to {} in the {} header", to, name));
      if (verify && credential_header(*t, name) &&
          (found.empty() || carries_other_token(basic ? *basic : value, found)))
        throw Refusal(403, "foreign-credential",
                      fmt::format("{} is a verified host: its {} header must carry one of your own masked credentials, "
                                  "and it carries something else", host.name, name), 0);
      if (basic) wipe(*basic);
      if (found.empty() || !swappable_header(*t, name)) {
        ++it;
        continue;
      }
      std::string swapped = basic ? basic_encode(swap_in(*basic_credentials(value), found)) : swap_in(value, found);
      changes.push_back({std::string(it->name_string()), std::move(swapped)});
      it = m.erase(it);
    }
    for (auto& c : changes) {
      m.insert(c.name, c.value);
      wipe(c.value);
    }
    if (!in_target.empty()) {
      std::string swapped = swap_in(target, in_target);
      m.target(swapped);
      wipe(swapped);
    }
    return v.max_body;
  }

  // Responses while secrets exist: real values turned back into
  // placeholders. Where a secret may have been sent, no compression either
  // (an echo inside gzip would pass unseen).
  std::optional<Scrub> make_scrub(const Host& host, uint16_t port, bool tls) {
    const SecretTable* t = cfg.secrets.get();
    if (!t) return std::nullopt;
    Scrub sc;
    for (const auto& sec : t->secrets) {
      sc.secrets.push_back(&sec);
      sc.hold = std::max(sc.hold, sec.real->view().size() - 1);
      if (t->usable_at(sec, host, port, tls)) sc.strict_encoding = true;
    }
    return sc;
  }

  // The body of a request: the cap, and placeholders that may not go where
  // the request goes (checked before each piece is sent on).
  BodyCheck body_check(Record& rec, const Host& host, uint16_t port, bool tls, std::optional<uint64_t> max,
                       const http::request<http::buffer_body>& m) {
    if (max && m.count(http::field::content_length)) {
      std::string cl(m[http::field::content_length]);
      if (cl.size() > 19 || std::stoull("0" + cl) > *max)
        throw Refusal(413, "body-too-large", fmt::format("the request body is over maxBodyBytes ({} bytes)", *max), 0);
    }
    BodyCheck c;
    c.max = max;
    if (const SecretTable* t = cfg.secrets.get()) {
      for (const auto& sec : t->secrets)
        if (!t->usable_at(sec, host, port, tls)) c.banned.push_back(&sec);
      c.keep = t->longest_placeholder();
      std::string to = tls ? host.name : host.name + " in plain HTTP";
      c.found = [this, &rec, to](const Secret& sec) { exfiltration(rec, sec, fmt::format("was on its way to {} in a request body", to)); };
    }
    return c;
  }

  // ---------- tunnels: inspected, checked or opaque ----------

  bool can_inspect(const Host& h, uint16_t port) const {
    if (!cfg.ca || !server_tls || !cfg.policy.tls.enabled) return false;
    for (const auto& d : cfg.policy.tls.exclude)
      if (pattern_matches(d, h, port, true)) return false;
    return true;
  }

  bool must_inspect(const Host& h, uint16_t port) const {
    return has_request_rules(cfg.policy, h, port) || (cfg.secrets && cfg.secrets->verified(h, port));
  }

  // Rules that only an inspected connection can enforce: refuse the tunnel
  // up front rather than let it pass unseen.
  void need_inspection(Record& rec, uint16_t port) {
    auto h = normalize_host(rec.host);
    if (h && must_inspect(*h, port) && !can_inspect(*h, port)) {
      rec.rule = fmt::format("{} has request rules or verified credentials, which need TLS inspection "
                             "(network.tlsTerminate, without excluding it)", hostport(rec.host, port));
      throw Refusal(403, "needs-inspection", rec.rule, 0x02);
    }
  }

  // Does the client speak first (TLS, HTTP), or the server (SSH, SMTP)?
  awaitable<bool> client_speaks_first(std::shared_ptr<Session> s) {
    auto ev = std::make_shared<Event>(io->get_executor());
    auto who = std::make_shared<int>(0);
    s->client.async_wait(tcp::socket::wait_read, [ev, who](error_code) {
      if (!*who) *who = 1;
      ev->set();
    });
    s->upstream.async_wait(tcp::socket::wait_read, [ev, who](error_code) {
      if (!*who) *who = 2;
      ev->set();
    });
    co_await ev->wait();
    error_code ec;
    s->client.cancel(ec);
    s->upstream.cancel(ec);
    co_return *who == 1;
  }

  // The client's first bytes, left where they are: at least `want` of
  // them, or all there will be (end of stream), or what came in time; or
  // fewer, as soon as they show that this is not TLS (a client that sends
  // two bytes and waits for an answer must not wait on us).
  awaitable<std::vector<uint8_t>> peek(std::shared_ptr<Session> s, const boost::beast::flat_buffer& pending, size_t want) {
    std::vector<uint8_t> head(want);
    size_t have = std::min(pending.size(), want);
    std::memcpy(head.data(), pending.data().data(), have);
    size_t from_pending = have;
    for (int tries = 0; have < want && tries < 500 && !s->closed; ++tries) {
      if (have > 0 && tls::hello_record_size(head.data(), have) == 0) break;  // not TLS: enough said
      ssize_t n = ::recv(s->client.native_handle(), head.data() + from_pending, want - from_pending,
                         MSG_PEEK | MSG_DONTWAIT);
      if (n == 0) break;
      if (n > 0) {
        have = from_pending + static_cast<size_t>(n);
        if (have >= want || tls::hello_record_size(head.data(), have) == 0) break;
      }
      // Not all there yet: look again shortly (a peek leaves the bytes
      // queued, so waiting for "readable" would not wait at all).
      asio::steady_timer t(*io, std::chrono::milliseconds(tries < 10 ? 1 : 20));
      error_code ec;
      co_await t.async_wait(asio::redirect_error(use_awaitable, ec));
    }
    head.resize(have);
    co_return head;
  }

  void refuse_open(Record& rec, int status, const std::string& tag, const std::string& why) {
    record_refusal(rec, Refusal(status, tag, why, 0));
    log::debug("proxy: {}: {}", hostport(rec.host, rec.port), why);
  }

  // After CONNECT's 200 or SOCKS's success: inspect TLS where the settings
  // say so; elsewhere check the ClientHello's server name and pass the
  // bytes through.
  awaitable<void> carry(std::shared_ptr<Session> s, Record& rec, boost::beast::flat_buffer& pending) {
    uint16_t port = rec.port;
    auto host = normalize_host(rec.host);
    if (!host) co_return;
    bool inspect = can_inspect(*host, port), must = must_inspect(*host, port);
    bool opaque_ok = !cfg.policy.refuse_opaque && !must;
    bool client_first = pending.size() > 0 || co_await client_speaks_first(s);
    if (s->closed) co_return;
    std::vector<uint8_t> head;
    if (client_first) head = co_await peek(s, pending, 5);
    size_t record = client_first ? tls::hello_record_size(head.data(), head.size()) : 0;
    if (record == 0) {  // not TLS
      rec.tls = "opaque";
      if (!opaque_ok) {
        refuse_open(rec, 403, "opaque-tunnel",
                    fmt::format("the traffic is not TLS, and {}", must ? "this host's rules need inspection"
                                                                       : "refuseOpaqueTunnels is on"));
        co_return;
      }
      co_await tunnel(s, rec, pending);
      audit(rec);
      co_return;
    }
    if (inspect) {
      if (pending.size()) {
        refuse_open(rec, 400, "bad-request", "the client sent data before the tunnel was open");
        co_return;
      }
      co_await inspect_tls(s, rec, *host, port);
      co_return;
    }
    rec.tls = "opaque";
    if (cfg.policy.refuse_opaque && cfg.policy.tls.enabled) {
      refuse_open(rec, 403, "opaque-tunnel", "the host is excluded from TLS inspection and refuseOpaqueTunnels is on");
      co_return;
    }
    if (cfg.policy.require_host_match) {
      head = co_await peek(s, pending, std::min<size_t>(record, 16384 + 5));
      tls::Hello hello = tls::parse_client_hello(head.data(), head.size());
      if (!hello.complete) {
        refuse_open(rec, 400, "bad-request", "the ClientHello did not arrive whole; its server name cannot be checked");
        co_return;
      }
      // Encrypted Client Hello hides the real server name behind an outer
      // one; a hello to a named host without any name is one to check too.
      if (hello.ech) {
        refuse_open(rec, 421, "host-mismatch", "the ClientHello is encrypted (ECH): its server name cannot be checked");
        co_return;
      }
      if (hello.sni.empty() && !host->ip) {
        refuse_open(rec, 421, "host-mismatch",
                    fmt::format("the ClientHello names no server; a tunnel to '{}' must name it", host->name));
        co_return;
      }
      if (!hello.sni.empty()) {
        auto sni = normalize_host(hello.sni);
        if (!sni || sni->name != host->name) {
          refuse_open(rec, 421, "host-mismatch",
                      fmt::format("the TLS server name '{}' is not the tunnel's host '{}' (domain fronting)",
                                  hello.sni, host->name));
          co_return;
        }
      }
    }
    co_await tunnel(s, rec, pending);
    audit(rec);
  }

  using TlsStream = asio::ssl::stream<tcp::socket&>;

  struct Counter {
    size_t& n;
    explicit Counter(size_t& c) : n(c) { ++n; }
    ~Counter() { --n; }
  };

  // The sandbox's TLS ends here, with a leaf of airlock's CA for the
  // tunnel's host; a verified TLS connection of airlock's own goes on.
  awaitable<void> inspect_tls(std::shared_ptr<Session> s, Record& rec, const Host& host, uint16_t port) {
    rec.tls = "inspected";
    if (inspected >= cfg.policy.tls.max_tunnels) {
      refuse_open(rec, 503, "too-many-tunnels", fmt::format("more than tlsTerminate.maxTunnels ({}) inspected connections at once",
                                                            cfg.policy.tls.max_tunnels));
      co_return;
    }
    Counter counting(inspected);
    auto leaf = cfg.ca->leaf(host.ip ? host.ip->str() : host.name);
    if (!leaf) {
      refuse_open(rec, 502, "tls", leaf.error().message);
      co_return;
    }
    TlsStream down(s->client, *server_tls);
    SSL_use_certificate(down.native_handle(), leaf->get());
    SSL_use_PrivateKey(down.native_handle(), cfg.ca->leaf_key());
    // A client that names another server (fronting, or a misdirected
    // client) gets a certificate for that name, so that it reads the 421
    // below instead of failing on a certificate error it cannot explain.
    SniChoice choice{cfg.ca.get(), &host, {}};
    SSL_set_ex_data(down.native_handle(), sni_index(), &choice);
    s->touch(std::chrono::milliseconds(cfg.policy.tls.handshake_timeout_ms));
    error_code ec;
    co_await down.async_handshake(asio::ssl::stream_base::server, asio::redirect_error(use_awaitable, ec));
    SSL_set_ex_data(down.native_handle(), sni_index(), nullptr);  // `choice` lives in this frame only
    if (ec) {
      refuse_open(rec, 400, "tls-handshake",
                  fmt::format("TLS handshake with the client failed: {} (does it trust airlock's CA?)", ec.message()));
      co_return;
    }
    std::optional<Refusal> early;
    if (choice.mismatch && cfg.policy.require_host_match)
      early = Refusal(421, "host-mismatch", fmt::format("the TLS server name '{}' is not the tunnel's host '{}' (domain fronting)",
                                                        choice.sni, host.name), 0);
    TlsStream up(s->upstream, *client_tls);
    if (!early) {
      SSL* u = up.native_handle();
      if (host.ip) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(u), host.ip->str().c_str());
      } else {
        SSL_set_tlsext_host_name(u, host.name.c_str());
        SSL_set1_host(u, host.name.c_str());
      }
      s->touch(std::chrono::milliseconds(cfg.policy.tls.handshake_timeout_ms));
      co_await up.async_handshake(asio::ssl::stream_base::client, asio::redirect_error(use_awaitable, ec));
      if (ec) {
        long vr = SSL_get_verify_result(u);
        early = Refusal(502, "upstream-certificate",
                        vr != X509_V_OK ? fmt::format("{}'s certificate was refused: {}", hostport(host.name, port),
                                                      X509_verify_cert_error_string(vr))
                                        : fmt::format("TLS with {} failed: {}", hostport(host.name, port), ec.message()),
                        0);
      }
    }
    co_await serve_inspected(s, rec, down, up, host, port, early);
    audit(rec);  // the tunnel itself, as for an opaque one (its requests have lines of their own)
  }

  // Copies bytes both ways between two streams (an upgraded connection
  // inside inspected TLS: no splice there).
  template <class A, class B>
  static awaitable<uint64_t> copy(std::shared_ptr<Session> s, A& from, B& to) {
    std::array<char, 16384> b;
    uint64_t total = 0;
    for (;;) {
      error_code ec;
      size_t n = co_await from.async_read_some(asio::buffer(b), asio::redirect_error(use_awaitable, ec));
      if (ec || s->closed) break;
      co_await asio::async_write(to, asio::buffer(b.data(), n), asio::redirect_error(use_awaitable, ec));
      if (ec) break;
      total += n;
      s->touch();
    }
    s->close();
    co_return total;
  }

  // Requests inside an inspected tunnel: each one checked like plain HTTP,
  // plus the Host must name the tunnel's host. `early` answers the first
  // request when the tunnel itself is refused (fronting, a bad upstream).
  awaitable<void> serve_inspected(std::shared_ptr<Session> s, Record& tunnel, TlsStream& down, TlsStream& up,
                                  const Host& host, uint16_t port, std::optional<Refusal> early) {
    // Bounded: a header or a chunk line that never ends is an error, not a
    // buffer that grows with it.
    boost::beast::flat_buffer buf(kHeaderLimit + 4096), ubuf(kResponseHeaderLimit + 4096);
    for (bool first = true;; first = false) {
      s->touch(first ? kHeaderTimeout : kIdleTimeout);
      http::request_parser<http::buffer_body> req;
      req.header_limit(kHeaderLimit);
      req.body_limit(std::numeric_limits<std::uint64_t>::max());
      Record rec = tunnel;
      rec.client = "https";
      rec.start = Clock::now();
      rec.up = rec.down = 0;
      error_code ec;
      co_await http::async_read_header(down, buf, req, asio::redirect_error(use_awaitable, ec));
      if (s->closed || ec == http::error::end_of_stream || ec == asio::ssl::error::stream_truncated ||
          ec == asio::error::eof)
        co_return;
      std::optional<Refusal> refused = early;
      if (ec && !refused)
        refused = Refusal(ec == http::error::header_limit ? 431 : 400, "bad-request", fmt::format("malformed request: {}", ec.message()), 0);
      auto& m = req.get();
      rec.method = std::string(m.method_string());
      try {
        if (!refused) {
          check_framing(m);
          std::string target(m.target());
          if (!target.empty() && target[0] != '/') {  // absolute-form inside the tunnel
            constexpr std::string_view scheme = "https://";
            if (!iequals(std::string_view(target).substr(0, scheme.size()), scheme))
              throw Refusal(400, "bad-request", "only https:// URLs or paths inside an inspected tunnel", 0);
            std::string rest = target.substr(scheme.size());
            size_t end = rest.find_first_of("/?");
            if (!names(rest.substr(0, end), 443, host.name, port))
              throw Refusal(421, "host-mismatch", fmt::format("the URL names another host than the tunnel's '{}'", host.name), 0);
            target = end == std::string::npos ? "/" : rest.substr(end);
            if (target[0] == '?') target = "/" + target;
            m.target(target);
          }
          auto q = target.find('?');
          rec.path = q == std::string::npos ? target : target.substr(0, q) + "?…";
          // The Host must name the tunnel's host; with requireHostMatch off a
          // request naming another passes, but never with a credential in it.
          bool host_agrees = m.count(http::field::host) == 1 && names(m[http::field::host], 443, host.name, port);
          if (!host_agrees && cfg.policy.require_host_match)
            throw Refusal(421, "host-mismatch",
                          m.count(http::field::host)
                              ? fmt::format("the Host header '{}' is not the tunnel's host '{}' (domain fronting)",
                                            std::string(m[http::field::host]).substr(0, 256), hostport(host.name, port))
                              : std::string("no Host header: it must name the tunnel's host"),
                          0);
          auto max_body = check_request(rec, m, target, host, port, host_agrees);
          bool upgrade = m.count(http::field::upgrade) > 0;
          bool client_keep_alive = m.keep_alive();
          strip_hop_by_hop(m, upgrade);
          if (iequals(trim(m[http::field::expect]), "100-continue")) {
            m.erase(http::field::expect);
            static const std::string cont = "HTTP/1.1 100 Continue\r\n\r\n";
            co_await asio::async_write(down, asio::buffer(cont), use_awaitable);
          }
          BodyCheck check = body_check(rec, host, port, true, max_body, m);
          rec.decision = "allow";
          rec.up += co_await relay<true>(*s, down, buf, req, up, &check);
          auto scrub = make_scrub(host, port, true);
          Next next = co_await respond(*s, up, ubuf, down, rec, m.method() == http::verb::head, upgrade, client_keep_alive,
                                       scrub ? &*scrub : nullptr);
          if (next == Next::Switched) {
            if (buf.size()) co_await asio::async_write(up, buf.data(), use_awaitable);
            Event done(io->get_executor());
            uint64_t back = 0;
            asio::co_spawn(
                *io,
                [s, &up, &down, &back, &done]() -> awaitable<void> {
                  back = co_await copy(s, up, down);
                  done.set();
                },
                asio::detached);
            rec.up += co_await copy(s, down, up);
            co_await done.wait();
            rec.down += back;
            audit(rec);
            co_return;
          }
          audit(rec);
          if (next == Next::Close || ubuf.size()) co_return;
          continue;
        }
      } catch (const Refusal& r) {
        refused = r;
      }
      if (refused) {
        record_refusal(rec, *refused);
        std::string msg = error_response(refused->status, refused->tag,
                                         fmt::format("{}: {}", hostport(host.name, port), refused->what()));
        co_await send_on(down, msg);
        co_return;
      }
    }
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
      need_inspection(rec, port);
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
    co_await carry(s, rec, buf);
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

  // Does `authority` ("host[:port]", the port `default_port` when not
  // written) name this canonical host and port?
  static bool names(std::string_view authority, uint16_t default_port, const std::string& name, uint16_t port) {
    auto hp = split_host_port(authority, false, default_port);
    if (!hp) return false;
    auto n = normalize_host(hp->host);
    return n && n->name == name && hp->port == port;
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

  template <bool isRequest, class In, class Out>
  static awaitable<uint64_t> relay(Session& s, In& in, boost::beast::flat_buffer& buf,
                                   http::parser<isRequest, http::buffer_body>& p, Out& out, BodyCheck* check = nullptr,
                                   Scrub* scrub = nullptr) {
    http::serializer<isRequest, http::buffer_body> sr{p.get()};
    std::vector<char> chunk(64 * 1024);  // (bodies: fewer, larger TLS writes per byte)
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
        if (check) check->feed(chunk.data(), p.get().body().size);  // before it is sent on
        if (scrub) {
          std::string_view v = scrub->take(chunk.data(), p.get().body().size, p.is_done());
          p.get().body().data = const_cast<char*>(v.data());
          p.get().body().size = v.size();
        }
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

  enum class Next { Keep, Close, Switched };

  // Relays one response (1xx interim ones first), strips what the settings
  // say, and says what comes next on the connection.
  template <class Up, class Down>
  awaitable<Next> respond(Session& s, Up& up, boost::beast::flat_buffer& ubuf, Down& down, Record& rec, bool head,
                          bool upgrade, bool client_keep_alive, Scrub* scrub = nullptr) {
    for (;;) {
      http::response_parser<http::buffer_body> res;
      res.header_limit(kResponseHeaderLimit);
      res.body_limit(std::numeric_limits<std::uint64_t>::max());
      if (head) res.skip(true);
      co_await http::async_read_header(up, ubuf, res, use_awaitable);
      auto& r = res.get();
      int code = r.result_int();
      check_framing(r);
      bool switching = code == 101 && upgrade;
      bool server_keep_alive = r.keep_alive() && !res.need_eof();
      strip_hop_by_hop(r, switching);
      for (const auto& h : cfg.policy.strip_response_headers) r.erase(h);
      if (scrub) {
        scrub->headers(r);
        std::string enc = trim(r[http::field::content_encoding]);
        if (scrub->strict_encoding && !enc.empty() && !iequals(enc, "identity"))
          throw Refusal(502, "encoded-response",
                        fmt::format("a host that may have been sent credentials answered with Content-Encoding '{}' "
                                    "(airlock asked for none): the body cannot be checked for echoed secrets", enc), 0);
      }
      if (code >= 100 && code < 200 && !switching) {
        co_await relay<false>(s, up, ubuf, res, down);
        continue;
      }
      bool keep = client_keep_alive && server_keep_alive;
      if (!switching) r.keep_alive(keep);
      rec.down += co_await relay<false>(s, up, ubuf, res, down, nullptr, scrub);
      if (switching) {
        if (ubuf.size()) co_await asio::async_write(down, ubuf.data(), use_awaitable);
        ubuf.consume(ubuf.size());
        co_return Next::Switched;
      }
      co_return keep ? Next::Keep : Next::Close;
    }
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
          need_inspection(rec, hp->port);
          co_await open_tunnel(*s, rec, route, hp->port);
          rec.decision = "allow";
          static const std::string ok = "HTTP/1.1 200 Connection Established\r\n\r\n";
          co_await asio::async_write(s->client, asio::buffer(ok), use_awaitable);
          rec.method.clear();
          co_await carry(s, rec, buf);
          co_return;
        }
        Target t = parse_absolute(m.target());
        rec.requested = t.host;
        rec.port = t.port;
        auto a = normalize_host(t.host);
        if (!a) throw Refusal(400, "bad-host", "malformed host: " + a.error().message, 0);
        if (m.count(http::field::host)) {
          if (!names(m[http::field::host], 80, a->name, t.port))
            throw Refusal(400, "host-mismatch",
                          fmt::format("the Host header '{}' does not name the URL's host '{}:{}'",
                                      std::string(m[http::field::host]), t.host, t.port),
                          0);
        }
        auto q = t.path.find('?');
        rec.path = q == std::string::npos ? t.path : t.path.substr(0, q) + "?…";
        auto route = co_await decide(rec, t.host, t.port);
        auto max_body = check_request(rec, m, t.path, *a, t.port, false);
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
        BodyCheck check = body_check(rec, *a, t.port, false, max_body, m);
        rec.up += co_await relay<true>(*s, s->client, buf, req, s->upstream, &check);

        // The response, relayed the same way.
        boost::beast::flat_buffer ubuf(kResponseHeaderLimit + 4096);
        auto scrub = make_scrub(*a, t.port, false);
        Next next = co_await respond(*s, s->upstream, ubuf, s->client, rec, m.method() == http::verb::head, upgrade,
                                     client_keep_alive, scrub ? &*scrub : nullptr);
        if (next == Next::Switched) {
          // WebSocket and friends: the request was checked; now bytes.
          co_await tunnel(s, rec, buf);
          audit(rec);
          co_return;
        }
        audit(rec);
        if (ubuf.size() || next == Next::Close) {  // the server sent more than it said, or either side ends here
          error_code ec;
          s->upstream.close(ec);
          s->upstream_key.clear();
        }
        if (next == Next::Close) co_return;
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
  if (impl->cfg.policy.tls.enabled && impl->cfg.ca) {
    auto st = impl->make_tls_contexts();
    if (!st) return st.error();
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
    out.push_back(fmt::format("refused network access to {}{}: {}", key.substr(0, key.find('\n')),
                              r.count > 1 ? fmt::format(" ({} times)", r.count) : "", r.reason));
  return out;
}

Proxy::~Proxy() { (void)stop_and_summarize(); }

}  // namespace airlock::net
