#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include <cauce/core/crypto.hpp>

namespace cauce::core {
namespace {

TEST(CryptoTest, Sha256MatchesKnownVector) {
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
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
