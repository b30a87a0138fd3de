#include <gtest/gtest.h>

#include <cauce/commands/handler.hpp>
#include <cauce/commands/schemas.hpp>
#include <cauce/commands/upcast.hpp>

namespace cauce::commands {
namespace {

EventEnvelope call_logged_v1() {
  EventEnvelope e;
  e.event_id = "0190a1b2-0000-7000-8000-000000000001";
  e.type = "contact.call_logged";
  e.schema_version = 1;
  e.aggregate_type = "contact";
  e.aggregate_id = "0190a1b2-0000-7000-8000-0000000000aa";
  e.version = 2;
  e.command_id = "0190a1b2-0000-7000-8000-0000000000c1";
  e.data = R"({"call_id":"0190a1b2-0000-7000-8000-0000000000ca","outcome":"answered",)"
           R"("duration_s":61,"operator":"op7","called_at_us":1764000000123456})";
  return e;
}

TEST(UpcastTest, CallLoggedV1BecomesV2WithAnRfc3339Time) {
  auto e = call_logged_v1();
  ASSERT_FALSE(SchemaRegistry::instance().validate_json("contact.call_logged.v1", e.data));
  upcast(e);
  EXPECT_EQ(e.schema_version, 2);
  EXPECT_EQ(e.data,
            R"({"call_id":"0190a1b2-0000-7000-8000-0000000000ca","outcome":"answered",)"
            R"("duration_s":61,"operator":"op7","called_at":"2025-11-24T16:00:00.123456Z"})");
  EXPECT_FALSE(SchemaRegistry::instance().validate_json("contact.call_logged.v2", e.data));
}

TEST(UpcastTest, CurrentVersionsAndUnchangedTypesAreLeftAlone) {
  auto e = call_logged_v1();
  upcast(e);
  const auto once = e.data;
  upcast(e);  // already v2
  EXPECT_EQ(e.data, once);
  EventEnvelope raised;
  raised.type = "alert.raised";
  raised.data = R"({"level":"info","title":"x"})";
  upcast(raised);
  EXPECT_EQ(raised.schema_version, 1);
  EXPECT_EQ(raised.data, R"({"level":"info","title":"x"})");
  EXPECT_EQ(current_schema_version("contact.call_logged"), 2);
  EXPECT_EQ(current_schema_version("contact.registered"), 1);
}

TEST(UpcastTest, UnknownVersionsAndUnreadableDataAreErrors) {
  auto future = call_logged_v1();
  future.schema_version = 3;
  EXPECT_THROW(upcast(future), std::invalid_argument);
  auto broken = call_logged_v1();
  broken.data = R"({"call_id":"x","outcome":"busy","duration_s":1})";
  EXPECT_THROW(upcast(broken), std::invalid_argument);
}

TEST(UpcastTest, FoldReadsAV1EventFromAnOldLog) {
  MemoryAggregateStore store;
  EventEnvelope registered;
  registered.type = "contact.registered";
  registered.aggregate_type = "contact";
  registered.aggregate_id = call_logged_v1().aggregate_id;
  registered.version = 1;
  registered.command_id = "0190a1b2-0000-7000-8000-0000000000c0";
  registered.data = R"({"name":"Ada","phone":"+442079460958","tags":[]})";
  fold(store, registered, 0, "h0");
  fold(store, call_logged_v1(), 1, "h1");
  const auto* state = std::get_if<contact::State>(
      store.find(AggregateKey{*Uuid::parse(registered.aggregate_id), AggregateType::kContact}));
  ASSERT_NE(state, nullptr);
  EXPECT_EQ(state->version, 2);
  EXPECT_EQ(state->calls_count, 1);
  ASSERT_TRUE(store.find_command(*Uuid::parse(call_logged_v1().command_id)));
  EXPECT_EQ(store.find_command(*Uuid::parse(call_logged_v1().command_id))->offset, 1);
}

}  // namespace
}  // namespace cauce::commands
