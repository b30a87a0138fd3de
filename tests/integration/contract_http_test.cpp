// api/openapi.yaml is the contract (issue 14, item 6): schemathesis generates requests from it
// for every route and checks the real `cauce serve`'s answers against it. No 5xx, no status,
// header, content type or body the spec does not describe, no request the spec forbids that
// is accepted, no request it allows that is refused (beyond what the resource's state explains:
// api/schemathesis.toml). The server runs every role, with an admin key, after seeding one of
// each resource so that generated requests reach past "not found".
#include <iostream>
#include <regex>
#include <sstream>

#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include "read_models.hpp"
#include "served.hpp"
#include "source_server.hpp"

namespace cauce::testing {
namespace {

namespace fs = std::filesystem;
namespace beast_http = boost::beast::http;

const fs::path kSource = CAUCE_SOURCE_DIR;

std::string env_or(const char* name, const char* otherwise) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : otherwise;
}

class ContractTest : public ServedTest {
 protected:
  void SetUp() override {
    settings = {
        // schemathesis sends hundreds of requests a second from one key.
        {"CAUCE_HTTP_RATE_LIMIT_READER", "0"},
        {"CAUCE_HTTP_RATE_LIMIT_OPERATOR", "0"},
        {"CAUCE_HTTP_RATE_LIMIT_ADMIN", "0"},
        {"CAUCE_DOWNLOAD_ALLOW_PRIVATE", "true"},  // the report source below is on loopback
        // Generated reports point anywhere ("http://0"): one attempt each, not a train of
        // retries whose commands crowd the generated ones on a machine the suite shares.
        {"CAUCE_WORKERS_MAX_ATTEMPTS", "1"},
        // The seeded webhooks deliver to the source below (loopback); generated ones that
        // resolve (http://0) get one attempt per delivery and are disabled at the first failure.
        {"CAUCE_WEBHOOKS_ALLOW_PRIVATE", "true"},
        {"CAUCE_WEBHOOKS_MAX_ATTEMPTS", "1"},
        {"CAUCE_WEBHOOKS_DISABLE_AFTER", "1"},
        // This is a contract check, not a latency one: on 2 cores under `ctest -j` a command
        // may wait past the default 4 s for its outcome, which is a 503 the spec allows but
        // schemathesis counts as a server error.
        {"CAUCE_COMMANDS_REPLY_TIMEOUT_MS", "30000"}};
    ServedTest::SetUp();
    serve();
  }

  // A command that must be taken: its answer's `field` (the new aggregate's id), and the
  // position it reached into `position_`.
  std::string command(const std::string& target, const std::string& body,
                      const std::string& field = "id") {
    const auto r = call(beast_http::verb::post, target, body);
    EXPECT_LT(r.status, 300u) << target << " " << body << ": " << r.body;
    if (const auto it = r.headers.find("cauce-position"); it != r.headers.end()) {
      position_ = it->second;
    }
    return json_member(r.body, field.c_str());
  }

  // The next_cursor of a first page of one item, once the list holds two.
  std::string cursor(const std::string& list) const {
    std::string next;
    eventually(
        [&] {
          const auto r = call(beast_http::verb::get,
                              list + (list.find('?') == list.npos ? "?" : "&") + "limit=1");
          next = r.status == 200 ? json_member(r.body, "next_cursor") : "";
          return !next.empty() && next != "null";
        },
        30s);
    EXPECT_FALSE(next.empty()) << "no second page of " << list;
    return next;
  }

  std::string position_;
  SourceServer source_{[](const std::string&, int, SourceServer::Response& r) {
    r.body() = "day,calls\n2026-12-04,118\n2026-12-05,97\n";
  }};
};

TEST_F(ContractTest, SchemathesisFindsNothingTheSpecDoesNotSay) {
  const char* schemathesis = std::getenv("TEST_SCHEMATHESIS");
  ASSERT_TRUE(schemathesis != nullptr && fs::exists(schemathesis))
      << "TEST_SCHEMATHESIS must name the schemathesis executable; scripts/test installs it "
         "(scripts/lib/requirements-test.txt) and sets it";

  // One of each resource, the ids schemathesis.toml names.
  std::map<std::string, std::string> seeded;
  // Webhooks first, so that what is seeded after them is delivered (the source answers 200).
  const auto webhook = [&](const std::string& path) {
    return command("/v1/webhooks",
                   R"({"url":")" + source_.url(path) + R"(","topics":["contacts","alerts"]})");
  };
  seeded["CAUCE_ST_WEBHOOK"] = webhook("/hook");
  webhook("/other-hook");
  const auto contact = [&](const std::string& name) {
    return command("/v1/contacts", R"({"name":")" + name + R"(","phone":"+44 20 7946 0958"})");
  };
  seeded["CAUCE_ST_CONTACT"] = contact("Ada Lovelace");
  seeded["CAUCE_ST_CONTACT_TO_ARCHIVE"] = contact("Charles Babbage");
  for (int i = 0; i < 2; ++i) {
    command("/v1/contacts/" + seeded["CAUCE_ST_CONTACT"] + "/calls",
            R"({"outcome":"answered","duration_s":60})", "call_id");
  }
  const auto alert = [&](const std::string& title) {
    return command("/v1/alerts", R"({"level":"warning","title":")" + title + R"("})");
  };
  seeded["CAUCE_ST_ALERT"] = alert("Queue over 50");
  seeded["CAUCE_ST_ALERT_TO_CLOSE"] = alert("Line 3 down");
  // A report that becomes ready, so that its PDF is there to fetch.
  seeded["CAUCE_ST_REPORT"] = command(
      "/v1/reports", R"({"title":"Calls","source_url":")" + source_.url("/calls.csv") + "\"}");
  command("/v1/reports",
          R"({"title":"Calls again","source_url":")" + source_.url("/calls.csv") + "\"}");
  // Report schedules whose slots do not come during the run (one of its own to delete).
  const auto schedule = [&](const std::string& title) {
    return command("/v1/report-schedules",
                   R"({"title":")" + title + R"(","source_url":")" + source_.url("/calls.csv") +
                       R"(","cron":"0 7 1 1 *","timezone":"Europe/Madrid"})");
  };
  seeded["CAUCE_ST_SCHEDULE"] = schedule("New year calls");
  seeded["CAUCE_ST_SCHEDULE_TO_DELETE"] = schedule("Old calls");
  seeded["CAUCE_ST_BACKUP"] = command("/v1/backups", "{}");
  command("/v1/backups", "{}");
  const auto key =
      call(beast_http::verb::post, "/v1/keys", R"({"name":"to revoke","role":"reader"})");
  ASSERT_EQ(key.status, 201u) << key.body;
  seeded["CAUCE_ST_KEY"] = json_member(key.body, "id");
  // Two records the projection cannot read: parked events.
  write_records(kafka_, {{"not-a-uuid", "not an event"}, {"not-a-uuid-either", "{}"}});

  ASSERT_TRUE(eventually(
      [&] {
        const auto r = call(beast_http::verb::get, "/v1/reports/" + seeded["CAUCE_ST_REPORT"]);
        return json_member(r.body, "status") == "ready";
      },
      60s))
      << "the seeded report did not become ready";
  seeded["CAUCE_ST_POSITION"] = position_;
  seeded["CAUCE_ST_CONTACTS_CURSOR"] = cursor("/v1/contacts");
  seeded["CAUCE_ST_ALERTS_CURSOR"] = cursor("/v1/alerts");
  seeded["CAUCE_ST_BACKUPS_CURSOR"] = cursor("/v1/backups");
  seeded["CAUCE_ST_CALLS_CURSOR"] = cursor("/v1/contacts/" + seeded["CAUCE_ST_CONTACT"] + "/calls");
  seeded["CAUCE_ST_EVENTS_CURSOR"] =
      cursor("/v1/contacts/" + seeded["CAUCE_ST_CONTACT"] + "/events");
  seeded["CAUCE_ST_PARKED_CURSOR"] = cursor("/v1/admin/parked");
  seeded["CAUCE_ST_REPORTS_CURSOR"] = cursor("/v1/reports");
  seeded["CAUCE_ST_SCHEDULES_CURSOR"] = cursor("/v1/report-schedules");
  seeded["CAUCE_ST_WEBHOOKS_CURSOR"] = cursor("/v1/webhooks");
  seeded["CAUCE_ST_DELIVERIES_CURSOR"] =
      cursor("/v1/webhooks/" + seeded["CAUCE_ST_WEBHOOK"] + "/deliveries");
  // An import with two rejected rows (a page of its errors has a next one).
  const auto imported =
      http_request(port_, beast_http::verb::post, "/v1/imports",
                   "name,phone\nGrace Hopper,+1 212 555 0100\nNo Phone,\nBad Phone,12345\n",
                   {{"Authorization", "Bearer " + admin_}, {"Content-Type", "text/csv"}}, 30s);
  ASSERT_EQ(imported.status, 201u) << imported.body;
  seeded["CAUCE_ST_IMPORT"] = json_member(imported.body, "id");
  seeded["CAUCE_ST_IMPORT_ERRORS_CURSOR"] =
      cursor("/v1/imports/" + seeded["CAUCE_ST_IMPORT"] + "/errors");
  const auto parked = call(beast_http::verb::get, "/v1/admin/parked?limit=1");
  std::smatch id;
  ASSERT_TRUE(std::regex_search(parked.body, id, std::regex(R"("id":([0-9]+))"))) << parked.body;
  seeded["CAUCE_ST_PARKED"] = id[1];
  const auto replay = call(beast_http::verb::post, "/v1/admin/replays", "{}");
  ASSERT_EQ(replay.status, 202u) << replay.body;
  seeded["CAUCE_ST_REPLAY"] = json_member(replay.body, "id");
  for (const auto& [name, value] : seeded) ASSERT_FALSE(value.empty()) << name << " not seeded";

  std::string command_line;
  for (const auto& [name, value] : seeded) command_line += name + "=" + shell_quote(value) + " ";
  const auto report = data_.path() / "schemathesis";
  command_line += shell_quote(schemathesis) + " --config-file " +
                  shell_quote((kSource / "api" / "schemathesis.toml").string()) + " run " +
                  shell_quote((kSource / "api" / "openapi.yaml").string()) +
                  " --url http://127.0.0.1:" + std::to_string(port_) + " -H " +
                  shell_quote("Authorization: Bearer " + admin_) +
                  // Every check, the three stateless phases, a fixed seed: a failure reproduces.
                  // TEST_SCHEMATHESIS_SEED and _EXAMPLES run it deeper or elsewhere by hand.
                  " --checks all --phases examples,coverage,fuzzing --seed " +
                  env_or("TEST_SCHEMATHESIS_SEED", "20261205") + " --max-examples " +
                  env_or("TEST_SCHEMATHESIS_EXAMPLES", "30") +
                  // Longer than the reply timeout above: a slow command is answered, not cut.
                  " --request-timeout 40 --no-color --output-truncate false"
                  " --generation-database none --report junit --report-dir " +
                  shell_quote(report.string());
  const auto run = run_tool(command_line);
  // What was tested, in the log even when it passes.
  auto summary = run.output.find("= WARNINGS =");
  if (summary == std::string::npos) summary = run.output.find("SUMMARY");
  std::cout << run.output.substr(summary == std::string::npos ? 0 : summary) << std::flush;
  EXPECT_EQ(run.exit_code, 0) << run.output;
  if (run.exit_code != 0) {
    // What the server said meanwhile (its warnings and errors), to tell a bug from a stall.
    std::istringstream log(serve_->output());
    std::string line;
    std::string said;
    while (std::getline(log, line)) {
      if (line.find(R"("level":"warn")") != std::string::npos ||
          line.find(R"("level":"error")") != std::string::npos) {
        said += line + "\n";
      }
    }
    ADD_FAILURE() << "the server's warnings and errors:\n" << said;
  }
  // Every operation of the spec but the WebSocket one was tested (not "Tested: 0").
  std::smatch tested;
  ASSERT_TRUE(std::regex_search(run.output, tested, std::regex(R"(Tested: ([0-9]+))")))
      << run.output;
  EXPECT_GE(std::stoi(tested[1]), 50) << run.output;
  // Nothing went untested for want of data: each seeded operation got past 404.
  EXPECT_EQ(run.output.find("Missing test data"), std::string::npos) << run.output;
}

}  // namespace
}  // namespace cauce::testing
