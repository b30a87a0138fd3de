#include "version_cache.hpp"

#include <chrono>

#include <cauce/core/log.hpp>

namespace cauce::api {
namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// 8-4-4-4-12 hex digits -> 16 bytes.
template <typename Id>
bool parse_uuid(std::string_view text, Id& id) {
  if (text.size() != 36) return false;
  std::size_t byte = 0;
  for (std::size_t i = 0; i < 36;) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (text[i] != '-') return false;
      ++i;
      continue;
    }
    const int hi = hex_digit(text[i]);
    const int lo = hex_digit(text[i + 1]);
    if (hi < 0 || lo < 0) return false;
    id[byte++] = static_cast<std::uint8_t>(hi << 4 | lo);
    i += 2;
  }
  return true;
}

}  // namespace

VersionCache::VersionCache(std::size_t slots) : slots_(std::max<std::size_t>(slots, kStripes)) {}

std::size_t VersionCache::index(const Id& id) const {
  // The last eight bytes are random in v7 and v8 ids (and vary in the numbered ones tests use).
  std::uint64_t h = 0;
  for (std::size_t i = 8; i < 16; ++i) h = h << 8 | id[i];
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  return static_cast<std::size_t>(h % slots_.size());
}

void VersionCache::raise(std::string_view text, std::int64_t version) {
  Id id;
  if (version <= 0 || !parse_uuid(text, id)) return;
  const auto i = index(id);
  const std::lock_guard lock(stripes_[i % kStripes]);
  auto& slot = slots_[i];
  if (slot.version != 0 && slot.id == id) {
    if (version > slot.version) slot.version = version;
    return;
  }
  slot.id = id;
  slot.version = version;
}

std::optional<std::int64_t> VersionCache::find(std::string_view text) const {
  Id id;
  if (!parse_uuid(text, id)) return std::nullopt;
  const auto i = index(id);
  const std::lock_guard lock(stripes_[i % kStripes]);
  const auto& slot = slots_[i];
  if (slot.version == 0 || slot.id != id) return std::nullopt;
  return slot.version;
}

void VersionCache::clear() {
  for (std::size_t s = 0; s < kStripes; ++s) {
    const std::lock_guard lock(stripes_[s]);
    for (std::size_t i = s; i < slots_.size(); i += kStripes) slots_[i] = Slot{};
  }
}

struct VersionFeed::State : std::enable_shared_from_this<State> {
  projections::NotificationHub& hub;
  const std::set<std::string> topics;
  VersionCache& cache;
  const BlockingExecutor run_blocking;
  std::mutex mutex;  // subscription, stopped
  std::shared_ptr<projections::Subscription> subscription;
  bool stopped = false;
  std::int64_t restarts = 0;  // falls behind not yet logged
  std::chrono::steady_clock::time_point last_said{};
  std::atomic<bool> scheduled{false};

  State(projections::NotificationHub& h, std::set<std::string> t, VersionCache& c,
        BlockingExecutor run)
      : hub(h), topics(std::move(t)), cache(c), run_blocking(std::move(run)) {}

  void subscribe() {
    // The wake runs on the hub's thread, possibly under the subscription's lock: it only
    // schedules the drain (once, however many wakes come before it runs).
    std::weak_ptr<State> weak = shared_from_this();
    subscription = hub.subscribe(topics, {}, std::nullopt, [weak] {
      if (const auto self = weak.lock(); self && !self->scheduled.exchange(true)) {
        self->run_blocking([weak] {
          if (const auto state = weak.lock()) state->drain();
        });
      }
    });
  }

  void drain() {
    scheduled = false;
    const std::lock_guard lock(mutex);
    if (stopped || !subscription) return;
    for (const auto& d : subscription->take()) cache.raise(d->aggregate_id, d->version);
    if (const auto reason = subscription->closed_reason()) {
      // Notifications were lost: what the cache holds may be older than the read model.
      cache.clear();
      hub.unsubscribe(subscription);
      // Said once a minute at most (with how many times since), not at every fall under load.
      ++restarts;
      const auto now = std::chrono::steady_clock::now();
      if (now - last_said >= std::chrono::minutes(1)) {
        log().warn("the version cache fell behind the notifications and starts again",
                   {{"reason", *reason}, {"times", restarts}});
        last_said = now;
        restarts = 0;
      }
      subscribe();
    }
  }

  static core::Logger& log() {
    static core::Logger logger("version-cache");
    return logger;
  }
};

VersionFeed::VersionFeed(projections::NotificationHub& hub, std::set<std::string> topics,
                         VersionCache& cache, BlockingExecutor run_blocking)
    : state_(std::make_shared<State>(hub, std::move(topics), cache, std::move(run_blocking))) {
  const std::lock_guard lock(state_->mutex);
  state_->subscribe();
}

VersionFeed::~VersionFeed() {
  const std::lock_guard lock(state_->mutex);
  state_->stopped = true;
  if (state_->subscription) state_->hub.unsubscribe(state_->subscription);
}

}  // namespace cauce::api
