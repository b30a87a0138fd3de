// The per-key token bucket (api/rate_limit.hpp) on a clock the test moves.

#include <gtest/gtest.h>

#include <cauce/api/rate_limit.hpp>

namespace cauce::api {
namespace {

using namespace std::chrono_literals;
using Clock = RateLimiter::Clock;

TEST(RateLimiterTest, AKeyGetsTwoSecondsOfBurstThenItsRateAndARetryAfter) {
  RateLimiter limiter({.reader = 5, .operator_ = 50, .admin = 0});
  const auto t0 = Clock::time_point() + 1h;
  for (int i = 0; i < 10; ++i) EXPECT_EQ(limiter.take("k", Role::kReader, t0), 0ms) << i;
  const auto wait = limiter.take("k", Role::kReader, t0);
  EXPECT_EQ(wait, 200ms) << "one token comes back every 1/5 s";
  EXPECT_GT(limiter.take("k", Role::kReader, t0 + 100ms), 0ms) << "half a token is not one";
  EXPECT_EQ(limiter.take("k", Role::kReader, t0 + 200ms), 0ms);
  EXPECT_GT(limiter.take("k", Role::kReader, t0 + 200ms), 0ms);
  // Idle for a minute: the bucket refills to its burst, no further.
  int granted = 0;
  while (limiter.take("k", Role::kReader, t0 + 60s) == 0ms) ++granted;
  EXPECT_EQ(granted, 10);
}

TEST(RateLimiterTest, KeysAndRolesHaveBucketsOfTheirOwnAndZeroIsNoLimit) {
  RateLimiter limiter({.reader = 1, .operator_ = 100, .admin = 0});
  const auto t0 = Clock::time_point() + 1h;
  EXPECT_EQ(limiter.take("a", Role::kReader, t0), 0ms);
  EXPECT_EQ(limiter.take("a", Role::kReader, t0), 0ms);
  EXPECT_GT(limiter.take("a", Role::kReader, t0), 0ms) << "a reader key: 1/s, burst 2";
  EXPECT_EQ(limiter.take("b", Role::kReader, t0), 0ms) << "another key is not slowed by a";
  for (int i = 0; i < 200; ++i) EXPECT_EQ(limiter.take("c", Role::kOperator, t0), 0ms) << i;
  EXPECT_GT(limiter.take("c", Role::kOperator, t0), 0ms);
  for (int i = 0; i < 100000; ++i) ASSERT_EQ(limiter.take("d", Role::kAdmin, t0), 0ms);
}

}  // namespace
}  // namespace cauce::api
