#pragma once

// The Alert aggregate: raised at a level, acknowledged, escalated upward only, closed for good.

#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <cauce/commands/domain.hpp>

namespace cauce::commands::alert {

enum class Level { kInfo = 1, kWarning = 2, kCritical = 3 };
std::optional<Level> parse_level(std::string_view name);
std::string_view level_name(Level level);

enum class Status { kOpen, kAcknowledged, kClosed };

struct Raise {
  std::string level;
  std::string title;
  std::optional<std::string> region;
  std::optional<std::string> source;
  std::optional<std::string> details;
};
struct Acknowledge {
  std::optional<std::string> note;
};
struct Escalate {
  std::string level;
};
struct Close {
  std::string resolution;
};
// The deadlines' command (a worker's, actor system:deadlines): the deadline of `level` passed at
// `deadline_at_us` and nobody acknowledged the alert. Once per level (levels only go up, so a
// level is one stretch of the alert's life): the alert escalates one level, or, at critical,
// records the miss.
struct MissDeadline {
  std::string level;
  std::int64_t deadline_at_us = 0;
};

struct Raised {
  std::string level;
  std::string title;
  std::optional<std::string> region;
  std::optional<std::string> source;
  std::optional<std::string> details;
  friend bool operator==(const Raised&, const Raised&) = default;
};
struct Acknowledged {
  std::optional<std::string> note;
  friend bool operator==(const Acknowledged&, const Acknowledged&) = default;
};
struct Escalated {
  std::string from;
  std::string to;
  friend bool operator==(const Escalated&, const Escalated&) = default;
};
struct Closed {
  std::string resolution;
  friend bool operator==(const Closed&, const Closed&) = default;
};
struct DeadlineMissed {
  std::string level;
  std::int64_t deadline_at_us = 0;
  friend bool operator==(const DeadlineMissed&, const DeadlineMissed&) = default;
};
using Event = std::variant<Raised, Acknowledged, Escalated, Closed, DeadlineMissed>;

struct State {
  bool exists = false;
  std::int64_t version = 0;
  Level level = Level::kInfo;
  Status status = Status::kOpen;
  bool deadline_missed = false;  // the current level's deadline passed (reset by escalation)
};

using Result = std::variant<std::vector<Event>, Rejection>;

Result decide(const State& state, const Raise& command, const CommandContext& context);
Result decide(const State& state, const Acknowledge& command, const CommandContext& context);
Result decide(const State& state, const Escalate& command, const CommandContext& context);
Result decide(const State& state, const Close& command, const CommandContext& context);
Result decide(const State& state, const MissDeadline& command, const CommandContext& context);

State evolve(State state, const Event& event);

std::string event_type(const Event& event);
std::string to_json(const Event& event);
Event event_from_json(std::string_view type, std::string_view data);

}  // namespace cauce::commands::alert
