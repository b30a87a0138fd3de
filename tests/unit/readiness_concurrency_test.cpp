// The readiness probe told to stop serving (the signal thread, on SIGTERM) while the HTTP I/O
// threads answer /readyz from it; also run under ThreadSanitizer (label `concurrency`).
#include <atomic>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <cauce/api/readiness.hpp>

namespace cauce::api {
namespace {

class AlwaysOk final : public DependencyCheck {
 public:
  std::string name() const override { return "always"; }
  std::string check() override { return "ok"; }
};

TEST(ReadinessStopTest, OnceToldToStopEveryReportIsNotReadyWhateverTheThreads) {
  std::vector<std::unique_ptr<DependencyCheck>> checks;
  checks.push_back(std::make_unique<AlwaysOk>());
  ReadinessProbe probe(std::move(checks), std::chrono::milliseconds(1));
  std::atomic<bool> told{false};
  std::atomic<int> ready_after_told{0};
  std::atomic<int> stopping_reports{0};
  std::vector<std::jthread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&] {
      for (int i = 0; i < 20000; ++i) {
        const bool was_told = told.load();  // read before the report: the report must agree
        const auto report = probe.report();
        if (was_told && report.ready) ++ready_after_told;
        if (report.stopping) {
          ++stopping_reports;
          EXPECT_FALSE(report.ready);
        }
      }
    });
  }
  probe.stop_serving();
  told = true;
  readers.clear();  // joins
  EXPECT_EQ(ready_after_told, 0);
  EXPECT_GT(stopping_reports, 0);
  const auto last = probe.report();
  EXPECT_TRUE(last.stopping);
  EXPECT_FALSE(last.ready);
  EXPECT_EQ(last.checks.size(), 1u) << "the checks are still reported";
}

}  // namespace
}  // namespace cauce::api
