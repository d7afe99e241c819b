// TLS inspection benchmark: an HTTPS server of our own (OpenSSL, on the
// host's loopback, with a test CA whose server certificate names
// *.bench.test) and the same HTTPS client run up to six ways, side by side
// in one run:
//   direct     client and server on the host, no sandbox, no proxy
//   plain      client inside `airlock run`, through airlock's proxy with
//              tlsTerminate on but the hosts in excludeDomains: an opaque
//              CONNECT tunnel, the client's TLS goes end to end
//   relay      client on the host, through a bare TLS-terminating CONNECT
//              relay on the host (no sandbox, no HTTP parsing, 256 KiB
//              batches): the cost of the second TLS hop alone, for reference
//   inspected  client inside `airlock run`, through airlock's proxy with
//              tlsTerminate: airlock ends the client's TLS with a leaf of its
//              own CA and opens its own verified TLS to the server
//   srt-plain  the same two through srt's proxy (network.tlsTerminate, its
//   srt-tls    excluded and its terminated form), when srt is installed
// All the runners' clients live for a whole round (one sandbox each) and
// take their orders in lockstep, in turn, so that the noise of a busy
// machine falls on all of them alike; "added" figures at the median are
// medians of paired differences (sample k of one runner less sample k of
// the other, taken one right after the other). Per round:
//   handshake  per new host: TCP connect + CONNECT + TLS handshake + one
//              small GET (Connection: close), for HOSTS host names never
//              seen before in this sandbox (a cold leaf cache), then the same
//              names again (warm); the client never resumes a TLS session,
//              and checks who issued the certificate it got (the server's
//              own CA for plain, another for inspected)
//   rtt        small GETs on one kept-alive connection, p50/p99
//   bulk       one download of BULK MiB over one new connection
// airlock's hosts are h1.bench.test ... hN.bench.test (network.hosts maps
// them to 127.0.0.1). srt has no such map and no DNS here, so its hosts
// are IP literals 127.0.0.2 ... (one listener each, with a certificate
// naming those addresses) and "localhost" for rtt and bulk.
//
//   bench-tls [--airlock PATH] [--srt "NODE CLI.js"] [--rounds N] [--hosts N]
//             [--rtt N] [--bulk-mib N] [--bulk-max-seconds S] [--settle-ms MS]
//   bench-tls client <direct|proxy|proxy=IP:PORT> PORT CAFILE <end-to-end|inspected>
//                      (what runs inside: orders on stdin, see client_main)
//   bench-tls serve    (the server and the reference relay alone, for trying clients by
//                       hand: prints the server's port, the CA file and the relay's port)
// BENCH_VERBOSE=1 prints each round's figures on stderr as it goes. A
// download slower than --bulk-max-seconds + 30 s, or any other order not
// answered within 30 s, counts as failed, and the output says so.
//
// The server speaks HTTP/1.1 with keep-alive: GET /bulk/N answers N bytes,
// any other GET a 64-byte body; always with Content-Length.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
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
#include <fstream>
#include <iomanip>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

static double usec(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

static std::string ssl_err() {
  unsigned long e = ERR_get_error();
  char b[256] = "?";
  if (e) ERR_error_string_n(e, b, sizeof b);
  ERR_clear_error();
  return b;
}

static void die(const std::string& what) {
  fprintf(stderr, "bench-tls: %s: %s\n", what.c_str(), ssl_err().c_str());
  exit(1);
}

static bool is_ip(const std::string& h) {
  in_addr a;
  return inet_pton(AF_INET, h.c_str(), &a) == 1;
}

// ---------------------------------------------------------------- certificates

static EVP_PKEY* p256() {
  EVP_PKEY* k = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  if (!k) die("keygen");
  return k;
}

static void add_ext(X509* x, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, x, nullptr, nullptr, 0);
  X509_EXTENSION* e = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (!e || !X509_add_ext(x, e, -1)) die("extension " + value);
  X509_EXTENSION_free(e);
}

// issuer == nullptr: self-signed CA.
static X509* make_cert(EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key, const char* cn, const std::string& san) {
  X509* x = X509_new();
  X509_set_version(x, 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 7 * 24 * 3600);
  X509_set_pubkey(x, key);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
  X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
  X509* iss = issuer ? issuer : x;
  add_ext(x, iss, NID_subject_key_identifier, "hash");
  if (!issuer) {
    add_ext(x, iss, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(x, iss, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_ext(x, iss, NID_authority_key_identifier, "keyid:always");
    add_ext(x, iss, NID_basic_constraints, "critical,CA:FALSE");
    add_ext(x, iss, NID_key_usage, "critical,digitalSignature");
    add_ext(x, iss, NID_ext_key_usage, "serverAuth");
    add_ext(x, iss, NID_subject_alt_name, san);
  }
  if (X509_sign(x, issuer ? issuer_key : key, EVP_sha256()) <= 0) die("sign");
  return x;
}

static void write_pem(const std::string& path, X509* x, bool append = false) {
  FILE* f = fopen(path.c_str(), append ? "a" : "w");
  if (!f || !PEM_write_X509(f, x)) die("write " + path);
  fclose(f);
}

// ---------------------------------------------------------------- server

// Thread per connection, blocking: the fastest answer for few connections
// at once, and nothing between a request and its reply.
struct Server {
  struct Listener {
    int fd;
    SSL_CTX* ctx;
  };
  std::vector<Listener> listeners;
  uint16_t port = 0;
  static inline char blob[256 << 10];

  static SSL_CTX* context(X509* cert, EVP_PKEY* key, X509* ca) {
    SSL_CTX* c = SSL_CTX_new(TLS_server_method());
    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate(c, cert) != 1 || SSL_CTX_use_PrivateKey(c, key) != 1) die("server certificate");
    X509_up_ref(ca);
    SSL_CTX_add_extra_chain_cert(c, ca);
    SSL_CTX_set_alpn_select_cb(
        c,
        [](SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned inlen, void*) {
          for (unsigned i = 0; i < inlen;) {
            unsigned n = in[i];
            if (i + 1 + n > inlen) break;
            if (n == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0) {
              *out = in + i + 1, *outlen = 8;
              return SSL_TLSEXT_ERR_OK;
            }
            i += 1 + n;
          }
          return SSL_TLSEXT_ERR_NOACK;
        },
        nullptr);
    return c;
  }

  // 127.0.0.1 with `main`, each of `extra_ips` (same port) with `ips`.
  bool start(SSL_CTX* main, SSL_CTX* ips, const std::vector<std::string>& extra_ips) {
    int s = listen_tcp("127.0.0.1", 0, 0, 1024, port);
    if (s < 0) return false;
    listeners.push_back({s, main});
    for (auto& ip : extra_ips) {
      int e = listen_tcp(ip.c_str(), port, 0, 1024, port);
      if (e < 0) return false;
      listeners.push_back({e, ips});
    }
    memset(blob, 'x', sizeof blob);
    std::thread([this] { accept_loop(); }).detach();
    return true;
  }

  void accept_loop() {
    std::vector<pollfd> p;
    for (auto& l : listeners) p.push_back({l.fd, POLLIN, 0});
    for (;;) {
      if (poll(p.data(), p.size(), -1) <= 0) continue;
      for (size_t i = 0; i < p.size(); ++i) {
        if (!(p[i].revents & POLLIN)) continue;
        int c = accept4(p[i].fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) continue;
        int one = 1;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        SSL_CTX* ctx = listeners[i].ctx;
        std::thread([c, ctx] { serve(c, ctx); }).detach();
      }
    }
  }

  static bool ssl_write_all(SSL* s, const char* p, size_t n) {
    while (n) {
      int w = SSL_write(s, p, static_cast<int>(std::min<size_t>(n, 1 << 30)));
      if (w <= 0) return false;
      p += w, n -= static_cast<size_t>(w);
    }
    return true;
  }

  static void serve(int fd, SSL_CTX* ctx) {
    SSL* s = SSL_new(ctx);
    SSL_set_fd(s, fd);
    if (SSL_accept(s) == 1) {
      std::string in;
      char buf[16384];
      for (bool open = true; open;) {
        size_t end;
        while ((end = in.find("\r\n\r\n")) == std::string::npos) {
          int n = SSL_read(s, buf, sizeof buf);
          if (n <= 0) {
            open = false;
            break;
          }
          in.append(buf, static_cast<size_t>(n));
        }
        if (!open) break;
        std::string head = in.substr(0, end);
        in.erase(0, end + 4);  // GETs only: no body
        std::string lower = head;
        std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
        bool close_after = lower.find("\r\nconnection: close") != std::string::npos;
        auto sp1 = head.find(' '), sp2 = head.find(' ', sp1 + 1);
        std::string path = sp1 == std::string::npos ? "/" : head.substr(sp1 + 1, sp2 - sp1 - 1);
        uint64_t n = 64;
        if (path.rfind("/bulk/", 0) == 0) n = std::stoull(path.substr(6));
        std::string hdr = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: " +
                          std::to_string(n) + (close_after ? "\r\nConnection: close" : "") + "\r\n\r\n";
        if (n <= 64) {
          hdr.append(n, 'x');
          if (!ssl_write_all(s, hdr.data(), hdr.size())) break;
        } else {
          if (!ssl_write_all(s, hdr.data(), hdr.size())) break;
          while (n) {
            size_t k = std::min<uint64_t>(n, sizeof blob);
            if (!ssl_write_all(s, blob, k)) break;
            n -= k;
          }
          if (n) break;
        }
        if (close_after) break;
      }
      SSL_shutdown(s);
    }
    SSL_free(s);
    ::close(fd);
  }
};

// ---------------------------------------------------------------- reference relay

// About the least a TLS-inspecting CONNECT proxy on the host can do: read
// the CONNECT, dial the server, answer 200, end the client's TLS with a
// leaf minted for the host (one shared P-256 key, cached, like airlock's),
// open a verified TLS connection of its own to the server, then copy
// plaintext both ways in batches of up to 256 KiB (OpenSSL reading ahead
// 256 KiB per recv). Thread per connection, blocking, no HTTP parsing, no
// sandbox. What airlock costs beyond it is airlock's own; what it costs
// next to the plain tunnel is the price of the second TLS hop itself.
struct TlsRelay {
  uint16_t port = 0, server_port = 0;
  X509* ca = nullptr;
  EVP_PKEY *ca_key = nullptr, *leaf_key = nullptr;
  SSL_CTX *down = nullptr, *up = nullptr;
  std::mutex mu;
  std::map<std::string, X509*> leaves;

  X509* leaf(const std::string& host) {
    std::lock_guard<std::mutex> g(mu);
    auto& l = leaves[host];
    if (!l) l = make_cert(leaf_key, ca, ca_key, host.c_str(), (is_ip(host) ? "IP:" : "DNS:") + host);
    return l;
  }

  bool start(uint16_t server, const std::string& cafile) {
    server_port = server;
    ca_key = p256();
    ca = make_cert(ca_key, nullptr, nullptr, "bench relay CA", "");
    leaf_key = p256();
    down = SSL_CTX_new(TLS_server_method());
    SSL_CTX_set_min_proto_version(down, TLS1_2_VERSION);
    SSL_CTX_set_read_ahead(down, 1);
    SSL_CTX_set_default_read_buffer_len(down, 256 << 10);
    up = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(up, SSL_VERIFY_PEER, nullptr);
    if (SSL_CTX_load_verify_locations(up, cafile.c_str(), nullptr) != 1) return false;
    SSL_CTX_set_read_ahead(up, 1);
    SSL_CTX_set_default_read_buffer_len(up, 256 << 10);
    static const unsigned char alpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    SSL_CTX_set_alpn_protos(up, alpn, sizeof alpn);
    int l = listen_tcp("127.0.0.1", 0, 0, 1024, port);
    if (l < 0) return false;
    std::thread([this, l] {
      for (;;) {
        int c = accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) continue;
        std::thread([this, c] { serve(c); }).detach();
      }
    }).detach();
    return true;
  }

  void serve(int c) {
    int one = 1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::string req;
    char ch;
    while (req.size() < 8192 && (req.size() < 4 || req.compare(req.size() - 4, 4, "\r\n\r\n") != 0)) {
      if (::recv(c, &ch, 1, 0) != 1) {
        ::close(c);
        return;
      }
      req += ch;
    }
    std::string host;
    if (req.rfind("CONNECT ", 0) == 0) host = req.substr(8, req.find(' ', 8) - 8);
    host = host.substr(0, host.rfind(':'));
    int u = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    setsockopt(u, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(server_port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    static const char ok[] = "HTTP/1.1 200 Connection Established\r\n\r\n";
    SSL *d = nullptr, *s = nullptr;
    if (!host.empty() && ::connect(u, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && write_all(c, ok, sizeof ok - 1)) {
      d = SSL_new(down);
      SSL_set_fd(d, c);
      SSL_use_certificate(d, leaf(host));
      SSL_use_PrivateKey(d, leaf_key);
      s = SSL_new(up);
      SSL_set_fd(s, u);
      SSL_set_tlsext_host_name(s, host.c_str());
      SSL_set1_host(s, host.c_str());
      if (SSL_accept(d) == 1 && SSL_connect(s) == 1) pump(d, s);
    }
    if (d) SSL_free(d);
    if (s) SSL_free(s);
    ::close(c);
    ::close(u);
  }

  // Non-blocking: a read must never wait for one side while the other
  // has something to say (a server's session tickets come unasked).
  static void pump(SSL* a, SSL* b) {
    for (SSL* x : {a, b}) fcntl(SSL_get_fd(x), F_SETFL, fcntl(SSL_get_fd(x), F_GETFL) | O_NONBLOCK);
    std::vector<char> buf(256 << 10);
    pollfd p[2] = {{SSL_get_fd(a), POLLIN, 0}, {SSL_get_fd(b), POLLIN, 0}};
    for (;;) {
      // Read ahead, OpenSSL may hold bytes the socket no longer shows.
      bool held = SSL_has_pending(a) || SSL_has_pending(b);
      if (poll(p, 2, held ? 0 : -1) < 0) continue;
      for (int i = 0; i < 2; ++i) {
        SSL *from = i ? b : a, *to = i ? a : b;
        if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)) && !SSL_has_pending(from)) continue;
        size_t have = 0;
        bool end = false;
        while (have < buf.size()) {  // all that has arrived, up to the buffer
          size_t n = 0;
          if (SSL_read_ex(from, buf.data() + have, buf.size() - have, &n) == 1) {
            have += n;
            continue;
          }
          int e = SSL_get_error(from, 0);
          end = e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE;
          break;
        }
        if (have && !write_out(to, buf.data(), have)) return;
        if (end) return;
      }
    }
  }

  static bool write_out(SSL* to, const char* p, size_t n) {
    while (n) {
      size_t w = 0;
      if (SSL_write_ex(to, p, n, &w) == 1) {
        p += w, n -= w;
        continue;
      }
      int e = SSL_get_error(to, 0);
      if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ) return false;
      pollfd q{SSL_get_fd(to), static_cast<short>(e == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN), 0};
      poll(&q, 1, -1);
    }
    return true;
  }
};

// ---------------------------------------------------------------- client

struct Dialer {
  bool via_proxy = false;
  uint16_t port = 0;    // the server's
  sockaddr_in proxy{};  // via_proxy
  std::string auth;     // "Proxy-Authorization: Basic ...\r\n" or ""
  double timeout_s = 10;

  // how: "direct", "proxy" (the one HTTPS_PROXY names) or "proxy=IP:PORT"
  std::string setup(const std::string& how, uint16_t server_port) {
    port = server_port;
    via_proxy = how != "direct";
    if (!via_proxy) return "";
    return proxy_address(how, proxy, auth);
  }

  // A connected socket to host:port (through the proxy, after its 200), or -1.
  int open(const std::string& host, std::string& why) const {
    sockaddr_in addr = proxy;
    if (!via_proxy) {
      addr = {};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(port);
      if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    }
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    timeval tv{static_cast<time_t>(timeout_s), 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
      why = std::string("connect: ") + strerror(errno);
      ::close(fd);
      return -1;
    }
    if (!via_proxy) return fd;
    std::string target = host + ":" + std::to_string(port);
    std::string req = "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n" + auth + "\r\n";
    if (!write_all(fd, req.data(), req.size())) {
      why = "write CONNECT failed";
      ::close(fd);
      return -1;
    }
    // Byte by byte up to the blank line: nothing past it may be eaten
    // (the TLS server speaks after our ClientHello anyway).
    std::string resp;
    char ch;
    while (resp.size() < 4 || resp.compare(resp.size() - 4, 4, "\r\n\r\n") != 0) {
      ssize_t r = ::recv(fd, &ch, 1, 0);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        why = "proxy closed during CONNECT";
        ::close(fd);
        return -1;
      }
      resp += ch;
    }
    if (resp.size() < 12 || resp.compare(9, 3, "200") != 0) {
      why = "CONNECT " + target + " answered: " + resp.substr(0, resp.find("\r\n"));
      ::close(fd);
      return -1;
    }
    return fd;
  }
};

struct Conn {
  int fd = -1;
  SSL* ssl = nullptr;
  std::string host, authority, in;  // authority: the Host header, host:port
  ~Conn() {
    if (ssl) SSL_free(ssl);
    if (fd >= 0) ::close(fd);
  }
};

static const char* kTestCa = "airlock bench test CA";
static std::string expect;  // "end-to-end": the server's own certificate; "inspected": one the proxy made

static std::string tls_start(SSL_CTX* ctx, Conn& c, uint16_t port) {
  c.authority = c.host + (port == 443 ? "" : ":" + std::to_string(port));
  c.ssl = SSL_new(ctx);
  SSL_set_fd(c.ssl, c.fd);
  if (is_ip(c.host)) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c.ssl), c.host.c_str());
  } else {
    SSL_set_tlsext_host_name(c.ssl, c.host.c_str());
    SSL_set1_host(c.ssl, c.host.c_str());
  }
  if (SSL_connect(c.ssl) != 1) {
    long v = SSL_get_verify_result(c.ssl);
    return "TLS handshake with " + c.host + " failed: " + (v != X509_V_OK ? X509_verify_cert_error_string(v) : ssl_err());
  }
  // Is this the tunnel we meant to measure? The issuer says who ended our TLS.
  X509* peer = SSL_get0_peer_certificate(c.ssl);
  char issuer[256] = "";
  if (peer) X509_NAME_get_text_by_NID(X509_get_issuer_name(peer), NID_commonName, issuer, sizeof issuer);
  bool ours = strcmp(issuer, kTestCa) == 0;
  if (ours != (expect == "end-to-end"))
    return c.host + ": the certificate's issuer is '" + issuer + "': the connection is not " + expect;
  return "";
}

// GET `path`; reads the whole response (the body is counted, not kept).
// Returns the body's size, or -1 (why says why).
static long long get(Conn& c, const std::string& path, std::string& why, bool close = false) {
  std::string req = "GET " + path + " HTTP/1.1\r\nHost: " + c.authority + "\r\nUser-Agent: bench-tls\r\nAccept: */*\r\n" +
                    (close ? "Connection: close\r\n" : "") + "\r\n";
  if (SSL_write(c.ssl, req.data(), static_cast<int>(req.size())) != static_cast<int>(req.size())) {
    why = "write: " + ssl_err();
    return -1;
  }
  static char buf[1 << 20];
  size_t end;
  while ((end = c.in.find("\r\n\r\n")) == std::string::npos) {
    int n = SSL_read(c.ssl, buf, sizeof buf);
    if (n <= 0) {
      why = "the response's header did not arrive: " + ssl_err();
      return -1;
    }
    c.in.append(buf, static_cast<size_t>(n));
  }
  std::string head = c.in.substr(0, end);
  c.in.erase(0, end + 4);
  if (head.compare(0, 12, "HTTP/1.1 200") != 0) {
    why = "answer: " + head.substr(0, head.find("\r\n"));
    return -1;
  }
  std::string lower = head;
  std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
  auto cl = lower.find("\r\ncontent-length:");
  if (cl == std::string::npos) {
    why = "no Content-Length";
    return -1;
  }
  unsigned long long want = std::stoull(head.substr(cl + 17)), have = std::min<unsigned long long>(want, c.in.size());
  c.in.erase(0, have);
  while (have < want) {
    int n = SSL_read(c.ssl, buf, static_cast<int>(std::min<unsigned long long>(sizeof buf, want - have)));
    if (n <= 0) {
      why = "body cut short at " + std::to_string(have) + " of " + std::to_string(want);
      return -1;
    }
    have += static_cast<unsigned long long>(n);
  }
  return static_cast<long long>(have);
}

static SSL_CTX* client_context(const std::string& cafile) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_default_verify_paths(ctx);  // SSL_CERT_FILE: the sandbox's bundle, with its proxy's CA
  // The test CA, where it can be read (the sandboxes also get it through
  // extraCaCertPaths); failing to read it is no error.
  if (cafile != "-" && access(cafile.c_str(), R_OK) == 0) SSL_CTX_load_verify_locations(ctx, cafile.c_str(), nullptr);
  ERR_clear_error();
  static const unsigned char alpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);  // every handshake in full
  return ctx;
}

// The client takes its orders on stdin, one line each, and answers each on
// stdout, so that the driver can run every runner in lockstep: noise from
// the rest of the machine then lands on all of them alike.
//   hs HOST         a new connection (+ CONNECT), TLS, GET /small with
//                   Connection: close -> "hs CONNECT_US TLS_US GET_US"
//   open HOST       a connection to keep                  -> "open"
//   get N           N small GETs on it                    -> "get US US ..."
//   bulk HOST BYTES a new connection, GET /small, then GET /bulk/BYTES, timed
//                   from that request to the last byte    -> "bulk BYTES SECONDS"
// A failure answers "error WHY" (and the client goes on).
static int client_main(int argc, char** argv) {
  // client <direct|proxy> PORT CAFILE EXPECT
  if (argc < 6) {
    fprintf(stderr, "usage: client <direct|proxy|proxy=IP:PORT> PORT CAFILE <end-to-end|inspected>\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  Dialer d;
  if (auto e = d.setup(argv[2], static_cast<uint16_t>(atoi(argv[3]))); !e.empty()) {
    fprintf(stderr, "client: %s\n", e.c_str());
    return 1;
  }
  SSL_CTX* ctx = client_context(argv[4]);
  expect = argv[5];
  if (d.via_proxy) wait_for_proxy(d.proxy);
  printf("ready\n");
  fflush(stdout);
  std::unique_ptr<Conn> kept;
  char line[1024];
  while (fgets(line, sizeof line, stdin)) {
    std::istringstream in(line);
    std::string cmd, host, why;
    in >> cmd;
    std::ostringstream out;
    out.setf(std::ios::fixed);
    out.precision(1);
    auto connect = [&](Conn& c, const std::string& h) {
      c.host = h;
      if ((c.fd = d.open(h, why)) < 0) return false;
      why = tls_start(ctx, c, d.port);
      return why.empty();
    };
    if (cmd == "hs") {
      in >> host;
      Conn c;
      auto t0 = Clock::now();
      c.host = host;
      bool ok = (c.fd = d.open(host, why)) >= 0;
      auto t1 = Clock::now();
      ok = ok && (why = tls_start(ctx, c, d.port)).empty();
      auto t2 = Clock::now();
      ok = ok && get(c, "/small", why, true) >= 0;
      auto t3 = Clock::now();
      if (ok) out << "hs " << usec(t1 - t0) << " " << usec(t2 - t1) << " " << usec(t3 - t2);
    } else if (cmd == "open") {
      in >> host;
      kept = std::make_unique<Conn>();
      if (connect(*kept, host) && get(*kept, "/small", why) >= 0) out << "open";
      else kept.reset();
    } else if (cmd == "get") {
      int n = 0;
      in >> n;
      out << "get";
      for (int i = 0; i < n && kept && why.empty(); ++i) {
        auto t0 = Clock::now();
        if (get(*kept, "/small", why) >= 0) out << " " << usec(Clock::now() - t0);
      }
      if (!kept) why = "no connection open";
    } else if (cmd == "bulk") {
      unsigned long long n = 0;
      in >> host >> n;
      Conn c;
      if (connect(c, host) && get(c, "/small", why) >= 0) {  // the connection is through
        auto t0 = Clock::now();
        long long got = get(c, "/bulk/" + std::to_string(n), why);
        if (got >= 0) out << "bulk " << got << " " << std::setprecision(6) << secs(Clock::now() - t0);
      }
    } else {
      why = "unknown command " + cmd;
    }
    std::string o = why.empty() ? out.str() : "error " + host + ": " + why;
    std::replace(o.begin(), o.end(), '\n', ' ');
    printf("%s\n", o.c_str());
    fflush(stdout);
  }
  return 0;
}

// ---------------------------------------------------------------- driver

struct Runner {
  std::string name;
  std::vector<std::string> prefix;  // what wraps the client
  std::string how;                  // "direct" / "proxy"
  std::string expect;               // "end-to-end" / "inspected"
  std::vector<std::string> hosts;   // for the handshake runs
  std::string host;                 // for rtt and bulk
  std::string why;                  // first failure
  std::unique_ptr<Child> child;     // this round's client, while it lives
  // Samples, aligned across runners (NaN where one failed), so that the
  // k-th sample of two runners were taken one right after the other.
  // Handshakes: totals and phases, cold and warm.
  std::vector<double> cold, cold_conn, cold_tls, cold_get, warm, warm_conn, warm_tls, warm_get;
  std::vector<double> rtt;
  std::vector<double> mbps;         // one per round

  void failed(const std::string& w) {
    if (why.empty()) why = w;
  }
  // Sends one order and reads its answer: the numbers after the answer's
  // tag, or nullopt (the failure is noted; a dead client is ended).
  std::optional<std::vector<double>> ask(const std::string& order, double timeout_s);
};

static std::string self_exe, errdir, cafile;
static uint16_t server_port;
static bool verbose = false;

std::optional<std::vector<double>> Runner::ask(const std::string& order, double timeout_s) {
  if (!child) return std::nullopt;
  auto l = child->say(order + "\n") ? child->line(timeout_s) : std::nullopt;
  if (!l) {
    int st = child->finish(5);
    failed(order.substr(0, order.find(' ')) + ": the client ended (exit " + std::to_string(st) + "): " + child->err_tail());
    child.reset();
    return std::nullopt;
  }
  if (l->rfind("error", 0) == 0) {
    failed(order.substr(0, order.find(' ')) + ": " + l->substr(6));
    return std::nullopt;
  }
  return nums(*l);
}

static std::string join(const std::vector<std::string>& v, const std::string& sep, const std::string& pre = "",
                        const std::string& post = "") {
  std::string o;
  for (size_t i = 0; i < v.size(); ++i) o += (i ? sep : "") + pre + v[i] + post;
  return o;
}

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "client") return client_main(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  std::string airlock = "build/airlock", srt;
  int rounds = 3, hosts_n = 50, rtt_n = 2000, settle_ms = 300;
  double bulk_cap = 20;
  uint64_t bulk_mib = 200;
  bool serve_only = argc > 1 && std::string(argv[1]) == "serve";
  for (int i = serve_only ? 2 : 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    if (k == "--airlock") airlock = argv[i + 1];
    else if (k == "--srt") srt = argv[i + 1];
    else if (k == "--rounds") rounds = atoi(argv[i + 1]);
    else if (k == "--hosts") hosts_n = atoi(argv[i + 1]);
    else if (k == "--rtt") rtt_n = atoi(argv[i + 1]);
    else if (k == "--bulk-mib") bulk_mib = std::stoull(argv[i + 1]);
    else if (k == "--bulk-max-seconds") bulk_cap = atof(argv[i + 1]);
    else if (k == "--settle-ms") settle_ms = atoi(argv[i + 1]);
    else {
      fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  hosts_n = std::clamp(hosts_n, 1, 250);
  self_exe = self_exe_path();
  errdir = cwd_path();
  cafile = errdir + "/bench-ca.pem";

  // The test CA and the server's two certificates: names, and srt's IPs.
  std::vector<std::string> names, ips;
  for (int i = 1; i <= hosts_n; ++i) names.push_back("h" + std::to_string(i) + ".bench.test");
  for (int i = 2; i < 2 + hosts_n; ++i) ips.push_back("127.0.0." + std::to_string(i));
  EVP_PKEY* ca_key = p256();
  X509* ca = make_cert(ca_key, nullptr, nullptr, kTestCa, "");
  EVP_PKEY* key = p256();
  X509* cert = make_cert(key, ca, ca_key, "bench.test", "DNS:*.bench.test,DNS:bench.test,DNS:localhost,IP:127.0.0.1");
  X509* ip_cert = make_cert(key, ca, ca_key, "bench ips", join(ips, ",", "IP:"));
  write_pem(cafile, ca);
  Server server;
  if (!server.start(Server::context(cert, key, ca), Server::context(ip_cert, key, ca), srt.empty() && !serve_only ? std::vector<std::string>{} : ips)) {
    perror("server");
    return 1;
  }
  server_port = server.port;
  std::string port = std::to_string(server.port);
  TlsRelay relay;
  if (!relay.start(server.port, cafile)) {
    fprintf(stderr, "bench-tls: the reference relay did not start: %s\n", ssl_err().c_str());
    return 1;
  }
  write_pem(cafile, relay.ca, true);  // the clients on the host trust the relay's CA too
  if (serve_only) {
    printf("%s %s %d\n", port.c_str(), cafile.c_str(), relay.port);
    fflush(stdout);
    pause();
    return 0;
  }

  {
    std::string hosts_map = "\"bench.test\":\"127.0.0.1\"";
    for (auto& h : names) hosts_map += ",\"" + h + "\":\"127.0.0.1\"";
    auto airlock_settings = [&](const std::string& path, bool exclude) {
      std::ofstream a(path);
      a << R"({"network":{"allowedDomains":["*.bench.test:)" << port << R"(","bench.test:)" << port
        << R"("],"hosts":{)" << hosts_map << R"(},"allowPrivateAddresses":["127.0.0.0/8"],)"
        << R"("tlsTerminate":{"upstreamCaCertPaths":[")" << cafile << R"("],"extraCaCertPaths":[")" << cafile << "\"]"
        << (exclude ? R"(,"excludeDomains":["*.bench.test","bench.test"])" : "") << "}}}\n";
    };
    airlock_settings("airlock-inspect.json", false);
    airlock_settings("airlock-plain.json", true);
    // srt: "localhost" (its address guard lets loopback names reach
    // loopback) and the IP literals; its upstream trust is Node's (system
    // roots plus NODE_EXTRA_CA_CERTS), set on its command line below.
    auto srt_settings = [&](const std::string& path, bool exclude) {
      std::ofstream s(path);
      std::string list = "\"localhost\"," + join(ips, ",", "\"", "\"");
      s << R"({"network":{"allowedDomains":[)" << list << R"(],"deniedDomains":[],"tlsTerminate":{"extraCaCertPaths":[")"
        << cafile << "\"]" << (exclude ? ",\"excludeDomains\":[" + list + "]" : "") << "}},"
        << R"("filesystem":{"denyRead":[],"allowWrite":["."],"denyWrite":[]}})" << "\n";
    };
    srt_settings("srt-tls.json", false);
    srt_settings("srt-plain.json", true);
  }

  std::vector<Runner> rs;
  auto runner = [](std::string name, std::vector<std::string> prefix, std::string how, std::vector<std::string> hosts,
                   std::string host) {
    Runner r;
    r.name = std::move(name), r.prefix = std::move(prefix), r.how = std::move(how), r.hosts = std::move(hosts);
    r.host = std::move(host);
    r.expect = r.name == "inspected" || r.name == "relay" || r.name == "srt-tls" ? "inspected" : "end-to-end";
    return r;
  };
  enum { kDirect, kPlain, kRelay, kInspected, kSrtPlain, kSrtTls };
  rs.push_back(runner("direct", {}, "direct", names, "bench.test"));
  rs.push_back(runner("plain", {airlock, "run", "--settings", "airlock-plain.json", "--"}, "proxy", names, "bench.test"));
  rs.push_back(runner("relay", {}, "proxy=127.0.0.1:" + std::to_string(relay.port), names, "bench.test"));
  rs.push_back(runner("inspected", {airlock, "run", "--settings", "airlock-inspect.json", "--"}, "proxy", names, "bench.test"));
  if (!srt.empty()) {
    for (auto [name, file] : {std::pair{"srt-plain", "srt-plain.json"}, std::pair{"srt-tls", "srt-tls.json"}}) {
      Runner r = runner(name, {"env", "NODE_EXTRA_CA_CERTS=" + cafile}, "proxy", ips, "localhost");
      add_srt(r.prefix, srt, file);
      rs.push_back(std::move(r));
    }
  }
  bool have_srt = rs.size() > kSrtTls;

  uint64_t bulk_bytes = bulk_mib << 20;
  const int batch = 100;  // GETs per order
  int batches = std::max(1, rtt_n / batch);
  printf("server https://127.0.0.1:%s (OpenSSL %s, P-256 certificates); %d rounds, all runners in lockstep; "
         "%d new hosts then the same again; %d keep-alive GETs; bulk %llu MiB\n",
         port.c_str(), OpenSSL_version(OPENSSL_VERSION_STRING), rounds, hosts_n, batches * batch,
         (unsigned long long)bulk_mib);
  fflush(stdout);
  verbose = getenv("BENCH_VERBOSE") != nullptr;
  double idle_before = idle_share();
  auto t_start = Clock::now();
  const size_t nr = rs.size();
  // The k-th order of a step goes to the runners in turn, starting with a
  // different one each time (nobody always goes first).
  auto in_turn = [&](size_t k, auto f) {
    for (size_t j = 0; j < nr; ++j) f(rs[(k + j) % nr]);
  };
  for (int round = 0; round < rounds; ++round) {
    // Every runner's client (and sandbox) for the whole round.
    for (auto& r : rs) {
      std::vector<std::string> cmd = r.prefix;
      for (auto& a : {self_exe, std::string("client"), r.how, std::to_string(server_port), cafile, r.expect}) cmd.push_back(a);
      r.child = std::make_unique<Child>();
      if (!r.child->spawn(cmd, errdir + "/" + r.name + ".err", /*append=*/true)) {
        r.failed("cannot start the client");
        r.child.reset();
      }
    }
    for (auto& r : rs) {
      if (!r.child) continue;
      auto l = r.child->line(60);
      if (!l || *l != "ready") {
        r.failed("the client did not start: " + r.child->err_tail());
        r.child->finish(5);
        r.child.reset();
        continue;
      }
      r.ask("hs " + r.host, 30);  // a first connection, not counted: it pays for more than its host
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(settle_ms));

    // New hosts, then the same hosts again.
    for (int pass = 0; pass < 2; ++pass)
      for (int i = 0; i < hosts_n; ++i)
        in_turn(static_cast<size_t>(i), [&](Runner& r) {
          auto v = r.ask("hs " + r.hosts[static_cast<size_t>(i)], 30);
          bool ok = v && v->size() == 3;
          double c = ok ? (*v)[0] : NAN, t = ok ? (*v)[1] : NAN, g = ok ? (*v)[2] : NAN;
          (pass ? r.warm : r.cold).push_back(c + t + g);
          (pass ? r.warm_conn : r.cold_conn).push_back(c);
          (pass ? r.warm_tls : r.cold_tls).push_back(t);
          (pass ? r.warm_get : r.cold_get).push_back(g);
        });
    if (verbose)
      for (auto& r : rs)
        fprintf(stderr, "round %d %-9s handshake p50 cold %.0f us, warm %.0f us\n", round, r.name.c_str(),
                pct(std::vector<double>(r.cold.end() - hosts_n, r.cold.end()), 0.5),
                pct(std::vector<double>(r.warm.end() - hosts_n, r.warm.end()), 0.5));

    // Round trips on one kept-alive connection each.
    for (auto& r : rs)
      if (r.ask("open " + r.host, 30)) r.ask("get " + std::to_string(batch), 30);  // warm-up, not counted
    for (int b = 0; b < batches; ++b)
      in_turn(static_cast<size_t>(b), [&](Runner& r) {
        auto v = r.ask("get " + std::to_string(batch), 30);
        for (int k = 0; k < batch; ++k)
          r.rtt.push_back(v && v->size() == static_cast<size_t>(batch) ? (*v)[static_cast<size_t>(k)] : NAN);
      });
    if (verbose)
      for (auto& r : rs) {
        std::vector<double> last(r.rtt.end() - batches * batch, r.rtt.end());
        fprintf(stderr, "round %d %-9s rtt p50 %.0f us p99 %.0f us\n", round, r.name.c_str(), pct(last, 0.5), pct(last, 0.99));
      }

    // One download each, one runner at a time.
    in_turn(static_cast<size_t>(round), [&](Runner& r) {
      std::this_thread::sleep_for(std::chrono::milliseconds(settle_ms / 3));
      auto v = r.ask("bulk " + r.host + " " + std::to_string(bulk_bytes), bulk_cap + 30);
      if (v && v->size() == 2) r.mbps.push_back((*v)[0] / 1e6 / (*v)[1]);
      if (verbose && v && v->size() == 2) fprintf(stderr, "round %d %-9s bulk %.0f MB/s\n", round, r.name.c_str(), r.mbps.back());
    });

    for (auto& r : rs)
      if (r.child) {
        int st = r.child->finish(15);
        if (st != 0) r.failed("the client exited " + std::to_string(st) + ": " + r.child->err_tail());
        r.child.reset();
      }
  }
  double elapsed = secs(Clock::now() - t_start);
  double idle_after = idle_share();

  // ---- the table
  // Added at the median: the median of the paired differences (sample k of
  // one runner less sample k of the other, taken back to back), which the
  // machine's noise moves much less than the medians themselves.
  auto paired = [](const std::vector<double>& x, const std::vector<double>& y) -> double {
    if (x.size() != y.size()) return NAN;
    std::vector<double> d;
    for (size_t i = 0; i < x.size(); ++i)
      if (!std::isnan(x[i]) && !std::isnan(y[i])) d.push_back(x[i] - y[i]);
    return pct(d, 0.5);
  };
  std::vector<std::pair<int, int>> cmp = {{kInspected, kPlain}, {kRelay, kPlain}, {kInspected, kRelay}};
  if (have_srt) cmp.push_back({kSrtTls, kSrtPlain}), cmp.push_back({kSrtTls, kInspected});
  printf("\n%-44s", "metric");
  for (auto& r : rs) printf(" %9s", r.name.c_str());
  for (auto [x, y] : cmp) printf(" %19s", (rs[x].name + "/" + rs[y].name).c_str());
  printf("\n");
  // Samples at percentile p: each runner's figure, then per comparison the
  // difference in us (paired, at the median) and the ratio.
  auto row = [&](const std::string& label, std::vector<double> Runner::*m, double p) {
    printf("%-44s", label.c_str());
    std::vector<double> v;
    for (auto& r : rs) v.push_back(pct(r.*m, p));
    for (double x : v) printf(" %9s", cell(x, "%.0f").c_str());
    for (auto [x, y] : cmp) {
      double diff = p == 0.5 ? paired(rs[x].*m, rs[y].*m) : v[x] - v[y];
      printf(" %19s", (cell(diff, "%+.0f") + " " + cell(ratio(v[x], v[y]), "%.2fx")).c_str());
    }
    printf("\n");
  };
  printf("-- a new host: connect + CONNECT + TLS handshake + 1 GET, us (%d hosts x %d rounds)\n", hosts_n, rounds);
  row("cold leaf cache, p50", &Runner::cold, 0.5);
  row("cold, p99", &Runner::cold, 0.99);
  row("  of which connect + CONNECT, p50", &Runner::cold_conn, 0.5);
  row("  of which TLS handshake, p50", &Runner::cold_tls, 0.5);
  row("  of which first GET (+ proxy's upstream TLS)", &Runner::cold_get, 0.5);
  row("same hosts again (warm), p50", &Runner::warm, 0.5);
  row("warm, p99", &Runner::warm, 0.99);
  row("  of which TLS handshake, p50", &Runner::warm_tls, 0.5);
  row("  of which first GET (+ proxy's upstream TLS)", &Runner::warm_get, 0.5);
  printf("-- one kept-alive connection: small GET round trip, us (%d x %d rounds)\n", batches * batch, rounds);
  row("p50", &Runner::rtt, 0.5);
  row("p99", &Runner::rtt, 0.99);
  printf("-- one download over one connection, %llu MiB, MB/s (median of rounds)\n", (unsigned long long)bulk_mib);
  {
    printf("%-44s", "throughput");
    std::vector<double> v;
    for (auto& r : rs) v.push_back(median(r.mbps));
    for (double x : v) printf(" %9s", cell(x, "%.0f").c_str());
    for (auto [x, y] : cmp) printf(" %19s", cell(ratio(v[x], v[y]), "%.2fx").c_str());
    printf("\n");
  }

  printf("\n");
  for (auto& r : rs)
    if (!r.why.empty()) printf("%s failed at least once: %s\n", r.name.c_str(), r.why.c_str());
  note_if_busy(idle_before, idle_after);
  printf("relay: a bare TLS-terminating relay on the host (no sandbox, no HTTP parsing): the second TLS hop alone\n");
  if (have_srt) printf("srt's hosts are IP literals 127.0.0.2... (no SNI) and localhost; airlock's are names under bench.test\n");
  const Runner &P = rs[kPlain], &I = rs[kInspected];
  // A cold host costs airlock a leaf before its handshake with the client:
  // the TLS phase's cold - warm difference estimates it.
  printf("inspected adds %s us per new host cold, %s us warm (vs the plain tunnel, paired medians); "
         "its TLS phase cold - warm (leaf minting): %s us\n",
         cell(paired(I.cold, P.cold), "%.0f").c_str(), cell(paired(I.warm, P.warm), "%.0f").c_str(),
         cell(paired(I.cold_tls, I.warm_tls), "%+.0f").c_str());
  double added = paired(I.rtt, P.rtt) / 1000;
  double bulk = ratio(median(I.mbps), median(P.mbps));
  printf("inspected GET p50 added = %s ms (target < 0.5 ms: %s); bulk inspected / plain = %s (target >= 0.50: %s); %.0f s\n",
         cell(added, "%.3f").c_str(), std::isnan(added) ? "-" : added < 0.5 ? "met" : "MISSED", cell(bulk, "%.2f").c_str(),
         std::isnan(bulk) ? "-" : bulk >= 0.5 ? "met" : "MISSED", elapsed);
  return 0;
}
