#include "fs/plan.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <map>
#include <set>

#include "fs/path.h"
#include "util/fd.h"

namespace airlock::fs {

using policy::PathRule;
using policy::RuleKind;

const char* access_name(Access a) {
  switch (a) {
    case Access::Hidden: return "hidden";
    case Access::ReadOnly: return "read-only";
    case Access::ReadWrite: return "read-write";
    case Access::ReadWriteNoDelete: return "read-write-no-delete";
  }
  return "?";
}

namespace {

// Folders airlock builds itself; policy paths may not reach into them.
const std::set<std::string> kManaged = {"/proc", "/dev"};
// Private tmpfs folders; host paths the policy names under them are bound in.
const std::vector<std::string> kPrivateTmpfs = {"/tmp", "/run"};

// A node of the rule tree: a path with the rules written at exactly it.
struct Node {
  std::string path;
  bool exists = false;
  bool is_dir = false;
  // Facts written at this path (nullopt: inherit).
  int read = -1;   // 0 hidden, 1 readable
  int write = -1;  // 0 ro, 1 rw, 2 rw-no-delete
  std::string read_why, write_why;
  Access eff = Access::ReadOnly;
  std::string eff_why;
  // Forces a mount of its own even when it changes nothing: a mount point
  // cannot be renamed or deleted, which pins the names under it.
  bool pin = false;
  std::string pin_why;
  bool transient = true;  // every rule here came from a scan
};

// A protected name that is a symlink: the link itself is covered by an
// empty read-only file (its target is governed by the rules at the target).
struct LinkPin {
  std::string link;
  std::string why;
};

uint64_t rights(Access a, bool is_dir) {
  switch (a) {
    case Access::Hidden: return is_dir ? ll::kReadDir : 0;
    case Access::ReadOnly: return ll::kRead;
    case Access::ReadWrite: return ll::kReadWrite;
    case Access::ReadWriteNoDelete: return ll::kNoDelete;
  }
  return 0;
}

class Planner {
 public:
  explicit Planner(const policy::Policy& p) : p_(p) {}

  Result<Plan> run() {
    AIRLOCK_TRY(collect());
    add_pins();
    compute_effective();
    plan_mounts();
    AIRLOCK_TRY(plan_placeholders());
    plan_overlays();
    plan_landlock();
    for (const auto& o : p_.overlays)  // readable, whatever the rules around it say
      plan_.landlock.push_back({o.target, ll::kReadFile, o.why});
    return std::move(plan_);
  }

  // Files airlock wrote, mounted read-only over host paths (the trust
  // bundle, credential placeholders): last, on top of whatever the rules
  // put there (a masked credential is hidden first, then covered).
  void plan_overlays() {
    for (const auto& o : p_.overlays) {
      MountOp op{MountOp::Kind::BindHost, o.target, o.source, true, false, true, o.why};
      plan_.mounts.push_back(op);
      for (const auto& [k, n] : nodes_)
        if (mount_layer_writable(n.eff) && is_within(o.target, n.path) && n.path != o.target) {
          plan_.watch.push_back(o.target);
          break;
        }
    }
  }

 private:
  Status collect() {
    node("/").read = 1;
    node("/").write = 0;
    node("/").read_why = node("/").write_why = "default: the host is read-only";
    for (const auto& r : p_.rules) {
      bool managed = false;
      for (const auto& m : kManaged) managed = managed || is_within(r.path, m);
      if (managed && !r.link.empty()) {
        // A protected link into /proc or /dev (a repository's trick to stop
        // airlock from starting): the link is covered, the target is ours.
        links_.push_back({r.link, r.why + " (the link itself)"});
        continue;
      }
      for (const auto& m : kManaged)
        if (is_within(r.path, m)) return err("{}: '{}' is inside {}, which airlock builds itself", r.why, r.path, m);
      if (r.path == "/" && (r.kind == RuleKind::DenyRead || r.kind == RuleKind::AllowWrite || r.kind == RuleKind::NoDelete))
        return err("{}: the whole filesystem cannot be {}", r.why, policy::rule_kind_name(r.kind));
      if (!r.link.empty()) links_.push_back({r.link, r.why + " (the link itself)"});
      Node& n = node(r.path);
      n.exists = r.exists;
      n.is_dir = r.is_dir;
      n.transient = n.transient && r.transient;
      // At one path, deny wins: hidden beats readable, ro beats no-delete beats rw.
      auto set_read = [&](int v) {
        if (n.read == -1 || v < n.read) { n.read = v; n.read_why = r.why; }
      };
      auto set_write = [&](int v) {
        int rank_new = v == 0 ? 0 : (v == 2 ? 1 : 2), rank_old = n.write == 0 ? 0 : (n.write == 2 ? 1 : 2);
        if (n.write == -1 || rank_new < rank_old) { n.write = v; n.write_why = r.why; }
      };
      switch (r.kind) {
        case RuleKind::DenyRead: set_read(0); break;
        case RuleKind::AllowRead: set_read(1); break;
        case RuleKind::AllowWrite: set_read(1); set_write(1); break;
        case RuleKind::DenyWrite: set_write(0); break;
        case RuleKind::NoDelete: set_read(1); set_write(2); break;
      }
    }
    return {};
  }

  Node& node(const std::string& path) {
    auto it = nodes_.find(path);
    if (it == nodes_.end()) {
      it = nodes_.emplace(path, Node{}).first;
      it->second.path = path;
      struct stat st {};
      if (::lstat(path.c_str(), &st) == 0) {
        it->second.exists = true;
        it->second.is_dir = S_ISDIR(st.st_mode);
      }
    }
    return it->second;
  }

  // Nodes in depth order (parents first), then by path for stable output.
  std::vector<Node*> ordered() {
    std::vector<Node*> v;
    for (auto& [k, n] : nodes_) v.push_back(&n);
    std::stable_sort(v.begin(), v.end(), [](Node* a, Node* b) { return depth(a->path) < depth(b->path); });
    return v;
  }

  // Deepest fact at or above `path`.
  const Node* deepest(const std::string& path, bool want_read) const {
    const Node* best = nullptr;
    for (const auto& [k, n] : nodes_) {
      if ((want_read ? n.read : n.write) == -1 || !is_within(path, n.path)) continue;
      if (!best || depth(n.path) > depth(best->path)) best = &n;
    }
    return best;
  }

  // Inside a writable region, a protected or hidden path is only as safe as
  // the names leading to it: renaming `.git` would carry `.git/hooks`' stand-
  // in away and free the name. Every folder between the writable root and the
  // protected path becomes a mount point (bound onto itself), which the
  // kernel refuses to rename or remove. No-delete paths are pinned too.
  void add_pins() {
    std::vector<std::pair<std::string, std::string>> targets;  // path, why
    for (auto& [k, n] : nodes_) {
      if (n.write == 0 || n.read == 0 || n.write == 2) targets.emplace_back(n.path, n.write_why.empty() ? n.read_why : n.write_why);
      if (n.write == 2 && n.exists) { n.pin = true; n.pin_why = n.write_why; }
    }
    for (const auto& l : links_) targets.emplace_back(l.link, l.why);
    for (const auto& [path, why] : targets) {
      // The nearest ancestor where writing is granted starts the region.
      std::string root;
      for (const auto& [k, n] : nodes_)
        if (k != path && (n.write == 1 || n.write == 2) && is_within(path, k) && depth(k) > depth(root.empty() ? "/" : root) )
          root = k;
      if (root.empty()) continue;
      for (std::string a = parent(path); a != root && depth(a) > depth(root); a = parent(a)) {
        struct stat st {};
        if (::lstat(a.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) continue;
        Node& n = node(a);
        n.pin = true;
        n.pin_why = "pins the names under it (" + why + ")";
      }
    }
  }

  void compute_effective() {
    for (auto& [k, n] : nodes_) {
      const Node* r = deepest(n.path, true);
      const Node* w = deepest(n.path, false);
      if (r->read == 0) {
        n.eff = Access::Hidden;
        n.eff_why = r->read_why;
      } else {
        n.eff = w->write == 0 ? Access::ReadOnly : (w->write == 1 ? Access::ReadWrite : Access::ReadWriteNoDelete);
        n.eff_why = w->write_why;
      }
    }
  }

  const Node* owner_of(const std::string& path) const {
    const Node* best = nullptr;
    for (const auto& [k, n] : nodes_)
      if (n.path != path && is_within(path, n.path) && (!best || depth(n.path) > depth(best->path))) best = &n;
    return best;
  }



  bool mount_layer_writable(Access a) const { return a == Access::ReadWrite || a == Access::ReadWriteNoDelete; }

  void plan_mounts() {
    using K = MountOp::Kind;
    auto& m = plan_.mounts;
    // The fixed skeleton: private /tmp and /run (they hold the host's sockets
    // and other users' files), fresh /proc, a minimal /dev.
    // Private tmpfs are capped so that, even without a cgroup, writing
    // files cannot take more than the memory limit allows.
    uint64_t mem = p_.limits.memory_bytes ? p_.limits.memory_bytes : (1ULL << 32);
    m.push_back({K::Tmpfs, "/tmp", "", false, true, false, "private /tmp", mem / 2});
    if (p_.host_run)
      m.push_back({K::BindHost, "/run", "/run", true, true, false, "network.allowAllUnixSockets: the host's /run, read-only"});
    else
      m.push_back({K::Tmpfs, "/run", "", false, true, false, "private /run (hides the host's sockets)", 64ULL << 20});
    m.push_back({K::Proc, "/proc", "", false, true, false, "procfs of the sandbox's pid namespace"});
    for (const char* p : {"/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"})
      m.push_back({K::ProcReadOnly, p, "", true, true, false, "kernel knobs stay read-only"});
    m.push_back({K::DevTmpfs, "/dev", "", false, true, false, "minimal /dev"});
    for (const char* d : {"null", "zero", "full", "random", "urandom", "tty"})
      m.push_back({K::DevNode, std::string("/dev/") + d, std::string("/dev/") + d, false, false, true, "device"});
    m.push_back({K::Devpts, "/dev/pts", "", false, true, true, "private pseudo-terminals"});
    m.push_back({K::Tmpfs, "/dev/shm", "", false, true, true, "private shared memory", mem / 4});
    for (auto [l, t] : std::vector<std::pair<const char*, const char*>>{
             {"/dev/ptmx", "pts/ptmx"}, {"/dev/fd", "/proc/self/fd"}, {"/dev/stdin", "/proc/self/fd/0"},
             {"/dev/stdout", "/proc/self/fd/1"}, {"/dev/stderr", "/proc/self/fd/2"}, {"/dev/core", "/proc/kcore"}})
      if (std::string(l) != "/dev/core") m.push_back({K::Symlink, l, t, true, false, true, "standard link"});

    // Policy nodes, parents first. What the tree already shows at a node is
    // decided by the nearest mounted ancestor: host content (read-only or
    // read-write) or an empty airlock tmpfs (a stand-in, private /tmp, /run).
    enum class Shows { HostRO, HostRW, Empty };
    std::map<std::string, Shows> shows = {{"/", Shows::HostRO}};
    for (const auto& t : kPrivateTmpfs) shows[t] = Shows::Empty;
    if (p_.host_run) shows["/run"] = Shows::HostRO;
    for (Node* n : ordered()) {
      if (n->path == "/") continue;
      std::string anc = "/";
      for (const auto& [path, s] : shows)
        if (path != n->path && is_within(n->path, path) && depth(path) > depth(anc)) anc = path;
      Shows here = shows[anc];
      bool writable = mount_layer_writable(n->eff);
      if (n->eff == Access::Hidden) {
        if (here == Shows::Empty) continue;  // nothing of the host is visible there anyway
        if (!n->exists) continue;            // placeholders and Landlock cover it
        m.push_back({K::StandIn, n->path, "", true, n->is_dir, false, n->eff_why});
        m.back().optional = n->transient && n->read != -1;
        if (here == Shows::HostRW && !m.back().optional) plan_.watch.push_back(n->path);
        shows[n->path] = Shows::Empty;
        continue;
      }
      if (!n->exists) continue;
      if (!n->pin && here != Shows::Empty && (here == Shows::HostRW) == writable) continue;  // already so
      if (here == Shows::HostRW) plan_.watch.push_back(n->path);  // pinned or read-only inside a writable one
      m.push_back({K::BindHost, n->path, n->path, !writable, n->is_dir, here == Shows::Empty,
                   n->pin && n->eff_why.empty() ? n->pin_why : (n->pin ? n->eff_why + "; pinned" : n->eff_why)});
      shows[n->path] = writable ? Shows::HostRW : Shows::HostRO;
    }
  }

  Status plan_placeholders() {
    // A write-protected path that does not exist yet, inside a writable
    // region, gets an empty placeholder at its first missing component so a
    // read-only stand-in can be mounted there. Placeholders are tracked and
    // removed when the last airlock using them exits (fs/placeholders.h).
    static const std::set<std::string> dir_names = {".vscode", ".idea", ".claude", ".cursor", ".gemini", ".airlock", "hooks", "modules"};
    for (auto& [k, n] : nodes_) {
      if (n.exists || (n.write != 0 && n.read != 0)) continue;
      const Node* parent = owner_of(n.path);
      if (!parent || !mount_layer_writable(parent->eff)) continue;
      auto r = resolve(n.path);
      if (!r) return r.error();
      if (r->exists) continue;  // appeared meanwhile: mounted normally next time
      std::string first = r->first_missing;
      std::string base = first.substr(first.rfind('/') + 1);
      bool dir = first != n.path || dir_names.count(base) > 0;
      const std::string& why = n.read == 0 ? n.read_why : n.write_why;
      plan_.placeholders.push_back({first, dir, why});
      plan_.watch.push_back(first);
      plan_.mounts.push_back({MountOp::Kind::StandIn, first, "", true, dir, false, why + " (not there yet)", 0, true});
    }
    // Links last: their targets are mounted by now.
    // The link shows an empty read-only stand-in, never its host target: the
    // target may be a hidden secret (a repository can ship `.envrc ->
    // ../.ssh/id_ed25519`), and what the target holds is governed by the
    // rules at the target's own path.
    for (const auto& l : links_)
    {
      plan_.mounts.push_back({MountOp::Kind::StandIn, l.link, "", true, false, false, l.why, 0, true});
      plan_.watch.push_back(l.link);
    }
    return {};
  }

  // --- Landlock -----------------------------------------------------------
  // Landlock only adds rights down a hierarchy, so a narrower path below a
  // wider rule is expressed by "carving": the wider rule is given only to the
  // siblings on the way down, and the folders on the way keep only what the
  // narrower path may also have.
  struct Exception {
    std::string path;
    uint64_t rights;
    bool is_dir;
  };

  void emit(const std::string& path, uint64_t r, bool is_dir, const std::string& why) {
    if (!is_dir) r &= ll::kFileOnly;
    if (r == 0) return;
    plan_.landlock.push_back({path, r, why});
  }

  void carve(const std::string& dir, uint64_t region, const std::vector<Exception>& ex, const std::string& why,
             size_t& budget) {
    uint64_t common = region;
    for (const auto& e : ex) common &= e.is_dir ? e.rights : (e.rights | ~ll::kFileOnly);
    emit(dir, common, true, why + " (carved)");
    UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) return;
    DIR* d = ::fdopendir(fd.release());
    if (!d) return;
    std::vector<std::pair<std::string, unsigned char>> entries;
    while (struct dirent* de = ::readdir(d)) {
      std::string name = de->d_name;
      if (name != "." && name != "..") entries.emplace_back(name, de->d_type);
    }
    ::closedir(d);
    for (const auto& [name, type] : entries) {
      if (budget == 0) return;
      --budget;
      std::string child = dir == "/" ? "/" + name : dir + "/" + name;
      if (type == DT_LNK) continue;  // a link is judged by where it points
      bool is_dir = type == DT_DIR;
      auto exact = std::find_if(ex.begin(), ex.end(), [&](const Exception& e) { return e.path == child; });
      if (exact != ex.end()) {
        emit(child, exact->rights, is_dir, why + " (exception)");
        continue;
      }
      std::vector<Exception> below;
      for (const auto& e : ex)
        if (is_within(e.path, child)) below.push_back(e);
      if (!below.empty() && is_dir) carve(child, region, below, why, budget);
      else emit(child, region, is_dir, why);
    }
  }

  void plan_landlock() {
    // Fixed skeleton rights.
    struct Fixed { const char* path; uint64_t r; };
    const Fixed fixed[] = {
        {"/tmp", ll::kReadWrite}, {"/run", p_.host_run ? ll::kRead : ll::kReadWrite}, {"/dev/shm", ll::kReadWrite},
        {"/dev/pts", ll::kRead | ll::kWriteFile | ll::kIoctlDev | ll::kTruncate},
        {"/dev", ll::kRead | ll::kWriteFile | ll::kTruncate | ll::kIoctlDev},
        {"/proc", ll::kRead | ll::kWriteFile},
    };
    std::map<std::string, uint64_t> ll_rights;  // what Landlock grants at each node
    std::map<std::string, bool> emits;
    std::map<std::string, std::vector<Exception>> exceptions;  // by owner
    ll_rights["/"] = ll::kRead;
    emits["/"] = true;
    for (Node* n : ordered()) {
      if (n->path == "/") continue;
      std::string owner = "/";
      for (const auto& [path, e] : emits)
        if (e && path != n->path && is_within(n->path, path) && depth(path) > depth(owner)) owner = path;
      uint64_t par = ll_rights[owner];
      uint64_t want = rights(n->eff, n->is_dir || !n->exists);
      if ((want & par) == par) {  // widening (or equal)
        ll_rights[n->path] = want;
        emits[n->path] = want != par;
        if (want != par && n->exists) emit(n->path, want, n->is_dir, n->eff_why);
        continue;
      }
      bool par_writable = (par & ll::kMakeReg) != 0;
      if (par_writable && n->eff != Access::ReadWriteNoDelete) {
        ll_rights[n->path] = par;
        emits[n->path] = false;
        plan_.landlock_gaps.push_back(fmt::format("{} ({}): inside a writable folder; enforced by the mount layer",
                                                  n->path, access_name(n->eff)));
        continue;
      }
      ll_rights[n->path] = want;
      emits[n->path] = true;
      exceptions[owner].push_back({n->path, want, n->is_dir || !n->exists});
    }
    for (const auto& f : fixed) emit(f.path, f.r, true, "airlock's own folder");
    size_t budget = 20000;
    for (const auto& [owner, ex] : exceptions) {
      uint64_t region = ll_rights[owner];
      // The owner's own plain rule is replaced by the carve.
      plan_.landlock.erase(std::remove_if(plan_.landlock.begin(), plan_.landlock.end(),
                                          [&](const LandlockRule& r) { return r.path == owner; }),
                           plan_.landlock.end());
      carve(owner, region, ex, nodes_.count(owner) ? nodes_[owner].eff_why : "default", budget);
    }
    if (exceptions.find("/") == exceptions.end()) emit("/", ll::kRead, true, "default: the host is read-only");
    for (auto& [k, n] : nodes_)
      if (n.eff == Access::ReadWriteNoDelete) plan_.no_delete.push_back(n.path);
  }

  const policy::Policy& p_;
  std::map<std::string, Node> nodes_;
  std::vector<LinkPin> links_;
  Plan plan_;
};

}  // namespace

Result<Plan> make_plan(const policy::Policy& policy) { return Planner(policy).run(); }

std::string describe(const Plan& plan) {
  static const char* kinds[] = {"bind",     "stand-in", "tmpfs",   "proc",         "dev",
                                "device",   "devpts",   "symlink", "proc read-only"};
  std::string out;
  for (const auto& m : plan.mounts) {
    out += fmt::format("mount {:<14} {}", kinds[static_cast<int>(m.kind)], m.target);
    if (m.kind == MountOp::Kind::BindHost) out += m.read_only ? " (read-only)" : " (read-write)";
    if (m.kind == MountOp::Kind::Symlink) out += " -> " + m.source;
    out += "  # " + m.why + "\n";
  }
  for (const auto& p : plan.placeholders)
    out += fmt::format("placeholder {} {}  # {}\n", p.dir ? "folder" : "file", p.path, p.why);
  for (const auto& r : plan.landlock) out += fmt::format("landlock {:#06x} {}  # {}\n", r.access, r.path, r.why);
  for (const auto& g : plan.landlock_gaps) out += "landlock gap: " + g + "\n";
  return out;
}

}  // namespace airlock::fs
