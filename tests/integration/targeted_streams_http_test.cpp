// Who is who, and targeted streams (issue 16, part 6) on the real `cauce serve`: a key's actor is
// what its commands record; a key limited to topics or regions is refused the others and never
// receives them; streams filter on the server by level, region and "assigned to me", over SSE and
// WebSocket, and a resume with Last-Event-ID keeps the filtered view gapless.
#include <utility>  // before Boost: asio/awaitable.hpp (1.74) uses std::exchange unincluded

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "served.hpp"
#include "sse_client.hpp"

namespace cauce::testing {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace beast_http = boost::beast::http;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

// One notification as a test compares it: "<event type> <aggregate id>".
std::vector<std::string> seen(const std::vector<SseEvent>& events) {
  std::vector<std::string> out;
  for (const auto& e : events) {
    out.push_back(json_member(e.data, "type") + " " + json_member(e.data, "id"));
  }
  return out;
}

class TargetedStreamsTest : public ServedTest {
 protected:
  void SetUp() override {
    settings["CAUCE_HTTP_RATE_LIMIT_OPERATOR"] = "0";
    settings["CAUCE_HTTP_RATE_LIMIT_READER"] = "0";
    settings["CAUCE_HTTP_RATE_LIMIT_ADMIN"] = "0";
    settings["CAUCE_ALERTS_DEADLINE_CRITICAL_S"] = "0";  // no escalation of its own meanwhile
    settings["CAUCE_ALERTS_DEADLINE_WARNING_S"] = "0";
    settings["CAUCE_PROJECTIONS_HEARTBEAT_S"] = "1";
    ServedTest::SetUp();
    serve();
  }

  // A key made with the fields of `body` (JSON members without braces); its token.
  std::string key(const std::string& members) const {
    const auto r = call(beast_http::verb::post, "/v1/keys", "{" + members + "}");
    EXPECT_EQ(r.status, 201u) << r.body;
    return json_member(r.body, "key");
  }

  // Sends a command with `key` and waits until the read models hold it, so that the next
  // command's batch is a later one (what filters see is the state as of each batch).
  std::string send(const std::string& target, const std::string& body,
                   const std::string& key = "") const {
    const auto r = call(beast_http::verb::post, target, body, key);
    EXPECT_LT(r.status, 300u) << target << " " << r.body;
    const auto position = r.headers.count("cauce-position") ? r.headers.at("cauce-position") : "";
    const auto read =
        call(beast_http::verb::get, "/v1/stats", "", "", {{"Cauce-Min-Position", position}});
    EXPECT_EQ(read.status, 200u) << read.body;
    return json_member(r.body, "id");
  }

  std::string alert(const std::string& level, const std::string& region = "") const {
    return send("/v1/alerts", R"({"level":")" + level + R"(","title":"T")" +
                                  (region.empty() ? "" : R"(,"region":")" + region + "\"") + "}");
  }

  std::string contact(const std::string& name) const {
    return send("/v1/contacts", R"({"name":")" + name + R"(","phone":"+44 20 7946 0958"})");
  }

  // A stream request's status and problem (a refused stream answers at once).
  HttpResult stream_status(const std::string& target, const std::string& key) const {
    return call(beast_http::verb::get, target, "", key);
  }

  // Every notification `target` gives `key` after `after`. Each command the test sent was read
  // back from the models first, so all of them are stored: the stream sends them at once, and
  // then 3 s of silence end the read (a marker ends it sooner when the view shows contacts).
  std::vector<SseEvent> everything(const std::string& target, const std::string& key,
                                   std::optional<std::int64_t> after = 0) const {
    const auto marker = contact("marker");
    SseClient client(port_, key, target, after);
    std::vector<SseEvent> out;
    for (int quiet = 0; quiet < 15;) {
      auto got = client.read(1, 200ms);
      if (got.empty()) {
        ++quiet;
        continue;
      }
      if (json_member(got[0].data, "id") == marker) break;
      out.push_back(got[0]);
      quiet = 0;
    }
    return out;
  }
};

TEST_F(TargetedStreamsTest, AKeyCarriesItsActorAndScopeAndItsCommandsRecordTheActor) {
  const auto created = call(beast_http::verb::post, "/v1/keys",
                            R"({"name":"night desk","role":"operator","actor":"alice",)"
                            R"("topics":["contacts","alerts"],"regions":["north"]})");
  ASSERT_EQ(created.status, 201u) << created.body;
  EXPECT_EQ(json_member(created.body, "actor"), "alice");
  EXPECT_THAT(created.body, HasSubstr(R"("topics":["alerts","contacts"],"regions":["north"])"));
  const auto token = json_member(created.body, "key");
  const auto listed = call(beast_http::verb::get, "/v1/keys");
  EXPECT_THAT(listed.body, HasSubstr(R"("name":"night desk","actor":"alice")"));
  EXPECT_THAT(call(beast_http::verb::get, "/v1/keys").body,
              HasSubstr(R"("actor":"admin","role":"admin","topics":null,"regions":null)"));

  const auto id = send("/v1/contacts", R"({"name":"Ada","phone":"+44 20 7946 0958"})", token);
  const auto history = call(beast_http::verb::get, "/v1/contacts/" + id + "/events");
  rapidjson::Document events;
  events.Parse(history.body.c_str());
  ASSERT_TRUE(events.IsObject() && events["items"].IsArray() && events["items"].Size() == 1)
      << history.body;
  EXPECT_STREQ(events["items"][0]["actor"].GetString(), "alice");
  const auto claimed = call(beast_http::verb::post, "/v1/contacts/" + id + "/claim", "", token);
  EXPECT_EQ(json_member(claimed.body, "claimed_by"), "alice") << claimed.body;
}

TEST_F(TargetedStreamsTest, AKeysScopeAndActorAreCheckedAtCreation) {
  const std::pair<const char*, const char*> bad[] = {
      {R"("topics":["weather"])", "topics"},
      {R"("topics":[])", "topics"},
      {R"("topics":["alerts","alerts"])", "topics"},
      {R"("topics":"alerts")", "topics"},
      {R"("regions":[" "])", "regions"},
      {R"("regions":["North, East"])", "regions"},
      {R"("regions":[7])", "regions"},
      {R"("actor":"")", "actor"},
      {R"("actor":"a\u0007b")", "actor"},
      {R"("actor":"   ")", "actor"},
  };
  for (const auto& [members, field] : bad) {
    const auto r = call(beast_http::verb::post, "/v1/keys",
                        std::string(R"({"name":"k","role":"reader",)") + members + "}");
    EXPECT_EQ(r.status, 400u) << members << " " << r.body;
    EXPECT_THAT(r.body, HasSubstr(std::string(R"("field":")") + field + "\"")) << members;
  }
  EXPECT_THAT(call(beast_http::verb::get, "/v1/keys").body,
              ::testing::Not(HasSubstr(R"("name":"k")")))
      << "nothing was created";
}

TEST_F(TargetedStreamsTest, ATopicLimitedKeyIsRefusedOtherTopicsAndNeverReceivesThem) {
  const auto limited = key(R"("name":"front desk","role":"reader","topics":["contacts"])");
  for (const auto* target : {"/v1/stream?topics=alerts", "/v1/stream?topics=contacts,stats"}) {
    const auto r = stream_status(target, limited);
    EXPECT_EQ(r.status, 403u) << target;
    EXPECT_THAT(r.body, HasSubstr(R"("field":"topics")")) << r.body;
  }
  std::vector<std::string> contacts;
  for (int i = 0; i < 3; ++i) {
    alert("critical", "north");
    contacts.push_back("contact.registered " + contact("C" + std::to_string(i)));
  }
  // Its default stream is the topics it may read.
  EXPECT_THAT(seen(everything("/v1/stream", limited)), ElementsAreArray(contacts));

  // Over WebSocket: a subscription to another topic is refused with a 403 message.
  asio::io_context ioc;
  websocket::stream<asio::ip::tcp::socket> ws(ioc);
  ws.next_layer().connect({asio::ip::make_address("127.0.0.1"), port_});
  set_receive_timeout(ws.next_layer().native_handle(), 20s);
  ws.set_option(websocket::stream_base::decorator([&](websocket::request_type& req) {
    req.set(beast_http::field::authorization, "Bearer " + limited);
  }));
  ws.handshake("127.0.0.1", "/v1/ws");
  beast::flat_buffer buffer;
  ws.write(asio::buffer(std::string(R"({"subscribe":["contacts","alerts"],"last_event_id":0})")));
  ws.read(buffer);
  const auto refusal = beast::buffers_to_string(buffer.data());
  EXPECT_THAT(refusal, HasSubstr(R"("status":403)"));
  EXPECT_THAT(refusal, HasSubstr(R"("field":"subscribe")"));
  buffer.clear();
  ws.write(asio::buffer(std::string(R"({"subscribe":["contacts"],"last_event_id":0})")));
  ws.read(buffer);
  EXPECT_THAT(beast::buffers_to_string(buffer.data()), HasSubstr(R"("event":"contacts")"));
  ws.close(websocket::close_code::normal);
}

TEST_F(TargetedStreamsTest, StreamsFilterAlertsByLevelAndRegion) {
  alert("info", "V");
  const auto warning_v = alert("warning", "V");
  alert("critical", "W");
  alert("warning");
  const auto later = alert("info", "V");
  send("/v1/alerts/" + later + "/escalate", R"({"level":"warning"})");
  const auto critical_v = alert("critical", "V");

  const auto reader = key(R"("name":"wall","role":"reader")");
  EXPECT_THAT(seen(everything("/v1/stream?topics=alerts&min_level=warning&region=V", reader)),
              ElementsAre("alert.raised " + warning_v, "alert.escalated " + later,
                          "alert.raised " + critical_v));
  EXPECT_THAT(seen(everything("/v1/stream?topics=alerts&min_level=critical", reader)),
              ElementsAre(::testing::StartsWith("alert.raised "), "alert.raised " + critical_v));

  // A key limited to regions sees only theirs, and may not ask for another.
  const auto north_only = key(R"("name":"north desk","role":"reader","regions":["W"])");
  EXPECT_THAT(seen(everything("/v1/stream?topics=alerts", north_only)),
              ElementsAre(::testing::StartsWith("alert.raised ")));
  const auto refused = stream_status("/v1/stream?topics=alerts&region=V", north_only);
  EXPECT_EQ(refused.status, 403u);
  EXPECT_THAT(refused.body, HasSubstr(R"("field":"region")"));
  // The dashboard's figures count every region: not for a key limited to regions.
  const auto stats = stream_status("/v1/stream?topics=stats", north_only);
  EXPECT_EQ(stats.status, 403u);
  EXPECT_THAT(stats.body, HasSubstr(R"("field":"topics")"));
}

TEST_F(TargetedStreamsTest, AssignedToMeFollowsTheContactsOfTheKeysActor) {
  const auto alice = key(R"("name":"k1","role":"operator","actor":"alice")");
  const auto bob = key(R"("name":"k2","role":"operator","actor":"bob")");
  const auto c1 = contact("C1");
  const auto c2 = contact("C2");
  const auto c3 = contact("C3");
  send("/v1/contacts/" + c1 + "/assign", R"({"operator":"alice"})");
  send("/v1/contacts/" + c2 + "/assign", R"({"operator":"bob"})");
  send("/v1/contacts/" + c3 + "/claim", R"({"ttl_s":600})", alice);
  send("/v1/contacts/" + c1 + "/assign", R"({"operator":"bob"})");  // taken from alice
  send("/v1/contacts/" + c3 + "/release", "", alice);
  send("/v1/contacts/" + c1 + "/calls",
       R"({"outcome":"answered","duration_s":30,"operator":"bob"})");
  // Alice claims bob's c2, and c2 is archived while she holds it: she learns it is gone.
  send("/v1/contacts/" + c2 + "/claim", R"({"ttl_s":600})", alice);
  send("/v1/contacts/" + c2 + "/archive", "{}");

  EXPECT_THAT(
      seen(everything("/v1/stream?topics=contacts&assigned_to=me", alice)),
      ElementsAre("contact.assigned " + c1, "contact.claimed " + c3, "contact.assigned " + c1,
                  "contact.released " + c3, "contact.claimed " + c2, "contact.archived " + c2));
  EXPECT_THAT(
      seen(everything("/v1/stream?topics=contacts&assigned_to=me", bob)),
      ElementsAre("contact.assigned " + c2, "contact.assigned " + c1, "contact.call_logged " + c1,
                  "contact.claimed " + c2, "contact.archived " + c2));
}

TEST_F(TargetedStreamsTest, ResumingWithLastEventIdKeepsTheFilteredViewGapless) {
  std::vector<std::string> critical;
  for (int i = 0; i < 12; ++i) {
    const auto id = alert(i % 3 == 0 ? "critical" : "info", "V");
    if (i % 3 == 0) critical.push_back("alert.raised " + id);
  }
  const auto reader = key(R"("name":"wall","role":"reader")");
  const std::string target = "/v1/stream?topics=alerts&min_level=critical";
  const auto whole = everything(target, reader);
  ASSERT_THAT(seen(whole), ElementsAreArray(critical));

  SseClient first(port_, reader, target, 0);
  const auto head = first.read(2);
  ASSERT_EQ(head.size(), 2u);
  // Meanwhile an info alert becomes critical: its raise stays out of the view (the view is what
  // was stored with each notification, not the alerts' state now), its escalation is in it.
  const auto info = alert("info", "V");
  send("/v1/alerts/" + info + "/escalate", R"({"level":"critical"})");  // and read back
  critical.push_back("alert.escalated " + info);
  // The id it resumes after belongs to the filtered view; what follows is the rest of it.
  const auto rest = everything(target, reader, head.back().id);
  std::vector<std::string> resumed = seen(head);
  for (const auto& s : seen(rest)) resumed.push_back(s);
  EXPECT_THAT(resumed, ElementsAreArray(critical));
  EXPECT_EQ(head.back().id, whole[1].id);
}

TEST_F(TargetedStreamsTest, AFilteredClientThatReceivedNothingYetResumesWithoutAGap) {
  const auto reader = key(R"("name":"wall","role":"reader")");
  const std::string target = "/v1/stream?topics=alerts&min_level=critical";
  std::int64_t resume_after = 0;
  {
    SseClient quiet(port_, reader, target);  // from now: nothing of its view comes
    alert("info", "V");
    alert("warning", "V");
    // The id lines without data (on connecting, then with the heartbeats) move its
    // Last-Event-ID past what its filter left out.
    ASSERT_TRUE(eventually([&] {
      quiet.read(1, 200ms);
      return quiet.last_id() > 0;
    }));
    EXPECT_TRUE(quiet.read(1, 1500ms).empty()) << "no event of its view";
    resume_after = quiet.last_id();
  }
  const auto missed = alert("critical", "V");  // while it was away
  SseClient back(port_, reader, target, resume_after);
  const auto events = back.read(1, 20s);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(json_member(events[0].data, "id"), missed);
}

TEST_F(TargetedStreamsTest, BadFiltersAreRefusedNamingTheField) {
  const auto reader = key(R"("name":"wall","role":"reader")");
  const std::pair<const char*, const char*> bad[] = {
      {"/v1/stream?topics=alerts&min_level=urgent", "min_level"},
      {"/v1/stream?topics=contacts&min_level=warning", "min_level"},
      {"/v1/stream?topics=contacts&region=V", "region"},
      {"/v1/stream?topics=alerts&region=", "region"},
      {"/v1/stream?topics=contacts&assigned_to=bob", "assigned_to"},
      {"/v1/stream?topics=alerts&assigned_to=me", "assigned_to"},
  };
  for (const auto& [target, field] : bad) {
    const auto r = stream_status(target, reader);
    EXPECT_EQ(r.status, 400u) << target << " " << r.body;
    EXPECT_THAT(r.body, HasSubstr(std::string(R"("field":")") + field + "\"")) << target;
  }
}

}  // namespace
}  // namespace cauce::testing
