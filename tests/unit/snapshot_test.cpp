// A partition's state survives encode/decode exactly, and bytes that are not a whole snapshot of
// this format are refused (the processor then replays the whole log instead).
#include <gtest/gtest.h>

#include <cauce/commands/snapshot.hpp>

namespace cauce::commands {
namespace {

MemoryAggregateStore sample_store() {
  MemoryAggregateStore store;
  contact::State c;
  c.exists = true;
  c.archived = true;
  c.version = 7;
  c.name = "Ana Lima";
  c.phone = "+351912345678";
  c.email = "ana@example.com";
  c.tags = {"vip", "north", ""};
  c.assigned_to = "op-7";
  c.calls_count = 3;
  store.put(store_key("contact", "c-1"), c);
  store.put(store_key("contact", "c-2"), contact::State{});
  alert::State a;
  a.exists = true;
  a.version = 3;
  a.level = alert::Level::kCritical;
  a.status = alert::Status::kAcknowledged;
  store.put(store_key("alert", "a-1"), a);
  store.put(store_key("report", "r-1"), report::State{true, 1});
  store.put(store_key("backup", "b-1"), backup::State{true, 2});
  store.record_command("cmd-1", {"hash-1", "c-1", 7, "3:41", "call-9", std::nullopt});
  store.record_command("cmd-2", {"hash-2", "c-3", 0, "", std::nullopt,
                                 Rejection{"not_found", "id", "there is no such contact"}});
  return store;
}

bool same_state(const AggregateState& a, const AggregateState& b) {
  if (a.index() != b.index()) return false;
  if (const auto* x = std::get_if<contact::State>(&a)) {
    const auto& y = std::get<contact::State>(b);
    return x->exists == y.exists && x->archived == y.archived && x->version == y.version &&
           x->name == y.name && x->phone == y.phone && x->email == y.email && x->tags == y.tags &&
           x->notes == y.notes && x->assigned_to == y.assigned_to &&
           x->calls_count == y.calls_count;
  }
  if (const auto* x = std::get_if<alert::State>(&a)) {
    const auto& y = std::get<alert::State>(b);
    return x->exists == y.exists && x->version == y.version && x->level == y.level &&
           x->status == y.status;
  }
  if (const auto* x = std::get_if<report::State>(&a)) {
    return x->exists == std::get<report::State>(b).exists &&
           x->version == std::get<report::State>(b).version;
  }
  return std::get<backup::State>(a).exists == std::get<backup::State>(b).exists &&
         std::get<backup::State>(a).version == std::get<backup::State>(b).version;
}

TEST(SnapshotTest, EveryAggregateAndEveryRememberedCommandRoundTrips) {
  const auto store = sample_store();
  const auto back = decode_snapshot(encode_snapshot(store));
  ASSERT_EQ(back->aggregate_count(), store.aggregate_count());
  ASSERT_EQ(back->command_count(), store.command_count());
  for (const auto& [key, state] : store.aggregates()) {
    ASSERT_NE(back->find(key), nullptr) << key;
    EXPECT_TRUE(same_state(*back->find(key), state)) << key;
  }
  for (const auto& [id, c] : store.commands()) {
    const auto* b = back->find_command(id);
    ASSERT_NE(b, nullptr) << id;
    EXPECT_EQ(b->request_hash, c.request_hash);
    EXPECT_EQ(b->aggregate_id, c.aggregate_id);
    EXPECT_EQ(b->version, c.version);
    EXPECT_EQ(b->position, c.position);
    EXPECT_EQ(b->call_id, c.call_id);
    EXPECT_EQ(b->rejection, c.rejection);
  }
  EXPECT_EQ(decode_snapshot(encode_snapshot(MemoryAggregateStore{}))->aggregate_count(), 0u);
}

TEST(SnapshotTest, AnythingButAWholeSnapshotIsRefused) {
  const auto bytes = encode_snapshot(sample_store());
  for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
    EXPECT_THROW(decode_snapshot(bytes.substr(0, cut)), std::invalid_argument) << cut;
  }
  EXPECT_THROW(decode_snapshot(bytes + "x"), std::invalid_argument);
  EXPECT_THROW(decode_snapshot("CAUCESN2" + bytes.substr(8)), std::invalid_argument);
  // A count claiming more items than bytes left is refused before anything is allocated.
  EXPECT_THROW(decode_snapshot(std::string("CAUCESN1") + "\xff\xff\xff\xff\x0f"),
               std::invalid_argument);
}

}  // namespace
}  // namespace cauce::commands
