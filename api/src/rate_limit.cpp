#include <algorithm>
#include <cmath>
#include <functional>

#include <cauce/api/rate_limit.hpp>

namespace cauce::api {
namespace {

constexpr double kBurstSeconds = 2;  // a bucket holds this many seconds of its rate

}  // namespace

RateLimiter::RateLimiter(Rates rates) : rates_(rates) {}

double RateLimiter::rate(Role role) const {
  switch (role) {
    case Role::kReader:
      return rates_.reader;
    case Role::kOperator:
      return rates_.operator_;
    case Role::kAdmin:
      return rates_.admin;
  }
  return 0;
}

std::chrono::milliseconds RateLimiter::take(const std::string& key_id, Role role,
                                            Clock::time_point now) {
  const double per_second = rate(role);
  if (per_second <= 0) return std::chrono::milliseconds(0);
  const double capacity = std::max(1.0, per_second * kBurstSeconds);
  auto& shard = shards_[std::hash<std::string>{}(key_id) % kShards];
  const std::lock_guard lock(shard.mutex);
  auto [it, fresh] = shard.buckets.try_emplace(key_id, Bucket{capacity, now});
  auto& bucket = it->second;
  if (!fresh && now > bucket.refilled) {
    const double elapsed = std::chrono::duration<double>(now - bucket.refilled).count();
    bucket.tokens = std::min(capacity, bucket.tokens + elapsed * per_second);
    bucket.refilled = now;
  }
  constexpr double kRounding = 1e-9;  // refills summed from clock ticks are not exact
  if (bucket.tokens >= 1 - kRounding) {
    bucket.tokens = std::max(0.0, bucket.tokens - 1);
    return std::chrono::milliseconds(0);
  }
  const double wait_ms = (1 - bucket.tokens) / per_second * 1000;
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::ceil(wait_ms - 1e-6)));
}

}  // namespace cauce::api
