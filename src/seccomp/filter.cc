#include "seccomp/filter.h"

#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <seccomp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>

namespace airlock::seccomp {

namespace {
struct CtxDeleter {
  void operator()(void* c) const { seccomp_release(static_cast<scmp_filter_ctx>(c)); }
};
using Ctx = std::unique_ptr<void, CtxDeleter>;

// The sandbox pid and name of a host pid, for reports.
void describe_pid(int host_pid, Denial& d) {
  d.pid = host_pid;
  std::ifstream st("/proc/" + std::to_string(host_pid) + "/status");
  for (std::string line; std::getline(st, line);) {
    if (line.rfind("Name:", 0) == 0) d.comm = line.substr(line.find_first_not_of(" \t", 5));
    if (line.rfind("NSpid:", 0) == 0) {
      auto last = line.find_last_of(" \t");
      if (last != std::string::npos) d.pid = std::atoi(line.c_str() + last + 1);
    }
  }
}
}  // namespace

Result<std::string> compile(const Options& opt) {
  // Everything not named in the policy is allowed: the policy is a list of
  // refusals, each with its reason (policy.cc).
  Ctx ctx(seccomp_init(SCMP_ACT_ALLOW));
  if (!ctx) return err("seccomp_init failed");
  // Only the native x86_64 ABI. A 32-bit entry (int 0x80) or an x32 call is
  // the classic way around a filter written for one ABI: nothing legitimate
  // mixes ABIs in one process, so such a process is killed, not answered.
  if (int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS); rc != 0)
    return sys_err("seccomp_attr_set(BADARCH)", -rc);
  // A binary tree over syscall numbers instead of a linear chain: allowed
  // calls cost a few comparisons (and the kernel caches the always-allowed).
  if (int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_OPTIMIZE, 2); rc != 0)
    return sys_err("seccomp_attr_set(OPTIMIZE)", -rc);
  for (const auto& g : groups()) {
    if (g.lifted_by_nested_userns && opt.allow_nested_userns) continue;
    for (const auto& r : g.rules) {
      int nr = seccomp_syscall_resolve_name(r.syscall);
      if (nr == __NR_SCMP_ERROR) continue;  // not on this architecture
      std::vector<scmp_arg_cmp> cmps;
      for (const auto& t : r.when) {
        scmp_arg_cmp c{};
        c.arg = t.arg;
        c.op = SCMP_CMP_MASKED_EQ;  // (arg & mask) == value, on all 64 bits
        c.datum_a = t.mask;
        c.datum_b = t.value;
        cmps.push_back(c);
      }
      int rc = seccomp_rule_add_array(ctx.get(), SCMP_ACT_NOTIFY, nr, static_cast<unsigned>(cmps.size()),
                                      cmps.empty() ? nullptr : cmps.data());
      if (rc != 0) return sys_err(fmt::format("seccomp_rule_add({}, group {})", r.syscall, g.name), -rc);
    }
  }
  UniqueFd mem(::memfd_create("airlock-bpf", MFD_CLOEXEC));
  if (!mem) return sys_err("memfd_create(seccomp program)");
  if (int rc = seccomp_export_bpf(ctx.get(), mem.get()); rc != 0) return sys_err("seccomp_export_bpf", -rc);
  std::string bpf(static_cast<size_t>(::lseek(mem.get(), 0, SEEK_END)), '\0');
  if (::pread(mem.get(), bpf.data(), bpf.size(), 0) != static_cast<ssize_t>(bpf.size()))
    return sys_err("read(seccomp program)");
  return bpf;
}

Result<UniqueFd> load(const std::string& bpf) {
  if (bpf.empty() || bpf.size() % sizeof(struct sock_filter) != 0) return err("internal: malformed seccomp program");
  struct sock_fprog prog {};
  prog.len = static_cast<unsigned short>(bpf.size() / sizeof(struct sock_filter));
  prog.filter = reinterpret_cast<struct sock_filter*>(const_cast<char*>(bpf.data()));
  long fd = ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
  if (fd < 0)
    return sys_err("seccomp(SET_MODE_FILTER, NEW_LISTENER) (the kernel needs CONFIG_SECCOMP_FILTER and user "
                   "notification, Linux 5.0+)");
  return UniqueFd(static_cast<int>(fd));
}

Result<std::vector<Denial>> answer(int listener, const Options& opt) {
  std::vector<Denial> out;
  struct seccomp_notif* req = nullptr;
  struct seccomp_notif_resp* resp = nullptr;
  if (seccomp_notify_alloc(&req, &resp) != 0) return err("seccomp_notify_alloc failed");
  std::unique_ptr<seccomp_notif, void (*)(seccomp_notif*)> hold_req(req, [](seccomp_notif* p) { seccomp_notify_free(p, nullptr); });
  std::unique_ptr<seccomp_notif_resp, void (*)(seccomp_notif_resp*)> hold_resp(resp, [](seccomp_notif_resp* p) { seccomp_notify_free(nullptr, p); });
  int rc = seccomp_notify_receive(listener, req);
  if (rc != 0) {
    if (rc == -ENOENT || rc == -EINTR) return out;  // the caller went away
    return sys_err("seccomp_notify_receive", -rc);
  }
  uint64_t args[6];
  for (int i = 0; i < 6; ++i) args[i] = req->data.args[i];
  const Group* g = refusing_group(opt, req->data.nr, args);
  resp->id = req->id;
  if (g) {
    resp->error = -(g->errnum ? g->errnum : EPERM);
    resp->val = 0;
    resp->flags = 0;
    Denial d;
    char* name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, req->data.nr);
    d.syscall = name ? name : std::to_string(req->data.nr);
    free(name);
    d.group = g->name;
    d.errnum = g->errnum;
    describe_pid(static_cast<int>(req->pid), d);
    out.push_back(std::move(d));
  } else {
    // Only reached for rules whose last condition the BPF cannot express
    // (personality's allowed values). The decision rests on register values
    // the caller cannot change after the fact, so continuing is safe.
    resp->error = 0;
    resp->val = 0;
    resp->flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
  }
  rc = seccomp_notify_respond(listener, resp);
  if (rc != 0 && rc != -ENOENT) return sys_err("seccomp_notify_respond", -rc);
  return out;
}

}  // namespace airlock::seccomp
