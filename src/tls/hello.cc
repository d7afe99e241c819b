#include "tls/hello.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/tls1.h>

#include <memory>

namespace airlock::tls {
namespace {

int on_hello(SSL* ssl, int* alert, void*) {
  auto* out = static_cast<Hello*>(SSL_get_app_data(ssl));
  out->complete = true;
  const unsigned char* ext = nullptr;
  size_t len = 0;
  if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &ext, &len) && len >= 2) {
    size_t list = static_cast<size_t>(ext[0]) << 8 | ext[1];
    size_t i = 2;
    while (i + 3 <= len && i < 2 + list) {
      unsigned type = ext[i];
      size_t n = static_cast<size_t>(ext[i + 1]) << 8 | ext[i + 2];
      if (i + 3 + n > len) break;
      if (type == TLSEXT_NAMETYPE_host_name) {
        out->sni.assign(reinterpret_cast<const char*>(ext + i + 3), n);
        break;
      }
      i += 3 + n;
    }
  }
  constexpr unsigned kEncryptedClientHello = 0xfe0d;
  const unsigned char* ech = nullptr;
  size_t ech_len = 0;
  out->ech = SSL_client_hello_get0_ext(ssl, kEncryptedClientHello, &ech, &ech_len) == 1;
  *alert = SSL_AD_HANDSHAKE_FAILURE;
  return SSL_CLIENT_HELLO_ERROR;  // seen enough: stop here
}

}  // namespace

size_t hello_record_size(const uint8_t* d, size_t n) {
  if (n < 1 || d[0] != 0x16) return 0;  // handshake record
  if (n >= 2 && d[1] != 0x03) return 0;
  if (n < 5) return 5;
  return 5 + (static_cast<size_t>(d[3]) << 8 | d[4]);
}

Hello parse_client_hello(const uint8_t* data, size_t n) {
  Hello out;
  // One context for every hello (making one costs more than the parse): the
  // proxy checks the hello of every TLS tunnel it does not terminate.
  static SSL_CTX* const ctx = [] {
    SSL_CTX* c = SSL_CTX_new(TLS_server_method());
    if (!c) return c;
    SSL_CTX_set_client_hello_cb(c, on_hello, nullptr);
    // OpenSSL 3.0 drops extensions it does not know while it reads a hello;
    // registering ECH's type keeps it visible to the callback.
    (void)SSL_CTX_add_custom_ext(
        c, 0xfe0d, SSL_EXT_CLIENT_HELLO, nullptr, nullptr, nullptr,
        [](SSL*, unsigned, unsigned, const unsigned char*, size_t, X509*, size_t, int*, void*) { return 1; }, nullptr);
    return c;
  }();
  if (!ctx) return out;
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(ctx), SSL_free);
  if (!ssl) return out;
  SSL_set_app_data(ssl.get(), &out);
  BIO* in = BIO_new_mem_buf(data, static_cast<int>(n));
  BIO* sink = BIO_new(BIO_s_mem());
  if (!in || !sink) {
    BIO_free(in);
    BIO_free(sink);
    return out;
  }
  SSL_set_bio(ssl.get(), in, sink);  // owned by ssl now
  SSL_set_accept_state(ssl.get());
  (void)SSL_do_handshake(ssl.get());
  ERR_clear_error();
  return out;
}

}  // namespace airlock::tls
