// The Import aggregate, given/when/then: an import starts once, records rejected rows and
// progress while it runs, and ends completed (every row accounted for) or failed, for good.
#include <cauce/commands/handler.hpp>
#include <cauce/commands/import.hpp>

#include "given_when_then.hpp"

namespace cauce::commands::import {
namespace {

using commands::testing::at;
using commands::testing::then_events;
using commands::testing::then_rejected;

State given(std::vector<Event> events) { return commands::testing::given<State, Event>(events); }

const Started kStarted{"csv"};

TEST(ImportTest, StartsOnceWithAKnownFormat) {
  const auto events = then_events(decide(State{}, Start{"ndjson"}, at()));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(std::get<Started>(events[0]).format, "ndjson");
  EXPECT_EQ(then_rejected(decide(State{}, Start{"xlsx"}, at())).field, "format");
  EXPECT_EQ(then_rejected(decide(given({kStarted}), Start{"csv"}, at())).code, "already_exists");
}

TEST(ImportTest, RecordsRowErrorsInBoundedBatchesWhileRunning) {
  const auto running = given({kStarted});
  const RowError bad{3, "phone", "must be a phone number with its country code"};
  EXPECT_EQ(then_events(decide(running, RecordRejections{{bad}}, at())).size(), 1u);
  EXPECT_EQ(then_rejected(decide(running, RecordRejections{}, at())).field, "rows");
  EXPECT_EQ(
      then_rejected(decide(running, RecordRejections{std::vector<RowError>(101, bad)}, at())).field,
      "rows");
  EXPECT_EQ(then_rejected(decide(running, RecordRejections{{{0, "phone", "x"}}}, at())).field,
            "rows");
  EXPECT_EQ(
      then_rejected(decide(running, RecordRejections{{{1, "phone", std::string(501, 'm')}}}, at()))
          .field,
      "rows");
  EXPECT_EQ(then_rejected(decide(State{}, RecordRejections{{bad}}, at())).code, "not_found");
}

TEST(ImportTest, CompletesOnlyWithEveryRowAccountedFor) {
  const auto running = given({kStarted, Progressed{{10, 4, 1, 0}}});
  EXPECT_EQ(running.version, 2);
  const auto done = then_events(decide(running, Complete{{10, 7, 2, 1}, 512}, at()));
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(std::get<Completed>(done[0]), (Completed{{10, 7, 2, 1}, 512}));
  EXPECT_EQ(then_rejected(decide(running, Complete{{10, 7, 2, 0}, 512}, at())).field, "rows_total");
  EXPECT_EQ(then_rejected(decide(running, RecordProgress{{1, 2, 0, 0}}, at())).field, "rows_total");
  EXPECT_EQ(then_rejected(decide(running, RecordProgress{{-1, 0, 0, 0}}, at())).field,
            "rows_total");
}

TEST(ImportTest, CompletedAndFailedAreFinal) {
  const auto completed = given({kStarted, Completed{{0, 0, 0, 0}, 5}});
  const auto failed = given({kStarted, Failed{{3, 1, 0, 0}, 99, "the client went away"}});
  EXPECT_EQ(completed.status, Status::kCompleted);
  EXPECT_EQ(failed.status, Status::kFailed);
  for (const auto& s : {completed, failed}) {
    EXPECT_EQ(then_rejected(decide(s, RecordProgress{{1, 1, 0, 0}}, at())).code, "conflict");
    EXPECT_EQ(then_rejected(decide(s, Fail{{1, 1, 0, 0}, 1, "again"}, at())).code, "conflict");
    EXPECT_EQ(then_rejected(decide(s, Complete{{1, 1, 0, 0}, 1}, at())).code, "conflict");
  }
  EXPECT_EQ(then_rejected(decide(given({kStarted}), Fail{{0, 0, 0, 0}, 1, ""}, at())).field,
            "reason");
}

TEST(ImportTest, EventsRoundTripThroughJson) {
  const std::vector<Event> events = {kStarted,
                                     RowsRejected{{{2, "row", "has 9 columns; the header has 3"}}},
                                     Progressed{{5, 3, 1, 1}}, Completed{{5, 3, 1, 1}, 77},
                                     Failed{{5, 3, 1, 1}, 77, "the server stopped"}};
  for (const auto& e : events) {
    EXPECT_EQ(event_from_json(event_type(e), to_json(e)), e) << event_type(e);
  }
}

TEST(ImportTest, ClipCutsAtACharacterBoundary) {
  EXPECT_EQ(clip("ação", 2), "aç");
  EXPECT_EQ(clip("abc", 5), "abc");
  EXPECT_EQ(clip("", 0), "");
}

// Through the handler: the session's commands reach the aggregate by type, and a step repeated
// with the same command id is a duplicate, not a second event.
TEST(ImportTest, TheHandlerRoutesTheSessionsCommands) {
  MemoryAggregateStore store;
  CommandEnvelope c;
  c.command_id = uuid_from_name("import-step\nA\n0");
  c.type = "import.start";
  c.aggregate_type = "import";
  c.aggregate_id = "0195a0c4-0000-7000-8000-000000000010";
  c.issued_at_us = 1'700'000'000'000'000;
  c.actor = "op";
  c.request_hash = "h0";
  c.data = R"({"format":"csv"})";
  auto outcome = decide(store, c);
  ASSERT_EQ(outcome.kind, ReplyOutcome::kApplied);
  record(store, c, outcome);
  EXPECT_EQ(decide(store, c).kind, ReplyOutcome::kDuplicate);
  c.command_id = uuid_from_name("import-step\nA\n1");
  c.type = "import.complete";
  c.request_hash = "h1";
  c.data = R"({"rows_total":1,"accepted":1,"rejected":0,"duplicates":0,"bytes":30})";
  outcome = decide(store, c);
  ASSERT_EQ(outcome.kind, ReplyOutcome::kApplied);
  EXPECT_EQ(outcome.events.at(0).type, "import.completed");
  EXPECT_EQ(outcome.version, 2);
}

}  // namespace
}  // namespace cauce::commands::import
