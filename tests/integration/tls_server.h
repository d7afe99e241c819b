// The host side of the TLS tests: a throw-away PKI made with the openssl
// CLI when the world starts, and HTTP(S) servers (Python, stdlib only) on
// 127.0.0.x that write down every request they get: method, path, headers,
// body, and the TLS server name the client asked for. A test proves what
// did or did not reach a server by reading that record after the sandbox
// has gone, never by believing what the client inside was told.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "harness.h"

namespace airlock::test {

// One event a server wrote down. "open" (a connection whose handshake
// passed), "head" (a request's header, written as soon as it arrived),
// "req" (the same request with its body; complete=false if the body was
// cut off), "handshake-failed", "close".
struct Hit {
  std::string ev, server, sni, method, path, body, error;
  std::vector<std::pair<std::string, std::string>> headers;
  std::vector<std::string> trailers;  // a chunked body's trailer fields, as they came
  bool complete = true;
  int conn = 0;
  // The first header of that name (case-insensitive), "" if none.
  std::string header(const std::string& name) const;
  // Everything the server got in this request, as one text to search.
  std::string text() const;
  std::string line() const;  // for failure messages
};

// Where the world's servers listen. The names the tests use map to these
// through network.hosts.
struct Endpoint {
  std::string name, ip;
  int port = 0;
  bool tls = true;
  std::string port_str() const { return std::to_string(port); }
};

// The certificates and keys, all PEM, readable by every user.
struct TestPki {
  std::string ca, ca_key;            // the test CA: what upstreamCaCertPaths names
  std::string leaf, leaf_key;        // api/other/excl/untrusted/expired.test, signed by the test CA
  std::string rogue_leaf;            // the same names, signed by a CA nobody trusts
  std::string expired_leaf;          // the same names and CA, out of date
  std::string wrong_leaf;            // the test CA, but only for nothing-here.test
  std::string user_ca, user_ca_key;  // a CA of "the user's own" (tlsTerminate.caCertPath/caKeyPath)
  std::string user_ca_cn = "airlock-test-user-ca";
  std::string test_ca_cn = "airlock-tls-test-ca";
};

// The world the TLS tests share (one per test process): the PKI, a web
// root with a dumb-HTTP git repository, and these servers, each answering
// any method with a JSON echo of the request ({"server", "method", "path",
// "headers", "body"}); /files/... serves the web root; /strip adds the
// response headers X-Secret-Header and X-Kept-Header; /gzip answers the
// echo gzip-compressed, asked or not; /pad?n=N answers N
// bytes, the request's Authorization value, then 64 more; a request
// carrying Authorization gets it back in X-Echo-Authorization.
//
//   api        127.0.0.1  TLS  leaf          api.test: the host secrets are bound to
//   plain      127.0.0.1  HTTP               api.test's plain-HTTP port
//   other      127.0.0.2  TLS  leaf          other.test: allowed, bound to nothing
//   excl       127.0.0.3  TLS  leaf          excl.test: excluded from inspection
//   untrusted  127.0.0.5  TLS  rogue_leaf    untrusted.test
//   expired    127.0.0.6  TLS  expired_leaf  expired.test
//   wrongname  127.0.0.7  TLS  wrong_leaf    wrongname.test
class TlsWorld {
 public:
  TlsWorld();
  ~TlsWorld();
  TlsWorld(const TlsWorld&) = delete;
  TlsWorld& operator=(const TlsWorld&) = delete;

  const TestPki& pki() const { return pki_; }
  const Endpoint& at(const std::string& name) const;
  // "api.test:PORT" for a server name ("plain" is api.test too).
  std::string hostport(const std::string& name) const;
  std::string host_of(const std::string& name) const;

  // Forgets what the servers saw so far (at the start of each test).
  void reset();
  // Waits (up to 3 s) until every connection a server accepted is closed,
  // then returns its events (all servers if `server` is empty).
  std::vector<Hit> hits(const std::string& server = "");
  // Only the requests ("req" events) of one server.
  std::vector<Hit> requests(const std::string& server);
  // Every event, one per line, for failure messages.
  std::string log(const std::string& server = "");

 private:
  TempTree tree_;
  TestPki pki_;
  std::vector<Endpoint> endpoints_;
  pid_t pid_ = -1;
  std::string log_path_;
};

// What every TLS test needs around a sandbox: a fixture (workspace, fake
// home), settings naming the world's hosts, and the caller's proxies
// blanked (else airlock would chain to them as its parent proxy).
struct TlsRun {
  explicit TlsRun(TlsWorld& w) : world(w) {}
  TlsWorld& world;
  SandboxFixture fx;

  // Settings JSON: `network` is merged over allowedDomains (every world
  // host), hosts, allowPrivateAddresses and tlsTerminate (trusting the test
  // CA upstream) unless `tls` is false; `credentials` is added if not null;
  // `tls_extra` is merged into tlsTerminate.
  std::string settings(const nlohmann::json& network = nlohmann::json::object(),
                       const nlohmann::json& credentials = nullptr,
                       const nlohmann::json& tls_extra = nlohmann::json::object(), bool tls = true);
  // airlock run --settings S [extra] -c SCRIPT with `env` added (proxies
  // blanked, XDG_CONFIG_HOME in the fixture).
  RunResult sh(const std::string& settings_path, const std::string& script,
               const std::map<std::string, std::string>& env = {}, const std::vector<std::string>& extra = {},
               int timeout_ms = 60000);
  // Runs a Python program (after kTlsPyLib and py_run_all(16)) in the sandbox.
  RunResult py(const std::string& settings_path, const std::string& body,
               const std::map<std::string, std::string>& env = {}, const std::vector<std::string>& extra = {});
};

// The fixture of the TLS test suites: the world, made once per suite and
// reset before each test, and a TlsRun `t` per test.
class TlsWorldTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { world_ = new TlsWorld(); }
  static void TearDownTestSuite() {
    delete world_;
    world_ = nullptr;
  }
  void SetUp() override { world_->reset(); }

  static TlsWorld& w() { return *world_; }
  static std::string hp(const std::string& n) { return w().hostport(n); }
  static std::string port(const std::string& n) { return w().at(n).port_str(); }

  static TlsWorld* world_;
  TlsRun t{*world_};
};

// The attacker's toolkit for Python inside the sandbox (stdlib only). It
// speaks CONNECT or SOCKS5 itself and then TLS with any server name, and
// sends exactly the bytes it is given. Results are "STATUS X-PROXY-ERROR
// SERVER": SERVER is the name of the test server that answered, "-" for an
// answer of airlock's own. Tunnels that fail say how: "connect-403
// needs-inspection", "socks-02", "tls-closed", "tls-<reason>".
//
//   https(host, port, raw, sni=host, via="connect")   one request, one result
//   req(method, path, hostport, headers=[], body=None) the bytes of a request
//   chunked(method, path, hostport, pieces, headers=[]) a list of pieces to send
//                                                     with a pause between
//   tail16(s)                                          the last 16 characters
extern const char* const kTlsPyLib;

// A credentials entry masking the variable `name`, injected only for
// `hosts` (a JSON list) unless that is null.
nlohmann::json mask(const std::string& name, const nlohmann::json& hosts);

// A real-looking secret of the given prefix: prefix + `body` padded with
// random letters and digits to 40 characters after the prefix.
std::string fake_secret(const std::string& prefix, const std::string& body);

}  // namespace airlock::test
