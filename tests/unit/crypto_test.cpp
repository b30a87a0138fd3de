#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include <cauce/core/crypto.hpp>

namespace cauce::core {
namespace {

TEST(CryptoTest, Sha256MatchesKnownVector) {
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

// RFC 4231's test vectors (HMAC-SHA-256 column; case 5's output is truncated to 128 bits there).
TEST(CryptoTest, HmacSha256MatchesRfc4231) {
  const auto bytes = [](std::size_t n, char c) { return std::string(n, c); };
  EXPECT_EQ(hmac_sha256_hex(bytes(20, '\x0b'), "Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  EXPECT_EQ(hmac_sha256_hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_EQ(hmac_sha256_hex(bytes(20, '\xaa'), bytes(50, '\xdd')),
            "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
  std::string key4;
  for (int i = 1; i <= 25; ++i) key4.push_back(static_cast<char>(i));
  EXPECT_EQ(hmac_sha256_hex(key4, bytes(50, '\xcd')),
            "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");
  EXPECT_EQ(hmac_sha256_hex(bytes(20, '\x0c'), "Test With Truncation").substr(0, 32),
            "a3b6167473100ee06e0c796c2955552b");
  EXPECT_EQ(
      hmac_sha256_hex(bytes(131, '\xaa'), "Test Using Larger Than Block-Size Key - Hash Key First"),
      "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  EXPECT_EQ(hmac_sha256_hex(bytes(131, '\xaa'),
                            "This is a test using a larger than block-size key and a larger than "
                            "block-size data. The key needs to be hashed before being used by the "
                            "HMAC algorithm."),
            "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
  // An empty key is a key (not "none"): RFC 2104 pads it with zeros.
  EXPECT_EQ(hmac_sha256_hex("", ""),
            "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

TEST(CryptoTest, RandomHexHasTheLengthAndDiffers) {
  const auto a = random_hex(16);
  EXPECT_EQ(a.size(), 32u);
  EXPECT_NE(a, random_hex(16));
}

TEST(CryptoTest, ConstantTimeEqualComparesContentAndLength) {
  EXPECT_TRUE(constant_time_equal("abc", "abc"));
  EXPECT_FALSE(constant_time_equal("abc", "abd"));
  EXPECT_FALSE(constant_time_equal("abc", "abcd"));
  EXPECT_TRUE(constant_time_equal("", ""));
}

TEST(Sha256Test, PiecesGiveTheDigestOfTheWhole) {
  const std::string text = "José Núñez,Málaga,12\n" + std::string(100000, 'x');
  Sha256 sum;
  for (std::size_t i = 0; i < text.size(); i += 777)
    sum.update(std::string_view(text).substr(i, 777));
  EXPECT_EQ(sum.hex(), sha256_hex(text));
  const auto path = std::filesystem::temp_directory_path() / ("cauce-sha-" + random_hex(4));
  std::ofstream(path, std::ios::binary) << text;
  EXPECT_EQ(sha256_file_hex(path.string()), sha256_hex(text));
  std::filesystem::remove(path);
  EXPECT_THROW(sha256_file_hex("/nonexistent/cauce"), std::runtime_error);
}

}  // namespace
}  // namespace cauce::core
