// The write side end to end on the real broker: HTTP command -> CommandBus -> cauce.commands ->
// CommandProcessor (one Kafka transaction per batch) -> cauce.events + reply -> HTTP answer.
// Every test reads the event log back with a plain read_committed consumer and checks every
// event against schemas/.
#include <atomic>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cauce/commands/command_bus.hpp>
#include <cauce/commands/processor.hpp>
#include <cauce/core/kafka_admin.hpp>
#include <cauce/core/kafka_client.hpp>

#include "event_log.hpp"
#include "fixtures.hpp"
#include "in_process_api.hpp"

namespace cauce::testing {
namespace {

using ::testing::HasSubstr;

std::string field(const std::string& json, const char* name) {
  rapidjson::Document d;
  d.Parse(json.c_str());
  if (!d.IsObject() || !d.HasMember(name)) return "";
  const auto& v = d[name];
  if (v.IsString()) return v.GetString();
  if (v.IsInt64()) return std::to_string(v.GetInt64());
  return "";
}

// A problem+json body without its request_id (each answer has its own).
std::string problem_body(const std::string& json) {
  rapidjson::Document d;
  d.Parse(json.c_str());
  if (!d.IsObject()) return json;
  d.RemoveMember("request_id");
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  d.Accept(writer);
  return buffer.GetString();
}

class CommandsTest : public ::testing::Test {
 protected:
  CommandsTest() {
    commands_.reply_timeout_ms = 10000;
    commands_.processor_group = unique_name("processor");
  }

  void SetUp() override {
    core::KafkaAdmin(kafka_).ensure_topics(core::cauce_topics(kafka_), kafka_.partitions, 1);
    processor_ = start_processor();
    bus_ = std::make_unique<commands::CommandBus>(
        commands::BusOptions{.kafka = kafka_, .commands = commands_}, registry_);
    bus_->start();
    api_ = std::make_unique<InProcessApi>(
        db_.config(), std::vector<std::unique_ptr<api::DependencyCheck>>{},
        [this](api::Router& router, api::ApiKeys&) {
          api::add_command_routes(router, *bus_,
                                  static_cast<std::uint32_t>(commands_.reply_timeout_ms));
        });
    operator_ = api_->keys().create("test-operator", api::Role::kOperator).token;
  }

  void TearDown() override {
    api_.reset();
    bus_.reset();
    processor_.reset();
  }

  std::unique_ptr<commands::CommandProcessor> start_processor(
      std::vector<std::int32_t> static_partitions = {}) {
    auto p = std::make_unique<commands::CommandProcessor>(
        commands::ProcessorOptions{.kafka = kafka_,
                                   .commands = commands_,
                                   .static_partitions = std::move(static_partitions),
                                   .before_commit = before_commit_},
        registry_);
    p->start();
    const auto expected = p->status().empty() ? kafka_.partitions : p->status().size();
    EXPECT_TRUE(eventually(
        [&] {
          const auto s = p->status();
          return s.size() == static_cast<std::size_t>(expected) &&
                 std::all_of(s.begin(), s.end(), [](const auto& x) { return x.ready; });
        },
        60s));
    return p;
  }

  HttpResult send(http::verb method, const std::string& target, const std::string& body,
                  std::vector<std::pair<std::string, std::string>> headers = {},
                  const std::string& token = "") {
    headers.emplace_back("Authorization", "Bearer " + (token.empty() ? operator_ : token));
    return http_request(api_->port(), method, target, body, headers, 30s);
  }

  std::string register_contact(const std::string& name = "Ana Lima") {
    const auto r = send(http::verb::post, "/v1/contacts",
                        R"({"name":")" + name + R"(","phone":"+351 912 345 678"})");
    EXPECT_EQ(r.status, 201u) << r.body;
    return field(r.body, "id");
  }

  std::vector<LoggedEvent> log_checked() {
    auto events = read_event_log(kafka_);
    EXPECT_THAT(schema_problems(events), ::testing::IsEmpty());
    return events;
  }

  static std::size_t count_type(const std::vector<LoggedEvent>& events, const std::string& type,
                                const std::string& aggregate_id = "") {
    return static_cast<std::size_t>(std::count_if(events.begin(), events.end(), [&](const auto& e) {
      return e.envelope.type == type &&
             (aggregate_id.empty() || e.envelope.aggregate_id == aggregate_id);
    }));
  }

  // 200 updates race with the same If-Match: exactly one wins, the others are 412.
  void race_on_one_version() {
    const auto id = register_contact();
    constexpr int kWriters = 200;
    std::vector<std::future<unsigned>> results;
    std::atomic<int> ready{0};
    for (int i = 0; i < kWriters; ++i) {
      results.push_back(std::async(std::launch::async, [&, i] {
        ++ready;
        while (ready < kWriters) std::this_thread::yield();
        const auto r =
            send(http::verb::patch, "/v1/contacts/" + id,
                 R"({"notes":"writer )" + std::to_string(i) + R"("})", {{"If-Match", "\"1\""}});
        if (r.status == 412) {
          EXPECT_EQ(field(r.body, "current_version"), "2") << r.body;
        }
        return r.status;
      }));
    }
    std::map<unsigned, int> by_status;
    for (auto& f : results) ++by_status[f.get()];
    EXPECT_EQ(by_status[200], 1);
    EXPECT_EQ(by_status[412], kWriters - 1);
    const auto events = log_checked();
    EXPECT_EQ(count_type(events, "contact.updated", id), 1u);
  }

  // Clients keep sending keyed commands while a second processor joins the group and the first
  // one leaves it (stopped, not destroyed: the bus may still point at it): the partitions move
  // twice under load, and every command is decided once.
  void move_partitions_under_load() {
    constexpr int kClients = 8;
    std::atomic<bool> done{false};
    std::mutex mutex;
    std::map<std::string, std::string> acknowledged;  // Idempotency-Key -> contact id
    std::vector<std::thread> clients;
    for (int c = 0; c < kClients; ++c) {
      clients.emplace_back([&, c] {
        for (int i = 0; !done; ++i) {
          const auto key = "move-" + std::to_string(c) + "-" + std::to_string(i);
          const std::string body =
              R"({"name":"Client )" + std::to_string(c) + R"(","phone":"+351912345678"})";
          // A 503 (no answer during a move) is retried with the same key until it is decided.
          for (int attempt = 0; attempt < 20; ++attempt) {
            const auto r = send(http::verb::post, "/v1/contacts", body, {{"Idempotency-Key", key}});
            if (r.status == 201u) {
              const std::lock_guard lock(mutex);
              acknowledged[key] = field(r.body, "id");
              break;
            }
            ASSERT_EQ(r.status, 503u) << r.body;
          }
        }
      });
    }
    std::this_thread::sleep_for(2s);
    auto second = std::make_unique<commands::CommandProcessor>(
        commands::ProcessorOptions{.kafka = kafka_, .commands = commands_}, registry_);
    second->start();
    const auto ready = [](const commands::CommandProcessor& p) {
      const auto s = p.status();
      return std::count_if(s.begin(), s.end(), [](const auto& x) { return x.ready; });
    };
    EXPECT_TRUE(eventually(
        [&] { return ready(*processor_) + ready(*second) == 3 && ready(*second) > 0; }, 60s))
        << "the group shares the partitions";
    std::this_thread::sleep_for(2s);
    processor_->stop();  // the first leaves: the second owns everything
    std::this_thread::sleep_for(2s);
    done = true;
    for (auto& t : clients) t.join();

    const auto events = log_checked();
    std::map<std::string, int> registered;
    for (const auto& e : events) ++registered[e.envelope.aggregate_id];
    ASSERT_GT(acknowledged.size(), 20u);
    for (const auto& [key, id] : acknowledged) EXPECT_EQ(registered[id], 1) << key;
    EXPECT_EQ(events.size(), registered.size()) << "no contact registered twice";
    bus_->set_local(nullptr);
    processor_ = std::move(second);
  }

  TempDatabase db_;
  core::KafkaConfig kafka_ = test_kafka(3);
  core::CommandsConfig commands_;
  std::function<void()> before_commit_;  // fault injection (ProcessorOptions::before_commit)
  prometheus::Registry registry_;
  std::unique_ptr<commands::CommandProcessor> processor_;
  std::unique_ptr<commands::CommandBus> bus_;
  std::unique_ptr<InProcessApi> api_;
  std::string operator_;
};

TEST_F(CommandsTest, EveryCommandRouteAppendsSchemaValidEvents) {
  auto r = send(http::verb::post, "/v1/contacts",
                R"({"name":"Ana Lima","phone":"+351 912 345 678","email":"ana@example.com",
                    "tags":["vip"],"notes":"prefers mornings"})",
                {{"X-Correlation-Id", "corr-1"}});
  ASSERT_EQ(r.status, 201u) << r.body;
  const auto id = field(r.body, "id");
  EXPECT_EQ(field(r.body, "version"), "1");
  EXPECT_EQ(r.headers["location"], "/v1/contacts/" + id);
  EXPECT_EQ(r.headers["etag"], "\"1\"");
  EXPECT_THAT(r.headers["cauce-position"], ::testing::MatchesRegex("[0-9]+:[0-9]+"));
  EXPECT_EQ(r.headers["x-correlation-id"], "corr-1");

  r = send(http::verb::patch, "/v1/contacts/" + id, R"({"name":"Ana M. Lima"})",
           {{"If-Match", "\"1\""}});
  EXPECT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.headers["etag"], "\"2\"");
  r = send(http::verb::post, "/v1/contacts/" + id + "/calls",
           R"({"outcome":"answered","duration_s":95,"operator":"op-7"})");
  EXPECT_EQ(r.status, 201u) << r.body;
  EXPECT_TRUE(commands::is_uuid(field(r.body, "call_id"))) << r.body;
  r = send(http::verb::post, "/v1/contacts/" + id + "/assign", R"({"operator":"op-7"})");
  EXPECT_EQ(r.status, 200u) << r.body;
  r = send(http::verb::post, "/v1/contacts/" + id + "/archive", "");
  EXPECT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(field(r.body, "version"), "5");

  r = send(http::verb::post, "/v1/alerts", R"({"level":"warning","title":"Queue over 50"})");
  ASSERT_EQ(r.status, 201u) << r.body;
  const auto alert = field(r.body, "id");
  EXPECT_EQ(
      send(http::verb::post, "/v1/alerts/" + alert + "/acknowledge", R"({"note":"on it"})").status,
      200u);
  EXPECT_EQ(
      send(http::verb::post, "/v1/alerts/" + alert + "/escalate", R"({"level":"critical"})").status,
      200u);
  EXPECT_EQ(send(http::verb::post, "/v1/alerts/" + alert + "/close", R"({"resolution":"staffed"})")
                .status,
            200u);

  r = send(http::verb::post, "/v1/reports",
           R"({"title":"Daily calls","source_url":"https://example.com/daily.csv"})");
  EXPECT_EQ(r.status, 202u) << r.body;
  EXPECT_EQ(field(r.body, "status"), "requested");
  EXPECT_EQ(send(http::verb::post, "/v1/backups", "{}").status, 403u) << "backups are admin";
  EXPECT_EQ(send(http::verb::post, "/v1/backups", "{}", {}, api_->admin_token()).status, 202u);

  const auto events = log_checked();
  std::vector<std::string> types;
  for (const auto& e : events) types.push_back(e.envelope.type);
  EXPECT_THAT(
      types, ::testing::UnorderedElementsAre(
                 "contact.registered", "contact.updated", "contact.call_logged", "contact.assigned",
                 "contact.archived", "alert.raised", "alert.acknowledged", "alert.escalated",
                 "alert.closed", "report.requested", "backup.requested"));
  std::vector<std::int64_t> versions;
  for (const auto& e : events) {
    if (e.envelope.aggregate_id != id) continue;
    versions.push_back(e.envelope.version);
    EXPECT_EQ(e.envelope.actor, "test-operator");
    EXPECT_EQ(e.envelope.causation_id, e.envelope.command_id);
  }
  EXPECT_THAT(versions, ::testing::ElementsAre(1, 2, 3, 4, 5)) << "one partition, in order";
  const auto registered = std::find_if(events.begin(), events.end(), [](const auto& e) {
    return e.envelope.type == "contact.registered";
  });
  ASSERT_NE(registered, events.end());
  EXPECT_EQ(registered->envelope.correlation_id, "corr-1");
}

// W3C Trace Context across processes (issue 18, part 6): the API's span goes on the command record
// (header and envelope), the processor decides it in a child span, and every event of the command
// carries that span, in the envelope and as a `traceparent` header.
TEST_F(CommandsTest, ARequestsTraceGoesOnTheCommandRecordAndEveryEvent) {
  const std::string incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  const auto r =
      send(http::verb::post, "/v1/contacts", R"({"name":"Ana Lima","phone":"+351 912 345 678"})",
           {{"traceparent", incoming}, {"Idempotency-Key", "traced"}});
  ASSERT_EQ(r.status, 201u) << r.body;
  const auto api = core::TraceParent::parse(header(r, "traceparent"));
  ASSERT_TRUE(api) << header(r, "traceparent");
  EXPECT_EQ(api->trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_NE(api->span_id(), "00f067aa0ba902b7");
  EXPECT_TRUE(api->sampled());

  const auto id = field(r.body, "id");
  const auto events = log_checked();  // headers agree with envelopes (schema_problems)
  std::string command_id;
  for (const auto& e : events) {
    if (e.envelope.aggregate_id != id) continue;
    command_id = e.envelope.command_id;
    EXPECT_EQ(e.envelope.trace_parent.trace_id(), api->trace_id());
    EXPECT_NE(e.envelope.trace_parent.span_id(), api->span_id()) << "the processor's own span";
    EXPECT_TRUE(e.envelope.trace_parent.sampled());
    EXPECT_EQ(e.headers.at("traceparent"), e.envelope.trace_parent.text());
  }
  ASSERT_FALSE(command_id.empty()) << "no event of " << id;
  bool found = false;
  for (const auto& record : read_topic(kafka_, kafka_.commands_topic)) {
    if (record.headers.at(commands::header::kCommandId) != command_id) continue;
    found = true;
    EXPECT_EQ(record.headers.at("traceparent"), api->text()) << "the API's span";
    EXPECT_EQ(commands::command_from_json(record.value).trace_parent, *api);
  }
  EXPECT_TRUE(found) << "the command went through the commands topic";
}

TEST_F(CommandsTest, AnIdempotencyKeyAppliesOnceAcrossConcurrentRetriesAndRestarts) {
  const std::string body = R"({"name":"Rui Sousa","phone":"+351912345678"})";
  const std::vector<std::pair<std::string, std::string>> key = {{"Idempotency-Key", "order-42"}};
  constexpr int kRetries = 100;
  std::vector<std::future<HttpResult>> results;
  for (int i = 0; i < kRetries; ++i) {
    results.push_back(std::async(
        std::launch::async, [&] { return send(http::verb::post, "/v1/contacts", body, key); }));
  }
  std::set<std::string> ids;
  int replayed = 0;
  for (auto& f : results) {
    const auto r = f.get();
    EXPECT_EQ(r.status, 201u) << r.body;
    ids.insert(field(r.body, "id"));
    replayed += r.headers.contains("idempotent-replayed") ? 1 : 0;
  }
  EXPECT_EQ(ids.size(), 1u);
  EXPECT_EQ(replayed, kRetries - 1);

  // A new processor rebuilds the applied command ids from the log: still a replay.
  processor_.reset();
  processor_ = start_processor();
  auto again = send(http::verb::post, "/v1/contacts", body, key);
  EXPECT_EQ(again.status, 201u) << again.body;
  EXPECT_EQ(again.headers["idempotent-replayed"], "true");
  EXPECT_EQ(field(again.body, "id"), *ids.begin());
  EXPECT_EQ(again.headers["etag"], "\"1\"");

  const auto other = send(http::verb::post, "/v1/contacts",
                          R"({"name":"Someone Else","phone":"+351912345678"})", key);
  EXPECT_EQ(other.status, 422u) << other.body;
  EXPECT_THAT(other.body, HasSubstr("Idempotency-Key"));

  const auto events = log_checked();
  EXPECT_EQ(count_type(events, "contact.registered"), 1u);
}

TEST_F(CommandsTest, ADecidedRejectionWithAKeyAnswersTheSameAcrossRetriesAndRestarts) {
  const auto id = commands::uuid_v7(1'700'000'000'000);
  const std::string call = R"({"outcome":"answered","duration_s":30})";
  const auto key = [](const std::string& k) {
    return std::vector<std::pair<std::string, std::string>>{{"Idempotency-Key", k}};
  };
  // 404: a call on a contact that does not exist yet.
  const auto first = send(http::verb::post, "/v1/contacts/" + id + "/calls", call, key("call-1"));
  ASSERT_EQ(first.status, 404u) << first.body;
  EXPECT_FALSE(first.headers.contains("idempotent-replayed"));
  // 409: registering an id that exists; 412: an update against a stale version.
  const std::string reg = R"({"id":")" + id + R"(","name":"Ana","phone":"+351912345678"})";
  ASSERT_EQ(send(http::verb::post, "/v1/contacts", reg, key("reg-1")).status, 201u);
  const auto conflict = send(http::verb::post, "/v1/contacts", reg, key("reg-2"));
  ASSERT_EQ(conflict.status, 409u) << conflict.body;
  auto stale_headers = key("patch-1");
  stale_headers.emplace_back("If-Match", "\"7\"");
  const auto stale =
      send(http::verb::patch, "/v1/contacts/" + id, R"({"name":"Ana L."})", stale_headers);
  ASSERT_EQ(stale.status, 412u) << stale.body;
  EXPECT_THAT(stale.body, HasSubstr(R"("current_version":1)"));
  // Without a key a rejection is not remembered: the same request is decided again.
  const auto unkeyed =
      send(http::verb::post, "/v1/contacts/" + id + "/archive", R"({"reason":"gone"})");
  ASSERT_EQ(unkeyed.status, 200u) << unkeyed.body;  // version 2 now

  const auto expect_replayed = [&](const char* what) {
    SCOPED_TRACE(what);
    const auto a = send(http::verb::post, "/v1/contacts/" + id + "/calls", call, key("call-1"));
    EXPECT_EQ(a.status, 404u) << a.body;
    EXPECT_EQ(problem_body(a.body), problem_body(first.body));
    EXPECT_EQ(a.headers.at("idempotent-replayed"), "true");
    const auto b = send(http::verb::post, "/v1/contacts", reg, key("reg-2"));
    EXPECT_EQ(b.status, 409u) << b.body;
    EXPECT_EQ(problem_body(b.body), problem_body(conflict.body));
    const auto c =
        send(http::verb::patch, "/v1/contacts/" + id, R"({"name":"Ana L."})", stale_headers);
    EXPECT_EQ(c.status, 412u) << c.body;
    EXPECT_EQ(problem_body(c.body), problem_body(stale.body))
        << "the version it was decided against, not today's";
    EXPECT_EQ(c.headers.at("etag"), "\"1\"");
    // The same key with another request is still a reused key.
    const auto other = send(http::verb::post, "/v1/contacts/" + id + "/calls",
                            R"({"outcome":"no_answer","duration_s":0})", key("call-1"));
    EXPECT_EQ(other.status, 422u) << other.body;
  };
  expect_replayed("same processor");
  processor_.reset();
  processor_ = start_processor();
  expect_replayed("after a restart: rebuilt from the outcomes topic");

  const auto remembered = read_topic(kafka_, kafka_.outcomes_topic);
  EXPECT_EQ(remembered.size(), 3u) << "one record per rejected keyed command, none for replays";
  const auto events = log_checked();
  EXPECT_EQ(count_type(events, "contact.call_logged"), 0u);
  EXPECT_EQ(events.size(), 2u) << "registered + archived";
}

TEST_F(CommandsTest, AZombieProcessorIsFencedAndAppendsNothing) {
  processor_.reset();  // this test owns partitions by hand, without a group
  commands_.instance_id = unique_name("instance");
  auto old_owner = start_processor({0, 1, 2});
  const auto first = register_contact("Before Takeover");
  auto new_owner = start_processor({0, 1, 2});  // same transactional id: fences the old one
  // Both now read every command; only the new owner may append.
  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i)
    ids.push_back(register_contact("After Takeover " + std::to_string(i)));
  // The old owner learns it was fenced when it tries to commit what it decided.
  EXPECT_TRUE(eventually(
      [&] {
        const auto s = old_owner->status();
        return std::any_of(s.begin(), s.end(), [](const auto& p) { return p.fenced; });
      },
      30s));
  for (const auto& p : new_owner->status()) EXPECT_FALSE(p.fenced) << p.partition;
  const auto events = log_checked();
  EXPECT_EQ(count_type(events, "contact.registered", first), 1u);
  for (const auto& id : ids) EXPECT_EQ(count_type(events, "contact.registered", id), 1u) << id;
  EXPECT_EQ(events.size(), 7u);
}

struct BadInput {
  const char* name;
  http::verb method;
  std::string target;  // {id} is replaced by a registered contact's id
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  unsigned status;
  std::string problem_field;  // "" when the problem has no field list
};

TEST_F(CommandsTest, BadInputIsAProblemAndAppendsNothing) {
  const auto id = register_contact();
  ASSERT_EQ(send(http::verb::post, "/v1/contacts/" + id + "/calls",
                 R"({"outcome":"busy","duration_s":0})")
                .status,
            201u);
  const auto archived = register_contact("Archived One");
  ASSERT_EQ(send(http::verb::post, "/v1/contacts/" + archived + "/archive", "").status, 200u);
  const auto before = read_event_log(kafka_).size();
  const std::string missing = "0195a0c4-0000-7000-8000-000000000000";
  const std::vector<BadInput> cases = {
      {"malformed JSON", http::verb::post, "/v1/contacts", R"({"name": )", {}, 400, "body"},
      {"not an object", http::verb::post, "/v1/contacts", "[1]", {}, 400, "body"},
      // Issue 11: these crashed the server or stopped every read model.
      {"nested 200,000 deep",
       http::verb::post,
       "/v1/contacts",
       std::string(200'000, '[') + std::string(200'000, ']'),
       {},
       400,
       "body"},
      {"nested 33 deep",
       http::verb::post,
       "/v1/contacts",
       R"({"name":"A","phone":"+351912345678","notes":)" + std::string(32, '[') +
           std::string(32, ']') + "}",
       {},
       400,
       "body"},
      {"U+0000 in a string",
       http::verb::post,
       "/v1/contacts",
       R"({"name":"A\u0000B","phone":"+351912345678"})",
       {},
       400,
       "name"},
      {"a lone surrogate",
       http::verb::patch,
       "/v1/contacts/{id}",
       R"({"notes":"x\udc00y"})",
       {},
       400,
       "notes"},
      {"a duplicate key",
       http::verb::post,
       "/v1/contacts",
       R"({"name":"A","name":"B","phone":"+351912345678"})",
       {},
       400,
       "name"},
      {"U+0000 in a tag",
       http::verb::patch,
       "/v1/contacts/{id}",
       R"({"tags":["ok","\u0000"]})",
       {},
       400,
       "tags[1]"},
      {"wrong type",
       http::verb::post,
       "/v1/contacts",
       R"({"name":7,"phone":"+351912345678"})",
       {},
       400,
       "name"},
      {"unknown field",
       http::verb::post,
       "/v1/contacts",
       R"({"name":"A","phone":"+351912345678","nickname":"x"})",
       {},
       400,
       "nickname"},
      {"missing field", http::verb::post, "/v1/contacts", R"({"name":"A"})", {}, 400, "phone"},
      {"oversize notes",
       http::verb::post,
       "/v1/contacts",
       R"({"name":"A","phone":"+351912345678","notes":")" + std::string(5000, 'x') + "\"}",
       {},
       400,
       "notes"},
      {"too many tags",
       http::verb::patch,
       "/v1/contacts/{id}",
       R"({"tags":["a","b","c","d","e","f","g","h","i","j","k","l","m","n","o","p","q","r","s","t","u"]})",
       {},
       400,
       "tags"},
      {"bad phone",
       http::verb::post,
       "/v1/contacts",
       R"({"name":"A","phone":"call me"})",
       {},
       400,
       "phone"},
      {"bad email",
       http::verb::patch,
       "/v1/contacts/{id}",
       R"({"email":"not-an-email"})",
       {},
       400,
       "email"},
      {"bad URL",
       http::verb::post,
       "/v1/reports",
       R"({"title":"R","source_url":"ftp://example.com/x"})",
       {},
       400,
       "source_url"},
      {"bad UUID in the path",
       http::verb::patch,
       "/v1/contacts/not-a-uuid",
       R"({"name":"B"})",
       {},
       400,
       "id"},
      {"bad UUID in the body",
       http::verb::post,
       "/v1/contacts",
       R"({"id":"xyz","name":"A","phone":"+351912345678"})",
       {},
       400,
       "id"},
      {"bad If-Match",
       http::verb::patch,
       "/v1/contacts/{id}",
       R"({"name":"B"})",
       {{"If-Match", "\"seven\""}},
       400,
       "If-Match"},
      {"stale If-Match",
       http::verb::patch,
       "/v1/contacts/{id}",
       R"({"name":"B"})",
       {{"If-Match", "\"1\""}},
       412,
       "If-Match"},
      {"empty Idempotency-Key",
       http::verb::post,
       "/v1/contacts",
       R"({"name":"A","phone":"+351912345678"})",
       {{"Idempotency-Key", ""}},
       400,
       "Idempotency-Key"},
      {"long Idempotency-Key",
       http::verb::post,
       "/v1/contacts",
       R"({"name":"A","phone":"+351912345678"})",
       {{"Idempotency-Key", std::string(201, 'k')}},
       400,
       "Idempotency-Key"},
      {"unknown contact",
       http::verb::patch,
       "/v1/contacts/" + missing,
       R"({"name":"B"})",
       {},
       404,
       "id"},
      {"unknown alert",
       http::verb::post,
       "/v1/alerts/" + missing + "/close",
       R"({"resolution":"x"})",
       {},
       404,
       "id"},
      {"archived contact",
       http::verb::patch,
       "/v1/contacts/" + archived,
       R"({"name":"B"})",
       {},
       409,
       "status"},
      {"existing id",
       http::verb::post,
       "/v1/contacts",
       R"({"id":")" + id + R"(","name":"A","phone":"+351912345678"})",
       {},
       409,
       "id"},
      {"bad call outcome",
       http::verb::post,
       "/v1/contacts/{id}/calls",
       R"({"outcome":"hung_up","duration_s":3})",
       {},
       400,
       "outcome"},
      {"bad alert level",
       http::verb::post,
       "/v1/alerts",
       R"({"level":"panic","title":"x"})",
       {},
       400,
       "level"},
      {"wrong content type",
       http::verb::post,
       "/v1/contacts",
       R"({"name":"A"})",
       {{"Content-Type", "text/plain"}},
       415,
       ""},
  };
  for (const auto& c : cases) {
    auto target = c.target;
    if (const auto at = target.find("{id}"); at != std::string::npos) target.replace(at, 4, id);
    auto r = send(c.method, target, c.body, c.headers);
    EXPECT_EQ(r.status, c.status) << c.name << ": " << r.body;
    EXPECT_EQ(r.headers["content-type"], "application/problem+json") << c.name;
    if (!c.problem_field.empty()) {
      EXPECT_THAT(r.body, HasSubstr(R"("field":")" + c.problem_field + "\""))
          << c.name << ": " << r.body;
    }
  }
  const auto r = send(http::verb::post, "/v1/contacts", std::string(2 * 1024 * 1024, ' '));
  EXPECT_EQ(r.status, 413u);
  EXPECT_EQ(log_checked().size(), before) << "no bad input appended anything";
}

// Records on the commands topic that cauce did not write: garbage, invalid ids, reply
// partitions that do not exist. They are skipped and never block the partition.
TEST_F(CommandsTest, ForeignRecordsOnTheCommandsTopicNeverBlockAPartition) {
  const auto id = register_contact();
  std::string err;
  std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
  ASSERT_EQ(conf->set("bootstrap.servers", kafka_.bootstrap_servers, err), RdKafka::Conf::CONF_OK);
  ASSERT_EQ(conf->set("partitioner", "murmur2_random", err), RdKafka::Conf::CONF_OK);
  std::unique_ptr<RdKafka::Producer> producer(RdKafka::Producer::create(conf.get(), err));
  ASSERT_TRUE(producer) << err;
  commands::CommandEnvelope bad_id;
  bad_id.command_id = "not-a-uuid";
  bad_id.type = "contact.update";
  bad_id.aggregate_type = "contact";
  bad_id.aggregate_id = id;
  bad_id.actor = "intruder";
  bad_id.correlation_id = "x";
  bad_id.data = R"({"name":"Hijacked"})";
  for (const auto& [value, reply_partition] :
       std::vector<std::pair<std::string, std::string>>{{"not json at all", "999"},
                                                        {commands::to_json(bad_id), "-1"},
                                                        {commands::to_json(bad_id), "x"}}) {
    ASSERT_EQ(core::kafka_produce(*producer, kafka_.commands_topic, RdKafka::Topic::PARTITION_UA,
                                  id, value,
                                  {{commands::header::kReplyInstance, "someone"},
                                   {commands::header::kReplyPartition, reply_partition},
                                   {commands::header::kReplyToken, "1"}}),
              RdKafka::ERR_NO_ERROR);
  }
  ASSERT_EQ(producer->flush(10000), RdKafka::ERR_NO_ERROR);

  const auto r = send(http::verb::patch, "/v1/contacts/" + id, R"({"name":"Still Mine"})");
  EXPECT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.headers.at("etag"), "\"2\"");
  const auto events = log_checked();
  EXPECT_EQ(events.size(), 2u) << "registered + the one real update";

  // The record that is not a command is parked as it came, with where it came from and why;
  // the two decodable ones were answered (invalid ids), not parked.
  const auto dead = read_topic(kafka_, kafka_.dead_letters_topic);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].value, "not json at all");
  EXPECT_EQ(dead[0].key, id);
  EXPECT_EQ(dead[0].headers.at(commands::header::kReplyPartition), "999");
  EXPECT_THAT(dead[0].headers.at(commands::header::kDeadLetterSource),
              ::testing::StartsWith(kafka_.commands_topic + ":"));
  EXPECT_FALSE(dead[0].headers.at(commands::header::kDeadLetterError).empty());
}

TEST_F(CommandsTest, ARebuildWaitsForATransactionStillOpenOnTheEventLog) {
  // Someone else's transaction (a zombie's, say) holds an event of contact `id` open.
  const auto id = commands::uuid_v7(1'700'000'000'000);
  auto conf = core::kafka_conf(kafka_, {{"transactional.id", unique_name("other-writer")},
                                        {"partitioner", "murmur2_random"}});
  std::string err;
  std::unique_ptr<RdKafka::Producer> other(RdKafka::Producer::create(conf.get(), err));
  ASSERT_TRUE(other) << err;
  core::kafka_check(other->init_transactions(10000), "init_transactions");
  core::kafka_check(other->begin_transaction(), "begin_transaction");
  commands::EventEnvelope e;
  e.event_id = commands::uuid_v7(1'700'000'000'000);
  e.type = "contact.registered";
  e.aggregate_type = "contact";
  e.aggregate_id = id;
  e.version = 1;
  e.occurred_at_us = 1'700'000'000'000'000;
  e.command_id = commands::uuid_from_name("registered elsewhere");
  e.correlation_id = "c";
  e.causation_id = e.command_id;
  e.actor = "other";
  e.data = R"({"name":"Ana","phone":"+351912345678","tags":[]})";
  ASSERT_EQ(core::kafka_produce(*other, kafka_.events_topic, RdKafka::Topic::PARTITION_UA, id,
                                commands::to_json(e), {}),
            RdKafka::ERR_NO_ERROR);
  ASSERT_EQ(other->flush(10000), RdKafka::ERR_NO_ERROR);

  // A processor taking the partitions now must not decide on a state that misses it.
  processor_.reset();
  auto p = std::make_unique<commands::CommandProcessor>(
      commands::ProcessorOptions{.kafka = kafka_, .commands = commands_}, registry_);
  p->start();
  const auto ready_count = [&] {
    const auto s = p->status();
    return std::count_if(s.begin(), s.end(), [](const auto& x) { return x.ready; });
  };
  ASSERT_TRUE(eventually([&] { return ready_count() == 2; }, 60s));
  std::this_thread::sleep_for(2s);
  EXPECT_EQ(ready_count(), 2) << "the partition with the open transaction waits";

  core::kafka_check(other->commit_transaction(10000), "commit_transaction");
  ASSERT_TRUE(eventually([&] { return ready_count() == 3; }, 30s));
  // The state includes the event committed meanwhile: version 1 exists, the update is version 2.
  const auto r = send(http::verb::patch, "/v1/contacts/" + id, R"({"name":"Ana L."})",
                      {{"If-Match", "\"1\""}});
  EXPECT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.headers.at("etag"), "\"2\"");
  processor_ = std::move(p);
}

TEST_F(CommandsTest, ConcurrentPatchesWithTheSameIfMatchApplyExactlyOnce) { race_on_one_version(); }

TEST_F(CommandsTest, PartitionsMovingBetweenProcessorsUnderLoadDecideEveryCommandOnce) {
  move_partitions_under_load();
}

// A fixture's tests on the shorter path, where the API hands its commands to the processor in
// its process instead of the commands topic.
template <typename Fixture>
class OnTheLocalPath : public Fixture {
 protected:
  void SetUp() override {
    Fixture::SetUp();
    this->bus_->set_local(this->processor_.get());
  }
  void TearDown() override {
    this->api_.reset();
    this->bus_.reset();  // before the processor it points at
    this->processor_.reset();
  }
};

// The same guarantees on the shorter path.
using LocalPathTest = OnTheLocalPath<CommandsTest>;

TEST_F(LocalPathTest, ConcurrentPatchesWithTheSameIfMatchApplyExactlyOnce) {
  race_on_one_version();
}

TEST_F(LocalPathTest, PartitionsMovingUnderLoadDecideEveryCommandOnce) {
  move_partitions_under_load();
}

TEST_F(LocalPathTest, CommandsTakeTheShorterPathAndRetriesStillReplay) {
  const auto id = register_contact();
  const std::vector<std::pair<std::string, std::string>> key = {{"Idempotency-Key", "call-7"}};
  const std::string call = R"({"outcome":"answered","duration_s":12})";
  const auto first = send(http::verb::post, "/v1/contacts/" + id + "/calls", call, key);
  ASSERT_EQ(first.status, 201u) << first.body;
  const auto again = send(http::verb::post, "/v1/contacts/" + id + "/calls", call, key);
  EXPECT_EQ(again.status, 201u) << again.body;
  EXPECT_EQ(again.headers.at("idempotent-replayed"), "true");
  EXPECT_EQ(field(again.body, "call_id"), field(first.body, "call_id"));
  EXPECT_FALSE(first.headers.at("cauce-position").empty());
  // Nothing went through the commands topic.
  EXPECT_TRUE(read_topic(kafka_, kafka_.commands_topic).empty());
  const auto events = log_checked();
  EXPECT_EQ(count_type(events, "contact.call_logged", id), 1u);
}

// Every other commit fails as if the broker refused it (after the events, replies and offsets
// were sent): the lane aborts, rolls its partitions back by rebuilding them from the log and
// decides the commands again. Nothing may be decided twice or answered twice.
class InjectedAbortTest : public CommandsTest {
 protected:
  InjectedAbortTest() {
    before_commit_ = [this] {
      if (commits_.fetch_add(1) % 2 == 1) {
        ++aborted_;
        throw core::KafkaError("injected: the broker refused the commit", true, false, true);
      }
    };
  }

  // Keyed registrations from several clients, retried with the same key on a 503 until
  // decided: each acknowledged once, each in the log once.
  void registrations_are_exact() {
    constexpr int kClients = 6;
    constexpr int kEach = 10;
    std::mutex mutex;
    std::map<std::string, std::string> acknowledged;  // key -> contact id
    std::vector<std::thread> clients;
    for (int c = 0; c < kClients; ++c) {
      clients.emplace_back([&, c] {
        for (int i = 0; i < kEach; ++i) {
          const auto key = "abort-" + std::to_string(c) + "-" + std::to_string(i);
          for (int attempt = 0; attempt < 20; ++attempt) {
            const auto r =
                send(http::verb::post, "/v1/contacts",
                     R"({"name":"Client","phone":"+351912345678"})", {{"Idempotency-Key", key}});
            if (r.status == 201u) {
              const std::lock_guard lock(mutex);
              EXPECT_TRUE(acknowledged.emplace(key, field(r.body, "id")).second) << key;
              break;
            }
            ASSERT_EQ(r.status, 503u) << r.body;
          }
        }
      });
    }
    for (auto& t : clients) t.join();
    EXPECT_EQ(acknowledged.size(), static_cast<std::size_t>(kClients * kEach));
    const auto events = log_checked();
    std::map<std::string, int> registered;
    for (const auto& e : events) {
      if (e.envelope.type == "contact.registered") ++registered[e.envelope.aggregate_id];
    }
    for (const auto& [key, id] : acknowledged) EXPECT_EQ(registered[id], 1) << key;
    EXPECT_GT(aborted_.load(), 0);
  }

  std::atomic<int> commits_{0};
  std::atomic<int> aborted_{0};
};

TEST_F(InjectedAbortTest, OptimisticConcurrencyStaysExactWhenTransactionsAbort) {
  race_on_one_version();
  EXPECT_GT(aborted_.load(), 0);
}

TEST_F(InjectedAbortTest, KeyedCommandsAreDecidedAndAnsweredOnceWhenTransactionsAbort) {
  registrations_are_exact();
}

using InjectedAbortLocalTest = OnTheLocalPath<InjectedAbortTest>;

TEST_F(InjectedAbortLocalTest, OptimisticConcurrencyStaysExactWhenTransactionsAbort) {
  race_on_one_version();
  EXPECT_GT(aborted_.load(), 0);
}

TEST_F(InjectedAbortLocalTest, KeyedCommandsAreDecidedAndAnsweredOnceWhenTransactionsAbort) {
  registrations_are_exact();
}

// Snapshots every few events, so that a test sees several.
class SnapshotsTest : public CommandsTest {
 protected:
  SnapshotsTest() { commands_.snapshot_every_events = 5; }

  // A contact with 1 + `updates` events, all in one partition.
  std::string contact_with_history(int updates) {
    const auto r = send(http::verb::post, "/v1/contacts",
                        R"({"name":"Ana","phone":"+351912345678"})", {{"Idempotency-Key", "reg"}});
    EXPECT_EQ(r.status, 201u) << r.body;
    const auto id = field(r.body, "id");
    for (int i = 0; i < updates; ++i) {
      const auto u = send(http::verb::patch, "/v1/contacts/" + id,
                          R"({"notes":"update )" + std::to_string(i) + R"("})");
      EXPECT_EQ(u.status, 200u) << u.body;
    }
    return id;
  }

  std::int64_t rebuilt_events(const std::string& id) {
    const auto partition = core::kafka_key_partition(id, kafka_.partitions);
    for (const auto& s : processor_->status()) {
      if (s.partition == partition) return s.rebuilt_events;
    }
    return -1;
  }

  void restart_processor() {
    processor_.reset();
    processor_ = start_processor();
  }
};

TEST_F(SnapshotsTest, TheNextOwnerLoadsTheSnapshotReplaysOnlyTheTailAndStillDeduplicates) {
  const auto id = contact_with_history(12);  // 13 events: snapshots after 5 and 10 or so
  const auto manifest_key =
      std::to_string(core::kafka_key_partition(id, kafka_.partitions)) + "/manifest";
  ASSERT_TRUE(eventually(
      [&] {
        const auto records = read_topic(kafka_, kafka_.snapshots_topic);
        return std::any_of(records.begin(), records.end(),
                           [&](const auto& r) { return r.key == manifest_key; });
      },
      20s));
  restart_processor();
  EXPECT_LT(rebuilt_events(id), 13) << "only the events after the snapshot are replayed";
  EXPECT_GE(rebuilt_events(id), 0);
  // The state and the remembered command ids came through the snapshot.
  const auto again =
      send(http::verb::post, "/v1/contacts", R"({"name":"Ana","phone":"+351912345678"})",
           {{"Idempotency-Key", "reg"}});
  EXPECT_EQ(again.status, 201u) << again.body;
  EXPECT_EQ(again.headers.at("idempotent-replayed"), "true");
  EXPECT_EQ(field(again.body, "id"), id);
  const auto next = send(http::verb::patch, "/v1/contacts/" + id, R"({"notes":"after"})",
                         {{"If-Match", "\"13\""}});
  EXPECT_EQ(next.status, 200u) << next.body;
  EXPECT_EQ(next.headers.at("etag"), "\"14\"");
  const auto events = log_checked();
  EXPECT_EQ(count_type(events, "contact.registered", id), 1u);
}

TEST_F(SnapshotsTest, ASnapshotThatDoesNotLoadFallsBackToTheWholeLog) {
  const auto id = contact_with_history(7);  // 8 events
  const auto partition = core::kafka_key_partition(id, kafka_.partitions);
  const auto manifest_key = std::to_string(partition) + "/manifest";
  std::string manifest;
  ASSERT_TRUE(eventually(
      [&] {
        for (const auto& r : read_topic(kafka_, kafka_.snapshots_topic)) {
          if (r.key == manifest_key) manifest = r.value;
        }
        return !manifest.empty();
      },
      20s));
  // A newer manifest whose checksum matches nothing.
  const auto at = manifest.find(R"("sha256":")");
  ASSERT_NE(at, std::string::npos) << manifest;
  manifest.replace(at + 10, 8, "00000000");
  auto conf = core::kafka_conf(kafka_, {});
  std::string err;
  std::unique_ptr<RdKafka::Producer> producer(RdKafka::Producer::create(conf.get(), err));
  ASSERT_EQ(
      core::kafka_produce(*producer, kafka_.snapshots_topic, partition, manifest_key, manifest, {}),
      RdKafka::ERR_NO_ERROR);
  ASSERT_EQ(producer->flush(10000), RdKafka::ERR_NO_ERROR);

  restart_processor();
  EXPECT_EQ(rebuilt_events(id), 8) << "the whole log, since the snapshot was refused";
  const auto next = send(http::verb::patch, "/v1/contacts/" + id, R"({"notes":"after"})",
                         {{"If-Match", "\"8\""}});
  EXPECT_EQ(next.status, 200u) << next.body;
}

class ShortReplyTimeoutTest : public CommandsTest {
 protected:
  ShortReplyTimeoutTest() { commands_.reply_timeout_ms = 1500; }
};

TEST_F(ShortReplyTimeoutTest, NoReplyInTimeIsA503AndARetryWithTheKeyTellsTheOutcome) {
  processor_.reset();  // nobody decides commands for now
  const std::vector<std::pair<std::string, std::string>> key = {{"Idempotency-Key", "slow-1"}};
  const auto body = R"({"level":"critical","title":"Power loss"})";
  const auto started = std::chrono::steady_clock::now();
  auto first = send(http::verb::post, "/v1/alerts", body, key);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
  EXPECT_EQ(first.status, 503u) << first.body;
  EXPECT_EQ(first.headers["retry-after"], "1");
  EXPECT_THAT(first.body, HasSubstr("urn:cauce:problem:command-timeout"));

  // The command waited in Kafka; the processor decides it when it comes back, and the retry
  // learns that it was applied (once).
  processor_ = start_processor();
  auto retry = send(http::verb::post, "/v1/alerts", body, key);
  EXPECT_EQ(retry.status, 201u) << retry.body;
  EXPECT_EQ(retry.headers["idempotent-replayed"], "true");
  EXPECT_EQ(count_type(log_checked(), "alert.raised"), 1u);
}

}  // namespace
}  // namespace cauce::testing
