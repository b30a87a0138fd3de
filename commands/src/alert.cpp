#include <array>

#include <cauce/commands/alert.hpp>
#include <cauce/commands/rules.hpp>
#include <cauce/core/log.hpp>

#include "json_fields.hpp"

namespace cauce::commands::alert {
namespace {

std::optional<Rejection> precheck(const State& state, const CommandContext& context) {
  if (!state.exists) return Rejection{"not_found", "id", "there is no such alert"};
  if (context.expected_version && *context.expected_version != state.version) {
    return Rejection{"version_mismatch", "If-Match",
                     "the alert is at version " + std::to_string(state.version)};
  }
  if (state.status == Status::kClosed) {
    return Rejection{"conflict", "state", "the alert is closed; closed is final"};
  }
  return std::nullopt;
}

std::optional<Rejection> check_optional(std::string_view field, const std::optional<std::string>& v,
                                        std::size_t max) {
  return v ? check_text(field, *v, max, true) : std::nullopt;
}

}  // namespace

std::optional<Level> parse_level(std::string_view name) {
  if (name == "info") return Level::kInfo;
  if (name == "warning") return Level::kWarning;
  if (name == "critical") return Level::kCritical;
  return std::nullopt;
}

std::string_view level_name(Level level) {
  switch (level) {
    case Level::kInfo:
      return "info";
    case Level::kWarning:
      return "warning";
    case Level::kCritical:
      return "critical";
  }
  return "info";
}

Result decide(const State& state, const Raise& c, const CommandContext&) {
  if (state.exists) return Rejection{"already_exists", "id", "an alert with this id exists"};
  if (!parse_level(c.level)) {
    return Rejection{"invalid", "level", "must be info, warning or critical"};
  }
  if (auto r = check_text("title", c.title, 200)) return *r;
  if (auto r = check_optional("region", c.region, 100)) return *r;
  if (auto r = check_optional("source", c.source, 200)) return *r;
  if (auto r = check_optional("details", c.details, kMaxNotesLength)) return *r;
  return std::vector<Event>{Raised{c.level, trim(c.title), c.region, c.source, c.details}};
}

Result decide(const State& state, const Acknowledge& c, const CommandContext& context) {
  if (auto r = precheck(state, context)) return *r;
  if (state.status != Status::kOpen) {
    return Rejection{"conflict", "state", "only an open alert can be acknowledged"};
  }
  if (auto r = check_optional("note", c.note, kMaxNotesLength)) return *r;
  return std::vector<Event>{Acknowledged{c.note}};
}

Result decide(const State& state, const Escalate& c, const CommandContext& context) {
  if (auto r = precheck(state, context)) return *r;
  const auto level = parse_level(c.level);
  if (!level) return Rejection{"invalid", "level", "must be info, warning or critical"};
  if (*level <= state.level) {
    return Rejection{
        "conflict", "level",
        "alerts escalate upward only; this one is " + std::string(level_name(state.level))};
  }
  return std::vector<Event>{Escalated{std::string(level_name(state.level)), c.level}};
}

Result decide(const State& state, const Close& c, const CommandContext& context) {
  if (auto r = precheck(state, context)) return *r;
  if (auto r = check_text("resolution", c.resolution, kMaxNotesLength)) return *r;
  return std::vector<Event>{Closed{c.resolution}};
}

Result decide(const State& state, const MissDeadline& c, const CommandContext& context) {
  if (auto r = precheck(state, context)) return *r;
  if (state.status != Status::kOpen) {
    return Rejection{"conflict", "state", "acknowledged: the alert has no deadline any more"};
  }
  const auto level = parse_level(c.level);
  if (!level) return Rejection{"invalid", "level", "must be info, warning or critical"};
  if (*level != state.level) {
    return Rejection{"conflict", "level",
                     "the alert is " + std::string(level_name(state.level)) + " now, not " +
                         c.level + ": that deadline is off"};
  }
  if (context.issued_at_us < c.deadline_at_us) {
    return Rejection{"too_early", "deadline_at",
                     "not due until " + core::format_utc_micros(c.deadline_at_us)};
  }
  if (state.deadline_missed) return std::vector<Event>{};  // once per level
  std::vector<Event> events{DeadlineMissed{c.level, c.deadline_at_us}};
  if (state.level != Level::kCritical) {
    const auto next = static_cast<Level>(static_cast<int>(state.level) + 1);
    events.emplace_back(Escalated{c.level, std::string(level_name(next))});
  }
  return events;
}

State evolve(State state, const Event& event) {
  ++state.version;
  std::visit(
      [&state](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, Raised>) {
          state.exists = true;
          state.level = parse_level(e.level).value_or(Level::kInfo);
          state.status = Status::kOpen;
        } else if constexpr (std::is_same_v<T, Acknowledged>) {
          state.status = Status::kAcknowledged;
        } else if constexpr (std::is_same_v<T, Escalated>) {
          state.level = parse_level(e.to).value_or(state.level);
          state.deadline_missed = false;
        } else if constexpr (std::is_same_v<T, Closed>) {
          state.status = Status::kClosed;
        } else {
          static_assert(std::is_same_v<T, DeadlineMissed>);
          state.deadline_missed = true;
        }
      },
      event);
  return state;
}

std::string event_type(const Event& event) {
  static constexpr std::array<const char*, 5> kTypes = {"alert.raised", "alert.acknowledged",
                                                        "alert.escalated", "alert.closed",
                                                        "alert.deadline_missed"};
  return kTypes[event.index()];
}

std::string to_json(const Event& event) {
  return json::object([&](json::Writer& w) {
    std::visit(
        [&w](const auto& e) {
          using T = std::decay_t<decltype(e)>;
          if constexpr (std::is_same_v<T, Raised>) {
            json::field(w, "level", e.level);
            json::field(w, "title", e.title);
            json::optional_field(w, "region", e.region);
            json::optional_field(w, "source", e.source);
            json::optional_field(w, "details", e.details);
          } else if constexpr (std::is_same_v<T, Acknowledged>) {
            json::optional_field(w, "note", e.note);
          } else if constexpr (std::is_same_v<T, Escalated>) {
            json::field(w, "from", e.from);
            json::field(w, "to", e.to);
          } else if constexpr (std::is_same_v<T, Closed>) {
            json::field(w, "resolution", e.resolution);
          } else {
            json::field(w, "level", e.level);
            json::field(w, "deadline_at", core::format_utc_micros(e.deadline_at_us));
          }
        },
        event);
  });
}

Event event_from_json(std::string_view type, std::string_view data) {
  const auto d = json::parse(data);
  if (type == "alert.raised") {
    return Raised{json::string(d, "level"), json::string(d, "title"), json::opt_string(d, "region"),
                  json::opt_string(d, "source"), json::opt_string(d, "details")};
  }
  if (type == "alert.acknowledged") return Acknowledged{json::opt_string(d, "note")};
  if (type == "alert.escalated") return Escalated{json::string(d, "from"), json::string(d, "to")};
  if (type == "alert.closed") return Closed{json::string(d, "resolution")};
  if (type == "alert.deadline_missed") {
    return DeadlineMissed{json::string(d, "level"),
                          core::parse_utc_micros(json::string(d, "deadline_at"))};
  }
  throw std::invalid_argument("unknown alert event type " + std::string(type));
}

}  // namespace cauce::commands::alert
