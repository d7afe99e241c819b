// The TLS-inspection CA (see ca.h). Every OpenSSL object is owned by a
// unique_ptr from the line that creates it, so no error path leaks one.
#include "tls/ca.h"

#include <arpa/inet.h>
#include <openssl/ec.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <initializer_list>
#include <string_view>

#include "util/sys.h"

namespace airlock::tls {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::system_clock;

using Bio = std::unique_ptr<BIO, Free<BIO_free_all>>;
using Bignum = std::unique_ptr<BIGNUM, Free<BN_free>>;
using Extension = std::unique_ptr<X509_EXTENSION, Free<X509_EXTENSION_free>>;
using GeneralName = std::unique_ptr<GENERAL_NAME, Free<GENERAL_NAME_free>>;
using GeneralNames = std::unique_ptr<GENERAL_NAMES, Free<GENERAL_NAMES_free>>;
using X509Ptr = std::unique_ptr<X509, X509Free>;

constexpr size_t kMaxPemFile = 1 << 20;      // one CA certificate or key
constexpr size_t kMaxBundleFile = 16 << 20;  // a distribution's whole bundle is ~200 KiB
constexpr auto kLeafLifetime = 24h;
constexpr auto kBackdate = 1h;     // a sandbox clock a little behind the host's still accepts
constexpr auto kRenewMargin = 1h;  // never hand out a leaf that expires mid-connection

Error ssl_err(const std::string& what) {
  std::string why = openssl_error();
  return why.empty() ? Error{what} : err("{}: {}", what, why);
}

// Without a callback, OpenSSL would prompt on the terminal for the
// passphrase of an encrypted PEM block; refuse instead.
int no_passphrase(char*, int, int, void*) { return -1; }

// Zeroes a buffer that held key material when it goes out of scope.
struct Wipe {
  std::string& text;
  ~Wipe() { OPENSSL_cleanse(text.data(), text.size()); }
};

Bio read_bio(const std::string& text) { return Bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size()))); }

std::string pem_of(X509* x) {
  Bio out(BIO_new(BIO_s_mem()));
  if (!out || PEM_write_bio_X509(out.get(), x) != 1) return "";
  char* data = nullptr;
  long n = BIO_get_mem_data(out.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

Result<Pkey> new_p256_key(const char* what) {
  Pkey key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!key) return ssl_err(fmt::format("{}: EVP_PKEY_Q_keygen(EC P-256)", what));
  return key;
}

// The leaves' key, as a legacy EC_KEY: OpenSSL 3.0 encodes a provider key
// anew (an encoder lookup, about 0.5 ms) every time a certificate takes it,
// a legacy one in microseconds; a leaf is minted for every new host.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
Result<Pkey> new_leaf_key() {
  std::unique_ptr<EC_KEY, decltype(&EC_KEY_free)> ec(EC_KEY_new_by_curve_name(NID_X9_62_prime256v1), EC_KEY_free);
  if (!ec || EC_KEY_generate_key(ec.get()) != 1) return ssl_err("TLS leaf key: EC_KEY_generate_key(P-256)");
  Pkey key(EVP_PKEY_new());
  if (!key || EVP_PKEY_assign_EC_KEY(key.get(), ec.get()) != 1) return ssl_err("TLS leaf key: EVP_PKEY_assign_EC_KEY");
  ec.release();  // owned by key now
  return key;
}
#pragma GCC diagnostic pop

Clock::time_point to_time_point(const ASN1_TIME* t) {
  std::tm tm{};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return {};  // the epoch: already past, so never trusted
  return Clock::from_time_t(timegm(&tm));
}

Status set_random_serial(X509* x) {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1) return ssl_err("RAND_bytes(serial)");
  // Top bit clear: a positive INTEGER (RFC 5280 4.1.2.2). Next bit set:
  // always exactly 16 octets, never zero.
  bytes[0] = static_cast<unsigned char>((bytes[0] & 0x7f) | 0x40);
  Bignum bn(BN_bin2bn(bytes, sizeof bytes, nullptr));
  if (!bn || !BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(x))) return ssl_err("BN_to_ASN1_INTEGER(serial)");
  return {};
}

// A v3 certificate for `pubkey` with a random serial and the given
// validity; names, extensions and signature are the caller's.
Result<X509Ptr> new_cert(EVP_PKEY* pubkey, Clock::time_point from, Clock::time_point until) {
  X509Ptr x(X509_new());
  if (!x || !X509_set_version(x.get(), X509_VERSION_3) || !X509_set_pubkey(x.get(), pubkey))
    return ssl_err("X509_new/X509_set_pubkey");
  AIRLOCK_TRY(set_random_serial(x.get()));
  if (!ASN1_TIME_set(X509_getm_notBefore(x.get()), Clock::to_time_t(from)) ||
      !ASN1_TIME_set(X509_getm_notAfter(x.get()), Clock::to_time_t(until)))
    return ssl_err("ASN1_TIME_set(validity)");
  return x;
}

Status add_name_entry(X509_NAME* name, const char* field, const std::string& value) {
  if (!X509_NAME_add_entry_by_txt(name, field, MBSTRING_ASC, reinterpret_cast<const unsigned char*>(value.data()),
                                  static_cast<int>(value.size()), -1, 0))
    return ssl_err(fmt::format("X509_NAME_add_entry_by_txt({})", field));
  return {};
}

struct ExtSpec {
  int nid;
  const char* value;  // OpenSSL's config syntax; constants only, never a host name
};

Status add_exts(X509* x, X509* issuer, std::initializer_list<ExtSpec> exts) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, x, nullptr, nullptr, 0);
  for (const ExtSpec& e : exts) {
    Extension ext(X509V3_EXT_conf_nid(nullptr, &ctx, e.nid, e.value));
    if (!ext || !X509_add_ext(x, ext.get(), -1))
      return ssl_err(fmt::format("X509V3_EXT_conf_nid({} = {})", OBJ_nid2sn(e.nid), e.value));
  }
  return {};
}

// Built as a GENERAL_NAME rather than through "DNS:<host>" config text, so
// nothing in a host name can be read as more configuration.
Status add_subject_alt_name(X509* x, const std::string& host, bool is_ip) {
  GeneralNames names(GENERAL_NAMES_new());
  GeneralName name(a2i_GENERAL_NAME(nullptr, nullptr, nullptr, is_ip ? GEN_IPADD : GEN_DNS, host.c_str(), 0));
  if (!names || !name || !sk_GENERAL_NAME_push(names.get(), name.get()))
    return ssl_err("a2i_GENERAL_NAME(subjectAltName)");
  name.release();  // owned by `names` now
  if (X509_add1_ext_i2d(x, NID_subject_alt_name, names.get(), 0, X509V3_ADD_DEFAULT) != 1)
    return ssl_err("X509_add1_ext_i2d(subjectAltName)");
  return {};
}

bool is_ip_literal(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// The host comes from the sandbox (SNI or CONNECT): refuse anything that is
// not a plain DNS name, wildcard or IP literal rather than sign it.
Status check_host(const std::string& host, bool is_ip) {
  if (host.empty() || host.size() > 253)
    return err("TLS leaf: a host name of {} characters (1 to 253 allowed)", host.size());
  auto allowed = [is_ip](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view(".-*_").find(c) != std::string_view::npos || (is_ip && c == ':');
  };
  if (!std::all_of(host.begin(), host.end(), allowed))
    return err("TLS leaf: refusing host {:?}: only A-Z a-z 0-9 . - * _ or an IP literal", host);
  return {};
}

struct Minted {
  Cert cert;
  Clock::time_point expires;
};

Result<Minted> mint_leaf(X509* ca, EVP_PKEY* ca_key, EVP_PKEY* leaf_key, const std::string& host, bool is_ip) {
  auto now = Clock::now();
  auto until = std::min(now + kLeafLifetime, to_time_point(X509_get0_notAfter(ca)));
  if (until <= now) return err("the CA certificate has expired");
  auto cert = new_cert(leaf_key, now - kBackdate, until);
  if (!cert) return cert.error();
  X509* x = cert->get();
  // CN is at most 64 characters (RFC 5280 ub-common-name); the SAN, which
  // is what clients check, carries the whole name.
  AIRLOCK_TRY(add_name_entry(X509_get_subject_name(x), "CN", host.substr(0, 64)));
  if (!X509_set_issuer_name(x, X509_get_subject_name(ca))) return ssl_err("X509_set_issuer_name(leaf)");
  AIRLOCK_TRY(add_exts(x, ca,
                       {{NID_basic_constraints, "critical,CA:FALSE"},
                        {NID_key_usage, "critical,digitalSignature"},
                        {NID_ext_key_usage, "serverAuth"},
                        // keyid; or, for a user's CA without one, its issuer and serial
                        {NID_authority_key_identifier, "keyid,issuer"},
                        {NID_subject_key_identifier, "hash"}}));
  AIRLOCK_TRY(add_subject_alt_name(x, host, is_ip));
  if (X509_sign(x, ca_key, EVP_sha256()) <= 0) return ssl_err("X509_sign(leaf)");
  return Minted{Cert(cert->release(), X509_free), until};
}

X509Ptr parse_cert(const std::string& pem) {
  Bio bio = read_bio(pem);
  return X509Ptr(bio ? PEM_read_bio_X509(bio.get(), nullptr, no_passphrase, nullptr) : nullptr);
}

// Parses one DER certificate and writes it back as PEM: only what OpenSSL
// understood as a whole certificate passes, never the original text.
void copy_certificate(const unsigned char* der, long len, BIO* out) {
  const unsigned char* p = der;
  X509Ptr x(d2i_X509(nullptr, &p, len));
  if (x && p == der + len) PEM_write_bio_X509(out, x.get());
}

// The roots of the first host bundle that holds any.
std::string host_roots(const std::vector<std::string>& host_bundles) {
  for (const std::string& path : host_bundles) {
    auto text = sys::read_regular_file(path, kMaxBundleFile);
    if (!text) continue;
    std::string certs = certificates_only(*text);
    if (!certs.empty()) return certs;
  }
  return "";
}

}  // namespace

std::string openssl_error() {
  unsigned long newest = 0;
  while (unsigned long e = ERR_get_error()) newest = e;
  if (newest == 0) return "";
  char buf[256];
  ERR_error_string_n(newest, buf, sizeof buf);
  return buf;
}

Result<Authority> Authority::generate(std::chrono::hours lifetime) {
  Authority a;
  auto key = new_p256_key("TLS CA key");
  if (!key) return key.error();
  a.key_ = std::move(*key);

  unsigned char id[4];
  if (RAND_bytes(id, sizeof id) != 1) return ssl_err("RAND_bytes(CA run id)");
  auto now = Clock::now();
  auto cert = new_cert(a.key_.get(), now - kBackdate, now + lifetime);
  if (!cert) return cert.error();
  X509* x = cert->get();
  X509_NAME* name = X509_get_subject_name(x);
  AIRLOCK_TRY(add_name_entry(name, "O", "airlock"));
  std::string run_id = fmt::format("{:02x}{:02x}{:02x}{:02x}", id[0], id[1], id[2], id[3]);
  AIRLOCK_TRY(add_name_entry(name, "CN", "airlock sandbox CA " + run_id));
  if (!X509_set_issuer_name(x, name)) return ssl_err("X509_set_issuer_name(CA)");
  // pathlen:0: this CA signs leaves only, never another CA.
  AIRLOCK_TRY(add_exts(x, x,
                       {{NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
                        {NID_key_usage, "critical,keyCertSign,cRLSign"},
                        {NID_subject_key_identifier, "hash"}}));
  if (X509_sign(x, a.key_.get(), EVP_sha256()) <= 0) return ssl_err("X509_sign(CA)");
  a.cert_ = std::move(*cert);

  auto leaf_key = new_leaf_key();
  if (!leaf_key) return leaf_key.error();
  a.leaf_key_ = std::move(*leaf_key);
  return a;
}

Result<Authority> Authority::load(const std::string& cert_path, const std::string& key_path) {
  auto cert_text = sys::read_regular_file(cert_path, kMaxPemFile);
  if (!cert_text) return err("TLS CA certificate: {}", cert_text.error().message);
  Authority a;
  a.cert_ = parse_cert(*cert_text);
  if (!a.cert_) return ssl_err(fmt::format("{}: not a PEM certificate", cert_path));
  // 1 means basicConstraints CA:TRUE (and keyCertSign if keyUsage is
  // present); the looser answers (v1 roots, Netscape types) are refused.
  if (X509_check_ca(a.cert_.get()) != 1)
    return err("{}: not a CA certificate (it needs basicConstraints CA:TRUE and keyUsage keyCertSign)", cert_path);
  if (X509_cmp_current_time(X509_get0_notAfter(a.cert_.get())) <= 0)
    return err("{}: the CA certificate has expired", cert_path);

  auto key_text = sys::read_regular_file(key_path, kMaxPemFile);
  if (!key_text) return err("TLS CA key: {}", key_text.error().message);
  {
    Wipe wipe{*key_text};
    Bio bio = read_bio(*key_text);
    a.key_.reset(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr) : nullptr);
  }
  if (!a.key_)
    return ssl_err(fmt::format("{}: not a PEM private key (an encrypted key must be decrypted first)", key_path));
  if (X509_check_private_key(a.cert_.get(), a.key_.get()) != 1)
    return ssl_err(fmt::format("{}: the key does not match the certificate {}", key_path, cert_path));

  auto leaf_key = new_leaf_key();
  if (!leaf_key) return leaf_key.error();
  a.leaf_key_ = std::move(*leaf_key);
  return a;
}

Authority::~Authority() = default;

std::string Authority::cert_pem() const { return pem_of(cert_.get()); }

Result<Cert> Authority::leaf(const std::string& host) {
  bool is_ip = is_ip_literal(host);
  AIRLOCK_TRY(check_host(host, is_ip));
  if (auto hit = cache_.find(host); hit != cache_.end()) {
    if (hit->second.expires - Clock::now() > kRenewMargin) {
      lru_.splice(lru_.begin(), lru_, hit->second.lru);
      return hit->second.cert;
    }
    lru_.erase(hit->second.lru);
    cache_.erase(hit);
  }
  auto minted = mint_leaf(cert_.get(), key_.get(), leaf_key_.get(), host, is_ip);
  if (!minted) return err("TLS leaf for {}: {}", host, minted.error().message);
  ++minted_;
  lru_.push_front(host);
  cache_.emplace(host, Entry{minted->cert, minted->expires, lru_.begin()});
  if (cache_.size() > cache_size) {
    cache_.erase(lru_.back());
    lru_.pop_back();
  }
  return minted->cert;
}

std::vector<std::string> default_host_bundles() {
  std::vector<std::string> paths;
  auto add = [&paths](const char* p) {
    if (p && *p && std::find(paths.begin(), paths.end(), p) == paths.end()) paths.emplace_back(p);
  };
  add(std::getenv("SSL_CERT_FILE"));
  add(X509_get_default_cert_file());
  for (const char* p : {"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"})
    add(p);
  return paths;
}

Bundle build_bundle(const std::string& ca_pem, const std::vector<std::string>& extra_paths,
                    const std::vector<std::string>& host_bundles) {
  Bundle b;
  b.pem = host_roots(host_bundles);
  if (b.pem.empty())
    b.notes.push_back(fmt::format("no host CA bundle found (tried {}); the sandbox trusts only the airlock CA{}",
                                  fmt::join(host_bundles, ", "), extra_paths.empty() ? "" : " and the extra CA files"));
  b.pem += ca_pem;
  if (!b.pem.empty() && b.pem.back() != '\n') b.pem += '\n';
  // Extra files are the user's own paths (symlinks welcome, as in
  // /etc/ssl/certs); only their certificates are copied.
  for (const std::string& path : extra_paths) {
    auto text = sys::read_regular_file(path, kMaxBundleFile);
    if (!text) {
      b.notes.push_back("extra CA file skipped: " + text.error().message);
      continue;
    }
    Wipe wipe{*text};  // the file may also hold a private key
    std::string certs = certificates_only(*text);
    if (certs.empty())
      b.notes.push_back(fmt::format("extra CA file skipped: {}: no CERTIFICATE block", path));
    b.pem += certs;
  }
  return b;
}

std::string certificates_only(const std::string& pem_text) {
  Bio in = read_bio(pem_text);
  Bio out(BIO_new(BIO_s_mem()));
  std::string certs;
  for (size_t left = in ? BIO_ctrl_pending(in.get()) : 0; out && left > 0;) {
    char* name = nullptr;
    char* header = nullptr;
    unsigned char* data = nullptr;
    long len = 0;
    bool read = PEM_read_bio(in.get(), &name, &header, &data, &len) == 1;
    if (read && std::strcmp(name, PEM_STRING_X509) == 0) copy_certificate(data, len, out.get());
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_clear_free(data, static_cast<size_t>(len));  // it may have been a private key
    // A malformed block is skipped; stop at the end, or if nothing was consumed.
    size_t now_left = BIO_ctrl_pending(in.get());
    if (now_left == left) break;
    left = now_left;
  }
  if (out) {
    char* data = nullptr;
    long n = BIO_get_mem_data(out.get(), &data);
    certs.assign(data, static_cast<size_t>(n));
  }
  ERR_clear_error();
  return certs;
}

}  // namespace airlock::tls
