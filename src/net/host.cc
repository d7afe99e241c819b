#include "net/host.h"

#include <arpa/inet.h>
#include <idn2.h>
#include <netinet/in.h>

#include <cstdlib>
#include <cstring>

namespace airlock::net {
namespace {

bool is_hex_digit(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// A label a browser would read as a number: decimal, or 0x-hex.
bool numeric_label(std::string_view l) {
  if (l.empty()) return false;
  if (l.size() >= 2 && l[0] == '0' && (l[1] == 'x' || l[1] == 'X')) {
    for (char c : l.substr(2))
      if (!is_hex_digit(c)) return false;
    return true;
  }
  for (char c : l)
    if (c < '0' || c > '9') return false;
  return true;
}

Address v4(uint32_t host_order) {
  Address a;
  a.family = AF_INET;
  uint32_t n = htonl(host_order);
  std::memcpy(a.b.data(), &n, 4);
  return a;
}

uint32_t v4_value(const Address& a) {
  uint32_t n;
  std::memcpy(&n, a.b.data(), 4);
  return ntohl(n);
}

bool in4(const Address& a, uint32_t net, int prefix) {
  uint32_t mask = prefix == 0 ? 0 : ~0U << (32 - prefix);
  return (v4_value(a) & mask) == (net & mask);
}

bool in6(const Address& a, std::initializer_list<uint8_t> prefix_bytes, int prefix_bits) {
  std::array<uint8_t, 16> p{};
  size_t i = 0;
  for (uint8_t x : prefix_bytes) p[i++] = x;
  for (int bit = 0; bit < prefix_bits; ++bit) {
    uint8_t m = static_cast<uint8_t>(0x80 >> (bit % 8));
    if ((a.b[bit / 8] & m) != (p[bit / 8] & m)) return false;
  }
  return true;
}

Address embedded_v4(const Address& a, size_t offset) {
  Address r;
  r.family = AF_INET;
  std::memcpy(r.b.data(), a.b.data() + offset, 4);
  return r;
}

const char* special_v4(const Address& a) {
  uint32_t x = v4_value(a);
  // 169.254.169.254 (AWS, GCP, Azure, ...), 169.254.170.2 (ECS), 100.100.100.200
  // (Alibaba), 168.63.129.16 (Azure's wire server: a public address otherwise).
  if (x == 0xA9FEA9FE || x == 0xA9FEAA02 || x == 0x646464C8 || x == 0xA83F8110) return "cloud metadata";
  struct Range { uint32_t net; int prefix; const char* why; };
  static const Range ranges[] = {
      {0x00000000, 8, "unspecified"},       {0x0A000000, 8, "private"},
      {0x64400000, 10, "carrier-grade NAT"}, {0x7F000000, 8, "loopback"},
      {0xA9FE0000, 16, "link-local"},        {0xAC100000, 12, "private"},
      {0xC0000000, 24, "reserved"},          {0xC0000200, 24, "documentation"},
      {0xC0A80000, 16, "private"},           {0xC6120000, 15, "benchmarking"},
      {0xC6336400, 24, "documentation"},     {0xCB007100, 24, "documentation"},
      {0xE0000000, 4, "multicast"},          {0xF0000000, 4, "reserved"},
  };
  for (const auto& r : ranges)
    if (in4(a, r.net, r.prefix)) return r.why;
  return nullptr;
}

}  // namespace

std::string Address::str() const {
  char buf[INET6_ADDRSTRLEN] = {};
  ::inet_ntop(family, b.data(), buf, sizeof buf);
  return buf;
}

std::optional<Address> parse_ip(std::string_view s) {
  if (s.size() >= 2 && s.front() == '[' && s.back() == ']') s = s.substr(1, s.size() - 2);
  if (s.empty() || s.size() > 64) return std::nullopt;
  std::string text(s);
  if (text.find(':') != std::string::npos) {
    Address a;
    a.family = AF_INET6;
    if (::inet_pton(AF_INET6, text.c_str(), a.b.data()) != 1) return std::nullopt;
    if (in6(a, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, 96)) return embedded_v4(a, 12);
    return a;
  }
  // IPv4 in any of inet_aton's spellings; only digits, dots and hex allowed
  // (inet_aton itself stops quietly at white space).
  for (char c : text)
    if (!is_hex_digit(c) && c != '.' && c != 'x' && c != 'X') return std::nullopt;
  struct in_addr in {};
  if (::inet_aton(text.c_str(), &in) != 1) return std::nullopt;
  return v4(ntohl(in.s_addr));
}

bool Cidr::contains(const Address& a) const {
  if (a.family != base.family) return false;
  for (int bit = 0; bit < prefix; ++bit) {
    uint8_t m = static_cast<uint8_t>(0x80 >> (bit % 8));
    if ((a.b[bit / 8] & m) != (base.b[bit / 8] & m)) return false;
  }
  return true;
}

std::string Cidr::str() const { return fmt::format("{}/{}", base.str(), prefix); }

Result<Cidr> parse_cidr(std::string_view s) {
  auto slash = s.find('/');
  std::string_view addr = s.substr(0, slash);
  // Only plain spellings here: a settings file is not a place for "0x7f.1".
  std::string text(addr);
  Cidr c;
  c.base.family = text.find(':') != std::string::npos ? AF_INET6 : AF_INET;
  if (::inet_pton(c.base.family, text.c_str(), c.base.b.data()) != 1)
    return err("'{}' is not an IP address or CIDR block (e.g. 10.0.0.0/8, fd00::/8)", s);
  int max = c.base.family == AF_INET ? 32 : 128;
  c.prefix = max;
  if (slash != std::string_view::npos) {
    std::string p(s.substr(slash + 1));
    char* end = nullptr;
    long v = p.empty() ? -1 : std::strtol(p.c_str(), &end, 10);
    if (p.empty() || *end || v < 0 || v > max) return err("'{}': prefix length must be 0-{}", s, max);
    c.prefix = static_cast<int>(v);
  }
  if (c.base.family == AF_INET6 && in6(c.base, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, 96) && c.prefix >= 96) {
    c.base = embedded_v4(c.base, 12);
    c.prefix -= 96;
  }
  return c;
}

Result<Host> normalize_host(std::string_view raw) {
  if (raw.empty()) return err("empty host name");
  if (raw.size() > 300) return err("host name is too long");
  if (raw.front() == '[') {
    auto ip = parse_ip(raw);
    if (!ip) return err("'{}' is not an IPv6 address", raw);
    return Host{ip->str(), ip};
  }
  if (raw.find(':') != std::string_view::npos) {
    auto ip = parse_ip(raw);
    if (!ip) return err("'{}' is not a host name", raw);
    return Host{ip->str(), ip};
  }
  std::string s(raw);
  bool ascii = true;
  for (char& c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u >= 0x80) ascii = false;
    else if (u <= 0x20 || u == 0x7f) return err("host name has a space or control character");
    else if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  if (s.back() == '.') s.pop_back();
  if (s.empty() || s.back() == '.') return err("'{}' is not a host name", raw);
  if (!ascii) {
    // IDNA2008 with UTS #46 mapping, as browsers do: a look-alike such as
    // "exаmple.com" (Cyrillic a) becomes "xn--exmple-4nf.com" and matches
    // no rule written for example.com.
    char* out = nullptr;
    int rc = idn2_to_ascii_8z(s.c_str(), &out, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
    if (rc != IDN2_OK) return err("'{}' is not a valid international domain name ({})", raw, idn2_strerror(rc));
    s = out;
    idn2_free(out);
  }
  // The last label decides whether this is meant as an IPv4 address (as
  // the URL standard says): then it must be one, in whatever spelling.
  auto last_dot = s.rfind('.');
  std::string_view last = last_dot == std::string::npos ? std::string_view(s) : std::string_view(s).substr(last_dot + 1);
  if (numeric_label(last)) {
    auto ip = parse_ip(s);
    if (!ip) return err("'{}' looks like an IPv4 address but is not a valid one", raw);
    return Host{ip->str(), ip};
  }
  if (s.size() > 253) return err("host name is longer than 253 characters");
  size_t start = 0;
  while (start <= s.size()) {
    size_t dot = s.find('.', start);
    if (dot == std::string::npos) dot = s.size();
    size_t len = dot - start;
    if (len == 0 || len > 63) return err("'{}' has an empty or over-long label", raw);
    for (size_t i = start; i < dot; ++i) {
      char c = s[i];
      bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
      if (!ok) return err("'{}' has a character that is not allowed in a host name ('{}')", raw, c);
    }
    if (s[start] == '-' || s[dot - 1] == '-') return err("'{}' has a label that starts or ends with '-'", raw);
    start = dot + 1;
  }
  return Host{s, std::nullopt};
}

Result<HostPort> split_host_port(std::string_view a, bool need_port, uint16_t default_port) {
  HostPort hp;
  std::string_view port_text;
  if (!a.empty() && a.front() == '[') {
    auto close = a.find(']');
    if (close == std::string_view::npos) return err("'{}': unclosed '['", a);
    hp.host = std::string(a.substr(1, close - 1));
    auto rest = a.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return err("'{}': junk after ']'", a);
      port_text = rest.substr(1);
      if (port_text.empty()) return err("'{}': empty port", a);
    }
  } else {
    auto colon = a.rfind(':');
    if (colon != std::string_view::npos) {
      if (a.find(':') != colon) return err("'{}': an IPv6 address needs brackets", a);
      hp.host = std::string(a.substr(0, colon));
      port_text = a.substr(colon + 1);
      if (port_text.empty()) return err("'{}': empty port", a);
    } else {
      hp.host = std::string(a);
    }
  }
  if (hp.host.empty()) return err("'{}': no host", a);
  if (port_text.empty()) {
    if (need_port) return err("'{}': a port is required", a);
    hp.port = default_port;
    return hp;
  }
  if (port_text.size() > 5) return err("'{}': port out of range", a);
  unsigned long v = 0;
  for (char c : port_text) {
    if (c < '0' || c > '9') return err("'{}': port is not a number", a);
    v = v * 10 + static_cast<unsigned long>(c - '0');
  }
  if (v == 0 || v > 65535) return err("'{}': port out of range (1-65535)", a);
  hp.port = static_cast<uint16_t>(v);
  return hp;
}

const char* special_range(const Address& a) {
  if (a.family == AF_INET) return special_v4(a);
  if (a.family != AF_INET6) return "unspecified";
  if (in6(a, {0xfd, 0x00, 0x0e, 0xc2}, 32) && a.b[15] == 0x54 && a.b[14] == 0x02) return "cloud metadata";
  if (in6(a, {}, 128)) return "unspecified";
  if (in6(a, {}, 127) && a.b[15] == 1) return "loopback";
  if (in6(a, {}, 96)) return "reserved";                                   // IPv4-compatible
  if (in6(a, {0x00, 0x64, 0xff, 0x9b}, 96)) return special_v4(embedded_v4(a, 12));  // NAT64
  if (in6(a, {0x00, 0x64, 0xff, 0x9b, 0x00, 0x01}, 48)) return "reserved";  // local NAT64
  if (in6(a, {0x01, 0x00}, 64)) return "reserved";                        // discard
  if (in6(a, {0x20, 0x01, 0x0d, 0xb8}, 32)) return "documentation";
  if (in6(a, {0x20, 0x01, 0x00, 0x00}, 32)) return "reserved";            // Teredo
  if (in6(a, {0x20, 0x02}, 16)) {                                         // 6to4
    return special_v4(embedded_v4(a, 2));
  }
  if (in6(a, {0xfc}, 7)) return "private";
  if (in6(a, {0xfe, 0x80}, 10)) return "link-local";
  if (in6(a, {0xfe, 0xc0}, 10)) return "reserved";                        // site-local
  if (in6(a, {0xff}, 8)) return "multicast";
  return nullptr;
}

Address from_sockaddr(const sockaddr_storage& ss, uint16_t* port) {
  Address a;
  if (ss.ss_family == AF_INET) {
    const auto& s4 = reinterpret_cast<const sockaddr_in&>(ss);
    a.family = AF_INET;
    std::memcpy(a.b.data(), &s4.sin_addr, 4);
    if (port) *port = ntohs(s4.sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const auto& s6 = reinterpret_cast<const sockaddr_in6&>(ss);
    a.family = AF_INET6;
    std::memcpy(a.b.data(), &s6.sin6_addr, 16);
    if (port) *port = ntohs(s6.sin6_port);
    if (in6(a, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, 96)) a = embedded_v4(a, 12);
  }
  return a;
}

socklen_t to_sockaddr(const Address& a, uint16_t port, sockaddr_storage& out) {
  std::memset(&out, 0, sizeof out);
  if (a.family == AF_INET) {
    auto& s4 = reinterpret_cast<sockaddr_in&>(out);
    s4.sin_family = AF_INET;
    s4.sin_port = htons(port);
    std::memcpy(&s4.sin_addr, a.b.data(), 4);
    return sizeof s4;
  }
  auto& s6 = reinterpret_cast<sockaddr_in6&>(out);
  s6.sin6_family = AF_INET6;
  s6.sin6_port = htons(port);
  std::memcpy(&s6.sin6_addr, a.b.data(), 16);
  return sizeof s6;
}

}  // namespace airlock::net
