// Scheduled reports (issue 16, part 3) on the real `cauce serve`: a schedule's slots each request
// one report (with the secret it names sent to the source, and that secret nowhere else), slots
// missed while cauce was down fire once, two processes make one report per slot, pause, resume,
// change and delete behave, bad input changes nothing, and the report lists and /latest filter
// and page. Schedules of a few seconds here (reports.schedule_min_every_s = 1); the runners poll
// every 100 ms.
#include <algorithm>
#include <csignal>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cauce/core/log.hpp>
#include <cauce/core/time_zone.hpp>

#include "event_log.hpp"
#include "served.hpp"
#include "source_server.hpp"

namespace cauce::testing {
namespace {

namespace beast_http = boost::beast::http;

const char* const kToken = "s3cr3t-T0ken-bearer-9f8e";
const char* const kPassword = "Pa55-w0rd-basic";
const char* const kBasic = "Basic cmVwb3J0ZXI6UGE1NS13MHJkLWJhc2lj";  // reporter:Pa55-w0rd-basic

std::vector<std::string> json_items(const std::string& body) {
  rapidjson::Document d;
  d.Parse(body.c_str());
  std::vector<std::string> out;
  if (d.HasParseError() || !d.IsObject() || !d.HasMember("items")) return out;
  for (const auto& item : d["items"].GetArray()) {
    rapidjson::StringBuffer buffer;
    rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
    item.Accept(w);
    out.emplace_back(buffer.GetString(), buffer.GetSize());
  }
  return out;
}

class ScheduledReportsTest : public ServedTest {
 protected:
  void SetUp() override {
    // Each secret lists the origins it may be sent to: the plain-HTTP source here is listed as
    // http:// (and the order of the two lines is free).
    const auto source = source_.url("");
    write_secret(
        "crm", std::string("bearer ") + kToken + "\norigins https://crm.example, " + source + "\n");
    write_secret("warehouse", "origins " + source + "\nbasic reporter:" + kPassword + "\n");
    write_secret("unbound", std::string("bearer ") + kToken + "\n");
    write_secret("https-only", std::string("bearer ") + kToken + "\norigins " +
                                   "https://127.0.0.1:" + source.substr(source.rfind(':') + 1) +
                                   "\n");
    settings = {{"CAUCE_REPORTS_SCHEDULE_MIN_EVERY_S", "1"},
                {"CAUCE_REPORTS_SOURCE_AUTH_DIR", secrets_.path().string()},
                {"CAUCE_DOWNLOAD_ALLOW_PRIVATE", "true"},
                {"CAUCE_WORKERS_POLL_MS", "100"},
                {"CAUCE_BACKUPS_INTERVAL_S", "0"},
                // Commands may wait past the default 4 s on 2 cores under `ctest -j`.
                {"CAUCE_COMMANDS_REPLY_TIMEOUT_MS", "30000"}};
    ServedTest::SetUp();
  }

  // Replaces a secret's file at once (written aside, then renamed): a download reading it
  // meanwhile sees the old or the new file, never half of one.
  void write_secret(const std::string& name, const std::string& content) {
    const auto aside = secrets_.path() / ("." + name + ".new");
    std::ofstream(aside) << content;
    std::filesystem::rename(aside, secrets_.path() / name);
  }

  std::string create(const std::string& body) {
    const auto r = call(beast_http::verb::post, "/v1/report-schedules", body);
    EXPECT_EQ(r.status, 201u) << r.body;
    return json_member(r.body, "id");
  }

  HttpResult patch(const std::string& id, const std::string& body) {
    return call(beast_http::verb::patch, "/v1/report-schedules/" + id, body);
  }

  // The slots (µs) of the schedule's triggered events, and of its reports' requested events.
  struct Fired {
    std::vector<std::int64_t> triggered;
    std::vector<std::int64_t> requested;  // one per report.requested naming the schedule
    std::map<std::string, std::int64_t> report_slots;
  };
  Fired fired(const std::string& schedule) const {
    Fired f;
    for (const auto& e : read_event_log(kafka_)) {
      rapidjson::Document d;
      d.Parse(e.envelope.data.c_str());
      if (e.envelope.type == "report_schedule.triggered" && e.envelope.aggregate_id == schedule) {
        f.triggered.push_back(core::parse_utc_micros(d["slot_at"].GetString()));
      } else if (e.envelope.type == "report.requested" && d.HasMember("schedule_id") &&
                 std::string(d["schedule_id"].GetString()) == schedule) {
        const auto slot = core::parse_utc_micros(d["slot_at"].GetString());
        f.requested.push_back(slot);
        f.report_slots[e.envelope.aggregate_id] = slot;
      }
    }
    return f;
  }

  // Waits until the schedule has requested at least `n` reports.
  Fired fired_at_least(const std::string& schedule, std::size_t n,
                       std::chrono::milliseconds timeout = 60s) const {
    Fired f;
    eventually(
        [&] {
          f = fired(schedule);
          return f.requested.size() >= n;
        },
        timeout);
    return f;
  }

  // Once the schedule fires no more (paused, deleted): waits until every triggered slot has its
  // report requested, which trails the trigger (the feeder's batch, the timer runner's claim of
  // the request row, a command round trip), and returns both sorted.
  Fired settled(const std::string& schedule) const {
    Fired f;
    EXPECT_TRUE(eventually(
        [&] {
          f = fired(schedule);
          return f.requested.size() >= f.triggered.size();
        },
        60s))
        << f.requested.size() << " reports requested for " << f.triggered.size() << " triggers";
    std::sort(f.triggered.begin(), f.triggered.end());
    std::sort(f.requested.begin(), f.requested.end());
    return f;
  }

  // The reports of a schedule, all pages of GET /v1/reports?schedule_id= with `limit`.
  std::vector<std::string> listed(const std::string& query, int limit) const {
    std::vector<std::string> out;
    std::string cursor;
    for (int pages = 0; pages < 100; ++pages) {
      const auto r =
          call(beast_http::verb::get, "/v1/reports?" + query + "&limit=" + std::to_string(limit) +
                                          (cursor.empty() ? "" : "&cursor=" + cursor));
      EXPECT_EQ(r.status, 200u) << r.body;
      const auto items = json_items(r.body);
      EXPECT_LE(items.size(), static_cast<std::size_t>(limit));
      out.insert(out.end(), items.begin(), items.end());
      cursor = json_member(r.body, "next_cursor");
      if (cursor.empty() || cursor == "null") break;
    }
    return out;
  }

  TempDir secrets_;
  SourceServer source_{[](const std::string&, int, SourceServer::Response& r) {
    r.body() = "operator,calls\nana,12\nrui,7\n";
  }};
};

// Bearer and basic secrets reach the source and nothing else: not the events, not the server's
// log, not an answer.
TEST_F(ScheduledReportsTest, EachSlotRequestsOneReportSendingItsSecretAndOnlyTheSource) {
  source_.require_authorization("/bearer.csv", std::string("Bearer ") + kToken);
  source_.require_authorization("/basic.csv", kBasic);
  serve();
  const auto bearer = create(R"({"title":"Chamadas","source_url":")" + source_.url("/bearer.csv") +
                             R"(","every":"2s","source_auth":"crm"})");
  const auto basic = create(R"({"title":"Armazém","source_url":")" + source_.url("/basic.csv") +
                            R"(","cron":"* * * * *","timezone":"Europe/Madrid",)"
                            R"("source_auth":"warehouse"})");
  fired_at_least(bearer, 2);
  fired_at_least(basic, 1, 90s);
  // Ready: the download got past the source's 401.
  std::string latest;
  ASSERT_TRUE(eventually(
      [&] {
        const auto r = call(beast_http::verb::get,
                            "/v1/reports/latest?schedule_id=" + bearer + "&status=ready");
        latest = r.body;
        return r.status == 200;
      },
      60s))
      << latest;
  EXPECT_EQ(json_member(latest, "schedule_id"), bearer);
  EXPECT_EQ(json_member(latest, "source_auth"), "crm");
  ASSERT_TRUE(eventually(
      [&] {
        return call(beast_http::verb::get,
                    "/v1/reports/latest?schedule_id=" + basic + "&status=ready")
                   .status == 200;
      },
      60s));
  for (const auto& a : source_.authorizations("/bearer.csv")) {
    EXPECT_EQ(a, std::string("Bearer ") + kToken);
  }
  EXPECT_THAT(source_.authorizations("/basic.csv"), ::testing::Each(std::string(kBasic)));
  ASSERT_EQ(patch(bearer, R"({"paused":true})").status, 200u);
  ASSERT_EQ(patch(basic, R"({"paused":true})").status, 200u);

  // Every slot once: one trigger, one report, for distinct slots on the schedule's grid.
  const auto f = settled(bearer);
  EXPECT_EQ(f.triggered, f.requested);
  EXPECT_EQ(std::set<std::int64_t>(f.triggered.begin(), f.triggered.end()).size(),
            f.triggered.size());
  for (const auto slot : f.triggered) EXPECT_EQ(slot % 2'000'000, 0);
  const auto log = read_event_log(kafka_);
  EXPECT_THAT(schema_problems(log), ::testing::IsEmpty());
  // The secrets: nowhere but in the source's requests.
  std::vector<std::string> answers = {
      call(beast_http::verb::get, "/v1/report-schedules/" + bearer).body,
      call(beast_http::verb::get, "/v1/report-schedules").body,
      call(beast_http::verb::get, "/v1/reports?schedule_id=" + basic).body, latest};
  for (const auto* secret : {kToken, kPassword, "cmVwb3J0ZXI6UGE1NS13MHJkLWJhc2lj"}) {
    for (const auto& e : log) {
      EXPECT_EQ(e.value.find(secret), std::string::npos) << e.value;
      for (const auto& [name, value] : e.headers) EXPECT_EQ(value.find(secret), std::string::npos);
    }
    EXPECT_EQ(serve_->output().find(secret), std::string::npos) << "the server's log holds it";
    for (const auto& a : answers) EXPECT_EQ(a.find(secret), std::string::npos) << a;
  }
  EXPECT_NE(json_member(answers[0], "source_auth"), "");  // the name is shown, not the secret
}

// The origins are checked again when the download runs (the secret's file, or the URL, can
// change after the API checked them): once the operator narrows "crm" to another origin, its
// reports fail at once (permanent, the reason said) and the source is not contacted.
TEST_F(ScheduledReportsTest, ASecretIsSentOnlyToTheOriginsItsFileListsWhenTheDownloadRuns) {
  source_.require_authorization("/bound.csv", std::string("Bearer ") + kToken);
  serve();
  const auto id = create(R"({"title":"Bound","source_url":")" + source_.url("/bound.csv") +
                         R"(","every":"1s","source_auth":"crm"})");
  fired_at_least(id, 1);
  write_secret("crm", std::string("bearer ") + kToken + "\norigins https://crm.example\n");
  std::string failed;
  ASSERT_TRUE(eventually(
      [&] {
        const auto r =
            call(beast_http::verb::get, "/v1/reports/latest?schedule_id=" + id + "&status=failed");
        failed = r.body;
        return r.status == 200;
      },
      60s))
      << failed;
  EXPECT_THAT(failed, ::testing::HasSubstr("may not be sent to " + source_.url("")));
  EXPECT_EQ(json_member(failed, "attempts"), "1") << "a permanent failure";
  ASSERT_EQ(patch(id, R"({"paused":true})").status, 200u);
  const auto f = settled(id);
  // Every report ends ready (downloaded before the change, the secret sent) or failed (nothing
  // sent): the source saw one request per ready report, each with the secret.
  std::size_t ready = 0;
  ASSERT_TRUE(eventually(
      [&] {
        ready = listed("schedule_id=" + id + "&status=ready", 500).size();
        return ready + listed("schedule_id=" + id + "&status=failed", 500).size() ==
               f.requested.size();
      },
      60s));
  EXPECT_EQ(source_.calls("/bound.csv"), static_cast<int>(ready));
  EXPECT_THAT(source_.authorizations("/bound.csv"),
              ::testing::Each(std::string("Bearer ") + kToken));
}

// Down for several slots: on start the most recent missed slot fires, once; the others never.
TEST_F(ScheduledReportsTest, SlotsMissedWhileDownFireOnceAsTheLatest) {
  serve();
  const auto id =
      create(R"({"title":"Daily","source_url":")" + source_.url("/d.csv") + R"(","every":"3s"})");
  const auto before = fired_at_least(id, 1);
  serve_->signal(SIGTERM);
  ASSERT_EQ(serve_->wait_exit(), 0) << serve_->output();
  const auto last_before = fired(id).triggered.back();
  std::this_thread::sleep_for(10s);  // at least three slots pass with nobody running
  serve();
  auto f = fired_at_least(id, before.requested.size() + 1);
  ASSERT_EQ(patch(id, R"({"paused":true})").status, 200u);
  f = settled(id);
  const auto after = std::upper_bound(f.triggered.begin(), f.triggered.end(), last_before);
  ASSERT_NE(after, f.triggered.end());
  const auto first_after = *after;
  // Several slots were missed between the last one before the stop and the one fired on start ...
  EXPECT_GE((first_after - last_before) / 3'000'000, 3) << "missed slots: none?";
  // ... and none of them has a report: each slot at most once, reports = triggers.
  EXPECT_EQ(std::set<std::int64_t>(f.triggered.begin(), f.triggered.end()).size(),
            f.triggered.size());
  EXPECT_EQ(f.requested, f.triggered);
  // The fired slot is the latest that was due when it fired (its trigger's time).
  for (const auto& e : read_event_log(kafka_)) {
    if (e.envelope.type != "report_schedule.triggered" || e.envelope.aggregate_id != id) continue;
    rapidjson::Document d;
    d.Parse(e.envelope.data.c_str());
    const auto slot = core::parse_utc_micros(d["slot_at"].GetString());
    if (slot != first_after) continue;
    EXPECT_GE(e.envelope.occurred_at_us, slot);
    EXPECT_LT(e.envelope.occurred_at_us, slot + 3'000'000) << "an older slot fired";
    EXPECT_EQ(e.envelope.actor, "system:schedules");
  }
  EXPECT_NE(serve_->output().find("slots were missed; only the latest fires"), std::string::npos);
}

// A second process running only the workers: every slot still gets one trigger and one report,
// and each report's source is fetched once.
TEST_F(ScheduledReportsTest, TwoProcessesMakeOneReportPerSlot) {
  serve();
  auto second_env = env();
  second_env["CAUCE_ROLES"] = "workers";
  CauceProcess second({"serve"}, second_env);
  ASSERT_TRUE(second.wait_for_line(R"("msg":"workers started")")) << second.output();
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(create(R"({"title":"S)" + std::to_string(i) + R"(","source_url":")" +
                         source_.url("/s" + std::to_string(i) + ".csv") + R"(","every":"1s"})"));
  }
  for (const auto& id : ids) fired_at_least(id, 4);
  // The workers-only process takes part: it fires slots too (both timer runners compete for
  // every due row, so this comes within a few slots; waited for rather than assumed).
  const auto fired_by_second = [&second] {
    const auto output = second.output();
    int n = 0;
    for (auto at = output.find("report schedule slot fired"); at != std::string::npos;
         at = output.find("report schedule slot fired", at + 1)) {
      ++n;
    }
    return n;
  };
  EXPECT_TRUE(eventually([&] { return fired_by_second() >= 1; }, 60s))
      << "the workers-only process fired no slot\n"
      << second.output();
  for (const auto& id : ids) ASSERT_EQ(patch(id, R"({"paused":true})").status, 200u);
  int total = 0;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const auto f = settled(ids[i]);
    EXPECT_EQ(f.triggered, f.requested) << ids[i];
    EXPECT_EQ(std::set<std::int64_t>(f.triggered.begin(), f.triggered.end()).size(),
              f.triggered.size())
        << ids[i];
    // Each report downloaded once (once its job is done; the ready ones at least).
    const auto path = "/s" + std::to_string(i) + ".csv";
    eventually([&] { return source_.calls(path) >= static_cast<int>(f.requested.size()); }, 60s);
    EXPECT_EQ(source_.calls(path), static_cast<int>(f.requested.size())) << path;
    total += static_cast<int>(f.triggered.size());
  }
  const auto by_second = fired_by_second();
  EXPECT_GE(by_second, 1);
  EXPECT_LE(by_second, total);
  std::cout << "the workers-only process fired " << by_second << " of " << total << " slots\n";
  second.signal(SIGTERM);
  EXPECT_EQ(second.wait_exit(), 0) << second.output();
}

TEST_F(ScheduledReportsTest, PauseResumeChangeAndDeleteBehave) {
  serve();
  const auto id =
      create(R"({"title":"Q","source_url":")" + source_.url("/q.csv") + R"(","every":"1s"})");
  fired_at_least(id, 1);
  const auto paused = patch(id, R"({"paused":true})");
  ASSERT_EQ(paused.status, 200u) << paused.body;
  const auto shown = call(beast_http::verb::get, "/v1/report-schedules/" + id, "", "",
                          {{"Cauce-Min-Position", paused.headers.at("cauce-position")}});
  EXPECT_EQ(json_member(shown.body, "status"), "paused") << shown.body;
  EXPECT_EQ(json_member(shown.body, "next_slot_at"), "null");
  const auto at_pause = fired(id).triggered.size();
  std::this_thread::sleep_for(3s);  // three slots pass paused
  EXPECT_EQ(fired(id).triggered.size(), at_pause);
  // Resume and change at once: every 2 s from now.
  const auto resumed = patch(id, R"({"paused":false,"every":"2s","title":"Q2"})");
  ASSERT_EQ(resumed.status, 200u) << resumed.body;
  auto f = fired_at_least(id, at_pause + 2);
  std::sort(f.triggered.begin(), f.triggered.end());
  // Slots count from the resume: its event's time (the read model's slots_from), whole seconds.
  std::int64_t resumed_at = 0;
  for (const auto& e : read_event_log(kafka_)) {
    if (e.envelope.type == "report_schedule.resumed" && e.envelope.aggregate_id == id) {
      resumed_at = e.envelope.occurred_at_us;
    }
  }
  ASSERT_NE(resumed_at, 0) << "no resumed event";
  const auto slots_from = core::floor_div(resumed_at, 1'000'000) * 1'000'000;
  for (auto it = f.triggered.begin() + static_cast<std::ptrdiff_t>(at_pause);
       it != f.triggered.end(); ++it) {
    EXPECT_EQ(*it % 2'000'000, 0) << "a slot of the old recurrence after the change";
    EXPECT_GT(*it, slots_from) << "a slot missed while paused fired";
  }
  const auto one = call(beast_http::verb::get, "/v1/report-schedules/" + id, "", "",
                        {{"Cauce-Min-Position", resumed.headers.at("cauce-position")}});
  EXPECT_EQ(json_member(one.body, "title"), "Q2");
  EXPECT_EQ(json_member(one.body, "every"), "2s");
  EXPECT_EQ(json_member(one.body, "cron"), "null");
  EXPECT_NE(json_member(one.body, "next_slot_at"), "null");
  // If-Match: the version it has, else 412.
  EXPECT_EQ(
      call(beast_http::verb::delete_, "/v1/report-schedules/" + id, "", "", {{"If-Match", "\"1\""}})
          .status,
      412u);
  const auto deleted = call(beast_http::verb::delete_, "/v1/report-schedules/" + id);
  ASSERT_EQ(deleted.status, 200u) << deleted.body;
  const auto at_delete = fired(id).triggered.size();
  EXPECT_EQ(call(beast_http::verb::get, "/v1/report-schedules/" + id, "", "",
                 {{"Cauce-Min-Position", deleted.headers.at("cauce-position")}})
                .status,
            404u);
  EXPECT_EQ(call(beast_http::verb::get, "/v1/report-schedules").body.find(id), std::string::npos);
  EXPECT_EQ(patch(id, R"({"paused":false})").status, 404u);
  EXPECT_EQ(call(beast_http::verb::delete_, "/v1/report-schedules/" + id).status, 404u);
  std::this_thread::sleep_for(3s);
  EXPECT_EQ(fired(id).triggered.size(), at_delete);
  // Its reports stay.
  EXPECT_EQ(listed("schedule_id=" + id, 50).size(), at_delete);
}

// Bad input: a 400 naming the field, nothing appended, the schedule as it was, the server up.
TEST_F(ScheduledReportsTest, BadInputIsRefusedNamingTheFieldAndChangesNothing) {
  serve();
  const auto url = source_.url("/b.csv");
  const auto refused = [&](const std::string& body, const std::string& field) {
    const auto r = call(beast_http::verb::post, "/v1/report-schedules", body);
    EXPECT_EQ(r.status, 400u) << body << ": " << r.body;
    EXPECT_NE(r.body.find(R"("field":")" + field + "\""), std::string::npos) << body << r.body;
    EXPECT_NE(r.headers.at("content-type").find("application/problem+json"), std::string::npos);
    return r.body;
  };
  const auto base = R"({"title":"B","source_url":")" + url + "\"";
  EXPECT_THAT(refused(base + R"(,"cron":"0 25 * * *"})", "cron"),
              ::testing::HasSubstr("hour: 25 is out of range 0-23"));
  refused(base + R"(,"cron":"every morning"})", "cron");
  refused(base + R"(,"cron":"0 0 30 2 *"})", "cron");
  EXPECT_THAT(refused(base + R"(,"every":"1h","timezone":"Mars/Olympus_Mons"})", "timezone"),
              ::testing::HasSubstr("no time zone named"));
  refused(base + R"(,"every":"1h","timezone":"../../etc/passwd"})", "timezone");
  refused(base + R"(,"every":"1h","timezone":"right/Europe/Madrid"})", "timezone");
  EXPECT_THAT(refused(base + R"(,"every":"1h","source_auth":"nobody"})", "source_auth"),
              ::testing::HasSubstr("not configured"));
  refused(base + R"(,"every":"1h","source_auth":"../crm"})", "source_auth");
  // A secret goes only to the origins its file lists; http:// only when listed as http://.
  EXPECT_THAT(refused(R"({"title":"B","source_url":"https://attacker.example/x","every":"1h",)"
                      R"("source_auth":"crm"})",
                      "source_url"),
              ::testing::HasSubstr("may not be sent to https://attacker.example:443"));
  refused(R"({"title":"B","source_url":"http://crm.example/x","every":"1h","source_auth":"crm"})",
          "source_url");
  refused(base + R"(,"every":"1h","source_auth":"https-only"})", "source_url");
  EXPECT_THAT(refused(base + R"(,"every":"1h","source_auth":"unbound"})", "source_auth"),
              ::testing::HasSubstr("has no origins line"));
  refused(base + R"(,"every":"1h","cron":"* * * * *"})", "every");
  refused(base + "}", "every");
  refused(base + R"(,"every":"1.5h"})", "every");
  refused(base + R"(,"every":"367d"})", "every");
  refused(R"({"title":"B","source_url":"ftp://x","every":"1h"})", "source_url");
  refused(base + R"(,"every":"1h","colour":"red"})", "colour");
  const auto id = create(base + R"(,"every":"1h","timezone":"Europe/Madrid"})");
  eventually(
      [&] { return call(beast_http::verb::get, "/v1/report-schedules/" + id).status == 200; });
  const auto before = call(beast_http::verb::get, "/v1/report-schedules/" + id).body;
  for (const auto& [body, field] : std::vector<std::pair<std::string, std::string>>{
           {R"({"cron":"61 * * * *"})", "cron"},
           {R"({"timezone":"Nowhere/Land"})", "timezone"},
           {R"({"source_auth":"missing"})", "source_auth"},
           {R"({"every":"1h","cron":"* * * * *"})", "every"},
           {R"({"title":"   "})", "title"},
           {R"({"paused":"yes"})", "paused"},
           {"{}", "body"}}) {
    const auto r = patch(id, body);
    EXPECT_EQ(r.status, 400u) << body << ": " << r.body;
    EXPECT_NE(r.body.find(R"("field":")" + field + "\""), std::string::npos) << body << r.body;
  }
  EXPECT_EQ(call(beast_http::verb::get, "/v1/report-schedules/not-a-uuid").status, 400u);
  // A schedule that sends a secret: a new URL names the secret too (and the pair is checked), a
  // secret names the URL.
  const auto with_secret = create(base + R"(,"every":"1h","source_auth":"crm"})");
  for (const auto& [body, field] : std::vector<std::pair<std::string, std::string>>{
           {R"({"source_url":"https://attacker.example/x"})", "source_auth"},
           {R"({"source_auth":"crm"})", "source_url"},
           {R"({"source_auth":"crm","source_url":"https://attacker.example/x"})", "source_url"},
           {R"({"source_auth":"https-only","source_url":")" + url + "\"}", "source_url"}}) {
    const auto r = patch(with_secret, body);
    EXPECT_EQ(r.status, 400u) << body << ": " << r.body;
    EXPECT_NE(r.body.find(R"("field":")" + field + "\""), std::string::npos) << body << r.body;
  }
  // Nothing was appended for them but their creation, and the first reads as before.
  int events = 0;
  int secret_events = 0;
  for (const auto& e : read_event_log(kafka_)) {
    events += e.envelope.aggregate_id == id ? 1 : 0;
    secret_events += e.envelope.aggregate_id == with_secret ? 1 : 0;
  }
  EXPECT_EQ(events, 1);
  EXPECT_EQ(secret_events, 1);
  EXPECT_EQ(call(beast_http::verb::get, "/v1/report-schedules/" + id).body, before);
  EXPECT_EQ(json_member(before, "version"), "1");
  // The process is up (liveness: readiness may report lag on a loaded machine meanwhile).
  EXPECT_EQ(http_request(port_, beast_http::verb::get, "/healthz").status, 200u);
}

// GET /v1/reports with its filters and pages, /v1/reports/latest, GET /v1/report-schedules.
// reports.schedule_min_every_s holds for cron as for every: a cron whose slots come closer
// anywhere in the calendar is refused naming cron and the gap.
TEST_F(ScheduledReportsTest, ACronFiringMoreOftenThanTheFloorIsRefused) {
  settings["CAUCE_REPORTS_SCHEDULE_MIN_EVERY_S"] = "3600";
  serve();
  const auto body = [&](const std::string& cron) {
    return R"({"title":"F","source_url":")" + source_.url("/f.csv") + R"(","cron":")" + cron +
           R"("})";
  };
  for (const auto* often : {"* * * * *", "*/30 * * * *", "0,59 9 * * *"}) {
    const auto r = call(beast_http::verb::post, "/v1/report-schedules", body(often));
    EXPECT_EQ(r.status, 400u) << often << ": " << r.body;
    EXPECT_THAT(r.body, ::testing::HasSubstr(R"("field":"cron")")) << often;
    EXPECT_THAT(r.body, ::testing::HasSubstr("reports.schedule_min_every_s")) << often;
  }
  for (const auto* enough : {"0 * * * *", "30 7 * * 1-5"}) {
    const auto r = call(beast_http::verb::post, "/v1/report-schedules", body(enough));
    EXPECT_EQ(r.status, 201u) << enough << ": " << r.body;
  }
}

TEST_F(ScheduledReportsTest, ReportListsAndLatestFilterAndPage) {
  serve();
  const auto manual = call(beast_http::verb::post, "/v1/reports",
                           R"({"title":"by hand","source_url":")" + source_.url("/m.csv") + "\"}");
  ASSERT_EQ(manual.status, 202u) << manual.body;
  const auto a =
      create(R"({"title":"A","source_url":")" + source_.url("/a.csv") + R"(","every":"1s"})");
  const auto b = create(R"({"title":"B","source_url":")" + source_.url("/b.csv") +
                        R"(","cron":"0 7 * * mon-fri","timezone":"Europe/Madrid"})");
  fired_at_least(a, 7);
  const auto paused = patch(a, R"({"paused":true})");
  ASSERT_EQ(paused.status, 200u);
  const auto position = paused.headers.at("cauce-position");
  const auto f = settled(a);
  // Wait until the read model has every report of A.
  ASSERT_TRUE(
      eventually([&] { return listed("schedule_id=" + a, 500).size() == f.requested.size(); }));
  const auto all_a = listed("schedule_id=" + a, 500);
  const auto paged = listed("schedule_id=" + a, 2);
  EXPECT_EQ(paged, all_a) << "keyset pages of 2 = one page of 500";
  // Newest first, every one A's, each slot once.
  std::vector<std::string> slots;
  std::vector<std::string> requested;
  for (const auto& item : all_a) {
    EXPECT_EQ(json_member(item, "schedule_id"), a);
    slots.push_back(json_member(item, "slot_at"));
    requested.push_back(json_member(item, "requested_at"));
  }
  EXPECT_TRUE(std::is_sorted(requested.rbegin(), requested.rend()));
  EXPECT_EQ(std::set<std::string>(slots.begin(), slots.end()).size(), slots.size());
  // Everything, with the manual report, which has no schedule.
  const auto all = listed("since=2000-01-01T00:00:00Z", 3);
  EXPECT_EQ(all.size(), all_a.size() + 1);
  EXPECT_NE(std::find_if(all.begin(), all.end(),
                         [&](const std::string& item) {
                           return json_member(item, "id") == json_member(manual.body, "id") &&
                                  json_member(item, "schedule_id") == "null";
                         }),
            all.end());
  // since: the reports requested at or after a time.
  const auto cut = json_member(all_a[2], "requested_at");
  const auto recent = listed("schedule_id=" + a + "&since=" + cut, 500);
  EXPECT_EQ(recent.size(), 3u);
  // status: ready ones only (the others may still run: a subset).
  eventually(
      [&] { return listed("schedule_id=" + a + "&status=ready", 500).size() == all_a.size(); },
      60s);
  EXPECT_EQ(listed("schedule_id=" + a + "&status=ready", 500).size(), all_a.size());
  EXPECT_TRUE(listed("schedule_id=" + a + "&status=failed", 500).empty());
  // latest: this morning's report, i.e. the newest of the schedule.
  const auto latest = call(beast_http::verb::get, "/v1/reports/latest?schedule_id=" + a);
  ASSERT_EQ(latest.status, 200u) << latest.body;
  EXPECT_EQ(json_member(latest.body, "id"), json_member(all_a.front(), "id"));
  EXPECT_EQ(json_member(latest.body, "slot_at"),
            core::format_utc_micros(*std::max_element(f.requested.begin(), f.requested.end())));
  ASSERT_NE(latest.headers.find("etag"), latest.headers.end());
  EXPECT_EQ(call(beast_http::verb::get, "/v1/reports/latest?schedule_id=" + a, "", "",
                 {{"If-None-Match", latest.headers.at("etag")}})
                .status,
            304u);
  EXPECT_EQ(call(beast_http::verb::get, "/v1/reports/latest?schedule_id=" + b).status, 404u);
  // Schedules: both listed, filters and pages, next_slot_at for the active one.
  const auto schedules = call(beast_http::verb::get, "/v1/report-schedules?limit=1", "", "",
                              {{"Cauce-Min-Position", position}});
  ASSERT_EQ(schedules.status, 200u) << schedules.body;
  EXPECT_EQ(json_items(schedules.body).size(), 1u);
  const auto page2 = call(beast_http::verb::get, "/v1/report-schedules?limit=1&cursor=" +
                                                     json_member(schedules.body, "next_cursor"));
  EXPECT_EQ(json_items(page2.body).size(), 1u);
  const auto active =
      json_items(call(beast_http::verb::get, "/v1/report-schedules?status=active").body);
  ASSERT_EQ(active.size(), 1u);
  EXPECT_EQ(json_member(active[0], "id"), b);
  // 07:00 Madrid on a weekday: 05:00 or 06:00 UTC.
  const auto next = json_member(active[0], "next_slot_at");
  EXPECT_THAT(next, ::testing::AnyOf(::testing::HasSubstr("T05:00:00.000000Z"),
                                     ::testing::HasSubstr("T06:00:00.000000Z")));
  EXPECT_EQ(
      json_items(call(beast_http::verb::get, "/v1/report-schedules?status=paused").body).size(),
      1u);
  // Bad parameters: 400 naming them.
  for (const auto& [query, field] : std::vector<std::pair<std::string, std::string>>{
           {"/v1/reports?schedule_id=xyz", "schedule_id"},
           {"/v1/reports?since=yesterday", "since"},
           {"/v1/reports?since=2026-02-30T00:00:00Z", "since"},
           {"/v1/reports?since=0000-01-01T00:00:00Z", "since"},  // schemathesis found a 500
           {"/v1/reports/latest?since=0001-01-01T00:30:00%2B01:00", "since"},
           {"/v1/reports?status=lost", "status"},
           {"/v1/reports?limit=0", "limit"},
           {"/v1/reports?cursor=" + json_member(schedules.body, "next_cursor"), "cursor"},
           {"/v1/reports/latest?limit=1", "limit"},
           {"/v1/report-schedules?status=deleted", "status"}}) {
    const auto r = call(beast_http::verb::get, query);
    EXPECT_EQ(r.status, 400u) << query << ": " << r.body;
    EXPECT_NE(r.body.find(R"("field":")" + field + "\""), std::string::npos) << query << r.body;
  }
}

}  // namespace
}  // namespace cauce::testing
