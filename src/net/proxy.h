// airlock's egress proxy: HTTP (CONNECT and plain requests) and SOCKS5 on
// listening sockets that live in the sandbox's network namespace, served
// by one event loop in the airlock process on the host side. It is the
// only door out of the sandbox: every connection is judged by net/rules.h,
// resolved here (never inside), checked again by address, and dialled to
// exactly the address that was checked.
//
// Boost.Asio stays inside proxy.cc (it is slow to compile).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "net/rules.h"
#include "net/secrets.h"
#include "tls/ca.h"
#include "util/fd.h"
#include "util/result.h"

namespace airlock::net {

// What the proxy asks about a host no rule covers, and the answers.
struct Question {
  uint64_t id = 0;
  std::string host;  // canonical
  uint16_t port = 0;
  std::string client;  // "http", "connect", "socks"
};
enum class Answer { Once, Run, Always, Deny };

// Someone who can answer questions (a person at the terminal, or an agent
// framework over --control-fd). `reply` may be called from any thread,
// once per question.
class Asker {
 public:
  virtual ~Asker() = default;
  virtual void ask(const Question& q, std::function<void(Answer)> reply) = 0;
};

struct ProxyConfig {
  NetworkPolicy policy;
  UniqueFd http_listener, socks_listener;  // bound and listening, in the sandbox's namespace
  UniqueFd audit;                          // O_APPEND file, or empty
  std::string sandbox_id;
  std::shared_ptr<Asker> asker;            // nullptr: unknown hosts are refused
  int ask_timeout_seconds = 60;
  // "always" answers: called (on the proxy's thread) with the pattern to
  // add to the user's settings; returns an error message or "".
  std::function<std::string(const std::string&)> remember;
  // TLS inspection (policy.tls.enabled): the run's CA. Used on the proxy's
  // thread only.
  std::shared_ptr<tls::Authority> ca;
  // Masked credentials: placeholders and real values.
  std::shared_ptr<const SecretTable> secrets;
  // Called (on the proxy's thread) on an exfiltration attempt when
  // credentials.onExfiltration is "end": stops the sandbox.
  std::function<void(const std::string&)> end_sandbox;
};

class Proxy {
 public:
  // Starts the event loop on a thread of its own.
  static Result<std::unique_ptr<Proxy>> start(ProxyConfig cfg);
  ~Proxy();  // stops and joins
  // Replaces the domain rules (a live update from --control-fd).
  void update_rules(NetworkPolicy rules);
  // Stops the loop; afterwards, one line per refused host for stderr.
  std::vector<std::string> stop_and_summarize();

  struct Impl;
  explicit Proxy(std::unique_ptr<Impl> impl);  // use start()

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace airlock::net
