#pragma once

// The PostgreSQL side of the projector (adapter): checkpoints and one transaction per batch.

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <pqxx/pqxx>

#include <cauce/projections/batch.hpp>

namespace cauce::projections {

struct ApplyResult {
  std::size_t applied = 0;          // events written
  std::size_t already_applied = 0;  // events at or below the stored checkpoint (redelivered)
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
  // them, writes the rows, notifications and new checkpoints, and pg_notify()s the progress.
  // `passed` (partition -> next offset) moves checkpoints past records that were not events
  // (skipped as foreign). Throws core::DependencyError (retryable) when PostgreSQL is
  // unreachable; the connection is reopened on the next call.
  ApplyResult apply(const std::vector<LogRecord>& records,
                    const std::map<std::int32_t, std::int64_t>& passed = {});

  // Deletes notifications older than `retention_hours`; returns how many.
  std::int64_t prune_notifications(int retention_hours);

 private:
  pqxx::connection& connection();

  std::string conninfo_;
  std::string projection_;
  std::string topic_;
  std::unique_ptr<pqxx::connection> connection_;
  std::set<std::int32_t> ensured_;  // partitions whose checkpoint row is known to exist
};

// The pg_notify channel carrying projection progress (payload: JSON, see projector.cpp).
inline constexpr const char* kProgressChannel = "cauce_projection";

}  // namespace cauce::projections
