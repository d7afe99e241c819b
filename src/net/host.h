// Host names and addresses as the proxy judges them. Everything a client
// sends is untrusted text: it is normalised here, once, before any rule
// sees it, so "EXAMPLE.com.", "0x7f.1" and an IDN look-alike all reach the
// rules in one canonical spelling.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <sys/socket.h>

#include "util/result.h"

namespace airlock::net {

struct Address {
  int family = 0;                  // AF_INET or AF_INET6
  std::array<uint8_t, 16> b{};     // IPv4 in the first 4 bytes
  bool operator==(const Address&) const = default;
  std::string str() const;         // 1.2.3.4 or 2001:db8::1 (no brackets)
  size_t size() const { return family == AF_INET ? 4 : 16; }
};

// An IP literal in any spelling the C library or a browser would accept:
// dotted quad, shortened ("127.1"), whole-number ("2130706433"), octal
// ("0177.0.0.1"), hex ("0x7f.0.0.1"), IPv6 with or without brackets.
// IPv4-mapped IPv6 (::ffff:a.b.c.d) comes back as the IPv4 address.
// nullopt: not an IP literal. A zone id ("fe80::1%eth0") is not accepted.
std::optional<Address> parse_ip(std::string_view s);

struct Cidr {
  Address base;
  int prefix = 0;
  bool contains(const Address& a) const;
  std::string str() const;
};
// "10.0.0.0/8", "fd00::/8", or a single address (a /32 or /128).
Result<Cidr> parse_cidr(std::string_view s);

struct Host {
  std::string name;            // canonical: lower case, no trailing dot, punycode; or the IP's text
  std::optional<Address> ip;   // set when the host is an IP literal
};
// Normalises a host as a client wrote it (no port, no brackets needed).
// Refuses anything that is neither an IP literal nor a valid DNS name:
// userinfo, spaces, percent signs, empty labels, a numeric last label that
// is not a valid IPv4 address ("1.2.3.4.5"), over-long names.
Result<Host> normalize_host(std::string_view raw);

// Splits "host:port" / "[v6]:port" (authority form). Port is required when
// `need_port`, else defaults to `default_port`.
struct HostPort {
  std::string host;  // as written, brackets removed
  uint16_t port = 0;
};
Result<HostPort> split_host_port(std::string_view authority, bool need_port, uint16_t default_port);

// Why an address is not on the public internet, or nullptr if it is:
// "loopback", "private", "link-local", "carrier-grade NAT", "multicast",
// "cloud metadata", "unspecified", "reserved" ... IPv6 forms that embed an
// IPv4 address (6to4, NAT64) are judged by the embedded address.
const char* special_range(const Address& a);

// Conversions for connect()/getaddrinfo results.
Address from_sockaddr(const sockaddr_storage& ss, uint16_t* port = nullptr);
socklen_t to_sockaddr(const Address& a, uint16_t port, sockaddr_storage& out);

}  // namespace airlock::net
