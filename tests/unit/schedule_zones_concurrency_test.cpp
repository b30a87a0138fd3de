// The time-zone cache (core::load_time_zone) is shared by the API's I/O threads, the workers'
// runners and the projector: many threads loading and using zones at once get one zone object
// per name and the same offsets.
#include <atomic>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <cauce/commands/recurrence.hpp>
#include <cauce/core/time_zone.hpp>

namespace cauce::commands {
namespace {

TEST(ScheduleZonesConcurrencyTest, ManyThreadsLoadAndUseZonesAtOnce) {
  const std::vector<const char*> names = {"Europe/Madrid", "America/New_York",
                                          "Asia/Tokyo",    "Australia/Sydney",
                                          "UTC",           "Europe/Lisbon"};
  std::vector<std::vector<const core::TimeZone*>> seen(16);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < seen.size(); ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 200; ++round) {
        for (const auto* name : names) {
          const auto zone = core::load_time_zone(name);
          if (round == 0) seen[t].push_back(zone.get());
          const auto cron = std::get<CronExpression>(CronExpression::parse("0 7 * * *"));
          const auto slot = Recurrence::cron(cron, zone).next_after(1'767'225'600);  // 2026-01-01
          if (!slot || *slot <= 1'767'225'600) ++failures;
        }
        if (core::load_time_zone("Europe/Madrid")->offset_at(1'782'864'000) != 7200) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  for (const auto& s : seen) EXPECT_EQ(s, seen.front());  // one object per zone
}

}  // namespace
}  // namespace cauce::commands
