// What the benchmark programs (bench/proxy_bench.cc, bench/tls_bench.cc)
// share: time, sockets, the client's proxy from the environment, a child
// process driven through pipes, and the figures and table cells. Header
// only: each benchmark is one file compiled with plain g++.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using Clock = std::chrono::steady_clock;
inline double secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// ---------------------------------------------------------------- sockets

inline bool write_all(int fd, const void* p, size_t n) {
  auto* c = static_cast<const char*>(p);
  while (n) {
    ssize_t w = ::send(fd, c, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    c += w, n -= static_cast<size_t>(w);
  }
  return true;
}

// A listening TCP socket on `ip`:`want` (0: any port), SO_REUSEADDR, with
// `flags` (SOCK_NONBLOCK, ...) besides SOCK_CLOEXEC; `port` gets the port
// it is on. -1 on failure.
inline int listen_tcp(const char* ip, uint16_t want, int flags, int backlog, uint16_t& port) {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);
  if (s < 0) return -1;
  int one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  inet_pton(AF_INET, ip, &a.sin_addr);
  a.sin_port = htons(want);
  if (::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(s, backlog) != 0) {
    ::close(s);
    return -1;
  }
  socklen_t len = sizeof a;
  getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  port = ntohs(a.sin_port);
  return s;
}

// ---------------------------------------------------------------- the client's proxy

inline std::string pct_decode(const std::string& s) {
  std::string o;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && isxdigit(s[i + 1]) && isxdigit(s[i + 2])) {
      o += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      o += s[i];
    }
  }
  return o;
}

inline std::string base64(const std::string& in) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string o;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = uint8_t(in[i]) << 16 | uint8_t(in[i + 1]) << 8 | uint8_t(in[i + 2]);
    o += t[v >> 18], o += t[v >> 12 & 63], o += t[v >> 6 & 63], o += t[v & 63];
  }
  if (i + 1 == in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    o += t[v >> 18], o += t[v >> 12 & 63], o += "==";
  } else if (i + 2 == in.size()) {
    uint32_t v = uint8_t(in[i]) << 16 | uint8_t(in[i + 1]) << 8;
    o += t[v >> 18], o += t[v >> 12 & 63], o += t[v >> 6 & 63], o += '=';
  }
  return o;
}

// "IP:PORT" (or "localhost:PORT") into `a`.
inline bool parse_hostport(std::string hp, sockaddr_in& a) {
  auto colon = hp.rfind(':');
  if (colon == std::string::npos) return false;
  std::string h = hp.substr(0, colon);
  if (h == "localhost") h = "127.0.0.1";
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(atoi(hp.c_str() + colon + 1)));
  return inet_pton(AF_INET, h.c_str(), &a.sin_addr) == 1;
}

// The proxy that `how` names: "proxy=IP:PORT", or "proxy": the one
// HTTPS_PROXY (or HTTP_PROXY) names, whose user:password@ becomes `auth`
// ("Proxy-Authorization: Basic ...\r\n", which srt needs). "" or what is wrong.
inline std::string proxy_address(const std::string& how, sockaddr_in& addr, std::string& auth) {
  if (how.rfind("proxy=", 0) == 0) return parse_hostport(how.substr(6), addr) ? "" : "bad proxy " + how;
  const char* env = nullptr;
  for (const char* k : {"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"})
    if ((env = getenv(k)) && *env) break;
  if (!env || !*env) return "no HTTPS_PROXY/HTTP_PROXY in the environment";
  std::string u = env;
  if (u.rfind("http://", 0) == 0) u = u.substr(7);
  if (auto slash = u.find('/'); slash != std::string::npos) u = u.substr(0, slash);
  if (auto at = u.rfind('@'); at != std::string::npos) {
    std::string cred = u.substr(0, at);
    u = u.substr(at + 1);
    auto c = cred.find(':');
    std::string user = pct_decode(cred.substr(0, c)), pass = c == std::string::npos ? "" : pct_decode(cred.substr(c + 1));
    auth = "Proxy-Authorization: Basic " + base64(user + ":" + pass) + "\r\n";
  }
  return parse_hostport(u, addr) ? "" : "cannot parse the proxy address " + std::string(env);
}

// srt starts its in-sandbox relay (socat) in the background, racing the
// command: waits (up to about 3 s) until the proxy's port answers.
inline void wait_for_proxy(const sockaddr_in& proxy) {
  for (int i = 0; i < 300; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool up = ::connect(fd, reinterpret_cast<const sockaddr*>(&proxy), sizeof proxy) == 0;
    ::close(fd);
    if (up) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// ---------------------------------------------------------------- driver

// A child with pipes on stdin and stdout; stderr goes to a file (appended
// to, or truncated first).
struct Child {
  pid_t pid = -1;
  int in = -1, out = -1;
  std::string errfile, buf;

  bool spawn(const std::vector<std::string>& argv, const std::string& errpath, bool append = false) {
    int pi[2], po[2];
    if (pipe2(pi, O_CLOEXEC) || pipe2(po, O_CLOEXEC)) return false;
    errfile = errpath;
    std::vector<char*> a;
    for (auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
    a.push_back(nullptr);
    int ef = ::open(errpath.c_str(), O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC) | O_CLOEXEC, 0644);
    pid = fork();
    if (pid == 0) {
      dup2(pi[0], 0);
      dup2(po[1], 1);
      if (ef >= 0) dup2(ef, 2);
      setpgid(0, 0);
      execvp(a[0], a.data());
      _exit(127);
    }
    ::close(pi[0]);
    ::close(po[1]);
    if (ef >= 0) ::close(ef);
    in = pi[1];
    out = po[0];
    return pid > 0;
  }
  // One line of stdout, or nullopt on EOF or timeout.
  std::optional<std::string> line(double timeout_s) {
    auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
    for (;;) {
      if (auto nl = buf.find('\n'); nl != std::string::npos) {
        std::string l = buf.substr(0, nl);
        buf.erase(0, nl + 1);
        return l;
      }
      int ms = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
      if (ms <= 0) return std::nullopt;
      pollfd p{out, POLLIN, 0};
      if (poll(&p, 1, ms) <= 0) continue;
      char b[65536];
      ssize_t r = ::read(out, b, sizeof b);
      if (r <= 0) return std::nullopt;
      buf.append(b, static_cast<size_t>(r));
    }
  }
  bool say(const std::string& s) { return in >= 0 && write(in, s.data(), s.size()) == static_cast<ssize_t>(s.size()); }
  int finish(double timeout_s) {
    if (in >= 0) ::close(in), in = -1;
    auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
    int st = 0;
    for (;;) {
      pid_t r = waitpid(pid, &st, WNOHANG);
      if (r == pid) break;
      if (Clock::now() > deadline) {
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (out >= 0) ::close(out), out = -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  }
  std::string err_tail() const {
    std::ifstream f(errfile);
    std::string s((std::istreambuf_iterator<char>(f)), {});
    if (s.size() > 600) s = "..." + s.substr(s.size() - 600);
    return s;
  }
};

// This program's path, to run it again as the client.
inline std::string self_exe_path() {
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  return std::string(exe, static_cast<size_t>(std::max<ssize_t>(n, 0)));
}

inline std::string cwd_path() {
  char cwd[4096];
  return getcwd(cwd, sizeof cwd) ? cwd : ".";
}

// Appends srt's command (`srt`: "NODE CLI.js") and its settings file to `prefix`.
inline void add_srt(std::vector<std::string>& prefix, const std::string& srt, const std::string& settings) {
  std::istringstream ss(srt);
  for (std::string w; ss >> w;) prefix.push_back(w);
  for (const std::string& s : {std::string("--settings"), settings, std::string("--")}) prefix.push_back(s);
}

// ---------------------------------------------------------------- figures

// The numbers after a line's first word.
inline std::vector<double> nums(const std::string& line) {
  std::istringstream ss(line);
  std::string tag;
  ss >> tag;
  std::vector<double> v;
  for (double x; ss >> x;) v.push_back(x);
  return v;
}

// Percentile p of the samples that are not NaN (NaN when there are none).
inline double pct(std::vector<double> v, double p) {
  v.erase(std::remove_if(v.begin(), v.end(), [](double x) { return std::isnan(x); }), v.end());
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}
inline double median(const std::vector<double>& v) { return pct(v, 0.5); }

// Share of CPU time idle over half a second, from /proc/stat.
inline double idle_share() {
  auto read = [] {
    std::ifstream f("/proc/stat");
    std::string cpu;
    f >> cpu;
    double v[10] = {}, total = 0;
    for (double& x : v) f >> x, total += x;
    return std::pair<double, double>(v[3] + v[4], total);
  };
  auto a = read();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto b = read();
  return b.second > a.second ? (b.first - a.first) / (b.second - a.second) : 1.0;
}

inline void note_if_busy(double idle_before, double idle_after) {
  if (idle_before < 0.9 || idle_after < 0.9)
    printf("the machine was busy: %.0f%% / %.0f%% of its %u CPUs idle before / after: figures are noisy\n",
           idle_before * 100, idle_after * 100, std::thread::hardware_concurrency());
}

inline double ratio(double a, double b) { return std::isnan(a) || std::isnan(b) || b == 0 ? NAN : a / b; }

// A table cell: v in `fmt`, "-" for NaN.
inline std::string cell(double v, const char* fmt) {
  char b[64];
  if (std::isnan(v)) return std::string("-");
  snprintf(b, sizeof b, fmt, v);
  return std::string(b);
}
