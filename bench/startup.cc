// Start-up benchmark: median wall time and peak memory of running /bin/true
// bare, under bwrap (equivalent isolation flags), under airlock (default
// policy) and under srt (when installed), in one run, as ratios.
//
//   startup [--runs N] [--airlock PATH] [--srt "NODE CLI.js"]
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

struct Sample {
  double ms;
  long maxrss_kb;
  int status;
};

static Sample run_once(const std::vector<std::string>& argv) {
  auto t0 = std::chrono::steady_clock::now();
  pid_t pid = fork();
  if (pid == 0) {
    std::vector<char*> a;
    for (auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
    a.push_back(nullptr);
    execvp(a[0], a.data());
    _exit(127);
  }
  int st = 0;
  struct rusage ru {};
  wait4(pid, &st, 0, &ru);
  auto t1 = std::chrono::steady_clock::now();
  return {std::chrono::duration<double, std::milli>(t1 - t0).count(), ru.ru_maxrss, st};
}

struct Result {
  std::string name;
  double median_ms = 0, p90_ms = 0;
  long peak_kb = 0;
  bool ok = false;
};

struct Runner {
  std::string name;
  std::vector<std::string> argv;
  int runs;
  std::vector<double> t;
  Result r;
};

// The runners take turns, one run each per round: every namespace a run
// creates is torn down by the kernel in the background, and that work must
// weigh on all runners alike, not on whichever runs after the others.
static void measure_interleaved(std::vector<Runner>& rs) {
  for (auto& x : rs) {
    x.r.name = x.name;
    x.r.ok = true;
    for (int i = 0; i < 3; ++i) run_once(x.argv);  // warm the page cache
  }
  int most = 0;
  for (auto& x : rs) most = std::max(most, x.runs);
  for (int i = 0; i < most; ++i)
    for (auto& x : rs) {
      if (i >= x.runs || !x.r.ok) continue;
      Sample s = run_once(x.argv);
      if (!WIFEXITED(s.status) || WEXITSTATUS(s.status) != 0) {
        x.r.ok = false;
        continue;
      }
      x.t.push_back(s.ms);
      x.r.peak_kb = std::max(x.r.peak_kb, s.maxrss_kb);
    }
  for (auto& x : rs) {
    if (!x.r.ok || x.t.empty()) {
      x.r.ok = false;
      continue;
    }
    std::sort(x.t.begin(), x.t.end());
    x.r.median_ms = x.t[x.t.size() / 2];
    x.r.p90_ms = x.t[x.t.size() * 9 / 10];
  }
}

int main(int argc, char** argv) {
  int runs = 200;
  std::string airlock = "build/airlock", srt;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    if (k == "--runs") runs = atoi(argv[i + 1]);
    else if (k == "--airlock") airlock = argv[i + 1];
    else if (k == "--srt") srt = argv[i + 1];
  }
  std::vector<Runner> runners = {
      {"bare /bin/true", {"/bin/true"}, runs, {}, {}},
      {"bwrap",
       {"bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--ro-bind", "/", "/", "--dev", "/dev", "--proc",
        "/proc", "/bin/true"},
       runs, {}, {}},
      {"airlock run", {airlock, "run", "--", "/bin/true"}, runs, {}, {}},
  };
  if (!srt.empty()) {
    std::vector<std::string> cmd;
    std::istringstream ss(srt);
    for (std::string w; ss >> w;) cmd.push_back(w);
    cmd.push_back("/bin/true");
    runners.push_back({"srt", cmd, std::max(10, runs / 10), {}, {}});
  }
  measure_interleaved(runners);
  std::vector<Result> rs;
  for (auto& x : runners) rs.push_back(x.r);
  const Result* bw = &rs[1];
  const Result* al = &rs[2];
  printf("%-16s %10s %10s %10s %12s %12s\n", "runner", "median ms", "p90 ms", "peak MB", "x bwrap", "x airlock");
  for (const auto& r : rs) {
    if (!r.ok) {
      printf("%-16s %10s\n", r.name.c_str(), "failed");
      continue;
    }
    printf("%-16s %10.2f %10.2f %10.1f %12.2f %12.2f\n", r.name.c_str(), r.median_ms, r.p90_ms, r.peak_kb / 1024.0,
           bw->ok ? r.median_ms / bw->median_ms : 0.0, al->ok ? r.median_ms / al->median_ms : 0.0);
  }
  if (al->ok && bw->ok)
    printf("\nairlock / bwrap = %.2f (target <= 0.80); airlock peak %.1f MB (target < 4 MB)\n",
           al->median_ms / bw->median_ms, al->peak_kb / 1024.0);
  return 0;
}
