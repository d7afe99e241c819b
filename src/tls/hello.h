// The server name a TLS ClientHello asks for, read by OpenSSL's own parser
// (a throwaway server handshake that stops at the hello): the proxy checks
// it against the CONNECT target on tunnels it does not terminate.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace airlock::tls {

struct Hello {
  bool complete = false;  // a whole ClientHello was parsed
  std::string sni;        // empty: the hello names no server
  bool ech = false;       // it carries an encrypted_client_hello extension
};

// How many bytes the first TLS record needs (header included), or 0 if the
// bytes are not the start of a TLS handshake record.
size_t hello_record_size(const uint8_t* data, size_t n);

// Parses a ClientHello from the first bytes a client sent.
Hello parse_client_hello(const uint8_t* data, size_t n);

}  // namespace airlock::tls
