#pragma once

// The Import aggregate (issue 16, part 4): one bulk upload of contacts (POST /v1/imports). The
// API streams the file, sends each valid row as a contact.register of its own and records the
// import's course here: started, batches of row errors, progress counts, and how it ended.
// Completed and failed are final. Pure: decide(state, command, context) -> events | rejection.

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <cauce/commands/domain.hpp>

namespace cauce::commands::import {

enum class Status { kRunning, kCompleted, kFailed };
std::string_view status_name(Status status);

// What happened to the rows so far. rows_total counts every data row read (blank lines are not
// rows); each is accepted (registered now), rejected (a row error) or a duplicate (its contact
// was there already: posted before, or its `id` exists).
struct Counts {
  std::int64_t rows_total = 0;
  std::int64_t accepted = 0;
  std::int64_t rejected = 0;
  std::int64_t duplicates = 0;
  friend bool operator==(const Counts&, const Counts&) = default;
};

// One row that could not be imported: its number in the file, the field at fault ("phone",
// "row" for the row as a whole) and why.
struct RowError {
  std::int64_t row = 0;
  std::string field;
  std::string message;
  friend bool operator==(const RowError&, const RowError&) = default;
};

inline constexpr std::size_t kMaxRowsPerEvent = 100;
inline constexpr std::size_t kMaxFieldLength = 100;    // characters
inline constexpr std::size_t kMaxMessageLength = 500;  // characters
inline constexpr std::size_t kMaxReasonLength = 1000;  // characters

// Commands (sent by the API's import session, never by a client directly).
struct Start {
  std::string format;  // "csv", "ndjson"
};
struct RecordRejections {
  std::vector<RowError> rows;
};
struct RecordProgress {
  Counts counts;
};
struct Complete {
  Counts counts;
  std::int64_t bytes = 0;
};
struct Fail {
  Counts counts;
  std::int64_t bytes = 0;
  std::string reason;
};

// Events.
struct Started {
  std::string format;
  friend bool operator==(const Started&, const Started&) = default;
};
struct RowsRejected {
  std::vector<RowError> rows;
  friend bool operator==(const RowsRejected&, const RowsRejected&) = default;
};
struct Progressed {
  Counts counts;
  friend bool operator==(const Progressed&, const Progressed&) = default;
};
struct Completed {
  Counts counts;
  std::int64_t bytes = 0;
  friend bool operator==(const Completed&, const Completed&) = default;
};
struct Failed {
  Counts counts;
  std::int64_t bytes = 0;
  std::string reason;
  friend bool operator==(const Failed&, const Failed&) = default;
};
using Event = std::variant<Started, RowsRejected, Progressed, Completed, Failed>;

struct State {
  bool exists = false;
  std::int64_t version = 0;
  Status status = Status::kRunning;
};
using Result = std::variant<std::vector<Event>, Rejection>;

Result decide(const State& state, const Start& command, const CommandContext& context);
Result decide(const State& state, const RecordRejections& command, const CommandContext& context);
Result decide(const State& state, const RecordProgress& command, const CommandContext& context);
Result decide(const State& state, const Complete& command, const CommandContext& context);
Result decide(const State& state, const Fail& command, const CommandContext& context);
State evolve(State state, const Event& event);
std::string event_type(const Event& event);
std::string to_json(const Event& event);
Event event_from_json(std::string_view type, std::string_view data);

// A text cut to at most `max` characters at a character boundary (row errors and reasons are
// bounded in events; what the API records is cut with this).
std::string clip(std::string_view text, std::size_t max);

}  // namespace cauce::commands::import
