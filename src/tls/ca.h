// The TLS-inspection certificate authority: the CA (generated fresh for each
// run, in memory, or loaded from the user's files), the leaf certificates
// the proxy presents to the sandbox (minted per host, short-lived, cached),
// and the trust bundle placed inside the sandbox.
//
// Everything here lives in the airlock process on the host side. The CA's
// private key never leaves this process: it is not written anywhere, and
// the sandbox only ever gets cert_pem() (public) in its bundle.
//
// OpenSSL 3 only; no Asio here. Not thread-safe: the proxy calls it from
// its one event-loop thread.
#pragma once

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <chrono>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "util/result.h"

namespace airlock::tls {

// Frees an OpenSSL object with its own free function: the deleter of
// every unique_ptr that holds one (Free<X509_free>, Free<BIO_free_all>...).
template <auto Fn>
struct Free {
  template <typename T>
  void operator()(T* p) const { Fn(p); }
};
using X509Free = Free<X509_free>;
using Pkey = std::unique_ptr<EVP_PKEY, Free<EVP_PKEY_free>>;
using Cert = std::shared_ptr<X509>;  // shared: cached leaves are handed to many connections

// The newest OpenSSL error queue entry as text ("" if none); clears the queue.
std::string openssl_error();

class Authority {
 public:
  // A fresh CA (EC P-256), valid from an hour ago for `lifetime`; the
  // subject names airlock and a random run id so two runs never look alike.
  static Result<Authority> generate(std::chrono::hours lifetime = std::chrono::hours(24 * 7));
  // The user's CA (tlsTerminate.caCertPath / caKeyPath, PEM). Errors name
  // the file: unreadable, not PEM, not a CA, key does not match.
  static Result<Authority> load(const std::string& cert_path, const std::string& key_path);

  std::string cert_pem() const;  // public part only
  X509* cert() const { return cert_.get(); }

  // A leaf for `host` (a canonical DNS name, or an IPv4/IPv6 literal
  // without brackets): SAN DNS or IP, serverAuth, valid from an hour ago
  // for a day (never past the CA's own end), signed by the CA, random
  // serial. All leaves share one key (leaf_key()), generated with the CA.
  // Cached (least recently used out after `cache_size` hosts).
  Result<Cert> leaf(const std::string& host);
  EVP_PKEY* leaf_key() const { return leaf_key_.get(); }

  // Frees (and so wipes: OpenSSL clears private keys as it frees them) both
  // private keys. For the sandbox's init, which starts as a copy of this
  // process: the CA's key must not live on in it.
  void drop_private_keys() {
    key_.reset();
    leaf_key_.reset();
  }

  // Mint counters, for benchmarks and tests.
  size_t minted() const { return minted_; }

  Authority(Authority&&) = default;
  Authority& operator=(Authority&&) = default;
  ~Authority();

  static constexpr size_t cache_size = 1024;

 private:
  Authority() = default;
  std::unique_ptr<X509, X509Free> cert_;
  Pkey key_, leaf_key_;
  struct Entry {
    Cert cert;
    std::chrono::system_clock::time_point expires;
    std::list<std::string>::iterator lru;
  };
  std::unordered_map<std::string, Entry> cache_;
  std::list<std::string> lru_;  // most recent first
  size_t minted_ = 0;
};

// The bundle the sandbox trusts: the host's roots (the first readable of
// `host_bundles`, or OpenSSL's default file), then the airlock CA, then the
// CERTIFICATE blocks of each extra file (tlsTerminate.extraCaCertPaths;
// nothing else from them: a private key in such a file is never copied).
// Extra files that are missing or hold no certificate are skipped, with
// one line each in `notes`.
struct Bundle {
  std::string pem;
  std::vector<std::string> notes;
};
std::vector<std::string> default_host_bundles();
Bundle build_bundle(const std::string& ca_pem, const std::vector<std::string>& extra_paths,
                    const std::vector<std::string>& host_bundles = default_host_bundles());

// The CERTIFICATE blocks of a PEM text, re-encoded by OpenSSL (so nothing
// but certificates passes), concatenated. Empty if none.
std::string certificates_only(const std::string& pem_text);

}  // namespace airlock::tls
