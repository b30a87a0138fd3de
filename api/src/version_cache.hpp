#pragma once

// The versions of contacts the read model is known to hold, so that a conditional GET whose
// If-None-Match names the current version is answered 304 on the I/O thread, without a query.
//
// Learnt from two sources, and only ever raised: the notifications the projector writes with
// each change (VersionFeed), and the rows the GET routes read. A version is never newer than
// what PostgreSQL has committed; it may trail it by the notification hub's delay, the same
// staleness a read without Cauce-Min-Position has anyway (a request with Cauce-Min-Position
// never uses the cache). Bounded: a fixed table of slots, each holding the last id hashed to
// it; an id it does not hold is read from PostgreSQL.

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <vector>

#include <cauce/api/routes.hpp>
#include <cauce/projections/notification_hub.hpp>

namespace cauce::api {

class VersionCache {
 public:
  explicit VersionCache(std::size_t slots = std::size_t{1} << 16);

  // `id` (a UUID as text) is at `version` or later. Ignored for anything but a UUID.
  void raise(std::string_view id, std::int64_t version);
  // The version held for `id`; nullopt when its slot holds another id (or none).
  std::optional<std::int64_t> find(std::string_view id) const;
  // Forgets everything (the feed lost notifications).
  void clear();

 private:
  using Id = std::array<std::uint8_t, 16>;
  struct Slot {
    Id id{};
    std::int64_t version = 0;  // 0: empty (versions start at 1)
  };
  static constexpr std::size_t kStripes = 64;

  std::size_t index(const Id& id) const;

  std::vector<Slot> slots_;
  mutable std::array<std::mutex, kStripes> stripes_;
};

// Feeds a VersionCache from the notification hub's `topics`: a subscription drained on
// `run_blocking` whenever the hub wakes it. Should the hub drop it (it fell behind), the cache
// is cleared and a new subscription taken.
class VersionFeed {
 public:
  VersionFeed(projections::NotificationHub& hub, std::set<std::string> topics, VersionCache& cache,
              BlockingExecutor run_blocking);
  ~VersionFeed();  // unsubscribes; a drain already scheduled finds the feed gone
  VersionFeed(const VersionFeed&) = delete;
  VersionFeed& operator=(const VersionFeed&) = delete;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace cauce::api
