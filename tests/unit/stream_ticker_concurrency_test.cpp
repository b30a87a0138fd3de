// The streams' shared clock (StreamTicker) is touched by every HTTP thread (streams come and go)
// and by its own thread (the beat): driven from 16 threads at once (also under the tsan preset,
// label `concurrency`), every stream that stays gets its beat, a stream's tick never runs after
// its registration was destroyed, and every registration is taken off.

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <cauce/api/stream_ticker.hpp>

namespace cauce::api {
namespace {

constexpr int kThreads = 16;

TEST(StreamTickerConcurrencyTest, SixteenThreadsComeAndGoAndNoTickOutlivesItsRegistration) {
  StreamTicker ticker(std::chrono::milliseconds(1), 3);
  EXPECT_EQ(ticker.cycle(), std::chrono::milliseconds(3));
  std::atomic<bool> late_tick{false};
  std::atomic<int> ticks{0};
  // A stream that stays for the whole test: it must be ticked.
  auto steady_ticks = std::make_shared<std::atomic<int>>(0);
  auto steady = ticker.add([steady_ticks] { ++*steady_ticks; });
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 300; ++i) {
        auto gone = std::make_shared<std::atomic<bool>>(false);
        auto registration = ticker.add([gone, &late_tick, &ticks] {
          if (gone->load()) late_tick = true;
          ++ticks;
        });
        if (i % 10 == 0) std::this_thread::sleep_for(std::chrono::microseconds(500));
        registration.reset();  // from here on its tick must not run
        gone->store(true);
      }
    });
  }
  for (auto& t : threads) t.join();
  // Bounded: a ticker that stopped ticking fails here instead of hanging the run.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (steady_ticks->load() < 3 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_GE(steady_ticks->load(), 3) << "the ticker stopped ticking";
  EXPECT_FALSE(late_tick.load());
  EXPECT_GT(ticks.load(), 0);
  EXPECT_EQ(ticker.size(), 1u);
  steady.reset();
  EXPECT_EQ(ticker.size(), 0u);
}

}  // namespace
}  // namespace cauce::api
