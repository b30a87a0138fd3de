// The workers' due-time table (workers/src/job_table.hpp) against a real PostgreSQL: the
// statements the feeder and the runners run, in the orders a race between them can give.
#include <chrono>

#include <gtest/gtest.h>

#include <cauce/core/log.hpp>
#include <cauce/core/migrations.hpp>
#include <cauce/core/postgres.hpp>
#include <cauce/projections/queries.hpp>
#include <cauce/workers/schedule.hpp>

#include "fixtures.hpp"
#include "job_table.hpp"
#include "read_model_digests.hpp"

namespace cauce::testing {
namespace {

const char* const kSchedule = "0190a8b2-5c1e-7d3a-9f00-00000000a001";

std::int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

commands::EventEnvelope schedule_event(const std::string& what, std::int64_t version,
                                       std::int64_t at_us, const std::string& data) {
  commands::EventEnvelope e;
  e.type = "report_schedule." + what;
  e.aggregate_type = "report_schedule";
  e.aggregate_id = kSchedule;
  e.version = version;
  e.occurred_at_us = at_us;
  e.data = data;
  return e;
}

std::string definition(const std::string& recurrence) {
  return R"({"title":"Calls","source_url":"https://crm.example/calls.csv",)" + recurrence +
         R"(,"timezone":"UTC"})";
}

class JobTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pg_ = core::connect_postgres(core::postgres_conninfo(db_.config()));
    core::migrate(*pg_, core::parse_migrations(core::embedded_migration_files()));
  }

  // What the feeder does with an event.
  void feed(const commands::EventEnvelope& e) {
    pqxx::work txn(*pg_);
    for (const auto& entry : workers::schedule_entries_after(e)) workers::upsert_entry(txn, entry);
    txn.commit();
  }

  // What a timer runner's claim returns: the claimed row's version, or -1 when none is due.
  std::int64_t claim(const std::string& token) {
    pqxx::work txn(*pg_);
    const auto rows = txn.exec_params(workers::kClaimJob, token, 30'000, std::string("timed"));
    txn.commit();
    return rows.empty() ? -1 : rows[0][2].as<std::int64_t>();
  }

  void release(const std::string& token, std::int64_t awaits, std::chrono::milliseconds delay) {
    pqxx::work txn(*pg_);
    txn.exec_params(workers::kReleaseJob, "report_schedule", kSchedule, awaits, delay.count(),
                    token);
    txn.commit();
  }

  std::int64_t due_at_us() const {
    return std::stoll(db_.query_value(
        "SELECT (extract(epoch FROM due_at) * 1e6)::bigint FROM worker_jobs WHERE kind = "
        "'report_schedule'"));
  }

  TempDatabase db_;
  std::unique_ptr<pqxx::connection> pg_;
};

// A runner claimed the schedule at version 1 (a yearly cron) and computed its next slot, months
// away; meanwhile a PATCH moved it to version 2 (every minute, due now). The runner's release
// from its claim of version 1 must not put the changed schedule off to the old recurrence's slot.
TEST_F(JobTableTest, AReleaseFromAClaimOfAnOlderVersionNeverPutsTheRowOff) {
  const auto t0 = now_us() - 10'000'000;
  feed(schedule_event("created", 1, t0, definition(R"("cron":"0 7 1 1 *")")));
  ASSERT_EQ(claim("runner-a/1"), 1);
  const auto changed_at = now_us() - 1'000'000;
  feed(schedule_event("changed", 2, changed_at, definition(R"("every":"1m")")));
  release("runner-a/1", 1, std::chrono::hours(24 * 300));  // the old recurrence's next slot
  EXPECT_EQ(due_at_us(), changed_at) << "the stale release put the changed schedule off";
  EXPECT_EQ(claim("runner-b/1"), 2) << "the changed schedule is due at once";
}

// The same release at the version it claimed does put the row off (no slot is due before then).
TEST_F(JobTableTest, AReleaseAtTheClaimedVersionPutsTheRowOffToItsNextSlot) {
  feed(schedule_event("created", 1, now_us() - 10'000'000, definition(R"("every":"1h")")));
  ASSERT_EQ(claim("runner-a/1"), 1);
  release("runner-a/1", 1, std::chrono::minutes(50));
  EXPECT_GE(due_at_us(), now_us() + 49LL * 60 * 1'000'000);
  EXPECT_EQ(claim("runner-b/1"), -1) << "claimed before its slot";
  // And a change written after the put-off makes it due at the change's time.
  const auto changed_at = now_us() - 1'000'000;
  feed(schedule_event("changed", 2, changed_at, definition(R"("every":"1m")")));
  EXPECT_EQ(due_at_us(), changed_at);
  EXPECT_EQ(claim("runner-b/1"), 2);
}

// slot_after never moves behind the last slot that fired: a resume stamped by a process whose
// clock is behind the one that fired it counts from that slot.
TEST_F(JobTableTest, AResumeFromABehindClockKeepsTheSlotsAfterTheLastFired) {
  const auto t0 = now_us() - 60'000'000;
  feed(schedule_event("created", 1, t0, definition(R"("every":"10s")")));
  const auto slot = (t0 / 10'000'000 + 1) * 10'000'000;
  feed(schedule_event("triggered", 2, slot + 100'000,
                      R"({"slot_at":")" + core::format_utc_micros(slot) +
                          R"(","report_id":"0190a8b2-5c1e-7d3a-9f00-00000000e001","title":"Calls",)"
                          R"("source_url":"https://crm.example/calls.csv"})"));
  feed(schedule_event("paused", 3, slot + 200'000, "{}"));
  feed(schedule_event("resumed", 4, slot - 2'000'000, "{}"));  // 2 s behind
  EXPECT_EQ(db_.query_value("SELECT (extract(epoch FROM slot_after) * 1e6)::bigint FROM "
                            "worker_jobs WHERE kind = 'report_schedule'"),
            std::to_string(slot));
  EXPECT_EQ(db_.query_value("SELECT schedule_revision FROM worker_jobs WHERE kind = "
                            "'report_schedule'"),
            "4");
}

// A backup records the read models' digests at its database's schema version; its restore,
// migrated to this build's, digests the same rows over those columns only: a backup taken before
// 0013 (reports without schedule_id, slot_at, source_auth; backups without 0016's copy columns)
// matches its restore.
TEST(BackupDigestTest, ARestoreDigestsOnlyTheColumnsTheBackupsDatabaseHad) {
  TempDatabase db;
  auto pg = core::connect_postgres(core::postgres_conninfo(db.config()));
  auto migrations = core::parse_migrations(core::embedded_migration_files());
  std::vector<core::Migration> before_0013;
  for (const auto& m : migrations) {
    if (m.version < 13) before_0013.push_back(m);
  }
  core::migrate(*pg, before_0013);
  {
    pqxx::work txn(*pg);
    txn.exec(
        "INSERT INTO read_model_1.reports (id, title, source_url, status, requested_at, "
        "updated_at, version) VALUES ('0190a8b2-5c1e-7d3a-9f00-00000000b001', 'Calls', "
        "'https://crm.example/c.csv', 'requested', '2026-01-05T07:00:00Z', "
        "'2026-01-05T07:00:00Z', 1)");
    txn.exec(
        "INSERT INTO read_model_1.contacts (id, name, phone, status, created_at, updated_at, "
        "version) VALUES ('0190a8b2-5c1e-7d3a-9f00-00000000c001', 'Ana', '+351 912 345 678', "
        "'active', '2026-01-05T07:00:00Z', '2026-01-05T07:00:00Z', 1)");
    // 0016 adds the backups' copy columns.
    txn.exec(
        "INSERT INTO read_model_1.backups (id, status, requested_at, updated_at, version) VALUES "
        "('0190a8b2-5c1e-7d3a-9f00-00000000a001', 'requested', '2026-01-05T07:00:00Z', "
        "'2026-01-05T07:00:00Z', 1)");
    txn.commit();
  }
  const auto at_backup = [&] {
    pqxx::work txn(*pg);
    return workers::table_digests(txn, 12);
  }();
  EXPECT_EQ(at_backup.at("reports").rows, 1);
  EXPECT_EQ(at_backup.at("backups").rows, 1);
  EXPECT_EQ(at_backup.count("report_schedules"), 0u) << "no such table before 0013";
  core::migrate(*pg, migrations);  // the restore's database: 0013 adds the reports' columns
  pqxx::work txn(*pg);
  const auto restored = workers::table_digests(txn, 12);
  for (const auto* table : {"reports", "contacts", "alerts", "events", "backups"}) {
    EXPECT_EQ(restored.at(table).rows, at_backup.at(table).rows) << table;
    EXPECT_EQ(restored.at(table).md5, at_backup.at(table).md5) << table;
  }
  EXPECT_NE(workers::table_digests(txn, 13).at("reports").md5, at_backup.at("reports").md5)
      << "over every column the restored rows differ (the new columns): hence the exclusion";
  EXPECT_EQ(workers::table_digests(txn, 13).at("contacts").md5, at_backup.at("contacts").md5);
  EXPECT_NE(workers::table_digests(txn, 16).at("backups").md5, at_backup.at("backups").md5);
  EXPECT_EQ(workers::table_digests(txn, 15).at("backups").md5, at_backup.at("backups").md5);
}

// /v1/reports/latest?schedule_id=: the report of the schedule's latest slot, even when an older
// slot's request was retried and so requested after the later slot's.
TEST(LatestReportTest, IsTheLatestSlotsEvenWhenAnOlderSlotWasRequestedLater) {
  TempDatabase db;
  {
    auto pg = core::connect_postgres(core::postgres_conninfo(db.config()));
    core::migrate(*pg, core::parse_migrations(core::embedded_migration_files()));
    pqxx::work txn(*pg);
    const auto insert = [&](const char* id, const char* slot, const char* requested) {
      txn.exec_params(
          "INSERT INTO read_model_1.reports (id, title, source_url, status, requested_at, "
          "updated_at, version, schedule_id, slot_at) VALUES ($1::uuid, 'Calls', "
          "'https://crm.example/c.csv', 'ready', $3::timestamptz, $3::timestamptz, 4, $4::uuid, "
          "$2::timestamptz)",
          id, slot, requested, kSchedule);
    };
    insert("0190a8b2-5c1e-7d3a-9f00-00000000d001", "2026-01-05T07:00:00Z",
           "2026-01-05T07:00:00.2Z");
    // 07:00's request failed once and was retried after 07:15's was requested.
    insert("0190a8b2-5c1e-7d3a-9f00-00000000d015", "2026-01-05T07:15:00Z",
           "2026-01-05T07:15:00.2Z");
    insert("0190a8b2-5c1e-7d3a-9f00-00000000d000", "2026-01-05T06:45:00Z", "2026-01-05T07:15:01Z");
    txn.commit();
  }
  core::PgPool pool(core::postgres_conninfo(db.config()), 1, std::chrono::seconds(5),
                    std::chrono::milliseconds(5000));
  projections::ReadModels models(pool);
  const auto latest = models.latest_report({.schedule_id = kSchedule, .status = "", .since = ""});
  ASSERT_TRUE(latest);
  EXPECT_NE(latest->find("0190a8b2-5c1e-7d3a-9f00-00000000d015"), std::string::npos) << *latest;
  const auto ready =
      models.latest_report({.schedule_id = kSchedule, .status = "ready", .since = ""});
  ASSERT_TRUE(ready);
  EXPECT_EQ(*ready, *latest);
  EXPECT_FALSE(models.latest_report({.schedule_id = kSchedule, .status = "failed", .since = ""}));
}

}  // namespace
}  // namespace cauce::testing
