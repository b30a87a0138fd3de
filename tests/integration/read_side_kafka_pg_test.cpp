// The read side through real HTTP: commands -> processor -> cauce.events -> projector ->
// PostgreSQL -> queries, Cauce-Min-Position, SSE and WebSocket, all in one process on the test
// broker and PostgreSQL.
#include <set>
#include <utility>  // before Boost: asio/awaitable.hpp (1.74) uses std::exchange unincluded

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/websocket.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rapidjson/document.h>
#include <sys/socket.h>

#include <cauce/commands/command_bus.hpp>
#include <cauce/commands/processor.hpp>
#include <cauce/core/kafka_admin.hpp>
#include <cauce/projections/notification_hub.hpp>
#include <cauce/projections/projector.hpp>
#include <cauce/projections/queries.hpp>

#include "in_process_api.hpp"
#include "read_models.hpp"
#include "sse_client.hpp"

namespace cauce::testing {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using ::testing::HasSubstr;

rapidjson::Document parse(const std::string& json) {
  rapidjson::Document d;
  d.Parse(json.c_str());
  return d;
}

std::string str(const rapidjson::Value& v, const char* name) {
  return v.HasMember(name) && v[name].IsString() ? v[name].GetString() : "";
}

class ReadSideTest : public ::testing::Test {
 protected:
  explicit ReadSideTest(int client_buffer = 1000) {
    projections_.client_buffer = client_buffer;
    commands_.processor_group = unique_name("processor");
    projections_.group = unique_name("projector");
    projections_.min_position_wait_ms = 3000;
    projections_.heartbeat_s = 1;
  }

  void SetUp() override {
    core::KafkaAdmin(kafka_).ensure_topics(core::cauce_topics(kafka_), kafka_.partitions, 1);
    api_ = std::make_unique<InProcessApi>(
        db_.config(), std::vector<std::unique_ptr<api::DependencyCheck>>{},
        [this](api::Router& router, api::ApiKeys& api_keys) {
          processor_ = std::make_unique<commands::CommandProcessor>(
              commands::ProcessorOptions{.kafka = kafka_, .commands = commands_}, registry_);
          processor_->start();
          bus_ = std::make_unique<commands::CommandBus>(
              commands::BusOptions{.kafka = kafka_, .commands = commands_}, registry_);
          bus_->start();
          projector_ = std::make_unique<projections::Projector>(
              projections::ProjectorOptions{.kafka = kafka_,
                                            .postgres = db_.config(),
                                            .projections = projections_,
                                            .schema = {}},
              registry_);
          projector_->start();
          hub_ = std::make_unique<projections::NotificationHub>(db_.config(), projections_.name,
                                                                kafka_.events_topic, projections_);
          hub_->start();
          api::add_command_routes(router, *bus_, 10000);
          api::add_query_routes(
              router,
              api::QueryDeps{
                  .models = models_,
                  .hub = *hub_,
                  .run_blocking =
                      [this](std::function<void()> work) { asio::post(threads_, std::move(work)); },
                  .min_position_wait = std::chrono::milliseconds(projections_.min_position_wait_ms),
                  .data_dir = dir_.path(),
                  .event_partitions = kafka_.partitions});
          api::add_stream_routes(
              router, *hub_, projections_, api_keys,
              [this](std::function<void()> work) { asio::post(threads_, std::move(work)); },
              registry_);
        });
    operator_ = api_->keys().create("test-operator", api::Role::kOperator).token;
    ASSERT_TRUE(eventually([&] { return hub_->connected(); }));
  }

  void TearDown() override {
    api_.reset();
    hub_.reset();
    threads_.join();
    projector_.reset();
    bus_.reset();
    processor_.reset();
  }

  HttpResult send(http::verb method, const std::string& target, const std::string& body = "",
                  std::vector<std::pair<std::string, std::string>> headers = {}) {
    headers.emplace_back("Authorization", "Bearer " + operator_);
    return http_request(api_->port(), method, target, body, headers, 30s);
  }

  HttpResult get(const std::string& target, const std::string& min_position = "") {
    if (min_position.empty()) return send(http::verb::get, target);
    return send(http::verb::get, target, "", {{"Cauce-Min-Position", min_position}});
  }

  TempDatabase db_;
  TempDir dir_;
  core::KafkaConfig kafka_ = test_kafka(3);
  core::CommandsConfig commands_;
  core::ProjectionsConfig projections_;
  prometheus::Registry registry_;
  core::PgPool pool_{core::postgres_conninfo(db_.config()), 4};
  projections::ReadModels models_{pool_};
  asio::thread_pool threads_{4};
  std::unique_ptr<commands::CommandProcessor> processor_;
  std::unique_ptr<commands::CommandBus> bus_;
  std::unique_ptr<projections::Projector> projector_;
  std::unique_ptr<projections::NotificationHub> hub_;
  std::unique_ptr<InProcessApi> api_;
  std::string operator_;
};

TEST_F(ReadSideTest, AQueryWithTheCommandsPositionAlwaysSeesTheWrite) {
  for (int i = 0; i < 20; ++i) {
    const auto created =
        send(http::verb::post, "/v1/contacts",
             R"({"name":"Rita )" + std::to_string(i) + R"(","phone":"+351 912 345 678"})");
    ASSERT_EQ(created.status, 201u) << created.body;
    const auto id = str(parse(created.body), "id");
    auto got = get("/v1/contacts/" + id, created.headers.at("cauce-position"));
    ASSERT_EQ(got.status, 200u) << got.body;
    EXPECT_EQ(got.headers.at("etag"), "\"1\"");
    const auto called = send(http::verb::post, "/v1/contacts/" + id + "/calls",
                             R"({"outcome":"answered","duration_s":42,"operator":"op7"})");
    ASSERT_EQ(called.status, 201u) << called.body;
    got = get("/v1/contacts/" + id, called.headers.at("cauce-position"));
    ASSERT_EQ(got.status, 200u);
    const auto contact = parse(got.body);
    EXPECT_EQ(contact["version"].GetInt64(), 2);
    EXPECT_EQ(contact["calls_count"].GetInt64(), 1);
    EXPECT_EQ(str(contact, "status"), "active");
    EXPECT_EQ(str(contact, "phone"), "+351912345678");
  }
}

TEST_F(ReadSideTest, EveryReadRouteAnswersInApiShape) {
  const auto created = send(http::verb::post, "/v1/contacts",
                            R"({"name":"Ana Lima","phone":"+351 912 345 678","tags":["vip"]})");
  const auto id = str(parse(created.body), "id");
  send(http::verb::post, "/v1/contacts/" + id + "/calls", R"({"outcome":"busy","duration_s":0})");
  send(http::verb::post, "/v1/contacts/" + id + "/calls",
       R"({"outcome":"answered","duration_s":30})");
  const auto assigned =
      send(http::verb::post, "/v1/contacts/" + id + "/assign", R"({"operator":"op2"})");
  const auto at = assigned.headers.at("cauce-position");

  auto r = get("/v1/contacts/" + id, at);
  ASSERT_EQ(r.status, 200u);
  EXPECT_EQ(str(parse(r.body), "assigned_to"), "op2");
  // ETag / If-None-Match.
  const auto etag = r.headers.at("etag");
  r = send(http::verb::get, "/v1/contacts/" + id, "", {{"If-None-Match", etag}});
  EXPECT_EQ(r.status, 304u);
  EXPECT_TRUE(r.body.empty());

  r = get("/v1/contacts/" + id + "/calls");
  ASSERT_EQ(r.status, 200u) << r.body;
  auto calls = parse(r.body);
  ASSERT_EQ(calls["items"].Size(), 2u);
  EXPECT_EQ(str(calls["items"][0], "outcome"), "answered") << "newest first";
  EXPECT_TRUE(calls["next_cursor"].IsNull());

  r = get("/v1/contacts/" + id + "/events?limit=2");
  ASSERT_EQ(r.status, 200u) << r.body;
  auto events = parse(r.body);
  ASSERT_EQ(events["items"].Size(), 2u);
  EXPECT_EQ(str(events["items"][0], "type"), "contact.registered") << "oldest first";
  EXPECT_EQ(events["items"][1]["schema_version"].GetInt(), 2);
  r = get("/v1/contacts/" + id + "/events?limit=2&cursor=" + str(events, "next_cursor"));
  events = parse(r.body);
  ASSERT_EQ(events["items"].Size(), 2u);
  EXPECT_EQ(str(events["items"][1], "type"), "contact.assigned");

  r = get("/v1/contacts?tag=vip&status=active&assigned_to=op2&q=LIMA");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(parse(r.body)["items"].Size(), 1u);
  EXPECT_EQ(parse(get("/v1/contacts?q=nobody").body)["items"].Size(), 0u);

  const auto raised = send(http::verb::post, "/v1/alerts", R"({"level":"warning","title":"Disk"})");
  const auto alert_id = str(parse(raised.body), "id");
  const auto escalated =
      send(http::verb::post, "/v1/alerts/" + alert_id + "/escalate", R"({"level":"critical"})");
  r = get("/v1/alerts/" + alert_id, escalated.headers.at("cauce-position"));
  ASSERT_EQ(r.status, 200u) << r.body;
  const auto alert = parse(r.body);
  EXPECT_EQ(str(alert, "level"), "critical");
  EXPECT_EQ(alert["timeline"].Size(), 2u);
  r = get("/v1/alerts?level=critical&state=open");
  EXPECT_EQ(parse(r.body)["items"].Size(), 1u);

  const auto report = send(http::verb::post, "/v1/reports",
                           R"({"title":"Q3","source_url":"https://example.org/q3.csv"})");
  const auto report_id = str(parse(report.body), "id");
  r = get("/v1/reports/" + report_id, report.headers.at("cauce-position"));
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(str(parse(r.body), "status"), "requested");
  EXPECT_EQ(get("/v1/reports/" + report_id + "/pdf").status, 404u);

  const auto backup = http_request(api_->port(), http::verb::post, "/v1/backups", "{}",
                                   {{"Authorization", "Bearer " + api_->admin_token()}}, 30s);
  r = http_request(api_->port(), http::verb::get, "/v1/backups", "",
                   {{"Authorization", "Bearer " + api_->admin_token()},
                    {"Cauce-Min-Position", backup.headers.at("cauce-position")}});
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(str(parse(r.body)["items"][0], "status"), "requested");
  EXPECT_EQ(get("/v1/backups").status, 403u) << "backups are for admins";

  EXPECT_EQ(get("/v1/contacts/" + commands::uuid_v7(1)).status, 404u);
  EXPECT_EQ(get("/v1/contacts/" + commands::uuid_v7(1) + "/calls").status, 404u);
}

TEST_F(ReadSideTest, BadQueryParametersAre400NamingTheParameter) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"/v1/contacts?limit=0", "limit"},
      {"/v1/contacts?limit=501", "limit"},
      {"/v1/contacts?limit=ten", "limit"},
      {"/v1/contacts?cursor=%%%", "cursor"},
      {"/v1/contacts?cursor=bm90LWEtY3Vyc29y", "cursor"},
      {"/v1/contacts?status=gone", "status"},
      {"/v1/contacts?colour=red", "colour"},
      {"/v1/contacts?q=", "q"},
      {"/v1/contacts?limit=1&limit=2", "limit"},
      {"/v1/alerts?state=burning", "state"},
      {"/v1/alerts?level=panic", "level"},
      {"/v1/contacts/not-a-uuid", "id"},
      {"/v1/contacts/not-a-uuid/events", "id"},
      {"/v1/contacts/" + commands::uuid_v7(1) + "/events?cursor=abc", "cursor"},
      {"/v1/stream?topics=weather", "topics"},
      {"/v1/stream?topics=", "topics"},
      {"/v1/stream?topics=alerts&last_event_id=x", "last_event_id"},
      {"/v1/contacts?q=%FF", "q"},
      {"/v1/contacts?q=ab", "q"},  // shorter than a trigram: it would read every contact
      {"/v1/contacts?assigned_to=a%00b", "assigned_to"},
  };
  for (const auto& [target, field] : cases) {
    const auto r = get(target);
    EXPECT_EQ(r.status, 400u) << target << " " << r.body;
    EXPECT_EQ(r.headers.at("content-type"), "application/problem+json") << target;
    EXPECT_THAT(r.body, HasSubstr("\"field\":\"" + field + "\"")) << target;
  }
  // A malformed last_event_id is refused even when a Last-Event-ID header comes with it.
  const auto both =
      send(http::verb::get, "/v1/stream?last_event_id=AAA", "", {{"Last-Event-ID", "0"}});
  EXPECT_EQ(both.status, 400u) << both.body;
  EXPECT_THAT(both.body, HasSubstr("\"field\":\"last_event_id\""));
  for (const auto* token : {"x", "1:", ":5", "1:-5", "a:b"}) {
    const auto r = get("/v1/contacts", token);
    EXPECT_EQ(r.status, 400u) << token;
    EXPECT_THAT(r.body, HasSubstr("Cauce-Min-Position")) << token;
  }
  // A partition the log does not have: a 400 at once, not a wait for the bound (issue 11).
  const auto missing = get("/v1/contacts", std::to_string(kafka_.partitions) + ":0");
  EXPECT_EQ(missing.status, 400u) << missing.body;
  EXPECT_THAT(missing.body, HasSubstr("\"field\":\"Cauce-Min-Position\""));
  // A position the projection never reaches: 503 + Retry-After after the bounded wait.
  const auto r = get("/v1/contacts", "0:999999999");
  EXPECT_EQ(r.status, 503u);
  EXPECT_EQ(r.headers.at("retry-after"), "1");
}

TEST_F(ReadSideTest, PaginationWalksTenThousandContactsWithoutDuplicatesOrGaps) {
  write_synthetic_log(kafka_, {.contacts = 10000, .calls_per_contact = 0, .alerts = 0});
  ASSERT_TRUE(eventually([&] { return row_count(db_, "contacts") == 10000; }, 120s, 200ms));
  std::vector<std::string> seen;
  std::string cursor;
  for (int page = 0; page < 100; ++page) {
    const auto r = get("/v1/contacts?limit=" + std::string(page % 2 ? "500" : "333") +
                       (cursor.empty() ? "" : "&cursor=" + cursor));
    ASSERT_EQ(r.status, 200u) << r.body;
    const auto d = parse(r.body);
    for (const auto& item : d["items"].GetArray()) seen.push_back(str(item, "id"));
    if (d["next_cursor"].IsNull()) break;
    cursor = d["next_cursor"].GetString();
  }
  EXPECT_EQ(seen.size(), 10000u);
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(), 10000u);
}

TEST_F(ReadSideTest, SseDeliversEveryNotificationOnceInOrderAcrossAReconnect) {
  const auto written =
      write_synthetic_log(kafka_, {.contacts = 100, .calls_per_contact = 8, .alerts = 25});
  ASSERT_GE(written, 1000u);
  std::vector<SseEvent> received;
  {
    SseClient first(api_->port(), operator_, "/v1/stream?last_event_id=0");
    received = first.read(400);
    ASSERT_EQ(received.size(), 400u) << first.head();
    EXPECT_THAT(first.head(), HasSubstr("text/event-stream"));
  }  // forced disconnect
  SseClient second(api_->port(), operator_, "/v1/stream", received.back().id);
  const auto rest = second.read(written - 400, 60s);
  received.insert(received.end(), rest.begin(), rest.end());
  ASSERT_EQ(received.size(), written);
  std::set<std::pair<std::string, std::int64_t>> changes;
  for (std::size_t i = 0; i < received.size(); ++i) {
    if (i > 0) {
      ASSERT_GT(received[i].id, received[i - 1].id) << "in order, no duplicate";
    }
    const auto data = parse(received[i].data);
    changes.emplace(str(data, "id"), data["version"].GetInt64());
    EXPECT_EQ(received[i].event, str(data, "type").starts_with("alert") ? "alerts" : "contacts");
  }
  std::set<std::pair<std::string, std::int64_t>> logged;
  for (const auto& e : read_event_log(kafka_))
    logged.emplace(e.envelope.aggregate_id, e.envelope.version);
  EXPECT_EQ(changes, logged);
  // Live, filtered by topic: only alerts reach an alerts-only stream.
  SseClient alerts(api_->port(), operator_, "/v1/stream?topics=alerts");
  ASSERT_TRUE(alerts.wait_for_head());  // subscribed from now on
  send(http::verb::post, "/v1/contacts", R"({"name":"A","phone":"+351 912 345 678"})");
  send(http::verb::post, "/v1/alerts", R"({"level":"info","title":"live"})");
  const auto live = alerts.read(1);
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].event, "alerts");
  EXPECT_THAT(live[0].data, HasSubstr("alert.raised"));
}

// A Last-Event-ID older than the retention cannot resume without a gap: the client is told so
// with an explicit `reset` event (the oldest id it could resume after), then the live stream.
TEST_F(ReadSideTest, SseResumeOlderThanTheRetentionIsAnExplicitReset) {
  const auto written =
      write_synthetic_log(kafka_, {.contacts = 10, .calls_per_contact = 0, .alerts = 0});
  const auto count = [&] {
    return std::stoul(db_.query_value("SELECT count(*) FROM notifications"));
  };
  ASSERT_TRUE(eventually([&] { return count() == written; }, 30s));
  // What the projector's retention delete leaves behind (ProjectorTest checks it does this).
  db_.query_value(
      "WITH gone AS (DELETE FROM notifications WHERE id <= (SELECT min(id) + 4 FROM notifications)"
      " RETURNING id) UPDATE notification_retention SET pruned_through = (SELECT max(id) FROM "
      "gone)");
  ASSERT_EQ(count(), written - 5);
  const auto pruned =
      std::stoll(db_.query_value("SELECT pruned_through FROM notification_retention"));
  ASSERT_GT(pruned, 0);

  SseClient stale(api_->port(), operator_, "/v1/stream", pruned - 2);
  const auto first = stale.read(1);
  ASSERT_EQ(first.size(), 1u) << stale.head();
  EXPECT_EQ(first[0].event, "reset");
  EXPECT_THAT(first[0].data, HasSubstr("\"oldest_event_id\":" + std::to_string(pruned)));
  send(http::verb::post, "/v1/alerts", R"({"level":"info","title":"after the reset"})");
  const auto live = stale.read(1);
  ASSERT_EQ(live.size(), 1u);
  EXPECT_THAT(live[0].data, HasSubstr("alert.raised")) << "then the live stream";

  // Resuming from the oldest id it may: every row kept, no reset.
  SseClient fresh(api_->port(), operator_, "/v1/stream", pruned);
  const auto kept = fresh.read(written - 5 + 1);
  ASSERT_EQ(kept.size(), written - 5 + 1);
  for (const auto& e : kept) EXPECT_NE(e.event, "reset");
}

// A Last-Event-ID beyond every id there is (made up, or from another deployment or a restored
// database) would otherwise wait silently until ids pass it: it is a reset too.
TEST_F(ReadSideTest, SseResumeFromAnIdNotYetWrittenIsAnExplicitReset) {
  const auto written =
      write_synthetic_log(kafka_, {.contacts = 3, .calls_per_contact = 0, .alerts = 0});
  ASSERT_TRUE(eventually(
      [&] { return std::stoul(db_.query_value("SELECT count(*) FROM notifications")) == written; },
      30s));
  const auto max_id = std::stoll(db_.query_value("SELECT max(id) FROM notifications"));
  SseClient ahead(api_->port(), operator_, "/v1/stream", max_id + 1'000'000);
  const auto first = ahead.read(1);
  ASSERT_EQ(first.size(), 1u) << ahead.head();
  EXPECT_EQ(first[0].event, "reset");
  send(http::verb::post, "/v1/alerts", R"({"level":"info","title":"after the reset"})");
  const auto live = ahead.read(1);
  ASSERT_EQ(live.size(), 1u);
  EXPECT_THAT(live[0].data, HasSubstr("alert.raised")) << "then the live stream";
}

// A stream re-checks its key: once the key is revoked the stream ends with the reason, within
// a few seconds (the key cache's time), instead of receiving forever.
TEST_F(ReadSideTest, AStreamEndsOnceItsKeyIsRevoked) {
  const auto reader = api_->keys().create("soon-revoked", api::Role::kReader);
  SseClient stream(api_->port(), reader.token, "/v1/stream");
  ASSERT_TRUE(stream.wait_for_head()) << stream.head();
  ASSERT_TRUE(api_->keys().revoke(reader.record.id));
  const auto events = stream.read(1, 30s);
  ASSERT_EQ(events.size(), 1u) << stream.head();
  EXPECT_EQ(events[0].event, "error");
  EXPECT_THAT(events[0].data, HasSubstr("revoked"));
}

TEST_F(ReadSideTest, WebSocketSubscribesAndReceives) {
  asio::io_context ioc;
  websocket::stream<asio::ip::tcp::socket> ws(ioc);
  ws.next_layer().connect({asio::ip::make_address("127.0.0.1"), api_->port()});
  set_receive_timeout(ws.next_layer().native_handle(), 20s);
  ws.set_option(websocket::stream_base::decorator([this](websocket::request_type& req) {
    req.set(http::field::authorization, "Bearer " + operator_);
  }));
  ws.handshake("127.0.0.1", "/v1/ws");
  beast::flat_buffer buffer;
  ws.write(asio::buffer(std::string(R"({"subscribe":["weather"]})")));
  ws.read(buffer);
  EXPECT_THAT(beast::buffers_to_string(buffer.data()), HasSubstr("\"field\":\"subscribe\""));
  buffer.clear();
  // From the first notification of this test's database: no race with the subscription.
  ws.write(asio::buffer(std::string(R"({"subscribe":["alerts"],"last_event_id":0})")));
  send(http::verb::post, "/v1/contacts", R"({"name":"A","phone":"+351 912 345 678"})");
  const auto raised = send(http::verb::post, "/v1/alerts", R"({"level":"info","title":"ws"})");
  ws.read(buffer);
  const auto message = parse(beast::buffers_to_string(buffer.data()));
  ASSERT_EQ(str(message, "event"), "alerts") << beast::buffers_to_string(buffer.data());
  EXPECT_EQ(str(message["data"], "type"), "alert.raised");
  EXPECT_EQ(str(message["data"], "id"), str(parse(raised.body), "id"));
  EXPECT_GT(message["id"].GetInt64(), 0);
  ws.close(websocket::close_code::normal);
}

class SlowClientTest : public ReadSideTest {
 protected:
  SlowClientTest() : ReadSideTest(100) {}
};

TEST_F(SlowClientTest, AClientThatDoesNotReadIsDisconnectedWithAReasonAndStallsNoOne) {
  const auto written = write_synthetic_log(
      kafka_, {.contacts = 6000, .calls_per_contact = 5, .alerts = 0});  // ~7 MB of SSE
  const auto end = log_end_sum(kafka_);
  SseClient stuck(api_->port(), operator_, "/v1/stream", 0, true);  // connects, never reads
  SseClient healthy(api_->port(), operator_, "/v1/stream", 0);
  const auto all = healthy.read(written, 120s);
  EXPECT_EQ(all.size(), written) << "the healthy client got everything meanwhile";
  ASSERT_TRUE(eventually([&] { return checkpoint_sum(db_) == end; }, 60s));
  // Now drain the stuck one: its stream ends with the reason, after fewer events than exist.
  std::this_thread::sleep_for(6s);  // past the hub's 5 s grace for a full queue
  const auto got = stuck.read(written + 1, 60s);
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.back().event, "error");
  EXPECT_THAT(got.back().data, HasSubstr("too slow"));
  EXPECT_LT(got.size(), written + 1);
}

// What `command` prints on stdout (stderr goes to the test's log).
std::string run_and_capture(const std::string& command) {
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(command.c_str(), "r"), pclose);
  if (!pipe) throw std::runtime_error("cannot run " + command);
  std::string out;
  char chunk[4096];
  while (const auto n = fread(chunk, 1, sizeof chunk, pipe.get())) out.append(chunk, n);
  return out;
}

TEST_F(ReadSideTest, ThePythonAnalyticsExampleAgreesWithTheReadModels) {
  write_synthetic_log(kafka_, {.contacts = 40, .calls_per_contact = 5, .alerts = 12, .garbage = 2});
  const auto end = log_end_sum(kafka_);
  ASSERT_TRUE(eventually([&] { return checkpoint_sum(db_) == end; }, 60s, 100ms));
  const auto out = run_and_capture("/usr/bin/python3 " CAUCE_SOURCE_DIR
                                   "/examples/analytics/analytics.py --until-end"
                                   " --bootstrap-servers " +
                                   kafka_.bootstrap_servers + " --topic " + kafka_.events_topic);
  const auto report = parse(out);
  ASSERT_TRUE(report.IsObject()) << out;
  EXPECT_EQ(report["invalid"].GetInt(), 2) << "the garbage records";
  EXPECT_EQ(std::to_string(report["events"].GetInt64()),
            db_.query_value("SELECT count(*) FROM events"));
  // calls per operator per day, and alerts per level, as "key=count" lines on both sides.
  std::vector<std::string> from_python;
  for (const auto& op : report["calls_per_operator_per_day"].GetObject()) {
    for (const auto& day : op.value.GetObject()) {
      from_python.push_back(std::string(op.name.GetString()) + " " + day.name.GetString() + "=" +
                            std::to_string(day.value.GetInt()));
    }
  }
  for (const auto& level : report["alerts_per_level"].GetObject()) {
    from_python.push_back(std::string(level.name.GetString()) + "=" +
                          std::to_string(level.value.GetInt()));
  }
  std::sort(from_python.begin(), from_python.end());
  const auto from_sql = db_.query_value(R"(
      SELECT string_agg(line, ',' ORDER BY line COLLATE "C") FROM (
        SELECT format('%s %s=%s', coalesce(operator, '(none)'),
                      to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), count(*)) AS line
        FROM calls GROUP BY operator, to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')
        UNION ALL
        SELECT format('%s=%s', level, count(*)) FROM alerts GROUP BY level) lines)");
  std::string joined;
  for (const auto& line : from_python) joined += (joined.empty() ? "" : ",") + line;
  EXPECT_EQ(joined, from_sql);
  EXPECT_FALSE(from_python.empty());
}

}  // namespace
}  // namespace cauce::testing
