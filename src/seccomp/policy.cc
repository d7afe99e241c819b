#include "seccomp/policy.h"

#include <linux/netlink.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/socket.h>

#include <cerrno>

namespace airlock::seccomp {

namespace {
constexpr uint64_t k32 = 0xffffffffULL;  // ioctl's cmd and socket's ints are 32-bit in the kernel
constexpr uint64_t kTIOCSTI = 0x5412, kTIOCLINUX = 0x541C;

Rule call(const char* name) { return Rule{name, {}, {}}; }

std::vector<Rule> calls(std::initializer_list<const char*> names) {
  std::vector<Rule> v;
  for (auto n : names) v.push_back(call(n));
  return v;
}

// One rule per namespace flag: libseccomp cannot test "any of these bits".
std::vector<Rule> namespace_flag_rules(const char* sys) {
  std::vector<Rule> v;
  for (uint64_t f : std::initializer_list<uint64_t>{CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWIPC, CLONE_NEWUTS,
                     CLONE_NEWCGROUP, 0x80ULL /* CLONE_NEWTIME */})
    v.push_back(Rule{sys, {{0, f, f}}, {}});
  return v;
}

std::vector<Rule> socket_families(std::initializer_list<int> fams) {
  std::vector<Rule> v;
  for (int f : fams) {
    v.push_back(Rule{"socket", {{0, k32, static_cast<uint64_t>(f)}}, {}});
    v.push_back(Rule{"socketpair", {{0, k32, static_cast<uint64_t>(f)}}, {}});
  }
  return v;
}

std::vector<Rule> netlink_protocols() {
  std::vector<Rule> v;
  // NETLINK_ROUTE (0) stays: getifaddrs() and friends read interfaces with
  // it, and changing routes needs CAP_NET_ADMIN, which the command lacks.
  // NETLINK_SOCK_DIAG (4) stays for ss(8). Every other protocol goes.
  for (int p = 1; p < 32; ++p)
    if (p != NETLINK_SOCK_DIAG)
      v.push_back(Rule{"socket", {{0, k32, AF_NETLINK}, {2, k32, static_cast<uint64_t>(p)}}, {}});
  return v;
}

std::vector<Rule> raw_sockets() {
  std::vector<Rule> v;
  for (int f : {AF_INET, AF_INET6})
    v.push_back(Rule{"socket", {{0, k32, static_cast<uint64_t>(f)}, {1, 0xf, SOCK_RAW}}, {}});
  return v;
}

std::vector<Group> build() {
  std::vector<Group> g;
  g.push_back({"io_uring", ENOSYS,
               "a second syscall interface the filter cannot see into, and a rich source of kernel bugs; "
               "ENOSYS makes liburing users fall back to ordinary I/O",
               false, calls({"io_uring_setup", "io_uring_enter", "io_uring_register"})});
  g.push_back({"clone3", ENOSYS,
               "clone3 passes its flags in memory the filter cannot read; ENOSYS makes libc fall back to clone, "
               "whose flags the filter checks",
               false, calls({"clone3"})});
  g.push_back({"kernel extension", EPERM,
               "loading code or programs into the kernel (modules, eBPF, kexec) is never needed by a sandboxed "
               "command and is the shortest road to the kernel",
               false,
               calls({"bpf", "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
                      "create_module"})});
  g.push_back({"kernel observation", EPERM,
               "perf events, the kernel log and dcookies reveal kernel addresses and other processes",
               false, calls({"perf_event_open", "syslog", "lookup_dcookie"})});
  g.push_back({"userfaultfd", EPERM,
               "lets a process stall the kernel mid-copy at a chosen moment, the standard tool for winning "
               "kernel races",
               false, calls({"userfaultfd"})});
  g.push_back({"keyrings", EPERM,
               "kernel keyrings are not namespaced: keys could leak between the sandbox and the host session",
               false, calls({"keyctl", "add_key", "request_key"})});
  g.push_back({"other processes", EPERM,
               "reading or steering another process's memory or descriptors (debuggers stay outside)",
               false,
               calls({"ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "process_madvise",
                      "kcmp"})});
  g.push_back({"machine", EPERM,
               "rebooting, swap, accounting, quotas, clocks and NUMA placement act on the whole machine",
               false,
               calls({"reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "settimeofday",
                      "clock_settime", "clock_adjtime", "adjtimex", "mbind", "migrate_pages", "move_pages",
                      "iopl", "ioperm", "vhangup", "nfsservctl", "uselib", "ustat", "sysfs", "_sysctl",
                      "fanotify_init"})});
  g.push_back({"file handles", EPERM,
               "open_by_handle_at opens a file by inode number, past every mount and path check",
               false, calls({"open_by_handle_at", "name_to_handle_at"})});
  g.push_back({"personality", EPERM,
               "personality flags such as READ_IMPLIES_EXEC weaken memory protection; only the default and "
               "queries are allowed",
               false, {Rule{"personality", {}, {0, 8, 0x20000, 0x20008, k32}}}});
  {
    Group mounts{"mounts", EPERM,
                 "the mount table is the sandbox's boundary; nothing inside may change it",
                 true,
                 calls({"mount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount", "fspick",
                        "open_tree", "move_mount", "mount_setattr"})};
    g.push_back(mounts);
  }
  {
    Group ns{"namespaces", EPERM,
             "a new user namespace gives back every capability over new kernel objects, the usual first step "
             "of a kernel exploit; setns could join another namespace",
             true, calls({"setns"})};
    for (auto& r : namespace_flag_rules("unshare")) ns.rules.push_back(r);
    for (auto& r : namespace_flag_rules("clone")) ns.rules.push_back(r);
    g.push_back(ns);
  }
  g.push_back({"terminal injection", EPERM,
               "TIOCSTI pushes keystrokes into a terminal's input and TIOCLINUX reads and writes the console; "
               "the command must not type into anyone's shell",
               false,
               {Rule{"ioctl", {{1, k32, kTIOCSTI}}, {}}, Rule{"ioctl", {{1, k32, kTIOCLINUX}}, {}}}});
  {
    Group s{"socket families", EAFNOSUPPORT,
            "packet, vsock, crypto and other rare families are attack surface no agent tool needs; "
            "EAFNOSUPPORT reads as 'not in this kernel'",
            false,
            socket_families({AF_PACKET, AF_VSOCK, AF_KEY, AF_ALG, AF_BLUETOOTH, AF_TIPC, AF_RDS, AF_LLC, AF_CAN,
                             AF_X25, AF_AX25, AF_ATMPVC, AF_ATMSVC, AF_APPLETALK, AF_IPX, AF_NETROM, AF_ROSE,
                             AF_DECnet, AF_IRDA, AF_PPPOX, AF_XDP, AF_KCM, AF_NFC, AF_RXRPC, AF_ISDN, AF_PHONET,
                             AF_IEEE802154, AF_CAIF, AF_QIPCRTR, AF_SMC, AF_MCTP, AF_IB, AF_MPLS, AF_SECURITY,
                             AF_WANPIPE, AF_ECONET, AF_BRIDGE, AF_NETBEUI, AF_ASH, AF_SNA, AF_IUCV})};
    for (auto& r : netlink_protocols()) s.rules.push_back(r);
    g.push_back(s);
  }
  g.push_back({"raw sockets", EPERM, "raw IP sockets forge packets and bypass the proxy's view", false,
               raw_sockets()});
  return g;
}
}  // namespace

const std::vector<Group>& groups() {
  static const std::vector<Group> g = build();
  return g;
}

const Group* refusing_group(const Options& opt, int nr, const uint64_t args[6]) {
  for (const auto& g : groups()) {
    if (g.lifted_by_nested_userns && opt.allow_nested_userns) continue;
    for (const auto& r : g.rules) {
      if (seccomp_syscall_resolve_name(r.syscall) != nr) continue;
      bool all = true;
      for (const auto& t : r.when) all = all && (args[t.arg] & t.mask) == t.value;
      if (!all) continue;
      if (!r.except_arg0.empty()) {
        bool allowed = false;
        for (uint64_t v : r.except_arg0) allowed = allowed || (args[0] & k32) == v;
        if (allowed) continue;
      }
      return &g;
    }
  }
  return nullptr;
}

}  // namespace airlock::seccomp
