// airlock's command line: a front-end that fills RunOptions, then hands
// settings -> policy -> plan -> sandbox, in that order, stopping at the first
// error with one line and exit 125.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <thread>
#include <iostream>

#include <fcntl.h>
#include <sys/stat.h>

#include "cli/connect.h"
#include "cli/doctor.h"
#include "fs/landlock.h"
#include "fs/plan.h"
#include "policy/policy.h"
#include "tls/materials.h"
#include "policy/settings.h"
#include "sandbox/sandbox.h"
#include "seccomp/filter.h"
#include "util/log.h"

#ifndef AIRLOCK_VERSION
#define AIRLOCK_VERSION "0.0.0"
#endif

extern char** environ;

namespace airlock {
namespace {

constexpr int kErr = sandbox::kExitAirlockError;

int die(const std::string& msg) {
  log::line(msg);
  return kErr;
}

// The user's own settings: $XDG_CONFIG_HOME/airlock/settings.json, else
// ~/.config/airlock/settings.json. Network "always" answers are saved there.
std::string user_settings_file() {
  const char* xdg = ::getenv("XDG_CONFIG_HOME");
  if (xdg && xdg[0] == '/') return std::string(xdg) + "/airlock/settings.json";
  const char* home = ::getenv("HOME");
  if (home && home[0] == '/') return std::string(home) + "/.config/airlock/settings.json";
  return {};
}

int cmd_run(policy::RunOptions opts) {
  log::set_debug(opts.debug);
  std::vector<policy::Settings> layers;
  // Lowest layer first: the user's own file, then each --settings.
  std::string user_file = user_settings_file();
  struct stat ust {};
  if (!user_file.empty() && ::stat(user_file.c_str(), &ust) == 0) {
    auto s = policy::load_settings_file(user_file);
    if (!s) return die(s.error().message);
    layers.push_back(std::move(*s));
  }
  if (!user_file.empty()) opts.user_settings_dir = user_file.substr(0, user_file.rfind('/'));
  for (const auto& f : opts.settings_files) {
    auto s = policy::load_settings_file(f);
    if (!s) return die(s.error().message);
    layers.push_back(std::move(*s));
  }
  // The syscall filter depends only on the settings: compile it on the
  // other core while the policy and the plan are made. (Joined before the
  // sandbox is cloned: a clone of a threaded process must not race malloc.)
  bool nested = false;
  for (const auto& s : layers)
    if (s.allow_nested_userns) nested = *s.allow_nested_userns;
  Result<std::string> bpf = Error{"not compiled"};
  std::thread compiler([&] { bpf = seccomp::compile(seccomp::Options{nested}); });
  struct Joiner {
    std::thread& t;
    ~Joiner() {
      if (t.joinable()) t.join();
    }
  } joiner{compiler};
  // The audit file is opened now, before any sandbox exists: the command
  // cannot plant a symlink there first, and the file is protected below.
  UniqueFd audit;
  if (opts.audit_file.empty())
    for (const auto& s : layers)
      if (!s.audit_file.empty()) {
        if (s.audit_file[0] != '/') return die(fmt::format("{}: audit.file: must be an absolute path", s.source));
        opts.audit_file = s.audit_file;
      }
  if (!opts.audit_file.empty()) {
    if (opts.audit_file[0] != '/') {
      char cwd[4096];
      if (!::getcwd(cwd, sizeof cwd)) return die("getcwd failed");
      opts.audit_file = std::string(cwd) + "/" + opts.audit_file;
    }
    audit.reset(::open(opts.audit_file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!audit) return die(fmt::format("--audit {}: {}", opts.audit_file, std::strerror(errno)));
  }
  if (opts.control_fd >= 0 && (opts.control_fd < 3 || ::fcntl(opts.control_fd, F_GETFD) < 0))
    return die(fmt::format("--control-fd {}: not an open descriptor (3 or above)", opts.control_fd));
  if (opts.control_fd >= 0) (void)::fcntl(opts.control_fd, F_SETFD, FD_CLOEXEC);  // never inherited by the sandbox
  {
    char self[4096];
    ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) opts.self_exe = std::string(self, static_cast<size_t>(n));
  }
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) env.emplace_back(*e);
  auto pol = policy::build_policy(opts, layers, env);
  if (!pol) return die(pol.error().message);
  // TLS inspection and masked credentials: the CA, the bundle and the
  // placeholders, before the plan mounts them.
  auto materials = tls::prepare(*pol, env);
  if (!materials) return die(materials.error().message);
  log::debug("policy built");
  auto plan = fs::make_plan(*pol);
  log::debug("plan made");
  if (!plan) return die(plan.error().message);

  // Fail closed, but say so: without Landlock the mount layer still holds;
  // no-delete paths, which only Landlock can express, become read-only.
  std::string why;
  int abi = fs::landlock_abi(&why);
  if (abi == 0) {
    log::info("warning: Landlock unavailable ({}); the mount layer alone enforces the filesystem policy", why);
    for (auto& m : plan->mounts)
      for (const auto& nd : plan->no_delete)
        if (m.target == nd && m.kind == fs::MountOp::Kind::BindHost) m.read_only = true;
    if (!plan->no_delete.empty()) log::info("warning: no-delete paths are read-only without Landlock");
  }
  for (const auto& n : pol->notes) log::info("{}", n);
  if (log::debug_enabled()) {
    log::debug("workspace {} (cwd {}), uid {} gid {}", pol->workspace, pol->cwd, pol->uid, pol->gid);
    log::debug("layers: user, mount, pid, net, ipc, uts, cgroup namespaces; no capabilities; no_new_privs; "
               "Landlock {}",
               abi ? fmt::format("ABI {}", abi) : "unavailable");
    for (const auto& r : pol->rules)
      log::debug("rule {} {}{}  # {}", policy::rule_kind_name(r.kind), r.path, r.exists ? "" : " (missing)", r.why);
    std::string text = fs::describe(*plan);
    size_t i = 0;
    while (i < text.size()) {
      size_t j = text.find('\n', i);
      log::debug("plan: {}", text.substr(i, j - i));
      i = j + 1;
    }
    for (const auto& e : pol->env_removed) log::debug("environment: removed {}", e);
  }
  compiler.join();
  if (!bpf) return die(bpf.error().message);
  sandbox::Spec spec{};
  spec.seccomp_bpf = &*bpf;
  spec.policy = &*pol;
  spec.plan = &*plan;
  spec.landlock_abi = abi;
  spec.audit_fd = audit ? audit.get() : -1;
  spec.user_settings = user_file;
  spec.materials = &*materials;
  if (pol->network.enabled) {
    log::debug("network: through airlock's proxy; {} allow rules, {} deny rules{}", pol->network.allowed.size(),
               pol->network.denied.size(), pol->network.parent ? ", chained to a parent proxy" : "");
  }
  for (int i = 0; i < 3; ++i) spec.stdio_tty[i] = ::isatty(i) == 1;
  // Any terminal among stdio is replaced by a pty of the sandbox's own: the
  // caller's terminal itself never reaches the command (it could read the
  // user's keystrokes from it, or leave it in raw mode).
  spec.use_pty = spec.stdio_tty[0] || spec.stdio_tty[1] || spec.stdio_tty[2];
  return sandbox::run(spec);
}

int main_impl(int argc, char** argv) {
  CLI::App app{"airlock: a sandbox for the commands AI agents run"};
  app.set_version_flag("--version", std::string("airlock ") + AIRLOCK_VERSION);
  app.require_subcommand(0, 1);

  policy::RunOptions opts;
  std::string shell_string;
  auto* run = app.add_subcommand("run", "Run a command in the sandbox: airlock run [options] -- COMMAND [ARGS...]");
  run->add_option("--settings", opts.settings_files, "Settings file (JSON, srt format); may be repeated");
  run->add_option("--workspace", opts.workspace, "The writable workspace (default: the current folder)");
  run->add_option("--allow-write", opts.allow_write, "Also let the command write PATH; may be repeated");
  run->add_option("--deny-read", opts.deny_read, "Also hide PATH from the command; may be repeated");
  run->add_option("-c", shell_string, "Run this string with /bin/sh -c");
  run->add_flag("--debug", opts.debug, "Print the plan and each setup step");
  run->add_option("--audit", opts.audit_file, "Append one JSON line per network decision to FILE");
  run->add_option("--control-fd", opts.control_fd,
                  "Ask about unknown hosts, and take live rule updates, as JSON lines on descriptor N");
  auto* connect = app.add_subcommand("connect", "Inside a sandbox: connect stdin/stdout to HOST PORT through airlock's proxy (ssh ProxyCommand)");
  std::string connect_host;
  int connect_port = 0, connect_proxy = 1080;
  connect->add_option("--port", connect_proxy, "The proxy's SOCKS5 port inside the sandbox (default 1080)");
  connect->add_option("host", connect_host)->required();
  connect->add_option("port", connect_port)->required();
  run->add_option("command", opts.argv, "The command and its arguments (after --)");
  run->positionals_at_end(true);

  auto* doctor = app.add_subcommand("doctor", "What this machine supports and what airlock run enforces here");
  auto* help = app.add_subcommand("help", "Show help: airlock help [settings]");
  std::string topic;
  help->add_option("topic", topic, "settings");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return die(fmt::format("{} (see 'airlock help')", e.what()));
  }

  if (*run) {
    if (!shell_string.empty()) {
      if (!opts.argv.empty()) return die("give either -c STRING or -- COMMAND, not both");
      opts.argv = {"/bin/sh", "-c", shell_string};
    }
    return cmd_run(opts);
  }
  if (*connect) return cli::connect_main(connect_host, connect_port, connect_proxy);
  if (*doctor) {
    char self[4096];
    ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return die("readlink(/proc/self/exe) failed");
    self[n] = 0;
    return cli::doctor(self);
  }
  if (*help && topic == "settings") {
    std::cout << policy::settings_table_markdown();
    return 0;
  }
  if (*help && !topic.empty()) return die(fmt::format("no help topic '{}' (try 'airlock help settings')", topic));
  std::cout << app.help();
  return (*help || argc > 1) ? 0 : 0;
}

}  // namespace
}  // namespace airlock

int main(int argc, char** argv) {
  try {
    return airlock::main_impl(argc, argv);
  } catch (const std::exception& e) {
    airlock::log::line(fmt::format("internal error: {}", e.what()));
    return airlock::sandbox::kExitAirlockError;
  }
}
