// The Webhook aggregate given/when/then, and its commands and events through the handler, the
// wire form and the schemas (the secret is never part of either).
#include <cauce/commands/handler.hpp>
#include <cauce/commands/schemas.hpp>
#include <cauce/commands/webhook.hpp>

#include "given_when_then.hpp"

namespace cauce::commands::webhook {
namespace {

using commands::testing::at;
using commands::testing::then_events;
using commands::testing::then_rejected;

const Registered kAlertsHook{"https://hooks.example.com/cauce",
                             {"alerts", "contacts"},
                             Filters{"warning", std::vector<std::string>{"north"}, "alice"}};
const Disabled kTooManyFailures{"10 deliveries in a row failed", 10, "HTTP 500"};

State given(std::vector<Event> events) { return commands::testing::given<State, Event>(events); }

Register registration(std::string url, std::vector<std::string> topics, Filters filters = {}) {
  return Register{std::move(url), std::move(topics), std::move(filters)};
}

TEST(WebhookTest, RegisterTakesAnHttpUrlKnownTopicsAndFiltersOnThem) {
  const auto events = then_events(decide(
      State{}, registration(kAlertsHook.url, kAlertsHook.topics, kAlertsHook.filters), at()));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(std::get<Registered>(events[0]), kAlertsHook);
  EXPECT_EQ(then_rejected(decide(State{}, registration("ftp://x.example", {"alerts"}), at())).field,
            "url");
  EXPECT_EQ(then_rejected(decide(State{}, registration("https://x.example", {}), at())).field,
            "topics");
  const auto unknown = then_rejected(decide(State{}, registration("https://x", {"stats"}), at()));
  EXPECT_EQ(unknown.field, "topics");
  EXPECT_EQ(unknown.code, "invalid");
  EXPECT_EQ(
      then_rejected(decide(State{}, registration("https://x", {"alerts", "alerts"}), at())).field,
      "topics");
  // A filter on a topic the webhook does not take names the filter.
  EXPECT_EQ(
      then_rejected(
          decide(State{}, registration("https://x", {"contacts"}, {"critical", {}, {}}), at()))
          .field,
      "filters.min_level");
  EXPECT_EQ(then_rejected(decide(State{},
                                 registration("https://x", {"reports"},
                                              {{}, std::vector<std::string>{"north"}, {}}),
                                 at()))
                .field,
            "filters.region");
  EXPECT_EQ(
      then_rejected(decide(State{}, registration("https://x", {"alerts"}, {{}, {}, "bob"}), at()))
          .field,
      "filters.assigned_to");
  EXPECT_EQ(
      then_rejected(decide(State{}, registration("https://x", {"alerts"}, {"panic", {}, {}}), at()))
          .field,
      "filters.min_level");
  EXPECT_EQ(then_rejected(decide(State{},
                                 registration("https://x", {"alerts"},
                                              {{}, std::vector<std::string>{"a", "a"}, {}}),
                                 at()))
                .field,
            "filters.region");
  EXPECT_EQ(
      then_rejected(decide(State{}, registration("https://x", {"contacts"}, {{}, {}, " "}), at()))
          .field,
      "filters.assigned_to");
  EXPECT_EQ(
      then_rejected(decide(given({kAlertsHook}), registration("https://x", {"alerts"}), at())).code,
      "already_exists");
}

TEST(WebhookTest, DisabledOnceThenEnabledByAnAdmin) {
  const auto active = given({kAlertsHook});
  EXPECT_EQ(active.status, Status::kActive);
  const auto events = then_events(
      decide(active, Disable{"10 deliveries in a row failed", 10, std::string("HTTP 500")}, at()));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(std::get<Disabled>(events[0]), kTooManyFailures);
  const auto disabled = given({kAlertsHook, kTooManyFailures});
  EXPECT_EQ(disabled.status, Status::kDisabled);
  EXPECT_EQ(then_rejected(decide(disabled, Disable{"again", 11, {}}, at())).code, "conflict");
  EXPECT_EQ(then_rejected(decide(active, Enable{}, at())).code, "conflict");
  EXPECT_EQ(then_rejected(decide(disabled, Enable{}, at(1, 1))).code, "version_mismatch");
  EXPECT_EQ(then_events(decide(disabled, Enable{}, at(1, 2))).size(), 1u);
  EXPECT_EQ(given({kAlertsHook, kTooManyFailures, Enabled{}}).status, Status::kActive);
  EXPECT_EQ(then_rejected(decide(State{}, Enable{}, at())).code, "not_found");
  EXPECT_EQ(then_rejected(decide(State{}, Disable{"x", 1, {}}, at())).code, "not_found");
}

TEST(WebhookTest, EventsRoundTripAndFitTheirSchemas) {
  const auto& schemas = SchemaRegistry::instance();
  for (const Event& e : std::vector<Event>{kAlertsHook, kTooManyFailures, Enabled{},
                                           Registered{"http://h", {"reports"}, {}}}) {
    const auto json = to_json(e);
    EXPECT_EQ(event_from_json(event_type(e), json), e) << json;
    EXPECT_EQ(schemas.validate_json(event_type(e) + ".v1", json), std::nullopt) << json;
    EXPECT_EQ(json.find("secret"), std::string::npos);
  }
  EXPECT_EQ(to_json(Registered{"http://h", {"reports"}, {}}),
            R"({"url":"http://h","topics":["reports"],"filters":{}})");
  // The body schema holds the same rules for what it can spell.
  const auto field = [&](std::string_view body) {
    const auto v = schemas.validate_json("webhook.register.v1", body);
    return v ? v->field : "<valid>";
  };
  EXPECT_EQ(field(R"({"url":"https://h.example/x","topics":["alerts"],
                      "filters":{"min_level":"warning","region":["n"]}})"),
            "<valid>");
  EXPECT_EQ(field(R"({"url":"gopher://h","topics":["alerts"]})"), "url");
  EXPECT_EQ(field(R"({"url":"https://h","topics":["stats"]})"), "topics[0]");
  EXPECT_EQ(field(R"({"url":"https://h","topics":[]})"), "topics");
  EXPECT_EQ(field(R"({"url":"https://h","topics":["alerts"],"secret":"x"})"), "secret");
  EXPECT_EQ(field(R"({"url":"https://h","topics":["alerts"],"filters":{"min_level":"panic"}})"),
            "filters.min_level");
  EXPECT_EQ(field(R"({"url":"https://h","topics":["contacts"],"filters":{"assigned_to":"  "}})"),
            "filters.assigned_to");
}

TEST(WebhookTest, TheHandlerRoutesWebhookCommandsAndFoldsTheirEvents) {
  MemoryAggregateStore store;
  CommandEnvelope c;
  c.command_id = uuid_from_name("webhook test register");
  c.type = "webhook.register";
  c.aggregate_type = "webhook";
  c.aggregate_id = uuid_from_name("webhook test id");
  c.issued_at_us = 1'700'000'000'000'000;
  c.actor = "admin";
  c.correlation_id = "corr";
  c.request_hash = "h";
  c.data = R"({"url":"https://h.example","topics":["alerts"],"filters":{"min_level":"critical"}})";
  const auto out = decide(store, c);
  ASSERT_EQ(out.kind, ReplyOutcome::kApplied);
  ASSERT_EQ(out.events.size(), 1u);
  EXPECT_EQ(out.events[0].type, "webhook.registered");
  const auto envelopes = event_envelopes(c, out);
  MemoryAggregateStore rebuilt;
  fold(rebuilt, envelopes[0], 0, "h");
  const auto* state = std::get_if<State>(
      rebuilt.find(AggregateKey{*Uuid::parse(c.aggregate_id), AggregateType::kWebhook}));
  ASSERT_NE(state, nullptr);
  EXPECT_TRUE(state->exists);
  record(store, c, out);
  auto disable = c;
  disable.command_id = uuid_from_name("webhook test disable");
  disable.type = "webhook.disable";
  disable.data = R"({"reason":"failing","consecutive_failures":3})";
  const auto off = decide(store, disable);
  ASSERT_EQ(off.kind, ReplyOutcome::kApplied);
  EXPECT_EQ(off.version, 2);
  auto bad = c;
  bad.command_id = uuid_from_name("webhook test bad");
  bad.aggregate_id = uuid_from_name("another webhook");
  bad.data = R"({"url":"https://h.example","topics":["stats"]})";
  const auto refused = decide(store, bad);
  ASSERT_EQ(refused.kind, ReplyOutcome::kRejected);
  EXPECT_EQ(refused.rejection->field, "topics");
}

}  // namespace
}  // namespace cauce::commands::webhook
