// Contact claims (issue 16, part 1) on the real `cauce serve`: operators racing for one contact,
// a claim that lapses with no timer, release by the holder only, `?claimable=true`, bad input.
// Each operator is an API key of its own; its name is the holder the claims record.
#include <barrier>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cauce/core/log.hpp>

#include "event_log.hpp"
#include "served.hpp"

namespace cauce::testing {
namespace {

namespace beast_http = boost::beast::http;
using ::testing::HasSubstr;

class ClaimsTest : public ServedTest {
 protected:
  void SetUp() override {
    settings["CAUCE_HTTP_RATE_LIMIT_OPERATOR"] = "0";
    ServedTest::SetUp();
    serve();
    const auto created =
        post("/v1/contacts", R"({"name":"Ada","phone":"+44 20 7946 0958"})", admin_);
    ASSERT_EQ(created.status, 201u) << created.body;
    contact_ = json_member(created.body, "id");
  }

  // An operator key named `name`.
  std::string operator_key(const std::string& name) const {
    const auto r = post("/v1/keys", R"({"name":")" + name + R"(","role":"operator"})", admin_);
    EXPECT_EQ(r.status, 201u) << r.body;
    return json_member(r.body, "key");
  }

  HttpResult post(const std::string& target, const std::string& body,
                  const std::string& key) const {
    return call(beast_http::verb::post, target, body, key);
  }

  HttpResult claim(const std::string& key, const std::string& body = "") const {
    return post("/v1/contacts/" + contact_ + "/claim", body, key);
  }

  bool listed_as_claimable() const {
    return get("/v1/contacts?claimable=true").body.find(contact_) != std::string::npos;
  }

  std::string contact_;
};

TEST_F(ClaimsTest, TwentyOperatorsRacingForOneContactExactlyOneWins) {
  constexpr int kOperators = 20;
  std::vector<std::string> keys;
  for (int i = 0; i < kOperators; ++i) keys.push_back(operator_key("op" + std::to_string(i)));
  std::vector<HttpResult> answers(kOperators);
  std::barrier start(kOperators);
  std::vector<std::thread> threads;
  for (int i = 0; i < kOperators; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      answers[i] = claim(keys[i], R"({"ttl_s":600})");
    });
  }
  for (auto& t : threads) t.join();

  std::vector<int> winners;
  for (int i = 0; i < kOperators; ++i) {
    if (answers[i].status == 200) winners.push_back(i);
  }
  ASSERT_EQ(winners.size(), 1u) << "one claim wins";
  const auto& won = answers[winners[0]];
  const auto winner = "op" + std::to_string(winners[0]);
  EXPECT_EQ(json_member(won.body, "claimed_by"), winner);
  const auto until = json_member(won.body, "claimed_until");
  for (int i = 0; i < kOperators; ++i) {
    if (i == winners[0]) continue;
    EXPECT_EQ(answers[i].status, 409u) << answers[i].body;
    EXPECT_EQ(answers[i].headers["content-type"], "application/problem+json");
    EXPECT_THAT(answers[i].body, HasSubstr("claimed by " + winner + " until " + until));
    EXPECT_THAT(answers[i].body, HasSubstr(R"("field":"claimed_by")"));
  }
  // The read model shows the claim; the log holds one claim, valid against its schema.
  const auto contact = get("/v1/contacts/" + contact_, won.headers.at("cauce-position"));
  EXPECT_EQ(json_member(contact.body, "claimed_by"), winner) << contact.body;
  EXPECT_EQ(json_member(contact.body, "claimed_until"), until);
  EXPECT_FALSE(listed_as_claimable());
  const auto events = read_event_log(kafka_);
  EXPECT_THAT(schema_problems(events), ::testing::IsEmpty());
  const auto claims = std::count_if(events.begin(), events.end(), [](const LoggedEvent& e) {
    return e.envelope.type == "contact.claimed";
  });
  EXPECT_EQ(claims, 1);
}

TEST_F(ClaimsTest, AClaimLapsesWithNoTimerAndOnlyItsHolderReleasesIt) {
  const auto ada = operator_key("ada");
  const auto bob = operator_key("bob");
  EXPECT_TRUE(eventually([&] { return listed_as_claimable(); }));

  const auto held = claim(ada, R"({"ttl_s":3})");
  ASSERT_EQ(held.status, 200u) << held.body;
  EXPECT_EQ(json_member(held.body, "claimed_by"), "ada");
  const auto until_us = core::parse_utc_micros(json_member(held.body, "claimed_until"));
  EXPECT_EQ(claim(bob).status, 409u) << "ada's claim is live";

  // Nothing runs when the second passes: the next command's time is simply past the end.
  std::this_thread::sleep_until(
      std::chrono::system_clock::time_point(std::chrono::microseconds(until_us)) + 50ms);
  EXPECT_TRUE(listed_as_claimable()) << "a lapsed claim leaves the contact claimable";
  const auto lapsed = get("/v1/contacts/" + contact_, held.headers.at("cauce-position"));
  EXPECT_EQ(json_member(lapsed.body, "claimed_by"), "null") << lapsed.body;
  const auto taken = claim(bob, R"({"ttl_s":600})");
  ASSERT_EQ(taken.status, 200u) << taken.body;
  EXPECT_EQ(json_member(taken.body, "claimed_by"), "bob");

  // ada (no longer the holder) cannot release it; bob renews, then releases.
  const auto refused = post("/v1/contacts/" + contact_ + "/release", "", ada);
  EXPECT_EQ(refused.status, 409u) << refused.body;
  EXPECT_THAT(refused.body, HasSubstr("claimed by bob"));
  EXPECT_EQ(claim(bob, R"({"ttl_s":900})").status, 200u);
  const auto released = post("/v1/contacts/" + contact_ + "/release", "", bob);
  ASSERT_EQ(released.status, 200u) << released.body;
  const auto free = get("/v1/contacts/" + contact_, released.headers.at("cauce-position"));
  EXPECT_EQ(json_member(free.body, "claimed_by"), "null") << free.body;
  EXPECT_EQ(json_member(free.body, "claimed_until"), "null");
  EXPECT_TRUE(listed_as_claimable());
  // Releasing again changes nothing.
  const auto again = post("/v1/contacts/" + contact_ + "/release", "", bob);
  EXPECT_EQ(again.status, 200u);
  EXPECT_EQ(json_member(again.body, "version"), json_member(released.body, "version"));

  const auto events = read_event_log(kafka_);
  EXPECT_THAT(schema_problems(events), ::testing::IsEmpty());
  std::vector<std::string> claim_events;
  for (const auto& e : events) {
    if (e.envelope.type == "contact.claimed" || e.envelope.type == "contact.released") {
      claim_events.push_back(e.envelope.type + " " + e.envelope.actor);
    }
  }
  EXPECT_THAT(claim_events, ::testing::ElementsAre("contact.claimed ada", "contact.claimed bob",
                                                   "contact.claimed bob", "contact.released bob"));
}

TEST_F(ClaimsTest, BadClaimsAreRefusedNamingTheFieldAndChangeNothing) {
  const auto ada = operator_key("ada");
  for (const auto* body : {R"({"ttl_s":0})", R"({"ttl_s":1000000000})", R"({"ttl_s":"60"})",
                           R"({"ttl_s":1.5})", R"({"ttl_s":-5})"}) {
    const auto r = claim(ada, body);
    EXPECT_EQ(r.status, 400u) << body << " " << r.body;
    EXPECT_THAT(r.body, HasSubstr(R"("field":"ttl_s")")) << body;
  }
  const auto unknown = claim(ada, R"({"holder":"mallory"})");
  EXPECT_EQ(unknown.status, 400u);
  EXPECT_THAT(unknown.body, HasSubstr(R"("field":"holder")"));
  const auto missing = post("/v1/contacts/01a24587-a6a8-7963-9e29-c0f42d654002/claim", "", ada);
  EXPECT_EQ(missing.status, 404u) << missing.body;
  const auto reader = post("/v1/keys", R"({"name":"watcher","role":"reader"})", admin_);
  EXPECT_EQ(claim(json_member(reader.body, "key")).status, 403u) << "claims are an operator's";
  // Nothing of it reached the log: the contact is still at version 1, unclaimed.
  const auto events = read_event_log(kafka_);
  EXPECT_EQ(events.size(), 1u);
  HttpResult contact;
  ASSERT_TRUE(eventually([&] {  // the registration may not be projected yet
    contact = get("/v1/contacts/" + contact_);
    return contact.status == 200;
  })) << contact.body;
  EXPECT_EQ(json_member(contact.body, "version"), "1");
  EXPECT_EQ(json_member(contact.body, "claimed_by"), "null");
}

}  // namespace
}  // namespace cauce::testing
