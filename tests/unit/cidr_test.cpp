// http.trusted_proxies: CIDR parsing (strict), matching, and the TLS settings' rules.

#include <gtest/gtest.h>

#include <cauce/core/cidr.hpp>
#include <cauce/core/config.hpp>
#include <cauce/core/errors.hpp>

namespace cauce::core {
namespace {

IpAddress ip(std::string_view text) {
  const auto address = IpAddress::parse(text);
  if (!address) throw std::invalid_argument(std::string(text));
  return *address;
}

TEST(CidrTest, ParsesIpv4AndIpv6RangesAndBareAddresses) {
  EXPECT_EQ(Cidr::parse("10.0.0.0/8")->text(), "10.0.0.0/8");
  EXPECT_EQ(Cidr::parse("192.168.1.7")->text(), "192.168.1.7/32");
  EXPECT_EQ(Cidr::parse("0.0.0.0/0")->text(), "0.0.0.0/0");
  EXPECT_EQ(Cidr::parse("2001:DB8::/32")->text(), "2001:db8::/32");
  EXPECT_EQ(Cidr::parse("::1")->text(), "::1/128");
  EXPECT_EQ(Cidr::parse("::ffff:10.0.0.0/104")->text(), "::ffff:10.0.0.0/104");
}

TEST(CidrTest, RefusesAnythingElseWithAReason) {
  for (const char* bad : {"",
                          "/8",
                          "10.0.0.0/",
                          "10.0.0.0/33",
                          "10.0.0.0/-1",
                          "10.0.0.0/+8",
                          "10.0.0.0/08",
                          "10.0.0.0/8/8",
                          "10.0.0.0 /8",
                          " 10.0.0.0/8",
                          "10.0.0/8",
                          "10.0.0.256/32",
                          "10.0.0.1/8",
                          "2001:db8::/129",
                          "2001:db8::1/32",
                          "[::1]",
                          "::1%eth0",
                          "fe80::/10x",
                          "localhost",
                          "10.0.0.0/8,",
                          "10.0.0.0:80"}) {
    std::string error;
    EXPECT_FALSE(Cidr::parse(bad, &error)) << bad;
    EXPECT_FALSE(error.empty()) << bad;
  }
}

TEST(CidrTest, MatchesByPrefixInEachFamily) {
  const auto ten = *Cidr::parse("10.0.0.0/8");
  EXPECT_TRUE(ten.contains(ip("10.255.0.1")));
  EXPECT_FALSE(ten.contains(ip("11.0.0.1")));
  // A peer on a dual-stack socket shows as ::ffff:a.b.c.d: the IPv4 range holds it.
  EXPECT_TRUE(ten.contains(ip("::ffff:10.1.2.3")));
  EXPECT_FALSE(ten.contains(ip("::a01:203")));  // 10.1.2.3's bits, but IPv6
  const auto odd = *Cidr::parse("172.16.0.0/12");
  EXPECT_TRUE(odd.contains(ip("172.31.255.255")));
  EXPECT_FALSE(odd.contains(ip("172.32.0.0")));
  const auto v6 = *Cidr::parse("2001:db8:8000::/33");
  EXPECT_TRUE(v6.contains(ip("2001:db8:ffff::1")));
  EXPECT_FALSE(v6.contains(ip("2001:db8:7fff::1")));
  EXPECT_FALSE(v6.contains(ip("10.0.0.1")));
  EXPECT_TRUE(Cidr::parse("::/0")->contains(ip("10.0.0.1")));
  EXPECT_TRUE(Cidr::parse("0.0.0.0/0")->contains(ip("192.0.2.1")));
  EXPECT_FALSE(Cidr::parse("0.0.0.0/0")->contains(ip("2001:db8::1")));
  EXPECT_TRUE(Cidr::parse("127.0.0.1")->contains(ip("127.0.0.1")));
  EXPECT_FALSE(Cidr::parse("127.0.0.1")->contains(ip("127.0.0.2")));
  EXPECT_EQ(ip("::ffff:10.1.2.3").text(), "10.1.2.3");
}

std::string rejected_key(const ConfigSources& sources) {
  try {
    load_config(sources);
  } catch (const ConfigError& e) {
    return e.key();
  }
  return "";
}

TEST(TlsSettingsTest, TrustedProxiesAreStrictAndCanonical) {
  const auto config =
      load_config({.file = {},
                   .env = {{"CAUCE_HTTP_TRUSTED_PROXIES", "10.0.0.0/8, 2001:DB8::/32,127.0.0.1"}},
                   .flags = {}});
  EXPECT_EQ(config.http.trusted_proxies,
            (std::vector<std::string>{"10.0.0.0/8", "2001:db8::/32", "127.0.0.1/32"}));
  EXPECT_TRUE(load_config({}).http.trusted_proxies.empty());
  EXPECT_TRUE(load_config({.file = {}, .env = {{"CAUCE_HTTP_TRUSTED_PROXIES", " "}}, .flags = {}})
                  .http.trusted_proxies.empty());
  for (const char* bad : {"10.0.0.1/8", "10.0.0.0/8,nonsense", "10.0.0.0/40"}) {
    EXPECT_EQ(rejected_key({.file = {}, .env = {}, .flags = {{"http.trusted_proxies", bad}}}),
              "http.trusted_proxies")
        << bad;
  }
}

TEST(TlsSettingsTest, CertificateAndKeyComeTogether) {
  EXPECT_EQ(rejected_key({.file = {},
                          .env = {{"CAUCE_HTTP_TLS_CERTIFICATE_FILE", "/etc/cauce/tls.crt"}},
                          .flags = {}}),
            "http.tls_key_file");
  EXPECT_EQ(rejected_key({.file = {}, .env = {}, .flags = {{"http.tls_key_file", "/k.pem"}}}),
            "http.tls_certificate_file");
  const auto both = load_config({.file = {},
                                 .env = {{"CAUCE_HTTP_TLS_CERTIFICATE_FILE", "/c.pem"},
                                         {"CAUCE_HTTP_TLS_KEY_FILE", "/k.pem"}},
                                 .flags = {}});
  EXPECT_EQ(both.http.tls_certificate_file, "/c.pem");
  EXPECT_EQ(both.http.tls_key_file, "/k.pem");
  EXPECT_TRUE(load_config({}).http.tls_certificate_file.empty());
}

}  // namespace
}  // namespace cauce::core
