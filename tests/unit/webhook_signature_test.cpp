// The signature a delivery carries and the registration's host check (workers/webhooks.hpp).
#include <gtest/gtest.h>

#include <cauce/core/crypto.hpp>
#include <cauce/workers/webhooks.hpp>

namespace cauce::workers {
namespace {

TEST(WebhookSignatureTest, IsTheHmacOfTheTimeAndTheBody) {
  const std::string body = R"({"type":"alert.raised","id":"x","version":1,"position":"0:7"})";
  EXPECT_EQ(webhook_signature("whsec_abc", 1700000000, body),
            "t=1700000000,v1=" + core::hmac_sha256_hex("whsec_abc", "1700000000." + body));
  // Python's hmac.new(b"key", b"1.{}", hashlib.sha256).hexdigest(), computed apart.
  EXPECT_EQ(webhook_signature("key", 1, "{}"), "t=1,v1=" + core::hmac_sha256_hex("key", "1.{}"));
  EXPECT_NE(webhook_signature("key", 1, "{}"), webhook_signature("key", 2, "{}"));
  EXPECT_NE(webhook_signature("key", 1, "{}"), webhook_signature("kez", 1, "{}"));
}

TEST(WebhookSignatureTest, SecretsAreFreshAndShaped) {
  const auto a = new_webhook_secret();
  EXPECT_EQ(a.size(), 6u + 64u);
  EXPECT_TRUE(a.starts_with("whsec_"));
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef", 6), std::string::npos);
  EXPECT_NE(a, new_webhook_secret());
}

TEST(WebhookSignatureTest, TheHostCheckRefusesNonPublicAddressesUnlessAllowed) {
  for (const auto* url : {"http://127.0.0.1:8080/hook", "https://localhost/x", "http://[::1]/",
                          "http://10.0.0.7/", "http://169.254.169.254/latest/meta-data",
                          "http://[::ffff:192.168.1.1]:81/x", "http://0/"}) {
    const auto refused = check_webhook_host(url, false);
    EXPECT_EQ(refused.kind, HostCheck::kRefused) << url << ": " << refused.detail;
    EXPECT_NE(refused.detail.find("webhooks.allow_private"), std::string::npos) << url;
    EXPECT_EQ(check_webhook_host(url, true).kind, HostCheck::kAllowed) << url;
  }
  // A public address literal needs no DNS.
  EXPECT_EQ(check_webhook_host("https://93.184.216.34/hook?x=1#f", false).kind,
            HostCheck::kAllowed);
  EXPECT_EQ(check_webhook_host("ftp://93.184.216.34/", false).kind, HostCheck::kUnknown);
  EXPECT_EQ(check_webhook_host("http:///x", false).kind, HostCheck::kUnknown);
}

// With private addresses off a delivery to loopback never opens its connection: a permanent
// failure (libcurl's open-socket callback refuses it; nothing goes over a network).
TEST(WebhookSignatureTest, ADeliveryToANonPublicAddressIsRefusedForGood) {
  DeliveryLimits limits;
  limits.allow_private = false;
  const auto refused = post_webhook("http://127.0.0.1:9/hook", {}, "{}", limits);
  EXPECT_FALSE(refused.delivered);
  EXPECT_FALSE(refused.retryable);
  EXPECT_EQ(refused.status, 0);
  EXPECT_NE(refused.error.find("non-public"), std::string::npos) << refused.error;
  EXPECT_FALSE(post_webhook("gopher://x/", {}, "{}", limits).retryable);
}

}  // namespace
}  // namespace cauce::workers
