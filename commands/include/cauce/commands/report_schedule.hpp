#pragma once

// The ReportSchedule aggregate (issue 16, part 3): a report requested at every slot of a
// recurrence (`every` or `cron` in a time zone), paused, resumed, changed, deleted. The workers
// fire its slots (workers/README.md "Scheduled reports"): a `trigger` per slot, whose command id
// comes from the schedule, its revision and the slot, and which the schedule takes once per slot
// and only while active; the triggered event then leads to one report per slot.
//
// The schedule's definition is kept whole in the state (schedules are few), so a change that
// names one field is recorded as the whole definition after it: `report_schedule.changed` says
// what the schedule is, not what moved.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <cauce/commands/domain.hpp>

namespace cauce::commands::report_schedule {

struct Definition {
  std::string title;
  std::string source_url;
  std::optional<std::string> every;  // exactly one of every and cron
  std::optional<std::string> cron;
  std::string timezone = "UTC";
  std::optional<std::string> source_auth;  // the name of a secret the server holds, never one
  friend bool operator==(const Definition&, const Definition&) = default;
};

enum class Status { kActive, kPaused, kDeleted };
std::string_view status_name(Status status);

struct Create {
  std::string title;
  std::string source_url;
  std::optional<std::string> every;
  std::optional<std::string> cron;
  std::optional<std::string> timezone;
  std::optional<std::string> source_auth;
};
// PATCH: each field present changes; `every` or `cron` replaces the other; source_auth null
// removes it; paused true/false pauses/resumes.
struct Update {
  std::optional<std::string> title;
  std::optional<std::string> source_url;
  std::optional<std::string> every;
  std::optional<std::string> cron;
  std::optional<std::string> timezone;
  std::optional<std::optional<std::string>> source_auth;
  std::optional<bool> paused;
};
struct Delete {};
// The workers' command for a due slot: the schedule requests the report of slot `slot_at_us`
// (its id `report_id`, derived from the schedule and the slot) if it is active, at revision
// `revision` (its definition unchanged since the worker read it) and past its last slot.
struct Trigger {
  std::int64_t slot_at_us = 0;
  std::int64_t revision = 0;
  std::string report_id;
};

struct Created {
  Definition definition;
  friend bool operator==(const Created&, const Created&) = default;
};
// A change of the recurrence (every, cron, timezone) restarts the slots (a new revision, slots
// counted from the change); a change of anything else (title, source_url, source_auth) keeps
// them, so a slot due but not yet fired, or missed while cauce was down, still fires (with the
// new definition: the triggered event copies it). An event written before this flag existed
// restarted the slots, and reads back so.
struct Changed {
  Definition definition;
  bool recurrence_changed = true;
  friend bool operator==(const Changed&, const Changed&) = default;
};
struct Paused {
  friend bool operator==(const Paused&, const Paused&) = default;
};
struct Resumed {
  friend bool operator==(const Resumed&, const Resumed&) = default;
};
struct Deleted {
  friend bool operator==(const Deleted&, const Deleted&) = default;
};
struct Triggered {
  std::int64_t slot_at_us = 0;
  std::string report_id;
  // What the slot's report is requested with: the definition at the slot.
  std::string title;
  std::string source_url;
  std::optional<std::string> source_auth;
  friend bool operator==(const Triggered&, const Triggered&) = default;
};
using Event = std::variant<Created, Changed, Paused, Resumed, Deleted, Triggered>;

struct State {
  bool exists = false;
  std::int64_t version = 0;
  Status status = Status::kActive;
  // The version of the last event that (re)started the slots: created, a change of the
  // recurrence, resumed.
  std::int64_t revision = 0;
  std::int64_t last_slot_us = 0;  // the last slot triggered; 0 before the first
  std::shared_ptr<const Definition> definition;
};

using Result = std::variant<std::vector<Event>, Rejection>;

Result decide(const State& state, const Create& command, const CommandContext& context);
Result decide(const State& state, const Update& command, const CommandContext& context);
Result decide(const State& state, const Delete& command, const CommandContext& context);
Result decide(const State& state, const Trigger& command, const CommandContext& context);
State evolve(State state, const Event& event);
std::string event_type(const Event& event);
std::string to_json(const Event& event);
Event event_from_json(std::string_view type, std::string_view data);

// Field rules (shared with the API, which checks the rest: the zone exists, the secret is
// configured, `every` is at least reports.schedule_min_every_s).
std::optional<Rejection> check_recurrence(const std::optional<std::string>& every,
                                          const std::optional<std::string>& cron);
bool valid_source_auth_name(std::string_view name);  // [A-Za-z0-9][A-Za-z0-9_.-]{0,63}

}  // namespace cauce::commands::report_schedule
