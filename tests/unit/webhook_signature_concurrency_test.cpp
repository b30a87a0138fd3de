// Signatures and secrets are made on every webhook runner thread at once: the same answers as
// from one thread, and secrets that never repeat.
#include <set>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <cauce/workers/webhooks.hpp>

namespace cauce::workers {
namespace {

TEST(WebhookSignatureConcurrencyTest, ManyThreadsSignAlikeAndDrawDistinctSecrets) {
  constexpr int kThreads = 8;
  constexpr int kEach = 500;
  std::vector<std::string> expected;
  for (int i = 0; i < kEach; ++i) {
    expected.push_back(webhook_signature("secret-" + std::to_string(i % 7), 1700000000 + i,
                                         R"({"id":")" + std::to_string(i) + "\"}"));
  }
  std::vector<std::vector<std::string>> secrets(kThreads);
  std::vector<int> mismatches(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        const auto s = webhook_signature("secret-" + std::to_string(i % 7), 1700000000 + i,
                                         R"({"id":")" + std::to_string(i) + "\"}");
        if (s != expected[static_cast<std::size_t>(i)]) ++mismatches[static_cast<std::size_t>(t)];
        if (i % 10 == 0) secrets[static_cast<std::size_t>(t)].push_back(new_webhook_secret());
      }
    });
  }
  for (auto& t : threads) t.join();
  std::set<std::string> distinct;
  std::size_t drawn = 0;
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(mismatches[static_cast<std::size_t>(t)], 0) << t;
    drawn += secrets[static_cast<std::size_t>(t)].size();
    distinct.insert(secrets[static_cast<std::size_t>(t)].begin(),
                    secrets[static_cast<std::size_t>(t)].end());
  }
  EXPECT_EQ(distinct.size(), drawn);
}

}  // namespace
}  // namespace cauce::workers
