#pragma once

// Parked events (DESIGN §4): records a projection could not apply — PostgreSQL refused their
// data, or they are not cauce events — stored in `parked_events` while the projection goes on,
// with later events of the same aggregate held back behind them. Operators list them and retry
// them through the code of the day (after a fix or an upcaster lands) or skip them:
// `cauce parked list|retry ID|skip ID` and /v1/admin/parked (admin).

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace cauce::projections {

class PgProjection;

struct ParkedEvent {
  std::int64_t id = 0;
  std::string projection;
  std::int32_t partition = 0;
  std::int64_t offset = 0;
  std::optional<std::string> event_id;  // nullopt: the record did not decode into an event
  std::optional<std::string> type;
  std::optional<std::string> aggregate_type;
  std::optional<std::string> aggregate_id;
  std::string error;
  std::optional<std::string> sqlstate;
  std::int32_t attempts = 0;
  std::string parked_at;  // RFC 3339
  std::string last_attempt_at;
  std::optional<std::string> resolution;  // "retried" | "skipped"; nullopt while open
  std::optional<std::string> resolved_at;
  std::optional<std::string> resolved_by;
};

// What a retry did.
struct RetryResult {
  enum class Outcome {
    kApplied,        // the event (and the ones held back behind it that apply) are projected
    kFailed,         // it still does not apply: `error` says why (attempts counted)
    kNotFound,       // no parked event with that id
    kResolved,       // retried or skipped already
    kBehindAnother,  // an earlier event of its aggregate is parked: retry `blocking_id` first
  };
  Outcome outcome = Outcome::kNotFound;
  std::size_t applied = 0;
  std::string error;
  std::int64_t blocking_id = 0;
};

// One projection's parked events, over one PostgreSQL connection of its own (reopened after a
// failure). Thread-safe: calls are serialised. PostgreSQL failures throw core::DependencyError.
class ParkedEvents {
 public:
  ParkedEvents(std::string conninfo, std::string projection, std::string topic);
  ~ParkedEvents();
  ParkedEvents(const ParkedEvents&) = delete;
  ParkedEvents& operator=(const ParkedEvents&) = delete;

  // Oldest first, after id `after_id` (keyset), at most `limit`; open ones only unless `all`.
  std::vector<ParkedEvent> list(bool all, std::int64_t after_id, int limit);
  std::optional<ParkedEvent> get(std::int64_t id);
  std::int64_t open_count();
  RetryResult retry(std::int64_t id, const std::string& actor);
  bool skip(std::int64_t id, const std::string& actor);  // false: no open parked event `id`

 private:
  std::mutex mutex_;
  std::unique_ptr<PgProjection> projection_store_;
};

}  // namespace cauce::projections
