#include <cauce/commands/envelope.hpp>
#include <cauce/commands/recurrence.hpp>
#include <cauce/commands/report_schedule.hpp>
#include <cauce/commands/rules.hpp>
#include <cauce/core/log.hpp>
#include <cauce/core/time_zone.hpp>

#include "json_fields.hpp"

namespace cauce::commands::report_schedule {
namespace {

std::optional<Rejection> check_definition(const Definition& d) {
  if (auto r = check_text("title", d.title, 200)) return *r;
  if (!valid_http_url(d.source_url)) {
    return Rejection{"invalid", "source_url", "must be an http:// or https:// URL"};
  }
  if (auto r = check_recurrence(d.every, d.cron)) return *r;
  if (!core::valid_time_zone_name(d.timezone)) {
    return Rejection{"invalid", "timezone", "must be an IANA time zone name such as Europe/Madrid"};
  }
  if (d.source_auth && !valid_source_auth_name(*d.source_auth)) {
    return Rejection{"invalid", "source_auth",
                     "must be the name of a configured secret: a letter or digit, then up to 63 "
                     "letters, digits, '_', '.' or '-'"};
  }
  return std::nullopt;
}

std::optional<Rejection> live(const State& s, const CommandContext& context) {
  if (!s.exists || s.status == Status::kDeleted) {
    return Rejection{"not_found", "id", "there is no such report schedule"};
  }
  if (context.expected_version && *context.expected_version != s.version) {
    return Rejection{"version_mismatch", "If-Match",
                     "the report schedule is at version " + std::to_string(s.version)};
  }
  return std::nullopt;
}

void write_definition(json::Writer& w, const Definition& d) {
  json::field(w, "title", d.title);
  json::field(w, "source_url", d.source_url);
  json::optional_field(w, "every", d.every);
  json::optional_field(w, "cron", d.cron);
  json::field(w, "timezone", d.timezone);
  json::optional_field(w, "source_auth", d.source_auth);
}

Definition read_definition(const rapidjson::Value& d) {
  return Definition{json::string(d, "title"),     json::string(d, "source_url"),
                    json::opt_string(d, "every"), json::opt_string(d, "cron"),
                    json::string(d, "timezone"),  json::opt_string(d, "source_auth")};
}

}  // namespace

std::string_view status_name(Status status) {
  switch (status) {
    case Status::kActive:
      return "active";
    case Status::kPaused:
      return "paused";
    case Status::kDeleted:
      return "deleted";
  }
  return "active";
}

bool valid_source_auth_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  const auto alnum = [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
  };
  if (!alnum(name.front())) return false;
  for (const char c : name) {
    if (!alnum(c) && c != '_' && c != '.' && c != '-') return false;
  }
  return true;
}

std::optional<Rejection> check_recurrence(const std::optional<std::string>& every,
                                          const std::optional<std::string>& cron) {
  if (every && cron) {
    return Rejection{"invalid", "every", "give either every or cron, not both"};
  }
  if (!every && !cron) return Rejection{"invalid", "every", "give every or cron"};
  if (every && !parse_every(*every)) {
    return Rejection{"invalid", "every",
                     "must be a whole number and a unit, s, m, h or d (\"15m\", \"6h\", \"1d\"), "
                     "at most 366 days"};
  }
  if (cron) {
    if (cron->size() > 200) return Rejection{"invalid", "cron", "must be at most 200 characters"};
    const auto parsed = CronExpression::parse(*cron);
    if (const auto* why = std::get_if<std::string>(&parsed)) {
      return Rejection{"invalid", "cron", "not a cron expression: " + *why};
    }
  }
  return std::nullopt;
}

Result decide(const State& s, const Create& c, const CommandContext&) {
  if (s.exists) return Rejection{"already_exists", "id", "a report schedule with this id exists"};
  Definition d{trim(c.title), c.source_url, c.every, c.cron, c.timezone.value_or("UTC"),
               c.source_auth};
  if (auto r = check_text("title", c.title, 200)) return *r;
  if (auto r = check_definition(d)) return *r;
  return std::vector<Event>{Created{std::move(d)}};
}

Result decide(const State& s, const Update& c, const CommandContext& context) {
  if (auto r = live(s, context)) return *r;
  if (c.every && c.cron)
    return Rejection{"invalid", "every", "give either every or cron, not both"};
  Definition d = *s.definition;
  if (c.title) {
    if (auto r = check_text("title", *c.title, 200)) return *r;
    d.title = trim(*c.title);
  }
  if (c.source_url) d.source_url = *c.source_url;
  if (c.every) {
    d.every = c.every;
    d.cron.reset();
  }
  if (c.cron) {
    d.cron = c.cron;
    d.every.reset();
  }
  if (c.timezone) d.timezone = *c.timezone;
  if (c.source_auth) d.source_auth = *c.source_auth;
  if (auto r = check_definition(d)) return *r;
  // A secret is bound to the origins it may be sent to, which the API checks on the pair it is
  // given: a change of either, while the schedule sends a secret, names both.
  const bool names_secret = c.source_auth && c.source_auth->has_value();
  if (d.source_auth && c.source_url && !c.source_auth) {
    return Rejection{"invalid", "source_auth",
                     "the schedule sends the secret \"" + *d.source_auth +
                         "\": name source_auth with a new source_url (null to send none), so "
                         "that the server checks the secret may be sent there"};
  }
  if (names_secret && !c.source_url) {
    return Rejection{"invalid", "source_url",
                     "give source_url with source_auth, so that the server checks the secret "
                     "may be sent there"};
  }
  std::vector<Event> events;
  if (d != *s.definition) {
    const auto& was = *s.definition;
    const bool recurrence_changed =
        d.every != was.every || d.cron != was.cron || d.timezone != was.timezone;
    events.emplace_back(Changed{std::move(d), recurrence_changed});
  }
  if (c.paused && *c.paused && s.status == Status::kActive) events.emplace_back(Paused{});
  if (c.paused && !*c.paused && s.status == Status::kPaused) events.emplace_back(Resumed{});
  return events;
}

Result decide(const State& s, const Delete&, const CommandContext& context) {
  if (auto r = live(s, context)) return *r;
  return std::vector<Event>{Deleted{}};
}

Result decide(const State& s, const Trigger& c, const CommandContext& context) {
  if (!s.exists) return Rejection{"not_found", "id", "there is no such report schedule"};
  if (!is_uuid(c.report_id)) return Rejection{"invalid", "report_id", "must be a UUID"};
  if (s.status != Status::kActive) {
    return Rejection{"conflict", "state",
                     "the schedule is " + std::string(status_name(s.status)) + ": no slot fires"};
  }
  if (c.revision != s.revision) {
    return Rejection{"conflict", "revision",
                     "the schedule changed since (revision " + std::to_string(s.revision) + ")"};
  }
  if (c.slot_at_us <= s.last_slot_us) {
    return Rejection{"conflict", "slot_at",
                     "a slot at or after it was requested already (" +
                         core::format_utc_micros(s.last_slot_us) + ")"};
  }
  if (context.issued_at_us < c.slot_at_us) {
    return Rejection{"too_early", "slot_at",
                     "not due until " + core::format_utc_micros(c.slot_at_us)};
  }
  const auto& d = *s.definition;
  return std::vector<Event>{
      Triggered{c.slot_at_us, c.report_id, d.title, d.source_url, d.source_auth}};
}

State evolve(State s, const Event& event) {
  ++s.version;
  std::visit(
      [&s](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, Created>) {
          s.exists = true;
          s.status = Status::kActive;
          s.revision = s.version;
          s.definition = std::make_shared<const Definition>(e.definition);
        } else if constexpr (std::is_same_v<T, Changed>) {
          if (e.recurrence_changed) s.revision = s.version;
          s.definition = std::make_shared<const Definition>(e.definition);
        } else if constexpr (std::is_same_v<T, Paused>) {
          s.status = Status::kPaused;
        } else if constexpr (std::is_same_v<T, Resumed>) {
          s.status = Status::kActive;
          s.revision = s.version;
        } else if constexpr (std::is_same_v<T, Deleted>) {
          s.status = Status::kDeleted;
        } else {
          static_assert(std::is_same_v<T, Triggered>);
          s.last_slot_us = e.slot_at_us;
        }
      },
      event);
  return s;
}

std::string event_type(const Event& event) {
  static constexpr const char* kTypes[] = {"report_schedule.created", "report_schedule.changed",
                                           "report_schedule.paused",  "report_schedule.resumed",
                                           "report_schedule.deleted", "report_schedule.triggered"};
  return kTypes[event.index()];
}

std::string to_json(const Event& event) {
  return json::object([&](json::Writer& w) {
    std::visit(
        [&w](const auto& e) {
          using T = std::decay_t<decltype(e)>;
          if constexpr (std::is_same_v<T, Created>) {
            write_definition(w, e.definition);
          } else if constexpr (std::is_same_v<T, Changed>) {
            write_definition(w, e.definition);
            json::key(w, "recurrence_changed");
            w.Bool(e.recurrence_changed);
          } else if constexpr (std::is_same_v<T, Triggered>) {
            json::field(w, "slot_at", core::format_utc_micros(e.slot_at_us));
            json::field(w, "report_id", e.report_id);
            json::field(w, "title", e.title);
            json::field(w, "source_url", e.source_url);
            json::optional_field(w, "source_auth", e.source_auth);
          }
        },
        event);
  });
}

Event event_from_json(std::string_view type, std::string_view data) {
  const auto d = json::parse(data);
  if (type == "report_schedule.created") return Created{read_definition(d)};
  if (type == "report_schedule.changed") {
    const auto it = d.FindMember("recurrence_changed");
    return Changed{read_definition(d),
                   it == d.MemberEnd() || !it->value.IsBool() || it->value.GetBool()};
  }
  if (type == "report_schedule.paused") return Paused{};
  if (type == "report_schedule.resumed") return Resumed{};
  if (type == "report_schedule.deleted") return Deleted{};
  if (type == "report_schedule.triggered") {
    return Triggered{core::parse_utc_micros(json::string(d, "slot_at")),
                     json::string(d, "report_id"), json::string(d, "title"),
                     json::string(d, "source_url"), json::opt_string(d, "source_auth")};
  }
  throw std::invalid_argument("unknown report_schedule event type " + std::string(type));
}

}  // namespace cauce::commands::report_schedule
