#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <cauce/workers/backup_metrics.hpp>

namespace cauce::workers {

BackupSuccessGauge::BackupSuccessGauge(prometheus::Registry& registry)
    : gauge_(prometheus::BuildGauge()
                 .Name("cauce_backup_last_success_timestamp_seconds")
                 .Help("When the newest backup succeeded (Unix time): completed and, with "
                       "backups.copy_to set, copied off the box and verified there; 0: none yet")
                 .Register(registry)
                 .Add({})) {}

void BackupSuccessGauge::succeeded(std::int64_t at_us) {
  const auto at = static_cast<double>(at_us) / 1e6;
  const std::lock_guard lock(mutex_);
  if (at > gauge_.Value()) gauge_.Set(at);
}

double BackupSuccessGauge::seconds() const {
  const std::lock_guard lock(mutex_);
  return gauge_.Value();
}

}  // namespace cauce::workers
