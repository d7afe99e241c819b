#include "tls_server.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "../escape/attack.h"
#include "net_support.h"

namespace airlock::test {

using nlohmann::json;

namespace {

// The servers. argv: LOG, then NAME IP CERT KEY WEBROOT per server (CERT
// "-" for plain HTTP). Prints "NAME PORT" per server, then "ready".
constexpr const char* kServerScript = R"PY(
import http.server, json, os, socketserver, ssl, sys, threading

log_path = sys.argv[1]
lock = threading.Lock()
counter = [0]

def record(ev, **kw):
    kw["ev"] = ev
    line = json.dumps(kw) + "\n"
    with lock, open(log_path, "a") as f:
        f.write(line)

class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 20

    def log_message(self, *a):
        pass

    def setup(self):
        with lock:
            counter[0] += 1
            self.conn_id = counter[0]
        self.sni = None
        self.handshake_ok = True
        c = self.request
        if isinstance(c, ssl.SSLSocket):
            c.settimeout(10)
            try:
                c.do_handshake()
                self.sni = getattr(c, "sni", None)
            except Exception as e:
                self.handshake_ok = False
                record("handshake-failed", server=self.server.name, conn=self.conn_id, error=str(e))
        if self.handshake_ok:
            record("open", server=self.server.name, conn=self.conn_id, sni=self.sni)
        super().setup()

    def handle(self):
        if self.handshake_ok:
            super().handle()

    def finish(self):
        try:
            super().finish()
        except Exception:
            pass
        record("close", server=self.server.name, conn=self.conn_id)

    # Any method, any case: the point is to write down what arrived.
    def handle_one_request(self):
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            self.serve()
            self.wfile.flush()
        except Exception:
            self.close_connection = True

    def base(self):
        return dict(server=self.server.name, conn=self.conn_id, sni=self.sni, method=self.command, path=self.path,
                    headers=[[k, v] for k, v in self.headers.items()])

    def read_body(self):
        body = b""
        self.trailers = []
        try:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                while True:
                    line = self.rfile.readline()
                    if not line:
                        return body, False
                    size = int(line.split(b";")[0].strip(), 16)
                    if size == 0:
                        while True:
                            t = self.rfile.readline()
                            if t in (b"\r\n", b"\n", b""):
                                return body, True
                            self.trailers.append(t.decode("latin-1").rstrip("\r\n"))
                    while size:
                        b = self.rfile.read(size)
                        if not b:
                            return body, False
                        body += b
                        size -= len(b)
                    self.rfile.readline()
            n = int(self.headers.get("Content-Length", "0") or 0)
            while n:
                b = self.rfile.read(n)
                if not b:
                    return body, False
                body += b
                n -= len(b)
            return body, True
        except Exception:
            return body, False

    def reply(self, code, body, ctype="application/json", extra=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def serve(self):
        record("head", **self.base())
        body, complete = self.read_body()
        record("req", body=body.decode("latin-1"), complete=complete, trailers=self.trailers, **self.base())
        if not complete:
            self.close_connection = True
            return
        path = self.path.split("?")[0]
        if path.startswith("/files/") and self.command in ("GET", "HEAD"):
            root = os.path.realpath(self.server.webroot)
            f = os.path.realpath(os.path.join(root, path[len("/files/"):]))
            if not f.startswith(root + "/") or not os.path.isfile(f):
                return self.reply(404, b"not found\n", "text/plain")
            with open(f, "rb") as fh:
                return self.reply(200, fh.read(), "application/octet-stream")
        if path == "/gzip":  # the echo, compressed whatever the client asked for
            import gzip
            echo = dict(server=self.server.name, headers={k.lower(): v for k, v in self.headers.items()})
            return self.reply(200, gzip.compress(json.dumps(echo).encode()), extra=[("Content-Encoding", "gzip")])
        if path == "/pad":  # N bytes, then the Authorization header's value, then more
            n = int(self.path.partition("n=")[2] or 0)
            body = b"x" * n + self.headers.get("Authorization", "").encode() + b"y" * 64
            return self.reply(200, body, "text/plain")
        extra = []
        if self.headers.get("Authorization"):
            extra.append(("X-Echo-Authorization", self.headers.get("Authorization")))
        if path == "/strip":
            extra += [("X-Secret-Header", "internal-value"), ("X-Kept-Header", "kept-value")]
        echo = dict(server=self.server.name, method=self.command, path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()}, body=body.decode("latin-1"))
        self.reply(200, (json.dumps(echo) + "\n").encode(), extra=extra)

servers = []
args = sys.argv[2:]
for i in range(0, len(args), 5):
    name, ip, cert, key, root = args[i:i + 5]
    srv = Server((ip, 0), Handler)
    srv.name, srv.webroot = name, root
    if cert != "-":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        def on_sni(sock, sni, c):
            sock.sni = sni
        ctx.sni_callback = on_sni
        # The handshake runs in each handler's thread, not in accept().
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    servers.append(srv)
    print(name, srv.server_address[1], flush=True)
for s in servers:
    threading.Thread(target=s.serve_forever, daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
)PY";

// The PKI, made in `dir`: EC P-256 everywhere (fast), two days of
// validity, except the expired leaf, whose notAfter is a day before its
// notBefore.
std::string pki_script(const TestPki& p) {
  return "set -e\n"
         "ec='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'\n"
         "openssl req -x509 $ec -keyout ca.key -out ca.pem -days 2 -subj /CN=" + p.test_ca_cn + "\n"
         "openssl req -x509 $ec -keyout rogue.key -out rogue.pem -days 2 -subj /CN=airlock-tls-rogue-ca\n"
         "openssl req -x509 $ec -keyout user-ca.key -out user-ca.pem -days 2 -subj /CN=" + p.user_ca_cn + "\n"
         "openssl req $ec -keyout leaf.key -out leaf.csr -subj /CN=api.test\n"
         "printf 'subjectAltName=DNS:api.test,DNS:other.test,DNS:excl.test,DNS:untrusted.test,DNS:expired.test\\n"
         "basicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext\n"
         "printf 'subjectAltName=DNS:nothing-here.test\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > wrong.ext\n"
         "openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out leaf.pem -days 2 -extfile ext\n"
         "openssl x509 -req -in leaf.csr -CA rogue.pem -CAkey rogue.key -CAcreateserial -out rogue-leaf.pem -days 2 -extfile ext\n"
         "openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out expired-leaf.pem -days -1 -extfile ext\n"
         "openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out wrong-leaf.pem -days 2 -extfile wrong.ext\n"
         "chmod 644 *\n";
}

}  // namespace

std::string Hit::header(const std::string& name) const {
  for (const auto& [k, v] : headers)
    if (lower(k) == lower(name)) return v;
  return "";
}

std::string Hit::text() const {
  std::string s = sni + "\n" + method + " " + path + "\n";
  for (const auto& [k, v] : headers) s += k + ": " + v + "\n";
  s += "\n" + body;
  for (const auto& t : trailers) s += "\n" + t;
  return s;
}

std::string Hit::line() const {
  std::string s = server + "#" + std::to_string(conn) + " " + ev;
  if (!sni.empty()) s += " sni=" + sni;
  if (!method.empty()) s += " " + method + " " + path;
  if (ev == "req") s += " (" + std::to_string(body.size()) + " body bytes" + (complete ? "" : ", cut off") + ")";
  for (const auto& [k, v] : headers)
    if (lower(k) == "host" || lower(k) == "authorization") s += " [" + k + ": " + v + "]";
  if (!error.empty()) s += " " + error;
  return s;
}

TlsWorld::TlsWorld() {
  tree_.mkdir("pki");
  tree_.mkdir("www");
  std::string pki = tree_.path("pki");
  auto made = host_sh(pki_script(pki_) + " 2>/dev/null", pki);
  if (made.code != 0) throw std::runtime_error("TLS test PKI: openssl failed: " + made.err);
  pki_.ca = pki + "/ca.pem";
  pki_.ca_key = pki + "/ca.key";
  pki_.leaf = pki + "/leaf.pem";
  pki_.leaf_key = pki + "/leaf.key";
  pki_.rogue_leaf = pki + "/rogue-leaf.pem";
  pki_.expired_leaf = pki + "/expired-leaf.pem";
  pki_.wrong_leaf = pki + "/wrong-leaf.pem";
  pki_.user_ca = pki + "/user-ca.pem";
  pki_.user_ca_key = pki + "/user-ca.key";

  // A bare repository served the "dumb" way (plain files under /files/).
  auto git = host_sh("set -e; g='git -c user.email=t@t -c user.name=t -c init.defaultBranch=main'\n"
                     "$g init -q src && echo 'cloned through inspected TLS' > src/file.txt\n"
                     "$g -C src add file.txt && $g -C src commit -qm first\n"
                     "$g clone -q --bare src www/repo.git && $g -C www/repo.git update-server-info\n"
                     "chmod -R a+rX www\n",
                     tree_.root());
  if (git.code != 0) throw std::runtime_error("TLS test world: git repository: " + git.err);

  log_path_ = tree_.path("servers.jsonl");
  std::string www = tree_.path("www");
  endpoints_ = {{"api", "127.0.0.1", 0, true},       {"plain", "127.0.0.1", 0, false},
                {"other", "127.0.0.2", 0, true},     {"excl", "127.0.0.3", 0, true},
                {"untrusted", "127.0.0.5", 0, true}, {"expired", "127.0.0.6", 0, true},
                {"wrongname", "127.0.0.7", 0, true}};
  std::map<std::string, std::string> cert = {{"api", pki_.leaf},          {"other", pki_.leaf},
                                             {"excl", pki_.leaf},         {"untrusted", pki_.rogue_leaf},
                                             {"expired", pki_.expired_leaf}, {"wrongname", pki_.wrong_leaf}};
  tree_.write("server.py", kServerScript);
  std::vector<std::string> argv = {kPython, tree_.path("server.py"), log_path_};
  for (const auto& e : endpoints_) {
    argv.insert(argv.end(), {e.name, e.ip});
    if (e.tls) argv.insert(argv.end(), {cert[e.name], pki_.leaf_key});
    else argv.insert(argv.end(), {"-", "-"});
    argv.push_back(www);
  }
  std::string errlog = tree_.path("servers.err");
  int out = -1;
  pid_ = spawn_host_server(argv, errlog, out);
  std::string text = read_until(out, "ready\n", std::chrono::seconds(15));
  ::close(out);
  std::istringstream in(text);
  for (std::string name; in >> name && name != "ready";) {
    int port = 0;
    in >> port;
    for (auto& e : endpoints_)
      if (e.name == name) e.port = port;
  }
  for (const auto& e : endpoints_)
    if (e.port <= 0) throw std::runtime_error("TLS test servers did not start (see " + errlog + "): " + slurp(errlog));
}

TlsWorld::~TlsWorld() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

const Endpoint& TlsWorld::at(const std::string& name) const {
  for (const auto& e : endpoints_)
    if (e.name == name) return e;
  throw std::runtime_error("no test server named " + name);
}

std::string TlsWorld::host_of(const std::string& name) const {
  return name == "plain" ? "api.test" : name + ".test";
}

std::string TlsWorld::hostport(const std::string& name) const { return host_of(name) + ":" + at(name).port_str(); }

void TlsWorld::reset() {
  hits();  // let the last test's connections end first
  std::ofstream(log_path_, std::ios::trunc);
}

std::vector<Hit> TlsWorld::hits(const std::string& server) {
  std::vector<Hit> all;
  size_t last_count = static_cast<size_t>(-1);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  for (;;) {
    all.clear();
    std::set<int> open;
    std::ifstream f(log_path_);
    for (std::string line; std::getline(f, line);) {
      json j = json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_object()) continue;  // a line being written
      Hit h;
      h.ev = j.value("ev", "");
      h.server = j.value("server", "");
      h.conn = j.value("conn", 0);
      if (j.contains("sni") && j["sni"].is_string()) h.sni = j["sni"].get<std::string>();
      h.method = j.value("method", "");
      h.path = j.value("path", "");
      h.body = j.value("body", "");
      h.error = j.value("error", "");
      h.complete = j.value("complete", true);
      if (j.contains("trailers"))
        for (const auto& t : j["trailers"]) h.trailers.push_back(t.get<std::string>());
      if (j.contains("headers"))
        for (const auto& kv : j["headers"]) h.headers.emplace_back(kv[0].get<std::string>(), kv[1].get<std::string>());
      if (h.ev == "open") open.insert(h.conn);
      if (h.ev == "close") open.erase(h.conn);
      all.push_back(std::move(h));
    }
    // Settled: nothing open, and nothing new since the last look.
    if ((open.empty() && all.size() == last_count) || std::chrono::steady_clock::now() > deadline) break;
    last_count = all.size();
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
  }
  if (server.empty()) return all;
  std::vector<Hit> mine;
  for (auto& h : all)
    if (h.server == server) mine.push_back(std::move(h));
  return mine;
}

std::vector<Hit> TlsWorld::requests(const std::string& server) {
  std::vector<Hit> out;
  for (auto& h : hits(server))
    if (h.ev == "req") out.push_back(std::move(h));
  return out;
}

std::string TlsWorld::log(const std::string& server) {
  std::string s = "what the servers saw:\n";
  for (const auto& h : hits(server)) s += "  " + h.line() + "\n";
  return s;
}

std::string TlsRun::settings(const json& network, const json& credentials, const json& tls_extra, bool tls) {
  json allowed = json::array();
  json hosts = json::object();
  for (const char* n : {"api", "plain", "other", "excl", "untrusted", "expired", "wrongname"}) {
    allowed.push_back(world.hostport(n));
    hosts[world.host_of(n)] = world.at(n).ip;
  }
  hosts["evil.test"] = "127.0.0.8";
  json net = {{"allowedDomains", allowed}, {"hosts", hosts}, {"allowPrivateAddresses", {"127.0.0.0/8"}}};
  if (tls) {
    json t = {{"upstreamCaCertPaths", {world.pki().ca}}};
    for (auto it = tls_extra.begin(); it != tls_extra.end(); ++it) t[it.key()] = it.value();
    net["tlsTerminate"] = t;
  }
  for (auto it = network.begin(); it != network.end(); ++it) net[it.key()] = it.value();
  json s = {{"network", net}};
  if (!credentials.is_null()) s["credentials"] = credentials;
  return write_settings(fx, s.dump());
}

RunResult TlsRun::sh(const std::string& settings_path, const std::string& script,
                     const std::map<std::string, std::string>& env, const std::vector<std::string>& extra,
                     int timeout_ms) {
  RunOptions o = proxy_free_options(timeout_ms);
  o.env["XDG_CONFIG_HOME"] = fx.tree.path("config");
  for (const auto& [k, v] : env) o.env[k] = v;
  return fx.sh(script, settings_args(settings_path, extra), o);
}

RunResult TlsRun::py(const std::string& settings_path, const std::string& body,
                     const std::map<std::string, std::string>& env, const std::vector<std::string>& extra) {
  return sh(settings_path, python_command(fx, "tlsattack", std::string(kTlsPyLib) + py_run_all(16) + "\n" + body), env, extra);
}

json mask(const std::string& name, const json& hosts) {
  json e = {{"name", name}, {"mode", "mask"}};
  if (!hosts.is_null()) e["injectHosts"] = hosts;
  return e;
}

TlsWorld* TlsWorldTest::world_ = nullptr;

std::string fake_secret(const std::string& prefix, const std::string& body) {
  static const char alnum[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::random_device rd;
  std::string s = prefix + body;
  while (s.size() < prefix.size() + 40) s.push_back(alnum[rd() % 62]);
  return s;
}

const char* const kTlsPyLib = R"PY(
import base64, json, os, socket, ssl, struct, sys, time
from concurrent.futures import ThreadPoolExecutor

HTTP, SOCKS = 3128, 1080
T = 8.0
PH = os.environ.get("API_TOKEN", "")

def b64(s):
    return base64.b64encode(s.encode()).decode()

def tail16(s):
    return s[-16:]

def recv_n(s, n):
    out = b""
    while len(out) < n:
        b = s.recv(n - len(out))
        if not b:
            break
        out += b
    return out

# (status, headers, body, rest) of the first whole response in data, or None.
def parse(data):
    end = data.find(b"\r\n\r\n")
    if not data.startswith(b"HTTP/") or end < 0:
        return None
    lines = data[:end].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    h = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        h.setdefault(k.strip().lower(), v.strip())
    try:
        n = int(h.get("content-length") or 0)
    except ValueError:
        n = 0
    if len(data) < end + 4 + n:
        return None
    return parts[1] if len(parts) > 1 else "?", h, data[end + 4:end + 4 + n], data[end + 4 + n:]

def read_response(s):
    data = b""
    try:
        while True:
            r = parse(data)
            if r:
                return r
            b = s.recv(65536)
            if not b:
                break
            data += b
    except socket.timeout:
        return ("timeout", {}, b"", b"")
    except (ssl.SSLError, OSError):
        pass
    return parse(data) or ("closed" if not data else "junk", {}, b"", b"")

def who(body):
    try:
        return json.loads(body)["server"]
    except Exception:
        return "-"

def fmt(r):
    code, h, body, _ = r
    if not h and code in ("closed", "junk", "timeout"):
        return code
    return "%s %s %s" % (code, h.get("x-proxy-error", "-"), who(body))

def req(method, path, hostport, headers=(), body=None, close=True):
    r = "%s %s HTTP/1.1\r\n" % (method, path)
    if hostport is not None:
        r += "Host: %s\r\n" % hostport
    for h in headers:
        r += h + "\r\n"
    if body is not None:
        r += "Content-Length: %d\r\n" % len(body)
    if close:
        r += "Connection: close\r\n"
    return (r + "\r\n").encode("latin-1") + (body.encode("latin-1") if body else b"")

# Pieces to send one by one, with a pause between: the header, then each
# chunk (the last with the terminating chunk).
def chunked(method, path, hostport, pieces, headers=()):
    out = [req(method, path, hostport, list(headers) + ["Transfer-Encoding: chunked"])]
    for p in pieces:
        out.append(b"%x\r\n%s\r\n" % (len(p), p.encode("latin-1")))
    out[-1] += b"0\r\n\r\n"
    return out

# Sends every piece, with a pause between, until the peer stops taking
# them (refused mid-way: its answer is still there to read).
def send_pieces(s, raw):
    if isinstance(raw, (bytes, str)):
        raw = [raw]
    for i, p in enumerate(raw):
        if i:
            time.sleep(0.2)
        s.sendall(p.encode("latin-1") if isinstance(p, str) else p)

def socks_open(host, port):
    s = socket.create_connection(("127.0.0.1", SOCKS), timeout=T)
    s.sendall(b"\x05\x01\x00")
    if recv_n(s, 2) != b"\x05\x00":
        return None, "socks-greet"
    hb = host.encode()
    s.sendall(b"\x05\x01\x00\x03" + bytes([len(hb)]) + hb + struct.pack(">H", port))
    r = recv_n(s, 10)
    if len(r) < 2:
        return None, "socks-closed"
    if r[1] != 0:
        return None, "socks-%02x" % r[1]
    return s, None

def tunnel(host, port, via="connect", target=None):
    if via == "socks":
        return socks_open(host, port)
    s = socket.create_connection(("127.0.0.1", HTTP), timeout=T)
    t = target or "%s:%d" % (host, port)
    s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (t, t)).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        b = s.recv(1)
        if not b:
            break
        head += b
    if not head.startswith(b"HTTP/"):
        return None, "connect-none"
    code = head.split(b" ")[1].decode()
    if code != "200":
        r = read_response_from(s, head)
        return None, "connect-%s %s" % (code, r[1].get("x-proxy-error", "-") if r else "-")
    return s, None

def read_response_from(s, data):
    try:
        while not parse(data):
            b = s.recv(65536)
            if not b:
                break
            data += b
    except OSError:
        pass
    return parse(data)

NOSNI = "(none)"

def wrap(s, sni):
    c = ssl.create_default_context()  # trusts $SSL_CERT_FILE: the bundle airlock put inside
    c.set_alpn_protocols(["http/1.1"])
    if sni == NOSNI:
        c.check_hostname = False
        return c.wrap_socket(s)
    return c.wrap_socket(s, server_hostname=sni)

# One request (or pieces of one) through a tunnel and TLS; its result.
def https(host, port, raw, sni=None, via="connect", target=None):
    try:
        s, err = tunnel(host, port, via, target)
        if err:
            return err
        try:
            ts = wrap(s, host if sni is None else sni)
        except ssl.SSLError as e:
            return "tls-" + (e.reason or "error").lower()
        except OSError:
            return "tls-closed"
        try:
            send_pieces(ts, raw)
        except OSError:
            pass
        return fmt(read_response(ts))
    except Exception as e:
        return "exc:" + type(e).__name__

# Several requests on one inspected connection: their results, joined by ','.
def https_keepalive(host, port, raws, sni=None):
    s, err = tunnel(host, port)
    if err:
        return err
    ts = wrap(s, host if sni is None else sni)
    out, data = [], b""
    for raw in raws:
        try:
            ts.sendall(raw)
        except OSError:
            out.append("send-failed")
            break
        r = read_response_from(ts, data)
        if not r:
            out.append("closed")
            break
        out.append(fmt(r))
        data = r[3]
    return ",".join(out)

# Plain HTTP through the proxy (absolute-form request in `raw`).
def plain(raw):
    s = socket.create_connection(("127.0.0.1", HTTP), timeout=T)
    try:
        send_pieces(s, raw)
    except OSError:
        pass
    return fmt(read_response(s))
)PY";

}  // namespace airlock::test
