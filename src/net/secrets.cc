#include "net/secrets.h"

#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace airlock::net {
namespace {

using nlohmann::json;

// Built-in headers that carry a credential, for verifyHosts.
const char* const kCredentialHeaders[] = {"authorization", "proxy-authorization", "x-api-key", "api-key",
                                          "x-auth-token", "private-token", "x-goog-api-key", "x-access-token",
                                          "x-amz-security-token", "authentication", "x-token"};

// Known token prefixes, longest first: kept so tools that check a token's
// shape before sending it still accept the placeholder.
const char* const kPrefixes[] = {"sk-ant-admin01-", "sk-ant-api03-", "sk-ant-oat01-", "github_pat_", "sk-proj-", "sk-svcacct-",
                                 "dop_v1_", "sk-ant-", "glpat-", "xoxb-", "xoxp-", "xoxa-", "xapp-", "pypi-", "sk_live_",
                                 "sk_test_", "rk_live_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "npm_", "AKIA", "ASIA",
                                 "AIza", "hf_", "sk-", "pk_"};

void random_bytes(uint8_t* out, size_t n) {
  while (n > 0) {
    ssize_t got = ::getrandom(out, n, 0);
    if (got > 0) out += got, n -= static_cast<size_t>(got);
  }
}

char random_of(const char* alphabet, size_t size) {
  // Rejection sampling: no modulo bias.
  for (;;) {
    uint8_t b;
    random_bytes(&b, 1);
    if (b < 256 - 256 % size) return alphabet[b % size];
  }
}

const char kAlnum[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

// Same length, random letters and digits: only the separators '-', '_' and
// '.' stay where they are (a token's visible structure). Nothing else of
// the value shows through, not even which characters were digits.
std::string same_shape(std::string_view s, double* bits) {
  std::string out(s);
  for (char& c : out) {
    if (c == '-' || c == '_' || c == '.') continue;
    c = random_of(kAlnum, 62);
    *bits += 5.95;
  }
  return out;
}

bool looks_like_jwt(std::string_view v) {
  if (v.rfind("eyJ", 0) != 0 || std::count(v.begin(), v.end(), '.') != 2) return false;
  return v.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") == std::string_view::npos;
}

// Does some pattern in `by` cover every host `p` can name?
bool covered(const DomainPattern& p, const std::vector<DomainPattern>& by) {
  for (const auto& b : by) {
    if (b.port && p.port && *b.port != *p.port) continue;
    if (b.ip || p.ip) {
      if (b.ip && p.ip && *b.ip == *p.ip) return true;
      continue;
    }
    if (!b.wildcard && !p.wildcard && b.host == p.host) return true;
    if (b.wildcard && (p.host.size() > b.host.size() && p.host.compare(p.host.size() - b.host.size(), b.host.size(), b.host) == 0 &&
                       p.host[p.host.size() - b.host.size() - 1] == '.'))
      return true;
    if (b.wildcard && p.wildcard && b.host == p.host) return true;
  }
  return false;
}

class Builder {
 public:
  explicit Builder(const NetworkPolicy& n) : net_(n) {}

  Status layer(const std::string& src, const json& c) {
    if (!c.is_object()) return err("{}: credentials: expected an object", src);
    for (auto it = c.begin(); it != c.end(); ++it) {
      std::string where = fmt::format("{}: credentials.{}", src, it.key());
      const json& v = it.value();
      const std::string& k = it.key();
      if (k == "envVars" || k == "files") {
        if (!v.is_array()) return err("{}: expected a list", where);
        for (size_t i = 0; i < v.size(); ++i) AIRLOCK_TRY(item(fmt::format("{}[{}]", where, i), v[i], k == "files"));
      } else if (k == "allowPlaintextInject") {
        if (!v.is_boolean()) return err("{}: expected true or false", where);
        p_.allow_plaintext = v.get<bool>();
      } else if (k == "verifyHosts") {
        auto d = parse_patterns(v, where);
        if (!d) return d.error();
        for (auto& x : *d) p_.verify_hosts.push_back(std::move(x));
      } else if (k == "verifyHeaders") {
        if (!v.is_array()) return err("{}: expected a list of header names", where);
        for (size_t i = 0; i < v.size(); ++i) {
          if (!v[i].is_string() || v[i].get<std::string>().empty() ||
              v[i].get<std::string>().find_first_of(" \t\r\n:") != std::string::npos)
            return err("{}[{}]: expected a header name", where, i);
          std::string h = v[i].get<std::string>();
          std::transform(h.begin(), h.end(), h.begin(), ::tolower);
          p_.verify_headers.push_back(h);
        }
      } else if (k == "onExfiltration") {
        std::string s = v.is_string() ? v.get<std::string>() : "";
        if (s != "refuse" && s != "end") return err("{}: expected \"refuse\" or \"end\"", where);
        p_.end_on_exfiltration = s == "end";
      } else if (k == "awsPairs" || k == "sigv4") {
        return err("{}: AWS SigV4 re-signing is not supported by airlock yet; use mode \"deny\" for AWS keys", where);
      } else {
        return err("{}: unknown key (expected envVars, files, allowPlaintextInject, verifyHosts, verifyHeaders, "
                   "onExfiltration)", where);
      }
    }
    return {};
  }

  Result<CredentialPolicy> finish() {
    std::vector<DomainPattern> allowed_any_port = net_.allowed;
    for (auto& a : allowed_any_port) a.port.reset();
    for (const auto& s : p_.items) {
      if (!s.mask || !s.inject_hosts) continue;
      for (const auto& h : *s.inject_hosts) {
        DomainPattern hp = h;
        hp.port.reset();
        if (!covered(hp, allowed_any_port))
          return err("{}: injectHosts entry '{}' is not reachable through network.allowedDomains; add it there too",
                     h.where, h.text);
        if (net_.tls.enabled && covered(hp, net_.tls.exclude))
          return err("{}: injectHosts entry '{}' is covered by network.tlsTerminate.excludeDomains: airlock swaps "
                     "placeholders only on connections it inspects, so that host would only ever get the placeholder",
                     h.where, h.text);
      }
    }
    if (p_.any_masked() && !net_.tls.enabled && !p_.allow_plaintext)
      return err("credentials: masked credentials need network.tlsTerminate, so that the real value is sent only over "
                 "TLS to a verified server (or set credentials.allowPlaintextInject, not recommended)");
    return std::move(p_);
  }

 private:
  Status item(const std::string& where, const json& e, bool file) {
    if (!e.is_object()) return err("{}: expected an object", where);
    CredentialSpec s;
    s.kind = file ? CredentialSpec::Kind::File : CredentialSpec::Kind::Env;
    s.where = where;
    bool have_mode = false;
    for (auto it = e.begin(); it != e.end(); ++it) {
      std::string w = fmt::format("{}.{}", where, it.key());
      const json& v = it.value();
      const std::string& k = it.key();
      if ((k == "name" && !file) || (k == "path" && file)) {
        if (!v.is_string() || v.get<std::string>().empty()) return err("{}: expected a string", w);
        s.name = v.get<std::string>();
      } else if (k == "mode") {
        std::string m = v.is_string() ? v.get<std::string>() : "";
        if (m != "deny" && m != "mask") return err("{}: expected \"deny\" or \"mask\"", w);
        s.mask = m == "mask";
        have_mode = true;
      } else if (k == "injectHosts") {
        auto d = parse_patterns(v, w);
        if (!d) return d.error();
        if (d->empty()) return err("{}: an empty list means the credential is never used; leave it out to mean "
                                   "network.allowedDomains", w);
        s.inject_hosts = std::move(*d);
      } else if (k == "injectInto") {
        if (!v.is_array()) return err("{}: expected a list of \"headers\", \"query\"", w);
        for (const auto& x : v) {
          std::string t = x.is_string() ? x.get<std::string>() : "";
          if (t == "query") s.inject_query = true;
          else if (t != "headers") return err("{}: '{}': expected \"headers\" or \"query\"", w, t);
        }
      } else if (k == "decode") {
        // A JWT keeps its shape without being asked: nothing more to do.
        if (!v.is_string() || v.get<std::string>() != "jwt") return err("{}: expected \"jwt\"", w);
      } else if (k == "extract" || k == "maskClaims" || k == "maskDuplicates" || k == "onExtractNoMatch") {
        return err("{}: not supported by airlock yet (airlock masks the whole value); refusing rather than guessing", w);
      } else {
        return err("{}: unknown key", w);
      }
    }
    if (s.name.empty()) return err("{}: needs \"{}\"", where, file ? "path" : "name");
    if (!have_mode) return err("{}: needs \"mode\" (\"deny\" or \"mask\")", where);
    if (!file && (s.name.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") !=
                      std::string::npos ||
                  (s.name[0] >= '0' && s.name[0] <= '9')))
      return err("{}: '{}' is not an environment variable name", where, s.name);
    if (file && s.mask && s.name.back() == '/') return err("{}: mode \"mask\" takes a file, not a folder", where);
    // srt sends a masked value to every allowed domain when injectHosts is
    // left out; airlock asks where it belongs instead (an allowed wildcard
    // can be anyone's server).
    if (s.mask && !s.inject_hosts)
      return err("{}: mode \"mask\" needs \"injectHosts\": the hosts the real value may be sent to (airlock does "
                 "not default to every allowed domain)", where);
    // A later layer's entry for the same variable or file replaces it.
    std::erase_if(p_.items, [&](const CredentialSpec& o) { return o.kind == s.kind && o.name == s.name; });
    p_.items.push_back(std::move(s));
    return {};
  }

  const NetworkPolicy& net_;
  CredentialPolicy p_;
};

}  // namespace

bool CredentialPolicy::any_masked() const {
  return std::any_of(items.begin(), items.end(), [](const CredentialSpec& s) { return s.mask; });
}

Result<CredentialPolicy> build_credential_policy(const std::vector<std::pair<std::string, const json*>>& layers,
                                                 const NetworkPolicy& network) {
  Builder b(network);
  for (const auto& [src, c] : layers) AIRLOCK_TRY(b.layer(src, *c));
  return b.finish();
}

std::string mint_placeholder(std::string_view real) {
  double bits = 0;
  std::string out;
  if (looks_like_jwt(real)) {
    size_t sig = real.rfind('.') + 1;
    out = std::string(real.substr(0, sig));
    std::string_view s = real.substr(sig);
    for (size_t i = 0; i < std::max<size_t>(s.size(), 43); ++i) out.push_back(random_of(kAlnum, 62)), bits += 5.95;
    return out;
  }
  std::string_view prefix;
  for (const char* p : kPrefixes)
    if (real.size() > std::strlen(p) && real.substr(0, std::strlen(p)) == p) {
      prefix = p;
      break;
    }
  out = std::string(prefix) + same_shape(real.substr(prefix.size()), &bits);
  while (bits < 80) out.push_back(random_of(kAlnum, 62)), bits += 5.95;
  // (A value of punctuation only, say, got its randomness from the padding.)
  return out;
}

SecretBytes::SecretBytes(std::string_view v) : size_(v.size()) {
  long page = ::sysconf(_SC_PAGESIZE);
  mapped_ = (std::max<size_t>(v.size(), 1) + page - 1) / page * page;
  void* m = ::mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) throw std::bad_alloc();
  (void)::madvise(m, mapped_, MADV_DONTDUMP);  // never in a core dump
  (void)::madvise(m, mapped_, MADV_DONTFORK);  // never in a child's copy
  (void)::mlock(m, mapped_);                   // never in swap, where the limit allows
  data_ = static_cast<char*>(m);
  std::memcpy(data_, v.data(), v.size());
}

SecretBytes::~SecretBytes() {
  if (!data_) return;
  ::explicit_bzero(data_, mapped_);
  (void)::munlock(data_, mapped_);
  ::munmap(data_, mapped_);
}

void wipe(std::string& s) {
  if (!s.empty()) ::explicit_bzero(s.data(), s.size());
  s.clear();
}

bool SecretTable::bound_to(const Secret& s, const Host& h, uint16_t port) const {
  for (const auto& d : s.hosts)
    if (pattern_matches(d, h, port, false)) return true;
  return false;
}

bool SecretTable::verified(const Host& h, uint16_t port) const {
  for (const auto& d : verify_hosts)
    if (pattern_matches(d, h, port, true)) return true;
  return false;
}

std::vector<const Secret*> SecretTable::find(std::string_view text) const {
  std::vector<const Secret*> out;
  for (const auto& s : secrets)
    if (text.find(s.placeholder) != std::string_view::npos) out.push_back(&s);
  return out;
}

const Secret* SecretTable::find_in_name(std::string_view host) const {
  constexpr size_t kWindow = 16;
  std::string h;
  for (char c : host)
    if (c != '.' && c != '-' && c != '_') h.push_back(static_cast<char>(::tolower(static_cast<unsigned char>(c))));
  for (const auto& s : secrets) {
    // The end of every placeholder is random (a JWT's signature, a token's
    // body after its prefix).
    std::string tail;
    for (char c : s.placeholder.substr(s.placeholder.size() - std::min<size_t>(s.placeholder.size(), 40)))
      if (std::isalnum(static_cast<unsigned char>(c))) tail.push_back(static_cast<char>(::tolower(static_cast<unsigned char>(c))));
    for (size_t i = 0; i + kWindow <= tail.size(); ++i)
      if (h.find(std::string_view(tail).substr(i, kWindow)) != std::string::npos) return &s;
  }
  return nullptr;
}

size_t SecretTable::longest_placeholder() const {
  size_t n = 0;
  for (const auto& s : secrets) n = std::max(n, s.placeholder.size());
  return n;
}

bool credential_header(const SecretTable& t, std::string_view name) {
  for (const char* h : kCredentialHeaders)
    if (name == h) return true;
  return std::find(t.verify_headers.begin(), t.verify_headers.end(), name) != t.verify_headers.end();
}

}  // namespace airlock::net
