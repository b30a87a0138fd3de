// Atoms are interned in one table for the whole process, from every processor thread at once
// (each partition's committer and rebuild threads fold contact.assigned events). Run under the
// tsan preset too (ctest label `concurrency`).
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <cauce/commands/compact.hpp>

namespace cauce::commands {
namespace {

TEST(AtomConcurrencyTest, ThreadsInterningTheSameTextsGetTheSameAtoms) {
  constexpr int kThreads = 16;
  constexpr int kTexts = 500;
  std::vector<std::vector<Atom>> seen(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t, &seen] {
      for (int i = 0; i < kTexts; ++i) {
        // Each thread walks the texts in its own order, so first insertions race.
        const int n = (i * 7 + t * 31) % kTexts;
        const auto atom = Atom::of("operator-" + std::to_string(n));
        if (atom.view() != "operator-" + std::to_string(n)) ADD_FAILURE() << n;
        seen[static_cast<std::size_t>(t)].push_back(atom);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (int i = 0; i < kTexts; ++i) {
    const auto expected = Atom::of("operator-" + std::to_string(i));
    for (int t = 0; t < kThreads; ++t) {
      const int position = [&] {
        for (int k = 0; k < kTexts; ++k) {
          if ((k * 7 + t * 31) % kTexts == i) return k;
        }
        return -1;
      }();
      ASSERT_GE(position, 0);
      EXPECT_EQ(seen[static_cast<std::size_t>(t)][static_cast<std::size_t>(position)], expected);
    }
  }
}

}  // namespace
}  // namespace cauce::commands
