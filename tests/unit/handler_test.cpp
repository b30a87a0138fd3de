// decide() over a store (deduplication by command id, routing, malformed data as a rejection),
// fold() rebuilding the same state from the events, and the wire codecs and ids.
#include <set>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cauce/commands/handler.hpp>
#include <cauce/commands/schemas.hpp>

namespace cauce::commands {
namespace {

// `name` names the command; its id is derived from it (ids are UUIDs).
CommandEnvelope command(std::string type, std::string aggregate_type, std::string aggregate_id,
                        std::string data, const std::string& name, std::string hash = "h1") {
  CommandEnvelope c;
  c.command_id = uuid_from_name(name);
  c.type = std::move(type);
  c.aggregate_type = std::move(aggregate_type);
  c.aggregate_id = std::move(aggregate_id);
  c.issued_at_us = 1'700'000'000'123'456;
  c.actor = "tester";
  c.correlation_id = "corr";
  c.request_hash = std::move(hash);
  c.data = std::move(data);
  return c;
}

const std::string kContact = "0195a0c4-1111-7000-8000-000000000001";
const std::string kRegister = R"({"name":"Ana","phone":"+351 912 345 678"})";

AggregateKey contact_key(const std::string& id) {
  return AggregateKey{*Uuid::parse(id), AggregateType::kContact};
}

TEST(HandlerTest, ARepeatedCommandIdIsADuplicateWithTheOriginalAnswer) {
  MemoryAggregateStore store;
  const auto c = command("contact.register", "contact", kContact, kRegister, "cmd-1");
  const auto first = decide(store, c);
  ASSERT_EQ(first.kind, ReplyOutcome::kApplied);
  ASSERT_EQ(first.events.size(), 1u);
  EXPECT_EQ(first.events[0].type, "contact.registered");
  record(store, c, first, 41);

  const auto again = decide(store, c);
  EXPECT_EQ(again.kind, ReplyOutcome::kDuplicate);
  EXPECT_TRUE(again.events.empty());
  ASSERT_TRUE(again.original);
  EXPECT_EQ(again.original->offset, 41);
  EXPECT_EQ(again.version, 1);
}

TEST(HandlerTest, TheSameCommandIdWithAnotherRequestIsKeyReused) {
  MemoryAggregateStore store;
  const auto c = command("contact.register", "contact", kContact, kRegister, "cmd-1", "h1");
  record(store, c, decide(store, c), 0);
  const auto other = command("contact.register", "contact", kContact, kRegister, "cmd-1", "h2");
  EXPECT_EQ(decide(store, other).kind, ReplyOutcome::kKeyReused);
}

TEST(HandlerTest, DecidingDoesNotChangeTheStore) {
  MemoryAggregateStore store;
  const auto c = command("contact.register", "contact", kContact, kRegister, "cmd-1");
  static_cast<void>(decide(store, c));
  EXPECT_EQ(store.aggregate_count(), 0u);
  EXPECT_EQ(store.command_count(), 0u);
}

TEST(HandlerTest, MalformedDataIsAnInvalidRejection) {
  MemoryAggregateStore store;
  const auto out =
      decide(store, command("contact.register", "contact", kContact, R"({"name":7})", "b"));
  EXPECT_EQ(out.kind, ReplyOutcome::kRejected);
  ASSERT_TRUE(out.rejection);
  EXPECT_EQ(out.rejection->code, "invalid");
}

// Only cauce's API sends commands, so a type this processor does not know was sent by a newer
// API during a rolling upgrade: refused for now (never remembered), decided after the upgrade.
TEST(HandlerTest, CommandTypesOfANewerBuildAreRefusedUntilTheUpgrade) {
  MemoryAggregateStore store;
  for (const auto& c : {command("contact.teleport", "contact", kContact, "{}", "a"),
                        command("ship.launch", "ship", kContact, "{}", "c")}) {
    const auto out = decide(store, c);
    EXPECT_EQ(out.kind, ReplyOutcome::kRejected) << c.type;
    ASSERT_TRUE(out.rejection) << c.type;
    EXPECT_EQ(out.rejection->code, "unknown_command") << c.type;
    EXPECT_THAT(out.rejection->message, ::testing::HasSubstr(c.type));
    EXPECT_FALSE(remembers_rejection(c, out)) << c.type;
  }
}

TEST(HandlerTest, IdsThatAreNotUuidsAreInvalid) {
  MemoryAggregateStore store;
  auto c = command("contact.register", "contact", "contact-1", kRegister, "a");
  auto out = decide(store, c);
  ASSERT_TRUE(out.rejection);
  EXPECT_EQ(out.rejection->field, "aggregate_id");
  c = command("contact.register", "contact", kContact, kRegister, "b");
  c.command_id = "b";
  out = decide(store, c);
  ASSERT_TRUE(out.rejection);
  EXPECT_EQ(out.rejection->field, "command_id");
}

TEST(HandlerTest, AggregatesOfAnotherTypeAreNotFound) {
  MemoryAggregateStore store;
  const auto c = command("contact.register", "contact", kContact, kRegister, "cmd-1");
  record(store, c, decide(store, c), 0);
  const auto close = command("alert.close", "alert", kContact, R"({"resolution":"x"})", "cmd-2");
  const auto out = decide(store, close);
  ASSERT_TRUE(out.rejection);
  EXPECT_EQ(out.rejection->code, "not_found");
}

TEST(HandlerTest, FoldingTheEventsRebuildsTheStateAndTheAppliedCommands) {
  MemoryAggregateStore live;
  std::vector<EventEnvelope> log;
  const std::vector<CommandEnvelope> commands = {
      command("contact.register", "contact", kContact, kRegister, "c1"),
      command(
          "contact.log_call", "contact", kContact,
          R"({"call_id":"0195a0c4-2222-7000-8000-000000000002","outcome":"busy","duration_s":0})",
          "c2"),
      command("contact.update", "contact", kContact, R"({"tags":["vip"]})", "c3"),
  };
  for (const auto& c : commands) {
    const auto out = decide(live, c);
    ASSERT_EQ(out.kind, ReplyOutcome::kApplied) << c.type;
    for (const auto& env : event_envelopes(c, out)) {
      log.push_back(event_from_json(to_json(env)));  // through the wire form
    }
    record(live, c, out, static_cast<std::int64_t>(log.size()) - 1);
  }
  MemoryAggregateStore rebuilt;
  for (std::size_t i = 0; i < log.size(); ++i) {
    fold(rebuilt, log[i], static_cast<std::int64_t>(i), "h1");
  }
  EXPECT_EQ(rebuilt.aggregate_count(), 1u);
  EXPECT_EQ(rebuilt.command_count(), 3u);
  const auto* state = std::get_if<contact::State>(rebuilt.find(contact_key(kContact)));
  ASSERT_NE(state, nullptr);
  EXPECT_EQ(state->version, 3);
  EXPECT_EQ(rebuilt.find_command(*Uuid::parse(uuid_from_name("c2")))->offset, 1);
  // After the rebuild a retry is still a duplicate, answered with its call id.
  const auto retry = decide(rebuilt, commands[1]);
  EXPECT_EQ(retry.kind, ReplyOutcome::kDuplicate);
  EXPECT_EQ(retry.call_id, std::optional<std::string>("0195a0c4-2222-7000-8000-000000000002"));
  const auto next = command("contact.archive", "contact", kContact, "{}", "c4");
  EXPECT_EQ(decide(rebuilt, next).version, decide(live, next).version);
}

// An event a newer build wrote (rolling upgrades, issue 18): its type or schema_version is
// unknown here. `version` and the command that wrote it come from the envelope.
EventEnvelope newer_event(const std::string& aggregate_type, const std::string& aggregate_id,
                          std::int64_t version, const std::string& type, int schema_version,
                          const std::string& name) {
  EventEnvelope e;
  e.event_id = uuid_v7(1'700'000'000'000);
  e.type = type;
  e.schema_version = schema_version;
  e.aggregate_type = aggregate_type;
  e.aggregate_id = aggregate_id;
  e.version = version;
  e.occurred_at_us = 1'700'000'000'000'000;
  e.command_id = uuid_from_name(name);
  e.correlation_id = "corr";
  e.causation_id = e.command_id;
  e.actor = "tester";
  e.data = R"({"nickname":"Nana"})";
  return e;
}

TEST(HandlerTest, EventsOfANewerBuildKeepTheVersionExactAndRefuseCommandsUntilTheUpgrade) {
  MemoryAggregateStore store;
  const auto registered =
      decide(store, command("contact.register", "contact", kContact, kRegister, "c1"));
  ASSERT_EQ(registered.kind, ReplyOutcome::kApplied);
  for (const auto& e : event_envelopes(
           command("contact.register", "contact", kContact, kRegister, "c1"), registered)) {
    EXPECT_FALSE(fold(store, e, 0, "h1"));
  }
  EXPECT_EQ(store.unread(contact_key(kContact)), nullptr);

  // A type this build does not know, then a known type at a schema_version it does not know.
  const auto unknown_type =
      fold(store, newer_event("contact", kContact, 2, "contact.nicknamed", 1, "n1"), 1, "h1");
  ASSERT_TRUE(unknown_type);
  EXPECT_EQ(unknown_type->event, "contact.nicknamed v1");
  EXPECT_TRUE(unknown_type->newer);
  const auto newer_version =
      fold(store, newer_event("contact", kContact, 3, "contact.updated", 2, "n2"), 2, "h1");
  ASSERT_TRUE(newer_version);
  EXPECT_THAT(newer_version->reason, ::testing::HasSubstr("schema_version 2"));
  EXPECT_TRUE(newer_version->newer);
  // An aggregate type this build does not know: its command is still remembered.
  const auto invoice = "0195a0c4-3333-7000-8000-000000000003";
  EXPECT_TRUE(fold(store, newer_event("invoice", invoice, 1, "invoice.issued", 1, "n3"), 3, "h1"));
  EXPECT_TRUE(store.find_command(*Uuid::parse(uuid_from_name("n3"))));
  EXPECT_EQ(store.find_command(*Uuid::parse(uuid_from_name("n2")))->version, 3);

  // The version is the envelope's: OCC stays exact.
  const auto* state = std::get_if<contact::State>(store.find(contact_key(kContact)));
  ASSERT_NE(state, nullptr);
  EXPECT_EQ(state->version, 3);
  const auto* unread = store.unread(contact_key(kContact));
  ASSERT_NE(unread, nullptr);
  EXPECT_THAT(*unread, ::testing::StartsWith("contact.nicknamed v1"))
      << "the first event it could not read";
  EXPECT_EQ(store.unread_events(), 3) << "the invoice's too: the store is not snapshotted";

  // A wrong If-Match is a mismatch as always, at the exact version.
  auto stale = command("contact.update", "contact", kContact, R"({"name":"Ana B"})", "c2");
  stale.expected_version = 2;
  const auto mismatch = decide(store, stale);
  ASSERT_TRUE(mismatch.rejection);
  EXPECT_EQ(mismatch.rejection->code, "version_mismatch");
  EXPECT_EQ(mismatch.version, 3);
  // The right one, or none, is refused until a build that reads the whole history decides it;
  // the refusal is never remembered, so the same command is decided again after the upgrade.
  for (const std::optional<std::int64_t> if_match :
       {std::optional<std::int64_t>(3), std::optional<std::int64_t>()}) {
    auto update = command("contact.update", "contact", kContact, R"({"name":"Ana B"})", "c3");
    update.expected_version = if_match;
    const auto refused = decide(store, update);
    ASSERT_EQ(refused.kind, ReplyOutcome::kRejected);
    ASSERT_TRUE(refused.rejection);
    EXPECT_EQ(refused.rejection->code, "unreadable_history");
    EXPECT_THAT(refused.rejection->message, ::testing::HasSubstr("contact.nicknamed v1"));
    EXPECT_THAT(refused.rejection->message, ::testing::HasSubstr("runs the newer version"));
    EXPECT_EQ(refused.version, 3);
    EXPECT_FALSE(remembers_rejection(update, refused));
  }
  // Other aggregates are decided as usual.
  const auto other = "0195a0c4-4444-7000-8000-000000000004";
  EXPECT_EQ(decide(store, command("contact.register", "contact", other, kRegister, "c4")).kind,
            ReplyOutcome::kApplied);
}

// An event of a type and schema_version this build knows whose data does not fit (written by a
// faulty build, or damaged): no upgrade will read it. The aggregate is handled as for a newer
// build's event (exact version, commands refused), but the refusal and fold() say it is damaged.
TEST(HandlerTest, ADamagedEventOfAKnownTypeIsToldApartFromANewerBuilds) {
  MemoryAggregateStore store;
  const auto registered =
      decide(store, command("contact.register", "contact", kContact, kRegister, "c1"));
  for (const auto& e : event_envelopes(
           command("contact.register", "contact", kContact, kRegister, "c1"), registered)) {
    ASSERT_FALSE(fold(store, e, 0, "h1"));
  }
  auto damaged = newer_event("contact", kContact, 2, "contact.updated", 1, "d1");
  damaged.data = R"({"name":42})";
  const auto unread = fold(store, damaged, 1, "h1");
  ASSERT_TRUE(unread);
  EXPECT_EQ(unread->event, "contact.updated v1");
  EXPECT_FALSE(unread->newer);
  EXPECT_THAT(unread->reason, ::testing::HasSubstr("name"));
  EXPECT_EQ(std::get<contact::State>(*store.find(contact_key(kContact))).version, 2);

  const auto refused =
      decide(store, command("contact.update", "contact", kContact, R"({"name":"B"})", "c2"));
  ASSERT_TRUE(refused.rejection);
  EXPECT_EQ(refused.rejection->code, "unreadable_history");
  EXPECT_THAT(refused.rejection->message, ::testing::HasSubstr("does not fit its schema"));
  EXPECT_THAT(refused.rejection->message, ::testing::Not(::testing::HasSubstr("newer version")));
}

TEST(HandlerTest, ARejectionOfARetriableCommandIsRememberedAndAnsweredAgain) {
  MemoryAggregateStore store;
  // Logging a call on a contact that does not exist yet: 404.
  const auto call = command(
      "contact.log_call", "contact", kContact,
      R"({"call_id":"0195a0c4-2222-7000-8000-000000000002","outcome":"busy"})", "key-1", "h-call");
  const auto first = decide(store, call);
  ASSERT_EQ(first.kind, ReplyOutcome::kRejected);
  ASSERT_EQ(first.rejection->code, "not_found");
  ASSERT_TRUE(remembers_rejection(call, first));
  record(store, call, first);

  // The contact exists now; the same command still answers what it answered.
  const auto reg = command("contact.register", "contact", kContact, kRegister, "key-2");
  record(store, reg, decide(store, reg), 0);
  const auto again = decide(store, call);
  EXPECT_EQ(again.kind, ReplyOutcome::kRejected);
  EXPECT_EQ(again.rejection, first.rejection);
  EXPECT_EQ(again.version, first.version);
  EXPECT_TRUE(again.original);
  EXPECT_TRUE(again.events.empty());
  EXPECT_FALSE(remembers_rejection(call, again)) << "a replay is not remembered twice";

  // The same id with another request is a reused key, whatever the first answer was.
  auto other = call;
  other.request_hash = "h-other";
  EXPECT_EQ(decide(store, other).kind, ReplyOutcome::kKeyReused);
}

TEST(HandlerTest, OnlyStateRejectionsOfCommandsWithAKeyAreRemembered) {
  MemoryAggregateStore store;
  auto archive = command("contact.archive", "contact", kContact, "{}", "key-1");
  const auto not_found = decide(store, archive);
  ASSERT_EQ(not_found.rejection->code, "not_found");
  EXPECT_TRUE(remembers_rejection(archive, not_found));
  // Without an Idempotency-Key the id is a UUIDv7: nobody can retry it, nothing to remember.
  archive.command_id = uuid_v7(1'700'000'000'000);
  EXPECT_FALSE(remembers_rejection(archive, decide(store, archive)));
  // A body the rules refuse is refused again on a retry: not stored.
  const auto bad = command("contact.register", "contact", kContact, R"({"name":7})", "key-2");
  const auto invalid = decide(store, bad);
  ASSERT_EQ(invalid.rejection->code, "invalid");
  EXPECT_FALSE(remembers_rejection(bad, invalid));
  // Applied commands are remembered through their events, not as rejections.
  const auto reg = command("contact.register", "contact", kContact, kRegister, "key-3");
  EXPECT_FALSE(remembers_rejection(reg, decide(store, reg)));
}

// The deadlines' command sent by a clock behind the deadline is refused as too early, and not
// remembered: the same command (its id is the deadline's) is taken once it is due.
TEST(HandlerTest, ATooEarlyDeadlineIsNotRememberedAndIsTakenWhenDue) {
  MemoryAggregateStore store;
  const std::string alert = "0195a0c4-2222-7000-8000-000000000001";
  auto raise = command("alert.raise", "alert", alert, R"({"level":"warning","title":"x"})", "r");
  record(store, raise, decide(store, raise), 0);
  auto miss = command("alert.miss_deadline", "alert", alert,
                      R"({"level":"warning","deadline_at":"2023-11-14T22:13:21.000000Z"})", "d");
  miss.issued_at_us = 1'700'000'000'000'000;  // 2023-11-14T22:13:20Z: a second early
  const auto early = decide(store, miss);
  ASSERT_EQ(early.kind, ReplyOutcome::kRejected);
  EXPECT_EQ(early.rejection->code, "too_early");
  EXPECT_FALSE(remembers_rejection(miss, early));  // so the processor records nothing of it
  miss.issued_at_us += 2'000'000;
  const auto due = decide(store, miss);
  EXPECT_EQ(due.kind, ReplyOutcome::kApplied);
  EXPECT_EQ(due.events.size(), 2u) << "missed, then escalated";
}

TEST(EnvelopeTest, UuidV7CarriesItsTimeAndIsUnique) {
  std::set<std::string> ids;
  for (int i = 0; i < 1000; ++i) ids.insert(uuid_v7(1'700'000'000'000));
  EXPECT_EQ(ids.size(), 1000u);
  const auto id = *ids.begin();
  EXPECT_TRUE(is_uuid(id));
  EXPECT_EQ(id.substr(0, 8), "018bcfe5") << "48-bit ms timestamp first";
  EXPECT_EQ(id[14], '7');
  EXPECT_THAT(std::string(1, id[19]), ::testing::AnyOf("8", "9", "a", "b"));
}

TEST(EnvelopeTest, NameBasedIdsAreStablePerName) {
  EXPECT_EQ(uuid_from_name("key-1"), uuid_from_name("key-1"));
  EXPECT_NE(uuid_from_name("key-1"), uuid_from_name("key-2"));
  EXPECT_TRUE(is_uuid(uuid_from_name("key-1")));
  EXPECT_EQ(uuid_from_name("key-1")[14], '8');
  EXPECT_FALSE(is_uuid("0195A0C4-1111-7000-8000-000000000001")) << "lower case only";
  EXPECT_FALSE(is_uuid("not-a-uuid"));
  EXPECT_TRUE(is_name_based_uuid(uuid_from_name("a")));
  EXPECT_FALSE(is_name_based_uuid(uuid_v7(1'700'000'000'000)));
  EXPECT_FALSE(is_name_based_uuid("not-a-uuid"));
}

TEST(EnvelopeTest, EventsRoundTripAndFitTheEnvelopeSchema) {
  EventEnvelope e;
  e.event_id = uuid_v7(1'700'000'000'000);
  e.type = "alert.raised";
  e.aggregate_type = "alert";
  e.aggregate_id = kContact;
  e.version = 1;
  e.occurred_at_us = 1'700'000'000'123'456;
  e.command_id = "0195a0c4-3333-7000-8000-000000000003";
  e.correlation_id = "corr";
  e.causation_id = e.command_id;
  e.actor = "tester";
  e.data = R"({"level":"info","title":"t"})";
  const auto json = to_json(e);
  EXPECT_THAT(json, ::testing::HasSubstr(R"("occurred_at":"2023-11-14T22:13:20.123456Z")"));
  EXPECT_EQ(SchemaRegistry::instance().validate_json("envelope.v1", json), std::nullopt);
  const auto back = event_from_json(json);
  EXPECT_EQ(back.occurred_at_us, e.occurred_at_us);
  EXPECT_EQ(back.data, e.data);
  EXPECT_EQ(to_json(back), json);
}

// The trace (issue 18, part 6): an optional field of both wire forms, which the events a command
// decides carry; a malformed one reads as none (the processor then starts a trace).
TEST(EnvelopeTest, TheTraceRoundTripsAndGoesFromTheCommandToItsEvents) {
  const auto trace =
      *core::TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  auto c = command("contact.register", "contact", kContact,
                   R"({"name":"Ana","phone":"+351 912 345 678"})", "c1");
  EXPECT_THAT(to_json(c), ::testing::Not(::testing::HasSubstr("trace_parent")));
  EXPECT_TRUE(command_from_json(to_json(c)).trace_parent.empty());
  c.trace_parent = trace;
  const auto json = to_json(c);
  EXPECT_THAT(json, ::testing::HasSubstr(R"("trace_parent":")" + std::string(trace.text()) + '"'));
  EXPECT_EQ(command_from_json(json).trace_parent, trace);

  MemoryAggregateStore store;
  const auto out = decide(store, c);
  ASSERT_EQ(out.kind, ReplyOutcome::kApplied);
  const auto events = event_envelopes(c, out);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].trace_parent, trace);
  const auto event_json = to_json(events[0]);
  EXPECT_EQ(SchemaRegistry::instance().validate_json("envelope.v1", event_json), std::nullopt);
  EXPECT_EQ(event_from_json(event_json).trace_parent, trace);

  // Malformed on the wire: no trace, and the envelope's schema refuses it.
  std::string bad = event_json;
  bad.replace(bad.find("00-4bf9"), 2, "ff");
  EXPECT_TRUE(event_from_json(bad).trace_parent.empty());
  EXPECT_NE(SchemaRegistry::instance().validate_json("envelope.v1", bad), std::nullopt);
}

TEST(EnvelopeTest, RepliesAndCommandsRoundTrip) {
  Reply r;
  r.command_id = "c";
  r.outcome = ReplyOutcome::kRejected;
  r.aggregate_id = kContact;
  r.version = 4;
  r.rejection = Rejection{"version_mismatch", "If-Match", "the contact is at version 4"};
  const auto back = reply_from_json(to_json(r));
  EXPECT_EQ(back.outcome, ReplyOutcome::kRejected);
  EXPECT_EQ(back.rejection, r.rejection);
  EXPECT_EQ(back.version, 4);
  EXPECT_FALSE(back.replayed);
  r.replayed = true;
  EXPECT_TRUE(reply_from_json(to_json(r)).replayed);

  auto c = command("contact.update", "contact", kContact, R"({"name":"B"})", "c9");
  c.expected_version = 3;
  const auto cb = command_from_json(to_json(c));
  EXPECT_EQ(cb.expected_version, std::optional<std::int64_t>(3));
  EXPECT_EQ(cb.data, c.data);
  EXPECT_THROW(command_from_json(R"({"type":"x"})"), std::invalid_argument);
  EXPECT_THROW(event_from_json("not json"), std::invalid_argument);
}

}  // namespace
}  // namespace cauce::commands
