#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include <prometheus/registry.h>

#include <cauce/api/auth.hpp>
#include <cauce/api/http.hpp>
#include <cauce/api/readiness.hpp>
#include <cauce/commands/command_bus.hpp>
#include <cauce/core/config.hpp>
#include <cauce/core/postgres.hpp>
#include <cauce/projections/replay.hpp>

namespace cauce::projections {
class NotificationHub;
class ParkedEvents;
class ReadModels;
}  // namespace cauce::projections

namespace cauce::api {

class PgPipelines;
struct PgStatement;
class VersionCache;

// GET /healthz, GET /readyz, GET /metrics: no auth. `before_scrape` refreshes the gauges that
// are sampled rather than kept (it must not block: no I/O).
void add_operations_routes(Router& router, const ReadinessProbe& probe,
                           const prometheus::Registry& registry,
                           std::function<void()> before_scrape = {});

// Every command route of API.md: validated, sent through `bus`, answered from the reply (or
// 503 after `reply_timeout_ms`, which only words the problem; the bus enforces it).
void add_command_routes(Router& router, commands::CommandBus& bus, std::uint32_t reply_timeout_ms);

// Runs blocking work (PostgreSQL queries, file reads) off the I/O threads.
using BlockingExecutor = std::function<void(std::function<void()>)>;

// POST /v1/report-schedules, PATCH and DELETE /v1/report-schedules/{id} (issue 16, part 3): like
// the other command routes, after the checks only the server can make (the time zone exists in
// reports.zoneinfo_dir, the secret in reports.source_auth_dir and the URL is at one of its
// origins, `every` is long enough), each a 400 naming the field. Those checks read files: they
// run on `run_blocking`, never on an I/O thread.
void add_schedule_routes(Router& router, commands::CommandBus& bus, std::uint32_t reply_timeout_ms,
                         const core::ReportsConfig& reports, BlockingExecutor run_blocking);

// For routes that do more than send a command (POST /v1/webhooks): the envelope a command route
// builds for `type` (the body checked against schemas/<type>.v1.json, ids, Idempotency-Key,
// X-Correlation-Id, request hash; `creates`: the aggregate id is chosen here), and the problem a
// reply that did not take the command answers (returns when it was applied or a duplicate).
commands::CommandEnvelope command_envelope(const Request& request, const char* type,
                                           const char* aggregate_type, bool creates);
void throw_unless_taken(const commands::SendResult& result, std::uint32_t timeout_ms);

// POST /v1/webhooks (admin): checks the URL's host (not a private address unless
// `allow_private`), stores a new signing secret in PostgreSQL and registers the webhook; the
// answer shows the secret, this once. GET routes and enable: add_query_routes and
// add_command_routes.
void add_webhook_routes(Router& router, commands::CommandBus& bus, std::uint32_t reply_timeout_ms,
                        core::PgPool& pool, BlockingExecutor run_blocking, bool allow_private);

struct QueryDeps {
  projections::ReadModels& models;
  projections::NotificationHub& hub;  // Cauce-Min-Position waits
  BlockingExecutor run_blocking = {};
  std::chrono::milliseconds min_position_wait{5000};
  std::filesystem::path data_dir = {};  // report PDFs are <data_dir>/reports/<id>.pdf
  // Partitions of the event topic (fixed at creation): a Cauce-Min-Position naming another is a
  // 400 at once. 0: unknown, not checked.
  std::int32_t event_partitions = 0;
  // Schedules' next_slot_at is computed from their recurrence in these zones.
  std::filesystem::path zoneinfo_dir = "/usr/share/zoneinfo";
  // Contacts' versions known without a query (conditional GETs answered 304 at once); none: every
  // GET reads PostgreSQL.
  VersionCache* versions = nullptr;
  // Contacts by id read on the I/O threads through pipelined connections (pg_pipeline.hpp);
  // none, or one that hands a read back: on the blocking executor.
  PgPipelines* pipelines = nullptr;
  // Queries waiting for a PostgreSQL thread at most (http.max_queued_queries): past it a 503.
  int max_queued_queries = 1024;
};

// Every GET route of API.md's read side.
void add_query_routes(Router& router, QueryDeps deps);
// The statements those routes run through QueryDeps::pipelines: prepare them on each connection.
std::vector<PgStatement> pipelined_statements();

// GET /v1/stream (Server-Sent Events) and GET /v1/ws (WebSocket): live notifications. A stream
// re-checks its key every few seconds (lookups on `run_blocking`) and ends once it is revoked.
// cauce_stream_clients{transport} in `registry` counts the connected clients.
void add_stream_routes(Router& router, projections::NotificationHub& hub,
                       const core::ProjectionsConfig& config, ApiKeys& keys,
                       BlockingExecutor run_blocking, prometheus::Registry& registry);

// GET /v1/admin/parked[/{id}], POST /v1/admin/parked/{id}/retry|skip: admin only.
void add_parked_routes(Router& router, projections::ParkedEvents& parked,
                       BlockingExecutor run_blocking);

// Runs the replays asked for over HTTP, one at a time, each on a thread of its own. Destroying
// it interrupts a running replay (it stays resumable) and waits for its thread.
class ReplayRunner {
 public:
  explicit ReplayRunner(projections::ReplayOptions options);
  ~ReplayRunner();
  ReplayRunner(const ReplayRunner&) = delete;
  ReplayRunner& operator=(const ReplayRunner&) = delete;

  // Prepares the replay (projections::Replay's constructor: ReplayConflict, invalid_argument)
  // and runs it in the background; returns what was prepared.
  projections::ReplayProgress start(projections::ReplayRequest request);

 private:
  projections::ReplayOptions options_;
  std::mutex mutex_;
  bool running_ = false;  // under mutex_
  std::atomic<bool> stop_{false};
  std::thread worker_;
};

// POST /v1/admin/replays (202, Location), GET /v1/admin/replays/{id}: admin only.
void add_replay_routes(Router& router, ReplayRunner& runner, const core::PostgresConfig& postgres,
                       BlockingExecutor run_blocking);

struct ImportDeps {
  commands::CommandBus& bus;
  core::ImportsConfig config;
  std::filesystem::path spool_dir;  // bodies without Content-Length wait here (<data dir>/imports)
  prometheus::Registry& registry;   // cauce_imports_total, cauce_import_rows_total
};

// POST /v1/imports (operator): a CSV or NDJSON file of contacts, its body streamed (api/README.md,
// "Bulk imports"). GET /v1/imports/{id} and its errors are query routes.
void add_import_routes(Router& router, ImportDeps deps);

// GET/POST /v1/keys, DELETE /v1/keys/{id}: admin only.
void add_key_routes(Router& router, ApiKeys& keys);

}  // namespace cauce::api
