// The egress proxy with real clients and real servers: curl, git, Python
// and airlock's own `connect` inside the sandbox; Python HTTP(S), echo and
// parent-proxy servers on the host. The sandbox has only its own loopback,
// so every byte that reaches a server here went through airlock's proxy
// and was judged by its rules.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "../escape/attack.h"
#include "harness.h"
#include "net_support.h"

namespace airlock::test {
namespace {

using nlohmann::json;

// The host side: servers the sandbox may (or may not) reach. Each prints
// its port on its first line of output.
constexpr const char* kServerScript = R"PY(
import hashlib, http.server, json, socket, socketserver, ssl, sys, threading, time

class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

lock = threading.Lock()
inflight = 0
max_inflight = 0

class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, body):
        b = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)

    def do_GET(self):
        global inflight, max_inflight
        path, _, query = self.path.partition("?")
        if path == "/hello":
            return self.reply("hello from api.test\n")
        if path == "/headers":
            return self.reply("".join(f"{k}: {v}\n" for k, v in self.headers.items()))
        if path == "/peer":  # the proxy's side of the connection: same port, same connection
            return self.reply(f"{self.client_address[1]}\n")
        if path == "/slow":  # held open a while, so that many are in flight at once
            with lock:
                inflight += 1
                max_inflight = max(max_inflight, inflight)
            time.sleep(0.5)
            with lock:
                inflight -= 1
            return self.reply(query + "\n")
        if path == "/stats":
            return self.reply(json.dumps({"max_inflight": max_inflight}) + "\n")
        if path == "/close":  # no length: the body ends when the connection does
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"until the end\n")
            self.close_connection = True
            return
        if path == "/upgrade" and self.headers.get("Upgrade") == "echo":
            self.send_response(101)
            self.send_header("Connection", "Upgrade")
            self.send_header("Upgrade", "echo")
            self.end_headers()
            self.wfile.flush()
            while True:
                b = self.connection.recv(65536)
                if not b:
                    break
                self.connection.sendall(b)
            self.close_connection = True
            return
        return super().do_GET()

    def read_exact(self, n, h):
        while n:
            b = self.rfile.read(min(n, 65536))
            if not b:
                raise ConnectionError("body cut short")
            h.update(b)
            n -= len(b)

    def do_POST(self):  # "<framing> <length> <sha256>" of the body as it arrived
        h = hashlib.sha256()
        n = 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            mode = "chunked"
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                self.read_exact(size, h)
                n += size
                self.rfile.readline()
        else:
            mode = "length"
            n = int(self.headers.get("Content-Length", "0"))
            self.read_exact(n, h)
        self.reply(f"{mode} {n} {h.hexdigest()}\n")

class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            b = self.request.recv(65536)
            if not b:
                break
            self.request.sendall(b)

def relay(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
        b.shutdown(socket.SHUT_WR)
    except OSError:
        pass

class Parent(socketserver.StreamRequestHandler):
    """A corporate proxy stand-in: logs each request line, maps *.test to 127.0.0.1."""
    def handle(self):
        line = self.rfile.readline().decode("latin-1").rstrip("\r\n")
        headers = []
        while True:
            h = self.rfile.readline()
            if h in (b"\r\n", b"\n", b""):
                break
            headers.append(h)
        with lock, open(self.server.log, "a") as f:
            f.write(line + "\n")
        method, target, _ = line.split(" ", 2)
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
        else:
            authority, _, path = target[len("http://"):].partition("/")
            host, _, port = authority.partition(":")
            port = port or "80"
        up = socket.create_connection(("127.0.0.1" if host.endswith(".test") else host, int(port)))
        if method == "CONNECT":
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            up.sendall(f"{method} /{path} HTTP/1.1\r\n".encode() + b"".join(headers) + b"\r\n")
        t = threading.Thread(target=relay, args=(up, self.connection), daemon=True)
        t.start()
        try:
            while True:
                d = self.rfile.read1(65536)
                if not d:
                    break
                up.sendall(d)
            up.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        t.join()
        up.close()

mode = sys.argv[1]
if mode == "http":  # http DIR [CERT KEY]
    srv = Server(("127.0.0.1", 0), lambda *a, **k: Handler(*a, directory=sys.argv[2], **k))
    if len(sys.argv) > 3:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[3], sys.argv[4])
        # The handshake runs in each handler's thread, not in accept().
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
elif mode == "echo":
    srv = Server(("127.0.0.1", 0), Echo)
elif mode == "parent":  # parent LOG
    srv = Server(("127.0.0.1", 0), Parent)
    srv.log = sys.argv[2]
print(srv.server_address[1], flush=True)
srv.serve_forever()
)PY";

// A server process on the host, killed with the test (or with this
// process, should it die first). ready() waits for its port, so several
// can start at once.
class Server {
 public:
  Server(const std::string& script, const std::vector<std::string>& args, const std::string& log)
      : what_(args[0] + " server (see " + log + ")") {
    std::vector<std::string> argv = {kPython, script};
    argv.insert(argv.end(), args.begin(), args.end());
    pid_ = spawn_host_server(argv, log, out_);
  }
  void ready() {
    if (port_ > 0) return;
    std::string line = read_until(out_, "\n", std::chrono::seconds(10));
    ::close(out_);
    out_ = -1;
    port_ = std::atoi(line.c_str());
    if (port_ <= 0) throw std::runtime_error(what_ + " did not start");
  }
  ~Server() {
    if (out_ >= 0) ::close(out_);
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  int port() const { return port_; }
  std::string port_str() const { return std::to_string(port_); }

 private:
  std::string what_;
  pid_t pid_ = -1;
  int out_ = -1;
  int port_ = 0;
};

std::string sha256_of(const std::string& path) {
  auto r = host_sh("sha256sum " + sq(path));
  return r.out.substr(0, 64);
}

// What every test shares: a throw-away CA and a certificate for api.test,
// a web root, and three servers (plain HTTP, HTTPS, TCP echo). Tests that
// need more in the web root put it there themselves.
struct World {
  TempTree tree;
  std::string script, ca;
  std::unique_ptr<Server> http, https, echo;

  World() {
    tree.write("server.py", kServerScript);
    script = tree.path("server.py");
    ca = tree.path("pki/ca.pem");
    tree.mkdir("pki");
    tree.mkdir("www");
    std::string pki = sq(tree.path("pki"));
    auto r = host_sh(
        "set -e; cd " + pki + "\n"
        "ec='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'\n"
        "openssl req -x509 $ec -keyout ca.key -out ca.pem -days 2 -subj /CN=airlock-test-ca 2>/dev/null\n"
        "openssl req $ec -keyout srv.key -out srv.csr -subj /CN=api.test 2>/dev/null\n"
        "printf 'subjectAltName=DNS:api.test\\n' > ext\n"
        "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile ext 2>/dev/null\n"
        "chmod 644 *\n"
        "echo 'a small file' > ../www/small.txt\n");
    if (r.code != 0) throw std::runtime_error("test world setup failed: " + r.err);
    std::string www = tree.path("www");
    http = std::make_unique<Server>(script, std::vector<std::string>{"http", www}, tree.path("http.log"));
    https = std::make_unique<Server>(
        script, std::vector<std::string>{"http", www, tree.path("pki/srv.pem"), tree.path("pki/srv.key")},
        tree.path("https.log"));
    echo = std::make_unique<Server>(script, std::vector<std::string>{"echo"}, tree.path("echo.log"));
    for (auto* s : {http.get(), https.get(), echo.get()}) s->ready();
  }
};

// Names the tests use; all point at the host's loopback, where the servers
// listen. Whether a name may be reached is up to allowedDomains alone.
const char* kTestNames[] = {"api.test", "echo.test", "x.test", "once.test", "run.test", "deny.test",
                            "always.test", "live.test", "direct.test", "ask.test"};

// Runs airlock with `fd` as its descriptor 3 and --control-fd 3, the way
// an agent framework hands over one end of a socketpair. (bash: dash's
// redirections take single-digit descriptors only.)
RunResult run_with_control(const SandboxFixture& fx, int fd, const std::string& script,
                           const std::vector<std::string>& extra, RunOptions o) {
  std::string n = std::to_string(fd);
  std::vector<std::string> argv = {"/bin/bash", "-c", "exec \"$@\" 3<&" + n + " " + n + "<&-", "sh",
                                   airlock_bin(), "run", "--control-fd", "3"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back("-c");
  argv.push_back(script);
  if (o.cwd.empty()) o.cwd = fx.ws;
  if (!o.env.count("HOME")) o.env["HOME"] = fx.home;
  return run_program(argv, o);
}

// The same descriptor, inheritable (no FD_CLOEXEC) and above 9, so that
// moving it to 3 cannot clash; the original is closed.
int inheritable(int fd) {
  int d = ::fcntl(fd, F_DUPFD, 10);
  ::close(fd);
  return d;
}

// The agent framework's side of --control-fd: a socketpair whose other
// end airlock gets. Every line is recorded and answered by `decide`: a
// decision, or whole lines to send as they are (ending in a newline), or
// nothing.
class Controller {
 public:
  explicit Controller(std::function<std::string(const json&)> decide) : decide_(std::move(decide)) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) throw std::runtime_error("socketpair");
    mine_ = sv[0];
    theirs_ = inheritable(sv[1]);
    reader_ = std::thread([this] { loop(); });
  }
  ~Controller() {
    ::shutdown(mine_, SHUT_RDWR);
    reader_.join();
    ::close(mine_);
    ::close(theirs_);
  }
  int fd() const { return theirs_; }
  std::vector<json> received() {
    std::lock_guard<std::mutex> g(mu_);
    return received_;
  }
  std::string bad_lines() {
    std::lock_guard<std::mutex> g(mu_);
    return bad_;
  }

 private:
  void loop() {
    std::string buf;
    char chunk[4096];
    for (;;) {
      ssize_t n = ::read(mine_, chunk, sizeof chunk);
      if (n <= 0) return;
      buf.append(chunk, static_cast<size_t>(n));
      for (size_t nl; (nl = buf.find('\n')) != std::string::npos;) {
        std::string line = buf.substr(0, nl);
        buf.erase(0, nl + 1);
        json j = json::parse(line, nullptr, false);
        {
          std::lock_guard<std::mutex> g(mu_);
          if (j.is_discarded() || !j.is_object()) {
            bad_ += line + "\n";
            continue;
          }
          received_.push_back(j);
        }
        std::string d = decide_(j);
        if (d.empty()) continue;
        std::string answer = d.back() == '\n' ? d
                             : json{{"type", "answer"}, {"id", j.value("id", 0)}, {"decision", d}}.dump() + "\n";
        (void)!::write(mine_, answer.data(), answer.size());
      }
    }
  }

  std::function<std::string(const json&)> decide_;
  int mine_ = -1, theirs_ = -1;
  std::thread reader_;
  std::mutex mu_;
  std::vector<json> received_;
  std::string bad_;
};

// Waits (up to 20 s) for a file the command creates in the workspace.
bool wait_for_file(const std::string& path) {
  for (int i = 0; i < 400; ++i) {
    if (::access(path.c_str(), F_OK) == 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

}  // namespace

class NetworkTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { world_ = new World(); }
  static void TearDownTestSuite() {
    delete world_;
    world_ = nullptr;
  }

  static World& w() { return *world_; }
  static std::string hp() { return w().http->port_str(); }   // plain HTTP
  static std::string tp() { return w().https->port_str(); }  // HTTPS
  static std::string ep() { return w().echo->port_str(); }   // echo

  // network settings: the allowed patterns, every test name mapped to
  // 127.0.0.1 and loopback opened; `extra` is merged into "network".
  std::string settings(const std::vector<std::string>& allowed, const json& extra = json::object(),
                       bool open_loopback = true) {
    json hosts = json::object();
    for (const char* n : kTestNames) hosts[n] = "127.0.0.1";
    json net = {{"allowedDomains", allowed}, {"hosts", hosts}};
    if (open_loopback) net["allowPrivateAddresses"] = json::array({"127.0.0.1/32"});
    for (auto it = extra.begin(); it != extra.end(); ++it) net[it.key()] = it.value();
    return write_settings(fx, json{{"network", net}}.dump());
  }

  // The caller's environment without proxies of its own (they would become
  // airlock's parent proxy), and a user settings folder inside the fixture.
  RunOptions opts() {
    RunOptions o = proxy_free_options();
    o.env["XDG_CONFIG_HOME"] = fx.tree.path("config");
    return o;
  }

  RunResult sh(const std::string& script, const std::vector<std::string>& extra) {
    return fx.sh(script, extra, opts());
  }

  SandboxFixture fx;
  static World* world_;
};

World* NetworkTest::world_ = nullptr;

TEST_F(NetworkTest, CurlAndPythonReachAnAllowedHostOverHttpAndSocks) {
  std::string url = "http://api.test:" + hp() + "/hello";
  auto r = sh("curl -sS " + url + "\n"
              "curl -sS --proxy \"$ALL_PROXY\" " + url + "\n"
              // The first byte picks the protocol, on either port.
              "curl -sS --proxy socks5h://127.0.0.1:3128 " + url + "\n"
              "curl -sS --proxy http://127.0.0.1:1080 " + url + "\n"
              "/usr/bin/python3 -c 'import urllib.request,sys; sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())' " +
                  url + "\n",
              {"--settings", settings({"api.test:" + hp()})});
  EXPECT_EQ(r.code, 0) << r.err;
  std::string hello = "hello from api.test\n";
  EXPECT_EQ(r.out, hello + hello + hello + hello + hello) << r.err;
  EXPECT_TRUE(lacks(r.err, "refused network access"));
}

TEST_F(NetworkTest, OtherHostsPortsAndAddressesAreRefusedWithTheReason) {
  std::string s = settings({"api.test:" + hp()});
  auto r = sh(
      // Not listed: 403 with the reason in a header and in the body.
      "curl -sS -D - http://x.test:" + hp() + "/hello | tr -d '\\r'; echo\n"
      // The allowed name on another port: the message says which port is allowed.
      "curl -sS http://api.test:" + ep() + "/ ; echo\n"
      // SOCKS5: reply code 2 (not allowed by ruleset), and 0 for the allowed host.
      "/usr/bin/python3 - " + hp() + " <<'EOF'\n"
      "import socket, sys\n"
      "def ask(host, port):\n"
      "    s = socket.create_connection(('127.0.0.1', 1080))\n"
      "    s.sendall(b'\\x05\\x01\\x00')\n"
      "    assert s.recv(2) == b'\\x05\\x00'\n"
      "    h = host.encode()\n"
      "    s.sendall(b'\\x05\\x01\\x00\\x03' + bytes([len(h)]) + h + port.to_bytes(2, 'big'))\n"
      "    return s.recv(10)[1]\n"
      "print('socks-x', ask('x.test', int(sys.argv[1])))\n"
      "print('socks-api', ask('api.test', int(sys.argv[1])))\n"
      "EOF\n"
      // Around the proxy: the host's servers are not on the sandbox's loopback.
      "curl -sS --noproxy '*' http://127.0.0.1:" + hp() + "/hello; echo direct=$?\n",
      {"--settings", s});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "HTTP/1.1 403 Forbidden\n"));
  EXPECT_TRUE(contains(r.out, "X-Proxy-Error: blocked-by-allowlist\n"));
  EXPECT_TRUE(contains(r.out, "\nairlock: x.test:" + hp() + ": not in allowedDomains\n"));
  EXPECT_TRUE(contains(r.out, "airlock: api.test:" + ep() + ": port " + ep() + " is not allowed ('api.test:" + hp() +
                                  "' allows port " + hp() + " only)"));
  EXPECT_TRUE(contains(r.out, "socks-x 2\n"));
  EXPECT_TRUE(contains(r.out, "socks-api 0\n"));
  EXPECT_TRUE(contains(r.out, "direct=7\n"));
  EXPECT_TRUE(lacks(r.out, "hello from api.test"));

  // The name is allowed, but it resolves to loopback, which stays closed
  // unless allowPrivateAddresses opens it.
  auto closed = sh("curl -sS -D - http://api.test:" + hp() + "/hello | tr -d '\\r'",
                   {"--settings", settings({"api.test:" + hp()}, json::object(), false)});
  EXPECT_TRUE(contains(closed.out, "X-Proxy-Error: blocked-by-address\n"));
  EXPECT_TRUE(contains(closed.out, "allow it with network.allowPrivateAddresses"));
  EXPECT_TRUE(lacks(closed.out, "hello from api.test"));
}

TEST_F(NetworkTest, HttpsThroughConnectToARealTlsServer) {
  std::string ca = sq(w().ca);
  auto r = sh("curl -sS --cacert " + ca + " https://api.test:" + tp() + "/hello\n"
              "/usr/bin/python3 -c 'import ssl,sys,urllib.request as u; "
              "print(u.urlopen(sys.argv[1], context=ssl.create_default_context(cafile=sys.argv[2])).read().decode(), end=\"\")' "
              "https://api.test:" + tp() + "/hello " + ca + "\n"
              // The certificate is checked end to end: the proxy is a tunnel, not a man in the middle.
              "curl -sS https://api.test:" + tp() + "/hello; echo untrusted=$?\n"
              "curl -sS --cacert " + ca + " https://x.test:" + tp() + "/hello; echo refused=$?\n",
              {"--settings", settings({"api.test:" + tp()})});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "hello from api.test\nhello from api.test\nuntrusted=60\nrefused=56\n") << r.err;
  EXPECT_TRUE(contains(r.err, "CONNECT tunnel failed, response 403"));
}

TEST_F(NetworkTest, GitCloneOverHttpsThroughTheProxy) {
  // A bare repository, served the "dumb" way (plain files).
  auto made = host_sh("set -e; cd " + sq(w().tree.path("www")) + "; rm -rf ../src repo.git\n"
                      "g='git -c user.email=t@t -c user.name=t -c init.defaultBranch=main'\n"
                      "$g init -q ../src && echo 'cloned through airlock' > ../src/file.txt\n"
                      "$g -C ../src add file.txt && $g -C ../src commit -qm first\n"
                      "$g clone -q --bare ../src repo.git && $g -C repo.git update-server-info\n");
  ASSERT_EQ(made.code, 0) << made.err;
  std::string repo = "https://api.test:" + tp() + "/repo.git";
  // (GIT_SSL_CAINFO, which the caller may have set, outranks http.sslCAInfo.)
  std::string git = "GIT_SSL_CAINFO=" + sq(w().ca) + " git -c http.sslCAInfo=" + sq(w().ca);
  auto r = sh(git + " clone -q " + repo + " out && cat out/file.txt && git -C out log --format=%s\n" +
              git + " clone -q https://x.test:" + tp() + "/repo.git bad; "
              "echo refused=$?\n",
              {"--settings", settings({"api.test:" + tp()})});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "cloned through airlock\nfirst\nrefused=128\n") << r.err;
  EXPECT_TRUE(contains(r.err, "403"));
  EXPECT_TRUE(fx.tree.exists("ws/out/.git"));
  EXPECT_FALSE(fx.tree.exists("ws/bad/file.txt"));
}

TEST_F(NetworkTest, KeepAliveCarriesSeveralRequestsAndEachIsJudged) {
  std::string peer = "http://api.test:" + hp() + "/peer";
  auto r = sh(
      // Two requests on one connection to the proxy, and (the server sees
      // the same client port) on one connection to the server.
      "curl -sS -w 'connects=%{num_connects}\\n' " + peer + " " + peer + "\n"
      // Through a CONNECT tunnel the same.
      "curl -sS -w 'connects=%{num_connects}\\n' --cacert " + sq(w().ca) + " https://api.test:" + tp() +
          "/peer https://api.test:" + tp() + "/peer\n"
      // A kept-alive connection is no pass: the next request names another host.
      "curl -sS -o /dev/null -w 'code=%{http_code}\\n' http://api.test:" + hp() + "/hello "
      "-o /dev/null http://x.test:" + hp() + "/hello\n",
      {"--settings", settings({"api.test:" + hp(), "api.test:" + tp()})});
  EXPECT_EQ(r.code, 0) << r.err;
  auto lines = [&] {
    std::vector<std::string> v;
    std::istringstream in(r.out);
    for (std::string l; std::getline(in, l);) v.push_back(l);
    return v;
  }();
  ASSERT_EQ(lines.size(), 10u) << r.out << r.err;
  EXPECT_EQ(lines[1], "connects=1");
  EXPECT_EQ(lines[3], "connects=0") << "curl opened a second connection to the proxy";
  EXPECT_EQ(lines[0], lines[2]) << "the proxy opened a second connection to the server";
  EXPECT_EQ(lines[5], "connects=1");
  EXPECT_EQ(lines[7], "connects=0");
  EXPECT_EQ(lines[4], lines[6]);
  EXPECT_EQ(lines[8], "code=200");
  EXPECT_EQ(lines[9], "code=403");
}

TEST_F(NetworkTest, PostBodiesArriveIntactChunkedAndWithLength) {
  std::string url = "http://api.test:" + hp() + "/hash";
  auto r = sh("head -c 3000001 /dev/urandom > body\n"
              "echo sum $(sha256sum < body | cut -c1-64)\n"
              "curl -sS -H 'Transfer-Encoding: chunked' --data-binary @body " + url + "\n"
              "curl -sS --data-binary @body " + url + "\n"
              // Expect: 100-continue (curl sends it for large bodies) and an empty body.
              "curl -sS -H 'Expect: 100-continue' --data-binary @body " + url + "\n"
              "curl -sS -X POST -H 'Content-Length: 0' " + url + "\n"
              // Over HTTPS, through the tunnel.
              "curl -sS -H 'Transfer-Encoding: chunked' --data-binary @body --cacert " + sq(w().ca) +
                  " https://api.test:" + tp() + "/hash\n",
              {"--settings", settings({"api.test:" + hp(), "api.test:" + tp()})});
  EXPECT_EQ(r.code, 0) << r.err;
  auto sum_at = r.out.find("sum ");
  ASSERT_NE(sum_at, std::string::npos) << r.out;
  std::string sum = r.out.substr(sum_at + 4, 64);
  EXPECT_EQ(r.out, "sum " + sum + "\n" +
                       "chunked 3000001 " + sum + "\n" +
                       "length 3000001 " + sum + "\n" +
                       "length 3000001 " + sum + "\n" +
                       "length 0 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n" +
                       "chunked 3000001 " + sum + "\n")
      << r.err;
}

TEST_F(NetworkTest, FiftyMegabytesArriveIntactOverConnectSocksAndHttp) {
  std::string big = w().tree.path("www/big.bin");
  ASSERT_EQ(host_sh("head -c 50000000 /dev/urandom > " + sq(big)).code, 0);
  std::string big_sha = sha256_of(big);
  std::string audit = fx.tree.path("audit.jsonl");
  auto start = std::chrono::steady_clock::now();
  auto r = sh("curl -sS --cacert " + sq(w().ca) + " https://api.test:" + tp() + "/big.bin | sha256sum | cut -c1-64\n"
              "curl -sS --proxy \"$ALL_PROXY\" http://api.test:" + hp() + "/big.bin | sha256sum | cut -c1-64\n"
              "curl -sS http://api.test:" + hp() + "/big.bin | sha256sum | cut -c1-64\n",
              {"--settings", settings({"api.test:" + hp(), "api.test:" + tp()}), "--audit", audit});
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, big_sha + "\n" + big_sha + "\n" + big_sha + "\n") << r.err;
  ::unlink(big.c_str());
  EXPECT_LT(took, std::chrono::seconds(20));
  auto lines = audit_lines(audit);
  ASSERT_EQ(lines.size(), 3u) << dump_all(lines);
  for (const auto& l : lines) {
    EXPECT_GE(l["bytes_down"].get<uint64_t>(), 50000000u) << l.dump();
    EXPECT_LT(l["bytes_down"].get<uint64_t>(), 50100000u) << l.dump();
  }
}

TEST_F(NetworkTest, HopByHopHeadersAndProxyCredentialsAreNotForwarded) {
  auto r = sh("curl -sS -H 'Proxy-Authorization: Basic c2VjcmV0' -H 'Proxy-Connection: keep-alive' "
              "-H 'Connection: close, X-Private' -H 'X-Private: hop' -H 'X-Kept: end' "
              "http://api.test:" + hp() + "/headers | tr -d '\\r'",
              {"--settings", settings({"api.test:" + hp()})});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "Host: api.test:" + hp() + "\n"));
  EXPECT_TRUE(contains(r.out, "X-Kept: end\n"));
  for (const char* h : {"Proxy-Authorization", "c2VjcmV0", "Proxy-Connection", "X-Private"})
    EXPECT_TRUE(lacks(r.out, h));
}

// HTTP/1.1 as it is spoken, byte by byte, to the proxy: framing the
// proxy must follow, and framing it must refuse rather than pass on.
TEST_F(NetworkTest, HttpFramingEdgeCases) {
  static const char* client = R"PY(
import socket, sys
P = sys.argv[1]
A = f"api.test:{P}"
def conn():
    s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
    return s, s.makefile("rb")
def response(f, head=False):
    line = f.readline()
    if not line:
        return None, {}, b""
    status = int(line.split()[1])
    h = {}
    while True:
        l = f.readline()
        if l in (b"\r\n", b"\n", b""):
            break
        k, v = l.decode().split(":", 1)
        h[k.strip().lower()] = v.strip()
    if head or status == 101:
        return status, h, b""
    if "content-length" in h:
        return status, h, f.read(int(h["content-length"]))
    if h.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            n = int(f.readline().split(b";")[0], 16)
            if n == 0:
                f.readline()
                return status, h, body
            body += f.read(n)
            f.readline()
    return status, h, f.read()
def get(path, extra=""):
    return f"GET http://{A}{path} HTTP/1.1\r\nHost: {A}\r\n{extra}\r\n".encode()
def show(label, r):
    print(label, r[0], r[1].get("x-proxy-error", "-"), r[2].decode(errors="replace").strip())

# Two requests in one write (pipelining): two answers, in order.
s, f = conn()
s.sendall(get("/hello") + get("/peer"))
show("pipelined-1", response(f))
r = response(f)
print("pipelined-2", r[0], r[2].strip().isdigit())

# HEAD: a length but no body; the connection goes on.
s, f = conn()
s.sendall(f"HEAD http://{A}/small.txt HTTP/1.1\r\nHost: {A}\r\n\r\n".encode())
r = response(f, head=True)
print("head", r[0], r[1].get("content-length"))
s.sendall(get("/hello"))
show("after-head", response(f))

# HTTP/1.0: answered, then closed.
s, f = conn()
s.sendall(f"GET http://{A}/hello HTTP/1.0\r\n\r\n".encode())
show("http10", response(f))
print("http10-closed", f.read() == b"")

# A body that ends with the connection.
s, f = conn()
s.sendall(get("/close"))
show("close-delimited", response(f))

# Upgrade: after 101 the connection is a tunnel.
s, f = conn()
s.sendall(get("/upgrade", "Connection: Upgrade\r\nUpgrade: echo\r\n"))
r = response(f)
s.sendall(b"ping through upgrade")
print("upgrade", r[0], r[1].get("upgrade"), s.recv(100).decode())

# Refused, not forwarded: ambiguous or misleading requests.
for label, req in [
    ("cl-and-te", f"POST http://{A}/hash HTTP/1.1\r\nHost: {A}\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("two-cl", f"POST http://{A}/hash HTTP/1.1\r\nHost: {A}\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
    ("te-gzip", f"POST http://{A}/hash HTTP/1.1\r\nHost: {A}\r\nTransfer-Encoding: gzip\r\n\r\n"),
    ("host-mismatch", f"GET http://{A}/headers HTTP/1.1\r\nHost: x.test:{P}\r\n\r\n"),
    ("origin-form", f"GET /hello HTTP/1.1\r\nHost: {A}\r\n\r\n"),
    ("userinfo", f"GET http://user@{A}/hello HTTP/1.1\r\nHost: {A}\r\n\r\n"),
    ("https-url", f"GET https://{A}/hello HTTP/1.1\r\nHost: {A}\r\n\r\n"),
    ("huge-header", f"GET http://{A}/hello HTTP/1.1\r\nHost: {A}\r\nX-Big: {'a' * 20000}\r\n\r\n"),
]:
    s, f = conn()
    s.sendall(req.encode())
    r = response(f)
    print(label, r[0], r[1].get("x-proxy-error", "-"))
)PY";
  fx.tree.write("ws/client.py", client);
  auto r = sh("/usr/bin/python3 client.py " + hp(), {"--settings", settings({"api.test:" + hp()})});
  EXPECT_EQ(r.code, 0) << r.err;
  auto res = parse_results(r.out);
  EXPECT_EQ(res["pipelined-1"], "200 - hello from api.test") << r.out;
  EXPECT_EQ(res["pipelined-2"], "200 True") << r.out;
  EXPECT_EQ(res["head"], "200 13") << r.out;
  EXPECT_EQ(res["after-head"], "200 - hello from api.test") << r.out;
  EXPECT_EQ(res["http10"], "200 - hello from api.test") << r.out;
  EXPECT_EQ(res["http10-closed"], "True") << r.out;
  EXPECT_EQ(res["close-delimited"], "200 - until the end") << r.out;
  EXPECT_EQ(res["upgrade"], "101 echo ping through upgrade") << r.out;
  for (const char* l : {"cl-and-te", "two-cl", "te-gzip", "origin-form", "userinfo", "https-url"})
    EXPECT_EQ(res[l], "400 bad-request") << l << "\n" << r.out;
  EXPECT_EQ(res["host-mismatch"], "400 host-mismatch") << r.out;
  EXPECT_EQ(res["huge-header"], "431 bad-request") << r.out;
}

TEST_F(NetworkTest, AskOverControlFdOnceRunDeny) {
  std::string audit = fx.tree.path("audit.jsonl");
  Controller c([](const json& q) -> std::string {
    std::string host = q.value("host", "");
    if (host == "once.test") return "once";
    if (host == "run.test") return "run";
    return "deny";
  });
  auto get = [&](const std::string& host) {
    return "curl -s -o /dev/null -w '" + host + " %{http_code}\\n' http://" + host + ":" + hp() + "/hello\n";
  };
  auto r = run_with_control(
      fx, c.fd(),
      get("once.test") + get("once.test") + get("run.test") + get("run.test") + get("deny.test") +
          "curl -sS -o /dev/null -w 'tunnel %{http_code}\\n' -p http://run.test:" + hp() + "/hello\n"
          // The control descriptor is airlock's, not the command's.
          "[ -e /proc/self/fd/3 ] && echo fd3-open || echo fd3-closed\n",
      {"--settings", settings({"api.test:" + hp()}), "--audit", audit}, opts());
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "once.test 200\nonce.test 200\nrun.test 200\nrun.test 200\ndeny.test 403\ntunnel 200\nfd3-closed\n")
      << r.err;
  auto asks = c.received();
  EXPECT_EQ(c.bad_lines(), "");
  // "once" is asked again for the next connection; "run" is not, for any client.
  std::vector<std::string> seen;
  for (const auto& q : asks) seen.push_back(q.value("host", "") + " " + q.value("client", ""));
  EXPECT_EQ(seen, (std::vector<std::string>{"once.test http", "once.test http", "run.test http", "deny.test http"}))
      << dump_all(asks);
  auto lines = audit_lines(audit);
  ASSERT_FALSE(lines.empty());
  std::set<uint64_t> ids;
  for (const auto& q : asks) {
    EXPECT_EQ(q.value("type", ""), "ask");
    EXPECT_EQ(q.value("port", 0), w().http->port());
    EXPECT_EQ(q.value("sandbox", ""), lines[0].value("sandbox", "?"));
    EXPECT_TRUE(q.contains("id") && q["id"].is_number_unsigned());
    if (q.contains("id") && q["id"].is_number_unsigned()) ids.insert(q["id"].get<uint64_t>());
  }
  EXPECT_EQ(ids.size(), asks.size()) << "question ids are unique";
  EXPECT_TRUE(contains(r.err, "airlock: refused network access to deny.test:" + hp() + ": not in allowedDomains (asked: denied)"));
  EXPECT_TRUE(lacks(r.err, "once.test"));

  // strictAllowlist: never ask.
  Controller silent([](const json&) { return std::string("once"); });
  auto strict = run_with_control(fx, silent.fd(), get("once.test"),
                                 {"--settings", settings({"api.test:" + hp()}, {{"strictAllowlist", true}})}, opts());
  EXPECT_EQ(strict.out, "once.test 403\n") << strict.err;
  EXPECT_TRUE(silent.received().empty()) << dump_all(silent.received());
}

// Connections that wait for the same host share one question; the
// question names the kind of client; answers that make no sense are
// reported and ignored, and a controller that is gone refuses at once.
TEST_F(NetworkTest, AskSharesQuestionsAndSurvivesBadAnswers) {
  Controller c([](const json& q) -> std::string {
    uint64_t id = q.value("id", uint64_t{0});
    std::string client = q.value("client", "");
    if (client == "http") {
      std::this_thread::sleep_for(std::chrono::milliseconds(500));  // let the others queue up
      return "once";
    }
    if (client == "socks") return "deny";
    return "not json at all\n" +
           json{{"type", "answer"}, {"id", id}, {"decision", "maybe"}}.dump() + "\n" +
           json{{"type", "answer"}, {"decision", "once"}}.dump() + "\n" +
           json{{"type", "answer"}, {"id", id + 1000}, {"decision", "once"}}.dump() + "\n" +
           json{{"type", "answer"}, {"id", id}, {"decision", "run"}}.dump() + "\n";
  });
  std::string url = "http://ask.test:" + hp() + "/hello";
  auto r = run_with_control(
      fx, c.fd(),
      "for i in 1 2 3; do curl -s -o /dev/null -w 'http %{http_code}\\n' " + url + " & done; wait\n"
      "curl -s -o /dev/null --proxy \"$ALL_PROXY\" " + url + "; echo socks=$?\n"
      "curl -s -o /dev/null -w 'connect %{http_code}\\n' -p " + url + "\n"
      "curl -s -o /dev/null -w 'again %{http_code}\\n' -p " + url + "\n",
      {"--settings", settings({"api.test:" + hp()})}, opts());
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "http 200\nhttp 200\nhttp 200\nsocks=97\nconnect 200\nagain 200\n") << r.err;
  std::vector<std::string> seen;
  for (const auto& q : c.received()) seen.push_back(q.value("host", "") + " " + q.value("client", ""));
  EXPECT_EQ(seen, (std::vector<std::string>{"ask.test http", "ask.test socks", "ask.test connect"}));
  EXPECT_TRUE(contains(r.err, "control fd 3: not a JSON object; ignored"));
  EXPECT_TRUE(contains(r.err, "decision 'maybe' is not once, run, always or deny; ignored"));
  EXPECT_TRUE(contains(r.err, "an answer needs \"id\" and \"decision\"; ignored"));

  // The controller closed its end before the run: nobody can answer, so
  // an unknown host is refused at once, not after the 60 s wait.
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  ::close(sv[0]);
  int theirs = inheritable(sv[1]);
  auto start = std::chrono::steady_clock::now();
  auto gone = run_with_control(fx, theirs, "curl -s -o /dev/null -w '%{http_code}\\n' " + url,
                               {"--settings", settings({"api.test:" + hp()})}, opts());
  ::close(theirs);
  EXPECT_EQ(gone.out, "403\n") << gone.err;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

TEST_F(NetworkTest, AskAlwaysSavesTheRuleForLaterRuns) {
  fx.tree.mkdir("config");
  std::string user_file = fx.tree.path("config/airlock/settings.json");
  std::string s = settings({"api.test:" + hp()});
  std::string get = "curl -s -o /dev/null -w '%{http_code}\\n' http://always.test:" + hp() + "/hello\n";

  // Without an answer there is nobody to ask: refused.
  auto before = sh(get, {"--settings", s});
  EXPECT_EQ(before.out, "403\n") << before.err;

  Controller c([](const json&) { return std::string("always"); });
  auto r = run_with_control(fx, c.fd(), get + get, {"--settings", s}, opts());
  EXPECT_EQ(r.out, "200\n200\n") << r.err;
  EXPECT_EQ(c.received().size(), 1u) << dump_all(c.received());
  json saved = json::parse(slurp(user_file), nullptr, false);
  ASSERT_FALSE(saved.is_discarded()) << slurp(user_file);
  EXPECT_EQ(saved["network"]["allowedDomains"], json::array({"always.test:" + hp()})) << saved.dump();
  struct stat st {};
  ASSERT_EQ(::stat(user_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0077, 0u) << "the user's settings are private";

  // A later run with no one to ask: the saved rule allows it; the
  // command cannot edit the rule file itself.
  auto after = sh(get + "if echo '{}' > " + sq(user_file) + "; then echo write=ok; else echo write=refused; fi\n", {"--settings", s});
  EXPECT_EQ(after.out, "200\nwrite=refused\n") << after.err;
  EXPECT_TRUE(contains(slurp(user_file), "always.test:" + hp()));
}

// A fresh account has no ~/.config yet: "always" must still be saved.
TEST_F(NetworkTest, AskAlwaysCreatesTheUserSettingsFolder) {
  std::string s = settings({"api.test:" + hp()});
  std::string get = "curl -s -o /dev/null -w '%{http_code}\\n' http://always.test:" + hp() + "/hello\n";
  RunOptions o = opts();
  o.env.erase("XDG_CONFIG_HOME");
  o.env["XDG_CONFIG_HOME"] = "";
  ASSERT_FALSE(fx.tree.exists("home/.config"));
  Controller c([](const json&) { return std::string("always"); });
  std::string audit = fx.tree.path("audit.jsonl");
  auto r = run_with_control(fx, c.fd(), get, {"--settings", s, "--audit", audit}, o);
  EXPECT_EQ(r.out, "200\n") << r.err;
  EXPECT_TRUE(contains(slurp(fx.home + "/.config/airlock/settings.json"), "always.test:" + hp()))
      << "audit: " << slurp(audit) << "stderr: " << r.err;
  auto after = fx.sh(get, {"--settings", s}, o);
  EXPECT_EQ(after.out, "200\n") << after.err;
}

// srt's live updates: whole settings objects, one per line, on a one-way
// pipe; their network rules replace the running ones.
TEST_F(NetworkTest, LiveConfigLinesReplaceTheRulesMidRun) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  int theirs = inheritable(p[0]), mine = p[1];
  std::string ws = fx.ws;
  std::string port = hp();
  auto send = [mine](const std::string& line) { (void)!::write(mine, line.data(), line.size()); };
  std::thread updater([&] {
    if (!wait_for_file(ws + "/phase1")) return;
    send("this is not json\n");
    send(R"({"network":{"allowedDomains":["*"]}})" "\n");  // invalid: the old rules stay
    send(json{{"network", {{"allowedDomains", json::array({"live.test:" + port})}, {"deniedDomains", json::array()}}},
              {"filesystem", json::object()}}
             .dump() +
         "\n");
    if (!wait_for_file(ws + "/phase2")) return;
    send(json{{"network", {{"allowedDomains", json::array({"api.test:" + port})}}}}.dump() + "\n");
  });
  std::string code = "code() { curl -s -o /dev/null -w '%{http_code}' http://$1:" + port + "/hello; }\n";
  // Each phase retries for a while: the update is applied asynchronously.
  std::string until = "until_code() { i=0; while [ $i -lt 200 ]; do c=$(code $1); [ $c = $2 ] && break; "
                      "sleep 0.05; i=$((i+1)); done; echo $1 $c; }\n";
  auto r = run_with_control(fx, theirs,
                            code + until +
                                "echo before $(code live.test)\n"
                                ": > phase1\n"
                                "until_code live.test 200\n"
                                "echo api $(code api.test)\n"
                                ": > phase2\n"
                                "until_code live.test 403\n"
                                "echo api $(code api.test)\n",
                            {"--settings", settings({"api.test:" + port})}, opts());
  updater.join();
  ::close(mine);
  ::close(theirs);
  EXPECT_EQ(r.code, 0) << r.err;
  // A live list replaces the old one: api.test is closed while live.test is open.
  EXPECT_EQ(r.out, "before 403\nlive.test 200\napi 403\nlive.test 403\napi 200\n") << r.err;
  EXPECT_TRUE(contains(r.err, "control fd 3: not a JSON object; ignored"));
  EXPECT_TRUE(contains(r.err, "ignored, the previous rules stay in force"));
}

TEST_F(NetworkTest, AuditLinesRecordEachDecisionAndItsBytes) {
  std::string audit = fx.ws + "/audit.jsonl";
  std::string e = ep();
  auto r = sh("/usr/bin/python3 - " + e + " <<'EOF'\n"
              "import socket, sys\n"
              "port = int(sys.argv[1])\n"
              "def drain(s, n):\n"
              "    got = b''\n"
              "    while len(got) < n:\n"
              "        b = s.recv(65536)\n"
              "        if not b: break\n"
              "        got += b\n"
              "    return got\n"
              // CONNECT: 1000 bytes up, 1000 echoed down.
              "s = socket.create_connection(('127.0.0.1', 3128))\n"
              "s.sendall(f'CONNECT echo.test:{port} HTTP/1.1\\r\\nHost: echo.test:{port}\\r\\n\\r\\n'.encode())\n"
              "head = b''\n"
              "while not head.endswith(b'\\r\\n\\r\\n'): head += s.recv(1)\n"
              "s.sendall(b'a' * 1000); s.shutdown(socket.SHUT_WR)\n"
              "print('connect', head.split(b' ')[1].decode(), len(drain(s, 1 << 20)))\n"
              // SOCKS5: 300 up, 300 down.
              "s = socket.create_connection(('127.0.0.1', 1080))\n"
              "s.sendall(b'\\x05\\x01\\x00'); drain(s, 2)\n"
              "s.sendall(b'\\x05\\x01\\x00\\x03\\x09echo.test' + port.to_bytes(2, 'big')); drain(s, 10)\n"
              "s.sendall(b'b' * 300); s.shutdown(socket.SHUT_WR)\n"
              "print('socks', len(drain(s, 1 << 20)))\n"
              "EOF\n"
              "curl -sS 'http://api.test:" + hp() + "/hello?token=SECRET' >/dev/null\n"
              "curl -sS --data-binary 0123456789 http://api.test:" + hp() + "/hash >/dev/null\n"
              "curl -s http://x.test:" + hp() + "/nope >/dev/null\n"
              // The command cannot forge or erase its own record.
              "if echo forged >> audit.jsonl; then echo append=ok; else echo append=refused; fi\n"
              "if rm -f audit.jsonl; then echo rm=ok; else echo rm=refused; fi\n",
              {"--settings", settings({"api.test:" + hp(), "echo.test:" + e}), "--audit", audit});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "connect 200 1000\nsocks 300\nappend=refused\nrm=refused\n") << r.err;
  auto lines = audit_lines(audit);
  ASSERT_EQ(lines.size(), 5u) << dump_all(lines);
  std::map<std::string, json> by;
  for (const auto& l : lines) by[l.value("client", "") + " " + l.value("path", "") + " " + l.value("decision", "")] = l;
  std::string sandbox = lines[0].value("sandbox", "");
  EXPECT_EQ(sandbox.size(), 16u);
  for (const auto& l : lines) {
    EXPECT_EQ(l.value("kind", ""), "network");
    EXPECT_EQ(l.value("sandbox", ""), sandbox);
    EXPECT_TRUE(l.contains("time") && l["time"].is_string() && l["time"].get<std::string>().size() == 24) << l.dump();
    EXPECT_TRUE(l.contains("duration_ms") && l["duration_ms"].is_number_integer()) << l.dump();
  }
  auto& c = by["connect  allow"];
  EXPECT_EQ(c.value("host", ""), "echo.test") << c.dump();
  EXPECT_EQ(c.value("port", 0), w().echo->port());
  EXPECT_EQ(c.value("address", ""), "127.0.0.1");
  EXPECT_EQ(c.value("rule", ""), "allowedDomains 'echo.test:" + e + "'");
  EXPECT_EQ(c.value("bytes_up", -1), 1000);
  EXPECT_EQ(c.value("bytes_down", -1), 1000);
  EXPECT_FALSE(c.contains("method")) << c.dump();
  auto& so = by["socks  allow"];
  EXPECT_EQ(so.value("host", ""), "echo.test") << so.dump();
  EXPECT_EQ(so.value("bytes_up", -1), 300);
  EXPECT_EQ(so.value("bytes_down", -1), 300);
  auto& g = by["http /hello?… allow"];
  EXPECT_EQ(g.value("method", ""), "GET") << dump_all(lines);
  EXPECT_EQ(g.value("host", ""), "api.test");
  EXPECT_EQ(g.value("address", ""), "127.0.0.1");
  EXPECT_EQ(g.value("rule", ""), "allowedDomains 'api.test:" + hp() + "'");
  EXPECT_GE(g.value("bytes_down", 0), 20);  // the body; headers may count too
  EXPECT_LT(g.value("bytes_down", 0), 1000);
  auto& post = by["http /hash allow"];
  EXPECT_EQ(post.value("method", ""), "POST") << dump_all(lines);
  EXPECT_GE(post.value("bytes_up", 0), 10);
  EXPECT_LT(post.value("bytes_up", 0), 1000);
  auto& d = by["http /nope deny"];
  EXPECT_EQ(d.value("host", ""), "x.test") << dump_all(lines);
  EXPECT_EQ(d.value("rule", ""), "not in allowedDomains");
  EXPECT_EQ(d.value("bytes_up", -1), 0);
  EXPECT_EQ(d.value("bytes_down", -1), 0);
  EXPECT_TRUE(lacks(slurp(audit), "SECRET"));
  EXPECT_TRUE(lacks(slurp(audit), "forged"));
}

// An allowed host that does not answer is not a refusal by the rules: the
// client, the audit line and the summary must say what happened.
TEST_F(NetworkTest, AnUnreachableAllowedHostIsReportedAsSuch) {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a {};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len), 0);
  std::string port = std::to_string(ntohs(a.sin_port));
  ::close(s);  // nobody listens there now
  std::string audit = fx.tree.path("audit.jsonl");
  auto r = sh("curl -sS -D - http://api.test:" + port + "/hello | tr -d '\\r'\n",
              {"--settings", settings({"api.test:" + port}), "--audit", audit});
  EXPECT_TRUE(contains(r.out, "HTTP/1.1 502 Bad Gateway\n"));
  EXPECT_TRUE(contains(r.out, "X-Proxy-Error: connect-failed\n"));
  EXPECT_TRUE(contains(r.out, "airlock: api.test:" + port + ": cannot connect to api.test:" + port + ": Connection refused\n"));
  auto lines = audit_lines(audit);
  ASSERT_EQ(lines.size(), 1u) << dump_all(lines);
  EXPECT_TRUE(contains(lines[0].value("rule", ""), "Connection refused")) << lines[0].dump();
  // The summary names the failure, not the rule that allowed the host.
  EXPECT_TRUE(contains(r.err, "api.test:" + port + ": cannot connect to api.test:" + port + ": Connection refused"));
  EXPECT_TRUE(lacks(r.err, "api.test:" + port + ": allowedDomains"));
}

TEST_F(NetworkTest, StderrSummarisesEachRefusedHostOnce) {
  auto r = sh("for i in 1 2 3; do curl -s -o /dev/null http://x.test:" + hp() + "/; done\n"
              "curl -s -o /dev/null -p http://deny.test:" + ep() + "/\n"
              "curl -s -o /dev/null http://api.test:" + hp() + "/hello\n",
              {"--settings", settings({"api.test:" + hp()}, {{"deniedDomains", json::array({"deny.test"})}})});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "airlock: refused network access to x.test:" + hp() + " (3 times): not in allowedDomains\n"));
  EXPECT_TRUE(contains(r.err, "airlock: refused network access to deny.test:" + ep() + ": deniedDomains 'deny.test'\n"));
  EXPECT_TRUE(lacks(r.err, "api.test"));
}

// Messages a person reads: an IPv6 literal keeps its brackets next to a
// port, and a malformed host is called malformed, not a mismatch.
TEST_F(NetworkTest, RefusalMessagesNameHostsUnambiguously) {
  auto r = sh("curl -sS --noproxy '' http://[::1]:" + hp() + "/hello\n"
              "/usr/bin/python3 - " + hp() + " <<'EOF'\n"
              "import socket, sys\n"
              "a = f'api%2etest:{sys.argv[1]}'\n"
              "s = socket.create_connection(('127.0.0.1', 3128))\n"
              "s.sendall(f'GET http://{a}/hello HTTP/1.1\\r\\nHost: {a}\\r\\n\\r\\n'.encode())\n"
              "print(s.recv(1000).decode().split('\\r\\n\\r\\n')[1], end='')\n"
              "EOF\n",
              {"--settings", settings({"api.test:" + hp()})});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "airlock: [::1]:" + hp() + ": not in allowedDomains\n"));
  EXPECT_TRUE(contains(r.err, "airlock: refused network access to [::1]:" + hp() + ": not in allowedDomains\n"));
  EXPECT_TRUE(contains(r.out, "api%2etest"));
  EXPECT_TRUE(lacks(r.out, "does not name the URL's host"));
}

TEST_F(NetworkTest, ParentProxyCarriesAllButNoProxyHosts) {
  std::string log = fx.tree.path("parent.log");
  Server parent(w().script, {"parent", log}, fx.tree.path("parent.err"));
  parent.ready();
  std::string pp = "http://127.0.0.1:" + parent.port_str();
  std::string script = "curl -sS http://api.test:" + hp() + "/hello\n"
                       "curl -sS -p http://api.test:" + hp() + "/hello\n"
                       "curl -sS --cacert " + sq(w().ca) + " https://api.test:" + tp() + "/hello\n"
                       "curl -sS http://direct.test:" + hp() + "/hello\n"
                       "curl -s -o /dev/null -w '%{http_code}\\n' http://x.test:" + hp() + "/hello\n";
  std::string expected_out = "hello from api.test\nhello from api.test\nhello from api.test\nhello from api.test\n403\n";
  std::string expected_log = "GET http://api.test:" + hp() + "/hello HTTP/1.1\n"
                             "CONNECT api.test:" + hp() + " HTTP/1.1\n"
                             "CONNECT api.test:" + tp() + " HTTP/1.1\n";
  std::vector<std::string> allowed = {"api.test:" + hp(), "api.test:" + tp(), "direct.test:" + hp()};

  // From the settings.
  auto r = sh(script, {"--settings", settings(allowed, {{"parentProxy", {{"http", pp}, {"noProxy", "direct.test"}}}})});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, expected_out) << r.err;
  EXPECT_EQ(slurp(log), expected_log);

  // From the caller's environment, as srt does.
  ASSERT_EQ(::truncate(log.c_str(), 0), 0);
  RunOptions o = opts();
  o.env["HTTP_PROXY"] = pp;
  o.env["https_proxy"] = pp;
  o.env["NO_PROXY"] = "localhost,direct.test";
  auto e = fx.sh(script, {"--settings", settings(allowed)}, o);
  EXPECT_EQ(e.code, 0) << e.err;
  EXPECT_EQ(e.out, expected_out) << e.err;
  EXPECT_EQ(slurp(log), expected_log);
}

TEST_F(NetworkTest, ThreeHundredConcurrentClients) {
  auto r = sh("/usr/bin/python3 - " + hp() + " " + tp() + " " + sq(w().ca) + " <<'EOF'\n"
              "import ssl, sys, threading, urllib.request\n"
              "hp, tp, ca = sys.argv[1], sys.argv[2], sys.argv[3]\n"
              "ctx = ssl.create_default_context(cafile=ca)\n"
              "barrier = threading.Barrier(300)\n"
              "ok = []\n"
              "def one(i):\n"
              "    # half plain HTTP through the proxy, half HTTPS through CONNECT tunnels\n"
              "    url = f'http://api.test:{hp}/slow?{i}' if i % 2 else f'https://api.test:{tp}/slow?{i}'\n"
              "    barrier.wait()\n"
              "    try:\n"
              "        body = urllib.request.urlopen(url, context=None if i % 2 else ctx, timeout=30).read()\n"
              "        if body == f'{i}\\n'.encode(): ok.append(i)\n"
              "    except Exception as e:\n"
              "        print('fail', i, e)\n"
              "ts = [threading.Thread(target=one, args=(i,)) for i in range(300)]\n"
              "[t.start() for t in ts]; [t.join() for t in ts]\n"
              "print('ok', len(ok))\n"
              "for p, c in ((hp, None), (tp, ctx)):\n"
              "    u = f'http{\"s\" if c else \"\"}://api.test:{p}/stats'\n"
              "    print('stats', urllib.request.urlopen(u, context=c).read().decode().strip())\n"
              "EOF\n",
              {"--settings", settings({"api.test:" + hp(), "api.test:" + tp()})});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "ok 300\n")) << r.err;
  // Many were open at once on each server: the proxy did not serialise them.
  std::istringstream in(r.out);
  int servers = 0;
  for (std::string l; std::getline(in, l);) {
    if (l.rfind("stats ", 0) != 0) continue;
    json j = json::parse(l.substr(6), nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << l;
    EXPECT_GE(j.value("max_inflight", 0), 30) << l;
    ++servers;
  }
  EXPECT_EQ(servers, 2) << r.out;
}

TEST_F(NetworkTest, AirlockConnectRelaysStdioThroughSocks) {
  std::string self = airlock_bin();
  char real[PATH_MAX];
  if (::realpath(self.c_str(), real)) self = real;
  // The sandbox has a /tmp of its own: a build under the host's /tmp is not
  // there to run (nor is the ProxyCommand naming it), so this test runs a
  // copy the sandbox can see.
  std::string saved = self;
  if (self.rfind("/tmp/", 0) == 0) {
    std::string copy = fx.tree.path("airlock-copy");
    ASSERT_EQ(run_program({"/bin/cp", self, copy}).code, 0);
    ASSERT_EQ(::chmod(copy.c_str(), 0755), 0);
    self = copy;
    ::setenv("AIRLOCK_BIN", copy.c_str(), 1);
  }
  struct Restore {
    std::string v;
    bool changed;
    ~Restore() {
      if (changed) ::setenv("AIRLOCK_BIN", v.c_str(), 1);
    }
  } restore{saved, self != saved};
  std::string e = ep();
  auto r = sh("printf 'hello over socks' | " + sq(self) + " connect --port 1080 echo.test " + e + "; echo\n"
              // The command ssh would run, taken from GIT_SSH_COMMAND as it is.
              "pc=$(printf %s \"$GIT_SSH_COMMAND\" | sed -n \"s/.*ProxyCommand='\\(.*\\)'.*/\\1/p\")\n"
              "echo \"pc=$pc\"\n"
              "printf 'via ProxyCommand' | sh -c \"$(printf %s \"$pc\" | sed \"s/%h/echo.test/; s/%p/" + e + "/\")\"; echo\n"
              "printf x | " + sq(self) + " connect --port 1080 x.test " + e + "; echo refused=$?\n"
              // A client that sends one byte and waits for the answer is
              // not kept waiting while the proxy looks for a TLS hello.
              "printf 1 | timeout 5 " + sq(self) + " connect --port 1080 echo.test " + e + "; echo \" one=$?\"\n",
              {"--settings", settings({"echo.test:" + e})});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "hello over socks\npc=" + self + " connect --port 1080 %h %p\nvia ProxyCommand\nrefused=1\n1 one=0\n")
      << r.err;
  EXPECT_TRUE(contains(r.err, "refused x.test:" + e + " (SOCKS reply 2"));
}

// network.ask "tty": the question goes to the person at airlock's terminal,
// who answers with one key. Driven through a real pty: a small Python
// program plays the person, answering each prompt as it appears.
TEST_F(NetworkTest, AskAtTheTerminalOnceAndDeny) {
  std::string driver = fx.tree.path("person.py");
  fx.tree.write("person.py",
                "import os, pty, select, sys, time\n"
                "answers = sys.argv[1]\n"
                "pid, fd = pty.fork()\n"
                "if pid == 0:\n"
                "    os.execv(sys.argv[2], sys.argv[2:])\n"
                "out, asked, end = b'', 0, time.time() + 50\n"
                "while time.time() < end:\n"
                "    r, _, _ = select.select([fd], [], [], 0.2)\n"
                "    if not r: continue\n"
                "    try: d = os.read(fd, 4096)\n"
                "    except OSError: break\n"
                "    if not d: break\n"
                "    out += d\n"
                "    while out.count(b'which no rule allows') > asked and asked < len(answers):\n"
                "        time.sleep(0.1); os.write(fd, answers[asked].encode()); asked += 1\n"
                "_, status = os.waitpid(pid, 0)\n"
                "sys.stdout.write(out.decode(errors='replace'))\n"
                "sys.exit(os.waitstatus_to_exitcode(status))\n");
  auto get = [&](const std::string& host) {
    return "curl -s -o /dev/null -w '" + host + " %{http_code}\\n' http://" + host + ":" + hp() + "/hello; ";
  };
  std::string set = settings({"api.test:" + hp()}, {{"ask", "tty"}});
  auto o = opts();
  o.cwd = fx.ws;
  o.env["HOME"] = fx.home;
  auto r = run_program({"/usr/bin/python3", driver, "od", airlock_bin(), "run", "--settings", set, "-c",
                        get("once.test") + get("deny.test") + get("api.test")},
                       o);
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_TRUE(contains(r.out, "the command wants to reach once.test:" + hp() + " (http), which no rule allows")) << r.out;
  EXPECT_TRUE(contains(r.out, "allowed once")) << r.out;
  EXPECT_TRUE(contains(r.out, "once.test 200")) << r.out;
  EXPECT_TRUE(contains(r.out, "the command wants to reach deny.test:" + hp())) << r.out;
  EXPECT_TRUE(contains(r.out, "denied")) << r.out;
  EXPECT_TRUE(contains(r.out, "deny.test 403")) << r.out;
  EXPECT_TRUE(contains(r.out, "api.test 200")) << r.out;  // allowed by a rule: no question
  EXPECT_TRUE(lacks(r.out, "reach api.test")) << r.out;
}

}  // namespace airlock::test
