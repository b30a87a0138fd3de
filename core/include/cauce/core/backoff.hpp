#pragma once

// The delay policy of every retry loop in cauce: exponential, capped, with jitter, so that a
// dependency that is down is asked a few times a second at most and processes that lost it
// together do not come back in lockstep.

#include <chrono>
#include <cstdint>

namespace cauce::core {

class Backoff {
 public:
  using Duration = std::chrono::milliseconds;

  Backoff(Duration initial = Duration(100), Duration cap = Duration(5000));

  // The delay before the next attempt: uniformly random in [d/2, d], where d starts at
  // `initial` and doubles per call up to `cap`.
  Duration next();
  // After a success: the next failure starts from `initial` again.
  void reset() { attempt_ = 0; }
  int attempts() const { return attempt_; }

 private:
  Duration initial_;
  Duration cap_;
  int attempt_ = 0;
  std::uint64_t state_;  // jitter source (per instance: no shared state between threads)
};

}  // namespace cauce::core
