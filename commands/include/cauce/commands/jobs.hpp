#pragma once

// The Report and Backup job aggregates. For now they are requested; the workers (DESIGN §5)
// add their later events (downloading, rendered, failed, ...).

#include <string>
#include <variant>
#include <vector>

#include <cauce/commands/domain.hpp>

namespace cauce::commands::report {

struct Request {
  std::string title;
  std::string source_url;
};
struct Requested {
  std::string title;
  std::string source_url;
  friend bool operator==(const Requested&, const Requested&) = default;
};
using Event = std::variant<Requested>;
struct State {
  bool exists = false;
  std::int64_t version = 0;
};
using Result = std::variant<std::vector<Event>, Rejection>;

Result decide(const State& state, const Request& command, const CommandContext& context);
State evolve(State state, const Event& event);
std::string event_type(const Event& event);
std::string to_json(const Event& event);
Event event_from_json(std::string_view type, std::string_view data);

}  // namespace cauce::commands::report

namespace cauce::commands::backup {

struct Request {};
struct Requested {
  friend bool operator==(const Requested&, const Requested&) = default;
};
using Event = std::variant<Requested>;
struct State {
  bool exists = false;
  std::int64_t version = 0;
};
using Result = std::variant<std::vector<Event>, Rejection>;

Result decide(const State& state, const Request& command, const CommandContext& context);
State evolve(State state, const Event& event);
std::string event_type(const Event& event);
std::string to_json(const Event& event);
Event event_from_json(std::string_view type, std::string_view data);

}  // namespace cauce::commands::backup
