#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <thread>

namespace cauce::workers {

// Calls into a mount that may stop answering (backups.copy_to on NFS or SMB). Each call runs on a
// thread of its own and is waited for up to a deadline. A call that overran is left running: a
// thread blocked in the kernel on a silent mount cannot be stopped. While one is, every further
// call is refused at once (kStillBlocked) instead of leaving one more blocked thread per attempt,
// so a mount that never answers holds at most the calls that were in flight when it stopped.
// Thread-safe. A call's work must own what it uses (capture copies): it may outlive this object.
// When the mount answers again, the blocked calls end and calls run again.
class MountCalls {
 public:
  enum class Outcome { kDone, kTimedOut, kStillBlocked };

  template <typename T>
  struct Result {
    Outcome outcome = Outcome::kDone;
    std::optional<T> value;  // with kDone
  };

  // `work`'s value, or its exception rethrown, when it finished within `deadline`.
  template <typename T>
  Result<T> call(std::function<T()> work, std::chrono::milliseconds deadline) {
    if (blocked_->load() > 0) return {Outcome::kStillBlocked, std::nullopt};
    // kRunning, then kFinished (by the thread) or kOverran (by this caller), whichever is first.
    auto state = std::make_shared<std::atomic<int>>(kRunning);
    std::packaged_task<T()> task(std::move(work));
    auto result = task.get_future();
    std::thread([task = std::move(task), state, blocked = blocked_]() mutable {
      task();
      if (state->exchange(kFinished) == kOverran) blocked->fetch_sub(1);
    }).detach();
    if (result.wait_for(deadline) != std::future_status::ready) {
      blocked_->fetch_add(1);  // before the thread can see kOverran and take it back
      int running = kRunning;
      if (state->compare_exchange_strong(running, kOverran)) {
        return {Outcome::kTimedOut, std::nullopt};
      }
      blocked_->fetch_sub(1);  // it finished between the wait and now
    }
    return {Outcome::kDone, result.get()};
  }

  // Calls that overran their deadline and are still running.
  int blocked() const { return blocked_->load(); }

 private:
  static constexpr int kRunning = 0;
  static constexpr int kFinished = 1;
  static constexpr int kOverran = 2;
  // Shared with the calls' threads, which may outlive this object.
  std::shared_ptr<std::atomic<int>> blocked_ = std::make_shared<std::atomic<int>>(0);
};

}  // namespace cauce::workers
