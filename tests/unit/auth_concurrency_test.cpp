// ApiKeys is shared by every I/O thread: revocation and the key cache driven from 16 threads
// (also under the tsan preset, label `concurrency`).

#include <array>
#include <atomic>
#include <functional>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include <cauce/api/auth.hpp>

#include "memory_key_store.hpp"

namespace cauce::api {
namespace {

using namespace std::chrono_literals;

// A lookup that started before revoke() must not put the revoked key back in the cache: once
// revoke() has returned, this instance refuses the key (issue 11).
TEST(AuthConcurrencyTest, ALookupThatRacedARevokeDoesNotCacheTheRevokedKey) {
  testing::MemoryKeyStore store;
  ApiKeys keys(store, 1h);
  const auto key = keys.create("k", Role::kReader);
  std::atomic<int> stage{0};  // 1: the lookup has its (soon stale) answer; 2: revoked
  store.after_find = [&] {
    int expected = 0;
    if (!stage.compare_exchange_strong(expected, 1)) return;  // only the first lookup waits
    while (stage.load() != 2) std::this_thread::yield();
  };
  std::thread lookup([&] { keys.authenticate(key.token); });
  while (stage.load() != 1) std::this_thread::yield();
  ASSERT_TRUE(keys.revoke(key.record.id));
  stage = 2;
  lookup.join();
  EXPECT_FALSE(keys.authenticate(key.token)) << "revoked on this instance: refused at once";
}

// Sixteen threads run `check(k, was_revoked)` on keys taken in turn while the keys are revoked
// one by one, 20 ms apart.
void while_revoking(ApiKeys& keys, const std::vector<IssuedKey>& issued,
                    const std::function<void(std::size_t k, bool was_revoked)>& check) {
  std::vector<std::atomic<bool>> revoked(issued.size());
  std::atomic<bool> done{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      for (std::size_t i = static_cast<std::size_t>(t); !done; ++i) {
        const auto k = i % issued.size();
        check(k, revoked[k].load());
      }
    });
  }
  for (std::size_t k = 0; k < issued.size(); ++k) {
    std::this_thread::sleep_for(20ms);
    EXPECT_TRUE(keys.revoke(issued[k].record.id));  // not ASSERT: the threads must be joined
    revoked[k] = true;
  }
  std::this_thread::sleep_for(50ms);
  done = true;
  for (auto& t : threads) t.join();
}

std::vector<IssuedKey> issue(ApiKeys& keys, int n) {
  std::vector<IssuedKey> issued;
  for (int k = 0; k < n; ++k) issued.push_back(keys.create("k" + std::to_string(k), Role::kReader));
  return issued;
}

TEST(AuthConcurrencyTest, ARevokedKeyIsRefusedAtOnceWhileSixteenThreadsLookItUp) {
  testing::MemoryKeyStore store;
  store.after_find = [] { std::this_thread::sleep_for(200us); };  // a store that takes a moment
  ApiKeys keys(store, 1ms);                                       // lookups all the time
  const auto issued = issue(keys, 8);
  std::atomic<int> accepted_after_revoke{0};
  while_revoking(keys, issued, [&](std::size_t k, bool was_revoked) {
    if (keys.authenticate(issued[k].token) && was_revoked) ++accepted_after_revoke;
  });
  EXPECT_EQ(accepted_after_revoke.load(), 0);
  for (const auto& key : issued) EXPECT_FALSE(keys.authenticate(key.token));
}

// The I/O threads' path: answers from the cache alone, a verified secret compared without
// hashing. Right and wrong secrets while the keys are revoked: no wrong secret is ever
// accepted, and no key once revoke() has returned.
TEST(AuthConcurrencyTest, CachedAnswersNeverAcceptAWrongSecretOrARevokedKey) {
  testing::MemoryKeyStore store;
  ApiKeys keys(store, 1h);
  const auto issued = issue(keys, 8);
  std::vector<std::string> tampered;
  for (const auto& key : issued) {
    tampered.push_back(key.token);
    tampered.back().back() = tampered.back().back() == '0' ? '1' : '0';
    ASSERT_TRUE(keys.authenticate(key.token));  // cached
  }
  std::atomic<int> right_accepted{0};
  std::atomic<int> wrong_accepted{0};
  std::atomic<int> accepted_after_revoke{0};
  while_revoking(keys, issued, [&](std::size_t k, bool was_revoked) {
    if (const auto right = keys.cached_principal(issued[k].token); right && *right) {
      ++right_accepted;
      if (was_revoked) ++accepted_after_revoke;
    }
    if (const auto wrong = keys.cached_principal(tampered[k]); wrong && *wrong) ++wrong_accepted;
  });
  EXPECT_GT(right_accepted.load(), 0);
  EXPECT_EQ(wrong_accepted.load(), 0);
  EXPECT_EQ(accepted_after_revoke.load(), 0);
}

// Well-formed tokens of keys that do not exist (a scan, a client bug) are cached apart and never
// evict the real keys: those keep answering from the cache.
TEST(AuthConcurrencyTest, UnknownKeysFromManyThreadsNeverEvictRealOnes) {
  testing::MemoryKeyStore store;
  ApiKeys keys(store, 1h);
  const auto real = keys.create("real", Role::kOperator);
  ASSERT_TRUE(keys.authenticate(real.token));
  const int finds_before = store.finds;
  std::vector<std::thread> threads;
  std::atomic<int> real_refused{0};
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 random(static_cast<std::uint64_t>(t));
      for (int i = 0; i < 1500; ++i) {
        char id[17];
        std::snprintf(id, sizeof id, "%016llx", static_cast<unsigned long long>(random()));
        const auto token = std::string("ck_") + id + "_" + std::string(64, 'a');
        EXPECT_FALSE(keys.authenticate(token));
        if (!keys.authenticate(real.token)) ++real_refused;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(real_refused.load(), 0);
  EXPECT_EQ(store.finds - finds_before, 16 * 1500) << "one store lookup per unknown id, and none "
                                                      "for the real key (never evicted)";
}

}  // namespace
}  // namespace cauce::api
