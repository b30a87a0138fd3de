#pragma once

#include <prometheus/registry.h>

#include <cauce/api/auth.hpp>
#include <cauce/api/http.hpp>
#include <cauce/api/readiness.hpp>

namespace cauce::api {

// GET /healthz, GET /readyz, GET /metrics: no auth.
void add_operations_routes(Router& router, const ReadinessProbe& probe,
                           const prometheus::Registry& registry);

// GET/POST /v1/keys, DELETE /v1/keys/{id}: admin only.
void add_key_routes(Router& router, ApiKeys& keys);

}  // namespace cauce::api
