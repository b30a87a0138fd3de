// Blue/green replay (issue 14, projections/replay.hpp) on the real binary: `cauce replay` and
// POST /v1/admin/replays rebuild the read models into a new generation while `cauce serve`
// answers queries, takes commands and streams notifications; the switch loses and repeats
// nothing; an interrupted replay resumes; --from-time starts where the broker's time index says.
#include <algorithm>
#include <csignal>
#include <fstream>
#include <set>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <cauce/core/kafka_admin.hpp>
#include <cauce/core/log.hpp>

#include "read_models.hpp"
#include "served.hpp"
#include "sse_client.hpp"

namespace cauce::testing {
namespace {

using ::testing::HasSubstr;
namespace beast_http = boost::beast::http;

rapidjson::Document parse(const std::string& body) {
  rapidjson::Document d;
  d.Parse(body.c_str());
  return d;
}

class ReplayTest : public ServedTest {
 protected:
  void SetUp() override {
    settings = {{"CAUCE_STARTUP_TIMEOUT_S", "20"},
                {"CAUCE_ROLES", "api,processor,projector"},
                {"CAUCE_PROJECTIONS_GROUP", group_},
                {"CAUCE_PROJECTIONS_REPLAY_GRACE_S", "0"}};
    ServedTest::SetUp();
    ASSERT_EQ(run_cauce({"migrate"}, env()).first, 0);
  }

  // As a client should: a 503 (no outcome in time on a loaded machine) is retried with the same
  // Idempotency-Key until the command's outcome is known.
  HttpResult create_contact(const std::string& name, const std::string& phone) {
    const auto key = unique_name("contact");
    HttpResult r;
    for (int attempt = 0; attempt < 30; ++attempt) {
      r = http_request(port_, beast_http::verb::post, "/v1/contacts",
                       R"({"name":")" + name + R"(","phone":")" + phone + R"("})",
                       {{"Authorization", "Bearer " + admin_},
                        {"Content-Type", "application/json"},
                        {"Idempotency-Key", key}},
                       30s);
      if (r.status != 503) break;
      std::this_thread::sleep_for(200ms);
    }
    return r;
  }

  bool caught_up(std::chrono::milliseconds timeout = 60s) {
    return eventually([&] { return checkpoint_sum(db_) == log_end_sum(kafka_); }, timeout);
  }

  std::string live_schema() const { return db_.query_value("SELECT schema FROM read_model_live"); }
  bool schema_exists(const std::string& schema) const {
    return db_.query_value("SELECT count(*) FROM pg_namespace WHERE nspname = '" + schema + "'") ==
           "1";
  }
  std::map<std::int32_t, std::int64_t> log_ends() const {
    return core::KafkaAdmin(kafka_).end_offsets(kafka_.events_topic, kafka_.partitions);
  }

  std::string group_ = unique_name("projector");
};

// The issue's drill: a replay of 100k events while queries, commands and an SSE client run.
TEST_F(ReplayTest, ARebuildUnderLoadSwitchesWithoutAQueryErrorOrALostOrRepeatedNotification) {
  write_synthetic_log(kafka_, {.contacts = 10000, .calls_per_contact = 8, .alerts = 200});
  serve();
  ASSERT_TRUE(caught_up()) << "the live generation did not catch up";
  const auto some_contact = db_.query_value("SELECT id FROM contacts ORDER BY id LIMIT 1");

  SseClient stream(port_, admin_, "/v1/stream?topics=contacts");
  ASSERT_TRUE(stream.wait_for_head());

  std::atomic<bool> stop{false};
  std::atomic<int> queries{0};
  std::mutex mutex;
  std::vector<std::string> query_errors;
  std::vector<std::string> created;
  std::thread reader([&] {
    while (!stop) {
      // A history read spans two views in one transaction: the switch must not deadlock with it.
      for (const auto& target :
           {"/v1/contacts/" + some_contact, std::string("/v1/contacts?limit=50"),
            "/v1/contacts/" + some_contact + "/events"}) {
        const auto r = call(beast_http::verb::get, target);
        ++queries;
        if (r.status != 200) {
          const std::lock_guard lock(mutex);
          query_errors.push_back(target + " -> " + std::to_string(r.status) + " " + r.body);
        }
      }
    }
  });
  std::thread writer([&] {
    for (int i = 0; !stop; ++i) {
      const auto r =
          create_contact("Live " + std::to_string(i), "+3519100" + std::to_string(10000 + i));
      const auto d = parse(r.body);
      const std::lock_guard lock(mutex);
      if (r.status == 201 && d.IsObject() && d.HasMember("id")) {
        created.emplace_back(d["id"].GetString());
      } else {
        query_errors.push_back("POST /v1/contacts -> " + std::to_string(r.status) + " " + r.body);
      }
      std::this_thread::sleep_for(20ms);
    }
  });

  // Each notification as it arrives: what it announces is already in the model queries read
  // (a notification is committed with the live generation, never ahead of it).
  std::vector<SseEvent> events;
  std::vector<std::string> not_visible;
  std::thread listener([&] {
    while (!stop) {
      for (auto& e : stream.read(1, 200ms)) {
        const auto d = parse(e.data);
        if (d.IsObject() && d.HasMember("id") && d["id"].IsString()) {
          const std::string id = d["id"].GetString();
          const auto r = call(beast_http::verb::get, "/v1/contacts/" + id);
          if (r.status != 200) not_visible.push_back(id + " -> " + std::to_string(r.status));
        }
        events.push_back(std::move(e));
      }
    }
  });

  CauceProcess replay({"replay"}, env());
  const auto code = replay.wait_exit(180s);
  std::this_thread::sleep_for(1500ms);  // commands and queries go on after the switch
  stop = true;
  reader.join();
  writer.join();
  listener.join();
  ASSERT_EQ(code, 0) << replay.output();
  EXPECT_THAT(replay.output(), HasSubstr(R"("status":"building")"));
  EXPECT_THAT(replay.output(), HasSubstr(R"("status":"switched")"));

  EXPECT_TRUE(query_errors.empty())
      << query_errors.size() << " failed, first: " << query_errors.front();
  EXPECT_GT(queries.load(), 10);
  ASSERT_FALSE(created.empty());

  EXPECT_EQ(live_schema(), "read_model_2");
  EXPECT_FALSE(schema_exists("read_model_1")) << "a grace of 0 drops the old generation at once";
  // (The log ends in transaction markers: the checkpoints reach the end once read to it.)
  ASSERT_TRUE(caught_up()) << "the serving projector did not move to the new generation\n"
                           << serve_->output();

  // Every contact created while the replay ran (and after) was announced exactly once, in order.
  EXPECT_TRUE(not_visible.empty()) << not_visible.size() << " announced before they could be read, "
                                   << "first: " << not_visible.front();
  for (auto& e : stream.read(created.size() - std::min(created.size(), events.size()), 30s)) {
    events.push_back(std::move(e));
  }
  std::multiset<std::string> announced;
  std::int64_t last_id = 0;
  for (const auto& e : events) {
    EXPECT_GT(e.id, last_id) << "notification ids only grow";
    last_id = e.id;
    const auto d = parse(e.data);
    if (d.IsObject() && d.HasMember("type") &&
        std::string(d["type"].GetString()) == "contact.registered") {
      announced.insert(d["id"].GetString());
    }
  }
  const std::multiset<std::string> wanted(created.begin(), created.end());
  std::vector<std::string> missing;
  std::vector<std::string> unexpected;
  std::set_difference(wanted.begin(), wanted.end(), announced.begin(), announced.end(),
                      std::back_inserter(missing));
  std::set_difference(announced.begin(), announced.end(), wanted.begin(), wanted.end(),
                      std::back_inserter(unexpected));
  EXPECT_TRUE(missing.empty() && unexpected.empty())
      << created.size() << " created, " << announced.size() << " announced; " << missing.size()
      << " never announced (first " << (missing.empty() ? "-" : missing.front()) << "), "
      << unexpected.size() << " announced twice or not created (first "
      << (unexpected.empty() ? "-" : unexpected.front()) << ")";
  EXPECT_TRUE(stream.read(1, 1s).empty()) << "nothing more (no repeats)";

  // The switched generation is what a fresh fold of the whole log gives.
  EXPECT_EQ(read_models_text(db_), reference_fold(read_event_log(kafka_)));

  // Read-your-writes across the new generation.
  const auto after = create_contact("After", "+351910099999");
  ASSERT_EQ(after.status, 201u) << after.body;
  const auto id = std::string(parse(after.body)["id"].GetString());
  // (An answer replayed for a retried Idempotency-Key carries no Cauce-Position: then wait.)
  const auto position = after.headers.find("cauce-position");
  if (position == after.headers.end()) {
    EXPECT_TRUE(eventually(
        [&] { return call(beast_http::verb::get, "/v1/contacts/" + id).status == 200; }));
    return;
  }
  const auto read = http_request(
      port_, beast_http::verb::get, "/v1/contacts/" + id, "",
      {{"Authorization", "Bearer " + admin_}, {"Cauce-Min-Position", position->second}}, 30s);
  EXPECT_EQ(read.status, 200u) << read.body;
}

TEST_F(ReplayTest, AnInterruptedReplayResumesFromItsCheckpoints) {
  write_synthetic_log(kafka_, {.contacts = 5000, .calls_per_contact = 8, .alerts = 100});
  auto slow = env();
  slow["CAUCE_PROJECTIONS_REPLAY_BATCH_MAX"] = "100";
  CauceProcess first({"replay"}, slow);
  ASSERT_TRUE(eventually(
      [&] {
        const auto applied = db_.query_value("SELECT coalesce(max(applied), 0) FROM replays");
        return !applied.empty() && std::stoll(applied) > 0;
      },
      60s, 50ms))
      << first.output();
  first.signal(SIGINT);
  ASSERT_EQ(first.wait_exit(60s), 130) << first.output();
  EXPECT_THAT(first.output(), HasSubstr("run `cauce replay` again to resume"));

  const auto id = db_.query_value("SELECT id FROM replays");
  EXPECT_EQ(db_.query_value("SELECT status FROM replays"), "building");
  const auto done = std::stoll(db_.query_value(
      "SELECT coalesce(sum(next_offset), 0) FROM read_model_2.projection_checkpoints"));
  std::int64_t end = 0;
  for (const auto& [p, e] : log_ends()) end += e;
  EXPECT_GT(done, 0);
  EXPECT_LT(done, end) << "interrupted before the end";
  EXPECT_EQ(live_schema(), "read_model_1") << "nothing switched";

  // Another start for the unfinished one would be ignored: refused instead.
  const auto [other_code, other] = run_cauce({"replay", "--from-offset", "0:0"}, env());
  EXPECT_EQ(other_code, 1) << other;
  EXPECT_THAT(other, HasSubstr("resumes from where it started"));

  const auto [code, output] = run_cauce({"replay"}, env());
  ASSERT_EQ(code, 0) << output;
  EXPECT_THAT(output, HasSubstr("resuming replay " + id));
  EXPECT_EQ(db_.query_value("SELECT status FROM replays WHERE id = '" + id + "'"), "switched");
  EXPECT_EQ(db_.query_value("SELECT count(*) FROM replays"), "1") << "the same replay went on";
  EXPECT_EQ(live_schema(), "read_model_2");
  EXPECT_EQ(read_models_text(db_), reference_fold(read_event_log(kafka_)));
}

TEST_F(ReplayTest, FromTimeStartsAtTheFirstEventAtOrAfterIt) {
  write_synthetic_log(kafka_, {.contacts = 60, .calls_per_contact = 2, .alerts = 5});
  const auto before = log_ends();
  std::this_thread::sleep_for(200ms);
  const auto since = std::chrono::duration_cast<std::chrono::microseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
  std::this_thread::sleep_for(200ms);
  const auto second = write_synthetic_log(kafka_, {.contacts = 40, .calls_per_contact = 1});

  const auto [code, output] =
      run_cauce({"replay", "--from-time", core::format_utc_micros(since)}, env());
  ASSERT_EQ(code, 0) << output;
  for (const auto& [partition, offset] : before) {
    EXPECT_EQ(
        db_.query_value("SELECT start_offsets->>'" + std::to_string(partition) + "' FROM replays"),
        std::to_string(offset))
        << "partition " << partition;
  }
  EXPECT_EQ(db_.query_value("SELECT count(*) FROM events"), std::to_string(second))
      << "only what was written after the time";

  // A time still to come would rebuild empty read models and switch to them: refused, and the
  // live ones stay as they are.
  const auto live = live_schema();
  const auto [later_code, later] =
      run_cauce({"replay", "--from-time", "2999-01-01T00:00:00Z"}, env());
  EXPECT_EQ(later_code, 2) << later;
  EXPECT_THAT(later, HasSubstr("in the future"));
  EXPECT_EQ(live_schema(), live);
  EXPECT_EQ(db_.query_value("SELECT count(*) FROM events"), std::to_string(second));
  // Dates that do not exist, signs where digits go, years Kafka has no records for.
  for (const auto* text : {"2026-02-31T00:00:00Z", "2026-12-05T-1:00:00Z", "1969-12-31T23:59:59Z",
                           "2026-12-05T06:00:00+-1:00"}) {
    const auto [code_bad, out_bad] = run_cauce({"replay", "--from-time", text}, env());
    EXPECT_EQ(code_bad, 2) << text << ": " << out_bad;
  }

  // Bad input is a usage error naming what is wrong, and prepares nothing.
  const auto [bad_code, bad] = run_cauce({"replay", "--from-time", "yesterday"}, env());
  EXPECT_EQ(bad_code, 2) << bad;
  EXPECT_THAT(bad, HasSubstr("from-time"));
  const auto [bad_offset_code, bad_offset] =
      run_cauce({"replay", "--from-offset", "0:12,0:13"}, env());
  EXPECT_EQ(bad_offset_code, 2) << bad_offset;
  EXPECT_THAT(bad_offset, HasSubstr("partition 0 named twice"));
  // Past a partition's end: refused (its checkpoint would skip what is written there next).
  const auto [past_code, past] = run_cauce({"replay", "--from-offset", "0:999999999"}, env());
  EXPECT_EQ(past_code, 2) << past;
  EXPECT_THAT(past, HasSubstr("partition 0 ends at offset"));
  // Only the first replay was prepared: the future time and every bad input prepared nothing.
  EXPECT_EQ(db_.query_value("SELECT count(*) FROM replays"), "1");
}

TEST_F(ReplayTest, AdminsStartAndFollowAReplayOverHttp) {
  write_synthetic_log(kafka_, {.contacts = 300, .calls_per_contact = 2, .alerts = 10});
  serve();
  ASSERT_TRUE(caught_up());

  const auto bad = call(beast_http::verb::post, "/v1/admin/replays", R"({"from_time":"soon"})");
  EXPECT_EQ(bad.status, 400u) << bad.body;
  EXPECT_THAT(bad.body, HasSubstr("from_time"));
  const auto unknown = call(beast_http::verb::post, "/v1/admin/replays", R"({"projection":"x"})");
  EXPECT_EQ(unknown.status, 400u) << unknown.body;
  EXPECT_THAT(unknown.body, HasSubstr("projection"));

  const auto started = call(beast_http::verb::post, "/v1/admin/replays", R"({"projection":"all"})");
  ASSERT_EQ(started.status, 202u) << started.body;
  const auto location = started.headers.at("location");
  const auto id = std::string(parse(started.body)["id"].GetString());
  EXPECT_EQ(location, "/v1/admin/replays/" + id);

  std::string last;
  ASSERT_TRUE(eventually(
      [&] {
        last = call(beast_http::verb::get, location).body;
        return last.find(R"("status":"switched")") != std::string::npos;
      },
      60s, 100ms))
      << last << "\n"
      << serve_->output();
  const auto d = parse(last);
  EXPECT_EQ(std::string(d["schema"].GetString()), "read_model_2");
  EXPECT_EQ(d["progress"].GetDouble(), 1.0);
  EXPECT_EQ(live_schema(), "read_model_2");
  ASSERT_TRUE(caught_up());
  EXPECT_EQ(read_models_text(db_), reference_fold(read_event_log(kafka_)));

  EXPECT_EQ(call(beast_http::verb::get, "/v1/admin/replays/nope").status, 404u);
  const auto reader_key = run_cauce({"keys", "create", "--role", "reader"}, env());
  ASSERT_EQ(reader_key.first, 0);
  const auto token = reader_key.second.substr(reader_key.second.rfind("ck_"), 200);
  const auto forbidden =
      http_request(port_, beast_http::verb::post, "/v1/admin/replays", "",
                   {{"Authorization", "Bearer " + token.substr(0, token.find('\n'))}});
  EXPECT_EQ(forbidden.status, 403u) << forbidden.body;
}

}  // namespace
}  // namespace cauce::testing
