#include <fstream>

#include <gtest/gtest.h>

#include <cauce/core/errors.hpp>
#include <cauce/core/migrations.hpp>
#include <cauce/core/postgres.hpp>
#include <cauce/projections/replay.hpp>

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

// What a schema holds, independent of its name: columns in order (type, nullability, default,
// generation), constraints and indexes, one line each.
std::string shape_of(const TempDatabase& db, const std::string& schema) {
  return db.query_value(
      "SELECT string_agg(line, E'\\n' ORDER BY line) FROM ("
      "  SELECT format('column %s %s %s %s %s %s', table_name, ordinal_position, column_name, "
      "         data_type, is_nullable, coalesce(column_default, generation_expression, '-')) AS "
      "line"
      "  FROM information_schema.columns WHERE table_schema = '" +
      schema +
      "'"
      "  UNION ALL"
      "  SELECT format('constraint %s %s', c.conrelid::regclass::text, pg_get_constraintdef(c.oid))"
      "  FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace"
      "  WHERE n.nspname = '" +
      schema +
      "'"
      "  UNION ALL"
      "  SELECT format('index %s', indexdef) FROM pg_indexes WHERE schemaname = '" +
      schema +
      "'"
      "  UNION ALL"
      "  SELECT format('trigger %s', pg_get_triggerdef(t.oid)) FROM pg_trigger t"
      "  JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
      "  WHERE NOT t.tgisinternal AND n.nspname = '" +
      schema +
      "'"
      "  UNION ALL"
      "  SELECT format('function %s %s', p.proname, p.prosrc) FROM pg_proc p"
      "  JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = '" +
      schema +
      "'"
      ") lines");
}

// A replay builds a generation from projections/sql/read_model.sql; it must be exactly what the
// migrations left the first generation as, or queries would see a different shape after a switch.
TEST(MigrationsPgTest, ANewReadModelGenerationHasTheShapeTheMigrationsGaveTheFirst) {
  TempDatabase db;
  auto connection = connect(db);
  core::migrate(*connection, core::parse_migrations(core::embedded_migration_files()));
  {
    pqxx::work txn(*connection);
    txn.exec("CREATE SCHEMA read_model_fresh");
    txn.exec("SET LOCAL search_path TO read_model_fresh, public");
    for (const auto& file : projections::embedded_read_model_files()) txn.exec(file.sql);
    txn.commit();
  }
  auto migrated = shape_of(db, "read_model_1");
  auto fresh = shape_of(db, "read_model_fresh");
  ASSERT_FALSE(migrated.empty());
  for (auto* text : {&migrated, &fresh}) {
    for (const std::string name : {"read_model_1.", "read_model_fresh."}) {
      for (auto at = text->find(name); at != std::string::npos; at = text->find(name)) {
        text->erase(at, name.size());
      }
    }
  }
  EXPECT_EQ(fresh, migrated);
  // Every table the views expose exists in a generation.
  EXPECT_EQ(db.query_value("SELECT count(*) FROM unnest(read_model_tables()) t "
                           "WHERE to_regclass('read_model_fresh.' || t) IS NULL"),
            "0");
}

// Migrations 0009-0011 alter a generation that already holds rows (a running system upgraded):
// the claim columns, alerts.acknowledged_at from the timeline, and counters equal to what the
// rows say; from then on the triggers keep them.
TEST(MigrationsPgTest, TheDashboardCountersStartFromTheRowsAnUpgradedDatabaseHolds) {
  TempDatabase db;
  auto connection = connect(db);
  const auto all = core::parse_migrations(core::embedded_migration_files());
  std::vector<core::Migration> before;
  for (const auto& m : all) {
    if (m.version <= 8) before.push_back(m);
  }
  core::migrate(*connection, before);
  {
    pqxx::work txn(*connection);
    txn.exec(R"(
      INSERT INTO contacts (id, name, phone, status, created_at, updated_at, version) VALUES
        ('01a24587-0000-7000-8000-000000000001', 'Ada', '+442079460958', 'active', now(), now(), 1),
        ('01a24587-0000-7000-8000-000000000002', 'Bob', '+442079460959', 'archived', now(), now(), 2);
      INSERT INTO calls VALUES
        ('01a24587-0000-8000-8000-0000000000c1', '01a24587-0000-7000-8000-000000000001',
         'answered', 60, NULL, 'ana', now(), 2),
        ('01a24587-0000-8000-8000-0000000000c2', '01a24587-0000-7000-8000-000000000001',
         'busy', 0, NULL, NULL, now(), 3);
      INSERT INTO alerts (id, level, title, region, state, raised_at, updated_at, closed_at,
                          version) VALUES
        ('01a24587-0000-7000-8000-0000000000a1', 'critical', 'x', 'north', 'acknowledged',
         now() - interval '10 minutes', now(), NULL, 2),
        ('01a24587-0000-7000-8000-0000000000a2', 'warning', 'y', NULL, 'closed',
         now() - interval '20 minutes', now(), now(), 2),
        ('01a24587-0000-7000-8000-0000000000a3', 'warning', 'z', NULL, 'open', now(), now(), NULL,
         1);
      INSERT INTO alert_timeline VALUES
        ('01a24587-0000-7000-8000-0000000000a1', 2, 'alert.acknowledged',
         now() - interval '4 minutes', 'op', '{}'))");
    txn.commit();
  }
  core::migrate(*connection, all);
  const auto value = [&](const std::string& sql) { return db.query_value(sql); };
  EXPECT_EQ(value("SELECT count(*) FROM information_schema.columns WHERE table_schema = "
                  "'read_model_1' AND table_name IN ('contacts', 'alerts') AND column_name IN "
                  "('claimed_by', 'claimed_until', "
                  "'acknowledged_at')"),
            "3");
  EXPECT_EQ(value("SELECT round(seconds) FROM alert_acks"), "360") << "from the timeline";
  EXPECT_EQ(value("SELECT string_agg(level || '/' || region || '=' || count, ' ' ORDER BY level) "
                  "FROM stats_open_alerts"),
            "critical/north=1 warning/=1");
  EXPECT_EQ(value("SELECT sum(raised) || '/' || sum(closed) FROM stats_alert_hours"), "3/1");
  EXPECT_EQ(value("SELECT string_agg(operator || ':' || outcome || '=' || count, ' ' "
                  "ORDER BY operator) FROM stats_calls_day"),
            ":busy=1 ana:answered=1");
  EXPECT_EQ(value("SELECT string_agg(status || '=' || count, ' ' ORDER BY status) "
                  "FROM stats_contacts"),
            "active=1 archived=1");
  // The triggers keep them from here, through the views like any writer.
  db.query_value(
      "UPDATE alerts SET state = 'closed', closed_at = now() "
      "WHERE id = '01a24587-0000-7000-8000-0000000000a1'");
  EXPECT_EQ(value("SELECT string_agg(level || '/' || region || '=' || count, ' ' ORDER BY level) "
                  "FROM stats_open_alerts"),
            "critical/north=0 warning/=1");
}

}  // namespace
}  // namespace cauce::testing
