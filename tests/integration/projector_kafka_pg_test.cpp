// The projector on the real broker and PostgreSQL: the read models must equal a fold of the log
// computed independently (read_models.cpp), whatever restarts, rebalances or SIGKILLs happen.
#include <csignal>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "projector_fixture.hpp"

namespace cauce::testing {
namespace {

class ProjectorTest : public ProjectorFixture {};

TEST_F(ProjectorTest, FoldsTheLogIntoReadModelsExactlyOnceAcrossRestarts) {
  const auto written = write_synthetic_log(
      kafka_, {.contacts = 60, .calls_per_contact = 4, .alerts = 20, .garbage = 5});
  auto projector = start_projector();
  ASSERT_TRUE(caught_up());
  const auto events = read_event_log(kafka_, true);
  ASSERT_EQ(events.size(), written);
  const auto expected = reference_fold(events);
  EXPECT_EQ(read_models_text(db_), expected);
  EXPECT_EQ(row_count(db_, "alert_timeline"), 20 * 2 + 10 * 2);
  EXPECT_EQ(db_.query_value("SELECT count(*) FROM events WHERE type = 'contact.call_logged' AND "
                            "schema_version <> 2"),
            "0")
      << "v1 events are stored upcast";
  EXPECT_LT(projector->status().lag, 10);
  EXPECT_TRUE(projector->status().postgres_ok);

  // A new process of the same group starts from PostgreSQL's checkpoints: nothing twice.
  projector.reset();
  write_synthetic_log(kafka_, {.contacts = 5, .calls_per_contact = 2, .alerts = 1});
  projector = start_projector();
  ASSERT_TRUE(caught_up());
  EXPECT_EQ(read_models_text(db_), reference_fold(read_event_log(kafka_, true)));
}

TEST_F(ProjectorTest, EventRecordsRepeatedByAForeignProducerChangeNothing) {
  write_synthetic_log(kafka_, {.contacts = 20, .calls_per_contact = 3, .alerts = 4});
  const auto original = read_event_log(kafka_);
  write_again(kafka_, {original.begin(), original.begin() + 30});  // same event ids, new offsets
  write_synthetic_log(kafka_, {.contacts = 5, .calls_per_contact = 2, .alerts = 1});
  auto projector = start_projector();
  ASSERT_TRUE(caught_up());
  std::vector<LoggedEvent> unique;
  std::set<std::string> seen;
  for (const auto& e : read_event_log(kafka_)) {
    if (seen.insert(e.envelope.event_id).second) unique.push_back(e);
  }
  EXPECT_EQ(without_lines(read_models_text(db_), "notifications="),
            without_lines(reference_fold(unique), "notifications="));
  EXPECT_EQ(row_count(db_, "events"), static_cast<std::int64_t>(unique.size()));
}

TEST_F(ProjectorTest, NotificationsOlderThanTheRetentionAreDeleted) {
  db_.query_value(
      "INSERT INTO notifications (topic, type, aggregate_id, version, position, created_at) "
      "VALUES ('contacts', 'contact.registered', gen_random_uuid(), 1, '0:0', now() - interval "
      "'8 days'), ('contacts', 'contact.updated', gen_random_uuid(), 2, '0:1', now() - interval "
      "'6 days')");
  projections_.notifications_retention_h = 7 * 24;
  auto projector = start_projector();  // prunes when it starts, then every 10 minutes
  ASSERT_TRUE(eventually([&] { return row_count(db_, "notifications") == 1; }));
  EXPECT_EQ(db_.query_value("SELECT type FROM notifications"), "contact.updated");
  // ...and records how far it deleted, so a resume from before that is told (SSE `reset`).
  EXPECT_EQ(db_.query_value("SELECT pruned_through FROM notification_retention"),
            db_.query_value("SELECT min(id) - 1 FROM notifications"));
}

TEST_F(ProjectorTest, ARebalanceRedeliversButAppliesNothingTwice) {
  write_synthetic_log(kafka_, {.contacts = 200, .calls_per_contact = 5, .alerts = 10});
  auto first = start_projector();
  // A second member joins while the first is busy, takes partitions over from it, then leaves
  // again: partitions move twice, and either member may hold a batch of a partition it no
  // longer owns.
  ASSERT_TRUE(eventually([&] { return checkpoint_sum(db_) > 0; }, 30s, 10ms));
  auto second = start_projector();
  write_synthetic_log(kafka_, {.contacts = 100, .calls_per_contact = 5, .alerts = 10});
  ASSERT_TRUE(eventually([&] { return second->status().partitions.size() > 0; }, 30s));
  second.reset();
  write_synthetic_log(kafka_, {.contacts = 50, .calls_per_contact = 5, .alerts = 10});
  ASSERT_TRUE(caught_up());
  EXPECT_EQ(read_models_text(db_), reference_fold(read_event_log(kafka_, true)));
}

// The projector reads batch N+1 while it applies batch N. Members join and leave again and
// again while it catches up with small batches, so rebalances land while a batch is being
// read, queued or applied: a batch read across a rebalance must never be applied (the records
// before it may have been dropped with the queue), nor one queued behind a batch that failed.
TEST_F(ProjectorTest, RepeatedRebalancesWhileCatchingUpLoseNothing) {
  projections_.batch_max = 100;
  write_synthetic_log(kafka_, {.contacts = 1500, .calls_per_contact = 4, .alerts = 50});
  auto first = start_projector();
  ASSERT_TRUE(eventually([&] { return checkpoint_sum(db_) > 0; }, 30s, 10ms));
  for (int i = 0; i < 4; ++i) {
    auto other = start_projector();
    ASSERT_TRUE(eventually([&] { return other->status().partitions.size() > 0; }, 30s));
    std::this_thread::sleep_for(300ms);
  }
  ASSERT_TRUE(caught_up(120s));
  EXPECT_EQ(read_models_text(db_), reference_fold(read_event_log(kafka_, true)));
  EXPECT_EQ(db_.query_value("SELECT sum(calls_count) FROM contacts"), std::to_string(1500 * 4));
}

TEST_F(ProjectorTest, SigkillMidBatchLosesNothingAndCountsNothingTwice) {
  write_synthetic_log(kafka_, {.contacts = 3000, .calls_per_contact = 6, .alerts = 200});
  const auto end = log_end_sum(kafka_);
  auto env = cauce_env(db_.config(), kafka_);
  env["CAUCE_ROLES"] = "projector";
  env["CAUCE_HTTP_PORT"] = "0";
  env["CAUCE_PROJECTIONS_GROUP"] = projections_.group;
  env["CAUCE_PROJECTIONS_BATCH_MAX"] = "500";
  {
    CauceProcess cauce({"serve"}, env);
    ASSERT_TRUE(cauce.wait_for_line("projector started")) << cauce.output();
    // Kill it while it is part-way through the log (batches are in flight all the time).
    ASSERT_TRUE(eventually([&] { return checkpoint_sum(db_) > end / 4; }, 60s, 5ms))
        << cauce.output();
    cauce.signal(SIGKILL);
    ASSERT_TRUE(cauce.wait_exit());
  }
  const auto at_kill = checkpoint_sum(db_);
  EXPECT_LT(at_kill, end) << "the projector finished before it could be killed";
  {
    CauceProcess cauce({"serve"}, env);
    ASSERT_TRUE(caught_up(120s)) << cauce.output();
    cauce.signal(SIGTERM);
    EXPECT_EQ(cauce.wait_exit(), 0);
  }
  EXPECT_EQ(read_models_text(db_), reference_fold(read_event_log(kafka_, true)));
  EXPECT_EQ(db_.query_value("SELECT sum(calls_count) FROM contacts"), std::to_string(3000 * 6));
}

}  // namespace
}  // namespace cauce::testing
