// TLS inspection and masked credentials with real clients (curl, Python,
// node, git) inside the sandbox and real HTTPS servers on the host: what
// must work. Each test checks what the client was told and, on the server's
// own record, what actually arrived.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <set>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "../escape/attack.h"
#include "harness.h"
#include "net_support.h"
#include "tls_server.h"

namespace airlock::test {

using nlohmann::json;

class TlsTest : public TlsWorldTest {};

// The placeholder has the real token's shape; curl (HTTP proxy and SOCKS),
// Python and node all reach the bound host, which gets the real token; no
// server ever sees the placeholder.
TEST_F(TlsTest, CurlPythonAndNodeSendTheRealSecretOnlyToTheBoundHost) {
  std::string real = fake_secret("sk-ant-api03-", "REALclients");
  std::string api = hp("api");
  auto s = t.settings({}, {{"envVars", {mask("API_TOKEN", {api})}}});
  t.fx.tree.write("ws/client.js",
                  "const http = require('http'), tls = require('tls');\n"
                  "const host = 'api.test', port = " + port("api") + ";\n"
                  "const r = http.request({host: '127.0.0.1', port: 3128, method: 'CONNECT', path: `${host}:${port}`});\n"
                  "r.on('connect', (res, socket) => {\n"
                  "  if (res.statusCode !== 200) { console.log('node connect', res.statusCode); return; }\n"
                  "  const t = tls.connect({socket, servername: host}, () => t.write(\n"
                  "    `GET /node HTTP/1.1\\r\\nHost: ${host}:${port}\\r\\nAuthorization: Bearer ${process.env.API_TOKEN}\\r\\n`\n"
                  "    + 'Connection: close\\r\\n\\r\\n'));\n"
                  "  let data = '';\n"
                  "  t.on('data', d => data += d);\n"
                  "  t.on('end', () => console.log('node', data.split(' ')[1]));\n"
                  "  t.on('error', e => console.log('node error', e.message));\n"
                  "});\n"
                  "r.on('error', e => console.log('node proxy error', e.message));\n"
                  "r.end();\n");
  std::string url = "https://" + api;
  auto r = t.sh(s,
                "echo \"ph=$API_TOKEN\"\n"
                "curl -sS -o /dev/null -w 'curl %{http_code}\\n' -H \"Authorization: Bearer $API_TOKEN\" " + url + "/curl\n"
                "curl -sS -o /dev/null -w 'socks %{http_code}\\n' --proxy \"$ALL_PROXY\" -H \"Authorization: Bearer $API_TOKEN\" " +
                    url + "/socks\n"
                "/usr/bin/python3 -c 'import os, sys, urllib.request as u\n"
                "q = u.Request(sys.argv[1], headers={\"Authorization\": \"Bearer \" + os.environ[\"API_TOKEN\"]})\n"
                "print(\"python\", u.urlopen(q).status)' " + url + "/python\n"
                "node client.js\n",
                {{"API_TOKEN", real}});
  EXPECT_EQ(r.code, 0) << r.err;
  for (const char* c : {"curl 200\n", "socks 200\n", "python 200\n", "node 200\n"}) EXPECT_TRUE(contains(r.out, c)) << r.err;
  std::string ph = value_of(r.out, "ph");
  EXPECT_EQ(ph.size(), real.size()) << ph;
  EXPECT_EQ(ph.rfind("sk-ant-api03-", 0), 0u) << ph;
  EXPECT_NE(ph, real);
  EXPECT_TRUE(lacks(r.out + r.err, real.substr(13)));

  auto reqs = w().requests("api");
  std::set<std::string> paths;
  for (const auto& h : reqs) {
    paths.insert(h.path);
    EXPECT_EQ(h.header("Authorization"), "Bearer " + real) << h.line();
    EXPECT_EQ(h.sni, "api.test") << h.line();  // airlock's own TLS names the host
  }
  EXPECT_EQ(paths, (std::set<std::string>{"/curl", "/socks", "/python", "/node"})) << w().log();
  for (const auto& h : w().hits()) EXPECT_TRUE(lacks(h.text(), ph)) << h.line();
}

// An excluded host is a tunnel airlock does not open: the client sees the
// server's own certificate (trusted through extraCaCertPaths, which airlock
// added to the bundle inside), and the server gets the placeholder as it
// was sent, never the real value.
TEST_F(TlsTest, AnExcludedHostIsAnOpaqueTunnelTrustedThroughTheBundle) {
  std::string real = fake_secret("sk-ant-api03-", "REALexcl");
  std::string audit = t.fx.tree.path("audit.jsonl");
  auto s = t.settings({}, {{"envVars", {mask("API_TOKEN", {hp("api")})}}},
                      {{"excludeDomains", {"excl.test"}}, {"extraCaCertPaths", {w().pki().ca}}});
  auto r = t.py(s,
                "print('ph=' + PH)\n"
                "for name in ('api', 'excl'):\n"
                "    host, port = name + '.test', int(os.environ['P_' + name])\n"
                "    s, err = tunnel(host, port)\n"
                "    ts = wrap(s, host)\n"
                "    issuer = dict(x[0] for x in ts.getpeercert()['issuer'])['commonName']\n"
                "    ts.sendall(req('GET', '/opaque-' + name, '%s:%d' % (host, port), ['Authorization: Bearer ' + PH]))\n"
                "    print(name, 'issuer=' + issuer, fmt(read_response(ts)))\n"
                "import subprocess\n"
                "c = subprocess.run(['curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}',\n"
                "                    'https://excl.test:%s/opaque-curl' % os.environ['P_excl']], capture_output=True, text=True)\n"
                "print('curl-excl', c.stdout + c.stderr.strip())\n",
                {{"API_TOKEN", real}, {"P_api", port("api")}, {"P_excl", port("excl")}}, {"--audit", audit});
  EXPECT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  std::string ph = value_of(r.out, "ph");
  ASSERT_EQ(ph.size(), real.size()) << r.out;
  // Inspected: airlock's CA. Excluded: the server's own.
  EXPECT_TRUE(contains(res["api"], " 200 - api"));
  EXPECT_TRUE(lacks(res["api"], "issuer=" + w().pki().test_ca_cn));
  EXPECT_EQ(res["excl"], "issuer=" + w().pki().test_ca_cn + " 200 - excl");
  EXPECT_EQ(res["curl-excl"], "200");

  auto api = w().requests("api");
  ASSERT_EQ(api.size(), 1u) << w().log();
  EXPECT_EQ(api[0].header("Authorization"), "Bearer " + real);
  auto excl = w().requests("excl");
  ASSERT_EQ(excl.size(), 2u) << w().log();
  EXPECT_EQ(excl[0].header("Authorization"), "Bearer " + ph) << excl[0].line();
  EXPECT_EQ(excl[0].sni, "excl.test");  // the client's own handshake reached the server
  for (const auto& h : w().hits("excl")) EXPECT_TRUE(lacks(h.text(), real.substr(13))) << h.line();

  // The excluded host's tunnels are audited as opaque; the inspected host's
  // requests as inspected.
  std::map<std::string, std::string> tls_of;
  for (const auto& l : audit_lines(audit)) tls_of[l.value("client", "") + " " + l.value("host", "")] += l.value("tls", "?") + " ";
  EXPECT_EQ(tls_of["https api.test"], "inspected ") << slurp(audit);
  EXPECT_EQ(tls_of["connect excl.test"], "opaque opaque ") << slurp(audit);
  EXPECT_EQ(tls_of["https excl.test"], "") << slurp(audit);
}

// The user's own CA signs the leaves airlock presents, and is in the
// bundle inside; its key is not (see TlsEscape.TheRealSecretAndTheCaKeyAreNowhereInside).
TEST_F(TlsTest, TheUsersOwnCaSignsTheLeaves) {
  t.fx.tree.write("home/.config/corp-ca/ca.pem", slurp(w().pki().user_ca));
  t.fx.tree.write("home/.config/corp-ca/ca.key", slurp(w().pki().user_ca_key));
  auto s = t.settings({}, nullptr,
                      {{"caCertPath", "~/.config/corp-ca/ca.pem"}, {"caKeyPath", "~/.config/corp-ca/ca.key"}});
  // A line from the middle of the CA certificate's PEM.
  std::istringstream pem(slurp(w().pki().user_ca));
  std::string line;
  for (int i = 0; i < 3; ++i) std::getline(pem, line);
  auto r = t.py(s,
                "s, err = tunnel('api.test', int(os.environ['P']))\n"
                "ts = wrap(s, 'api.test')\n"
                "print('issuer', dict(x[0] for x in ts.getpeercert()['issuer'])['commonName'])\n"
                "ts.sendall(req('GET', '/user-ca', 'api.test:' + os.environ['P']))\n"
                "print('get', fmt(read_response(ts)))\n"
                "print('bundle', open('/etc/ssl/certs/ca-certificates.crt').read().count(os.environ['LINE']))\n"
                "print('env', os.environ.get('SSL_CERT_FILE'), os.environ.get('CURL_CA_BUNDLE'))\n",
                {{"P", port("api")}, {"LINE", line}});
  EXPECT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_EQ(res["issuer"], w().pki().user_ca_cn);
  EXPECT_EQ(res["get"], "200 - api");
  EXPECT_EQ(res["bundle"], "1");
  EXPECT_EQ(res["env"], "/etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt");
  EXPECT_EQ(w().requests("api").size(), 1u) << w().log();
}

TEST_F(TlsTest, StripResponseHeadersRemovesThemFromInspectedAndPlainResponses) {
  // The server does send the header (asked directly, from the host).
  auto direct = run_program({"/usr/bin/curl", "-sS", "--noproxy", "*", "-D", "-", "-o", "/dev/null",
                             "http://127.0.0.1:" + port("plain") + "/strip"});
  ASSERT_TRUE(contains(direct.out, "X-Secret-Header: internal-value"));
  auto s = t.settings({{"stripResponseHeaders", {"X-Secret-Header"}}});
  auto r = t.sh(s, "curl -sS -D - -o /dev/null https://" + hp("api") + "/strip | tr -d '\\r'\n"
                   "curl -sS -D - -o /dev/null http://" + hp("plain") + "/strip | tr -d '\\r'\n");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(lacks(r.out, "internal-value"));
  EXPECT_TRUE(lacks(lower(r.out), "x-secret-header"));
  size_t kept = 0;
  for (size_t at = r.out.find("X-Kept-Header: kept-value"); at != std::string::npos;
       at = r.out.find("X-Kept-Header: kept-value", at + 1))
    ++kept;
  EXPECT_EQ(kept, 2u) << r.out;
}

// A masked file: the sandbox reads a placeholder of the same shape and the
// same line ending; the bound host gets the file's real content; the file
// on the host is untouched.
TEST_F(TlsTest, AMaskedFileShowsAPlaceholderThatIsSwappedOnTheWire) {
  std::string real = fake_secret("ghp_", "REALfile");
  t.fx.tree.write("home/.config/tok/token", real + "\n");
  auto s = t.settings({}, {{"files", {{{"path", "~/.config/tok/token"}, {"mode", "mask"}, {"injectHosts", {hp("api")}}}}}});
  auto r = t.sh(s, "f=~/.config/tok/token\n"
                   "echo \"ph=$(cat $f)\"\n"
                   "echo \"bytes=$(wc -c < $f)\"\n"
                   "echo \"last=$(tail -c 1 $f | od -An -tx1 | tr -d ' ')\"\n"
                   "curl -sS -o /dev/null -w 'code=%{http_code}\\n' -H \"Authorization: token $(cat $f)\" https://" +
                       hp("api") + "/file-cred\n");
  EXPECT_EQ(r.code, 0) << r.err;
  std::string ph = value_of(r.out, "ph");
  EXPECT_EQ(ph.size(), real.size()) << r.out;
  EXPECT_EQ(ph.rfind("ghp_", 0), 0u) << ph;
  EXPECT_NE(ph, real);
  EXPECT_EQ(value_of(r.out, "bytes"), std::to_string(real.size() + 1));
  EXPECT_EQ(value_of(r.out, "last"), "0a");
  EXPECT_EQ(value_of(r.out, "code"), "200") << r.err;
  auto reqs = w().requests("api");
  ASSERT_EQ(reqs.size(), 1u) << w().log();
  EXPECT_EQ(reqs[0].header("Authorization"), "token " + real);
  EXPECT_EQ(t.fx.tree.read("home/.config/tok/token"), real + "\n");
}

// git trusts airlock's CA through GIT_SSL_CAINFO (set by airlock, nothing
// passed on the command line) and clones a repository over inspected TLS.
TEST_F(TlsTest, GitClonesOverInspectedHttps) {
  std::string audit = t.fx.tree.path("audit.jsonl");
  auto s = t.settings();
  auto r = t.sh(s, "echo \"cainfo=$GIT_SSL_CAINFO\"\n"
                   "git clone -q https://" + hp("api") + "/files/repo.git out && cat out/file.txt && git -C out log --format=%s\n",
                {}, {"--audit", audit});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "cainfo=/etc/ssl/certs/ca-certificates.crt\ncloned through inspected TLS\nfirst\n") << r.err;
  EXPECT_TRUE(t.fx.tree.exists("ws/out/.git"));
  bool refs = false;
  for (const auto& h : w().requests("api")) refs |= h.path == "/files/repo.git/info/refs?service=git-upload-pack";
  EXPECT_TRUE(refs) << w().log();
  bool audited = false;
  for (const auto& l : audit_lines(audit))
    audited |= l.value("client", "") == "https" && l.value("path", "") == "/files/repo.git/info/refs?…" &&
               l.value("tls", "") == "inspected" && l.value("decision", "") == "allow";
  EXPECT_TRUE(audited) << slurp(audit);
}

// One audit line per inspected request (method, path without its query,
// "tls":"inspected"), one per tunnel, and exfiltration marked as such;
// neither the query, the placeholder nor the real value is written down.
TEST_F(TlsTest, AuditLinesForInspectedRequests) {
  std::string real = fake_secret("sk-ant-api03-", "REALaudit");
  std::string audit = t.fx.tree.path("audit.jsonl");
  auto s = t.settings({}, {{"envVars", {mask("API_TOKEN", {hp("api")})}}});
  auto r = t.sh(s,
                "echo \"ph=$API_TOKEN\"\n"
                "curl -sS -o /dev/null -H \"Authorization: Bearer $API_TOKEN\" 'https://" + hp("api") + "/a?q=querysecret'\n"
                "curl -sS -o /dev/null -H \"Authorization: Bearer $API_TOKEN\" --data-binary 0123456789 https://" + hp("api") + "/b\n"
                "curl -sS -o /dev/null -w 'exfil=%{http_code}\\n' -H \"Authorization: Bearer $API_TOKEN\" https://" + hp("other") + "/c\n",
                {{"API_TOKEN", real}}, {"--audit", audit});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(value_of(r.out, "exfil"), "403");
  std::string ph = value_of(r.out, "ph");
  auto lines = audit_lines(audit);
  const json *get = nullptr, *post = nullptr, *exfil = nullptr;
  for (const auto& l : lines) {
    // (An allowed inspected tunnel has no line of its own; its requests do.)
    if (l.value("client", "") == "connect") {
      EXPECT_EQ(l.value("tls", ""), "inspected") << l.dump();
    }
    if (l.value("client", "") != "https") continue;
    EXPECT_EQ(l.value("tls", ""), "inspected") << l.dump();
    std::string p = l.value("path", "");
    if (p == "/a?…") get = &l;
    if (p == "/b") post = &l;
    if (p == "/c") exfil = &l;
  }
  ASSERT_TRUE(get && post && exfil) << dump_all(lines);
  EXPECT_EQ(get->value("method", ""), "GET");
  EXPECT_EQ(get->value("host", ""), "api.test");
  EXPECT_EQ(get->value("port", 0), w().at("api").port);
  EXPECT_EQ(get->value("decision", ""), "allow");
  EXPECT_EQ(post->value("method", ""), "POST");
  EXPECT_GE(post->value("bytes_up", 0), 10);
  EXPECT_EQ(exfil->value("host", ""), "other.test");
  EXPECT_EQ(exfil->value("decision", ""), "deny");
  EXPECT_EQ(exfil->value("event", ""), "exfiltration");
  std::string text = slurp(audit);
  EXPECT_TRUE(lacks(text, "querysecret"));
  EXPECT_TRUE(lacks(text, real.substr(13)));
  ASSERT_EQ(ph.size(), real.size()) << r.out;
  EXPECT_TRUE(lacks(text, ph.substr(13)));
}

// airlock speaks HTTP/1.1 only inside the tunnels it opens: a client that
// offers h2 gets HTTP/1.1 by ALPN and works; one that offers nothing but
// h2 gets no ALPN answer and still works in HTTP/1.1.
TEST_F(TlsTest, Http2ClientsFallBackToHttp11) {
  auto s = t.settings();
  auto r = t.sh(s, "curl --http2 -sS -o /dev/null -w 'curl %{http_version} %{http_code}\\n' https://" + hp("api") + "/h2\n"
                   "/usr/bin/python3 - <<'EOF'\n"
                   "import os, socket, ssl\n"
                   "s = socket.create_connection(('127.0.0.1', 3128))\n"
                   "s.sendall(b'CONNECT " + hp("api") + " HTTP/1.1\\r\\n\\r\\n')\n"
                   "h = b''\n"
                   "while not h.endswith(b'\\r\\n\\r\\n'): h += s.recv(1)\n"
                   "c = ssl.create_default_context(); c.set_alpn_protocols(['h2'])\n"
                   "t = c.wrap_socket(s, server_hostname='api.test')\n"
                   "t.sendall(b'GET /h2-only HTTP/1.1\\r\\nHost: " + hp("api") + "\\r\\nConnection: close\\r\\n\\r\\n')\n"
                   "d = b''\n"
                   "while True:\n"
                   "    b = t.recv(65536)\n"
                   "    if not b: break\n"
                   "    d += b\n"
                   "print('python', t.selected_alpn_protocol(), d.split(b' ')[1].decode())\n"
                   "EOF\n");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "curl 1.1 200\npython None 200\n") << r.err;
  std::set<std::string> paths;
  for (const auto& h : w().requests("api")) paths.insert(h.path);
  EXPECT_EQ(paths, (std::set<std::string>{"/h2", "/h2-only"})) << w().log();
}

namespace {

// Settings that cannot be honoured stop airlock before the sandbox starts:
// exit 125, one line that names the setting, and the command never runs.
struct SettingsCase {
  std::string label, settings, names;
};

void expect_settings_errors(TlsRun& t, const std::vector<SettingsCase>& cases) {
  for (const auto& c : cases) {
    auto r = t.sh(c.settings, ": > ran", {{"API_TOKEN", "sk-ant-api03-settingsErrorValue0123456789abcdefghijkl"}});
    EXPECT_EQ(r.code, 125) << c.label << ": " << r.err;
    EXPECT_TRUE(contains(r.err, c.names)) << c.label;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << c.label << ": " << r.err;
    EXPECT_TRUE(lacks(r.err, "settingsErrorValue")) << c.label;
    EXPECT_FALSE(t.fx.tree.exists("ws/ran")) << c.label << ": the command ran";
  }
}

}  // namespace

TEST_F(TlsTest, SettingsErrorsExit125WithOneLineNamingTheSetting) {
  std::string api = hp("api");
  expect_settings_errors(
      t, {
             {"masked-without-tls", t.settings({}, {{"envVars", {mask("API_TOKEN", {api})}}}, {}, false),
              "network.tlsTerminate"},
             {"cert-without-key", t.settings({}, nullptr, {{"caCertPath", w().pki().user_ca}}), "caKeyPath"},
             {"relative-key", t.settings({}, nullptr, {{"caCertPath", w().pki().user_ca}, {"caKeyPath", "ca.key"}}),
              "caKeyPath"},
             {"inject-host-not-allowed", t.settings({}, {{"envVars", {mask("API_TOKEN", {"nowhere.test:443"})}}}),
              "injectHosts"},
             {"inject-host-excluded",
              t.settings({}, {{"envVars", {mask("API_TOKEN", {"excl.test:" + port("excl")})}}},
                         {{"excludeDomains", {"excl.test"}}}),
              "injectHosts"},
             // A key file that cannot be read, or that is not the certificate's.
             {"missing-ca-key",
              t.settings({}, nullptr, {{"caCertPath", w().pki().user_ca}, {"caKeyPath", "/nonexistent/ca.key"}}),
              "caKeyPath"},
             {"mismatched-ca-key",
              t.settings({}, nullptr, {{"caCertPath", w().pki().user_ca}, {"caKeyPath", w().pki().leaf_key}}),
              "caKeyPath"},
         });
  EXPECT_TRUE(w().hits().empty()) << w().log();
}

}  // namespace airlock::test
