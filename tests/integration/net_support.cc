#include "net_support.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cctype>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace airlock::test {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string value_of(const std::string& out, const std::string& key) {
  std::istringstream in(out);
  for (std::string l; std::getline(in, l);)
    if (l.rfind(key + "=", 0) == 0) return l.substr(key.size() + 1);
  return "";
}

RunOptions proxy_free_options(int timeout_ms) {
  RunOptions o;
  for (const char* n : {"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY",
                        "all_proxy"})
    o.env[n] = "";
  o.timeout_ms = timeout_ms;
  return o;
}

std::vector<std::string> settings_args(const std::string& settings_path, const std::vector<std::string>& extra) {
  std::vector<std::string> args = {"--settings", settings_path};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

std::string python_command(const SandboxFixture& fx, const std::string& stem, const std::string& program) {
  static int n = 0;
  std::string name = stem + "-" + std::to_string(++n) + ".py";
  fx.tree.write("ws/" + name, program);
  return "PYTHONDONTWRITEBYTECODE=1 exec " + std::string(kPython) + " " + name;
}

std::string py_run_all(int workers) {
  return "from concurrent.futures import ThreadPoolExecutor\n\n"
         "def run_all(tests, workers=" + std::to_string(workers) + R"PY():
    def one(t):
        try:
            return t[0], t[1](*t[2:])
        except Exception as e:
            return t[0], "exc:" + type(e).__name__
    with ThreadPoolExecutor(workers) as ex:
        for label, r in ex.map(one, tests):
            print(label, r, flush=True)
)PY";
}

RunResult host_sh(const std::string& script, const std::string& cwd) {
  RunOptions o;
  o.cwd = cwd;
  return run_program({"/bin/sh", "-c", script}, o);
}

pid_t spawn_host_server(const std::vector<std::string>& argv, const std::string& errlog, int& out) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
  std::vector<char*> a;  // built before fork: no allocation in the child
  for (auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
  a.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    int err = ::open(errlog.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    ::dup2(null, 0);
    ::dup2(p[1], 1);
    if (err >= 0) ::dup2(err, 2);
    ::execv(a[0], a.data());
    ::_exit(127);
  }
  ::close(p[1]);
  out = p[0];
  return pid;
}

std::string read_until(int fd, const std::string& marker, std::chrono::milliseconds timeout) {
  std::string text;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (text.find(marker) == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    struct pollfd p {fd, POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) continue;
    char c[256];
    ssize_t n = ::read(fd, c, sizeof c);
    if (n <= 0) break;
    text.append(c, static_cast<size_t>(n));
  }
  return text;
}

std::vector<nlohmann::json> audit_lines(const std::string& path, bool strict) {
  std::vector<nlohmann::json> out;
  std::ifstream f(path);
  for (std::string line; std::getline(f, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (strict) {
      EXPECT_FALSE(j.is_discarded()) << "audit line is not JSON: " << line;
    }
    if (!j.is_discarded()) out.push_back(j);
  }
  return out;
}

std::string dump_all(const std::vector<nlohmann::json>& v) {
  std::string s;
  for (const auto& j : v) s += j.dump() + "\n";
  return s;
}

}  // namespace airlock::test
