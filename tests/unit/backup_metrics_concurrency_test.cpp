// cauce_backup_last_success_timestamp_seconds is reported by every runner and by housekeeping at
// once: whatever the order, it ends at the newest success and never goes back.
#include <algorithm>
#include <atomic>
#include <random>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <cauce/workers/backup_metrics.hpp>

namespace cauce::workers {
namespace {

TEST(BackupSuccessGaugeConcurrencyTest, ManyReportersLeaveTheNewestAndNeverGoBack) {
  prometheus::Registry registry;
  BackupSuccessGauge gauge(registry);
  EXPECT_EQ(gauge.seconds(), 0.0) << "no success yet";
  constexpr int kThreads = 8;
  constexpr int kEach = 2000;
  constexpr std::int64_t kBase = 1'780'000'000'000'000;
  std::vector<std::int64_t> newest(kThreads, 0);
  std::atomic<int> went_back{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 random(static_cast<std::uint64_t>(t) + 1);
      double seen = 0;
      for (int i = 0; i < kEach; ++i) {
        const auto at = kBase + static_cast<std::int64_t>(random() % 10'000'000'000);
        newest[static_cast<std::size_t>(t)] = std::max(newest[static_cast<std::size_t>(t)], at);
        gauge.succeeded(at);
        const auto now = gauge.seconds();
        if (now < seen) ++went_back;
        seen = now;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(went_back.load(), 0);
  EXPECT_EQ(gauge.seconds(),
            static_cast<double>(*std::max_element(newest.begin(), newest.end())) / 1e6);
  gauge.succeeded(kBase);  // older than the newest: nothing changes
  EXPECT_EQ(gauge.seconds(),
            static_cast<double>(*std::max_element(newest.begin(), newest.end())) / 1e6);
}

}  // namespace
}  // namespace cauce::workers
