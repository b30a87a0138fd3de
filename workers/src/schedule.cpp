#include <algorithm>
#include <memory>

#include <glib.h>
#include <rapidjson/document.h>

#include <cauce/commands/jobs.hpp>
#include <cauce/core/log.hpp>
#include <cauce/core/time_zone.hpp>
#include <cauce/workers/schedule.hpp>

namespace cauce::workers {
namespace {

std::int64_t integer(const rapidjson::Document& d, const char* key) {
  const auto it = d.FindMember(key);
  if (it == d.MemberEnd() || !it->value.IsInt64()) {
    throw std::invalid_argument(std::string("job event without an integer ") + key);
  }
  return it->value.GetInt64();
}

std::optional<std::string> text(const rapidjson::Document& d, const char* key) {
  const auto it = d.FindMember(key);
  if (it == d.MemberEnd() || !it->value.IsString()) return std::nullopt;
  return std::string(it->value.GetString(), it->value.GetStringLength());
}

}  // namespace

int Deadlines::of(std::string_view level) const {
  if (level == "critical") return critical_s;
  if (level == "warning") return warning_s;
  return level == "info" ? info_s : 0;
}

std::string deadline_command_id(const std::string& alert_id, const std::string& level,
                                std::int64_t deadline_at_us) {
  return commands::uuid_from_name("deadline\n" + alert_id + "\n" + level + "\n" +
                                  std::to_string(deadline_at_us));
}

namespace {

std::optional<ScheduleEntry> alert_deadline_after(const commands::EventEnvelope& e,
                                                  const rapidjson::Document& d,
                                                  const Deadlines& deadlines) {
  ScheduleEntry s;
  s.kind = "alert";
  s.id = e.aggregate_id;
  s.version = e.version;
  s.step = "done";
  s.due_at_us = e.occurred_at_us;
  s.at_us = e.occurred_at_us;
  std::optional<std::string> level;
  if (e.type == "alert.raised") {
    level = text(d, "level");
  } else if (e.type == "alert.escalated") {
    level = text(d, "to");  // a new level: its own deadline, from now
  } else if (e.type != "alert.acknowledged" && e.type != "alert.closed" &&
             e.type != "alert.deadline_missed") {
    return std::nullopt;
  }
  if (level && deadlines.of(*level) > 0) {
    s.step = "deadline";
    s.deadline_level = level;
    s.due_at_us = e.occurred_at_us + std::int64_t{deadlines.of(*level)} * 1'000'000;
  }
  return s;
}

}  // namespace

std::optional<ScheduleEntry> schedule_after(const commands::EventEnvelope& e,
                                            const Deadlines& deadlines) {
  if (e.aggregate_type == "webhook") {
    // A webhook's row is its deliveries: due while it is active (the runner sets when next),
    // done while it is disabled.
    ScheduleEntry s;
    s.kind = "webhook";
    s.id = e.aggregate_id;
    s.version = e.version;
    s.round = 0;
    s.due_at_us = e.occurred_at_us;
    s.at_us = e.occurred_at_us;
    if (e.type == "webhook.registered" || e.type == "webhook.enabled") {
      s.step = "deliver";
    } else if (e.type == "webhook.disabled") {
      s.step = "done";
    } else {
      return std::nullopt;
    }
    return s;
  }
  if (e.aggregate_type == "alert") {
    rapidjson::Document d;
    d.Parse(e.data.data(), e.data.size());
    if (d.HasParseError() || !d.IsObject()) throw std::invalid_argument("alert event not JSON");
    return alert_deadline_after(e, d, deadlines);
  }
  if (e.aggregate_type != "report" && e.aggregate_type != "backup") return std::nullopt;
  const bool report = e.aggregate_type == "report";
  const std::string first_step = report ? "download" : "backup";
  const auto what = std::string_view(e.type).substr(e.aggregate_type.size() + 1);
  rapidjson::Document d;
  d.Parse(e.data.data(), e.data.size());
  if (d.HasParseError() || !d.IsObject()) throw std::invalid_argument("job event data not JSON");

  ScheduleEntry s;
  s.kind = e.aggregate_type;
  s.id = e.aggregate_id;
  s.version = e.version;
  s.step = first_step;
  s.due_at_us = e.occurred_at_us;
  s.at_us = e.occurred_at_us;
  if (what == "requested") {
    s.round = 0;
    s.title = text(d, "title");
    s.source_url = text(d, "source_url");
    s.source_auth = text(d, "source_auth");
    s.schedule_id = text(d, "schedule_id");
    if (const auto slot = text(d, "slot_at")) s.slot_at_us = core::parse_utc_micros(*slot);
  } else if (what == "retried") {
    s.round = integer(d, "round");
  } else if (what == "download_started" || what == "started") {
    s.attempt = integer(d, "attempt");
    s.started = true;
  } else if (what == "downloaded") {
    s.attempt = integer(d, "attempt");
    s.step = "render";
    s.started = true;
    s.content_type = text(d, "content_type");
  } else if (what == "attempt_failed") {
    const auto next = text(d, "next_attempt_at");
    s.attempt = integer(d, "attempt") + (next ? 1 : 0);
    if (next) {
      s.due_at_us = core::parse_utc_micros(*next);
    } else {
      s.step = "done";  // report.failed / backup.failed follows
    }
  } else if (what == "completed") {
    // A backup with an off-box copy to make (backups.copy_to) goes on to it: attempt 1 of the
    // copy, no start event (the copy's attempts are recorded by their outcome only).
    s.step = text(d, "copy_to") ? "copy" : "done";
    s.started = true;
  } else if (what == "copied") {
    s.step = "done";
  } else if (what == "copy_attempt_failed") {
    const auto next = text(d, "next_attempt_at");
    s.step = next ? "copy" : "done";  // given up: the feeder dead-letters it
    s.attempt = integer(d, "attempt") + (next ? 1 : 0);
    s.started = true;
    if (next) s.due_at_us = core::parse_utc_micros(*next);
  } else if (what == "rendered" || what == "failed" || what == "expired") {
    s.step = "done";
  } else {
    return std::nullopt;
  }
  return s;
}

namespace {

// A report schedule's row after one of its events, and a triggered slot's report.
std::vector<ScheduleEntry> report_schedule_after(const commands::EventEnvelope& e) {
  rapidjson::Document d;
  d.Parse(e.data.data(), e.data.size());
  if (d.HasParseError() || !d.IsObject()) throw std::invalid_argument("schedule event not JSON");
  ScheduleEntry s;
  s.kind = "report_schedule";
  s.id = e.aggregate_id;
  s.version = e.version;
  s.step = "keep";
  s.due_at_us = e.occurred_at_us;
  s.at_us = e.occurred_at_us;
  std::vector<ScheduleEntry> out;
  const auto what = std::string_view(e.type).substr(std::string_view("report_schedule.").size());
  if (what == "created" || what == "changed") {
    s.definition = true;
    s.title = text(d, "title");
    s.source_url = text(d, "source_url");
    s.source_auth = text(d, "source_auth");
    s.timezone = text(d, "timezone");
    if (const auto every = text(d, "every")) {
      s.recurrence = "every " + *every;
    } else if (const auto cron = text(d, "cron")) {
      s.recurrence = "cron " + *cron;
    }
    // A new recurrence restarts the slots: a new revision, counted from the change. A change of
    // anything else keeps both, so a slot due but not fired yet (or missed while cauce was down)
    // still fires. recurrence_changed is absent from events written before it (they restarted).
    const auto restarts = d.FindMember("recurrence_changed");
    if (what == "created" || restarts == d.MemberEnd() || !restarts->value.IsBool() ||
        restarts->value.GetBool()) {
      s.revision = e.version;
      s.slot_after_us = e.occurred_at_us;
    }
    if (what == "created") s.step = "slot";
  } else if (what == "paused" || what == "deleted") {
    s.step = "done";
  } else if (what == "resumed") {
    s.step = "slot";
    s.revision = e.version;
    s.slot_after_us = e.occurred_at_us;
  } else if (what == "triggered") {
    const auto slot = core::parse_utc_micros(text(d, "slot_at").value_or(""));
    s.slot_after_us = slot;
    ScheduleEntry report;
    report.kind = "report";
    report.id = text(d, "report_id").value_or("");
    report.version = 0;  // the report's own events (version 1 on) replace this row
    report.round = 0;
    report.step = "request";
    report.due_at_us = e.occurred_at_us;
    report.at_us = e.occurred_at_us;
    report.title = text(d, "title");
    report.source_url = text(d, "source_url");
    report.source_auth = text(d, "source_auth");
    report.schedule_id = e.aggregate_id;
    report.slot_at_us = slot;
    out.push_back(std::move(report));
  } else {
    return {};
  }
  out.insert(out.begin(), std::move(s));
  return out;
}

}  // namespace

std::vector<ScheduleEntry> schedule_entries_after(const commands::EventEnvelope& event,
                                                  const Deadlines& deadlines) {
  std::vector<ScheduleEntry> out;
  if (event.aggregate_type == "report_schedule") {
    out = report_schedule_after(event);
  } else if (auto entry = schedule_after(event, deadlines)) {
    out.push_back(std::move(*entry));
  }
  if (!event.trace_parent.empty()) {
    for (auto& entry : out) entry.trace_parent = std::string(event.trace_parent.text());
  }
  return out;
}

commands::Recurrence recurrence_of(const std::string& recurrence, const std::string& timezone,
                                   const std::filesystem::path& zoneinfo_dir) {
  if (recurrence.starts_with("every ")) {
    if (const auto every = commands::parse_every(recurrence.substr(6))) {
      return commands::Recurrence::every(*every);
    }
  } else if (recurrence.starts_with("cron ")) {
    auto parsed = commands::CronExpression::parse(recurrence.substr(5));
    if (auto* cron = std::get_if<commands::CronExpression>(&parsed)) {
      return commands::Recurrence::cron(std::move(*cron),
                                        core::load_time_zone(timezone, zoneinfo_dir));
    }
  }
  throw std::invalid_argument("not a recurrence: \"" + recurrence + "\"");
}

std::string slot_command_id(const std::string& schedule_id, std::int64_t revision,
                            std::int64_t slot_at_us) {
  return commands::uuid_from_name("cauce schedule slot\n" + schedule_id + "\n" +
                                  std::to_string(revision) + "\n" + std::to_string(slot_at_us));
}

std::string slot_report_id(const std::string& schedule_id, std::int64_t slot_at_us) {
  return commands::uuid_from_name("cauce scheduled report\n" + schedule_id + "\n" +
                                  std::to_string(slot_at_us));
}

std::string slot_request_command_id(const std::string& schedule_id, std::int64_t slot_at_us) {
  return commands::uuid_from_name("cauce scheduled report request\n" + schedule_id + "\n" +
                                  std::to_string(slot_at_us));
}

std::string printable_error(std::string_view in) {
  // Control characters (U+0000 included) first: ASCII bytes are never part of a longer UTF-8
  // sequence. Then glib's repair, as the renderer uses for cells: each invalid byte (overlong
  // forms and surrogates included) becomes U+FFFD.
  std::string text(in);
  for (auto& c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) c = ' ';
  }
  const std::unique_ptr<gchar, decltype(&g_free)> valid(
      g_utf8_make_valid(text.data(), static_cast<gssize>(text.size())), g_free);
  const auto out = commands::job::clip_error(valid.get());
  return out.empty() ? "unknown error" : out;
}

std::chrono::milliseconds retry_delay(std::int64_t attempt, std::chrono::milliseconds base,
                                      std::chrono::milliseconds cap, std::uint64_t random) {
  const auto doublings = std::clamp<std::int64_t>(attempt - 1, 0, 40);
  const auto bound = std::min<std::int64_t>(cap.count(), base.count() << doublings);
  if (bound <= 0) return std::chrono::milliseconds(0);
  return std::chrono::milliseconds(
      static_cast<std::int64_t>(random % (static_cast<std::uint64_t>(bound) + 1)));
}

std::string step_command_id(const std::string& kind, const std::string& id, std::int64_t round,
                            std::int64_t attempt, const std::string& command_type) {
  return commands::uuid_from_name("cauce job step\n" + kind + "\n" + id + "\n" +
                                  std::to_string(round) + "\n" + std::to_string(attempt) + "\n" +
                                  command_type);
}

std::string scheduled_backup_id(std::int64_t now_us, std::int64_t interval_s) {
  const auto slot = now_us / 1'000'000 / interval_s;
  return commands::uuid_from_name("cauce scheduled backup\n" + std::to_string(interval_s) + "\n" +
                                  std::to_string(slot));
}

}  // namespace cauce::workers
