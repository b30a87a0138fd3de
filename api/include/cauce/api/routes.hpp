#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>

#include <prometheus/registry.h>

#include <cauce/api/auth.hpp>
#include <cauce/api/http.hpp>
#include <cauce/api/readiness.hpp>
#include <cauce/commands/command_bus.hpp>
#include <cauce/core/config.hpp>

namespace cauce::projections {
class NotificationHub;
class ParkedEvents;
class ReadModels;
}  // namespace cauce::projections

namespace cauce::api {

// GET /healthz, GET /readyz, GET /metrics: no auth.
void add_operations_routes(Router& router, const ReadinessProbe& probe,
                           const prometheus::Registry& registry);

// Every command route of API.md: validated, sent through `bus`, answered from the reply (or
// 503 after `reply_timeout_ms`, which only words the problem; the bus enforces it).
void add_command_routes(Router& router, commands::CommandBus& bus, std::uint32_t reply_timeout_ms);

// Runs blocking work (PostgreSQL queries) off the I/O threads.
using BlockingExecutor = std::function<void(std::function<void()>)>;

struct QueryDeps {
  projections::ReadModels& models;
  projections::NotificationHub& hub;  // Cauce-Min-Position waits
  BlockingExecutor run_blocking = {};
  std::chrono::milliseconds min_position_wait{5000};
  std::filesystem::path data_dir = {};  // report PDFs are <data_dir>/reports/<id>.pdf
  // Partitions of the event topic (fixed at creation): a Cauce-Min-Position naming another is a
  // 400 at once. 0: unknown, not checked.
  std::int32_t event_partitions = 0;
};

// Every GET route of API.md's read side.
void add_query_routes(Router& router, QueryDeps deps);

// GET /v1/stream (Server-Sent Events) and GET /v1/ws (WebSocket): live notifications. A stream
// re-checks its key every few seconds (lookups on `run_blocking`) and ends once it is revoked.
void add_stream_routes(Router& router, projections::NotificationHub& hub,
                       const core::ProjectionsConfig& config, ApiKeys& keys,
                       BlockingExecutor run_blocking);

// GET /v1/admin/parked[/{id}], POST /v1/admin/parked/{id}/retry|skip: admin only.
void add_parked_routes(Router& router, projections::ParkedEvents& parked,
                       BlockingExecutor run_blocking);

// GET/POST /v1/keys, DELETE /v1/keys/{id}: admin only.
void add_key_routes(Router& router, ApiKeys& keys);

}  // namespace cauce::api
