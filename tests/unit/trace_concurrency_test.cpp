// Trace ids are minted on every I/O thread at once (one request each): each thread has its own
// generator, seeded apart, so no two threads hand out the same ids and none waits for another.
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <cauce/core/trace.hpp>

namespace cauce::core {
namespace {

TEST(TraceConcurrencyTest, ThreadsMintDistinctTracesAndSpans) {
  constexpr int kThreads = 8;
  constexpr int kEach = 2000;
  std::vector<std::vector<TraceParent>> minted(kThreads);
  std::vector<std::thread> threads;
  const auto parent =
      *TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&minted, &parent, t] {
      for (int i = 0; i < kEach; ++i) {
        minted[t].push_back(i % 2 == 0 ? TraceParent::start() : parent.child());
      }
    });
  }
  for (auto& thread : threads) thread.join();
  std::set<std::string> spans;
  std::set<std::string> traces;
  for (const auto& list : minted) {
    for (const auto& trace : list) {
      ASSERT_EQ(TraceParent::parse(trace.text()), trace) << trace.text();
      spans.emplace(trace.span_id());
      if (trace.trace_id() != parent.trace_id()) traces.emplace(trace.trace_id());
    }
  }
  EXPECT_EQ(spans.size(), static_cast<std::size_t>(kThreads * kEach));
  EXPECT_EQ(traces.size(), static_cast<std::size_t>(kThreads * kEach / 2));
}

}  // namespace
}  // namespace cauce::core
