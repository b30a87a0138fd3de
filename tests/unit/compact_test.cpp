// The compact values a partition's state is made of: ids as 16 bytes, digests, interned texts
// and the insert-only map that holds millions of records.
#include <map>
#include <set>

#include <gtest/gtest.h>

#include <cauce/commands/compact.hpp>
#include <cauce/commands/envelope.hpp>

namespace cauce::commands {
namespace {

TEST(UuidTest, TheTextFormRoundTripsAndAnythingElseIsRefused) {
  for (const auto& text : {uuid_v7(1'700'000'000'000), uuid_from_name("x"),
                           std::string("00000000-0000-0000-0000-000000000000"),
                           std::string("ffffffff-ffff-ffff-ffff-ffffffffffff")}) {
    const auto id = Uuid::parse(text);
    ASSERT_TRUE(id) << text;
    EXPECT_EQ(id->str(), text);
  }
  for (const auto* bad :
       {"", "0195a0c4-0000-7000-8000-00000000000", "0195A0C4-0000-7000-8000-000000000001",
        "0195a0c4-0000-7000-8000_000000000001", "0195a0c4-0000-7000-8000-00000000000g",
        "0195a0c400007000800000000000000001ab"}) {
    EXPECT_FALSE(Uuid::parse(bad)) << bad;
    EXPECT_EQ(is_uuid(bad), false) << bad;
  }
  EXPECT_THROW(Uuid::from("nope", "aggregate_id"), std::invalid_argument);
}

TEST(DigestTest, AbsentIsZeroAndBoundariesCount) {
  EXPECT_EQ(digest(std::optional<std::string>{}), 0u);
  EXPECT_NE(digest(std::optional<std::string>{""}), 0u);
  EXPECT_NE(digest(""), digest(" "));
  EXPECT_EQ(digest("Ana Lima"), digest(std::string("Ana Lima")));
  EXPECT_NE(digest(std::vector<std::string>{"ab", "c"}),
            digest(std::vector<std::string>{"a", "bc"}));
  EXPECT_NE(digest(std::vector<std::string>{"a", "b"}), digest(std::vector<std::string>{"b", "a"}));
  EXPECT_NE(digest(std::vector<std::string>{}), digest(std::vector<std::string>{""}));
  EXPECT_NE(digest("ab", "c"), digest("a", "bc"));
  // No collisions among many similar texts (every length from 0 to 40, every last byte).
  std::set<Digest> seen;
  std::string text;
  for (int length = 0; length <= 40; ++length) {
    for (int last = 0; last < 256; ++last) {
      text.resize(static_cast<std::size_t>(length));
      text.push_back(static_cast<char>(last));
      EXPECT_TRUE(seen.insert(digest(text)).second) << length << " " << last;
      text.pop_back();
    }
    text.push_back('a');
  }
}

TEST(AtomTest, EqualTextsAreTheSameAtom) {
  EXPECT_TRUE(Atom{}.empty());
  EXPECT_EQ(Atom{}.optional(), std::nullopt);
  const auto a = Atom::of("op-7");
  EXPECT_EQ(a, Atom::of(std::string("op-") + "7"));
  EXPECT_NE(a, Atom::of("op-8"));
  EXPECT_NE(Atom::of(""), Atom{});
  EXPECT_EQ(a.view(), "op-7");
  EXPECT_EQ(Atom::of(std::optional<std::string>{"op-7"}), a);
}

struct IntTraits {
  static std::uint64_t hash(const int& key) {
    return static_cast<std::uint64_t>(key) * 0x9e3779b97f4a7c15ULL;
  }
};

TEST(DenseMapTest, BehavesLikeAMapThroughGrowthAndCopies) {
  DenseMap<int, std::string, IntTraits> map;
  std::map<int, std::string> expected;
  EXPECT_EQ(map.find(1), nullptr);
  for (int i = 0; i < 20000; ++i) {
    const int key = (i * 7919) % 15000;  // repeats: every key is assigned more than once
    map.insert_or_assign(key, std::to_string(i));
    expected[key] = std::to_string(i);
  }
  ASSERT_EQ(map.size(), expected.size());
  for (const auto& [key, value] : expected) {
    ASSERT_NE(map.find(key), nullptr) << key;
    EXPECT_EQ(*map.find(key), value);
  }
  EXPECT_EQ(map.find(15000), nullptr);
  EXPECT_EQ(map.find(-1), nullptr);

  const auto* address = map.find(42);
  for (int i = 20000; i < 40000; ++i) map.insert_or_assign(i, "more");
  EXPECT_EQ(map.find(42), address) << "entries never move";

  auto copy = map;
  copy.insert_or_assign(42, "changed");
  EXPECT_EQ(*map.find(42), expected[42]);
  EXPECT_EQ(*copy.find(42), "changed");
  std::size_t visited = 0;
  copy.for_each([&](int, const std::string&) { ++visited; });
  EXPECT_EQ(visited, copy.size());
}

TEST(DenseMapTest, AMovedFromMapIsEmptyAndUsable) {
  DenseMap<int, int, IntTraits> map;
  for (int i = 0; i < 3000; ++i) map.insert_or_assign(i, i);
  auto moved = std::move(map);
  EXPECT_EQ(moved.size(), 3000u);
  EXPECT_EQ(*moved.find(2999), 2999);
  EXPECT_EQ(map.size(), 0u);  // NOLINT(bugprone-use-after-move): the moved-from state is specified
  EXPECT_EQ(map.find(1), nullptr);
  map.insert_or_assign(1, 10);
  EXPECT_EQ(*map.find(1), 10);
  std::size_t visited = 0;
  map.for_each([&](int, int) { ++visited; });
  EXPECT_EQ(visited, 1u);
}

// Keys whose hashes share their low bits all land in one run of slots: still found.
struct CollidingTraits {
  static std::uint64_t hash(const int& key) { return static_cast<std::uint64_t>(key % 3) << 40; }
};

TEST(DenseMapTest, KeysWithTheSameSlotAreStillFound) {
  DenseMap<int, int, CollidingTraits> map;
  for (int i = 0; i < 500; ++i) map.insert_or_assign(i, i * 2);
  for (int i = 0; i < 500; ++i) ASSERT_EQ(*map.find(i), i * 2);
  EXPECT_EQ(map.find(500), nullptr);
}

}  // namespace
}  // namespace cauce::commands
