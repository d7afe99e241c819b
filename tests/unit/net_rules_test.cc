// The proxy's judgement as plain functions: host normalisation, patterns,
// name and address verdicts. Every disguise in the threat list is here.
#include <gtest/gtest.h>

#include "net/host.h"
#include "net/rules.h"

using namespace airlock::net;

namespace {

NetworkPolicy policy(const char* json_text) {
  auto j = nlohmann::json::parse(json_text);
  auto p = build_network_policy({{"s.json", &j}});
  EXPECT_TRUE(p) << p.error().message;
  return p ? *p : NetworkPolicy{};
}

Verdict::Kind judge(const NetworkPolicy& p, const std::string& raw, uint16_t port) {
  auto h = normalize_host(raw);
  if (!h) return Verdict::Deny;  // the proxy refuses what it cannot normalise
  return judge_name(p, *h, port).kind;
}

}  // namespace

TEST(NetHost, IpLiteralsInEverySpellingAreTheSameAddress) {
  for (const char* s : {"127.0.0.1", "2130706433", "0x7f000001", "0177.0.0.1", "0x7f.0.0.1", "127.1", "127.0.1",
                        "[::ffff:127.0.0.1]", "::ffff:7f00:1", "127.0.0.1."}) {
    auto h = normalize_host(s);
    ASSERT_TRUE(h) << s << ": " << h.error().message;
    ASSERT_TRUE(h->ip) << s;
    EXPECT_EQ(h->name, "127.0.0.1") << s;
  }
  auto v6 = normalize_host("[FD00:EC2::254]");
  ASSERT_TRUE(v6 && v6->ip);
  EXPECT_EQ(v6->name, "fd00:ec2::254");
  EXPECT_STREQ(special_range(*v6->ip), "cloud metadata");
}

TEST(NetHost, NamesAreCanonical) {
  EXPECT_EQ(normalize_host("GitHub.COM.")->name, "github.com");
  // Cyrillic 'а' in "exаmple.com": a different name, in punycode.
  auto idn = normalize_host("ex\xd0\xb0mple.com");
  ASSERT_TRUE(idn) << idn.error().message;
  EXPECT_NE(idn->name, "example.com");
  EXPECT_EQ(idn->name.rfind("xn--", 0), 0u);
  EXPECT_EQ(normalize_host("B\xc3\xbc" "cher.de")->name, "xn--bcher-kva.de");
}

TEST(NetHost, MalformedHostsAreRefused) {
  for (const char* s : {"", "allowed.com@evil.com", "a b.com", "evil.com%00.allowed.com", "1.2.3.4.5", "a..b.com",
                        "-a.com", "exa_mple.com/x", "[::1", "fe80::1%eth0", "0x1g.0.0.1", ".", "a.com\r\nX: y"})
    EXPECT_FALSE(normalize_host(s)) << s;
}

TEST(NetHost, SpecialRanges) {
  auto kind = [](const char* s) {
    auto a = parse_ip(s);
    EXPECT_TRUE(a) << s;
    const char* k = special_range(*a);
    return std::string(k ? k : "public");
  };
  EXPECT_EQ(kind("10.1.2.3"), "private");
  EXPECT_EQ(kind("172.31.0.1"), "private");
  EXPECT_EQ(kind("192.168.1.1"), "private");
  EXPECT_EQ(kind("100.64.0.1"), "carrier-grade NAT");
  EXPECT_EQ(kind("169.254.169.254"), "cloud metadata");
  EXPECT_EQ(kind("169.254.1.1"), "link-local");
  EXPECT_EQ(kind("0.0.0.0"), "unspecified");
  EXPECT_EQ(kind("224.0.0.1"), "multicast");
  EXPECT_EQ(kind("::1"), "loopback");
  EXPECT_EQ(kind("fe80::1"), "link-local");
  EXPECT_EQ(kind("fc00::1"), "private");
  EXPECT_EQ(kind("64:ff9b::a9fe:a9fe"), "cloud metadata");  // NAT64 of 169.254.169.254
  EXPECT_EQ(kind("2002:7f00:1::"), "loopback");            // 6to4 of 127.0.0.1
  EXPECT_EQ(kind("168.63.129.16"), "cloud metadata");
  EXPECT_EQ(kind("8.8.8.8"), "public");
  EXPECT_EQ(kind("2606:4700::1111"), "public");
}

TEST(NetRules, PatternsAreValidatedLikeSrt) {
  for (const char* bad : {"*.com", "*", "a.*.com", "http://a.com", "a.com/x", "a.com:0", "a.com:080", "a.com:70000",
                          "::1", "intranet", "example.com.", ".example.com", "*.1.2.3.4", "a b.com", "[::1"})
    EXPECT_FALSE(parse_pattern(bad, false, "s.json: network.allowedDomains[0]")) << bad;
  for (const char* good : {"example.com", "*.example.com", "example.com:8443", "[::1]:80", "10.0.0.5", "localhost"})
    EXPECT_TRUE(parse_pattern(good, false, "w")) << good;
  EXPECT_TRUE(parse_pattern("*", true, "w"));
  auto e = parse_pattern("*.com", false, "s.json: network.allowedDomains[3]");
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message.find("s.json: network.allowedDomains[3]"), std::string::npos);
}

TEST(NetRules, DisguisesDoNotMatch) {
  auto p = policy(R"({"allowedDomains": ["example.com", "*.github.com"], "deniedDomains": ["evil.github.com"]})");
  EXPECT_EQ(judge(p, "example.com", 443), Verdict::Allow);
  EXPECT_EQ(judge(p, "EXAMPLE.com.", 443), Verdict::Allow);
  EXPECT_EQ(judge(p, "api.github.com", 443), Verdict::Allow);
  EXPECT_NE(judge(p, "github.com", 443), Verdict::Allow);  // *. is subdomains only
  EXPECT_EQ(judge(p, "evil.github.com", 443), Verdict::Deny);  // deny wins
  EXPECT_EQ(judge(p, "x.EVIL.github.com.", 443), Verdict::Allow);  // deny is exact: only its own name
  for (const char* s : {"evil-example.com", "example.com.evil.com", "notexample.com", "example.com@evil.com",
                        "ex\xd0\xb0mple.com", "xgithub.com", "github.com.evil.com"})
    EXPECT_NE(judge(p, s, 443), Verdict::Allow) << s;
  // Ports: none written means 80 and 443 only.
  EXPECT_EQ(judge(p, "example.com", 80), Verdict::Allow);
  EXPECT_NE(judge(p, "example.com", 22), Verdict::Allow);
  EXPECT_NE(judge(p, "example.com", 8443), Verdict::Allow);
}

TEST(NetRules, DenyStarAndPorts) {
  auto p = policy(R"({"allowedDomains": ["example.com:8443"], "deniedDomains": ["*:25"]})");
  EXPECT_EQ(judge(p, "example.com", 8443), Verdict::Allow);
  EXPECT_NE(judge(p, "example.com", 443), Verdict::Allow);
  auto all = policy(R"({"allowedDomains": ["example.com"], "deniedDomains": ["*"]})");
  EXPECT_EQ(judge(all, "example.com", 443), Verdict::Deny);
}

TEST(NetRules, IpLiteralsMatchOnlyAddressRules) {
  auto p = policy(R"({"allowedDomains": ["example.com", "10.0.0.5:5432"]})");
  EXPECT_NE(judge(p, "93.184.216.34", 443), Verdict::Allow);  // a name rule never matches an address
  EXPECT_EQ(judge(p, "10.0.0.5", 5432), Verdict::Allow);
  EXPECT_EQ(judge(p, "0x0a000005", 5432), Verdict::Allow);  // same address, other spelling
  // The rule names the address, so it may be reached although private.
  auto h = normalize_host("10.0.0.5");
  EXPECT_FALSE(judge_address(p, *h, 5432, *h->ip, {}));
  auto other = normalize_host("10.0.0.6");
  EXPECT_TRUE(judge_address(p, *other, 5432, *other->ip, {}));
}

TEST(NetRules, ResolvedAddressesAreJudged) {
  auto p = policy(R"({"allowedDomains": ["example.com"], "deniedResolvedAddresses": ["203.0.114.0/24"],
                      "allowPrivateAddresses": ["192.168.7.0/24"]})");
  auto h = *normalize_host("example.com");
  auto check = [&](const char* ip) { return judge_address(p, h, 443, *parse_ip(ip), {}); };
  EXPECT_TRUE(check("127.0.0.1"));
  EXPECT_TRUE(check("169.254.169.254"));
  EXPECT_TRUE(check("10.0.0.1"));
  EXPECT_TRUE(check("::ffff:169.254.169.254"));
  EXPECT_TRUE(check("203.0.114.9"));       // deniedResolvedAddresses
  EXPECT_FALSE(check("192.168.7.20"));     // allowPrivateAddresses
  EXPECT_FALSE(check("8.8.8.8"));
  // This machine's own public address is not the internet either.
  EXPECT_TRUE(judge_address(p, h, 443, *parse_ip("8.8.8.8"), {*parse_ip("8.8.8.8")}));
}

TEST(NetRules, MetadataNamesNeedAnExactRule) {
  auto p = policy(R"({"allowedDomains": ["*.google.internal"]})");
  EXPECT_EQ(judge(p, "metadata.google.internal", 80), Verdict::Deny);
  auto exact = policy(R"({"allowedDomains": ["metadata.google.internal"]})");
  EXPECT_EQ(judge(exact, "metadata.google.internal", 80), Verdict::Allow);
}

TEST(NetRules, BadSettingsNameTheKey) {
  for (const char* bad : {R"({"allowedDomains": ["*.com"]})", R"({"deniedResolvedAddresses": ["10.0.0.0/33"]})",
                          R"({"allowPrivateAddresses": ["nonsense"]})", R"({"hosts": {"a.test": "not-an-ip"}})",
                          R"({"parentProxy": {"http": "socks5://p:1080"}})", R"({"parentProxy": "http://p:3128"})",
                          R"({"ask": "sometimes"})", R"({"httpProxyPort": 1080})"}) {
    auto j = nlohmann::json::parse(bad);
    auto p = build_network_policy({{"s.json", &j}});
    ASSERT_FALSE(p) << bad;
    EXPECT_EQ(p.error().message.rfind("s.json: network", 0), 0u) << p.error().message;
  }
}

TEST(NetRules, ParentProxyNoProxy) {
  auto p = policy(R"({"allowedDomains": [], "parentProxy": {"http": "proxy.corp:3128", "noProxy": "internal.corp, .lan, 10.0.0.0/8"}})");
  ASSERT_TRUE(p.parent);
  EXPECT_EQ(p.parent->https, "proxy.corp:3128");
  EXPECT_TRUE(bypasses_parent(*p.parent, *normalize_host("internal.corp")));
  EXPECT_TRUE(bypasses_parent(*p.parent, *normalize_host("a.internal.corp")));
  EXPECT_TRUE(bypasses_parent(*p.parent, *normalize_host("box.lan")));
  EXPECT_TRUE(bypasses_parent(*p.parent, *normalize_host("10.1.2.3")));
  EXPECT_FALSE(bypasses_parent(*p.parent, *normalize_host("example.com")));
  EXPECT_FALSE(bypasses_parent(*p.parent, *normalize_host("notinternal.corp")));
}
