#include "net/requests.h"

#include <optional>
#include <vector>

namespace airlock::net {
namespace {

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool matches_line(const RequestLine& l, std::string_view method, std::string_view path) {
  if (!l.methods.empty()) {
    bool any = false;
    for (const auto& m : l.methods) any |= m == method;
    if (!any) return false;
  }
  return path_matches(l.path, path);
}

std::string lower(std::string_view s) {
  std::string o(s);
  for (char& c : o) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return o;
}

// A deny line covers more than its letter: many servers route "/admin/" as
// "/admin" and ignore case in paths, so deny lines do too. (Allow lines do
// not: widening them would let more through.)
bool matches_deny(const RequestLine& l, std::string_view method, std::string_view path) {
  RequestLine folded = l;
  folded.path = lower(l.path);
  std::string p = lower(path);
  if (matches_line(folded, method, p)) return true;
  return p.size() > 1 && p.back() == '/' && matches_line(folded, method, std::string_view(p).substr(0, p.size() - 1));
}

// Servers agree on a path only in its plain form: a dot segment, a '#' or a
// ';' parameter is resolved by some and passed on raw by others (the request
// is forwarded as written), so on a host with rules they are refused.
std::optional<std::string> not_plain(std::string_view target) {
  if (target.find('#') != std::string_view::npos) return "a '#' in the request target";
  std::string_view path = target.substr(0, target.find('?'));
  if (path.find(';') != std::string_view::npos) return "a ';' parameter in the path";
  size_t i = 0;
  while (i < path.size()) {
    size_t j = path.find('/', i + 1);
    if (j == std::string_view::npos) j = path.size();
    std::string_view seg = path.substr(i + 1, j - i - 1);
    std::string dec = percent_decode(seg);
    if (dec == "." || dec == "..") return "a '.' or '..' segment in the path";
    i = j;
  }
  return std::nullopt;
}

}  // namespace

std::string percent_decode(std::string_view s) {
  std::string out;
  for (size_t k = 0; k < s.size(); ++k) {
    if (s[k] == '%' && k + 2 < s.size() && hex(s[k + 1]) >= 0 && hex(s[k + 2]) >= 0) {
      out.push_back(static_cast<char>(hex(s[k + 1]) * 16 + hex(s[k + 2])));
      k += 2;
    } else {
      out.push_back(s[k]);
    }
  }
  return out;
}

Result<std::string> normalize_path(std::string_view target) {
  std::string_view raw = target.substr(0, target.find('?'));
  if (raw.empty() || raw[0] != '/') return err("the path does not start with '/'");
  std::vector<std::string> segs;
  size_t i = 1;
  bool trailing_slash = false;
  while (i <= raw.size()) {
    size_t j = raw.find('/', i);
    if (j == std::string_view::npos) j = raw.size();
    std::string_view seg = raw.substr(i, j - i);
    std::string dec;
    for (size_t k = 0; k < seg.size(); ++k) {
      unsigned char c = static_cast<unsigned char>(seg[k]);
      if (c == '%') {
        if (k + 2 >= seg.size()) return err("a '%' without two hex digits");
        int a = hex(seg[k + 1]), b = hex(seg[k + 2]);
        if (a < 0 || b < 0) return err("a '%' without two hex digits");
        c = static_cast<unsigned char>(a * 16 + b);
        if (c == '/' || c == '\\' || c == '%') return err("an encoded '/', '\\' or '%' in the path");
        k += 2;
      } else if (c == '\\') {
        return err("a backslash in the path");
      }
      if (c < 0x20 || c == 0x7f) return err("a control character in the path");
      dec.push_back(static_cast<char>(c));
    }
    bool last = j == raw.size();
    // "..;x" is ".." to some servers (Tomcat and friends): not a name.
    std::string_view bare = std::string_view(dec).substr(0, dec.find(';'));
    if (dec.empty()) {
      if (!last) return err("an empty path segment ('//')");
      trailing_slash = true;
    } else if (bare == ".") {
      if (dec != ".") return err("a '.;' path segment");
      trailing_slash = last;
    } else if (bare == "..") {
      if (dec != "..") return err("a '..;' path segment");
      if (segs.empty()) return err("'..' above the root");
      segs.pop_back();
      trailing_slash = last;
    } else {
      segs.push_back(std::move(dec));
      trailing_slash = false;
    }
    i = j + 1;
  }
  std::string out;
  for (const auto& s : segs) out += "/" + s;
  if (out.empty() || trailing_slash) out += "/";
  return out;
}

bool path_matches(std::string_view pat, std::string_view path) {
  // Iterative glob with backtracking to the last '*'; a '*' does not cross
  // '/' unless it ends the pattern.
  size_t p = 0, s = 0, star = std::string_view::npos, mark = 0;
  while (s < path.size()) {
    if (p < pat.size() && pat[p] == '*') {
      if (p + 1 == pat.size()) return true;  // final '*': the rest
      star = p++;
      mark = s;
    } else if (p < pat.size() && pat[p] == path[s]) {
      ++p, ++s;
    } else if (star != std::string_view::npos && path[mark] != '/') {
      p = star + 1;
      s = ++mark;
    } else {
      return false;
    }
  }
  while (p < pat.size() && pat[p] == '*') ++p;
  return p == pat.size();
}

bool has_request_rules(const NetworkPolicy& p, const Host& host, uint16_t port) {
  for (const auto& r : p.request_rules)
    if (pattern_matches(r.host, host, port, true)) return true;
  return false;
}

RequestVerdict judge_request(const NetworkPolicy& p, const Host& host, uint16_t port, std::string_view method,
                             std::string_view target) {
  RequestVerdict v;
  std::vector<const RequestRules*> rules;
  for (const auto& r : p.request_rules)
    if (pattern_matches(r.host, host, port, true)) rules.push_back(&r);
  if (rules.empty()) return v;
  v.has_rules = true;
  // Rules name methods in capitals; "delete" is DELETE to some servers.
  for (char c : method)
    if (c < 'A' || c > 'Z') {
      v.allowed = false;
      v.status = 400;
      v.rule = fmt::format("ambiguous method '{}': methods are upper case", method);
      return v;
    }
  if (auto why = not_plain(target)) {
    v.allowed = false;
    v.status = 400;
    v.rule = "ambiguous path: " + *why;
    return v;
  }
  auto path = normalize_path(target);
  if (!path) {
    v.allowed = false;
    v.status = 400;
    v.rule = "ambiguous path: " + path.error().message;
    return v;
  }
  bool any_allow = false;
  const RequestLine* allowed_by = nullptr;
  for (const auto* r : rules) {
    if (r->max_body && (!v.max_body || *r->max_body < *v.max_body)) v.max_body = r->max_body;
    for (const auto& l : r->deny)
      if (matches_deny(l, method, *path)) {
        v.allowed = false;
        v.status = 403;
        v.rule = fmt::format("requestRules deny '{}' ({})", l.text, l.where);
        return v;
      }
    for (const auto& l : r->allow) {
      any_allow = true;
      if (!allowed_by && matches_line(l, method, *path)) allowed_by = &l;
    }
  }
  if (any_allow && !allowed_by) {
    v.allowed = false;
    v.status = 403;
    v.rule = fmt::format("{} {} matches no requestRules allow line for {}", method, *path, host.name);
    return v;
  }
  v.rule = allowed_by ? fmt::format("requestRules allow '{}'", allowed_by->text) : "requestRules (no deny line matched)";
  return v;
}

}  // namespace airlock::net
