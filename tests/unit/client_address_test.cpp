// Who the client is behind http.trusted_proxies (X-Forwarded-For, X-Forwarded-Proto), and
// Strict-Transport-Security only on HTTPS answers, through the whole request pipeline.

#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <cauce/api/auth.hpp>
#include <cauce/api/client_address.hpp>
#include <cauce/api/http_metrics.hpp>
#include <cauce/api/server.hpp>
#include <cauce/core/errors.hpp>

#include "memory_key_store.hpp"

namespace cauce::api {
namespace {

namespace http = boost::beast::http;

core::IpAddress ip(std::string_view text) { return *core::IpAddress::parse(text); }

http::fields headers(std::initializer_list<std::pair<const char*, const char*>> list) {
  http::fields out;
  for (const auto& [name, value] : list) out.insert(name, value);
  return out;
}

const TrustedProxies kProxies({"10.0.0.0/8", "2001:db8::/32"});

TEST(ClientAddressTest, ForwardedHeadersFromAnUntrustedPeerAreIgnored) {
  const auto origin = kProxies.resolve(
      ip("192.0.2.9"), false,
      headers({{"X-Forwarded-For", "203.0.113.7"}, {"X-Forwarded-Proto", "https"}}));
  EXPECT_EQ(origin.address, "192.0.2.9");
  EXPECT_FALSE(origin.https);
  EXPECT_EQ(TrustedProxies().resolve(
                ip("10.0.0.1"), true,
                headers({{"X-Forwarded-For", "203.0.113.7"}, {"X-Forwarded-Proto", "http"}})),
            (ClientOrigin{"10.0.0.1", true}));
}

TEST(ClientAddressTest, TheRightMostUntrustedForwardedAddressIsTheClient) {
  // The client sent a forged X-Forwarded-For; the proxy appended what it saw.
  EXPECT_EQ(kProxies
                .resolve(ip("10.1.1.1"), false,
                         headers({{"X-Forwarded-For", "198.51.100.1, 203.0.113.7"}}))
                .address,
            "203.0.113.7");
  // Two proxies of ours, the second one's header line apart from the first (one list).
  EXPECT_EQ(kProxies
                .resolve(ip("10.1.1.1"), false,
                         headers({{"X-Forwarded-For", "198.51.100.1,203.0.113.7"},
                                  {"X-Forwarded-For", "10.2.2.2"}}))
                .address,
            "203.0.113.7");
  EXPECT_EQ(kProxies
                .resolve(ip("2001:db8::5"), false,
                         headers({{"X-Forwarded-For", "2001:DB8:1::9, 2001:db8::6"}}))
                .address,
            "2001:db8:1::9");
  // Every hop one of ours: the left-most is where it came from.
  EXPECT_EQ(
      kProxies.resolve(ip("10.1.1.1"), false, headers({{"X-Forwarded-For", "10.3.3.3, 10.2.2.2"}}))
          .address,
      "10.3.3.3");
  // A trusted peer without the header is the client itself.
  EXPECT_EQ(kProxies.resolve(ip("::ffff:10.1.1.1"), false, {}).address, "10.1.1.1");
}

TEST(ClientAddressTest, AMalformedForwardedForFallsBackToThePeer) {
  for (const char* bad : {"", "unknown", "203.0.113.7, ", "203.0.113.7:4711", "[2001:db8::1]",
                          "203.0.113.7 198.51.100.1", "_hidden, 203.0.113.7"}) {
    EXPECT_EQ(kProxies.resolve(ip("10.1.1.1"), false, headers({{"X-Forwarded-For", bad}})).address,
              "10.1.1.1")
        << bad;
  }
}

TEST(ClientAddressTest, ForwardedProtoFromATrustedProxySetsTheScheme) {
  EXPECT_TRUE(
      kProxies.resolve(ip("10.1.1.1"), false, headers({{"X-Forwarded-Proto", "HTTPS"}})).https);
  EXPECT_FALSE(
      kProxies.resolve(ip("10.1.1.1"), true, headers({{"X-Forwarded-Proto", "http"}})).https);
  // The nearest proxy's value counts; anything but http or https leaves the connection's own.
  EXPECT_TRUE(
      kProxies.resolve(ip("10.1.1.1"), false, headers({{"X-Forwarded-Proto", "http, https"}}))
          .https);
  EXPECT_TRUE(
      kProxies.resolve(ip("10.1.1.1"), true, headers({{"X-Forwarded-Proto", "gopher"}})).https);
  EXPECT_FALSE(
      kProxies.resolve(std::nullopt, false, headers({{"X-Forwarded-Proto", "https"}})).https);
}

TEST(ClientAddressTest, ABadRangeIsAConfigErrorNamingTheSetting) {
  try {
    const TrustedProxies bad({"10.0.0.0/8", "10.0.0.1/8"});
    FAIL() << "accepted";
  } catch (const core::ConfigError& e) {
    EXPECT_EQ(e.key(), "http.trusted_proxies");
  }
}

// HSTS goes on HTTPS answers only once cauce can tell (TLS or trusted proxies); without either
// it goes on every answer (the setting then means that a TLS proxy fronts cauce).
TEST(ClientAddressTest, StrictTransportSecurityOnlyWhereTheRequestWasHttps) {
  testing::MemoryKeyStore store;
  ApiKeys keys(store);
  prometheus::Registry registry;
  HttpMetrics metrics(registry);
  Router router;
  router.add(http::verb::get, "/ping", std::nullopt,
             [](Request& r) { return json_response(r, http::status::ok, "{}"); });
  const auto get = [] { return http::request<http::string_body>(http::verb::get, "/ping", 11); };

  core::HttpConfig behind_proxies;
  behind_proxies.hsts = true;
  behind_proxies.trusted_proxies = {"10.0.0.0/8"};
  const HttpServer proxied(behind_proxies, router, keys, metrics);
  EXPECT_EQ(proxied.handle(get(), {"203.0.113.7", true}).count("Strict-Transport-Security"), 1U);
  EXPECT_EQ(proxied.handle(get(), {"203.0.113.7", false}).count("Strict-Transport-Security"), 0U);

  core::HttpConfig unknown;
  unknown.hsts = true;
  const HttpServer fronted(unknown, router, keys, metrics);
  EXPECT_EQ(fronted.handle(get(), {"203.0.113.7", false}).count("Strict-Transport-Security"), 1U);

  core::HttpConfig off;
  off.trusted_proxies = {"10.0.0.0/8"};
  const HttpServer without(off, router, keys, metrics);
  EXPECT_EQ(without.handle(get(), {"203.0.113.7", true}).count("Strict-Transport-Security"), 0U);
}

}  // namespace
}  // namespace cauce::api
