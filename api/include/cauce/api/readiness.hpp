#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <cauce/core/config.hpp>

namespace cauce::commands {
class CommandProcessor;
}
namespace cauce::projections {
class Projector;
}

namespace cauce::api {

// One dependency /readyz looks at. check() returns a client-safe detail ("ok", or e.g. the
// projection's lag) when it is usable and throws (with a client-safe message) when it is not;
// it must bound its own time.
class DependencyCheck {
 public:
  virtual ~DependencyCheck() = default;
  virtual std::string name() const = 0;
  virtual std::string check() = 0;
  // After check() succeeded: usable, but something needs an operator (still ready: 200).
  virtual bool degraded() const { return false; }
};

// PostgreSQL answers `SELECT 1` on a connection it keeps (reconnecting with a 1 s timeout).
std::unique_ptr<DependencyCheck> make_postgres_check(const core::PostgresConfig& config);
// The broker answers a metadata request within 1 s and cauce's three topics exist.
std::unique_ptr<DependencyCheck> make_kafka_check(const core::KafkaConfig& config);
// The in-process projector lags at most `max_lag` events and its last batch reached
// PostgreSQL; the detail gives the lag either way. Parked events make it degraded (queries
// serve; an operator should look at `cauce parked list`).
std::unique_ptr<DependencyCheck> make_projection_check(const projections::Projector& projector,
                                                       std::int64_t max_lag);

// The in-process command processor has its assignment from the group and every partition it
// owns has rebuilt its state (until then commands to those partitions would wait or 503).
std::unique_ptr<DependencyCheck> make_processor_check(const commands::CommandProcessor& processor);

// The file system of `data_dir` (report PDFs, backups, imports' spool) has at least
// `min_free_bytes` free for cauce (statvfs's f_bavail, through std::filesystem::space); fewer
// makes it degraded (still ready: 200). 0: never degraded. The detail gives the free bytes.
std::unique_ptr<DependencyCheck> make_data_dir_check(std::filesystem::path data_dir,
                                                     std::int64_t min_free_bytes);

// Runs each check on its own thread every `interval`, so /readyz answers at once from the
// latest results and a hanging dependency never holds up a request. A result older than
// `max_age` counts as a failure (the check itself is stuck).
class ReadinessProbe {
 public:
  struct CheckStatus {
    std::string name;
    bool ok = false;
    bool degraded = false;
    std::string detail;
    double age_s = 0;
  };
  struct Report {
    bool ready = false;
    bool degraded = false;  // ready, but a check asks for an operator
    bool stopping = false;  // the process is shutting down: not ready, whatever the checks say
    std::vector<CheckStatus> checks;
  };

  ReadinessProbe(std::vector<std::unique_ptr<DependencyCheck>> checks,
                 std::chrono::milliseconds interval = std::chrono::milliseconds(500),
                 std::chrono::milliseconds max_age = std::chrono::milliseconds(2500));
  ~ReadinessProbe();
  ReadinessProbe(const ReadinessProbe&) = delete;
  ReadinessProbe& operator=(const ReadinessProbe&) = delete;

  Report report() const;

  // From now on every report is "not ready: stopping" (SIGTERM: a load balancer stops sending
  // new requests here before the listener closes). Thread-safe.
  void stop_serving() { stopping_requests_.store(true); }

 private:
  struct Slot {
    std::unique_ptr<DependencyCheck> check;
    bool has_result = false;
    bool ok = false;
    bool degraded = false;
    std::string detail;
    std::chrono::steady_clock::time_point at;
  };

  void loop(Slot& slot);

  std::chrono::milliseconds interval_;
  std::chrono::milliseconds max_age_;
  mutable std::mutex mutex_;
  std::condition_variable stop_requested_;
  bool stopping_ = false;  // the check threads end
  std::atomic<bool> stopping_requests_{false};
  std::vector<std::unique_ptr<Slot>> slots_;
  std::vector<std::jthread> threads_;
};

}  // namespace cauce::api
