#pragma once

#include <cstdint>

#include <prometheus/registry.h>

#include <cauce/api/auth.hpp>
#include <cauce/api/http.hpp>
#include <cauce/api/readiness.hpp>
#include <cauce/commands/command_bus.hpp>

namespace cauce::api {

// GET /healthz, GET /readyz, GET /metrics: no auth.
void add_operations_routes(Router& router, const ReadinessProbe& probe,
                           const prometheus::Registry& registry);

// Every command route of API.md: validated, sent through `bus`, answered from the reply (or
// 503 after `reply_timeout_ms`, which only words the problem; the bus enforces it).
void add_command_routes(Router& router, commands::CommandBus& bus, std::uint32_t reply_timeout_ms);

// GET/POST /v1/keys, DELETE /v1/keys/{id}: admin only.
void add_key_routes(Router& router, ApiKeys& keys);

}  // namespace cauce::api
