// Request rules (network.requestRules): which methods and paths may be asked
// of a host. Paths are judged after normalisation, and a path that two
// servers could read two ways is refused rather than guessed at.
// Plain data in, a verdict out; the proxy acts on it.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "net/rules.h"
#include "util/result.h"

namespace airlock::net {

// The path of an origin-form request target ("/a/./b/../c?q" -> "/a/c"),
// percent-decoded, dot segments resolved. An error (the reason) for an
// ambiguous path: an encoded '/', '\' or '%', a backslash, control bytes,
// empty segments ("//"), a ".." above the root, "..;" tricks, bad escapes.
Result<std::string> normalize_path(std::string_view target);

// Every valid %XX escape decoded; anything else (a bad escape included)
// kept as it is. For looking at what a server will read, not for judging.
std::string percent_decode(std::string_view s);

// '*' matches within one segment; a '*' that ends the pattern matches the
// rest of the path, '/' included ("/repos/acme/*" covers /repos/acme/x/y).
bool path_matches(std::string_view pattern, std::string_view path);

struct RequestVerdict {
  bool allowed = true;
  int status = 0;      // 403 refused by a rule, 400 ambiguous path
  std::string rule;    // which rule decided, for the client and the audit
  std::optional<uint64_t> max_body;  // the smallest maxBodyBytes that applies
  bool has_rules = false;            // some rule names this host
};

// Deny lines of every rule for the host win; then, if any allow lines
// exist for the host, one must match.
RequestVerdict judge_request(const NetworkPolicy& p, const Host& host, uint16_t port, std::string_view method,
                             std::string_view target);

// Does any request rule name this host (and port)? Such a host cannot be
// reached through an opaque tunnel: its rules could not be enforced.
bool has_request_rules(const NetworkPolicy& p, const Host& host, uint16_t port);

}  // namespace airlock::net
