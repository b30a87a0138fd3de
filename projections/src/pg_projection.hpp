#pragma once

// The PostgreSQL side of the projector (adapter): checkpoints and one transaction per batch.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <pqxx/pqxx>

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

// One connection, its prepared statements and the projection's identity. Not thread-safe.
class PgProjection {
 public:
  PgProjection(std::string conninfo, std::string projection, std::string topic);

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
  ApplyResult apply(const std::vector<LogRecord>& records,
                    const std::vector<ParkedRecord>& parked = {});

  // How many parked events of this projection wait for an operator.
  std::int64_t open_parked();

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

 private:
  struct Written {
    std::size_t applied = 0;
    std::int64_t last_notification_id = 0;  // 0: none written
    std::vector<std::string> unprojected_types;
  };

  pqxx::connection& connection();
  // Runs `body`, turning libpqxx's errors into core::DependencyError / core::DataError.
  template <typename Fn>
  auto guarded(Fn&& body) -> decltype(body());
  // Envelopes, calls, read models and notifications of `fresh` (the caller commits).
  Written write_records(pqxx::dbtransaction& txn, std::vector<LogRecord> fresh);
  // Moves the records of aggregates with an open parked event from `fresh` to `park`.
  std::vector<LogRecord> hold_back_parked_aggregates(pqxx::dbtransaction& txn,
                                                     std::vector<LogRecord> fresh,
                                                     std::vector<ParkedRecord>& park);
  void park(pqxx::dbtransaction& txn, const ParkedRecord& record);

  std::string conninfo_;
  std::string projection_;
  std::string topic_;
  std::unique_ptr<pqxx::connection> connection_;
  std::set<std::int32_t> ensured_;  // partitions whose checkpoint row is known to exist
};

// The pg_notify channel carrying projection progress (payload: JSON, see projector.cpp).
inline constexpr const char* kProgressChannel = "cauce_projection";

}  // namespace cauce::projections
