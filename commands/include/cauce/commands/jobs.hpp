#pragma once

// The Report and Backup job aggregates (DESIGN §5). An operator (or the backup schedule)
// requests a job; the workers run it and report every step back as a command, so each attempt,
// failure and result is an event in the log.
//
// Both jobs count attempts the same way: attempt n+1 may start only after attempt n failed
// with a next attempt scheduled; a failure without one is final (`failed`), and an operator's
// retry starts a new round at attempt 1. The worker chooses the backoff and whether an error
// is permanent; the aggregate holds the order of steps, so a step reported twice (a worker
// that crashed after reporting it, a stale worker) is refused instead of appended twice.

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <cauce/commands/domain.hpp>

namespace cauce::commands::job {

// Commands and events both jobs share.
struct RecordFailure {
  std::int64_t attempt = 0;
  std::string step;   // "download", "render", "backup"
  std::string error;  // what went wrong, for operators
  bool retryable = false;
  std::optional<std::int64_t> next_attempt_at_us;  // none: the job has failed for good
};
struct Retry {};

struct AttemptFailed {
  std::int64_t attempt = 0;
  std::string step;
  std::string error;
  bool retryable = false;
  std::optional<std::int64_t> next_attempt_at_us;
  friend bool operator==(const AttemptFailed&, const AttemptFailed&) = default;
};
struct Failed {
  std::string reason;
  std::int64_t attempts = 0;
  friend bool operator==(const Failed&, const Failed&) = default;
};
struct Retried {
  std::int64_t round = 0;  // 1 for the first retry
  friend bool operator==(const Retried&, const Retried&) = default;
};

// Errors are kept to this many bytes in events (a long libcurl message is cut at a UTF-8
// character boundary).
inline constexpr std::size_t kMaxErrorBytes = 1000;
std::string clip_error(std::string_view error);

}  // namespace cauce::commands::job

namespace cauce::commands::report {

enum class Status { kRequested, kDownloading, kDownloaded, kRetrying, kReady, kFailed };
std::string_view status_name(Status status);

struct Request {
  std::string title;
  std::string source_url;
  // A report a schedule requested (report.request_scheduled, a worker's command): the schedule,
  // its slot, and the name of the secret the download authenticates with.
  std::optional<std::string> source_auth = std::nullopt;
  std::optional<std::string> schedule_id = std::nullopt;
  std::optional<std::int64_t> slot_at_us = std::nullopt;
};
struct StartDownload {
  std::int64_t attempt = 0;
};
struct RecordDownload {
  std::int64_t attempt = 0;
  std::int64_t bytes = 0;
  std::string sha256;
  std::string content_type;
};
struct RecordRender {
  std::int64_t attempt = 0;
  std::int64_t pages = 0;
  std::int64_t bytes = 0;
  std::string sha256;
};
using job::RecordFailure;
using job::Retry;

struct Requested {
  std::string title;
  std::string source_url;
  std::optional<std::string> source_auth = std::nullopt;
  std::optional<std::string> schedule_id = std::nullopt;
  std::optional<std::int64_t> slot_at_us = std::nullopt;
  friend bool operator==(const Requested&, const Requested&) = default;
};
struct DownloadStarted {
  std::int64_t attempt = 0;
  friend bool operator==(const DownloadStarted&, const DownloadStarted&) = default;
};
struct Downloaded {
  std::int64_t attempt = 0;
  std::int64_t bytes = 0;
  std::string sha256;
  std::string content_type;
  friend bool operator==(const Downloaded&, const Downloaded&) = default;
};
struct Rendered {
  std::int64_t attempt = 0;
  std::int64_t pages = 0;
  std::int64_t bytes = 0;
  std::string sha256;
  friend bool operator==(const Rendered&, const Rendered&) = default;
};
using Event = std::variant<Requested, DownloadStarted, Downloaded, job::AttemptFailed, Rendered,
                           job::Failed, job::Retried>;

struct State {
  bool exists = false;
  std::int64_t version = 0;
  Status status = Status::kRequested;
  std::int64_t round = 0;    // operator retries so far
  std::int64_t attempt = 0;  // the current (or last) attempt of this round; 0 before the first
};
using Result = std::variant<std::vector<Event>, Rejection>;

Result decide(const State& state, const Request& command, const CommandContext& context);
Result decide(const State& state, const StartDownload& command, const CommandContext& context);
Result decide(const State& state, const RecordDownload& command, const CommandContext& context);
Result decide(const State& state, const RecordRender& command, const CommandContext& context);
Result decide(const State& state, const RecordFailure& command, const CommandContext& context);
Result decide(const State& state, const Retry& command, const CommandContext& context);
State evolve(State state, const Event& event);
std::string event_type(const Event& event);
std::string to_json(const Event& event);
Event event_from_json(std::string_view type, std::string_view data);

}  // namespace cauce::commands::report

namespace cauce::commands::backup {

enum class Status { kRequested, kRunning, kRetrying, kCompleted, kFailed, kExpired };
std::string_view status_name(Status status);

// The off-box copy of a completed backup (backups.copy_to): a step of its own after the backup,
// with its own attempts. Whatever becomes of it, the backup stays completed.
enum class CopyStatus { kNone, kPending, kCopied, kFailed };
std::string_view copy_status_name(CopyStatus status);

struct Request {};
struct Start {
  std::int64_t attempt = 0;
};
struct RecordCompletion {
  std::int64_t attempt = 0;
  std::int64_t bytes = 0;               // all files of the backup
  std::string sha256;                   // of its manifest
  std::vector<std::int64_t> positions;  // per partition of the event log: the next offset
  std::int64_t events = 0;              // events exported
  std::optional<std::string> copy_to = std::nullopt;  // a copy follows, into this directory
};
struct Expire {};
// The copy's attempts count from 1, apart from the backup's.
struct RecordCopy {
  std::int64_t attempt = 0;
  std::string directory;  // the copy
  std::int64_t bytes = 0;
  std::string sha256;  // of the copy's manifest, read back from the destination
};
struct RecordCopyFailure {
  std::int64_t attempt = 0;
  std::string error;
  std::optional<std::int64_t> next_attempt_at_us;  // none: the copy is given up
};
using job::RecordFailure;
using job::Retry;

struct Requested {
  friend bool operator==(const Requested&, const Requested&) = default;
};
struct Started {
  std::int64_t attempt = 0;
  friend bool operator==(const Started&, const Started&) = default;
};
struct Completed {
  std::int64_t attempt = 0;
  std::int64_t bytes = 0;
  std::string sha256;
  std::vector<std::int64_t> positions;
  std::int64_t events = 0;
  std::optional<std::string> copy_to = std::nullopt;
  friend bool operator==(const Completed&, const Completed&) = default;
};
struct Expired {
  friend bool operator==(const Expired&, const Expired&) = default;
};
struct Copied {
  std::int64_t attempt = 0;
  std::string directory;
  std::int64_t bytes = 0;
  std::string sha256;
  friend bool operator==(const Copied&, const Copied&) = default;
};
struct CopyAttemptFailed {
  std::int64_t attempt = 0;
  std::string error;
  std::optional<std::int64_t> next_attempt_at_us;
  friend bool operator==(const CopyAttemptFailed&, const CopyAttemptFailed&) = default;
};
using Event = std::variant<Requested, Started, job::AttemptFailed, Completed, job::Failed,
                           job::Retried, Expired, Copied, CopyAttemptFailed>;

struct State {
  bool exists = false;
  std::int64_t version = 0;
  Status status = Status::kRequested;
  std::int64_t round = 0;
  std::int64_t attempt = 0;
  CopyStatus copy = CopyStatus::kNone;
  std::int64_t copy_attempts = 0;  // copy attempts recorded (failed or not)
};
using Result = std::variant<std::vector<Event>, Rejection>;

Result decide(const State& state, const Request& command, const CommandContext& context);
Result decide(const State& state, const Start& command, const CommandContext& context);
Result decide(const State& state, const RecordCompletion& command, const CommandContext& context);
Result decide(const State& state, const RecordFailure& command, const CommandContext& context);
Result decide(const State& state, const Retry& command, const CommandContext& context);
Result decide(const State& state, const Expire& command, const CommandContext& context);
Result decide(const State& state, const RecordCopy& command, const CommandContext& context);
Result decide(const State& state, const RecordCopyFailure& command, const CommandContext& context);
State evolve(State state, const Event& event);
std::string event_type(const Event& event);
std::string to_json(const Event& event);
Event event_from_json(std::string_view type, std::string_view data);

}  // namespace cauce::commands::backup
