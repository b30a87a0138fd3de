#include <algorithm>

#include <cauce/api/stream_ticker.hpp>

namespace cauce::api {

StreamTicker::StreamTicker(std::chrono::milliseconds period, std::size_t groups)
    : period_(period), groups_(std::max<std::size_t>(groups, 1)), thread_([this] { loop(); }) {}

StreamTicker::~StreamTicker() {
  {
    const std::lock_guard lock(mutex_);
    stop_ = true;
  }
  stopping_.notify_all();
  thread_.join();
}

std::unique_ptr<StreamTicker::Registration> StreamTicker::add(Tick tick) {
  const std::lock_guard lock(mutex_);
  const auto id = next_id_++;
  const auto group = static_cast<std::size_t>(id % groups_.size());
  groups_[group].emplace(id, std::move(tick));
  return std::make_unique<Registration>(*this, group, id);
}

std::size_t StreamTicker::size() const {
  const std::lock_guard lock(mutex_);
  std::size_t n = 0;
  for (const auto& g : groups_) n += g.size();
  return n;
}

void StreamTicker::remove(std::size_t group, std::uint64_t id) {
  const std::lock_guard lock(mutex_);
  groups_[group].erase(id);
}

void StreamTicker::loop() {
  std::size_t group = 0;
  auto next = std::chrono::steady_clock::now() + period_;
  std::unique_lock lock(mutex_);
  while (!stopping_.wait_until(lock, next, [this] { return stop_; })) {
    // Under the lock: a Registration's destructor waits, so no tick runs after it returned.
    // Ticks only post work, so the lock is held for a short while.
    for (const auto& [id, tick] : groups_[group]) tick();
    group = (group + 1) % groups_.size();
    next += period_;
    const auto now = std::chrono::steady_clock::now();
    if (next < now) next = now;  // behind (a suspended process): no burst of catch-up ticks
  }
}

}  // namespace cauce::api
