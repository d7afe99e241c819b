// The egress policy as plain data, and the two questions the proxy asks of
// it: may this host and port be asked for at all (judge_name), and may the
// address it resolved to be reached (judge_address). Nothing here touches
// the network; the proxy acts on the answers.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "net/host.h"
#include "util/result.h"

namespace airlock::net {

// An entry of allowedDomains / deniedDomains, validated as srt does.
struct DomainPattern {
  std::string text;                // as written, for messages ("allowedDomains[2] '*.github.com'")
  std::string where;               // "FILE: network.allowedDomains[2]"
  std::string host;                // canonical; for a wildcard, the suffix without "*."
  bool wildcard = false;           // "*.example.com": subdomains only
  bool any = false;                // "*" (deniedDomains only)
  std::optional<uint16_t> port;    // none: 80 and 443 for allow rules, every port for deny rules
  std::optional<Address> ip;       // the pattern is an IP literal
};

struct ParentProxy {
  std::string http, https;          // "host:port" (https falls back to http)
  std::vector<std::string> no_proxy;  // Go-style suffixes, CIDRs or IPs; "*" = all
};

enum class AskMode { None, Tty };

// TLS inspection (network.tlsTerminate): the proxy ends the sandbox's TLS
// with a certificate of its own CA and opens a verified TLS connection of
// its own upstream, so it can read, check and rewrite each request.
struct TlsPolicy {
  bool enabled = false;
  std::string ca_cert, ca_key;             // absolute, both or neither (neither: a fresh CA per run)
  std::vector<DomainPattern> exclude;      // excludeDomains: tunnelled opaquely, never terminated
  std::vector<std::string> extra_ca;       // extraCaCertPaths: added to the sandbox's bundle
  std::vector<std::string> upstream_ca;    // upstreamCaCertPaths (airlock): trusted for upstream servers
  size_t max_tunnels = 1024;               // inspected connections at once
  int handshake_timeout_ms = 10000;
};

// network.requestRules (airlock): what may be asked of a host, by method and
// path. One line is "METHODS PATH", e.g. "GET,POST /repos/acme/*".
struct RequestLine {
  std::vector<std::string> methods;  // empty: any method
  std::string path;                  // pattern: '*' within a segment; a final '*' matches the rest
  std::string text, where;
};
struct RequestRules {
  DomainPattern host;  // any port unless it names one
  std::vector<RequestLine> allow, deny;
  std::optional<uint64_t> max_body;  // maxBodyBytes
  std::string where;
};

struct NetworkPolicy {
  bool enabled = false;  // the proxy runs (allowedDomains given, or asking is on)
  std::vector<DomainPattern> allowed, denied;
  std::map<std::string, std::string> denied_reasons;  // deniedDomains entry -> reason
  std::vector<Cidr> denied_addresses;                 // deniedResolvedAddresses
  std::vector<Cidr> allow_private;                    // allowPrivateAddresses (airlock)
  std::map<std::string, std::vector<Address>> hosts;  // network.hosts (airlock), canonical name -> addresses
  bool strict = false;                                // strictAllowlist: never ask
  AskMode ask = AskMode::None;
  std::optional<ParentProxy> parent;
  uint16_t http_port = 3128, socks_port = 1080;       // inside the sandbox
  TlsPolicy tls;
  bool require_host_match = true;                     // CONNECT target, SNI and Host agree (else 421)
  bool refuse_opaque = false;                         // refuseOpaqueTunnels
  std::vector<std::string> strip_response_headers;    // lower-case names
  std::vector<RequestRules> request_rules;
};

// Does `d` cover this host and port? `any_port`: a pattern without a port
// covers every port (deny rules, request rules), else only 80 and 443.
bool pattern_matches(const DomainPattern& d, const Host& h, uint16_t port, bool any_port);

// Builds the network policy from each settings layer's `network` object
// (lowest first): lists add up, scalars override. `sources` names the file
// of each layer for error messages.
Result<NetworkPolicy> build_network_policy(const std::vector<std::pair<std::string, const nlohmann::json*>>& layers);

// Parses one pattern; `deny` allows the bare "*".
Result<DomainPattern> parse_pattern(const std::string& text, bool deny, const std::string& where);
// A JSON list of allow-style patterns (excludeDomains, injectHosts,
// verifyHosts); `where` names the key for messages.
Result<std::vector<DomainPattern>> parse_patterns(const nlohmann::json& v, const std::string& where);

struct Verdict {
  enum Kind { Allow, Deny, Unknown } kind = Deny;
  std::string rule;  // which rule decided, for the client, the audit and stderr
  const DomainPattern* matched = nullptr;
};

// The name check, before any resolution. Deny wins; then allow; then
// Unknown (the caller asks, or denies). Built-in refusals (cloud metadata
// names) come before the allow list unless an allow rule names the host
// exactly.
Verdict judge_name(const NetworkPolicy& p, const Host& host, uint16_t port);

// The address check, after resolution: nullopt if `a` may be reached for
// this request, else the reason. `local` are this machine's own addresses.
std::optional<std::string> judge_address(const NetworkPolicy& p, const Host& host, uint16_t port, const Address& a,
                                         const std::vector<Address>& local);

// Does `host` bypass the parent proxy (its noProxy list)?
bool bypasses_parent(const ParentProxy& pp, const Host& host);

// The proxy variables set inside the sandbox. `connect_helper` is the
// command that ssh's ProxyCommand should run (airlock's own), or empty.
std::vector<std::string> proxy_environment(const NetworkPolicy& p, const std::string& connect_helper);

}  // namespace airlock::net
