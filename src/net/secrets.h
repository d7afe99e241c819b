// Credentials that never enter the sandbox (the `credentials` settings).
//
// The settings name environment variables and files. In "deny" mode the
// sandbox does not get them at all; in "mask" mode it gets a placeholder of
// the same shape, and the real value stays here, on the host side, in
// memory kept out of core dumps and wiped when done. The proxy swaps a
// placeholder for its real value only on inspected TLS connections to the
// hosts it is bound to; a placeholder on its way anywhere else is an
// exfiltration attempt and is refused.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "net/rules.h"
#include "util/result.h"

namespace airlock::net {

struct CredentialSpec {
  enum class Kind { Env, File } kind = Kind::Env;
  std::string name;   // the variable's name, or the file's path as written
  bool mask = false;  // "mask"; else "deny"
  std::optional<std::vector<DomainPattern>> inject_hosts;  // none: network.allowedDomains
  bool inject_query = false;  // injectInto has "query" (airlock)
  std::string where;
};

struct CredentialPolicy {
  std::vector<CredentialSpec> items;
  bool allow_plaintext = false;               // allowPlaintextInject
  std::vector<DomainPattern> verify_hosts;    // verifyHosts (airlock); the masked ones' hosts are added
  std::vector<std::string> verify_headers;    // verifyHeaders (airlock), lower-case, beside the built-in ones
  bool end_on_exfiltration = false;           // onExfiltration: "end" (airlock)
  bool any_masked() const;
};

// From each layer's `credentials` object (lowest first): lists add up,
// scalars override. `network` is the built network policy (for the
// checks that tie the two together).
Result<CredentialPolicy> build_credential_policy(const std::vector<std::pair<std::string, const nlohmann::json*>>& layers,
                                                 const NetworkPolicy& network);

// A placeholder of the same shape as `real`: a known prefix kept (sk-ant-,
// ghp_, github_pat_, xoxb-, AKIA, ...), the separators '-', '_' and '.'
// kept in place, every other character a random letter or digit, same
// length; a JWT keeps its header and claims and gets a random signature.
// Never fewer than 80 random bits: a short value gets a longer placeholder.
std::string mint_placeholder(std::string_view real);

// Bytes kept out of core dumps (MADV_DONTDUMP), locked in memory where the
// limits allow, and wiped before they are freed.
class SecretBytes {
 public:
  explicit SecretBytes(std::string_view v);
  ~SecretBytes();
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;
  std::string_view view() const { return {data_, size_}; }

 private:
  char* data_ = nullptr;
  size_t size_ = 0, mapped_ = 0;
};

// Wipes a string's bytes in place (a copy of a secret that is done with).
void wipe(std::string& s);

struct Secret {
  std::string label;        // "GITHUB_TOKEN" or "file ~/.config/x/token": for messages, never the value
  std::string placeholder;  // what the sandbox sees
  std::unique_ptr<SecretBytes> real;
  std::vector<DomainPattern> hosts;  // where it is swapped in
  bool inject_query = false;
};

// The run's secrets, shared with the proxy (read-only once built).
struct SecretTable {
  std::vector<Secret> secrets;
  bool allow_plaintext = false;
  std::vector<DomainPattern> verify_hosts;  // explicit ones and every masked secret's hosts
  std::vector<std::string> verify_headers;  // lower-case names of credential-carrying headers
  bool end_on_exfiltration = false;

  bool bound_to(const Secret& s, const Host& h, uint16_t port) const;
  // May its real value be swapped in here? Bound to the host, and on
  // inspected TLS (`tls`) unless allowPlaintextInject.
  bool usable_at(const Secret& s, const Host& h, uint16_t port, bool tls) const {
    return (tls || allow_plaintext) && bound_to(s, h, port);
  }
  bool verified(const Host& h, uint16_t port) const;
  // Placeholders that occur in `text`.
  std::vector<const Secret*> find(std::string_view text) const;
  // A placeholder hidden in a host name (case folded, dots and dashes
  // ignored, any 16 characters of its random part): the name of a DNS
  // lookup is a channel out too.
  const Secret* find_in_name(std::string_view host) const;
  size_t longest_placeholder() const;
};

// Is this header one that carries a credential (for verifyHosts)?
bool credential_header(const SecretTable& t, std::string_view lower_name);

}  // namespace airlock::net
