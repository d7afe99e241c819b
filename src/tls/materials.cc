#include "tls/materials.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "fs/path.h"
#include "util/fd.h"
#include "util/log.h"
#include "util/sys.h"

extern char** environ;

namespace airlock::tls {
namespace {

// The system bundles real tools read when told nothing: the sandbox's
// bundle is mounted over each one that exists.
const char* const kSystemBundles[] = {"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt",
                                      "/etc/ssl/cert.pem", "/etc/pki/tls/cacert.pem", "/etc/ssl/ca-bundle.pem"};

// A new file in the run's folder; `m` removes it at the end.
Status write_new(Materials& m, const std::string& path, const std::string& text) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!fd) return sys_err("create " + path);
  m.files.push_back(path);
  if (!sys::write_all(fd.get(), text.data(), text.size())) return sys_err("write " + path);
  return {};
}

// Every copy of a masked variable's value in this process goes.
void wipe_variable(const std::string& name, std::vector<std::string>& caller_env, policy::Policy& p) {
  std::string prefix = name + "=";
  for (auto* list : {&caller_env, &p.env})
    for (auto& kv : *list)
      if (kv.compare(0, prefix.size(), prefix) == 0) net::wipe(kv);
  std::erase_if(caller_env, [](const std::string& s) { return s.empty(); });
  std::erase_if(p.env, [](const std::string& s) { return s.empty(); });
  for (char** e = environ; e && *e; ++e)
    if (std::strncmp(*e, prefix.c_str(), prefix.size()) == 0) ::explicit_bzero(*e + prefix.size(), std::strlen(*e + prefix.size()));
}

Status add_bundle(Materials& m, policy::Policy& p) {
  const auto& t = p.network.tls;
  auto ca = t.ca_cert.empty() ? Authority::generate() : Authority::load(t.ca_cert, t.ca_key);
  if (!ca)
    return t.ca_cert.empty() ? ca.error()
                             : err("network.tlsTerminate.caCertPath/caKeyPath: {}", ca.error().message);
  m.ca = std::make_shared<Authority>(std::move(*ca));
  Bundle b = build_bundle(m.ca->cert_pem(), t.extra_ca);
  for (const auto& n : b.notes) p.notes.push_back("network.tlsTerminate: " + n);
  std::string file = m.dir + "/ca-bundle.pem";
  AIRLOCK_TRY(write_new(m, file, b.pem));
  std::vector<std::string> targets;
  for (const char* sys : kSystemBundles) {
    auto r = fs::resolve(sys);
    if (!r || !r->exists || r->is_dir) continue;
    if (std::find(targets.begin(), targets.end(), r->path) == targets.end()) targets.push_back(r->path);
  }
  if (targets.empty())
    return err("network.tlsTerminate: this machine has no system CA bundle (looked for {}) to put the sandbox's "
               "bundle in place of",
               kSystemBundles[0]);
  for (const auto& target : targets) p.overlays.push_back({target, file, "trust bundle: host roots + airlock's CA"});
  auto vars = bundle_environment(targets.front());
  std::erase_if(p.env, [&](const std::string& kv) {
    for (const auto& v : vars)
      if (kv.compare(0, kv.find('=') + 1, v, 0, v.find('=') + 1) == 0) return true;
    return false;
  });
  p.env.insert(p.env.end(), vars.begin(), vars.end());
  return {};
}

Status add_secrets(Materials& m, policy::Policy& p, std::vector<std::string>& caller_env) {
  auto table = std::make_shared<net::SecretTable>();
  const auto& cp = p.credentials;
  table->allow_plaintext = cp.allow_plaintext;
  table->verify_hosts = cp.verify_hosts;
  table->verify_headers = cp.verify_headers;
  table->end_on_exfiltration = cp.end_on_exfiltration;
  auto push = [&](const net::CredentialSpec& c, std::string label, std::string_view real) -> std::string {
    net::Secret s;
    s.label = std::move(label);
    s.placeholder = net::mint_placeholder(real);
    s.real = std::make_unique<net::SecretBytes>(real);
    s.hosts = c.inject_hosts ? *c.inject_hosts : p.network.allowed;
    s.inject_query = c.inject_query;
    for (const auto& h : s.hosts) table->verify_hosts.push_back(h);
    table->secrets.push_back(std::move(s));
    return table->secrets.back().placeholder;
  };
  // A masked credential's hosts are verified even when its value is not
  // set this time: no one else's token goes there either.
  for (const auto& c : cp.items)
    if (c.mask && c.inject_hosts)
      for (const auto& h : *c.inject_hosts) table->verify_hosts.push_back(h);
  for (const auto& c : cp.items) {
    if (c.kind != net::CredentialSpec::Kind::Env) continue;
    std::string prefix = c.name + "=";
    std::string real;
    bool set = false;
    for (const auto& kv : caller_env)
      if (kv.compare(0, prefix.size(), prefix) == 0) real = kv.substr(prefix.size()), set = true;
    std::erase(p.env_removed, c.name);
    p.env_removed.push_back(c.name);
    if (!c.mask || !set || real.empty()) {
      if (c.mask) p.notes.push_back(fmt::format("{}: {} is not set; nothing to mask", c.where, c.name));
      wipe_variable(c.name, caller_env, p);
      net::wipe(real);
      continue;
    }
    if (real.find_first_of(std::string("\r\n\0", 3)) != std::string::npos) {
      net::wipe(real);
      wipe_variable(c.name, caller_env, p);
      return err("{}: {} holds more than one line; mask takes a one-line token (use mode \"deny\")", c.where, c.name);
    }
    std::string ph = push(c, c.name, real);
    net::wipe(real);
    wipe_variable(c.name, caller_env, p);
    std::erase(p.env_removed, c.name);
    p.env.push_back(c.name + "=" + ph);
  }
  size_t n = 0;
  for (const auto& [index, path] : p.masked_files) {
    const auto& c = cp.items[index];
    auto text = sys::read_regular_file(path, 1 << 20);
    if (!text) {
      p.notes.push_back(fmt::format("{}: {}; nothing to mask (the path stays hidden)", c.where, text.error().message));
      continue;
    }
    // The value is the file without its final line break; the placeholder
    // file ends the same way.
    size_t end = text->size();
    while (end > 0 && ((*text)[end - 1] == '\n' || (*text)[end - 1] == '\r')) --end;
    std::string tail = text->substr(end);
    if (end == 0) {
      p.notes.push_back(fmt::format("{}: {} is empty; nothing to mask", c.where, path));
      net::wipe(*text);
      continue;
    }
    if (text->find_first_of(std::string("\r\n\0", 3)) < end) {
      net::wipe(*text);
      return err("{}: {} holds more than one line; mask takes a one-line token (use mode \"deny\")", c.where, path);
    }
    std::string ph = push(c, "file " + c.name, std::string_view(*text).substr(0, end));
    net::wipe(*text);
    std::string file = fmt::format("{}/credential-{}", m.dir, n++);
    AIRLOCK_TRY(write_new(m, file, ph + tail));
    p.overlays.push_back({path, file, fmt::format("{}: the placeholder in place of the credential", c.where)});
  }
  if (!table->secrets.empty() || !table->verify_hosts.empty()) m.secrets = std::move(table);
  return {};
}

}  // namespace

Materials::~Materials() {
  if (dir.empty()) return;
  for (const auto& f : files) (void)::unlink(f.c_str());
  (void)::rmdir(dir.c_str());
}

std::vector<std::string> bundle_environment(const std::string& bundle) {
  std::vector<std::string> out;
  for (const char* n : {"SSL_CERT_FILE", "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "GIT_SSL_CAINFO",
                        "PIP_CERT", "CARGO_HTTP_CAINFO", "DENO_CERT", "AWS_CA_BUNDLE", "npm_config_cafile",
                        "YARN_CAFILE", "BUNDLE_SSL_CA_CERT", "HEX_CACERTS_PATH", "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"})
    out.push_back(fmt::format("{}={}", n, bundle));
  return out;
}

Result<Materials> prepare(policy::Policy& p, std::vector<std::string>& caller_env) {
  Materials m;
  bool tls = p.network.enabled && p.network.tls.enabled;
  if (!tls && p.masked_files.empty() && !p.credentials.any_masked() && p.credentials.verify_hosts.empty()) {
    // Still: denied variables never reach the sandbox, nor stay here.
    for (const auto& c : p.credentials.items)
      if (c.kind == net::CredentialSpec::Kind::Env) wipe_variable(c.name, caller_env, p);
    return m;
  }
  const char* tmp = ::getenv("TMPDIR");
  std::string tmpl = fmt::format("{}/airlock-XXXXXX", tmp && *tmp == '/' ? tmp : "/tmp");
  if (!::mkdtemp(tmpl.data())) return sys_err("mkdtemp " + tmpl);
  m.dir = tmpl;
  // The mounts open their sources without following links: use the real path.
  if (auto r = fs::resolve(m.dir); r && r->exists) m.dir = r->path;
  (void)::chmod(m.dir.c_str(), 0755);  // the sandbox's root user (no capabilities) reads it too
  if (tls) AIRLOCK_TRY(add_bundle(m, p));
  AIRLOCK_TRY(add_secrets(m, p, caller_env));
  return m;
}

}  // namespace airlock::tls
