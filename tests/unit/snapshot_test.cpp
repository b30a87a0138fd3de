// A partition's state survives encode/decode exactly, and bytes that are not a whole snapshot of
// this format are refused (the processor then replays the whole log instead).
#include <gtest/gtest.h>

#include <cauce/commands/snapshot.hpp>

namespace cauce::commands {
namespace {

AggregateKey key(const char* id, AggregateType type) { return {*Uuid::parse(id), type}; }
const Uuid kCommand1 = *Uuid::parse("0195a0c4-0000-7000-8000-0000000000c1");
const Uuid kCommand2 = *Uuid::parse("0195a0c4-0000-8000-8000-0000000000c2");
const char* const kContact = "0195a0c4-0000-7000-8000-000000000001";

MemoryAggregateStore sample_store() {
  MemoryAggregateStore store;
  contact::State c;
  c.exists = true;
  c.archived = true;
  c.version = 7;
  c.name = digest("Ana Lima");
  c.phone = digest("+351912345678");
  c.email = digest("ana@example.com");
  c.tags = digest(std::vector<std::string>{"vip", "north", ""});
  c.assigned_to = Atom::of("op-7");
  c.calls_count = 3;
  c.claimed_by = Atom::of("op-9");
  c.claimed_until_us = 1'700'000'300'000'000;
  store.put(key(kContact, AggregateType::kContact), c);
  store.put(key("0195a0c4-0000-7000-8000-000000000002", AggregateType::kContact), contact::State{});
  alert::State a;
  a.exists = true;
  a.version = 3;
  a.level = alert::Level::kCritical;
  a.status = alert::Status::kAcknowledged;
  a.deadline_missed = true;
  // The same id as the contact: another aggregate type, another aggregate.
  store.put(key(kContact, AggregateType::kAlert), a);
  // Jobs keep where they are (format 5): a worker's next step is decided on it.
  store.put(key("0195a0c4-0000-7000-8000-000000000004", AggregateType::kReport),
            report::State{true, 4, report::Status::kDownloading, 1, 2});
  store.put(key("0195a0c4-0000-7000-8000-000000000005", AggregateType::kBackup),
            backup::State{true, 2, backup::Status::kRetrying, 0, 1});
  // A completed backup's copy keeps where it is too (format 8): its next attempt is decided on it.
  store.put(
      key("0195a0c4-0000-7000-8000-000000000009", AggregateType::kBackup),
      backup::State{true, 6, backup::Status::kCompleted, 0, 1, backup::CopyStatus::kPending, 2});
  report_schedule::State schedule;
  schedule.exists = true;
  schedule.version = 6;
  schedule.status = report_schedule::Status::kPaused;
  schedule.revision = 4;
  schedule.last_slot_us = 1'700'000'400'000'000;
  schedule.definition = std::make_shared<const report_schedule::Definition>(
      report_schedule::Definition{"Calls", "https://example.org/c.csv", std::nullopt,
                                  "0 7 * * mon-fri", "Europe/Madrid", "crm"});
  store.put(key("0195a0c4-0000-7000-8000-000000000006", AggregateType::kReportSchedule), schedule);
  store.put(key("0195a0c4-0000-7000-8000-000000000007", AggregateType::kWebhook),
            webhook::State{true, 2, webhook::Status::kDisabled});
  store.put(key("0195a0c4-0000-7000-8000-000000000008", AggregateType::kImport),
            import::State{true, 4, import::Status::kCompleted});
  store.record_command(kCommand1, {digest("hash-1"), 7, 41, std::nullopt});
  store.record_command(kCommand2, {digest("hash-2"), 0, -1,
                                   Rejection{"not_found", "id", "there is no such contact"}});
  return store;
}

bool same_state(const AggregateState& a, const AggregateState& b) {
  if (a.index() != b.index()) return false;
  if (const auto* x = std::get_if<contact::State>(&a)) return *x == std::get<contact::State>(b);
  if (const auto* x = std::get_if<alert::State>(&a)) {
    const auto& y = std::get<alert::State>(b);
    return x->exists == y.exists && x->version == y.version && x->level == y.level &&
           x->status == y.status && x->deadline_missed == y.deadline_missed;
  }
  const auto same_job = [](const auto& x, const auto& y) {
    return x.exists == y.exists && x.version == y.version && x.status == y.status &&
           x.round == y.round && x.attempt == y.attempt;
  };
  if (const auto* x = std::get_if<report::State>(&a)) {
    return same_job(*x, std::get<report::State>(b));
  }
  if (const auto* x = std::get_if<report_schedule::State>(&a)) {
    const auto& y = std::get<report_schedule::State>(b);
    return x->exists == y.exists && x->version == y.version && x->status == y.status &&
           x->revision == y.revision && x->last_slot_us == y.last_slot_us &&
           (x->definition == nullptr) == (y.definition == nullptr) &&
           (x->definition == nullptr || *x->definition == *y.definition);
  }
  if (const auto* x = std::get_if<webhook::State>(&a)) {
    const auto& y = std::get<webhook::State>(b);
    return x->exists == y.exists && x->version == y.version && x->status == y.status;
  }
  if (const auto* x = std::get_if<import::State>(&a)) {
    const auto& y = std::get<import::State>(b);
    return x->exists == y.exists && x->version == y.version && x->status == y.status;
  }
  const auto& x = std::get<backup::State>(a);
  const auto& y = std::get<backup::State>(b);
  return same_job(x, y) && x.copy == y.copy && x.copy_attempts == y.copy_attempts;
}

TEST(SnapshotTest, EveryAggregateAndEveryRememberedCommandRoundTrips) {
  const auto store = sample_store();
  const auto back = decode_snapshot(encode_snapshot(store));
  ASSERT_EQ(back->aggregate_count(), 9u);
  ASSERT_EQ(back->command_count(), 2u);
  store.aggregates().for_each([&](const AggregateKey& k, const AggregateState& state) {
    ASSERT_NE(back->find(k), nullptr) << k.id.str();
    EXPECT_TRUE(same_state(*back->find(k), state)) << k.id.str();
  });
  for (const auto& id : {kCommand1, kCommand2}) {
    const auto a = store.find_command(id);
    const auto b = back->find_command(id);
    ASSERT_TRUE(b) << id.str();
    EXPECT_EQ(b->request, a->request);
    EXPECT_EQ(b->version, a->version);
    EXPECT_EQ(b->offset, a->offset);
    EXPECT_EQ(b->rejection, a->rejection);
  }
  EXPECT_EQ(back->find_command(kCommand1)->offset, 41);
  EXPECT_EQ(back->find_command(kCommand2)->rejection->code, "not_found");
  EXPECT_EQ(decode_snapshot(encode_snapshot(MemoryAggregateStore{}))->aggregate_count(), 0u);
}

TEST(SnapshotTest, AnythingButAWholeSnapshotIsRefused) {
  const auto bytes = encode_snapshot(sample_store());
  for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
    EXPECT_THROW(decode_snapshot(bytes.substr(0, cut)), std::invalid_argument) << cut;
  }
  EXPECT_THROW(decode_snapshot(bytes + "x"), std::invalid_argument);
  // A snapshot of an earlier format (1: strings, not compact records; 2: no claims; 3: no missed
  // deadlines; 4: no job status; 5: no webhooks; 6: no imports) is not read.
  EXPECT_THROW(decode_snapshot("CAUCESN1" + bytes.substr(8)), std::invalid_argument);
  EXPECT_THROW(decode_snapshot("CAUCESN2" + bytes.substr(8)), std::invalid_argument);
  EXPECT_THROW(decode_snapshot("CAUCESN3" + bytes.substr(8)), std::invalid_argument);
  EXPECT_THROW(decode_snapshot("CAUCESN4" + bytes.substr(8)), std::invalid_argument);
  // A count claiming more items than bytes left is refused before anything is allocated.
  EXPECT_THROW(decode_snapshot(std::string("CAUCESN8") + "\xff\xff\xff\xff\x0f"),
               std::invalid_argument);
}

}  // namespace
}  // namespace cauce::commands
