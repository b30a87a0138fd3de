#include <gtest/gtest.h>

#include <cauce/core/crypto.hpp>
#include <cauce/core/migrations.hpp>

namespace cauce::core {
namespace {

TEST(MigrationsTest, ParsesVersionAndNameAndSortsByVersion) {
  const auto parsed =
      parse_migrations({{"0002_b.sql", "SELECT 2;"}, {"0001_api_keys.sql", "SELECT 1;"}});
  ASSERT_EQ(parsed.size(), 2u);
  EXPECT_EQ(parsed[0].version, 1);
  EXPECT_EQ(parsed[0].name, "api_keys");
  EXPECT_EQ(parsed[0].checksum, sha256_hex("SELECT 1;"));
  EXPECT_EQ(parsed[1].version, 2);
}

TEST(MigrationsTest, RefusesBadNamesAndDuplicateVersions) {
  EXPECT_THROW(parse_migrations({{"init.sql", ""}}), std::invalid_argument);
  EXPECT_THROW(parse_migrations({{"0001.sql", ""}}), std::invalid_argument);
  EXPECT_THROW(parse_migrations({{"0000_zero.sql", ""}}), std::invalid_argument);
  EXPECT_THROW(parse_migrations({{"x1_a.sql", ""}}), std::invalid_argument);
  EXPECT_THROW(parse_migrations({{"0001_a.sql", ""}, {"1_b.sql", ""}}), std::invalid_argument);
}

TEST(MigrationsTest, EmbeddedMigrationsAreTheFilesOfInfraSql) {
  const auto embedded = parse_migrations(embedded_migration_files());
  ASSERT_FALSE(embedded.empty());
  EXPECT_EQ(embedded.front().file_name, "0001_api_keys.sql");
  // 1, 2, 3, ... without a gap: a missing number is a migration lost in a merge.
  for (std::size_t i = 0; i < embedded.size(); ++i) {
    EXPECT_EQ(embedded[i].version, static_cast<int>(i) + 1) << embedded[i].file_name;
  }
}

}  // namespace
}  // namespace cauce::core
