#include "sandbox/limits.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <sstream>
#include <utility>

#include "util/log.h"
#include "util/sys.h"

namespace airlock::sandbox {

namespace {

std::string own_cgroup_v2() {
  std::ifstream f("/proc/self/cgroup");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("0::", 0) == 0) return line.substr(3);
  return "";
}

std::string own_cgroup_v1(const std::string& controller) {
  std::ifstream f("/proc/self/cgroup");
  for (std::string line; std::getline(f, line);) {
    auto a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    std::stringstream ctrls(line.substr(a + 1, b - a - 1));
    for (std::string c; std::getline(ctrls, c, ',');)
      if (c == controller) return line.substr(b + 1);
  }
  return "";
}

bool is_fs(const std::string& path, long magic) {
  struct statfs sf {};
  return ::statfs(path.c_str(), &sf) == 0 && static_cast<long>(sf.f_type) == magic;
}

std::string read_small(const std::string& path) {
  auto r = sys::read_file(path, 1 << 16);
  return r ? *r : "";
}

uint64_t field(const std::string& text, const std::string& key) {
  std::stringstream ss(text);
  for (std::string k; ss >> k;) {
    uint64_t v = 0;
    ss >> v;
    if (k == key) return v;
  }
  return 0;
}

}  // namespace

Cgroup::Cgroup(Cgroup&& o) noexcept { *this = std::move(o); }
Cgroup& Cgroup::operator=(Cgroup&& o) noexcept {
  dirs_ = std::exchange(o.dirs_, {});
  holds_pids_ = o.holds_pids_;
  holds_mem_ = o.holds_mem_;
  mechanism_ = o.mechanism_;
  v2_ = o.v2_;
  max_processes_ = o.max_processes_;
  memory_ = o.memory_;
  return *this;
}

Cgroup::~Cgroup() {
  // The processes are gone by now (init has been reaped); an empty cgroup
  // can be removed. Retry briefly: the kernel frees it asynchronously.
  for (auto it = dirs_.rbegin(); it != dirs_.rend(); ++it)
    for (int i = 0; i < 50 && ::rmdir(it->c_str()) != 0 && errno == EBUSY; ++i) ::usleep(2000);
}

Result<Cgroup> Cgroup::create(const Limits& l, pid_t pid) {
  Cgroup cg;
  cg.max_processes_ = l.max_processes;
  cg.memory_ = l.memory_bytes;
  // A cgroup costs milliseconds to make and remove, so it is made only where
  // rlimits fall short: the process count for root (the kernel does not
  // apply RLIMIT_NPROC to the host's root user), and a memory cap the
  // settings asked for (RLIMIT_DATA is per process, the default is only a
  // backstop).
  // On cgroup v1, moving a task into a group waits for an RCU grace period
  // (~10-20 ms), so there only limits the settings ask for get a group.
  bool v2 = is_fs("/sys/fs/cgroup", CGROUP2_SUPER_MAGIC);
  bool want_pids = l.max_processes && ::getuid() == 0 && (v2 || l.processes_explicit);
  bool want_mem = l.memory_bytes && l.memory_explicit;
  if (!want_pids && !want_mem) return cg;
  Limits need = l;
  if (!want_pids) need.max_processes = 0;
  if (!want_mem) need.memory_bytes = 0;
  return create_for(need, pid, std::move(cg));
}

Result<Cgroup> Cgroup::create_for(const Limits& l, pid_t pid, Cgroup cg) {
  std::string name = fmt::format("airlock-{}", ::getpid());
  // cgroup v2: a child of our own cgroup, if its controllers are delegated.
  if (is_fs("/sys/fs/cgroup", CGROUP2_SUPER_MAGIC)) {
    std::string parent = "/sys/fs/cgroup" + own_cgroup_v2();
    std::string ctrls = read_small(parent + "/cgroup.subtree_control");
    bool has_pids = ctrls.find("pids") != std::string::npos, has_mem = ctrls.find("memory") != std::string::npos;
    std::string dir = parent + "/" + name;
    if ((has_pids || !l.max_processes) && (has_mem || !l.memory_bytes) && ::mkdir(dir.c_str(), 0755) == 0) {
      cg.dirs_.push_back(dir);
      cg.v2_ = true;
      if (l.max_processes) AIRLOCK_TRY(sys::write_file(dir + "/pids.max", std::to_string(l.max_processes)));
      if (l.memory_bytes) {
        AIRLOCK_TRY(sys::write_file(dir + "/memory.max", std::to_string(l.memory_bytes)));
        (void)sys::write_file(dir + "/memory.swap.max", "0");
      }
      AIRLOCK_TRY(sys::write_file(dir + "/cgroup.procs", std::to_string(pid)));
      cg.mechanism_ = "cgroup v2 (" + dir + ")";
      cg.holds_pids_ = l.max_processes != 0;
      cg.holds_mem_ = l.memory_bytes != 0;
      return cg;
    }
  }
  // cgroup v1 (hybrid hierarchies), where the caller may create groups.
  bool any = false;
  std::string used;
  for (auto [ctrl, want] : {std::pair<const char*, uint64_t>{"pids", l.max_processes}, {"memory", l.memory_bytes}}) {
    if (!want) continue;
    std::string base = std::string("/sys/fs/cgroup/") + ctrl;
    if (!is_fs(base, CGROUP_SUPER_MAGIC)) continue;
    std::string dir = base + own_cgroup_v1(ctrl) + "/" + name;
    if (::mkdir(dir.c_str(), 0755) != 0) continue;
    cg.dirs_.push_back(dir);
    if (std::string(ctrl) == "pids") AIRLOCK_TRY(sys::write_file(dir + "/pids.max", std::to_string(want)));
    else AIRLOCK_TRY(sys::write_file(dir + "/memory.limit_in_bytes", std::to_string(want)));
    AIRLOCK_TRY(sys::write_file(dir + "/cgroup.procs", std::to_string(pid)));
    used += std::string(used.empty() ? "" : ", ") + ctrl;
    (std::string(ctrl) == "pids" ? cg.holds_pids_ : cg.holds_mem_) = true;
    any = true;
  }
  if (any) cg.mechanism_ = "cgroup v1 (" + used + ")";
  return cg;
}

std::vector<std::string> Cgroup::events() const {
  std::vector<std::string> out;
  for (const auto& d : dirs_) {
    if (v2_) {
      if (uint64_t n = field(read_small(d + "/pids.events"), "max"))
        out.push_back(fmt::format("the process limit ({}) was reached {} time{}", max_processes_, n, n == 1 ? "" : "s"));
      if (uint64_t n = field(read_small(d + "/memory.events"), "oom_kill"))
        out.push_back(fmt::format("the memory limit ({} bytes) killed {} process{}", memory_, n, n == 1 ? "" : "es"));
    } else if (d.find("/pids/") != std::string::npos) {
      if (uint64_t n = field(read_small(d + "/pids.events"), "max"))
        out.push_back(fmt::format("the process limit ({}) was reached {} time{}", max_processes_, n, n == 1 ? "" : "s"));
    } else {
      std::string fc = read_small(d + "/memory.failcnt");
      if (!fc.empty() && std::stoull(fc) > 0)
        out.push_back(fmt::format("the memory limit ({} bytes) was reached", memory_));
    }
  }
  return out;
}

Status apply_rlimits(const Limits& l, bool cgroup_pids, bool cgroup_memory) {
  auto set = [](int res, uint64_t v, const char* name) -> Status {
    struct rlimit rl {v, v};
    if (::setrlimit(res, &rl) != 0) return sys_err(fmt::format("setrlimit({}, {})", name, v));
    return {};
  };
  if (l.open_files) AIRLOCK_TRY(set(RLIMIT_NOFILE, l.open_files, "RLIMIT_NOFILE"));
  if (l.file_size_bytes) AIRLOCK_TRY(set(RLIMIT_FSIZE, l.file_size_bytes, "RLIMIT_FSIZE"));
  if (l.cpu_seconds) AIRLOCK_TRY(set(RLIMIT_CPU, l.cpu_seconds, "RLIMIT_CPU"));
  // Counted per uid inside the sandbox's user namespace.
  if (l.max_processes && !cgroup_pids) AIRLOCK_TRY(set(RLIMIT_NPROC, l.max_processes, "RLIMIT_NPROC"));
  // Without a cgroup, memory can only be capped per process (data segment
  // and anonymous mappings).
  if (l.memory_bytes && !cgroup_memory) AIRLOCK_TRY(set(RLIMIT_DATA, l.memory_bytes, "RLIMIT_DATA"));
  return {};
}

}  // namespace airlock::sandbox
