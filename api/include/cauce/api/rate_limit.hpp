#pragma once

// Per-API-key token buckets (DESIGN §6: 429 with Retry-After). Each key may send `rate`
// requests per second on average, by its role, and bursts of up to two seconds' worth at once.
// Thread-safe: the HTTP threads take tokens concurrently.

#include <array>
#include <chrono>
#include <mutex>
#include <string>
#include <unordered_map>

#include <cauce/api/auth.hpp>

namespace cauce::api {

class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  struct Rates {  // requests per second per key; 0: no limit for that role
    double reader = 0;
    double operator_ = 0;
    double admin = 0;
  };

  explicit RateLimiter(Rates rates);

  // Takes a token for `key_id`. Zero when the request may go on; otherwise how long until the
  // key has a token again (what Retry-After says), and nothing is taken.
  std::chrono::milliseconds take(const std::string& key_id, Role role,
                                 Clock::time_point now = Clock::now());

  // The rate of a role (requests per second, 0: unlimited).
  double rate(Role role) const;

 private:
  struct Bucket {
    double tokens = 0;
    Clock::time_point refilled;
  };
  struct Shard {
    std::mutex mutex;
    std::unordered_map<std::string, Bucket> buckets;  // keys are authenticated: a bounded set
  };
  static constexpr std::size_t kShards = 16;  // keys spread over locks, not one lock for all

  Rates rates_;
  std::array<Shard, kShards> shards_;
};

}  // namespace cauce::api
