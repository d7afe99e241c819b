#include "cli/doctor.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "fs/landlock.h"
#include "util/sys.h"

namespace airlock::cli {

namespace {

std::string sysctl(const char* path) {
  auto r = sys::read_file(path, 4096);
  if (!r) return "";
  std::string v = *r;
  while (!v.empty() && (v.back() == '\n' || v.back() == ' ')) v.pop_back();
  return v;
}

// Can this user create the namespaces airlock needs? Tried for real.
bool try_namespaces(std::string* why) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int rc = ::unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS |
                       CLONE_NEWCGROUP);
    ::_exit(rc == 0 ? 0 : (errno & 0x7f));
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return true;
  int e = WIFEXITED(st) ? WEXITSTATUS(st) : 0;
  *why = std::string("unshare: ") + strerrorname_np(e);
  std::string apparmor = sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns");
  std::string debian = sysctl("/proc/sys/kernel/unprivileged_userns_clone");
  std::string max = sysctl("/proc/sys/user/max_user_namespaces");
  if (apparmor == "1") *why += "; AppArmor restricts unprivileged user namespaces (sysctl kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor profile for airlock)";
  if (debian == "0") *why += "; sysctl kernel.unprivileged_userns_clone=1 is needed";
  if (max == "0") *why += "; sysctl user.max_user_namespaces is 0";
  return false;
}

const char* mark(bool ok) { return ok ? "ok  " : "MISSING"; }

}  // namespace

int doctor(const char* self) {
  bool full = true;
  struct utsname u {};
  ::uname(&u);
  std::printf("airlock doctor\n\nkernel            %s %s\n", u.sysname, u.release);
  std::printf("running as        uid %d%s\n\n", ::getuid(), ::getuid() == 0 ? " (root)" : "");

  std::string why;
  bool ns = try_namespaces(&why);
  std::printf("%-8s namespaces     user, mount, pid, net, ipc, uts, cgroup%s%s\n", mark(ns), ns ? "" : ": ",
              why.c_str());
  full = full && ns;

  std::string llwhy;
  int abi = fs::landlock_abi(&llwhy);
  std::printf("%-8s Landlock       %s\n", abi ? "ok" : "MISSING",
              abi ? fmt::format("ABI {}{}", abi, abi >= 6 ? " (with signal and abstract-socket scoping)" : "").c_str()
                  : (llwhy + " -- the mount layer alone protects the filesystem; no-delete paths become read-only")
                        .c_str());
  full = full && abi > 0;

  unsigned api = seccomp_api_get();
  bool sc = api >= 5;  // user notification
  std::printf("%-8s seccomp        %s\n", sc ? "ok" : "MISSING",
              sc ? fmt::format("filter with user notification (libseccomp API {})", api).c_str()
                 : "user notification is unavailable (Linux 5.0+ with CONFIG_SECCOMP_FILTER is needed)");
  full = full && sc;

  struct statfs sf {};
  bool v2 = ::statfs("/sys/fs/cgroup", &sf) == 0 && static_cast<long>(sf.f_type) == CGROUP2_SUPER_MAGIC;
  bool v1 = !v2 && ::statfs("/sys/fs/cgroup/pids", &sf) == 0 && static_cast<long>(sf.f_type) == CGROUP_SUPER_MAGIC &&
            ::access("/sys/fs/cgroup/pids", W_OK) == 0;
  std::printf("%-8s limits         %s\n", "ok",
              v2 ? "cgroup v2 when the caller's cgroup delegates pids and memory, else rlimits"
                 : v1 ? "cgroup v1 (pids, memory)"
                      : "rlimits (RLIMIT_NPROC per sandbox user namespace, RLIMIT_DATA per process)");

  // A real run of the default policy proves the rest.
  std::string ws = "/var/tmp/airlock-doctor-XXXXXX";
  bool trial = false;
  if (::mkdtemp(ws.data())) {
    pid_t pid = ::fork();
    if (pid == 0) {
      if (::chdir(ws.c_str()) != 0) ::_exit(125);
      int null = ::open("/dev/null", O_RDWR);
      ::dup2(null, 0);
      ::dup2(null, 1);
      ::execl(self, self, "run", "--", "/bin/sh", "-c", "test \"$AIRLOCK\" = 1", nullptr);
      ::_exit(125);
    }
    int st = 0;
    ::waitpid(pid, &st, 0);
    trial = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    ::rmdir(ws.c_str());
  }
  std::printf("%-8s trial run      airlock run -- /bin/sh (default policy)\n\n", trial ? "ok" : "FAILED");
  full = full && trial;

  if (full) {
    std::printf("airlock run enforces here: namespaces, pivot_root with read-only host and hidden secrets, Landlock "
                "ABI %d, seccomp filter, no capabilities, no_new_privs, limits.\n",
                abi);
    return 0;
  }
  std::printf("airlock run cannot enforce the default policy in full on this machine (see above).\n");
  return 1;
}

}  // namespace airlock::cli
