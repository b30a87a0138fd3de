// The version cache (conditional GETs answered without a query), driven from many threads as
// the I/O threads (find), the query threads (raise what they read) and the feed (raise what
// the notifications say) do; also run under ThreadSanitizer (label `concurrency`).
#include <atomic>
#include <cstdio>
#include <random>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "version_cache.hpp"

namespace cauce::api {
namespace {

std::string id(int n) {
  char text[40];
  std::snprintf(text, sizeof text, "01900000-0000-7000-8000-%012x", n);
  return text;
}

TEST(VersionCacheTest, HoldsTheHighestVersionRaisedAndNothingElse) {
  VersionCache cache(1024);
  EXPECT_EQ(cache.find(id(1)), std::nullopt);
  cache.raise(id(1), 3);
  cache.raise(id(1), 2);  // an older read arriving late never lowers it
  EXPECT_EQ(cache.find(id(1)), 3);
  cache.raise(id(1), 5);
  EXPECT_EQ(cache.find(id(1)), 5);
  EXPECT_EQ(cache.find("01900000-0000-7000-8000-00000000000A"), std::nullopt);
  cache.raise("01900000-0000-7000-8000-00000000000A", 7);  // upper-case hex: the same id
  EXPECT_EQ(cache.find(id(10)), 7);
  for (const char* bad :
       {"", "not-a-uuid", "01900000-0000-7000-8000-00000000000",
        "0190000000000-7000-8000-000000000001", "01900000-0000-7000-8000-00000000000g"}) {
    cache.raise(bad, 9);
    EXPECT_EQ(cache.find(bad), std::nullopt) << bad;
  }
  cache.raise(id(2), 0);  // not a version
  EXPECT_EQ(cache.find(id(2)), std::nullopt);
  cache.clear();
  EXPECT_EQ(cache.find(id(1)), std::nullopt);
}

TEST(VersionCacheTest, AnIdSharingASlotReplacesTheOtherAndIsNeverMistakenForIt) {
  VersionCache cache(64);  // the smallest table: 200 ids must share slots
  for (int n = 1; n <= 200; ++n) cache.raise(id(n), n);
  int held = 0;
  for (int n = 1; n <= 200; ++n) {
    if (const auto v = cache.find(id(n))) {
      EXPECT_EQ(*v, n) << "the version of another id";
      ++held;
    }
  }
  EXPECT_GT(held, 0);
  EXPECT_LE(held, 64);
}

TEST(VersionCacheConcurrencyTest, ReadersSeeVersionsOnlyRiseWhileWritersRaceToRaiseThem) {
  VersionCache cache;
  constexpr int kIds = 64;
  constexpr int kTop = 2000;
  // With the default table these ids sit in distinct slots; check it before relying on it.
  for (int n = 0; n < kIds; ++n) cache.raise(id(n), 1);
  for (int n = 0; n < kIds; ++n) ASSERT_EQ(cache.find(id(n)), 1) << "ids share a slot";

  std::atomic<bool> writing{true};
  std::atomic<int> regressions{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < 4; ++w) {
    threads.emplace_back([&, w] {
      std::mt19937 rng(static_cast<unsigned>(w));
      for (int v = 1; v <= kTop; ++v) {
        // Every writer raises every id through the same versions, each in its own order.
        const int n = static_cast<int>(rng() % kIds);
        cache.raise(id(n), v);
        cache.raise(id((n + 1) % kIds), v);
      }
      for (int n = 0; n < kIds; ++n) cache.raise(id(n), kTop);
    });
  }
  for (int r = 0; r < 4; ++r) {
    threads.emplace_back([&] {
      std::vector<std::int64_t> seen(kIds, 0);
      while (writing) {
        for (int n = 0; n < kIds; ++n) {
          const auto v = cache.find(id(n));
          if (!v) continue;
          if (*v < seen[n]) ++regressions;
          seen[n] = *v;
        }
      }
    });
  }
  for (int w = 0; w < 4; ++w) threads[w].join();
  writing = false;
  for (std::size_t t = 4; t < threads.size(); ++t) threads[t].join();
  EXPECT_EQ(regressions, 0);
  for (int n = 0; n < kIds; ++n) EXPECT_EQ(cache.find(id(n)), kTop);
}

}  // namespace
}  // namespace cauce::api
