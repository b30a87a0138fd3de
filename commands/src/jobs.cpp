#include <cauce/commands/envelope.hpp>
#include <cauce/commands/jobs.hpp>
#include <cauce/commands/report_schedule.hpp>
#include <cauce/commands/rules.hpp>
#include <cauce/core/log.hpp>

#include "json_fields.hpp"

namespace cauce::commands::job {
namespace {

std::optional<Rejection> exists(bool exists, const char* what) {
  if (!exists) return Rejection{"not_found", "id", std::string("there is no such ") + what};
  return std::nullopt;
}

// The step must be the one the current attempt is at: a worker that reports attempt n while the
// job is elsewhere (a retry after a crash, a stale worker) is refused, never appended twice.
std::optional<Rejection> current_attempt(std::int64_t attempt, std::int64_t expected, bool in_step,
                                         std::string_view status) {
  if (attempt != expected) {
    return Rejection{
        "conflict", "attempt",
        "the job is at attempt " + std::to_string(expected) + ", not " + std::to_string(attempt)};
  }
  if (!in_step) return Rejection{"conflict", "state", "the job is " + std::string(status)};
  return std::nullopt;
}

std::optional<Rejection> check_failure(const RecordFailure& c) {
  if (auto r = check_text("step", c.step, 40)) return *r;
  if (c.error.empty()) return Rejection{"invalid", "error", "must not be empty"};
  if (c.next_attempt_at_us && !c.retryable) {
    return Rejection{"invalid", "next_attempt_at", "a permanent error has no next attempt"};
  }
  return std::nullopt;
}

// An operator's retry (both jobs): only of a failed job, honouring If-Match; a new round.
template <typename Event, typename State>
std::variant<std::vector<Event>, Rejection> retry(const State& s, const CommandContext& context,
                                                  const std::string& what) {
  if (!s.exists) return Rejection{"not_found", "id", "there is no such " + what};
  if (context.expected_version && *context.expected_version != s.version) {
    return Rejection{"version_mismatch", "If-Match",
                     "the " + what + " is at version " + std::to_string(s.version)};
  }
  if (s.status != decltype(s.status)::kFailed) {
    return Rejection{"conflict", "state",
                     "only a failed " + what + " can be retried; this one is " +
                         std::string(status_name(s.status))};
  }
  return std::vector<Event>{Retried{s.round + 1}};
}

// What the shared events do to either job's state; false for the others.
template <typename State, typename E>
bool evolve_shared(State& s, const E& e) {
  using Status = decltype(s.status);
  if constexpr (std::is_same_v<E, AttemptFailed>) {
    s.status = Status::kRetrying;
  } else if constexpr (std::is_same_v<E, Failed>) {
    s.status = Status::kFailed;
  } else if constexpr (std::is_same_v<E, Retried>) {
    s.status = Status::kRequested;
    s.round = e.round;
    s.attempt = 0;
  } else {
    return false;
  }
  return true;
}

// The events of a failed attempt: the attempt, and the job's failure when nothing follows.
template <typename Event>
std::vector<Event> failure_events(const RecordFailure& c) {
  const auto error = clip_error(c.error);
  std::vector<Event> out{
      AttemptFailed{c.attempt, c.step, error, c.retryable, c.next_attempt_at_us}};
  if (!c.next_attempt_at_us) out.emplace_back(Failed{error, c.attempt});
  return out;
}

// The data of the events both jobs share; false for the others.
template <typename E>
bool write_shared(json::Writer& w, const E& e) {
  if constexpr (std::is_same_v<E, AttemptFailed>) {
    json::field(w, "attempt", e.attempt);
    json::field(w, "step", e.step);
    json::field(w, "error", e.error);
    json::key(w, "retryable");
    w.Bool(e.retryable);
    if (e.next_attempt_at_us) {
      json::field(w, "next_attempt_at", core::format_utc_micros(*e.next_attempt_at_us));
    }
  } else if constexpr (std::is_same_v<E, Failed>) {
    json::field(w, "reason", e.reason);
    json::field(w, "attempts", e.attempts);
  } else if constexpr (std::is_same_v<E, Retried>) {
    json::field(w, "round", e.round);
  } else {
    return false;
  }
  return true;
}

// A shared event of the job whose types start with `prefix` ("report."), from the rest of its
// type ("attempt_failed", "failed", "retried"); nullopt for any other type.
template <typename Event>
std::optional<Event> shared_from_json(std::string_view type, std::string_view prefix,
                                      const rapidjson::Value& d) {
  if (!type.starts_with(prefix)) return std::nullopt;
  const auto what = type.substr(prefix.size());
  if (what == "attempt_failed") {
    const auto next = json::opt_string(d, "next_attempt_at");
    return AttemptFailed{json::integer(d, "attempt"), json::string(d, "step"),
                         json::string(d, "error"), json::boolean(d, "retryable"),
                         next ? std::optional(core::parse_utc_micros(*next)) : std::nullopt};
  }
  if (what == "failed") return Failed{json::string(d, "reason"), json::integer(d, "attempts")};
  if (what == "retried") return Retried{json::integer(d, "round")};
  return std::nullopt;
}

}  // namespace

std::string clip_error(std::string_view error) {
  if (error.size() <= kMaxErrorBytes) return std::string(error);
  auto end = kMaxErrorBytes;
  while (end > 0 && (static_cast<unsigned char>(error[end]) & 0xC0) == 0x80) --end;
  return std::string(error.substr(0, end));
}

}  // namespace cauce::commands::job

namespace cauce::commands::report {

using namespace job;

std::string_view status_name(Status status) {
  switch (status) {
    case Status::kRequested:
      return "requested";
    case Status::kDownloading:
      return "downloading";
    case Status::kDownloaded:
      return "downloaded";
    case Status::kRetrying:
      return "retrying";
    case Status::kReady:
      return "ready";
    case Status::kFailed:
      return "failed";
  }
  return "requested";
}

Result decide(const State& state, const Request& c, const CommandContext&) {
  if (state.exists) return Rejection{"already_exists", "id", "a report with this id exists"};
  if (auto r = check_text("title", c.title, 200)) return *r;
  if (!valid_http_url(c.source_url)) {
    return Rejection{"invalid", "source_url", "must be an http:// or https:// URL"};
  }
  if (c.schedule_id && !is_uuid(*c.schedule_id)) {
    return Rejection{"invalid", "schedule_id", "must be a UUID"};
  }
  if (c.schedule_id.has_value() != c.slot_at_us.has_value()) {
    return Rejection{"invalid", "slot_at", "a scheduled report names its schedule and its slot"};
  }
  if (c.source_auth && !report_schedule::valid_source_auth_name(*c.source_auth)) {
    return Rejection{"invalid", "source_auth", "must be the name of a configured secret"};
  }
  return std::vector<Event>{
      Requested{trim(c.title), c.source_url, c.source_auth, c.schedule_id, c.slot_at_us}};
}

Result decide(const State& s, const StartDownload& c, const CommandContext&) {
  if (auto r = job::exists(s.exists, "report")) return *r;
  const bool startable = s.status == Status::kRequested || s.status == Status::kRetrying;
  if (auto r = current_attempt(c.attempt, s.attempt + 1, startable, status_name(s.status))) {
    return *r;
  }
  return std::vector<Event>{DownloadStarted{c.attempt}};
}

Result decide(const State& s, const RecordDownload& c, const CommandContext&) {
  if (auto r = job::exists(s.exists, "report")) return *r;
  if (auto r = current_attempt(c.attempt, s.attempt, s.status == Status::kDownloading,
                               status_name(s.status))) {
    return *r;
  }
  if (c.bytes < 0) return Rejection{"invalid", "bytes", "must not be negative"};
  if (c.sha256.size() != 64) return Rejection{"invalid", "sha256", "must be 64 hex digits"};
  if (auto r = check_text("content_type", c.content_type, 100)) return *r;
  return std::vector<Event>{Downloaded{c.attempt, c.bytes, c.sha256, c.content_type}};
}

Result decide(const State& s, const RecordRender& c, const CommandContext&) {
  if (auto r = job::exists(s.exists, "report")) return *r;
  if (auto r = current_attempt(c.attempt, s.attempt, s.status == Status::kDownloaded,
                               status_name(s.status))) {
    return *r;
  }
  if (c.pages < 1) return Rejection{"invalid", "pages", "must be at least 1"};
  if (c.sha256.size() != 64) return Rejection{"invalid", "sha256", "must be 64 hex digits"};
  return std::vector<Event>{Rendered{c.attempt, c.pages, c.bytes, c.sha256}};
}

Result decide(const State& s, const RecordFailure& c, const CommandContext&) {
  if (auto r = job::exists(s.exists, "report")) return *r;
  const bool running = s.status == Status::kDownloading || s.status == Status::kDownloaded;
  if (auto r = current_attempt(c.attempt, s.attempt, running, status_name(s.status))) return *r;
  if (auto r = check_failure(c)) return *r;
  return failure_events<Event>(c);
}

Result decide(const State& s, const Retry&, const CommandContext& context) {
  return retry<Event>(s, context, "report");
}

State evolve(State s, const Event& event) {
  ++s.version;
  s.exists = true;
  std::visit(
      [&s](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, Requested>) {
          s.status = Status::kRequested;
        } else if constexpr (std::is_same_v<T, DownloadStarted>) {
          s.status = Status::kDownloading;
          s.attempt = e.attempt;
        } else if constexpr (std::is_same_v<T, Downloaded>) {
          s.status = Status::kDownloaded;
        } else if constexpr (std::is_same_v<T, Rendered>) {
          s.status = Status::kReady;
        } else {
          evolve_shared(s, e);
        }
      },
      event);
  return s;
}

std::string event_type(const Event& event) {
  static constexpr const char* kTypes[] = {
      "report.requested", "report.download_started", "report.downloaded", "report.attempt_failed",
      "report.rendered",  "report.failed",           "report.retried"};
  return kTypes[event.index()];
}

std::string to_json(const Event& event) {
  return json::object([&](json::Writer& w) {
    std::visit(
        [&w](const auto& e) {
          using T = std::decay_t<decltype(e)>;
          if constexpr (std::is_same_v<T, Requested>) {
            json::field(w, "title", e.title);
            json::field(w, "source_url", e.source_url);
            json::optional_field(w, "source_auth", e.source_auth);
            json::optional_field(w, "schedule_id", e.schedule_id);
            if (e.slot_at_us) json::field(w, "slot_at", core::format_utc_micros(*e.slot_at_us));
          } else if constexpr (std::is_same_v<T, DownloadStarted>) {
            json::field(w, "attempt", e.attempt);
          } else if constexpr (std::is_same_v<T, Downloaded>) {
            json::field(w, "attempt", e.attempt);
            json::field(w, "bytes", e.bytes);
            json::field(w, "sha256", e.sha256);
            json::field(w, "content_type", e.content_type);
          } else if constexpr (std::is_same_v<T, Rendered>) {
            json::field(w, "attempt", e.attempt);
            json::field(w, "pages", e.pages);
            json::field(w, "bytes", e.bytes);
            json::field(w, "sha256", e.sha256);
          } else {
            write_shared(w, e);
          }
        },
        event);
  });
}

Event event_from_json(std::string_view type, std::string_view data) {
  const auto d = json::parse(data);
  if (type == "report.requested") {
    const auto slot = json::opt_string(d, "slot_at");
    return Requested{json::string(d, "title"), json::string(d, "source_url"),
                     json::opt_string(d, "source_auth"), json::opt_string(d, "schedule_id"),
                     slot ? std::optional(core::parse_utc_micros(*slot)) : std::nullopt};
  }
  if (type == "report.download_started") return DownloadStarted{json::integer(d, "attempt")};
  if (type == "report.downloaded") {
    return Downloaded{json::integer(d, "attempt"), json::integer(d, "bytes"),
                      json::string(d, "sha256"), json::string(d, "content_type")};
  }
  if (type == "report.rendered") {
    return Rendered{json::integer(d, "attempt"), json::integer(d, "pages"),
                    json::integer(d, "bytes"), json::string(d, "sha256")};
  }
  if (auto shared = shared_from_json<Event>(type, "report.", d)) return *shared;
  throw std::invalid_argument("unknown report event type " + std::string(type));
}

}  // namespace cauce::commands::report

namespace cauce::commands::backup {

using namespace job;

std::string_view status_name(Status status) {
  switch (status) {
    case Status::kRequested:
      return "requested";
    case Status::kRunning:
      return "running";
    case Status::kRetrying:
      return "retrying";
    case Status::kCompleted:
      return "completed";
    case Status::kFailed:
      return "failed";
    case Status::kExpired:
      return "expired";
  }
  return "requested";
}

std::string_view copy_status_name(CopyStatus status) {
  switch (status) {
    case CopyStatus::kNone:
      return "none";
    case CopyStatus::kPending:
      return "pending";
    case CopyStatus::kCopied:
      return "copied";
    case CopyStatus::kFailed:
      return "failed";
  }
  return "none";
}

Result decide(const State& state, const Request&, const CommandContext&) {
  if (state.exists) return Rejection{"already_exists", "id", "a backup with this id exists"};
  return std::vector<Event>{Requested{}};
}

Result decide(const State& s, const Start& c, const CommandContext&) {
  if (auto r = job::exists(s.exists, "backup")) return *r;
  const bool startable = s.status == Status::kRequested || s.status == Status::kRetrying;
  if (auto r = current_attempt(c.attempt, s.attempt + 1, startable, status_name(s.status))) {
    return *r;
  }
  return std::vector<Event>{Started{c.attempt}};
}

Result decide(const State& s, const RecordCompletion& c, const CommandContext&) {
  if (auto r = job::exists(s.exists, "backup")) return *r;
  if (auto r = current_attempt(c.attempt, s.attempt, s.status == Status::kRunning,
                               status_name(s.status))) {
    return *r;
  }
  if (c.sha256.size() != 64) return Rejection{"invalid", "sha256", "must be 64 hex digits"};
  if (c.bytes < 0 || c.events < 0) return Rejection{"invalid", "bytes", "must not be negative"};
  if (c.positions.empty() || c.positions.size() > 10000) {
    return Rejection{"invalid", "positions", "must name 1 to 10000 partitions"};
  }
  if (c.copy_to) {
    if (auto r = check_text("copy_to", *c.copy_to, 4096)) return *r;
  }
  return std::vector<Event>{
      Completed{c.attempt, c.bytes, c.sha256, c.positions, c.events, c.copy_to}};
}

Result decide(const State& s, const RecordFailure& c, const CommandContext&) {
  if (auto r = job::exists(s.exists, "backup")) return *r;
  if (auto r = current_attempt(c.attempt, s.attempt, s.status == Status::kRunning,
                               status_name(s.status))) {
    return *r;
  }
  if (auto r = check_failure(c)) return *r;
  return failure_events<Event>(c);
}

Result decide(const State& s, const Retry&, const CommandContext& context) {
  return retry<Event>(s, context, "backup");
}

Result decide(const State& s, const Expire&, const CommandContext&) {
  if (auto r = job::exists(s.exists, "backup")) return *r;
  if (s.status != Status::kCompleted) {
    return Rejection{
        "conflict", "state",
        "only a completed backup expires; this one is " + std::string(status_name(s.status))};
  }
  // Its copy needs its files: retention asks again (too_early is not remembered against the
  // command id) and the backup expires once the copy is recorded or given up.
  if (s.copy == CopyStatus::kPending) {
    return Rejection{"too_early", "copy",
                     "the backup's copy is pending; it expires once the copy is done or given up"};
  }
  return std::vector<Event>{Expired{}};
}

namespace {

// A copy attempt is recorded once, in order, and only while the copy of a completed backup is
// pending (a backup does not expire then; one that expired with its copy pending, before
// backup.expire refused that, may still record it).
std::optional<Rejection> current_copy_attempt(const State& s, std::int64_t attempt) {
  if (auto r = job::exists(s.exists, "backup")) return *r;
  if (s.copy != CopyStatus::kPending) {
    return Rejection{"conflict", "state",
                     "the backup's copy is " + std::string(copy_status_name(s.copy))};
  }
  if (attempt != s.copy_attempts + 1) {
    return Rejection{"conflict", "attempt",
                     "the copy is at attempt " + std::to_string(s.copy_attempts + 1) + ", not " +
                         std::to_string(attempt)};
  }
  return std::nullopt;
}

}  // namespace

Result decide(const State& s, const RecordCopy& c, const CommandContext&) {
  if (auto r = current_copy_attempt(s, c.attempt)) return *r;
  if (auto r = check_text("directory", c.directory, 4096)) return *r;
  if (c.sha256.size() != 64) return Rejection{"invalid", "sha256", "must be 64 hex digits"};
  if (c.bytes < 0) return Rejection{"invalid", "bytes", "must not be negative"};
  return std::vector<Event>{Copied{c.attempt, c.directory, c.bytes, c.sha256}};
}

Result decide(const State& s, const RecordCopyFailure& c, const CommandContext&) {
  if (auto r = current_copy_attempt(s, c.attempt)) return *r;
  if (c.error.empty()) return Rejection{"invalid", "error", "must not be empty"};
  return std::vector<Event>{
      CopyAttemptFailed{c.attempt, clip_error(c.error), c.next_attempt_at_us}};
}

State evolve(State s, const Event& event) {
  ++s.version;
  s.exists = true;
  std::visit(
      [&s](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, Requested>) {
          s.status = Status::kRequested;
        } else if constexpr (std::is_same_v<T, Started>) {
          s.status = Status::kRunning;
          s.attempt = e.attempt;
        } else if constexpr (std::is_same_v<T, Completed>) {
          s.status = Status::kCompleted;
          s.copy = e.copy_to ? CopyStatus::kPending : CopyStatus::kNone;
          s.copy_attempts = 0;
        } else if constexpr (std::is_same_v<T, Expired>) {
          s.status = Status::kExpired;
        } else if constexpr (std::is_same_v<T, Copied>) {
          s.copy = CopyStatus::kCopied;
          s.copy_attempts = e.attempt;
        } else if constexpr (std::is_same_v<T, CopyAttemptFailed>) {
          s.copy = e.next_attempt_at_us ? CopyStatus::kPending : CopyStatus::kFailed;
          s.copy_attempts = e.attempt;
        } else {
          evolve_shared(s, e);
        }
      },
      event);
  return s;
}

std::string event_type(const Event& event) {
  static constexpr const char* kTypes[] = {
      "backup.requested", "backup.started", "backup.attempt_failed",
      "backup.completed", "backup.failed",  "backup.retried",
      "backup.expired",   "backup.copied",  "backup.copy_attempt_failed"};
  return kTypes[event.index()];
}

std::string to_json(const Event& event) {
  return json::object([&](json::Writer& w) {
    std::visit(
        [&w](const auto& e) {
          using T = std::decay_t<decltype(e)>;
          if constexpr (std::is_same_v<T, Started>) {
            json::field(w, "attempt", e.attempt);
          } else if constexpr (std::is_same_v<T, Completed>) {
            json::field(w, "attempt", e.attempt);
            json::field(w, "bytes", e.bytes);
            json::field(w, "sha256", e.sha256);
            json::key(w, "positions");
            w.StartArray();
            for (const auto p : e.positions) w.Int64(p);
            w.EndArray();
            json::field(w, "events", e.events);
            if (e.copy_to) json::field(w, "copy_to", *e.copy_to);
          } else if constexpr (std::is_same_v<T, Copied>) {
            json::field(w, "attempt", e.attempt);
            json::field(w, "directory", e.directory);
            json::field(w, "bytes", e.bytes);
            json::field(w, "sha256", e.sha256);
          } else if constexpr (std::is_same_v<T, CopyAttemptFailed>) {
            json::field(w, "attempt", e.attempt);
            json::field(w, "error", e.error);
            if (e.next_attempt_at_us) {
              json::field(w, "next_attempt_at", core::format_utc_micros(*e.next_attempt_at_us));
            }
          } else {
            write_shared(w, e);  // nothing for requested and expired
          }
        },
        event);
  });
}

Event event_from_json(std::string_view type, std::string_view data) {
  const auto d = json::parse(data);
  if (type == "backup.requested") return Requested{};
  if (type == "backup.started") return Started{json::integer(d, "attempt")};
  if (type == "backup.completed") {
    return Completed{json::integer(d, "attempt"), json::integer(d, "bytes"),
                     json::string(d, "sha256"),   json::integers(d, "positions"),
                     json::integer(d, "events"),  json::opt_string(d, "copy_to")};
  }
  if (type == "backup.copied") {
    return Copied{json::integer(d, "attempt"), json::string(d, "directory"),
                  json::integer(d, "bytes"), json::string(d, "sha256")};
  }
  if (type == "backup.copy_attempt_failed") {
    const auto next = json::opt_string(d, "next_attempt_at");
    return CopyAttemptFailed{json::integer(d, "attempt"), json::string(d, "error"),
                             next ? std::optional(core::parse_utc_micros(*next)) : std::nullopt};
  }
  if (auto shared = shared_from_json<Event>(type, "backup.", d)) return *shared;
  if (type == "backup.expired") return Expired{};
  throw std::invalid_argument("unknown backup event type " + std::string(type));
}

}  // namespace cauce::commands::backup
