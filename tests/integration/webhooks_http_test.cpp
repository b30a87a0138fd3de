// Signed webhooks (issue 16, part 7) on the real `cauce serve`: a receiver this test starts on
// loopback checks every signature with an HMAC computed here with OpenSSL directly, answers a 500
// once (the delivery is retried) and sees each aggregate's notifications in order; a receiver that
// keeps failing gets the webhook disabled (event, GET); deliveries are listed page by page; bad
// registrations get a 400 naming the field and leave nothing behind; the secret is shown once and
// appears nowhere else (events, the server's log, later answers).
#include <array>
#include <ctime>
#include <numeric>
#include <set>
#include <thread>
#include <utility>  // before Boost 1.74's asio, which needs std::exchange

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "event_log.hpp"
#include "served.hpp"
#include "source_server.hpp"

namespace cauce::testing {
namespace {

namespace beast_http = boost::beast::http;
using ::testing::HasSubstr;

// A webhook receiver on loopback: records every request and answers what the test decides.
class Receiver {
 public:
  struct Request {
    std::string path;
    std::map<std::string, std::string> headers;  // names in lower case
    std::string body;
    unsigned status = 0;  // what was answered
  };
  // The status for a request: its path, body and how many times this body came to this path.
  using Decide = std::function<unsigned(const std::string& path, const std::string& body, int n)>;

  explicit Receiver(Decide decide)
      : decide_(std::move(decide)),
        server_([this](const LoopbackHttpServer::Request& request,
                       LoopbackHttpServer::Response& response) { answer(request, response); }) {}

  std::string url(const std::string& path) const { return server_.url(path); }
  std::vector<Request> requests(const std::string& path) const {
    const std::lock_guard lock(mutex_);
    std::vector<Request> out;
    for (const auto& r : requests_) {
      if (r.path == path) out.push_back(r);
    }
    return out;
  }

 private:
  void answer(const LoopbackHttpServer::Request& request, LoopbackHttpServer::Response& response) {
    Request r;
    r.path = std::string(request.target());
    r.body = request.body();
    for (const auto& field : request) {
      std::string name(field.name_string());
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      r.headers[name] = std::string(field.value());
    }
    int n = 0;
    {
      const std::lock_guard lock(mutex_);
      n = ++seen_[r.path + "\n" + r.body];
    }
    r.status = decide_(r.path, r.body, n);
    response.result(static_cast<beast_http::status>(r.status));
    if (r.status != 204) response.body() = "ok";
    const std::lock_guard lock(mutex_);
    requests_.push_back(r);  // recorded before it is answered: the sender waits for the answer
  }

  Decide decide_;
  mutable std::mutex mutex_;
  std::map<std::string, int> seen_;
  std::vector<Request> requests_;
  LoopbackHttpServer server_;  // last: its threads stop before the members they use go
};

// HMAC-SHA256 in lower-case hex, with OpenSSL itself (not cauce's core::hmac_sha256_hex).
std::string openssl_hmac_hex(const std::string& key, const std::string& message) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
  unsigned int size = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac.data(), &size);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < size; ++i) {
    out.push_back(kHex[mac[i] >> 4]);
    out.push_back(kHex[mac[i] & 0xf]);
  }
  return out;
}

// What a receiver does with Cauce-Signature (api/README.md's Python, in C++): "" when it holds,
// else why not.
std::string signature_problem(const Receiver::Request& r, const std::string& secret) {
  const auto it = r.headers.find("cauce-signature");
  if (it == r.headers.end()) return "no Cauce-Signature";
  const auto& header = it->second;  // t=<seconds>,v1=<hex>
  const auto comma = header.find(",v1=");
  if (!header.starts_with("t=") || comma == std::string::npos) return "malformed: " + header;
  const auto t = header.substr(2, comma - 2);
  const auto v1 = header.substr(comma + 4);
  if (std::llabs(std::stoll(t) - static_cast<long long>(std::time(nullptr))) > 300) {
    return "t is more than 5 minutes away: " + t;
  }
  if (v1 != openssl_hmac_hex(secret, t + "." + r.body)) return "v1 does not match: " + header;
  return "";
}

std::string member(const std::string& json, const char* name) { return json_member(json, name); }

class WebhooksTest : public ServedTest {
 protected:
  void SetUp() override {
    settings["CAUCE_HTTP_RATE_LIMIT_OPERATOR"] = "0";
    settings["CAUCE_HTTP_RATE_LIMIT_ADMIN"] = "0";
    settings["CAUCE_WEBHOOKS_ALLOW_PRIVATE"] = "true";  // the receiver is on 127.0.0.1
    settings["CAUCE_WEBHOOKS_DISABLE_AFTER"] = "3";
    settings["CAUCE_WORKERS_BACKOFF_BASE_MS"] = "50";
    settings["CAUCE_WORKERS_BACKOFF_CAP_MS"] = "200";
    settings["CAUCE_WORKERS_POLL_MS"] = "100";
    // Commands may wait past the default 4 s for their outcome on 2 cores under `ctest -j`.
    settings["CAUCE_COMMANDS_REPLY_TIMEOUT_MS"] = "30000";
    ServedTest::SetUp();
    serve();
  }

  HttpResult post(const std::string& target, const std::string& body,
                  std::vector<std::pair<std::string, std::string>> headers = {}) const {
    return call(beast_http::verb::post, target, body, "", std::move(headers));
  }
  std::string alert(const std::string& level, const std::string& title,
                    std::string* position = nullptr) const {
    const auto r = post("/v1/alerts", R"({"level":")" + level + R"(","title":")" + title + R"("})");
    EXPECT_EQ(r.status, 201u) << r.body;
    if (position != nullptr) *position = header(r, "cauce-position");
    return member(r.body, "id");
  }

  // Every delivery of a webhook, following next_cursor with pages of `limit`.
  std::vector<std::string> deliveries(const std::string& webhook, int limit = 5) const {
    std::vector<std::string> out;
    std::string target = "/v1/webhooks/" + webhook + "/deliveries?limit=" + std::to_string(limit);
    for (int page = 0; page < 1000; ++page) {
      const auto r = get(target);
      EXPECT_EQ(r.status, 200u) << r.body;
      rapidjson::Document d;
      d.Parse(r.body.c_str());
      if (!d.IsObject()) break;
      for (const auto& item : d["items"].GetArray()) {
        rapidjson::StringBuffer buffer;
        rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
        item.Accept(w);
        out.emplace_back(buffer.GetString(), buffer.GetSize());
      }
      if (!d["next_cursor"].IsString()) break;
      target = "/v1/webhooks/" + webhook + "/deliveries?limit=" + std::to_string(limit) +
               "&cursor=" + d["next_cursor"].GetString();
    }
    return out;
  }
};

// (aggregate id, version) of a delivery's body: {"type","id","version","position"}.
std::pair<std::string, std::int64_t> notified(const std::string& body) {
  return {member(body, "id"), std::stoll(member(body, "version"))};
}

TEST_F(WebhooksTest, DeliveriesAreSignedRetriedAfterA500InOrderPerAggregateAndListed) {
  std::string fail_id;  // the alert whose acknowledgement (version 2) is answered 500 once
  std::mutex fail_mutex;
  Receiver receiver([&](const std::string&, const std::string& body, int n) -> unsigned {
    const std::lock_guard lock(fail_mutex);
    return notified(body) == std::pair{fail_id, std::int64_t{2}} && n == 1 ? 500 : 200;
  });
  // Notified before the webhook is registered (the query waits for the projection): never
  // delivered to it.
  std::string before_position;
  const auto before = alert("critical", "before the webhook", &before_position);
  ASSERT_EQ(get("/v1/alerts/" + before, before_position).status, 200u);

  const auto registered = post(
      "/v1/webhooks", R"({"url":")" + receiver.url("/all") + R"(","topics":["alerts","contacts"]})",
      {{"Idempotency-Key", "hook-all"}});
  ASSERT_EQ(registered.status, 201u) << registered.body;
  const auto webhook = member(registered.body, "id");
  const auto secret = member(registered.body, "secret");
  EXPECT_THAT(secret, ::testing::MatchesRegex("whsec_[0-9a-f]{64}"));
  EXPECT_EQ(member(registered.body, "status"), "active");
  EXPECT_EQ(header(registered, "location"), "/v1/webhooks/" + webhook);
  // Only critical alerts for this one (a filter, as streams take them).
  const auto critical_only = post("/v1/webhooks", R"({"url":")" + receiver.url("/critical") +
                                                      R"(","topics":["alerts"],)"
                                                      R"("filters":{"min_level":"critical"}})");
  ASSERT_EQ(critical_only.status, 201u) << critical_only.body;
  const auto critical_secret = member(critical_only.body, "secret");
  EXPECT_NE(critical_secret, secret);

  // Three alerts (raised, acknowledged, escalated unless critical, closed) and two contacts
  // (registered, assigned); the critical alert's acknowledgement fails once at the receiver.
  std::vector<std::string> alerts;
  for (const auto* level : {"warning", "critical", "info"}) {
    alerts.push_back(alert(level, std::string("alert ") + level));
  }
  {
    const std::lock_guard lock(fail_mutex);
    fail_id = alerts[1];
  }
  std::vector<std::string> contacts;
  for (const auto* name : {"Ada", "Grace"}) {
    const auto c = post("/v1/contacts",
                        std::string(R"({"name":")") + name + R"(","phone":"+44 20 7946 0958"})");
    ASSERT_EQ(c.status, 201u) << c.body;
    contacts.push_back(member(c.body, "id"));
  }
  for (const auto& a : alerts) {
    ASSERT_EQ(post("/v1/alerts/" + a + "/acknowledge", "{}").status, 200u);
    ASSERT_EQ(post("/v1/alerts/" + a + "/escalate", R"({"level":"critical"})").status,
              a == alerts[1] ? 409u : 200u);  // critical already: escalating it is refused
    ASSERT_EQ(post("/v1/alerts/" + a + "/close", R"({"resolution":"fixed"})").status, 200u);
  }
  for (const auto& c : contacts) {
    ASSERT_EQ(post("/v1/contacts/" + c + "/assign", R"({"operator":"alice"})").status, 200u);
  }

  const std::map<std::string, std::int64_t> last_version = {
      {alerts[0], 4}, {alerts[1], 3}, {alerts[2], 4}, {contacts[0], 2}, {contacts[1], 2}};
  const auto delivered = [&](const std::string& path) {
    std::map<std::string, std::int64_t> highest;
    for (const auto& r : receiver.requests(path)) {
      if (r.status == 200) highest[notified(r.body).first] = notified(r.body).second;
    }
    return highest;
  };
  ASSERT_TRUE(
      eventually([&] { return delivered("/all") == last_version; }, std::chrono::seconds(60)))
      << receiver.requests("/all").size() << " requests: " << [&] {
           std::string seen;
           for (const auto& r : receiver.requests("/all"))
             seen += r.body + " " + std::to_string(r.status) + "\n";
           return seen;
         }();
  const auto all = receiver.requests("/all");
  EXPECT_EQ(all.size(), 16u) << "15 notifications once each, and the one answered 500 again";
  std::map<std::string, std::vector<std::pair<std::int64_t, unsigned>>> order;
  for (const auto& r : all) {
    EXPECT_EQ(signature_problem(r, secret), "") << r.body;
    EXPECT_EQ(r.headers.at("content-type"), "application/json");
    EXPECT_EQ(r.headers.at("cauce-webhook-id"), webhook);
    EXPECT_EQ(r.headers.at("cauce-topic"),
              member(r.body, "type").starts_with("alert.") ? "alerts" : "contacts");
    EXPECT_NE(notified(r.body).first, before) << "notified before the registration";
    order[notified(r.body).first].emplace_back(notified(r.body).second, r.status);
  }
  // Per aggregate, in version order, each version once taken; the 500 was answered by a retry
  // of the same notification before the next one.
  for (const auto& [id, seen] : order) {
    std::vector<std::int64_t> taken;
    for (const auto& [version, status] : seen) {
      if (status == 200) taken.push_back(version);
    }
    std::vector<std::int64_t> expected(static_cast<std::size_t>(last_version.at(id)));
    std::iota(expected.begin(), expected.end(), 1);
    EXPECT_EQ(taken, expected) << id;
  }
  EXPECT_EQ(order[alerts[1]], (std::vector<std::pair<std::int64_t, unsigned>>{
                                  {1, 200}, {2, 500}, {2, 200}, {3, 200}}));

  // The filtered webhook: the critical alert's three notifications (others only once they were
  // escalated to critical), never the one from before its registration.
  ASSERT_TRUE(eventually([&] {
    return delivered("/critical").contains(alerts[1]) && delivered("/critical").at(alerts[1]) == 3;
  }));
  for (const auto& r : receiver.requests("/critical")) {
    EXPECT_EQ(signature_problem(r, critical_secret), "") << r.body;
    EXPECT_NE(signature_problem(r, secret), "") << "each webhook signs with its own secret";
    EXPECT_TRUE(member(r.body, "type").starts_with("alert.")) << r.body;
    EXPECT_NE(notified(r.body).first, before);
  }

  // Deliveries, listed newest first across pages of 5: one per notification, all delivered.
  const auto listed = deliveries(webhook);
  ASSERT_EQ(listed.size(), 15u);
  for (const auto& d : listed) {
    EXPECT_EQ(member(d, "status"), "delivered") << d;
    EXPECT_EQ(member(d, "response_code"), "200") << d;
    const bool failed_once = member(d, "aggregate_id") == alerts[1] && member(d, "version") == "2";
    EXPECT_EQ(member(d, "attempts"), failed_once ? "2" : "1") << d;
  }
  EXPECT_EQ(deliveries(webhook, 500), listed);
  EXPECT_EQ(get("/v1/webhooks/" + webhook + "/deliveries?limit=0").status, 400u);
  EXPECT_EQ(get("/v1/webhooks/" + webhook + "/deliveries?cursor=nonsense").status, 400u);
  EXPECT_EQ(get("/v1/webhooks/0195a0c4-0000-7000-8000-000000000001/deliveries").status, 404u);
  EXPECT_EQ(get("/v1/webhooks/0195a0c4-0000-7000-8000-000000000001").status, 404u);

  // The secret: in the registration's answer (and a replay of it with the same key) only.
  const auto replay = post(
      "/v1/webhooks", R"({"url":")" + receiver.url("/all") + R"(","topics":["alerts","contacts"]})",
      {{"Idempotency-Key", "hook-all"}});
  EXPECT_EQ(replay.status, 201u);
  EXPECT_EQ(header(replay, "idempotent-replayed"), "true");
  EXPECT_EQ(member(replay.body, "secret"), secret);
  const auto reused =
      post("/v1/webhooks", R"({"url":")" + receiver.url("/other") + R"(","topics":["alerts"]})",
           {{"Idempotency-Key", "hook-all"}});
  EXPECT_EQ(reused.status, 422u);
  const auto list = get("/v1/webhooks");
  EXPECT_THAT(list.body, HasSubstr(webhook));
  std::vector<std::string> later = {list.body, get("/v1/webhooks/" + webhook).body, reused.body};
  for (const auto& d : listed) later.push_back(d);
  for (const auto& body : later) {
    EXPECT_EQ(body.find(secret), std::string::npos) << body;
    EXPECT_EQ(body.find(critical_secret), std::string::npos) << body;
  }
  EXPECT_EQ(member(get("/v1/webhooks/" + webhook).body, "status"), "active");
  const auto events = read_event_log(kafka_);
  EXPECT_EQ(schema_problems(events), std::vector<std::string>{});
  int registrations = 0;
  for (const auto& e : events) {
    EXPECT_EQ(e.value.find(secret.substr(6)), std::string::npos) << e.value;
    EXPECT_EQ(e.value.find(critical_secret.substr(6)), std::string::npos) << e.value;
    if (e.envelope.type == "webhook.registered") ++registrations;
  }
  EXPECT_EQ(registrations, 2);
  const auto log = serve_->output();
  EXPECT_THAT(log, HasSubstr("\"msg\":\"listening\""));  // the log is the server's
  EXPECT_EQ(log.find(secret.substr(6)), std::string::npos);
  EXPECT_EQ(log.find(critical_secret.substr(6)), std::string::npos);
}

TEST_F(WebhooksTest, AFailedDeliveryIsRetriedAndHoldsBackOnlyItsOwnAggregate) {
  std::string held;  // the alert whose deliveries fail twice before they succeed
  std::mutex mutex;
  Receiver receiver([&](const std::string&, const std::string& body, int n) -> unsigned {
    const std::lock_guard lock(mutex);
    return member(body, "id") == held && n <= 2 ? 500 : 200;
  });
  const auto r =
      post("/v1/webhooks", R"({"url":")" + receiver.url("/h") + R"(","topics":["alerts"]})");
  ASSERT_EQ(r.status, 201u) << r.body;
  const auto webhook = member(r.body, "id");
  const auto secret = member(r.body, "secret");
  {
    const std::lock_guard lock(mutex);
    held = alert("warning", "flaky");
  }
  const auto other = alert("info", "fine");
  ASSERT_EQ(post("/v1/alerts/" + held + "/acknowledge", "{}").status, 200u);
  ASSERT_EQ(post("/v1/alerts/" + other + "/acknowledge", "{}").status, 200u);
  ASSERT_TRUE(eventually([&] {
    int ok = 0;
    for (const auto& q : receiver.requests("/h")) ok += q.status == 200 ? 1 : 0;
    return ok == 4;
  })) << receiver.requests("/h").size();
  std::vector<std::pair<std::string, std::int64_t>> held_sequence;
  for (const auto& q : receiver.requests("/h")) {
    EXPECT_EQ(signature_problem(q, secret), "");
    if (notified(q.body).first == held) {
      held_sequence.emplace_back(std::to_string(q.status), notified(q.body).second);
    }
  }
  // Version 1 twice refused, then taken; only then version 2 (held back meanwhile).
  EXPECT_EQ(held_sequence,
            (std::vector<std::pair<std::string, std::int64_t>>{
                {"500", 1}, {"500", 1}, {"200", 1}, {"500", 2}, {"500", 2}, {"200", 2}}));
  bool retried_listed = false;
  for (const auto& d : deliveries(webhook)) {
    EXPECT_EQ(member(d, "status"), "delivered");
    if (member(d, "aggregate_id") == held) {
      EXPECT_EQ(member(d, "attempts"), "3") << d;
      retried_listed = true;
    }
  }
  EXPECT_TRUE(retried_listed);
  // Two failures in a row, then a success: never three, so the webhook stays active.
  EXPECT_EQ(member(get("/v1/webhooks/" + webhook).body, "status"), "active");
}

// More open deliveries than one page (1,000) behind one aggregate's far-off retry: another
// aggregate's delivery still goes out (before, the runner looked at the first page only, found
// nothing due, and came back to it at once).
TEST_F(WebhooksTest, ABacklogBehindOneAggregatesRetryHoldsBackNoOtherAggregate) {
  Receiver receiver([](const std::string&, const std::string&, int) -> unsigned { return 200; });
  const auto r =
      post("/v1/webhooks", R"({"url":")" + receiver.url("/h") + R"(","topics":["alerts"]})");
  ASSERT_EQ(r.status, 201u) << r.body;
  const auto webhook = member(r.body, "id");
  db_.query_value(
      "INSERT INTO webhook_deliveries (webhook_id, notification_id, topic, type, aggregate_id, "
      "version, position, status, attempts, next_attempt_at) "
      "SELECT '" +
      webhook +
      "', -n, 'alerts', 'alert.acknowledged', "
      "'01900000-0000-7000-8000-00000000b10c', n, '0:' || n, "
      "CASE WHEN n = 1 THEN 'retrying' ELSE 'pending' END, CASE WHEN n = 1 THEN 1 ELSE 0 END, "
      "CASE WHEN n = 1 THEN now() + interval '1 hour' END FROM generate_series(1, 1100) n");
  const auto fine = alert("info", "fine");
  ASSERT_TRUE(eventually([&] {
    for (const auto& q : receiver.requests("/h")) {
      if (notified(q.body).first == fine) return true;
    }
    return false;
  })) << receiver.requests("/h").size()
      << " deliveries";
  for (const auto& q : receiver.requests("/h")) {
    EXPECT_NE(notified(q.body).first, "01900000-0000-7000-8000-00000000b10c") << "held back";
  }
}

// A permanent refusal (a 4xx other than 408/429) is not retried: the delivery fails for good, is
// dead-lettered on cauce.jobs.dlq as a failed job is, and the aggregate's later notifications
// follow it.
TEST_F(WebhooksTest, ADeliveryRefusedForGoodIsDeadLetteredAndItsAggregateGoesOn) {
  std::string refused_id;
  std::mutex mutex;
  Receiver receiver([&](const std::string&, const std::string& body, int) -> unsigned {
    const std::lock_guard lock(mutex);
    return notified(body) == std::pair{refused_id, std::int64_t{1}} ? 410 : 200;
  });
  const auto r =
      post("/v1/webhooks", R"({"url":")" + receiver.url("/gone") + R"(","topics":["alerts"]})");
  ASSERT_EQ(r.status, 201u) << r.body;
  const auto webhook = member(r.body, "id");
  std::string a;
  {
    const std::lock_guard lock(mutex);
    a = refused_id = alert("warning", "refused once");
  }
  ASSERT_EQ(post("/v1/alerts/" + a + "/acknowledge", "{}").status, 200u);
  ASSERT_TRUE(eventually([&] {
    for (const auto& q : receiver.requests("/gone")) {
      if (notified(q.body) == std::pair{a, std::int64_t{2}} && q.status == 200) return true;
    }
    return false;
  }));
  std::vector<std::pair<std::int64_t, unsigned>> seen;
  for (const auto& q : receiver.requests("/gone"))
    seen.emplace_back(notified(q.body).second, q.status);
  EXPECT_EQ(seen, (std::vector<std::pair<std::int64_t, unsigned>>{{1, 410}, {2, 200}}));
  const auto listed = deliveries(webhook);
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(member(listed[1], "status"), "failed");  // newest first: version 1 is second
  EXPECT_EQ(member(listed[1], "attempts"), "1");
  EXPECT_EQ(member(listed[1], "response_code"), "410");
  EXPECT_THAT(member(listed[1], "error"), HasSubstr("HTTP 410"));
  EXPECT_EQ(member(listed[0], "status"), "delivered");
  std::vector<TopicRecord> dead;
  ASSERT_TRUE(eventually([&] {
    dead = read_topic(kafka_, kafka_.jobs_dlq_topic);
    return !dead.empty();
  }));
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].key, webhook);
  EXPECT_EQ(member(dead[0].value, "kind"), "webhook");
  EXPECT_EQ(member(dead[0].value, "job_id"), webhook);
  EXPECT_EQ(member(dead[0].value, "aggregate_id"), a);
  EXPECT_EQ(member(dead[0].value, "attempts"), "1");
  EXPECT_THAT(member(dead[0].value, "last_error"), HasSubstr("HTTP 410"));
  EXPECT_EQ(member(get("/v1/webhooks/" + webhook).body, "status"), "active");
}

TEST_F(WebhooksTest, AReceiverThatKeepsFailingGetsTheWebhookDisabledThenEnabledAgain) {
  std::atomic<bool> healthy{false};
  Receiver receiver(
      [&](const std::string&, const std::string&, int) -> unsigned { return healthy ? 204 : 503; });
  const auto r =
      post("/v1/webhooks", R"({"url":")" + receiver.url("/down") + R"(","topics":["alerts"]})");
  ASSERT_EQ(r.status, 201u) << r.body;
  const auto webhook = member(r.body, "id");
  const auto a = alert("critical", "nobody listens");

  ASSERT_TRUE(eventually([&] {
    return member(get("/v1/webhooks/" + webhook).body, "status") == "disabled";
  })) << get("/v1/webhooks/" + webhook).body;
  const auto shown = get("/v1/webhooks/" + webhook);
  rapidjson::Document d;
  d.Parse(shown.body.c_str());
  ASSERT_TRUE(d["disabled"].IsObject()) << shown.body;
  EXPECT_EQ(d["disabled"]["consecutive_failures"].GetInt(), 3);
  EXPECT_THAT(d["disabled"]["reason"].GetString(), HasSubstr("3 delivery attempts in a row"));
  EXPECT_THAT(d["disabled"]["last_error"].GetString(), HasSubstr("HTTP 503"));
  EXPECT_EQ(receiver.requests("/down").size(), 3u);
  // The event that says so.
  const auto events = read_event_log(kafka_);
  EXPECT_EQ(schema_problems(events), std::vector<std::string>{});
  int disabled = 0;
  for (const auto& e : events) {
    if (e.envelope.type != "webhook.disabled") continue;
    ++disabled;
    EXPECT_EQ(e.envelope.aggregate_id, webhook);
    EXPECT_EQ(e.envelope.actor, "system:webhooks");
    EXPECT_EQ(member(e.envelope.data, "consecutive_failures"), "3");
  }
  EXPECT_EQ(disabled, 1);
  // The delivery waits (retrying, 3 attempts) and nothing more is tried while disabled.
  const auto listed = deliveries(webhook);
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(member(listed[0], "status"), "retrying");
  EXPECT_EQ(member(listed[0], "attempts"), "3");
  EXPECT_EQ(member(listed[0], "response_code"), "503");
  EXPECT_EQ(member(listed[0], "aggregate_id"), a);

  // An admin enables it: the waiting delivery goes out, the webhook is active again.
  healthy = true;
  const auto enabled = post("/v1/webhooks/" + webhook + "/enable", "");
  ASSERT_EQ(enabled.status, 200u) << enabled.body;
  EXPECT_EQ(member(enabled.body, "version"), "3");
  ASSERT_TRUE(eventually([&] { return member(deliveries(webhook)[0], "status") == "delivered"; }));
  EXPECT_EQ(member(deliveries(webhook)[0], "attempts"), "4");
  const auto again = get("/v1/webhooks/" + webhook);
  EXPECT_EQ(member(again.body, "status"), "active");
  EXPECT_EQ(member(again.body, "disabled"), "null");
  EXPECT_EQ(post("/v1/webhooks/" + webhook + "/enable", "").status, 409u);  // active already
  EXPECT_EQ(post("/v1/webhooks/0195a0c4-0000-7000-8000-000000000001/enable", "").status, 404u);
}

TEST_F(WebhooksTest, BadRegistrationsAreA400NamingTheFieldAndLeaveNothingBehind) {
  Receiver receiver([](const std::string&, const std::string&, int) -> unsigned { return 200; });
  const auto url = receiver.url("/x");
  const std::vector<std::pair<std::string, std::string>> bad = {
      {R"({"url":"ftp://example.com/x","topics":["alerts"]})", "url"},
      {R"({"url":"http://","topics":["alerts"]})", "url"},
      {R"({"url":"http://no-such-host.invalid/x","topics":["alerts"]})", "url"},
      {R"({"url":")" + url + R"(","topics":["stats"]})", "topics[0]"},
      {R"({"url":")" + url + R"(","topics":[]})", "topics"},
      {R"({"url":")" + url + R"(","topics":["alerts","alerts"]})", "topics[1]"},
      {R"({"url":")" + url + R"("})", "topics"},
      {R"({"topics":["alerts"]})", "url"},
      {R"({"url":")" + url + R"(","topics":["contacts"],"filters":{"min_level":"critical"}})",
       "filters.min_level"},
      {R"({"url":")" + url + R"(","topics":["reports"],"filters":{"region":["north"]}})",
       "filters.region"},
      {R"({"url":")" + url + R"(","topics":["alerts"],"filters":{"assigned_to":"alice"}})",
       "filters.assigned_to"},
      {R"({"url":")" + url + R"(","topics":["alerts"],"filters":{"min_level":"panic"}})",
       "filters.min_level"},
      {R"({"url":")" + url + R"(","topics":["alerts"],"filters":{"region":[]}})", "filters.region"},
      {R"({"url":")" + url + R"(","topics":["alerts"],"secret":"mine"})", "secret"},
      {R"({"url":")" + url +
           R"(","topics":["alerts"],"id":"0195a0c4-0000-7000-8000-000000000001"})",
       "id"},
      {R"([1,2])", "body"},
  };
  for (const auto& [body, field] : bad) {
    const auto r = post("/v1/webhooks", body);
    EXPECT_EQ(r.status, 400u) << body << "\n" << r.body;
    EXPECT_EQ(header(r, "content-type"), "application/problem+json") << body;
    rapidjson::Document d;
    d.Parse(r.body.c_str());
    ASSERT_TRUE(d.IsObject() && d.HasMember("errors") && !d["errors"].Empty()) << r.body;
    EXPECT_EQ(std::string(d["errors"][0]["field"].GetString()), field) << body << "\n" << r.body;
  }
  // A reader or an operator may not register one.
  const auto op = post("/v1/keys", R"({"name":"op","role":"operator"})");
  const auto operator_key = member(op.body, "key");
  const auto forbidden = call(beast_http::verb::post, "/v1/webhooks",
                              R"({"url":")" + url + R"(","topics":["alerts"]})", operator_key);
  EXPECT_EQ(forbidden.status, 403u);
  EXPECT_EQ(call(beast_http::verb::get, "/v1/webhooks", "", operator_key).status, 403u);
  // Nothing registered, nothing stored, no event; the process is up.
  EXPECT_EQ(get("/v1/webhooks").body, R"({"items":[],"next_cursor":null})");
  EXPECT_EQ(db_.query_value("SELECT count(*) FROM webhook_secrets"), "0");
  for (const auto& e : read_event_log(kafka_)) EXPECT_NE(e.envelope.aggregate_type, "webhook");
  EXPECT_EQ(call(beast_http::verb::get, "/healthz").status, 200u);
  EXPECT_TRUE(receiver.requests("/x").empty());
}

// With webhooks.allow_private off (the default), a URL that resolves to loopback is refused at
// registration, by name and by address.
class WebhookPrivateAddressTest : public ServedTest {
 protected:
  void SetUp() override {
    ServedTest::SetUp();
    serve();
  }
};

TEST_F(WebhookPrivateAddressTest, ALoopbackUrlIsA400NamingUrlAndNothingIsRegistered) {
  Receiver receiver([](const std::string&, const std::string&, int) -> unsigned { return 200; });
  for (const auto& url :
       {receiver.url("/x"), std::string("http://localhost:9/x"), std::string("http://[::1]/x"),
        std::string("http://169.254.169.254/latest/meta-data"), std::string("http://10.1.2.3/")}) {
    const auto r = call(beast_http::verb::post, "/v1/webhooks",
                        R"({"url":")" + url + R"(","topics":["alerts"]})");
    EXPECT_EQ(r.status, 400u) << url << "\n" << r.body;
    EXPECT_THAT(r.body, HasSubstr(R"("field":"url")")) << r.body;
    EXPECT_THAT(r.body, HasSubstr("webhooks.allow_private")) << r.body;
  }
  EXPECT_EQ(call(beast_http::verb::get, "/v1/webhooks").body, R"({"items":[],"next_cursor":null})");
  EXPECT_EQ(db_.query_value("SELECT count(*) FROM webhook_secrets"), "0");
  EXPECT_EQ(call(beast_http::verb::get, "/healthz").status, 200u);
  EXPECT_TRUE(receiver.requests("/x").empty());
}

}  // namespace
}  // namespace cauce::testing
