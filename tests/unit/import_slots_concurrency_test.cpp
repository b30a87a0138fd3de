// The per-key cap on running imports is shared by every HTTP thread: driven from 16 threads at
// once (also under the tsan preset, label `concurrency`), no key ever has more than its cap
// running, every refusal is at the cap, and every slot comes back.

#include <atomic>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <cauce/api/import_slots.hpp>

namespace cauce::api {
namespace {

constexpr int kThreads = 16;

TEST(ImportSlotsConcurrencyTest, SixteenThreadsNeverRunMoreThanTwoImportsPerKey) {
  auto slots = std::make_shared<ImportSlots>(2);
  std::vector<std::atomic<int>> held(4);
  std::atomic<bool> over{false};
  std::atomic<int> granted{0};
  std::atomic<int> refused{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const int k = t % 4;  // 4 threads share each key
      const auto key = "key-" + std::to_string(k);
      for (int i = 0; i < 3000; ++i) {
        auto slot = slots->take(key);
        if (!slot) {
          ++refused;
          continue;
        }
        ++granted;
        if (++held[k] > 2 || slots->running(key) > 2) over = true;
        --held[k];
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_FALSE(over.load()) << "a key ran more than 2 imports at once";
  EXPECT_GT(granted.load(), 0);
  EXPECT_EQ(granted.load() + refused.load(), kThreads * 3000);
  EXPECT_EQ(slots->running(), 0u) << "every slot came back";
}

TEST(ImportSlotsConcurrencyTest, TheThirdImportOfAKeyIsRefusedUntilOneEnds) {
  auto slots = std::make_shared<ImportSlots>(2);
  auto a = slots->take("k");
  auto b = slots->take("k");
  ASSERT_TRUE(a && b);
  EXPECT_FALSE(slots->take("k"));
  EXPECT_TRUE(slots->take("other")) << "another key has slots of its own";
  a.reset();
  EXPECT_TRUE(slots->take("k"));
}

}  // namespace
}  // namespace cauce::api
