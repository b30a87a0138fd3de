#pragma once

// The `workers` role (DESIGN §5, workers/README.md): reads the jobs' events into a due-time
// table in PostgreSQL, runs due steps (download, render, backup) on a few runner threads under a
// lease, and reports every step back as a command. Also requests the scheduled backups and
// expires old ones, fires alert deadlines and delivers webhooks (the same table and leases).

#include <filesystem>
#include <functional>
#include <memory>

#include <cauce/commands/command_bus.hpp>
#include <cauce/core/config.hpp>

namespace prometheus {
class Registry;
}

namespace cauce::workers {

struct WorkerOptions {
  core::KafkaConfig kafka;
  core::PostgresConfig postgres;
  core::ProjectionsConfig projections;  // the projection a backup's read models come from
  core::WorkersConfig workers;
  core::DownloadConfig download;
  core::BackupsConfig backups;
  core::AlertsConfig alerts;      // the deadlines of open alerts
  core::ReportsConfig reports;    // scheduled reports: time zones, download secrets
  core::WebhooksConfig webhooks;  // deliveries (webhook_runner.cpp)
  core::ImportsConfig imports;    // imports left running by a process that died
  std::filesystem::path data_dir;
  // The wall clock (microseconds since the epoch); tests inject another.
  std::function<std::int64_t()> now_us;
};

// Sends one command and waits for its outcome (the CommandBus in `cauce serve`).
using SendCommand = std::function<commands::SendResult(const commands::CommandEnvelope&)>;

// A SendCommand over `bus` (which must outlive it).
SendCommand send_through(commands::CommandBus& bus);

class Workers {
 public:
  Workers(WorkerOptions options, SendCommand send, prometheus::Registry& registry);
  ~Workers();  // stop()
  Workers(const Workers&) = delete;
  Workers& operator=(const Workers&) = delete;

  // Throws core::DependencyError when the event consumer cannot be created.
  void start();
  // Finishes the steps running now (a download or render in progress is waited for), then
  // stops. A job interrupted any other way (SIGKILL) runs again once its lease expires.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cauce::workers
