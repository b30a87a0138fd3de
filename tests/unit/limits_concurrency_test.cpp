// The per-key rate limiter and the live-stream caps are shared by every HTTP thread: driven from
// 16 threads at once (also under the tsan preset, label `concurrency`), they grant exactly what
// a single thread would.

#include <atomic>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <cauce/api/rate_limit.hpp>
#include <cauce/api/stream_slots.hpp>

namespace cauce::api {
namespace {

using namespace std::chrono_literals;
constexpr int kThreads = 16;

TEST(LimitsConcurrencyTest, SixteenThreadsOnOneKeyGetExactlyItsBurst) {
  RateLimiter limiter({.reader = 500, .operator_ = 0, .admin = 0});
  const auto frozen = RateLimiter::Clock::time_point() + 1h;  // no refill during the test
  std::atomic<int> granted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        if (limiter.take("shared", Role::kReader, frozen) == 0ms) ++granted;
        limiter.take("own-" + std::to_string(t), Role::kReader, frozen);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(granted.load(), 1000) << "500/s with a 2 s burst, and not one token more";
}

TEST(LimitsConcurrencyTest, SlotsTakenAndGivenBackFromSixteenThreadsNeverPassTheCaps) {
  auto slots = std::make_shared<StreamSlots>(8, 3);  // 4 keys x 3 would be 12: both caps bite
  std::atomic<int> held{0};
  std::atomic<int> peak{0};
  std::atomic<bool> over{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const auto key = "key-" + std::to_string(t % 4);  // 4 threads share each key
      for (int i = 0; i < 2000; ++i) {
        StreamSlots::Refusal why{};
        auto slot = slots->take(key, why);
        if (!slot) {
          if (why == StreamSlots::Refusal::kNone) over = true;
          continue;
        }
        const int now = ++held;
        int seen = peak.load();
        while (now > seen && !peak.compare_exchange_weak(seen, now)) {
        }
        if (slots->in_use() > 8) over = true;
        --held;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_FALSE(over.load());
  EXPECT_LE(peak.load(), 8);
  EXPECT_EQ(slots->in_use(), 0u) << "every slot came back";
  StreamSlots::Refusal why{};
  std::vector<std::unique_ptr<StreamSlots::Slot>> mine;
  for (int i = 0; i < 3; ++i) mine.push_back(slots->take("k", why));
  EXPECT_EQ(slots->take("k", why), nullptr);
  EXPECT_EQ(why, StreamSlots::Refusal::kKeyFull);
  auto tight = std::make_shared<StreamSlots>(2, 5);
  auto a = tight->take("x", why);
  auto b = tight->take("y", why);
  EXPECT_EQ(tight->take("z", why), nullptr);
  EXPECT_EQ(why, StreamSlots::Refusal::kProcessFull);
}

}  // namespace
}  // namespace cauce::api
