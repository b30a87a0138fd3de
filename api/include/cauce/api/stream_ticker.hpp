#pragma once

// One clock for every live stream of a process (SSE and WebSocket): heartbeats, key re-checks and
// write deadlines, instead of one armed timer per client. Every `period` it calls the ticks of
// one of its `groups` groups of streams, in turn, so each stream's tick runs once every
// `groups` periods and a tick's work is spread over the whole cycle. A tick must only schedule
// work (post to the stream's strand), never block. Thread-safe.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

namespace cauce::api {

class StreamTicker {
 public:
  using Tick = std::function<void()>;

  // One stream's place on the clock; destroying it takes the stream off (its tick is not called
  // after the destructor returned).
  class Registration {
   public:
    Registration(StreamTicker& ticker, std::size_t group, std::uint64_t id)
        : ticker_(ticker), group_(group), id_(id) {}
    ~Registration() { ticker_.remove(group_, id_); }
    Registration(const Registration&) = delete;
    Registration& operator=(const Registration&) = delete;

   private:
    StreamTicker& ticker_;
    std::size_t group_;
    std::uint64_t id_;
  };

  StreamTicker(std::chrono::milliseconds period, std::size_t groups);
  ~StreamTicker();  // stops the clock; every Registration must be gone by then
  StreamTicker(const StreamTicker&) = delete;
  StreamTicker& operator=(const StreamTicker&) = delete;

  // The time between two ticks of the same stream: period × groups.
  std::chrono::milliseconds cycle() const { return period_ * static_cast<int>(groups_.size()); }

  std::unique_ptr<Registration> add(Tick tick);
  std::size_t size() const;

 private:
  void remove(std::size_t group, std::uint64_t id);
  void loop();

  const std::chrono::milliseconds period_;
  mutable std::mutex mutex_;
  std::condition_variable stopping_;
  bool stop_ = false;
  std::uint64_t next_id_ = 0;
  std::vector<std::unordered_map<std::uint64_t, Tick>> groups_;
  std::thread thread_;  // last: starts once the rest exists
};

}  // namespace cauce::api
