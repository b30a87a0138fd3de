#pragma once

// The Contact aggregate: a person a call centre talks to, with a call log.
// Pure: decide(state, command, context) -> events | rejection; evolve(state, event) -> state.

#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <cauce/commands/compact.hpp>
#include <cauce/commands/domain.hpp>

namespace cauce::commands::contact {

// Commands (payloads as the API accepts them).
struct Register {
  std::string name;
  std::string phone;
  std::optional<std::string> email;
  std::vector<std::string> tags;
  std::optional<std::string> notes;
};
struct Update {
  std::optional<std::string> name = std::nullopt;
  std::optional<std::string> phone = std::nullopt;
  std::optional<std::string> email = std::nullopt;
  std::optional<std::vector<std::string>> tags = std::nullopt;
  std::optional<std::string> notes = std::nullopt;
};
struct LogCall {
  std::string call_id;  // chosen by the API (derived from the command id: retries agree)
  std::string outcome;  // answered, no_answer, busy, voicemail, wrong_number
  int duration_s = 0;
  std::optional<std::string> notes;
  std::optional<std::string> operator_name;
};
struct Assign {
  std::string operator_name;
};
struct Archive {
  std::optional<std::string> reason;
};
// Claims coordinate people: the caller (the command's actor) holds the contact until the
// command's time plus ttl_s, renews it with the same command, and loses it by releasing it or
// by letting the time pass (no timer: every decision compares with its own command's time).
struct Claim {
  std::int64_t ttl_s = kDefaultClaimSeconds;
  static constexpr std::int64_t kDefaultClaimSeconds = 300;
  static constexpr std::int64_t kMaxClaimSeconds = 3600;
};
struct Release {};

// Events (data of contact.* events; field names are the JSON names in schemas/).
struct Registered {
  std::string name;
  std::string phone;  // E.164
  std::optional<std::string> email;
  std::vector<std::string> tags;
  std::optional<std::string> notes;
  friend bool operator==(const Registered&, const Registered&) = default;
};
struct Updated {  // only the fields that changed
  std::optional<std::string> name;
  std::optional<std::string> phone;
  std::optional<std::string> email;
  std::optional<std::vector<std::string>> tags;
  std::optional<std::string> notes;
  friend bool operator==(const Updated&, const Updated&) = default;
};
struct CallLogged {
  std::string call_id;
  std::string outcome;
  int duration_s = 0;
  std::optional<std::string> notes;
  std::optional<std::string> operator_name;
  std::int64_t called_at_us = 0;
  friend bool operator==(const CallLogged&, const CallLogged&) = default;
};
struct Assigned {
  std::string operator_name;
  std::optional<std::string> previous;
  friend bool operator==(const Assigned&, const Assigned&) = default;
};
struct Archived {
  std::optional<std::string> reason;
  // The holder of the claim the archive ended (a claim live at the command's time), if any: the
  // operator calling it learns the contact is gone (their assigned_to=me stream).
  std::optional<std::string> released_by = std::nullopt;
  friend bool operator==(const Archived&, const Archived&) = default;
};
struct Claimed {  // also a renewal by the holder
  std::string claimed_by;
  std::int64_t claimed_until_us = 0;
  friend bool operator==(const Claimed&, const Claimed&) = default;
};
struct Released {
  std::string released_by;
  friend bool operator==(const Released&, const Released&) = default;
};
using Event = std::variant<Registered, Updated, CallLogged, Assigned, Archived, Claimed, Released>;

// What deciding needs of a contact, kept small because a partition holds millions of them
// (compact.hpp): digests of the fields an update compares, not the fields (the read model
// holds those), and the assigned operator's name, interned.
struct State {
  std::int64_t version = 0;
  std::int32_t calls_count = 0;
  bool exists = false;
  bool archived = false;
  Atom assigned_to;
  Digest name = 0;
  Digest phone = 0;
  Digest email = 0;  // 0: none
  Digest tags = 0;
  Digest notes = 0;  // 0: none
  Atom claimed_by;   // the last claim's holder ("" when released) ...
  std::int64_t claimed_until_us =
      0;  // ... and its end: a claim is live while a command's time is before it
  friend bool operator==(const State&, const State&) = default;

  bool claimed_at(std::int64_t now_us) const {
    return !claimed_by.empty() && now_us < claimed_until_us;
  }
};

using Result = std::variant<std::vector<Event>, Rejection>;

Result decide(const State& state, const Register& command, const CommandContext& context);
Result decide(const State& state, const Update& command, const CommandContext& context);
Result decide(const State& state, const LogCall& command, const CommandContext& context);
Result decide(const State& state, const Assign& command, const CommandContext& context);
Result decide(const State& state, const Archive& command, const CommandContext& context);
Result decide(const State& state, const Claim& command, const CommandContext& context);
Result decide(const State& state, const Release& command, const CommandContext& context);

State evolve(State state, const Event& event);

// Wire form: "contact.registered" etc. and the JSON data object (schemas/contact.*.v1.json).
std::string event_type(const Event& event);
std::string to_json(const Event& event);
// Throws std::invalid_argument for an unknown type or data that does not fit it.
Event event_from_json(std::string_view type, std::string_view data);

}  // namespace cauce::commands::contact
