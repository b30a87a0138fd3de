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

TEST(AlertTest, EveryEventRoundTripsThroughItsJson) {
  for (const Event& e : std::vector<Event>{kDiskFull, Acknowledged{"n"},
                                           Escalated{"info", "warning"}, Closed{"r"}}) {
    EXPECT_EQ(event_from_json(event_type(e), to_json(e)), e) << to_json(e);
  }
}

}  // namespace
}  // namespace cauce::commands::alert
