#include <cauce/commands/contact.hpp>

#include "given_when_then.hpp"

namespace cauce::commands::contact {
namespace {

using commands::testing::at;
using commands::testing::then_events;
using commands::testing::then_rejected;

const Registered kAda{"Ada Lovelace", "+442079460958", "ada@example.org", {"vip"}, std::nullopt};

State given(std::vector<Event> events) { return commands::testing::given<State, Event>(events); }

TEST(ContactTest, RegisterNormalisesThePhoneToE164) {
  const auto events = then_events(decide(
      State{}, Register{"  Ada Lovelace ", "+44 (20) 7946-0958", "ada@example.org", {"vip"}, {}},
      at()));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(std::get<Registered>(events[0]), kAda);
  EXPECT_EQ(
      std::get<Registered>(
          then_events(decide(State{}, Register{"B", "0044 20 7946 0958", {}, {}, {}}, at()))[0])
          .phone,
      "+442079460958");
}

TEST(ContactTest, RegisterRefusesBadFieldsNamingThem) {
  EXPECT_EQ(then_rejected(decide(State{}, Register{"", "+442079460958", {}, {}, {}}, at())).field,
            "name");
  for (const auto* phone : {"020 7946 0958", "+44 abc", "+1234", "+1234567890123456", ""}) {
    const auto r = then_rejected(decide(State{}, Register{"A", phone, {}, {}, {}}, at()));
    EXPECT_EQ(r.code, "invalid") << phone;
    EXPECT_EQ(r.field, "phone") << phone;
  }
  for (const auto* email : {"nobody", "a@b", "@example.org", "a b@example.org", "a@@example.org"}) {
    EXPECT_EQ(
        then_rejected(decide(State{}, Register{"A", "+442079460958", email, {}, {}}, at())).field,
        "email")
        << email;
  }
  EXPECT_EQ(
      then_rejected(
          decide(State{}, Register{"A", "+442079460958", {}, std::vector<std::string>(21, "t"), {}},
                 at()))
          .field,
      "tags");
  EXPECT_EQ(
      then_rejected(
          decide(State{}, Register{"A", "+442079460958", {}, {std::string(51, 't')}, {}}, at()))
          .field,
      "tags");
  EXPECT_EQ(then_rejected(decide(State{}, Register{"A", "+442079460958", {}, {"a", "a"}, {}}, at()))
                .field,
            "tags");
  EXPECT_EQ(
      then_rejected(
          decide(State{}, Register{"A", "+442079460958", {}, {}, std::string(4097, 'n')}, at()))
          .field,
      "notes");
  EXPECT_TRUE(std::holds_alternative<std::vector<Event>>(decide(
      State{},
      Register{
          "A", "+442079460958", {}, std::vector<std::string>{"a", "b"}, std::string(4096, 'n')},
      at())));
}

// Limits count characters, as the schemas' maxLength does: a name of 200 accented letters (400
// bytes of UTF-8) is a name of 200 characters (schemathesis found the byte count).
TEST(ContactTest, LengthLimitsCountCharactersNotBytes) {
  std::string name;
  for (int i = 0; i < 200; ++i) name += "\u00e9";
  EXPECT_EQ(then_events(decide(State{}, Register{name, "+442079460958", {}, {}, {}}, at())).size(),
            1u);
  const auto refused =
      then_rejected(decide(State{}, Register{name + "e", "+442079460958", {}, {}, {}}, at()));
  EXPECT_EQ(refused.field, "name");
  EXPECT_EQ(refused.message, "must be at most 200 characters");
}

TEST(ContactTest, RegisteringAnExistingContactIsAlreadyExists) {
  EXPECT_EQ(
      then_rejected(decide(given({kAda}), Register{"A", "+442079460958", {}, {}, {}}, at())).code,
      "already_exists");
}

TEST(ContactTest, UpdateEmitsOnlyWhatChanged) {
  Update update;
  update.name = "Ada King";
  update.phone = "+44 20 7946 0958";  // same number, other spelling: not a change
  const auto events = then_events(decide(given({kAda}), update, at()));
  ASSERT_EQ(events.size(), 1u);
  const auto& e = std::get<Updated>(events[0]);
  EXPECT_EQ(e.name, "Ada King");
  EXPECT_FALSE(e.phone);
  Update same;
  same.name = "Ada Lovelace";
  EXPECT_TRUE(then_events(decide(given({kAda}), same, at())).empty());
  EXPECT_EQ(then_rejected(decide(given({kAda}), Update{}, at())).field, "body");
}

TEST(ContactTest, CommandsOnAMissingContactAreNotFound) {
  EXPECT_EQ(then_rejected(decide(State{}, Update{.name = "x"}, at())).code, "not_found");
  EXPECT_EQ(then_rejected(decide(State{}, LogCall{"c1", "answered", 10, {}, {}}, at())).code,
            "not_found");
  EXPECT_EQ(then_rejected(decide(State{}, Assign{"op"}, at())).code, "not_found");
  EXPECT_EQ(then_rejected(decide(State{}, Archive{}, at())).code, "not_found");
}

TEST(ContactTest, IfMatchMustMatchTheVersion) {
  const auto state = given({kAda, Assigned{"op1", {}}});  // version 2
  EXPECT_EQ(state.version, 2);
  const auto r = then_rejected(decide(state, Update{.name = "x"}, at(1, 1)));
  EXPECT_EQ(r.code, "version_mismatch");
  EXPECT_EQ(r.field, "If-Match");
  EXPECT_EQ(then_events(decide(state, Update{.name = "x"}, at(1, 2))).size(), 1u);
}

TEST(ContactTest, LogCallCountsAndStampsTheCommandTime) {
  const auto events = then_events(
      decide(given({kAda}), LogCall{"c1", "voicemail", 42, "left msg", "op7"}, at(123)));
  ASSERT_EQ(events.size(), 1u);
  const auto& e = std::get<CallLogged>(events[0]);
  EXPECT_EQ(e.called_at_us, 123);
  EXPECT_EQ(e.call_id, "c1");
  const auto state = given({kAda, e, e});
  EXPECT_EQ(state.calls_count, 2);
  EXPECT_EQ(then_rejected(decide(given({kAda}), LogCall{"c", "hung_up", 1, {}, {}}, at())).field,
            "outcome");
  EXPECT_EQ(then_rejected(decide(given({kAda}), LogCall{"c", "busy", -1, {}, {}}, at())).field,
            "duration_s");
  EXPECT_EQ(then_rejected(decide(given({kAda}), LogCall{"c", "busy", 86401, {}, {}}, at())).field,
            "duration_s");
  EXPECT_EQ(
      then_rejected(decide(given({kAda}), LogCall{"c", "busy", 1, {}, std::string(101, 'o')}, at()))
          .field,
      "operator");
}

TEST(ContactTest, AssignRecordsThePreviousOperatorAndIgnoresNoChange) {
  const auto events = then_events(decide(given({kAda, Assigned{"op1", {}}}), Assign{"op2"}, at()));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(std::get<Assigned>(events[0]), (Assigned{"op2", "op1"}));
  EXPECT_TRUE(then_events(decide(given({kAda, Assigned{"op1", {}}}), Assign{"op1"}, at())).empty());
  EXPECT_EQ(then_rejected(decide(given({kAda}), Assign{" "}, at())).field, "operator");
}

TEST(ContactTest, ArchivedIsTerminal) {
  const auto archived = given({kAda, Archived{"moved away"}});
  EXPECT_TRUE(archived.archived);
  for (const auto& r : {then_rejected(decide(archived, Update{.name = "x"}, at())),
                        then_rejected(decide(archived, LogCall{"c", "busy", 1, {}, {}}, at())),
                        then_rejected(decide(archived, Assign{"op"}, at())),
                        then_rejected(decide(archived, Archive{}, at()))}) {
    EXPECT_EQ(r.code, "conflict");
  }
}

constexpr std::int64_t kNow = 1'700'000'000'000'000;
constexpr std::int64_t kSecond = 1'000'000;

TEST(ContactTest, AClaimLastsTtlFromTheCommandsTimeAndNamesTheCaller) {
  const auto events = then_events(decide(given({kAda}), Claim{120}, at(kNow, {}, "ada")));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(std::get<Claimed>(events[0]), (Claimed{"ada", kNow + 120 * kSecond}));
  EXPECT_EQ(
      std::get<Claimed>(then_events(decide(given({kAda}), Claim{}, at(kNow)))[0]).claimed_until_us,
      kNow + 300 * kSecond)
      << "300 s by default";
  for (const std::int64_t ttl : {0LL, -1LL, 3601LL, 1'000'000'000LL}) {
    EXPECT_EQ(then_rejected(decide(given({kAda}), Claim{ttl}, at(kNow))).field, "ttl_s") << ttl;
  }
}

TEST(ContactTest, AnotherHoldersLiveClaimIsAConflictNamingHolderAndEnd) {
  const auto held = given({kAda, Claimed{"ada", kNow + 60 * kSecond}});
  const auto r = then_rejected(decide(held, Claim{}, at(kNow + 59 * kSecond, {}, "bob")));
  EXPECT_EQ(r.code, "conflict");
  EXPECT_EQ(r.field, "claimed_by");
  EXPECT_NE(r.message.find("ada"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("2023-11-14T22:14:20.000000Z"), std::string::npos) << r.message;
  // The holder renews: a new end from the renewal's time.
  EXPECT_EQ(
      std::get<Claimed>(then_events(decide(held, Claim{600}, at(kNow + kSecond, {}, "ada")))[0]),
      (Claimed{"ada", kNow + 601 * kSecond}));
}

TEST(ContactTest, AClaimLapsesByItselfOnceACommandsTimeReachesItsEnd) {
  const auto held = given({kAda, Claimed{"ada", kNow + 60 * kSecond}});
  EXPECT_TRUE(held.claimed_at(kNow + 60 * kSecond - 1));
  EXPECT_FALSE(held.claimed_at(kNow + 60 * kSecond));
  const auto taken = then_events(decide(held, Claim{}, at(kNow + 60 * kSecond, {}, "bob")));
  EXPECT_EQ(std::get<Claimed>(taken[0]).claimed_by, "bob");
}

TEST(ContactTest, OnlyTheHolderReleasesAndALapsedClaimHasNothingToRelease) {
  const auto held = given({kAda, Claimed{"ada", kNow + 60 * kSecond}});
  EXPECT_EQ(then_rejected(decide(held, Release{}, at(kNow, {}, "bob"))).code, "conflict");
  EXPECT_EQ(then_events(decide(held, Release{}, at(kNow, {}, "ada")))[0], Event{Released{"ada"}});
  EXPECT_TRUE(then_events(decide(held, Release{}, at(kNow + 61 * kSecond, {}, "bob"))).empty());
  const auto released = evolve(held, Released{"ada"});
  EXPECT_FALSE(released.claimed_at(kNow));
  EXPECT_TRUE(then_events(decide(released, Release{}, at(kNow, {}, "ada"))).empty());
  // Then anyone may claim it.
  EXPECT_EQ(
      std::get<Claimed>(then_events(decide(released, Claim{}, at(kNow, {}, "bob")))[0]).claimed_by,
      "bob");
}

TEST(ContactTest, ArchivingRecordsTheLiveClaimItEnds) {
  const auto held = given({kAda, Claimed{"ada", kNow + 60 * kSecond}});
  EXPECT_EQ(then_events(decide(held, Archive{"gone"}, at(kNow, {}, "bob")))[0],
            Event{(Archived{"gone", "ada"})});
  // A lapsed claim ends nothing.
  EXPECT_EQ(then_events(decide(held, Archive{}, at(kNow + 60 * kSecond, {}, "bob")))[0],
            Event{Archived{}});
  const auto archived = evolve(held, Archived{{}, "ada"});
  EXPECT_FALSE(archived.claimed_at(kNow));
}

TEST(ContactTest, ClaimsNeedALiveContact) {
  EXPECT_EQ(then_rejected(decide(State{}, Claim{}, at())).code, "not_found");
  const auto archived = given({kAda, Archived{}});
  EXPECT_EQ(then_rejected(decide(archived, Claim{}, at())).code, "conflict");
  EXPECT_EQ(then_rejected(decide(archived, Release{}, at())).code, "conflict");
  EXPECT_EQ(then_rejected(decide(given({kAda}), Claim{}, at(kNow, 7))).code, "version_mismatch");
}

TEST(ContactTest, EveryEventRoundTripsThroughItsJson) {
  const std::vector<Event> events = {kAda,
                                     Updated{"n", {}, {}, std::vector<std::string>{"a"}, "x"},
                                     CallLogged{"c1", "busy", 3, {}, "op", 99},
                                     Assigned{"op", "old"},
                                     Archived{},
                                     Archived{"moved", "ada"},
                                     Claimed{"ada", 1'700'000'300'000'000},
                                     Released{"ada"}};
  for (const auto& e : events) {
    EXPECT_EQ(event_from_json(event_type(e), to_json(e)), e) << to_json(e);
  }
  EXPECT_THROW(event_from_json("contact.exploded", "{}"), std::invalid_argument);
  EXPECT_THROW(event_from_json("contact.registered", "{\"name\": 1}"), std::invalid_argument);
}

}  // namespace
}  // namespace cauce::commands::contact
