// Which addresses a report download may connect to when download.allow_private is off: public
// unicast only (the SSRF guard of workers/download.hpp).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <cauce/workers/download.hpp>

namespace cauce::workers {
namespace {

bool non_public(const char* text) {
  sockaddr_in v4{};
  if (::inet_pton(AF_INET, text, &v4.sin_addr) == 1) {
    v4.sin_family = AF_INET;
    return is_non_public_address(reinterpret_cast<const sockaddr&>(v4));
  }
  sockaddr_in6 v6{};
  if (::inet_pton(AF_INET6, text, &v6.sin6_addr) != 1) ADD_FAILURE() << "not an address: " << text;
  v6.sin6_family = AF_INET6;
  return is_non_public_address(reinterpret_cast<const sockaddr&>(v6));
}

TEST(DownloadAddressTest, LoopbackPrivateLinkLocalCgnatAndMetadataAreRefused) {
  for (const auto* a : {"127.0.0.1",
                        "127.255.0.9",
                        "10.1.2.3",
                        "172.16.0.1",
                        "172.31.255.255",
                        "192.168.1.1",
                        "169.254.169.254",
                        "169.254.0.1",
                        "100.64.0.1",
                        "100.127.255.255",
                        "0.0.0.0",
                        "255.255.255.255",
                        "224.0.0.1",
                        "192.0.2.10",
                        "198.18.0.1",
                        "::1",
                        "::",
                        "fe80::1",
                        "fc00::1",
                        "fd12:3456::1",
                        "ff02::1",
                        "::ffff:127.0.0.1",
                        "::ffff:10.0.0.1",
                        "::ffff:169.254.169.254",
                        "64:ff9b::a00:1",
                        "2001:db8::1",
                        "::7f00:1"}) {
    EXPECT_TRUE(non_public(a)) << a;
  }
}

TEST(DownloadAddressTest, PublicAddressesAreAllowed) {
  for (const auto* a :
       {"8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "169.255.0.1", "192.169.0.1",
        "2001:4860:4860::8888", "2a00:1450::1", "::ffff:8.8.8.8", "64:ff9b::808:808"}) {
    EXPECT_FALSE(non_public(a)) << a;
  }
}

TEST(DownloadLimitsTest, ComeFromTheDownloadSettings) {
  core::DownloadConfig config;
  EXPECT_FALSE(DownloadLimits::from(config).allow_private);
  config.allow_private = true;
  config.max_bytes = 1234;
  config.max_redirects = 2;
  config.connect_timeout_ms = 700;
  config.total_timeout_ms = 9000;
  const auto limits = DownloadLimits::from(config);
  EXPECT_TRUE(limits.allow_private);
  EXPECT_EQ(limits.max_bytes, 1234);
  EXPECT_EQ(limits.max_redirects, 2);
  EXPECT_EQ(limits.connect_timeout, std::chrono::milliseconds(700));
  EXPECT_EQ(limits.total_timeout, std::chrono::milliseconds(9000));
  EXPECT_EQ(limits.content_types, (std::vector<std::string>{"text/csv", "application/json"}));
}

}  // namespace
}  // namespace cauce::workers
