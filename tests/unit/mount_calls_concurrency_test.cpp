// MountCalls (workers/src/mount_calls.hpp): calls into a mount that may stop answering leave at
// most the stuck calls behind, however many attempts follow, from however many threads.
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "mount_calls.hpp"

namespace cauce::workers {
namespace {

using namespace std::chrono_literals;
using Outcome = MountCalls::Outcome;

// A mount that hangs every call until it is told to answer again.
class SilentMount {
 public:
  // The work of one call: blocks while the mount is silent; counts the calls that reached it.
  std::function<int()> work() {
    return [state = state_] {
      std::unique_lock lock(state->mutex);
      ++state->entered;
      state->answers.wait(lock, [&] { return state->answering; });
      ++state->finished;
      return 7;
    };
  }
  void answer() {
    {
      const std::lock_guard lock(state_->mutex);
      state_->answering = true;
    }
    state_->answers.notify_all();
  }
  int entered() const {
    const std::lock_guard lock(state_->mutex);
    return state_->entered;
  }
  int finished() const {
    const std::lock_guard lock(state_->mutex);
    return state_->finished;
  }

 private:
  struct State {
    std::mutex mutex;
    std::condition_variable answers;
    bool answering = false;
    int entered = 0;
    int finished = 0;
  };
  // Shared with the calls' threads, which outlive a test that fails early.
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

TEST(MountCallsTest, AnsweredCallsReturnTheirValueOrException) {
  MountCalls calls;
  const auto done = calls.call<int>([] { return 42; }, 5s);
  EXPECT_EQ(done.outcome, Outcome::kDone);
  EXPECT_EQ(done.value, 42);
  EXPECT_THROW(calls.call<int>([]() -> int { throw std::runtime_error("ENOSPC"); }, 5s),
               std::runtime_error);
  EXPECT_EQ(calls.blocked(), 0);
}

TEST(MountCallsTest, ASilentMountHoldsOnlyTheCallsThatWereStuckUntilItAnswers) {
  MountCalls calls;
  SilentMount mount;
  const auto first = calls.call<int>(mount.work(), 20ms);
  EXPECT_EQ(first.outcome, Outcome::kTimedOut);
  EXPECT_FALSE(first.value);
  EXPECT_EQ(calls.blocked(), 1);

  // Attempts from many threads while it is stuck: refused at once, none reaches the mount.
  std::atomic<int> refused{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        if (calls.call<int>(mount.work(), 1s).outcome == Outcome::kStillBlocked) ++refused;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(refused.load(), 8 * 50);
  EXPECT_EQ(mount.entered(), 1);

  mount.answer();
  for (int i = 0; i < 500 && calls.blocked() > 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(calls.blocked(), 0);
  EXPECT_EQ(mount.finished(), 1);
  const auto after = calls.call<int>(mount.work(), 5s);
  EXPECT_EQ(after.outcome, Outcome::kDone);
  EXPECT_EQ(after.value, 7);
}

// Calls racing their own deadline from many threads: each is either done (with its value) or
// counted blocked until it ends, never both and never lost, so the count returns to 0.
TEST(MountCallsTest, CallsEndingAtTheirDeadlineAreCountedOnce) {
  MountCalls calls;
  std::atomic<int> done{0};
  std::atomic<int> timed_out{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        const auto r = calls.call<int>(
            [] {
              std::this_thread::sleep_for(1ms);
              return 1;
            },
            1ms);
        if (r.outcome == Outcome::kDone) {
          EXPECT_EQ(r.value, 1);
          ++done;
        } else if (r.outcome == Outcome::kTimedOut) {
          ++timed_out;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 500 && calls.blocked() > 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(calls.blocked(), 0);
  EXPECT_GT(done.load() + timed_out.load(), 0);
}

}  // namespace
}  // namespace cauce::workers
