// The TLS-inspection CA: leaves verify for the host they name and no other,
// the user's CA files are checked before use, and the sandbox's trust
// bundle never carries anything but certificates.
#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdlib.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include "tls/ca.h"

namespace airlock::tls {
namespace {

using namespace std::chrono_literals;

using Store = std::unique_ptr<X509_STORE, Free<X509_STORE_free>>;
using StoreCtx = std::unique_ptr<X509_STORE_CTX, Free<X509_STORE_CTX_free>>;
using Bio = std::unique_ptr<BIO, Free<BIO_free_all>>;

Authority make_ca(std::chrono::hours lifetime = 24h * 7) {
  auto ca = Authority::generate(lifetime);
  if (!ca) ADD_FAILURE() << ca.error().message;
  return std::move(ca).value();
}

// X509_verify_cert's verdict on `leaf` for `name` (a host, or an IP
// literal if ip), trusting only `ca`, with RFC 5280 strictness on unless
// asked: X509_V_OK or the reason it failed.
int verify(X509* leaf, X509* ca, const std::string& name, bool ip = false, bool strict = true) {
  Store store(X509_STORE_new());
  StoreCtx ctx(X509_STORE_CTX_new());
  X509_STORE_add_cert(store.get(), ca);
  X509_STORE_CTX_init(ctx.get(), store.get(), leaf, nullptr);
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  if (strict) X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_X509_STRICT);
  X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_SSL_SERVER);
  if (ip)
    X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str());
  else
    X509_VERIFY_PARAM_set1_host(param, name.c_str(), name.size());
  return X509_verify_cert(ctx.get()) == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx.get());
}

// The type of each subjectAltName entry (GEN_DNS, GEN_IPADD, ...).
std::vector<int> san_types(X509* x) {
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr));
  std::vector<int> types;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) types.push_back(sk_GENERAL_NAME_value(names, i)->type);
  GENERAL_NAMES_free(names);
  return types;
}

std::string verify_text(int code) { return X509_verify_cert_error_string(code); }

std::string serial_hex(X509* x) {
  BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), nullptr);
  char* hex = BN_bn2hex(bn);
  std::string s = hex;
  OPENSSL_free(hex);
  BN_free(bn);
  return s;
}

// Seconds from notBefore to notAfter.
long validity_seconds(X509* x) {
  int days = 0, secs = 0;
  EXPECT_EQ(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x)), 1);
  return days * 86400L + secs;
}

std::string cert_pem(X509* x) {
  Bio out(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(out.get(), x);
  char* data = nullptr;
  long n = BIO_get_mem_data(out.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

std::string key_pem(EVP_PKEY* key) {
  Bio out(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(out.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long n = BIO_get_mem_data(out.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

// A scratch directory, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string t = testing::TempDir() + "airlock-tls-XXXXXX";
    if (::mkdtemp(t.data())) path_ = t;
    EXPECT_FALSE(path_.empty());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(*this / name) << text;
    return *this / name;
  }

 private:
  std::string path_;
};

bool have_openssl_cli() { return std::system("openssl version >/dev/null 2>&1") == 0; }

// A CA made by the openssl CLI, as a user would make one (with the
// keyUsage that RFC 5280, and the strict verification above, want).
bool cli_ca(const TempDir& dir, const std::string& name, const std::string& extra_args = "") {
  std::string cmd = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 -subj /CN=" +
                    name + " -addext keyUsage=critical,keyCertSign,cRLSign " + extra_args + " -keyout " +
                    dir / (name + ".key") + " -out " + dir / (name + ".crt") + " >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

}  // namespace

TEST(TlsCa, GeneratedCaIsASelfSignedCa) {
  Authority ca = make_ca();
  X509* c = ca.cert();
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(X509_check_ca(c), 1);
  EXPECT_EQ(X509_get_version(c), X509_VERSION_3);
  EXPECT_EQ(X509_verify(c, X509_get0_pubkey(c)), 1);
  EXPECT_EQ(X509_NAME_cmp(X509_get_subject_name(c), X509_get_issuer_name(c)), 0);
  EXPECT_EQ(X509_get_pathlen(c), 0);
  EXPECT_EQ(X509_get_key_usage(c), static_cast<uint32_t>(KU_KEY_CERT_SIGN | KU_CRL_SIGN));
  EXPECT_NE(X509_get0_subject_key_id(c), nullptr);
  EXPECT_EQ(serial_hex(c).size(), 32u);  // 16 random bytes, positive

  char cn[128] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(c), NID_commonName, cn, sizeof cn);
  EXPECT_EQ(std::string(cn).rfind("airlock sandbox CA ", 0), 0u) << cn;
  EXPECT_EQ(std::string(cn).size(), std::string("airlock sandbox CA ").size() + 8) << cn;

  // Only the public half goes out.
  std::string pem = ca.cert_pem();
  EXPECT_EQ(pem.rfind("-----BEGIN CERTIFICATE-----", 0), 0u);
  EXPECT_EQ(pem.find("PRIVATE"), std::string::npos);
  // Two runs never look alike.
  Authority other = make_ca();
  EXPECT_NE(X509_NAME_cmp(X509_get_subject_name(c), X509_get_subject_name(other.cert())), 0);
}

TEST(TlsCa, LeafVerifiesForItsHostOnly) {
  Authority ca = make_ca();
  auto leaf = ca.leaf("api.example.com");
  ASSERT_TRUE(leaf) << leaf.error().message;
  X509* x = leaf->get();
  EXPECT_EQ(san_types(x), std::vector<int>{GEN_DNS});
  EXPECT_EQ(verify(x, ca.cert(), "api.example.com"), X509_V_OK) << verify_text(verify(x, ca.cert(), "api.example.com"));
  EXPECT_EQ(verify(x, ca.cert(), "evil.example.com"), X509_V_ERR_HOSTNAME_MISMATCH);
  EXPECT_EQ(X509_check_ca(x), 0);
  EXPECT_EQ(X509_check_private_key(x, ca.leaf_key()), 1);
  EXPECT_EQ(X509_check_issued(ca.cert(), x), X509_V_OK);

  // A different CA does not vouch for it.
  Authority stranger = make_ca();
  EXPECT_EQ(verify(x, stranger.cert(), "api.example.com"), X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
}

TEST(TlsCa, IpLeavesCarryAnIpSan) {
  Authority ca = make_ca();
  for (const char* ip : {"127.0.0.1", "::1", "fd00:ec2::254"}) {
    auto leaf = ca.leaf(ip);
    ASSERT_TRUE(leaf) << ip << ": " << leaf.error().message;
    int v = verify(leaf->get(), ca.cert(), ip, /*ip=*/true);
    EXPECT_EQ(v, X509_V_OK) << ip << ": " << verify_text(v);
    EXPECT_EQ(verify(leaf->get(), ca.cert(), "10.0.0.1", true), X509_V_ERR_IP_ADDRESS_MISMATCH) << ip;
    // An IP SAN, not a DNS name that happens to look like one.
    EXPECT_EQ(san_types(leaf->get()), std::vector<int>{GEN_IPADD}) << ip;
  }
}

TEST(TlsCa, LeafLivesADayAtMostAndNeverPastTheCa) {
  Authority ca = make_ca();
  auto leaf = ca.leaf("example.org");
  ASSERT_TRUE(leaf) << leaf.error().message;
  EXPECT_LE(validity_seconds(leaf->get()), 25 * 3600);
  EXPECT_EQ(X509_cmp_current_time(X509_get0_notBefore(leaf->get())), -1);

  Authority short_ca = make_ca(3h);
  auto capped = short_ca.leaf("example.org");
  ASSERT_TRUE(capped) << capped.error().message;
  EXPECT_LE(ASN1_TIME_compare(X509_get0_notAfter(capped->get()), X509_get0_notAfter(short_ca.cert())), 0);
}

TEST(TlsCa, LeavesAreCachedPerHost) {
  Authority ca = make_ca();
  auto a = ca.leaf("a.example.com");
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(ca.minted(), 1u);
  auto again = ca.leaf("a.example.com");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->get(), a->get());
  EXPECT_EQ(ca.minted(), 1u);

  auto b = ca.leaf("b.example.com");
  ASSERT_TRUE(b);
  EXPECT_EQ(ca.minted(), 2u);
  EXPECT_NE(serial_hex(a->get()), serial_hex(b->get()));
  EXPECT_NE(serial_hex(a->get()), serial_hex(ca.cert()));
}

TEST(TlsCa, LeafNearExpiryIsMintedAgain) {
  // The CA ends within the hour, so every leaf does too: none is reused.
  Authority ca = make_ca(1h);
  auto first = ca.leaf("a.example.com");
  auto second = ca.leaf("a.example.com");
  ASSERT_TRUE(first && second);
  EXPECT_EQ(ca.minted(), 2u);
  EXPECT_NE(serial_hex(first->get()), serial_hex(second->get()));
}

TEST(TlsCa, ExpiredCaMintsNothing) {
  Authority ca = make_ca(0h);
  auto leaf = ca.leaf("a.example.com");
  ASSERT_FALSE(leaf);
  EXPECT_NE(leaf.error().message.find("expired"), std::string::npos) << leaf.error().message;
}

TEST(TlsCa, CacheDropsTheLeastRecentlyUsed) {
  Authority ca = make_ca();
  auto host = [](size_t i) { return "h" + std::to_string(i) + ".example.com"; };
  for (size_t i = 0; i < Authority::cache_size; ++i) ASSERT_TRUE(ca.leaf(host(i)));
  ASSERT_TRUE(ca.leaf(host(0)));  // now the most recent
  ASSERT_TRUE(ca.leaf(host(Authority::cache_size)));
  size_t minted = ca.minted();
  EXPECT_EQ(minted, Authority::cache_size + 1);
  ASSERT_TRUE(ca.leaf(host(0)));
  EXPECT_EQ(ca.minted(), minted);  // kept
  ASSERT_TRUE(ca.leaf(host(1)));
  EXPECT_EQ(ca.minted(), minted + 1);  // was evicted
}

TEST(TlsCa, OddHostsAreRefusedOrContained) {
  Authority ca = make_ca();
  for (std::string bad : {std::string(), std::string(254, 'a'), std::string("a b.com"), std::string("a/b.com"),
                          std::string("a.com,DNS:evil.com"), std::string("a.com\nb"), std::string("a:b.com"),
                          std::string("a.com\0b", 7), std::string("[::1]")}) {
    auto r = ca.leaf(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.error().message.find("TLS leaf"), std::string::npos) << r.error().message;
  }
  EXPECT_EQ(ca.minted(), 0u);

  // A name longer than a CN may be still gets a leaf: CN cut to 64, SAN whole.
  std::string longname = std::string(63, 'a') + "." + std::string(63, 'b') + ".example.com";
  auto leaf = ca.leaf(longname);
  ASSERT_TRUE(leaf) << leaf.error().message;
  EXPECT_EQ(verify(leaf->get(), ca.cert(), longname), X509_V_OK);
  char cn[256] = {};
  EXPECT_EQ(X509_NAME_get_text_by_NID(X509_get_subject_name(leaf->get()), NID_commonName, cn, sizeof cn), 64);

  auto wildcard = ca.leaf("*.example.com");
  ASSERT_TRUE(wildcard) << wildcard.error().message;
  EXPECT_EQ(verify(wildcard->get(), ca.cert(), "x.example.com"), X509_V_OK);
}

TEST(TlsCaLoad, UsersCaLoadsAndSigns) {
  if (!have_openssl_cli()) GTEST_SKIP() << "no openssl CLI";
  TempDir dir;
  ASSERT_TRUE(cli_ca(dir, "user"));
  auto ca = Authority::load(dir / "user.crt", dir / "user.key");
  ASSERT_TRUE(ca) << ca.error().message;
  auto leaf = ca->leaf("api.example.com");
  ASSERT_TRUE(leaf) << leaf.error().message;
  EXPECT_EQ(verify(leaf->get(), ca->cert(), "api.example.com"), X509_V_OK);
  EXPECT_NE(ca->leaf_key(), nullptr);
}

TEST(TlsCaLoad, CaWithoutSubjectKeyIdStillSigns) {
  if (!have_openssl_cli()) GTEST_SKIP() << "no openssl CLI";
  TempDir dir;
  ASSERT_TRUE(cli_ca(dir, "noski", "-addext subjectKeyIdentifier=none -addext authorityKeyIdentifier=none"));
  auto ca = Authority::load(dir / "noski.crt", dir / "noski.key");
  ASSERT_TRUE(ca) << ca.error().message;
  auto leaf = ca->leaf("api.example.com");
  ASSERT_TRUE(leaf) << leaf.error().message;
  // Strict verifiers refuse such a CA whatever its leaves say; the rest
  // accept a leaf naming it by issuer and serial instead.
  int v = verify(leaf->get(), ca->cert(), "api.example.com", false, /*strict=*/false);
  EXPECT_EQ(v, X509_V_OK) << verify_text(v);
}

TEST(TlsCaLoad, MismatchedKeyIsRefused) {
  if (!have_openssl_cli()) GTEST_SKIP() << "no openssl CLI";
  TempDir dir;
  ASSERT_TRUE(cli_ca(dir, "one"));
  ASSERT_TRUE(cli_ca(dir, "two"));
  auto ca = Authority::load(dir / "one.crt", dir / "two.key");
  ASSERT_FALSE(ca);
  EXPECT_NE(ca.error().message.find("does not match"), std::string::npos) << ca.error().message;
  EXPECT_NE(ca.error().message.find(dir / "two.key"), std::string::npos) << ca.error().message;
}

TEST(TlsCaLoad, NonCaCertificateIsRefused) {
  // A leaf with its own (matching) key: everything right but being a CA.
  Authority issuer = make_ca();
  auto leaf = issuer.leaf("not-a-ca.example.com");
  ASSERT_TRUE(leaf);
  TempDir dir;
  std::string crt = dir.write("leaf.crt", cert_pem(leaf->get()));
  std::string key = dir.write("leaf.key", key_pem(issuer.leaf_key()));
  auto ca = Authority::load(crt, key);
  ASSERT_FALSE(ca);
  EXPECT_NE(ca.error().message.find("not a CA"), std::string::npos) << ca.error().message;
  EXPECT_NE(ca.error().message.find(crt), std::string::npos) << ca.error().message;
}

TEST(TlsCaLoad, UnreadableFilesAreNamed) {
  if (!have_openssl_cli()) GTEST_SKIP() << "no openssl CLI";
  TempDir dir;
  ASSERT_TRUE(cli_ca(dir, "ok"));
  std::string garbage = dir.write("garbage.pem", "this is not PEM\n");
  std::string big = dir.write("big.pem", std::string((1 << 20) + 1, 'A'));
  std::string missing = dir / "missing.pem";
  std::filesystem::create_directory(dir / "subdir");
  struct Case {
    std::string cert, key, named;
  };
  for (const Case& c : {Case{missing, dir / "ok.key", missing}, Case{dir / "ok.crt", missing, missing},
                        Case{garbage, dir / "ok.key", garbage}, Case{dir / "ok.crt", garbage, garbage},
                        Case{big, dir / "ok.key", big}, Case{dir / "ok.crt", big, big},
                        Case{dir.write("empty.pem", ""), dir / "ok.key", dir / "empty.pem"},
                        Case{dir / "subdir", dir / "ok.key", dir / "subdir"}}) {
    auto ca = Authority::load(c.cert, c.key);
    ASSERT_FALSE(ca) << c.cert << " " << c.key;
    EXPECT_NE(ca.error().message.find(c.named), std::string::npos) << ca.error().message;
    EXPECT_EQ(ca.error().message.find('\n'), std::string::npos) << ca.error().message;
  }
  EXPECT_EQ(ERR_peek_error(), 0u);  // the error queue is left clean
}

TEST(TlsCaLoad, EncryptedKeyIsRefusedWithoutPrompting) {
  if (!have_openssl_cli()) GTEST_SKIP() << "no openssl CLI";
  TempDir dir;
  ASSERT_TRUE(cli_ca(dir, "enc"));
  std::string cmd = "openssl pkey -in " + dir / "enc.key" + " -aes256 -passout pass:secret -out " +
                    dir / "enc-locked.key" + " </dev/null >/dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  auto ca = Authority::load(dir / "enc.crt", dir / "enc-locked.key");
  ASSERT_FALSE(ca);
  EXPECT_NE(ca.error().message.find("enc-locked.key"), std::string::npos) << ca.error().message;
}

TEST(TlsBundle, CertificatesOnlyDropsEverythingElse) {
  Authority a = make_ca(), b = make_ca();
  std::string key_block = key_pem(a.leaf_key());
  ASSERT_NE(key_block.find("PRIVATE KEY"), std::string::npos);
  std::string text = "# a comment\n" + a.cert_pem() + "junk between\n" + key_block + b.cert_pem() +
                     "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n" + "trailing\n";
  std::string out = certificates_only(text);
  EXPECT_EQ(out, a.cert_pem() + b.cert_pem());
  EXPECT_EQ(out.find("PRIVATE"), std::string::npos);
  EXPECT_EQ(ERR_peek_error(), 0u);

  EXPECT_EQ(certificates_only(""), "");
  EXPECT_EQ(certificates_only(key_block), "");
  EXPECT_EQ(certificates_only("-----BEGIN CERTIFICATE-----\nunterminated"), "");
}

TEST(TlsBundle, HostRootsThenCaThenExtras) {
  Authority root = make_ca(), ours = make_ca(), extra = make_ca(), keyed = make_ca();
  TempDir dir;
  std::string host = dir.write("host.crt", root.cert_pem());
  std::string extra_file = dir.write("extra.crt", extra.cert_pem());
  std::string with_key = dir.write("with-key.pem", key_pem(keyed.leaf_key()) + keyed.cert_pem());
  std::string only_key = dir.write("only-key.pem", key_pem(keyed.leaf_key()));
  std::string missing = dir / "missing.crt";

  Bundle b = build_bundle(ours.cert_pem(), {extra_file, missing, with_key, only_key}, {dir / "absent.crt", host});
  EXPECT_EQ(b.pem, root.cert_pem() + ours.cert_pem() + extra.cert_pem() + keyed.cert_pem());
  EXPECT_EQ(b.pem.find("PRIVATE KEY"), std::string::npos);
  ASSERT_EQ(b.notes.size(), 2u);
  EXPECT_NE(b.notes[0].find(missing), std::string::npos) << b.notes[0];
  EXPECT_NE(b.notes[1].find(only_key), std::string::npos) << b.notes[1];
}

TEST(TlsBundle, NoHostBundleIsNoted) {
  Authority ours = make_ca();
  TempDir dir;
  Bundle b = build_bundle(ours.cert_pem(), {}, {dir / "absent.crt"});
  EXPECT_EQ(b.pem, ours.cert_pem());
  ASSERT_EQ(b.notes.size(), 1u);
  EXPECT_NE(b.notes[0].find("no host CA bundle"), std::string::npos) << b.notes[0];
}

TEST(TlsBundle, DefaultHostBundlesPreferTheEnvironment) {
  const char* old = std::getenv("SSL_CERT_FILE");
  std::string saved = old ? old : "";
  ::setenv("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt", 1);
  auto paths = default_host_bundles();
  if (old)
    ::setenv("SSL_CERT_FILE", saved.c_str(), 1);
  else
    ::unsetenv("SSL_CERT_FILE");
  ASSERT_FALSE(paths.empty());
  EXPECT_EQ(paths[0], "/etc/ssl/certs/ca-certificates.crt");
  EXPECT_EQ(std::set<std::string>(paths.begin(), paths.end()).size(), paths.size());  // no duplicates
  EXPECT_NE(std::find(paths.begin(), paths.end(), "/etc/ssl/cert.pem"), paths.end());
}

}  // namespace airlock::tls
