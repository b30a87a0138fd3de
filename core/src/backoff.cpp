#include <algorithm>
#include <random>

#include <cauce/core/backoff.hpp>

namespace cauce::core {

Backoff::Backoff(Duration initial, Duration cap)
    : initial_(std::max(initial, Duration(1))),
      cap_(std::max(cap, initial_)),
      state_(std::random_device{}() | 1u) {}

Backoff::Duration Backoff::next() {
  auto d = initial_;
  for (int i = 0; i < attempt_ && d < cap_; ++i) d *= 2;
  d = std::min(d, cap_);
  attempt_ = std::min(attempt_ + 1, 62);
  // xorshift64: cheap, and good enough to spread retries.
  state_ ^= state_ << 13;
  state_ ^= state_ >> 7;
  state_ ^= state_ << 17;
  const auto half = d.count() / 2;
  return Duration(half + static_cast<Duration::rep>(state_ % static_cast<std::uint64_t>(half + 1)));
}

}  // namespace cauce::core
