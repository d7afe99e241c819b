#include "policy/settings.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <regex>

#include "util/fd.h"

namespace airlock::policy {

using nlohmann::json;

// One row per key. Objects list their children; Opaque subtrees are shaped
// by the layer that enforces them.
const std::vector<KeySpec>& settings_keys() {
  using T = KeyType;
  using S = KeyStatus;
  static const std::vector<KeySpec> keys = {
      {"filesystem", T::Object, "srt", S::Enforced, "Filesystem rules."},
      {"filesystem.denyRead", T::PathList, "srt", S::Enforced,
       "Paths that cannot be read (replaced by empty read-only stand-ins). Added to the built-in secret list."},
      {"filesystem.allowRead", T::PathList, "srt", S::Enforced,
       "Paths re-allowed for reading inside a denied region (the deeper rule wins)."},
      {"filesystem.allowWrite", T::PathList, "srt", S::Enforced,
       "Paths writable besides the workspace and the private /tmp. Must exist."},
      {"filesystem.denyWrite", T::PathList, "srt", S::Enforced,
       "Paths kept read-only inside writable ones (deny wins at equal depth)."},
      {"filesystem.allowGitConfig", T::Bool, "srt", S::Enforced,
       "Let the command write .git/config (hooks stay protected). Default false."},
      {"filesystem.disabled", T::Bool, "srt", S::Enforced,
       "Refused: airlock never runs without its filesystem boundary (error if true)."},
      {"filesystem.noDelete", T::PathList, "airlock", S::Enforced,
       "Read-write-no-delete paths: files may be created and written, not deleted or renamed away "
       "(Landlock; read-only if Landlock is missing)."},
      {"mandatoryDenySearchDepth", T::Int, "srt", S::Enforced,
       "How many folders deep airlock looks for nested protected files (.git, .vscode, ...) in the "
       "workspace. 1-10, default 3."},
      {"limits", T::Object, "airlock", S::Enforced, "Resource limits (see docs/limits.md)."},
      {"limits.timeoutSeconds", T::Int, "airlock", S::Enforced,
       "Wall-clock limit: the whole sandbox is killed and airlock exits 124. Default none."},
      {"limits.maxProcesses", T::Int, "airlock", S::Enforced,
       "Most processes and threads at once (cgroup pids.max, else RLIMIT_NPROC). Default 4096."},
      {"limits.memoryBytes", T::Int, "airlock", S::Enforced,
       "Memory cap (cgroup memory.max, else RLIMIT_DATA per process). Default half the machine's memory."},
      {"limits.openFiles", T::Int, "airlock", S::Enforced, "RLIMIT_NOFILE. Default: inherited."},
      {"limits.fileSizeBytes", T::Int, "airlock", S::Enforced, "Largest file the command may write (RLIMIT_FSIZE)."},
      {"limits.cpuSeconds", T::Int, "airlock", S::Enforced, "CPU time (RLIMIT_CPU); then SIGXCPU, then SIGKILL."},
      {"environment", T::Object, "airlock", S::Enforced, "Environment of the command."},
      {"environment.keep", T::StringList, "airlock", S::Enforced,
       "Variable names kept even though they look like secrets."},
      {"environment.remove", T::StringList, "airlock", S::Enforced,
       "More variable names to remove (a trailing * matches a prefix)."},
      {"network", T::Object, "srt", S::Enforced,
       "Network rules. Without network.allowedDomains (or network.ask) the network is off: the sandbox has only "
       "its own loopback."},
      {"network.allowedDomains", T::StringList, "srt", S::Enforced,
       "Hosts the proxy may reach: `example.com`, `*.example.com` (subdomains only), `host:port`, IP literals, "
       "`[v6]:port`. Without a port, only 80 and 443. An empty list turns the proxy on with nothing allowed."},
      {"network.deniedDomains", T::StringList, "srt", S::Enforced,
       "Hosts always refused (deny wins); `*` refuses all. Without a port, every port."},
      {"network.deniedDomainReasons", T::Opaque, "srt", S::Enforced,
       "deniedDomains entry -> reason shown in the refusal."},
      {"network.strictAllowlist", T::Bool, "srt", S::Enforced, "Never ask about unknown hosts; refuse them."},
      {"network.deniedResolvedAddresses", T::StringList, "srt", S::Enforced,
       "IPs or CIDRs refused after DNS resolution (in addition to the built-in private ranges)."},
      {"network.allowUnixSockets", T::PathList, "srt", S::Enforced,
       "Host unix sockets to expose (e.g. the docker socket), each bound into the sandbox on purpose."},
      {"network.allowAllUnixSockets", T::Bool, "srt", S::Enforced,
       "Show the host's /run read-only instead of a private one, so its sockets can be reached. Default false."},
      {"network.allowLocalBinding", T::Bool, "srt", S::NoEffect,
       "Always allowed: the sandbox's loopback is its own and unreachable from the host."},
      {"network.allowMachLookup", T::Opaque, "srt", S::NoEffect, "macOS only."},
      {"network.httpProxyPort", T::Int, "srt", S::Enforced,
       "Port of airlock's proxy on the sandbox's loopback for HTTP clients. Default 3128."},
      {"network.socksProxyPort", T::Int, "srt", S::Enforced,
       "Port of airlock's proxy on the sandbox's loopback for SOCKS5 clients. Default 1080."},
      {"network.mitmProxy", T::Opaque, "srt", S::Planned, "Route domains through a MITM proxy."},
      {"network.tlsTerminate", T::Opaque, "srt", S::Enforced,
       "TLS inspection: {caCertPath, caKeyPath (neither: a fresh CA per run, in memory), excludeDomains, "
       "extraCaCertPaths, upstreamCaCertPaths (airlock), maxTunnels, handshakeTimeoutMs}. See docs/tls.md."},
      {"network.parentProxy", T::Opaque, "srt", S::Enforced,
       "Chain to a corporate proxy: {\"http\": URL, \"https\": URL, \"noProxy\": \"a.com,10.0.0.0/8\"}. "
       "Default: the caller's HTTPS_PROXY/HTTP_PROXY/NO_PROXY."},
      {"network.refuseOpaqueTunnels", T::Bool, "srt", S::Enforced,
       "Refuse tunnels airlock cannot see into: traffic that is not TLS, and (with tlsTerminate) excluded hosts. "
       "Default false."},
      {"network.stripResponseHeaders", T::StringList, "srt", S::Enforced,
       "Response headers removed before the sandbox sees them (plain HTTP and inspected HTTPS)."},
      {"network.requireHostMatch", T::Bool, "srt", S::Enforced,
       "The CONNECT target, the TLS SNI and the Host header must name one host, else 421. Default true."},
      {"network.requestRules", T::Opaque, "airlock", S::Enforced,
       "Per host: [{\"host\": PATTERN, \"allow\": [\"GET,POST /repos/acme/*\"], \"deny\": [...], "
       "\"maxBodyBytes\": N}]. Needs plain HTTP or inspected HTTPS; see docs/tls.md."},
      {"network.allowPrivateAddresses", T::StringList, "airlock", S::Enforced,
       "CIDRs that may be reached although loopback, private, link-local or metadata (for LAN services and "
       "tests)."},
      {"network.hosts", T::Opaque, "airlock", S::Enforced,
       "Name -> address (or list) used before DNS, like curl's --resolve. The address is still checked."},
      {"network.ask", T::String, "airlock", S::Enforced,
       "\"tty\": ask the person at the terminal about hosts no rule covers. Default: refuse them."},
      {"audit", T::Object, "airlock", S::Enforced, "Audit log."},
      {"audit.file", T::String, "airlock", S::Enforced,
       "Append one JSON line per proxy decision to this file (as --audit FILE)."},
      {"credentials", T::Opaque, "srt", S::Enforced,
       "Credential variables and files: envVars/files [{name|path, mode deny|mask, injectHosts, injectInto "
       "(airlock)}], allowPlaintextInject, and airlock's verifyHosts, verifyHeaders, onExfiltration. See "
       "docs/tls.md."},
      {"ignoreViolations", T::Opaque, "srt", S::NoEffect, "Violation reports to silence."},
      {"enableWeakerNestedSandbox", T::Bool, "srt", S::NoEffect,
       "Accepted, ignored: airlock never weakens its isolation."},
      {"enableWeakerNetworkIsolation", T::Bool, "srt", S::NoEffect, "macOS only."},
      {"allowAppleEvents", T::Bool, "srt", S::NoEffect, "macOS only."},
      {"allowPty", T::Bool, "srt", S::NoEffect, "macOS only; airlock always gives a pty to a terminal."},
      {"ripgrep", T::Opaque, "srt", S::NoEffect, "airlock walks the workspace itself."},
      {"seccomp", T::Opaque, "srt", S::NoEffect, "airlock has its own filter."},
      {"bwrapPath", T::String, "srt", S::NoEffect, "airlock does not use bubblewrap."},
      {"socatPath", T::String, "srt", S::NoEffect, "airlock does not use socat."},
      {"javaAgentJarPath", T::String, "srt", S::NoEffect, "Not used."},
      {"windows", T::Opaque, "srt", S::NoEffect, "Windows only."},
      {"git", T::Opaque, "srt", S::NoEffect, "Not used yet."},
      {"allowNestedUserNamespaces", T::Bool, "srt", S::Enforced,
       "Let the command create its own user namespaces (and mount inside them), for browsers' and "
       "rootless containers' own sandboxes. Default false."},
  };
  return keys;
}

namespace {

const char* type_name(KeyType t) {
  switch (t) {
    case KeyType::Bool: return "boolean";
    case KeyType::Int: return "integer";
    case KeyType::String: return "string";
    case KeyType::StringList: return "list of strings";
    case KeyType::PathList: return "list of paths";
    case KeyType::Object: return "object";
    case KeyType::Opaque: return "JSON";
  }
  return "?";
}

const char* status_name(KeyStatus s) {
  switch (s) {
    case KeyStatus::Enforced: return "enforced";
    case KeyStatus::NoEffect: return "accepted, no effect";
    case KeyStatus::Planned: return "checked; not enforced yet";
  }
  return "?";
}

const char* json_kind(const json& j) {
  switch (j.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "integer";
    case json::value_t::number_float: return "number";
    case json::value_t::string: return "string";
    case json::value_t::array: return "list";
    case json::value_t::object: return "object";
    default: return "value";
  }
}

const KeySpec* find_key(const std::string& dotted) {
  for (const auto& k : settings_keys())
    if (dotted == k.key) return &k;
  return nullptr;
}

// Closest known key with the same parent, for "did you mean".
std::string suggest(const std::string& dotted) {
  std::string lower = dotted;
  std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
  for (const auto& k : settings_keys()) {
    std::string kl = k.key;
    std::transform(kl.begin(), kl.end(), kl.begin(), ::tolower);
    if (kl == lower) return k.key;
  }
  return "";
}

class Parser {
 public:
  explicit Parser(std::string source) : source_(std::move(source)) {}

  Result<Settings> run(const json& root) {
    Settings s;
    s.source = source_;
    if (!root.is_object()) return fail("", "the top level must be a JSON object, got {}", json_kind(root));
    AIRLOCK_TRY(walk(root, "", s));
    return s;
  }

 private:
  template <typename... Args>
  Error fail(const std::string& key, fmt::format_string<Args...> f, Args&&... args) const {
    std::string where = key.empty() ? source_ : fmt::format("{}: {}", source_, key);
    return Error{fmt::format("{}: {}", where, fmt::format(f, std::forward<Args>(args)...))};
  }

  Status walk(const json& obj, const std::string& prefix, Settings& s) {
    for (auto it = obj.begin(); it != obj.end(); ++it) {
      std::string dotted = prefix.empty() ? it.key() : prefix + "." + it.key();
      const KeySpec* spec = find_key(dotted);
      if (!spec) {
        std::string hint = suggest(dotted);
        if (!hint.empty()) return fail(dotted, "unknown key (did you mean '{}'?)", hint);
        return fail(dotted, "unknown key (see 'airlock help settings')");
      }
      AIRLOCK_TRY(check_type(*spec, dotted, it.value()));
      if (spec->type == KeyType::Object) AIRLOCK_TRY(walk(it.value(), dotted, s));
      AIRLOCK_TRY(store(*spec, dotted, it.value(), s));
    }
    return {};
  }

  Status check_type(const KeySpec& spec, const std::string& key, const json& v) const {
    switch (spec.type) {
      case KeyType::Bool:
        if (!v.is_boolean()) return fail(key, "expected a boolean, got {}", json_kind(v));
        break;
      case KeyType::Int:
        if (!v.is_number_integer()) return fail(key, "expected an integer, got {}", json_kind(v));
        break;
      case KeyType::String:
        if (!v.is_string()) return fail(key, "expected a string, got {}", json_kind(v));
        break;
      case KeyType::Object:
        if (!v.is_object()) return fail(key, "expected an object, got {}", json_kind(v));
        break;
      case KeyType::StringList:
        if (!v.is_array()) return fail(key, "expected a list of strings, got {}", json_kind(v));
        for (size_t i = 0; i < v.size(); ++i)
          if (!v[i].is_string())
            return fail(fmt::format("{}[{}]", key, i), "expected a string, got {}", json_kind(v[i]));
        break;
      case KeyType::PathList:
        if (!v.is_array()) return fail(key, "expected a list of paths, got {}", json_kind(v));
        for (size_t i = 0; i < v.size(); ++i) AIRLOCK_TRY(check_path_entry(fmt::format("{}[{}]", key, i), v[i]));
        break;
      case KeyType::Opaque:
        break;
    }
    return {};
  }

  Status check_path_entry(const std::string& key, const json& e) const {
    if (e.is_string()) {
      if (e.get<std::string>().empty()) return fail(key, "empty path");
      return {};
    }
    if (!e.is_object())
      return fail(key, "expected a path string or {{\"path\": ..., \"literal\": true}}, got {}", json_kind(e));
    for (auto it = e.begin(); it != e.end(); ++it) {
      if (it.key() == "path") {
        if (!it.value().is_string() || it.value().get<std::string>().empty())
          return fail(key + ".path", "expected a non-empty string");
      } else if (it.key() == "literal") {
        if (!it.value().is_boolean()) return fail(key + ".literal", "expected a boolean");
      } else {
        return fail(key + "." + it.key(), "unknown key (a path entry has 'path' and 'literal')");
      }
    }
    if (!e.contains("path")) return fail(key, "missing 'path'");
    return {};
  }

  std::vector<PathSpec> paths(const std::string& key, const json& v) const {
    std::vector<PathSpec> out;
    for (size_t i = 0; i < v.size(); ++i) {
      PathSpec p;
      p.where = fmt::format("{}: {}[{}]", source_, key, i);
      if (v[i].is_string()) {
        p.raw = v[i].get<std::string>();
      } else {
        p.raw = v[i]["path"].get<std::string>();
        p.literal = v[i].value("literal", false);
      }
      out.push_back(std::move(p));
    }
    return out;
  }

  Status store(const KeySpec& spec, const std::string& key, const json& v, Settings& s) {
    if (spec.status == KeyStatus::Planned && spec.type != KeyType::Object)
      s.not_enforced.push_back(key);
    if (key == "filesystem.denyRead") s.deny_read = paths(key, v);
    else if (key == "filesystem.allowRead") s.allow_read = paths(key, v);
    else if (key == "filesystem.allowWrite") s.allow_write = paths(key, v);
    else if (key == "filesystem.denyWrite") s.deny_write = paths(key, v);
    else if (key == "filesystem.noDelete") s.no_delete = paths(key, v);
    else if (key == "filesystem.allowGitConfig") s.allow_git_config = v.get<bool>();
    else if (key == "filesystem.disabled") {
      if (v.get<bool>()) return fail(key, "airlock never runs without its filesystem boundary; remove this key");
      s.fs_disabled = false;
    } else if (key.rfind("limits.", 0) == 0) {
      long long n = v.get<long long>();
      if (n < 1) return fail(key, "must be a positive integer, got {}", n);
      s.limits.emplace_back(key.substr(7), static_cast<uint64_t>(n));
    } else if (key == "network.allowUnixSockets") {
      s.allow_unix_sockets = paths(key, v);
    } else if (key == "network.allowAllUnixSockets") {
      s.allow_all_unix_sockets = v.get<bool>();
    } else if (key == "allowNestedUserNamespaces") {
      s.allow_nested_userns = v.get<bool>();
    } else if (key == "mandatoryDenySearchDepth") {
      long long d = v.get<long long>();
      if (d < 1 || d > 10) return fail(key, "must be between 1 and 10, got {}", d);
      s.protect_depth = static_cast<int>(d);
    } else if (key == "environment.keep" || key == "environment.remove") {
      static const std::regex name_re("^[A-Za-z_][A-Za-z0-9_]*\\*?$");
      std::vector<std::string> names;
      for (size_t i = 0; i < v.size(); ++i) {
        auto n = v[i].get<std::string>();
        if (!std::regex_match(n, name_re))
          return fail(fmt::format("{}[{}]", key, i), "'{}' is not a variable name", n);
        names.push_back(n);
      }
      (key == "environment.keep" ? s.env_keep : s.env_remove) = std::move(names);
    } else if (key == "network") {
      s.has_network = true;
      s.network = v;
    } else if (key == "credentials") {
      if (!v.is_object()) return fail(key, "expected an object, got {}", json_kind(v));
      s.credentials = v;
    } else if (key == "network.httpProxyPort" || key == "network.socksProxyPort") {
      long long p = v.get<long long>();
      if (p < 1 || p > 65535) return fail(key, "port must be 1-65535, got {}", p);
    } else if (key == "audit.file") {
      s.audit_file = v.get<std::string>();
      if (s.audit_file.empty()) return fail(key, "empty path");
    }
    return {};
  }

  std::string source_;
};

}  // namespace

std::string settings_table_markdown() {
  std::string out = "| key | type | from | status | meaning |\n|---|---|---|---|---|\n";
  for (const auto& k : settings_keys())
    out += fmt::format("| `{}` | {} | {} | {} | {} |\n", k.key, type_name(k.type), k.origin,
                       status_name(k.status), k.doc);
  return out;
}

Result<Settings> parse_settings(const std::string& text, const std::string& source) {
  if (text.size() > kMaxSettingsBytes)
    return err("{}: file is larger than {} bytes; refusing to parse it", source, kMaxSettingsBytes);
  // The callback sees every nesting level before it is built, so a deeply
  // nested file is refused before it can exhaust the stack.
  bool too_deep = false;
  json::parser_callback_t cb = [&too_deep](int depth, json::parse_event_t, json&) {
    if (depth > kMaxSettingsDepth) too_deep = true;
    return !too_deep;
  };
  json root;
  try {
    root = json::parse(text, cb, /*allow_exceptions=*/true, /*ignore_comments=*/false);
  } catch (const json::parse_error& e) {
    if (too_deep) return err("{}: nested deeper than {} levels", source, kMaxSettingsDepth);
    std::string what = e.what();
    // nlohmann prefixes "[json.exception.parse_error.101] "; keep the rest.
    auto pos = what.find("] ");
    return err("{}: invalid JSON: {}", source, pos == std::string::npos ? what : what.substr(pos + 2));
  } catch (const std::exception& e) {
    return err("{}: invalid JSON: {}", source, e.what());
  }
  if (too_deep) return err("{}: nested deeper than {} levels", source, kMaxSettingsDepth);
  return Parser(source).run(root);
}

Result<Settings> load_settings_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return sys_err(fmt::format("{}: cannot open settings file", path));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return sys_err(fmt::format("{}: fstat", path));
  if (!S_ISREG(st.st_mode)) return err("{}: settings file is not a regular file", path);
  if (static_cast<size_t>(st.st_size) > kMaxSettingsBytes)
    return err("{}: file is larger than {} bytes; refusing to parse it", path, kMaxSettingsBytes);
  std::string text;
  text.resize(static_cast<size_t>(st.st_size) + 1);
  size_t got = 0;
  for (;;) {
    ssize_t n = ::read(fd.get(), text.data() + got, text.size() - got);
    if (n < 0) return sys_err(fmt::format("{}: read", path));
    if (n == 0) break;
    got += static_cast<size_t>(n);
    if (got == text.size()) {
      if (text.size() > kMaxSettingsBytes)
        return err("{}: file is larger than {} bytes; refusing to parse it", path, kMaxSettingsBytes);
      text.resize(text.size() * 2);
    }
  }
  text.resize(got);
  return parse_settings(text, path);
}

}  // namespace airlock::policy
