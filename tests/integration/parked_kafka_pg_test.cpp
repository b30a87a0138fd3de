// Issue 11: one event the read models cannot hold costs one parked event, never the projection.
// Poison records are produced by hand onto the event topic (like `kcat -P`), between ordinary
// events; the projector must park exactly those (and the later events of their aggregates),
// project everything else, and let an operator retry or skip them.

#include <gtest/gtest.h>

#include <cauce/commands/envelope.hpp>
#include <cauce/projections/parked_events.hpp>

#include "projector_fixture.hpp"

namespace cauce::testing {
namespace {

using projections::RetryResult;

class ParkedTest : public ProjectorFixture {
 protected:
  projections::ParkedEvents parked() {
    return projections::ParkedEvents(core::postgres_conninfo(db_.config()), projections_.name,
                                     kafka_.events_topic);
  }

  std::string contact_event(const std::string& id, std::int64_t version, const std::string& data,
                            const std::string& occurred_at = "") {
    return synthetic_envelope("contact", id, version,
                              version == 1 ? "contact.registered" : "contact.updated", 1, data,
                              occurred_at);
  }
};

// The read models' text without the lines of `aggregate_ids`.
std::string fold_without(const std::vector<LoggedEvent>& events,
                         const std::set<std::string>& aggregate_ids) {
  std::vector<LoggedEvent> kept;
  for (const auto& e : events) {
    if (!aggregate_ids.contains(e.envelope.aggregate_id)) kept.push_back(e);
  }
  return reference_fold(kept);
}

TEST_F(ParkedTest, PoisonRecordsAreParkedAndEverythingElseIsProjected) {
  write_synthetic_log(kafka_, {.contacts = 20, .calls_per_contact = 2, .alerts = 4});
  const auto year_zero = commands::uuid_v7(1);  // PostgreSQL has no year 0 (COPY refused it)
  const auto nul = commands::uuid_v7(2);        // U+0000 cannot be stored in text or jsonb
  write_records(
      kafka_,
      {{year_zero,
        contact_event(year_zero, 1, R"({"name":"Zero","phone":"+351912345678","tags":[]})",
                      "0000-01-01T00:00:00.000000Z")},
       {year_zero, contact_event(year_zero, 2, R"({"name":"Zero again"})")},
       {nul, contact_event(nul, 1, R"({"name":"A\u0000B","phone":"+351912345678","tags":[]})")},
       {nul, contact_event(nul, 2, R"({"name":"B"})")},
       {"not-a-uuid", "this is not JSON"}});
  write_synthetic_log(kafka_, {.contacts = 10, .calls_per_contact = 1, .alerts = 2});

  auto projector = start_projector();
  ASSERT_TRUE(caught_up()) << "the projection went past the poison";
  const auto events = read_event_log(kafka_, true);
  EXPECT_EQ(read_models_text(db_), fold_without(events, {year_zero, nul}));

  auto store = parked();
  const auto open = store.list(false, 0, 100);
  ASSERT_EQ(open.size(), 5u);
  std::map<std::string, std::vector<projections::ParkedEvent>> by_aggregate;
  for (const auto& e : open) by_aggregate[e.aggregate_id.value_or("-")].push_back(e);
  ASSERT_EQ(by_aggregate[year_zero].size(), 2u);
  EXPECT_NE(by_aggregate[year_zero][0].error.find("0001 to 9999"), std::string::npos)
      << "refused before PostgreSQL could: " << by_aggregate[year_zero][0].error;
  EXPECT_FALSE(by_aggregate[year_zero][0].sqlstate);
  EXPECT_NE(by_aggregate[year_zero][1].error.find("held back"), std::string::npos);
  ASSERT_EQ(by_aggregate[nul].size(), 2u);
  EXPECT_NE(by_aggregate[nul][0].error.find("U+0000"), std::string::npos)
      << by_aggregate[nul][0].error;
  EXPECT_FALSE(by_aggregate[nul][0].event_id) << "it did not decode; its key names the aggregate";
  EXPECT_NE(by_aggregate[nul][1].error.find("held back"), std::string::npos);
  ASSERT_EQ(by_aggregate["-"].size(), 1u);
  EXPECT_NE(by_aggregate["-"][0].error.find("not a cauce event"), std::string::npos);
  EXPECT_TRUE(eventually([&] { return projector->status().parked == 5; }, 20s));
  EXPECT_TRUE(projector->status().postgres_ok);

  // Retrying what still cannot be stored fails and counts; the held-back one waits its turn.
  const auto first = by_aggregate[year_zero][0].id;
  const auto again = store.retry(first, "test");
  EXPECT_EQ(again.outcome, RetryResult::Outcome::kFailed);
  EXPECT_FALSE(again.error.empty());
  const auto after_retry = store.get(first);
  ASSERT_TRUE(after_retry);
  EXPECT_EQ(after_retry->attempts, 2);
  EXPECT_EQ(store.retry(by_aggregate[year_zero][1].id, "test").outcome,
            RetryResult::Outcome::kBehindAnother);
  // Later events of a parked aggregate keep being held back; others go on.
  write_records(kafka_, {{nul, contact_event(nul, 3, R"({"name":"C"})")}});
  write_synthetic_log(kafka_, {.contacts = 3, .calls_per_contact = 1, .alerts = 1});
  ASSERT_TRUE(caught_up());
  EXPECT_EQ(store.list(false, 0, 100).size(), 6u);
  EXPECT_EQ(read_models_text(db_), fold_without(read_event_log(kafka_, true), {year_zero, nul}));
  EXPECT_TRUE(eventually([&] { return projector->status().parked == 6; }, 20s));
  // The operator gives up on the first: the one held back behind it applies.
  EXPECT_TRUE(store.skip(first, "test"));
  EXPECT_FALSE(store.skip(first, "test")) << "skipped once";
  EXPECT_EQ(store.retry(first, "test").outcome, RetryResult::Outcome::kResolved);
  EXPECT_EQ(store.retry(by_aggregate[year_zero][1].id, "test").outcome,
            RetryResult::Outcome::kApplied);
  EXPECT_EQ(store.list(false, 0, 100).size(), 4u);
  EXPECT_EQ(store.list(true, 0, 100).size(), 6u);
  EXPECT_EQ(db_.query_value("SELECT count(*) FROM events WHERE aggregate_id = '" + year_zero + "'"),
            "1")
      << "the update retried after the registration was skipped";
}

TEST_F(ParkedTest, ARetryAfterTheFixAppliesTheEventAndThoseHeldBackInOrder) {
  // The "bug": a constraint that refuses an email; the "fix": dropping it. (On the live
  // generation's table: `contacts` itself is a view of it.)
  db_.query_value(
      "ALTER TABLE read_model_1.contacts ADD CONSTRAINT no_bob CHECK (email <> 'bob@example.org')");
  const auto bob = commands::uuid_v7(3);
  write_synthetic_log(kafka_, {.contacts = 5, .calls_per_contact = 1, .alerts = 1});
  write_records(
      kafka_, {{bob, contact_event(bob, 1, R"({"name":"Bob","phone":"+351912345678","tags":[]})")},
               {bob, contact_event(bob, 2, R"({"email":"bob@example.org"})")},
               {bob, contact_event(bob, 3, R"({"name":"Robert"})")}});
  write_synthetic_log(kafka_, {.contacts = 5, .calls_per_contact = 1, .alerts = 1});
  auto projector = start_projector();
  ASSERT_TRUE(caught_up());
  auto store = parked();
  const auto open = store.list(false, 0, 100);
  ASSERT_EQ(open.size(), 2u) << "the update that breaks the constraint, and the one after it";
  EXPECT_EQ(open[0].sqlstate.value_or(""), "23514") << open[0].error;
  EXPECT_EQ(open[0].type.value_or(""), "contact.updated");
  EXPECT_EQ(
      db_.query_value("SELECT name || ' v' || version FROM contacts WHERE id = '" + bob + "'"),
      "Bob v1")
      << "the registration before the poison is projected";

  db_.query_value("ALTER TABLE read_model_1.contacts DROP CONSTRAINT no_bob");
  const auto retried = store.retry(open[0].id, "test");
  ASSERT_EQ(retried.outcome, RetryResult::Outcome::kApplied) << retried.error;
  EXPECT_EQ(retried.applied, 2u);
  EXPECT_TRUE(store.list(false, 0, 100).empty());
  EXPECT_EQ(db_.query_value("SELECT name || ' ' || email || ' v' || version FROM contacts "
                            "WHERE id = '" +
                            bob + "'"),
            "Robert bob@example.org v3");
  EXPECT_EQ(db_.query_value("SELECT count(*) FROM events WHERE aggregate_id = '" + bob + "'"), "3");
  EXPECT_EQ(read_models_text(db_), reference_fold(read_event_log(kafka_, true)));
}

}  // namespace
}  // namespace cauce::testing
