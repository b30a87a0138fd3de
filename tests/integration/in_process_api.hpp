#pragma once

// The API stack assembled in-process over a real database and the real broker, serving on an
// ephemeral port: what `cauce serve` wires, with hooks for tests to add routes.
#include <cauce/api/auth.hpp>
#include <cauce/api/http_metrics.hpp>
#include <cauce/api/pg_api_key_store.hpp>
#include <cauce/api/readiness.hpp>
#include <cauce/api/routes.hpp>
#include <cauce/api/server.hpp>
#include <cauce/core/migrations.hpp>
#include <cauce/core/postgres.hpp>

#include "fixtures.hpp"

namespace cauce::testing {

class InProcessApi {
 public:
  // `checks` feed /readyz; `extra_routes` lets a test add handlers before the server starts
  // (given the API keys, which stream routes re-check).
  explicit InProcessApi(const core::PostgresConfig& pg,
                        std::vector<std::unique_ptr<api::DependencyCheck>> checks = {},
                        const std::function<void(api::Router&, api::ApiKeys&)>& extra_routes = {},
                        core::HttpConfig http = {})
      : pool_(core::postgres_conninfo(pg), 4),
        store_(pool_),
        keys_(store_),
        metrics_(registry_),
        probe_(std::move(checks), std::chrono::milliseconds(100), std::chrono::milliseconds(3000)) {
    {
      auto connection = core::connect_postgres(core::postgres_conninfo(pg));
      core::migrate(*connection, core::parse_migrations(core::embedded_migration_files()));
    }
    api::add_operations_routes(router_, probe_, registry_);
    api::add_key_routes(router_, keys_);
    if (extra_routes) extra_routes(router_, keys_);
    http.port = 0;
    http.threads = 2;
    // Tests drive load through one key; the rate limit has tests of its own (HardeningTest).
    http.rate_limit_reader = http.rate_limit_operator = http.rate_limit_admin = 0;
    server_ = std::make_unique<api::HttpServer>(http, router_, keys_, metrics_);
    port_ = server_->start();
    admin_token_ = keys_.create("test-admin", api::Role::kAdmin).token;
  }

  std::uint16_t port() const { return port_; }
  const std::string& admin_token() const { return admin_token_; }
  api::ApiKeys& keys() { return keys_; }
  api::HttpServer& server() { return *server_; }

 private:
  core::PgPool pool_;
  api::PgApiKeyStore store_;
  api::ApiKeys keys_;
  prometheus::Registry registry_;
  api::HttpMetrics metrics_;
  api::ReadinessProbe probe_;
  api::Router router_;
  std::unique_ptr<api::HttpServer> server_;
  std::uint16_t port_ = 0;
  std::string admin_token_;
};

inline std::vector<std::pair<std::string, std::string>> bearer(const std::string& token) {
  return {{"Authorization", "Bearer " + token}};
}

}  // namespace cauce::testing
