#include <fstream>

#include <gtest/gtest.h>

#include <cauce/core/errors.hpp>
#include <cauce/core/migrations.hpp>
#include <cauce/core/postgres.hpp>

#include "fixtures.hpp"

namespace cauce::testing {
namespace {

std::unique_ptr<pqxx::connection> connect(const TempDatabase& db) {
  return core::connect_postgres(core::postgres_conninfo(db.config()));
}

// A query that runs past the pool's statement timeout is cancelled by PostgreSQL and becomes a
// retryable DependencyError (a 503 for the client), and the connection stays usable.
TEST(PgPoolTest, AStatementPastTheTimeoutIsCancelledAsADependencyError) {
  TempDatabase db;
  core::PgPool pool(core::postgres_conninfo(db.config()), 1, std::chrono::seconds(2),
                    std::chrono::milliseconds(200));
  try {
    pool.with_connection(
        [](pqxx::connection& c) { return pqxx::nontransaction(c).exec("SELECT pg_sleep(5)"); });
    ADD_FAILURE() << "not cancelled";
  } catch (const core::DependencyError& e) {
    EXPECT_TRUE(e.is_retryable());
    EXPECT_EQ(e.dependency(), "postgres");
  }
  EXPECT_EQ(pool.with_connection([](pqxx::connection& c) {
    return pqxx::nontransaction(c).exec1("SELECT 1")[0].as<int>();
  }),
            1);
}

TEST(MigrationsPgTest, FreshDatabaseGetsEveryMigrationOnce) {
  TempDatabase db;
  const auto migrations = core::parse_migrations(core::embedded_migration_files());
  auto connection = connect(db);
  const auto first = core::migrate(*connection, migrations);
  EXPECT_EQ(first.applied.size(), migrations.size());
  EXPECT_EQ(first.already_applied, 0);
  EXPECT_EQ(db.query_value("SELECT count(*) FROM schema_migrations"),
            std::to_string(migrations.size()));
  EXPECT_EQ(db.query_value("SELECT to_regclass('api_keys')::text"), "api_keys");

  const auto again = core::migrate(*connection, migrations);
  EXPECT_TRUE(again.applied.empty());
  EXPECT_EQ(again.already_applied, static_cast<int>(migrations.size()));
}

TEST(MigrationsPgTest, AnAppliedFileThatChangedIsRefusedBeforeAnythingElseIsApplied) {
  TempDatabase db;
  TempDir dir;
  std::ofstream(dir.path() / "0001_first.sql") << "CREATE TABLE first (id int);";
  auto connection = connect(db);
  core::migrate(*connection, core::parse_migrations(core::read_migration_files(dir.path())));

  std::ofstream(dir.path() / "0001_first.sql", std::ios::app) << "\n-- edited later";
  std::ofstream(dir.path() / "0002_second.sql") << "CREATE TABLE second (id int);";
  try {
    core::migrate(*connection, core::parse_migrations(core::read_migration_files(dir.path())));
    FAIL() << "a tampered migration was accepted";
  } catch (const core::MigrationError& e) {
    EXPECT_NE(std::string(e.what()).find("0001_first.sql was changed"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(db.query_value("SELECT to_regclass('second')::text"), "");
  EXPECT_EQ(db.query_value("SELECT count(*) FROM schema_migrations"), "1");
}

TEST(MigrationsPgTest, ADatabaseNewerThanTheBuildIsRefused) {
  TempDatabase db;
  const auto migrations = core::parse_migrations(core::embedded_migration_files());
  auto connection = connect(db);
  core::migrate(*connection, migrations);
  pqxx::nontransaction(*connection)
      .exec("INSERT INTO schema_migrations (version, name, checksum) VALUES (999, 'future', 'x')");
  EXPECT_THROW(core::migrate(*connection, migrations), core::MigrationError);
}

TEST(MigrationsPgTest, AFailingMigrationLeavesNoTrace) {
  TempDatabase db;
  TempDir dir;
  std::ofstream(dir.path() / "0001_half.sql") << "CREATE TABLE half (id int); SELECT 1/0;";
  auto connection = connect(db);
  EXPECT_ANY_THROW(
      core::migrate(*connection, core::parse_migrations(core::read_migration_files(dir.path()))));
  EXPECT_EQ(db.query_value("SELECT to_regclass('half')::text"), "");
  EXPECT_EQ(db.query_value("SELECT count(*) FROM schema_migrations"), "0");
}

TEST(MigrationsPgTest, ConcurrentStartsApplyEachMigrationOnce) {
  TempDatabase db;
  const auto migrations = core::parse_migrations(core::embedded_migration_files());
  std::atomic<std::size_t> applied{0};
  std::vector<std::thread> starts;
  for (int i = 0; i < 4; ++i) {
    starts.emplace_back([&] {
      auto connection = connect(db);
      applied += core::migrate(*connection, migrations).applied.size();
    });
  }
  for (auto& t : starts) t.join();
  EXPECT_EQ(applied.load(), migrations.size());
}

}  // namespace
}  // namespace cauce::testing
