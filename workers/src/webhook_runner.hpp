#pragma once

// One claim of a webhook's row in worker_jobs (workers/README.md "Webhook deliveries"): takes the
// notifications after its cursor into its deliveries, delivers the due ones in order per
// aggregate, records each attempt, retries with the workers' full-jitter backoff, dead-letters a
// delivery that runs out of attempts and disables the webhook after too many failures in a row.
// The PostgreSQL adapter of it; the lease, claim and release are job_worker.cpp's.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <utility>

#include <pqxx/connection>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

#include <cauce/workers/job_worker.hpp>
#include <cauce/workers/webhooks.hpp>

namespace cauce::workers {

class WebhookRunner {
 public:
  // `options`, `send` and `running` must outlive the runner.
  WebhookRunner(const WorkerOptions& options, const SendCommand& send,
                const std::atomic<bool>& running, prometheus::Registry& registry);

  // Runs one claim of webhook `id` whose row is at `version`. Returns the version the row must
  // reach before it is claimed again and after how long.
  std::pair<std::int64_t, std::chrono::milliseconds> run(pqxx::connection& pg,
                                                         const std::string& id,
                                                         std::int64_t version,
                                                         std::mt19937_64& random);

  // Deletes finished deliveries older than the notifications' retention.
  static void prune(pqxx::connection& pg, int retention_h);

 private:
  struct Delivery;
  std::pair<std::int64_t, std::chrono::milliseconds> disable(
      pqxx::connection& pg, const std::string& id, std::int64_t version, const std::string& reason,
      std::int64_t failures, const std::string& last_error);

  const WorkerOptions& options_;
  const SendCommand& send_;
  const std::atomic<bool>& running_;
  DeliveryLimits limits_;
  prometheus::Family<prometheus::Counter>& deliveries_;
  prometheus::Family<prometheus::Counter>& disabled_;
};

}  // namespace cauce::workers
