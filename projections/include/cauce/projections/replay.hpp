#pragma once

// Blue/green replay (DESIGN §4, issue 14): the read models rebuilt from the event log into a
// fresh generation (a schema of its own, infra/sql/0008) while the live one keeps serving, then
// switched to in one PostgreSQL transaction.
//
// 1. A new generation `read_model_<n>` gets this build's tables (projections/sql/read_model.sql)
//    and start checkpoints (offset 0, or --from-offset / --from-time), recorded in `replays`.
// 2. A projector pinned to it folds the log from there. It writes no notifications: the live
//    generation does, so a notification is only ever committed with the model queries read.
// 3. Once it has nearly caught up and, without any lock, reached the log's ends and the live
//    generation's checkpoints, the switch transaction locks the live generation's checkpoints
//    (its projectors wait), waits briefly until the new one has passed them, locks the views
//    (briefly: a query in the way postpones the switch), marks the old checkpoints retired,
//    writes the notifications of the new generation's events past notification_marks, points
//    the public views at it and announces it on the progress channel. Queries see the old
//    generation or the new one, never a half-built one; the projectors of `cauce serve` find
//    their checkpoints retired and move over.
// 4. The replaced generation is dropped `projections.replay_grace_s` later (by the projectors'
//    housekeeping, or at once with a grace of 0).
//
// A replay is interruptible (stop) and resumable: its generation's checkpoints are its progress,
// and the next run takes the unfinished replay over (also after an error stopped it). One replay
// runs at a time (a PostgreSQL advisory lock held by the process running it).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <cauce/core/config.hpp>
#include <cauce/core/migrations.hpp>

namespace cauce::projections {

// Where a new replay starts in each partition of the event topic.
struct ReplayFrom {
  enum class Kind { kStart, kOffsets, kTime };
  Kind kind = Kind::kStart;
  std::map<std::int32_t, std::int64_t> offsets;  // kOffsets; partitions not named start at 0
  std::chrono::system_clock::time_point time;    // kTime: the first record at or after it
};

// "P:O[,P:O...]" -> partition -> offset (std::invalid_argument naming what is wrong).
std::map<std::int32_t, std::int64_t> parse_partition_offsets(std::string_view text);
// RFC 3339 ("2026-12-05T06:00:00Z", fractions and a ±hh:mm offset allowed); std::invalid_argument
// naming `what` (the option or field) otherwise.
std::chrono::system_clock::time_point parse_rfc3339(std::string_view text,
                                                    std::string_view what = "from-time");

struct ReplayRequest {
  std::string projection;  // projections.name, or "all" (one projection holds every read model)
  ReplayFrom from;
  std::string requested_by;
};

struct ReplayProgress {
  std::string id;
  std::string projection;
  std::string schema;           // the generation it builds
  std::string status;           // building, switched, failed, abandoned; "interrupted" (run)
  bool resumed = false;         // took over an unfinished replay
  std::int64_t applied = 0;     // events applied, all runs
  std::int64_t remaining = -1;  // records between its checkpoints and the log's ends
  double ratio = 0;             // 0..1 of what there is to replay
  double events_per_s = 0;
  double eta_s = -1;       // -1: not known yet
  std::string old_schema;  // once switched
  std::string error;       // why the last run stopped, if an error did (still building)
  std::map<std::int32_t, std::int64_t> start_offsets;
};

// {"id":…,"status":…,"progress":0.42,…} (the CLI's JSON lines, the admin route's body).
std::string to_json(const ReplayProgress& progress);

// Another process runs a replay (the lock is taken).
class ReplayConflict : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ReplayOptions {
  core::KafkaConfig kafka;
  core::PostgresConfig postgres;
  core::ProjectionsConfig projections;
};

class Replay {
 public:
  // Takes the replay lock (ReplayConflict), drops generations due for it, then takes over the
  // projection's unfinished replay (its `from` is then ignored) or prepares a new generation.
  // std::invalid_argument names a request that cannot be (an unknown projection).
  Replay(ReplayOptions options, ReplayRequest request);
  ~Replay();
  Replay(const Replay&) = delete;
  Replay& operator=(const Replay&) = delete;

  // id, schema, start offsets, resumed: known once constructed.
  const ReplayProgress& prepared() const;

  // Builds, catches up and switches; `on_progress` about once a second (and at the end).
  // Returns the final progress: status "switched", or "interrupted" when `stop` was set first
  // (run again to resume). Throws when a dependency fails for good; the replay stays
  // `building` and the next run resumes it.
  ReplayProgress run(const std::function<void(const ReplayProgress&)>& on_progress,
                     const std::atomic<bool>& stop);

  // Gives up the projection's unfinished replay: marked abandoned, its generation dropped.
  // false when there is none. Takes the replay lock (ReplayConflict while one runs).
  static bool abandon(const ReplayOptions& options);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A replay's row (GET /v1/admin/replays/{id}); nullopt when there is none.
std::optional<ReplayProgress> load_replay(const core::PostgresConfig& postgres,
                                          const std::string& id);

// The read-model generation's DDL compiled into the binary (projections/sql/*.sql).
std::vector<core::MigrationFile> embedded_read_model_files();

}  // namespace cauce::projections
