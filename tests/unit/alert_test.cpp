#include <cauce/commands/alert.hpp>

#include "given_when_then.hpp"

namespace cauce::commands::alert {
namespace {

using commands::testing::at;
using commands::testing::then_events;
using commands::testing::then_rejected;

const Raised kDiskFull{"warning", "Disk 90% full", "eu-west", "node-7", std::nullopt};

State given(std::vector<Event> events) { return commands::testing::given<State, Event>(events); }

TEST(AlertTest, RaiseValidatesLevelAndTitle) {
  const auto events = then_events(
      decide(State{}, Raise{"warning", " Disk 90% full ", "eu-west", "node-7", {}}, at()));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(std::get<Raised>(events[0]), kDiskFull);
  EXPECT_EQ(then_rejected(decide(State{}, Raise{"panic", "t", {}, {}, {}}, at())).field, "level");
  EXPECT_EQ(then_rejected(decide(State{}, Raise{"info", "", {}, {}, {}}, at())).field, "title");
  EXPECT_EQ(
      then_rejected(decide(State{}, Raise{"info", "t", std::string(101, 'r'), {}, {}}, at())).field,
      "region");
  EXPECT_EQ(then_rejected(decide(given({kDiskFull}), Raise{"info", "t", {}, {}, {}}, at())).code,
            "already_exists");
}

TEST(AlertTest, AcknowledgeOnlyWhenOpen) {
  const auto acked = given({kDiskFull, Acknowledged{}});
  EXPECT_EQ(acked.status, Status::kAcknowledged);
  EXPECT_EQ(then_events(decide(given({kDiskFull}), Acknowledge{"on it"}, at())).size(), 1u);
  EXPECT_EQ(then_rejected(decide(acked, Acknowledge{}, at())).code, "conflict");
  EXPECT_EQ(then_rejected(decide(State{}, Acknowledge{}, at())).code, "not_found");
}

TEST(AlertTest, EscalateUpwardOnly) {
  const auto events = then_events(decide(given({kDiskFull}), Escalate{"critical"}, at()));
  EXPECT_EQ(std::get<Escalated>(events.at(0)), (Escalated{"warning", "critical"}));
  EXPECT_EQ(given({kDiskFull, Escalated{"warning", "critical"}}).level, Level::kCritical);
  const auto same = then_rejected(decide(given({kDiskFull}), Escalate{"warning"}, at()));
  EXPECT_EQ(same.code, "conflict");
  EXPECT_EQ(same.field, "level");
  EXPECT_EQ(then_rejected(decide(given({kDiskFull}), Escalate{"info"}, at())).code, "conflict");
  EXPECT_EQ(then_rejected(decide(given({kDiskFull}), Escalate{"urgent"}, at())).code, "invalid");
}

TEST(AlertTest, ClosedIsTerminal) {
  const auto closed = given({kDiskFull, Closed{"disk cleaned"}});
  EXPECT_EQ(closed.status, Status::kClosed);
  EXPECT_EQ(then_rejected(decide(closed, Acknowledge{}, at())).code, "conflict");
  EXPECT_EQ(then_rejected(decide(closed, Escalate{"critical"}, at())).code, "conflict");
  EXPECT_EQ(then_rejected(decide(closed, Close{"again"}, at())).code, "conflict");
  EXPECT_EQ(then_rejected(decide(given({kDiskFull}), Close{""}, at())).field, "resolution");
}

TEST(AlertTest, IfMatchMustMatchTheVersion) {
  EXPECT_EQ(then_rejected(decide(given({kDiskFull}), Close{"x"}, at(1, 7))).code,
            "version_mismatch");
  EXPECT_EQ(then_events(decide(given({kDiskFull}), Close{"x"}, at(1, 1))).size(), 1u);
}

constexpr std::int64_t kDue = 1'700'000'060'000'000;

TEST(AlertTest, AMissedDeadlineEscalatesOneLevelOncePerLevel) {
  const auto open = given({kDiskFull});
  const auto events =
      then_events(decide(open, MissDeadline{"warning", kDue}, at(kDue, {}, "system:deadlines")));
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0], Event{(DeadlineMissed{"warning", kDue})});
  EXPECT_EQ(events[1], Event{(Escalated{"warning", "critical"})});
  auto after = open;
  for (const auto& e : events) after = evolve(after, e);
  EXPECT_EQ(after.level, Level::kCritical);
  EXPECT_FALSE(after.deadline_missed) << "a new level, a new deadline";
  // The warning deadline again (a second process, a restart): that level is past.
  EXPECT_EQ(then_rejected(decide(after, MissDeadline{"warning", kDue}, at(kDue + 1))).field,
            "level");
  // Critical has no level above: the miss is recorded, once.
  const auto critical =
      then_events(decide(after, MissDeadline{"critical", kDue + 1}, at(kDue + 2)));
  ASSERT_EQ(critical.size(), 1u);
  EXPECT_EQ(critical[0], Event{(DeadlineMissed{"critical", kDue + 1})});
  EXPECT_TRUE(then_events(decide(evolve(after, critical[0]), MissDeadline{"critical", kDue + 1},
                                 at(kDue + 3)))
                  .empty());
}

TEST(AlertTest, AcknowledgingOrClosingTakesTheDeadlineOff) {
  for (const auto& state : {given({kDiskFull, Acknowledged{}}), given({kDiskFull, Closed{"ok"}}),
                            given({kDiskFull, Acknowledged{}, Escalated{"warning", "critical"}})}) {
    EXPECT_EQ(then_rejected(decide(state, MissDeadline{"warning", kDue}, at(kDue))).code,
              "conflict");
  }
}

TEST(AlertTest, ADeadlineIsNotMissedBeforeItsInstant) {
  const auto r =
      then_rejected(decide(given({kDiskFull}), MissDeadline{"warning", kDue}, at(kDue - 1)));
  EXPECT_EQ(r.field, "deadline_at");
  EXPECT_EQ(then_rejected(decide(given({kDiskFull}), MissDeadline{"loud", kDue}, at(kDue))).field,
            "level");
}

TEST(AlertTest, EveryEventRoundTripsThroughItsJson) {
  for (const Event& e :
       std::vector<Event>{kDiskFull, Acknowledged{"n"}, Escalated{"info", "warning"}, Closed{"r"},
                          DeadlineMissed{"warning", kDue}}) {
    EXPECT_EQ(event_from_json(event_type(e), to_json(e)), e) << to_json(e);
  }
}

}  // namespace
}  // namespace cauce::commands::alert
