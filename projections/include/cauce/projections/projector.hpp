#pragma once

// The projector (role `projector`, DESIGN §4): folds cauce.events into the PostgreSQL read
// models, exactly once.
//
// A consumer group on the event topic (read_committed, auto-commit off). Each batch is applied
// in one PostgreSQL transaction together with its checkpoint (projection, partition -> next
// offset) and its change notifications; on assignment a partition starts at its stored
// checkpoint, never at Kafka's committed offset, so a crash or a rebalance re-delivers only what
// the checkpoint already rejects. When PostgreSQL fails (unreachable, busy, shutting down) the
// batch is dropped, the partitions are paused and, once PostgreSQL answers again (asked with
// capped, jittered backoff), re-read from their checkpoints. When PostgreSQL refuses an event's
// data, or a record is not a cauce event, that one record is parked (parked_events) and the rest
// is applied: one bad event never stops the projection.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <prometheus/registry.h>

#include <cauce/core/config.hpp>

namespace cauce::projections {

struct ProjectorOptions {
  core::KafkaConfig kafka;
  core::PostgresConfig postgres;
  core::ProjectionsConfig projections;
  // The read-model generation written to: "" follows the live one (and moves over when a replay
  // switches), a schema name pins one (the replay building it).
  std::string schema;
};

struct ProjectionStatus {
  struct Partition {
    std::int32_t partition = 0;
    std::int64_t next_offset = 0;  // the first offset not applied yet
    std::int64_t end_offset = 0;   // the log's end as last seen (-1: unknown)
    std::int64_t lag = 0;          // events (and transaction markers) not applied yet
  };
  std::vector<Partition> partitions;
  std::int64_t lag = 0;       // sum over partitions
  bool postgres_ok = true;    // the last batch (or checkpoint read) reached PostgreSQL
  std::uint64_t applied = 0;  // events applied by this process
  std::int64_t parked = 0;    // parked events of the projection waiting for an operator
};

class Projector {
 public:
  Projector(ProjectorOptions options, prometheus::Registry& registry);
  ~Projector();  // stop()
  Projector(const Projector&) = delete;
  Projector& operator=(const Projector&) = delete;

  // Joins the group and returns; partitions are projected on a thread of their own. Throws
  // core::DependencyError when the Kafka client cannot be created.
  void start();
  // Finishes the batch in hand, leaves the group. Idempotent.
  void stop();

  ProjectionStatus status() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cauce::projections
