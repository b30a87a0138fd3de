#include <algorithm>

#include <rapidjson/document.h>

#include <cauce/commands/jobs.hpp>
#include <cauce/core/log.hpp>
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

std::optional<ScheduleEntry> schedule_after(const commands::EventEnvelope& e) {
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
  } else if (what == "rendered" || what == "completed" || what == "failed" || what == "expired") {
    s.step = "done";
  } else {
    return std::nullopt;
  }
  return s;
}

std::string printable_error(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  const auto replacement = "\xEF\xBF\xBD";
  for (std::size_t i = 0; i < in.size();) {
    const auto c = static_cast<unsigned char>(in[i]);
    std::size_t length = c < 0x80         ? 1
                         : (c >> 5) == 6  ? 2
                         : (c >> 4) == 14 ? 3
                         : (c >> 3) == 30 ? 4
                                          : 0;
    bool valid = length > 0 && i + length <= in.size();
    std::uint32_t code = length == 1   ? c
                         : length == 2 ? c & 0x1F
                         : length == 3 ? c & 0x0F
                                       : c & 0x07;
    for (std::size_t k = 1; valid && k < length; ++k) {
      const auto next = static_cast<unsigned char>(in[i + k]);
      valid = (next & 0xC0) == 0x80;
      code = (code << 6) | (next & 0x3F);
    }
    // Overlong forms, surrogates and code points past U+10FFFF are not UTF-8 either.
    if (valid && ((length == 2 && code < 0x80) || (length == 3 && code < 0x800) ||
                  (length == 4 && (code < 0x10000 || code > 0x10FFFF)) ||
                  (code >= 0xD800 && code <= 0xDFFF))) {
      valid = false;
    }
    if (!valid) {
      out += replacement;
      ++i;
    } else if (code < 0x20 || code == 0x7F) {
      out += ' ';
      ++i;
    } else {
      out.append(in.substr(i, length));
      i += length;
    }
  }
  out = commands::job::clip_error(out);
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
