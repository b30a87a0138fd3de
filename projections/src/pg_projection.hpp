#pragma once

// The PostgreSQL side of the projector (adapter): checkpoints and one transaction per batch.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <pqxx/pqxx>

#include <cauce/core/errors.hpp>
#include <cauce/projections/batch.hpp>
#include <cauce/projections/parked_events.hpp>

namespace cauce::projections {

// A record the projection does not apply: it is stored in parked_events and the checkpoint moves
// past it. Either it did not decode (no event identity), or PostgreSQL refused it (a data
// failure), or an earlier event of its aggregate is parked (held back to keep versions in order).
struct ParkedRecord {
  std::int32_t partition = 0;
  std::int64_t offset = 0;
  std::string value;  // what a retry decodes and applies: as read, or the decoded event re-encoded
  std::string error;
  std::string sqlstate;                          // "" unless PostgreSQL refused it
  std::optional<commands::EventEnvelope> event;  // when it decoded
  // The aggregate it belongs to: the event's, or the record's key when that is a UUID (an
  // event that does not decode still holds back the later events of its aggregate); "" if none.
  std::string aggregate_id;

  static ParkedRecord of(const LogRecord& record, std::string error, std::string sqlstate = {});
};

struct ApplyResult {
  std::size_t applied = 0;          // events written
  std::size_t already_applied = 0;  // events at or below the stored checkpoint (redelivered)
  std::size_t parked = 0;           // records parked (given, or held back behind a parked one)
  std::optional<ParkedRecord> first_parked;          // for the log
  std::map<std::int32_t, std::int64_t> checkpoints;  // partition -> next offset after commit
  std::vector<std::string> unprojected_types;
};

// The generation a projection writes to was switched away from (a replay went live): the batch
// was not applied; the caller reads its checkpoints again, which now come from the live one.
class ReadModelMoved : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An operator's change (a parked event retried or skipped) met a switch of the live generation
// between choosing its connection and locking the live one: not applied; the same call on a
// fresh connection follows the new generation.
class GenerationSwitched : public core::DependencyError {
 public:
  GenerationSwitched()
      : core::DependencyError(
            "postgres", "the read models just switched to a new generation; try again", true) {}
};

// One connection, its prepared statements and the projection's identity. Not thread-safe.
//
// `schema` is the read-model generation written to (infra/sql/0008): "" follows the live one
// (the projector of `cauce serve`, the parked-event tools), a name pins one (a replay building
// its generation). The connection's search_path starts with it, so the statements below name
// tables without a schema; `notifications` and the other shared tables live in public.
class PgProjection {
 public:
  PgProjection(std::string conninfo, std::string projection, std::string topic,
               std::string schema = {});

  // The generation written to ("" before the first connection).
  const std::string& schema() const { return current_schema_; }

  // partition -> next offset for `partitions` (0 for a partition never applied).
  std::map<std::int32_t, std::int64_t> load_checkpoints(
      const std::vector<std::int32_t>& partitions);

  // In one transaction: locks the checkpoints of the batch's partitions, drops records below
  // them, parks `parked` and the records of aggregates that have a parked event, writes the
  // rest's rows and notifications, the new checkpoints, and pg_notify()s the progress.
  // Throws core::DependencyError (retryable) when PostgreSQL is unreachable, busy or shutting
  // down (the connection is reopened on the next call), core::DataError when PostgreSQL refused
  // the batch's data (SQLSTATE classes 22, 23, 42, …) or an event does not fold: the caller
  // isolates the record at fault and parks it.
  // `ends`: partitions read to their end (partition -> the end offset, past any transaction
  // markers after the last record): their checkpoints move there.
  ApplyResult apply(const std::vector<LogRecord>& records,
                    const std::vector<ParkedRecord>& parked = {},
                    const std::map<std::int32_t, std::int64_t>& ends = {});

  // How many parked events of this projection wait for an operator.
  std::int64_t open_parked();
  // The progress (0..1) of the replay building a new generation of it; 0 when none is.
  double replay_progress();

  // Applies parked event `id` through the current code, with the events of its aggregate held
  // back behind it, in log order, stopping before the first that still fails (its attempts and
  // error are updated). Checkpoints do not move: these records are behind them already.
  RetryResult retry_parked(std::int64_t id, const std::string& actor);
  // Marks parked event `id` skipped (never applied). false when there is no open one.
  bool skip_parked(std::int64_t id, const std::string& actor);
  std::vector<ParkedEvent> list_parked(bool all, std::int64_t after_id, int limit,
                                       std::optional<std::int64_t> only_id = std::nullopt);

  // Deletes notifications older than `retention_hours`; returns how many.
  std::int64_t prune_notifications(int retention_hours);
  // See the free function below.
  std::vector<std::string> drop_replaced_generations();

 private:
  struct Written {
    std::size_t applied = 0;
    std::int64_t last_notification_id = 0;  // 0: none written
    std::vector<std::string> unprojected_types;
  };

  pqxx::connection& connection();
  // connection(), first moved to the live generation if a switch happened (following it only).
  pqxx::connection& live_connection();
  // Keeps the live generation from switching until `txn` ends; throws a retryable
  // DependencyError when it switched since the connection was made (following it only).
  void hold_live(pqxx::dbtransaction& txn) const;
  // Runs `body`, turning libpqxx's errors into core::DependencyError / core::DataError.
  template <typename Fn>
  auto guarded(Fn&& body) -> decltype(body());
  // guarded(body), again on a fresh connection when a switch of the live generation raced it.
  template <typename Fn>
  auto following_switches(Fn&& body) -> decltype(body());
  // Which records of a write get a notification: every one (a parked event retried), those at
  // or past notification_marks (the live generation's batches; the marks move), or none (a
  // generation a replay is building).
  enum class Notify { kAll, kFromMarks, kNone };
  // Envelopes, calls, read models and notifications of `fresh` (the caller commits).
  Written write_records(pqxx::dbtransaction& txn, std::vector<LogRecord> fresh, Notify notify);
  // The records of `fresh` no generation has notified yet; moves the marks past them.
  std::vector<LogRecord> unnotified(pqxx::dbtransaction& txn, const std::vector<LogRecord>& fresh);
  // Moves the records of aggregates with an open parked event from `fresh` to `park`.
  std::vector<LogRecord> hold_back_parked_aggregates(pqxx::dbtransaction& txn,
                                                     std::vector<LogRecord> fresh,
                                                     std::vector<ParkedRecord>& park);
  void park(pqxx::dbtransaction& txn, const ParkedRecord& record);

  std::string conninfo_;
  std::string projection_;
  std::string topic_;
  std::string pinned_schema_;   // "" follows read_model_live
  std::string current_schema_;  // the connection's
  std::unique_ptr<pqxx::connection> connection_;
  std::set<std::int32_t> ensured_;  // partitions whose checkpoint row is known to exist
};

// The pg_notify channel carrying projection progress (payload: progress_payload()).
inline constexpr const char* kProgressChannel = "cauce_projection";

// {"projection":…,"topic":…,"schema":…,"checkpoints":{"0":12,…},"last_notification_id":N}, and
// "switch":true when `schema` has just become the live generation (the notification hub then
// answers positions from its checkpoints).
std::string progress_payload(const std::string& projection, const std::string& topic,
                             const std::string& schema,
                             const std::map<std::int32_t, std::int64_t>& checkpoints,
                             std::int64_t last_notification_id, bool switched = false);

// In the switch to generation `schema` (whose checkpoints are `checkpoints`): notifications for
// its events at or past notification_marks, in log order, and the marks moved to the
// checkpoints. Returns the last notification id written (0: none).
std::int64_t notify_from_generation(pqxx::dbtransaction& txn, const std::string& schema,
                                    const std::string& topic,
                                    const std::map<std::int32_t, std::int64_t>& checkpoints);

// Drops the generations replays replaced once their grace is over, and those of abandoned
// replays (never the live one); returns their schemas. Skips when another process is dropping;
// gives up (throws) on a lock not granted within 2 s.
std::vector<std::string> drop_replaced_generations(pqxx::connection& connection);

}  // namespace cauce::projections
