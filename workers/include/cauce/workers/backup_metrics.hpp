#pragma once

// cauce_backup_last_success_timestamp_seconds (workers/README.md "Copies off the box"): when the
// newest backup succeeded, in Unix seconds (0: none yet). Runners report the successes they record
// and housekeeping the newest the read model knows, each from its own thread: the gauge only
// moves forward, whatever order they report in.

#include <cstdint>
#include <mutex>

namespace prometheus {
class Gauge;
class Registry;
}  // namespace prometheus

namespace cauce::workers {

class BackupSuccessGauge {
 public:
  explicit BackupSuccessGauge(prometheus::Registry& registry);

  // A backup succeeded at `at_us` (Unix µs); a time older than the gauge's changes nothing.
  void succeeded(std::int64_t at_us);
  double seconds() const;  // what /metrics shows

 private:
  prometheus::Gauge& gauge_;
  mutable std::mutex mutex_;
};

}  // namespace cauce::workers
