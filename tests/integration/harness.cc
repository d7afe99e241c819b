#include "harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <stdexcept>

extern char** environ;

namespace airlock::test {

// Overridable so the suite can run from a copy readable by an unprivileged
// user when the build tree is not (scripts/test.sh).
static std::string from_env(const char* name, const char* fallback) {
  const char* v = ::getenv(name);
  return v && *v ? v : fallback;
}
std::string airlock_bin() { return from_env("AIRLOCK_BIN", AIRLOCK_BIN); }
// The probe runs inside the sandbox, so it must live where the sandbox can
// see it: a build tree under the host's /tmp is hidden by the private /tmp.
// It is copied once to /var/tmp and removed when the tests end.
std::string probe_bin() {
  static std::string path = [] {
    std::string src = from_env("AIRLOCK_PROBE", PROBE_BIN);
    if (src.rfind("/tmp/", 0) != 0) return src;
    static char dir[] = "/var/tmp/airlock-probe-XXXXXX";
    if (!::mkdtemp(dir)) return src;
    ::chmod(dir, 0755);
    std::string dst = std::string(dir) + "/probe";
    if (std::system(("cp '" + src + "' '" + dst + "'").c_str()) != 0) return src;
    std::atexit([] { (void)!std::system((std::string("rm -rf ") + dir).c_str()); });
    return dst;
  }();
  return path;
}
bool is_root() { return ::getuid() == 0; }

RunResult run_program(const std::vector<std::string>& argv, const RunOptions& o) {
  int in[2], out[2], errp[2];
  if (::pipe2(in, O_CLOEXEC) || ::pipe2(out, O_CLOEXEC) || ::pipe2(errp, O_CLOEXEC))
    throw std::runtime_error("pipe");
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    std::string name = kv.substr(0, kv.find('='));
    if (!o.env.count(name)) env.push_back(kv);
  }
  for (const auto& [k, v] : o.env) env.push_back(k + "=" + v);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::dup2(errp[1], 2);
    ::setpgid(0, 0);
    if (!o.cwd.empty() && ::chdir(o.cwd.c_str()) != 0) ::_exit(121);
    std::vector<char*> a, e;
    for (auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
    a.push_back(nullptr);
    for (auto& s : env) e.push_back(const_cast<char*>(s.c_str()));
    e.push_back(nullptr);
    ::execve(a[0], a.data(), e.data());
    ::_exit(122);
  }
  ::close(in[0]);
  ::close(out[1]);
  ::close(errp[1]);
  if (!o.stdin_data.empty()) {
    signal(SIGPIPE, SIG_IGN);
    (void)!::write(in[1], o.stdin_data.data(), o.stdin_data.size());
  }
  ::close(in[1]);
  RunResult r;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(o.timeout_ms);
  bool out_open = true, err_open = true, timed_out = false;
  while (out_open || err_open) {
    struct pollfd p[2] = {{out_open ? out[0] : -1, POLLIN, 0}, {err_open ? errp[0] : -1, POLLIN, 0}};
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    deadline - std::chrono::steady_clock::now()).count());
    if (left <= 0) { timed_out = true; break; }
    if (::poll(p, 2, left) < 0 && errno != EINTR) break;
    char buf[65536];
    for (int i = 0; i < 2; ++i) {
      if (!p[i].revents) continue;
      ssize_t n = ::read(p[i].fd, buf, sizeof buf);
      if (n <= 0) { (i == 0 ? out_open : err_open) = false; continue; }
      (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
    }
  }
  if (timed_out) ::kill(-pid, SIGKILL);
  int st = 0;
  ::waitpid(pid, &st, 0);
  ::close(out[0]);
  ::close(errp[0]);
  if (timed_out) r.code = -1;
  else if (WIFEXITED(st)) r.code = WEXITSTATUS(st);
  else if (WIFSIGNALED(st)) r.code = 128 + WTERMSIG(st);
  return r;
}

namespace {
void remove_tree(int dirfd, const std::string& name) {
  int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd >= 0) {
    ::fchmod(fd, 0700);
    DIR* d = ::fdopendir(fd);
    std::vector<std::string> names;
    while (struct dirent* e = ::readdir(d))
      if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) names.push_back(e->d_name);
    for (auto& n : names) remove_tree(::dirfd(d), n);
    ::closedir(d);
    ::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR);
  } else {
    ::unlinkat(dirfd, name.c_str(), 0);
  }
}
}  // namespace

TempTree::TempTree() {
  char tmpl[] = "/var/tmp/airlock-test-XXXXXX";
  if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp");
  root_ = tmpl;
  ::chmod(root_.c_str(), 0755);
}

TempTree::~TempTree() { remove_tree(AT_FDCWD, root_); }

void TempTree::mkdir(const std::string& rel) const {
  std::string p = root_;
  std::stringstream ss(rel);
  for (std::string c; std::getline(ss, c, '/');) {
    if (c.empty()) continue;
    p += "/" + c;
    ::mkdir(p.c_str(), 0755);
  }
}

void TempTree::write(const std::string& rel, const std::string& content) const {
  auto slash = rel.rfind('/');
  if (slash != std::string::npos) mkdir(rel.substr(0, slash));
  std::ofstream f(path(rel), std::ios::binary | std::ios::trunc);
  f << content;
}

std::string TempTree::read(const std::string& rel) const {
  std::ifstream f(path(rel), std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool TempTree::exists(const std::string& rel) const {
  struct stat st {};
  return ::lstat(path(rel).c_str(), &st) == 0;
}

SandboxFixture::SandboxFixture() {
  tree.write("home/.ssh/id_rsa", "PRIVATE-KEY-MATERIAL\n");
  tree.write("home/.aws/credentials", "aws_secret_access_key=AKIASECRET\n");
  tree.write("home/.netrc", "machine example.com password NETRCSECRET\n");
  tree.write("home/.docker/config.json", "{\"auths\":{\"x\":{\"auth\":\"DOCKERSECRET\"}}}\n");
  tree.write("home/.bashrc", "# user's bashrc\n");
  tree.write("home/notes.txt", "ordinary file\n");
  tree.write("ws/README.md", "project\n");
  home = tree.path("home");
  ws = tree.path("ws");
}

RunResult SandboxFixture::sh(const std::string& script, const std::vector<std::string>& extra,
                             const RunOptions& o) const {
  std::vector<std::string> argv = {airlock_bin(), "run"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back("-c");
  argv.push_back(script);
  RunOptions opts = o;
  if (opts.cwd.empty()) opts.cwd = ws;
  if (!opts.env.count("HOME")) opts.env["HOME"] = home;
  return run_program(argv, opts);
}

RunResult SandboxFixture::run(const std::vector<std::string>& cmd, const std::vector<std::string>& extra,
                              const RunOptions& o) const {
  std::vector<std::string> argv = {airlock_bin(), "run"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back("--");
  argv.insert(argv.end(), cmd.begin(), cmd.end());
  RunOptions opts = o;
  if (opts.cwd.empty()) opts.cwd = ws;
  if (!opts.env.count("HOME")) opts.env["HOME"] = home;
  return run_program(argv, opts);
}

std::vector<std::string> SandboxFixture::listing(const std::string& dir) const {
  std::vector<std::string> out;
  std::function<void(const std::string&, const std::string&)> walk = [&](const std::string& abs,
                                                                           const std::string& rel) {
    DIR* d = ::opendir(abs.c_str());
    if (!d) return;
    while (struct dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n == "." || n == "..") continue;
      out.push_back(rel + n);
      if (e->d_type == DT_DIR) walk(abs + "/" + n, rel + n + "/");
    }
    ::closedir(d);
  };
  walk(dir, "");
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace airlock::test
