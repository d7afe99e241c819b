#include "net/rules.h"

#include <algorithm>
#include <cstdlib>

namespace airlock::net {
namespace {

using nlohmann::json;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() > suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0 &&
         s[s.size() - suffix.size() - 1] == '.';
}

// Names that reach a cloud provider's metadata service (credentials of the
// machine itself): refused unless an allow rule names them exactly.
bool metadata_name(const std::string& n) {
  static const char* names[] = {"metadata.google.internal", "metadata.goog", "metadata", "instance-data",
                                "instance-data.ec2.internal", "metadata.azure.internal", "metadata.tencentyun.com"};
  for (const char* m : names)
    if (n == m) return true;
  return false;
}

bool matches(const DomainPattern& d, const Host& h, uint16_t port, bool deny) {
  return pattern_matches(d, h, port, deny);
}
}  // namespace

bool pattern_matches(const DomainPattern& d, const Host& h, uint16_t port, bool deny) {
  if (d.port ? *d.port != port : !(deny || port == 80 || port == 443)) return false;
  if (d.any) return true;
  if (d.ip) return h.ip && *h.ip == *d.ip;
  if (h.ip) return false;  // a name pattern never matches an address
  if (d.wildcard) return ends_with(h.name, d.host);
  return h.name == d.host;
}

namespace {

Result<std::string> parse_proxy_url(const std::string& url, const std::string& where) {
  std::string rest = url;
  auto scheme_end = rest.find("://");
  if (scheme_end != std::string::npos) {
    std::string scheme = rest.substr(0, scheme_end);
    std::transform(scheme.begin(), scheme.end(), scheme.begin(), ::tolower);
    if (scheme != "http")
      return err("{}: '{}': only http:// parent proxies are supported (the tunnel to it is not encrypted either way)",
                 where, url);
    rest = rest.substr(scheme_end + 3);
  }
  if (auto slash = rest.find('/'); slash != std::string::npos) {
    if (rest.find_first_not_of('/', slash) != std::string::npos) return err("{}: '{}': a proxy URL has no path", where, url);
    rest = rest.substr(0, slash);
  }
  if (rest.find('@') != std::string::npos)
    return err("{}: '{}': credentials in a parent proxy URL are not supported", where, url);
  auto hp = split_host_port(rest, false, 80);
  if (!hp) return err("{}: {}", where, hp.error().message);
  auto h = normalize_host(hp->host);
  if (!h) return err("{}: {}", where, h.error().message);
  return h->ip && h->ip->family == AF_INET6 ? fmt::format("[{}]:{}", h->name, hp->port)
                                            : fmt::format("{}:{}", h->name, hp->port);
}

std::vector<std::string> split_no_proxy(const std::string& s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i <= s.size()) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    std::string e = s.substr(i, j - i);
    e.erase(0, e.find_first_not_of(" \t"));
    e.erase(e.find_last_not_of(" \t") + 1);
    std::transform(e.begin(), e.end(), e.begin(), ::tolower);
    if (!e.empty()) out.push_back(e);
    i = j + 1;
  }
  return out;
}

class Builder {
 public:
  Status layer(const std::string& src, const json& n) {
    if (!n.is_object()) return err("{}: network: expected an object", src);
    for (auto it = n.begin(); it != n.end(); ++it) {
      const std::string key = it.key();
      const json& v = it.value();
      std::string where = fmt::format("{}: network.{}", src, key);
      if (key == "allowedDomains" || key == "deniedDomains") {
        bool deny = key == "deniedDomains";
        if (!deny) p_.enabled = true;
        for (size_t i = 0; i < v.size(); ++i) {
          auto d = parse_pattern(v[i].get<std::string>(), deny, fmt::format("{}[{}]", where, i));
          if (!d) return d.error();
          (deny ? p_.denied : p_.allowed).push_back(std::move(*d));
        }
      } else if (key == "deniedDomainReasons") {
        if (!v.is_object()) return err("{}: expected an object of entry -> reason", where);
        for (auto r = v.begin(); r != v.end(); ++r) {
          if (!r.value().is_string()) return err("{}.{}: expected a string", where, r.key());
          p_.denied_reasons[r.key()] = r.value().get<std::string>();
        }
      } else if (key == "deniedResolvedAddresses" || key == "allowPrivateAddresses") {
        for (size_t i = 0; i < v.size(); ++i) {
          auto c = parse_cidr(v[i].get<std::string>());
          if (!c) return err("{}[{}]: {}", where, i, c.error().message);
          (key == "allowPrivateAddresses" ? p_.allow_private : p_.denied_addresses).push_back(*c);
        }
      } else if (key == "strictAllowlist") {
        p_.strict = v.get<bool>();
      } else if (key == "ask") {
        std::string a = v.get<std::string>();
        if (a == "tty") p_.ask = AskMode::Tty, p_.enabled = true;
        else if (a == "off") p_.ask = AskMode::None;
        else return err("{}: '{}': expected \"tty\" or \"off\"", where, a);
      } else if (key == "hosts") {
        AIRLOCK_TRY(hosts(where, v));
      } else if (key == "parentProxy") {
        AIRLOCK_TRY(parent(where, v));
      } else if (key == "tlsTerminate") {
        AIRLOCK_TRY(tls(where, v));
      } else if (key == "requireHostMatch") {
        p_.require_host_match = v.get<bool>();
      } else if (key == "refuseOpaqueTunnels") {
        p_.refuse_opaque = v.get<bool>();
      } else if (key == "stripResponseHeaders") {
        if (!v.is_array()) return err("{}: expected a list of header names", where);
        for (size_t i = 0; i < v.size(); ++i) {
          if (!v[i].is_string()) return err("{}[{}]: expected a header name", where, i);
          std::string h = v[i].get<std::string>();
          if (h.empty() || h.find_first_of(" \t\r\n:") != std::string::npos)
            return err("{}[{}]: '{}' is not a header name", where, i, h);
          std::transform(h.begin(), h.end(), h.begin(), ::tolower);
          p_.strip_response_headers.push_back(h);
        }
      } else if (key == "requestRules") {
        AIRLOCK_TRY(request_rules(where, v));
      } else if (key == "httpProxyPort" || key == "socksProxyPort") {
        long long port = v.get<long long>();
        if (port < 1 || port > 65535) return err("{}: port must be 1-65535, got {}", where, port);
        (key == "httpProxyPort" ? p_.http_port : p_.socks_port) = static_cast<uint16_t>(port);
      }
    }
    if (p_.http_port == p_.socks_port)
      return err("{}: network.httpProxyPort and network.socksProxyPort must differ", src);
    return {};
  }

  NetworkPolicy take() { return std::move(p_); }

 private:
  static Result<std::string> absolute_path(const std::string& where, const json& v) {
    if (!v.is_string() || v.get<std::string>().empty()) return err("{}: expected a path", where);
    std::string s = v.get<std::string>();
    if (s[0] == '~' && (s.size() == 1 || s[1] == '/')) {
      const char* home = ::getenv("HOME");
      if (!home || !*home) return err("{}: '{}': HOME is not set", where, s);
      s = home + s.substr(1);
    }
    if (s[0] != '/') return err("{}: '{}': must be an absolute path (or start with ~/)", where, s);
    return s;
  }

  Status tls(const std::string& where, const json& v) {
    if (!v.is_object()) return err("{}: expected an object", where);
    TlsPolicy t;
    t.enabled = true;
    for (auto it = v.begin(); it != v.end(); ++it) {
      std::string w = fmt::format("{}.{}", where, it.key());
      const json& x = it.value();
      const std::string& k = it.key();
      if (k == "caCertPath" || k == "caKeyPath") {
        auto path = absolute_path(w, x);
        if (!path) return path.error();
        (k == "caCertPath" ? t.ca_cert : t.ca_key) = *path;
      } else if (k == "excludeDomains") {
        auto d = parse_patterns(x, w);
        if (!d) return d.error();
        t.exclude = std::move(*d);
      } else if (k == "extraCaCertPaths" || k == "upstreamCaCertPaths") {
        if (!x.is_array()) return err("{}: expected a list of paths", w);
        for (size_t i = 0; i < x.size(); ++i) {
          auto path = absolute_path(fmt::format("{}[{}]", w, i), x[i]);
          if (!path) return path.error();
          (k == "extraCaCertPaths" ? t.extra_ca : t.upstream_ca).push_back(*path);
        }
      } else if (k == "maxTunnels" || k == "handshakeTimeoutMs") {
        if (!x.is_number_integer() || x.get<long long>() < 1 || x.get<long long>() > 1000000)
          return err("{}: expected a whole number from 1 to 1000000", w);
        if (k == "maxTunnels") t.max_tunnels = x.get<size_t>();
        else t.handshake_timeout_ms = x.get<int>();
      } else {
        return err("{}: unknown key (expected caCertPath, caKeyPath, excludeDomains, extraCaCertPaths, "
                   "upstreamCaCertPaths, maxTunnels, handshakeTimeoutMs)", w);
      }
    }
    if (t.ca_cert.empty() != t.ca_key.empty()) return err("{}: caCertPath and caKeyPath must be given together", where);
    p_.tls = std::move(t);
    return {};
  }

  static Result<RequestLine> request_line(const std::string& where, const json& v) {
    if (!v.is_string()) return err("{}: expected \"METHODS /path\"", where);
    RequestLine r;
    r.text = v.get<std::string>();
    r.where = where;
    auto sp = r.text.find(' ');
    if (sp == std::string::npos || r.text.find(' ', sp + 1) != std::string::npos)
      return err("{}: '{}': expected \"METHODS /path\" (e.g. \"GET,POST /repos/acme/*\")", where, r.text);
    std::string methods = r.text.substr(0, sp);
    r.path = r.text.substr(sp + 1);
    if (r.path.empty() || r.path[0] != '/') return err("{}: '{}': the path must start with '/'", where, r.text);
    for (char c : r.path)
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
        return err("{}: a path pattern has no control characters", where);
    if (r.path.find_first_of("?#%\\;") != std::string::npos)
      return err("{}: '{}': a path pattern has no query, fragment, '%', ';' or '\\'", where, r.text);
    // Requests are judged in plain form: a pattern that is not could never match.
    for (const char* bad : {"//", "/./", "/../"})
      if (r.path.find(bad) != std::string::npos)
        return err("{}: '{}': '{}' never occurs in a judged path", where, r.text, bad);
    if (r.path.size() >= 2 && (r.path.ends_with("/.") || r.path.ends_with("/..")))
      return err("{}: '{}': a '.' or '..' segment never occurs in a judged path", where, r.text);
    if (methods != "*") {
      size_t i = 0;
      while (i <= methods.size()) {
        size_t j = methods.find(',', i);
        if (j == std::string::npos) j = methods.size();
        std::string m = methods.substr(i, j - i);
        if (m.empty() || m.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ") != std::string::npos)
          return err("{}: '{}': methods are upper-case names separated by ',' (or '*')", where, r.text);
        r.methods.push_back(m);
        i = j + 1;
      }
    }
    return r;
  }

  Status request_rules(const std::string& where, const json& v) {
    if (!v.is_array()) return err("{}: expected a list of {{\"host\": ..., \"allow\": [...], \"deny\": [...]}}", where);
    for (size_t i = 0; i < v.size(); ++i) {
      std::string w = fmt::format("{}[{}]", where, i);
      if (!v[i].is_object()) return err("{}: expected an object", w);
      RequestRules rr;
      rr.where = w;
      bool have_host = false;
      for (auto it = v[i].begin(); it != v[i].end(); ++it) {
        std::string wk = fmt::format("{}.{}", w, it.key());
        const json& x = it.value();
        if (it.key() == "host") {
          if (!x.is_string()) return err("{}: expected a domain pattern", wk);
          auto d = parse_pattern(x.get<std::string>(), false, wk);
          if (!d) return d.error();
          rr.host = std::move(*d);
          have_host = true;
        } else if (it.key() == "allow" || it.key() == "deny") {
          if (!x.is_array()) return err("{}: expected a list of \"METHODS /path\"", wk);
          for (size_t j = 0; j < x.size(); ++j) {
            auto line = request_line(fmt::format("{}[{}]", wk, j), x[j]);
            if (!line) return line.error();
            (it.key() == "allow" ? rr.allow : rr.deny).push_back(std::move(*line));
          }
        } else if (it.key() == "maxBodyBytes") {
          if (!x.is_number_unsigned()) return err("{}: expected a whole number of bytes", wk);
          rr.max_body = x.get<uint64_t>();
        } else {
          return err("{}: unknown key (expected host, allow, deny, maxBodyBytes)", wk);
        }
      }
      if (!have_host) return err("{}: needs \"host\"", w);
      p_.request_rules.push_back(std::move(rr));
    }
    return {};
  }

  Status hosts(const std::string& where, const json& v) {
    if (!v.is_object()) return err("{}: expected an object of name -> address (or list of addresses)", where);
    for (auto it = v.begin(); it != v.end(); ++it) {
      auto h = normalize_host(it.key());
      if (!h || h->ip) return err("{}: '{}' is not a host name", where, it.key());
      std::vector<Address> addrs;
      auto add = [&](const json& a) -> Status {
        if (!a.is_string()) return err("{}.{}: expected an IP address", where, it.key());
        auto c = parse_cidr(a.get<std::string>());
        if (!c || c->prefix != (c->base.family == AF_INET ? 32 : 128))
          return err("{}.{}: '{}' is not an IP address", where, it.key(), a.get<std::string>());
        addrs.push_back(c->base);
        return {};
      };
      if (it.value().is_array()) {
        for (const auto& a : it.value()) AIRLOCK_TRY(add(a));
      } else {
        AIRLOCK_TRY(add(it.value()));
      }
      if (addrs.empty()) return err("{}.{}: no address", where, it.key());
      p_.hosts[h->name] = std::move(addrs);
    }
    return {};
  }

  Status parent(const std::string& where, const json& v) {
    if (!v.is_object()) return err("{}: expected an object {{\"http\": URL, \"https\": URL, \"noProxy\": LIST}}", where);
    ParentProxy pp;
    for (auto it = v.begin(); it != v.end(); ++it) {
      std::string w = fmt::format("{}.{}", where, it.key());
      if (!it.value().is_string()) return err("{}: expected a string", w);
      std::string s = it.value().get<std::string>();
      if (it.key() == "http" || it.key() == "https") {
        auto u = parse_proxy_url(s, w);
        if (!u) return u.error();
        (it.key() == "http" ? pp.http : pp.https) = *u;
      } else if (it.key() == "noProxy") {
        pp.no_proxy = split_no_proxy(s);
      } else {
        return err("{}: unknown key (expected http, https, noProxy)", w);
      }
    }
    if (pp.https.empty()) pp.https = pp.http;
    if (pp.http.empty()) pp.http = pp.https;
    if (pp.http.empty()) return err("{}: needs \"http\" or \"https\"", where);
    p_.parent = std::move(pp);
    return {};
  }

  NetworkPolicy p_;
};

}  // namespace

Result<DomainPattern> parse_pattern(const std::string& text, bool deny, const std::string& where) {
  DomainPattern d;
  d.text = text;
  d.where = where;
  auto bad = [&](const char* why) { return err("{}: '{}': {}", where, text, why); };
  if (text.empty()) return bad("empty pattern");
  for (char c : text)
    if (static_cast<unsigned char>(c) <= 0x20) return bad("white space or control character");
  std::string host = text;
  std::optional<std::string> port;  // the text after the port's ':'
  if (text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string::npos) return bad("unclosed '['");
    host = text.substr(0, close + 1);
    std::string rest = text.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') return bad("junk after ']'");
    if (!rest.empty()) port = rest.substr(1);
  } else {
    size_t colons = std::count(text.begin(), text.end(), ':');
    if (colons >= 2) return bad("an IPv6 address must be in brackets, e.g. [2001:db8::1]:443");
    if (colons == 1) {
      auto colon = text.find(':');
      port = text.substr(colon + 1);
      host = text.substr(0, colon);
    }
  }
  if (port) {
    if (port->empty() || port->size() > 5 || (*port)[0] == '0' ||
        port->find_first_not_of("0123456789") != std::string::npos || std::stoul(*port) > 65535)
      return bad("port must be 1-65535");
    d.port = static_cast<uint16_t>(std::stoul(*port));
  }
  if (host.find('/') != std::string::npos) return bad("a domain pattern has no scheme or path");
  if (host == "*") {
    if (!deny) return bad("'*' may only be used in deniedDomains; list the domains to allow");
    d.any = true;
    return d;
  }
  if (host.rfind("*.", 0) == 0) {
    d.wildcard = true;
    host = host.substr(2);
    if (std::count(host.begin(), host.end(), '.') < 1)
      return bad("a wildcard needs at least two labels after '*.' (e.g. *.example.com)");
  }
  if (host.find('*') != std::string::npos) return bad("'*' is only allowed as a leading '*.'");
  if (host.front() == '.' || host.back() == '.') return bad("leading or trailing dot");
  if (host.front() != '[' && host.find('.') == std::string::npos && host != "localhost")
    return bad("expected a domain with a dot (e.g. example.com), 'localhost' or an IP address");
  auto h = normalize_host(host);
  if (!h) return err("{}: {}", where, h.error().message);
  if (d.wildcard && h->ip) return bad("a wildcard cannot be combined with an IP address");
  d.host = h->name;
  d.ip = h->ip;
  return d;
}

Result<std::vector<DomainPattern>> parse_patterns(const json& v, const std::string& where) {
  if (!v.is_array()) return err("{}: expected a list of domain patterns", where);
  std::vector<DomainPattern> out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_string()) return err("{}[{}]: expected a string", where, i);
    auto d = parse_pattern(v[i].get<std::string>(), false, fmt::format("{}[{}]", where, i));
    if (!d) return d.error();
    out.push_back(std::move(*d));
  }
  return out;
}

Result<NetworkPolicy> build_network_policy(const std::vector<std::pair<std::string, const json*>>& layers) {
  Builder b;
  for (const auto& [src, n] : layers) {
    try {
      AIRLOCK_TRY(b.layer(src, *n));
    } catch (const json::exception& e) {
      return err("{}: network: {}", src, e.what());
    }
  }
  return b.take();
}

Verdict judge_name(const NetworkPolicy& p, const Host& h, uint16_t port) {
  for (const auto& d : p.denied) {
    if (!matches(d, h, port, true)) continue;
    auto r = p.denied_reasons.find(d.text);
    return {Verdict::Deny,
            r != p.denied_reasons.end() ? fmt::format("deniedDomains '{}': {}", d.text, r->second)
                                        : fmt::format("deniedDomains '{}'", d.text),
            &d};
  }
  if (!h.ip && metadata_name(h.name)) {
    for (const auto& d : p.allowed)
      if (!d.wildcard && matches(d, h, port, false)) return {Verdict::Allow, fmt::format("allowedDomains '{}'", d.text), &d};
    return {Verdict::Deny, "a cloud metadata service name (allow it by its exact name to reach it)", nullptr};
  }
  for (const auto& d : p.allowed)
    if (matches(d, h, port, false)) return {Verdict::Allow, fmt::format("allowedDomains '{}'", d.text), &d};
  // Say why a near miss missed: usually the port.
  for (const auto& d : p.allowed) {
    DomainPattern any_port = d;
    any_port.port = port;
    if (matches(any_port, h, port, false))
      return {Verdict::Unknown,
              d.port ? fmt::format("port {} is not allowed ('{}' allows port {} only)", port, d.text, *d.port)
                     : fmt::format("port {} is not allowed ('{}' allows ports 80 and 443; add '{}:{}')", port, d.text,
                                   d.text, port),
              nullptr};
  }
  return {Verdict::Unknown, "not in allowedDomains", nullptr};
}

std::optional<std::string> judge_address(const NetworkPolicy& p, const Host& h, uint16_t port, const Address& a,
                                         const std::vector<Address>& local) {
  std::string what = h.ip ? a.str() : fmt::format("{} resolved to {}, which", h.name, a.str());
  for (const auto& c : p.denied_addresses)
    if (c.contains(a)) return fmt::format("{} is in deniedResolvedAddresses '{}'", what, c.str());
  const char* special = special_range(a);
  bool is_local = std::find(local.begin(), local.end(), a) != local.end();
  if (!special && !is_local) return std::nullopt;
  for (const auto& c : p.allow_private)
    if (c.contains(a)) return std::nullopt;
  for (const auto& d : p.allowed)
    if (d.ip && *d.ip == a && (d.port ? *d.port == port : (port == 80 || port == 443))) return std::nullopt;
  return fmt::format("{} is {} address (allow it with network.allowPrivateAddresses)", what,
                     special ? fmt::format("a {}", special) : std::string("one of this machine's own"));
}

bool bypasses_parent(const ParentProxy& pp, const Host& h) {
  for (std::string e : pp.no_proxy) {
    if (e == "*") return true;
    if (e.find('/') != std::string::npos) {
      auto c = parse_cidr(e);
      if (c && h.ip && c->contains(*h.ip)) return true;
      continue;
    }
    if (auto ip = parse_ip(e)) {
      if (h.ip && *h.ip == *ip) return true;
      continue;
    }
    if (e.rfind("*.", 0) == 0) e = e.substr(1);
    if (auto colon = e.rfind(':'); colon != std::string::npos) e = e.substr(0, colon);
    if (!e.empty() && e.front() == '.') e = e.substr(1);
    if (h.name == e || ends_with(h.name, e)) return true;
  }
  return false;
}

std::vector<std::string> proxy_environment(const NetworkPolicy& p, const std::string& connect_helper) {
  std::string http = fmt::format("http://127.0.0.1:{}", p.http_port);
  std::string socks = fmt::format("socks5h://127.0.0.1:{}", p.socks_port);
  std::string no_proxy = "localhost,127.0.0.1,::1";
  std::vector<std::string> env;
  for (const char* n : {"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy",
                        // npm and yarn read their own names first; pip and docker build too.
                        "npm_config_proxy", "npm_config_https_proxy", "YARN_HTTP_PROXY", "YARN_HTTPS_PROXY",
                        "PIP_PROXY", "DOCKER_HTTP_PROXY", "DOCKER_HTTPS_PROXY",
                        // gRPC (C core, Go, Java) reads grpc_proxy before https_proxy.
                        "GRPC_PROXY", "grpc_proxy"})
    env.push_back(fmt::format("{}={}", n, http));
  for (const char* n : {"ALL_PROXY", "all_proxy", "FTP_PROXY", "ftp_proxy"}) env.push_back(fmt::format("{}={}", n, socks));
  env.push_back(fmt::format("RSYNC_PROXY=127.0.0.1:{}", p.socks_port));
  // Node.js 22.21+/24 honours the variables above only when asked.
  env.push_back("NODE_USE_ENV_PROXY=1");
  env.push_back("NO_PROXY=" + no_proxy);
  env.push_back("no_proxy=" + no_proxy);
  env.push_back("npm_config_noproxy=" + no_proxy);
  // JVM tools: the standard system properties (the JVM ignores *_PROXY).
  env.push_back(fmt::format(
      "JAVA_TOOL_OPTIONS=-Dhttp.proxyHost=127.0.0.1 -Dhttp.proxyPort={0} -Dhttps.proxyHost=127.0.0.1 "
      "-Dhttps.proxyPort={0} -Dhttp.nonProxyHosts=localhost|127.0.0.1",
      p.http_port));
  if (!connect_helper.empty())
    env.push_back(fmt::format(
        "GIT_SSH_COMMAND=ssh -o ControlMaster=no -o ControlPath=none -o ProxyCommand='{} connect --port {} %h %p'",
        connect_helper, p.socks_port));
  return env;
}

}  // namespace airlock::net
