#pragma once

// Vocabulary shared by every aggregate: what a command carries besides its payload, what a
// decision returns, what an event is before it gets an envelope.

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace cauce::commands {

// A refused command: a value, never an exception. `code` is stable for clients:
//   invalid          a field's value breaks a rule (400)
//   not_found        the aggregate does not exist (404)
//   already_exists   creation of an existing aggregate (409)
//   conflict         the aggregate's state forbids it, e.g. archived (409)
//   version_mismatch If-Match does not match (412)
//   too_early        the command's time is before what it acts on (a worker's command sent by a
//                    clock behind another); never remembered: the same command may be taken later
//   unreadable_history  the aggregate's history holds an event this build cannot read (a newer
//                    build wrote it: rolling upgrade, rollback) (503); never remembered
//   unknown_command  a command type this build does not know (a newer API sent it during a
//                    rolling upgrade) (503); never remembered
struct Rejection {
  std::string code;
  std::string field;
  std::string message;

  friend bool operator==(const Rejection&, const Rejection&) = default;
};

// Whether a rejection only says that the processor's build is older than what it met during a
// rolling upgrade (unreadable_history, unknown_command): never remembered; a sender treats it
// like no answer and tries again later.
inline bool refused_until_upgrade(const Rejection& rejection) {
  return rejection.code == "unreadable_history" || rejection.code == "unknown_command";
}

// What every command carries besides its payload. Time comes from here, never from a clock.
struct CommandContext {
  std::int64_t issued_at_us = 0;
  std::optional<std::int64_t> expected_version;  // If-Match
  std::string actor;  // who sends it: the API key's name (a worker's "system:..." name)
};

// One decided event: its type ("contact.registered"), schema version and data as a JSON
// object. The command processor wraps it in the envelope (ids, version, time, actor).
struct NewEvent {
  std::string type;
  int schema_version = 1;
  std::string data;  // JSON object text

  friend bool operator==(const NewEvent&, const NewEvent&) = default;
};

using Decision = std::variant<std::vector<NewEvent>, Rejection>;

inline bool rejected(const Decision& d) { return std::holds_alternative<Rejection>(d); }

}  // namespace cauce::commands
