// The job loop end to end on the real `cauce serve`: report sources served by a test HTTP server
// on loopback, attempts and failures visible in the read model, the SSE stream and the log,
// dead letters, an operator's retry, a worker killed mid-job that still renders once, and
// backups: restored on an empty system, copied off the box (backups.copy_to) and restored from
// the copy alone.
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <set>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rapidjson/document.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <cauce/core/crypto.hpp>
#include <cauce/core/log.hpp>

#include "event_log.hpp"
#include "fixtures.hpp"
#include "source_server.hpp"

namespace cauce::testing {
namespace {

using ::testing::HasSubstr;
namespace beast_http = boost::beast::http;

const std::string kCsv =
    "operador,cidade,chamadas\nAna Lima,Lisboa,3\nJosé Núñez,Málaga,12\nAna Lima,Porto,5\n";

// A CSV big enough that rendering it takes a moment (the test kills the worker meanwhile).
std::string big_csv(int rows) {
  std::string out = "operator,region,calls,notes\n";
  for (int i = 0; i < rows; ++i) {
    out += "Operadora " + std::to_string(i % 40) + ",Região " + std::to_string(i % 7) + "," +
           std::to_string(i) + ",\"nota longa sobre a chamada número " + std::to_string(i) +
           ", com acentos: ção, ñ, ü\"\n";
  }
  return out;
}

// Serves the report sources of these tests; /stall.csv holds its first answer until released.
class Sources {
 public:
  Sources()
      : server_([this](const std::string& path, int n, SourceServer::Response& r) {
          answer(path, n, r);
        }) {}
  ~Sources() { release_stall(); }

  std::string url(const std::string& path) const { return server_.url(path); }
  int calls(const std::string& path) const { return server_.calls(path); }
  void release_stall() {
    const std::lock_guard lock(mutex_);
    stalled_ = false;
    changed_.notify_all();
  }

 private:
  void answer(const std::string& path, int n, SourceServer::Response& r) {
    if (path.starts_with("/ok.csv")) {
      r.body() = kCsv;
    } else if (path == "/flaky.csv") {
      if (n <= 2) r.result(beast_http::status::internal_server_error);
      r.body() = n <= 2 ? "try later" : kCsv;
    } else if (path == "/page.html") {
      r.set(beast_http::field::content_type, "text/html");
      r.body() = "<p>not a report</p>";
    } else if (path == "/huge.csv") {
      r.body() = std::string(9 * 1024 * 1024, 'x');  // over download.max_bytes (8 MiB here)
    } else if (path == "/big.csv") {
      static const std::string big = big_csv(30000);
      r.body() = big;
    } else if (path == "/stall.csv") {
      std::unique_lock lock(mutex_);
      if (n == 1) changed_.wait_for(lock, std::chrono::seconds(60), [this] { return !stalled_; });
      r.body() = kCsv;
    } else {
      r.result(beast_http::status::not_found);
    }
  }

  std::mutex mutex_;
  std::condition_variable changed_;
  bool stalled_ = true;
  SourceServer server_;
};

rapidjson::Document parse(const std::string& body) {
  rapidjson::Document d;
  d.Parse(body.c_str());
  return d;
}

// What an SSE client receives within `timeout` (or until `until` shows up).
std::string sse_read(std::uint16_t port, const std::string& token, const std::string& target,
                     const std::string& until, std::chrono::seconds timeout) {
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket socket(io);
  socket.connect({boost::asio::ip::make_address("127.0.0.1"), port});
  timeval tv{1, 0};
  ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  const std::string request = "GET " + target +
                              " HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n"
                              "Authorization: Bearer " +
                              token + "\r\n\r\n";
  boost::asio::write(socket, boost::asio::buffer(request));
  std::string received;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::array<char, 4096> buffer{};
  while (std::chrono::steady_clock::now() < deadline && received.find(until) == std::string::npos) {
    const auto n = ::recv(socket.native_handle(), buffer.data(), buffer.size(), 0);
    if (n > 0) received.append(buffer.data(), static_cast<std::size_t>(n));
    if (n == 0) break;
  }
  return received;
}

class JobsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(run_cauce({"topics", "create"}, env()).first, 0);
    start();
  }

  // The jobs' dead-letter topic once it has a letter: that one letter, for `key`, parsed (not
  // an object, with the test failed, when there is none, more than one, or another key's).
  rapidjson::Document only_dead_letter(const std::string& key) const {
    std::vector<TopicRecord> dead;
    const bool any = eventually([&] {
      dead = read_topic(kafka_, kafka_.jobs_dlq_topic);
      return !dead.empty();
    });
    EXPECT_TRUE(any) << "no dead letter";
    EXPECT_EQ(dead.size(), 1u);
    if (dead.size() != 1) return {};
    EXPECT_EQ(dead[0].key, key);
    return parse(dead[0].value);
  }

  std::map<std::string, std::string> env() const {
    auto e = cauce_env(db_.config(), kafka_);
    e["CAUCE_DATA_DIR"] = data_.path().string();
    e["CAUCE_STARTUP_TIMEOUT_S"] = "20";
    e["CAUCE_DOWNLOAD_ALLOW_PRIVATE"] = allow_private_ ? "true" : "false";
    e["CAUCE_DOWNLOAD_TOTAL_TIMEOUT_MS"] = "3000";
    e["CAUCE_DOWNLOAD_MAX_BYTES"] = std::to_string(8 * 1024 * 1024);
    e["CAUCE_WORKERS_BACKOFF_BASE_MS"] = "200";
    e["CAUCE_WORKERS_BACKOFF_CAP_MS"] = "1000";
    e["CAUCE_WORKERS_MAX_ATTEMPTS"] = "4";
    e["CAUCE_WORKERS_LEASE_MS"] = "2000";
    e["CAUCE_WORKERS_POLL_MS"] = "100";
    e["CAUCE_BACKUPS_INTERVAL_S"] = "0";
    for (const auto& [key, value] : extra_env_) e[key] = value;
    return e;
  }

  void start() {
    auto served = serve_ready(env(), data_.path());
    serve_ = std::move(served.process);
    port_ = served.port;
    token_ = served.admin_key;
    ASSERT_NE(port_, 0) << served.failure;
  }

  void kill_serve() {
    serve_->signal(SIGKILL);
    serve_->wait_exit();
    serve_.reset();
  }

  HttpResult call(beast_http::verb verb, const std::string& target, const std::string& body = "") {
    return http_request(
        port_, verb, target, body,
        {{"Authorization", "Bearer " + token_}, {"Content-Type", "application/json"}}, 30s);
  }

  std::string request_report(const std::string& title, const std::string& url) {
    const auto r = call(beast_http::verb::post, "/v1/reports",
                        R"({"title":")" + title + R"(","source_url":")" + url + R"("})");
    EXPECT_EQ(r.status, 202u) << r.body;
    const auto d = parse(r.body);
    return d.IsObject() && d.HasMember("id") ? d["id"].GetString() : "not-requested";
  }

  // The report once its status is `status` (fails the test after the timeout).
  rapidjson::Document report_when(const std::string& id, const std::string& status,
                                  std::chrono::milliseconds timeout = 60s) {
    std::string last;
    const bool reached = eventually(
        [&] {
          last = call(beast_http::verb::get, "/v1/reports/" + id).body;
          const auto d = parse(last);
          return d.IsObject() && d.HasMember("status") && d["status"].IsString() &&
                 d["status"].GetString() == status;
        },
        timeout, 100ms);
    EXPECT_TRUE(reached) << "report " << id << " never became " << status << "; last: " << last
                         << "\n"
                         << (serve_ ? serve_->output() : "");
    return parse(last);
  }

  std::vector<LoggedEvent> events_of(const std::string& id) {
    std::vector<LoggedEvent> out;
    for (auto& e : read_event_log(kafka_)) {
      if (e.envelope.aggregate_id == id) out.push_back(std::move(e));
    }
    return out;
  }

  static std::size_t count_type(const std::vector<LoggedEvent>& events, const std::string& type) {
    return static_cast<std::size_t>(std::count_if(
        events.begin(), events.end(), [&](const auto& e) { return e.envelope.type == type; }));
  }

  TempDatabase db_;
  TempDir data_;
  core::KafkaConfig kafka_ = test_kafka(2);
  bool allow_private_ = true;
  std::map<std::string, std::string> extra_env_;  // a test's own settings, before start()
  Sources sources_;
  std::unique_ptr<CauceProcess> serve_;
  std::uint16_t port_ = 0;
  std::string token_;
};

TEST_F(JobsTest, AFlakySourceIsReadyAfterThreeAttemptsEachVisible) {
  const auto id = request_report("Relatório de chamadas", sources_.url("/flaky.csv"));
  const auto report = report_when(id, "ready");
  EXPECT_EQ(report["attempts"].GetInt(), 3);
  ASSERT_EQ(report["errors"].Size(), 2u);
  for (const auto& error : report["errors"].GetArray()) {
    EXPECT_THAT(error["error"].GetString(), HasSubstr("500"));
    EXPECT_TRUE(error["retryable"].GetBool());
    EXPECT_STREQ(error["step"].GetString(), "download");
  }
  EXPECT_GT(report["pdf"]["pages"].GetInt(), 1);
  EXPECT_EQ(sources_.calls("/flaky.csv"), 3);
  const auto metrics = http_request(port_, beast_http::verb::get, "/metrics").body;
  EXPECT_THAT(metrics, HasSubstr(R"(cauce_jobs_total{kind="report",outcome="done"} 1)"));
  EXPECT_THAT(metrics, HasSubstr(R"(cauce_job_attempts_sum{kind="report"} 3)"));
  EXPECT_THAT(
      metrics,
      HasSubstr(R"(cauce_worker_steps_total{kind="report",result="retryable",step="download"} 2)"));

  // The stream shows every step, in order.
  const auto stream =
      sse_read(port_, token_, "/v1/stream?topics=reports&last_event_id=0", "report.rendered", 10s);
  const auto first_failure = stream.find("report.attempt_failed");
  ASSERT_NE(first_failure, std::string::npos) << stream;
  EXPECT_NE(stream.find("report.attempt_failed", first_failure + 1), std::string::npos);
  EXPECT_LT(first_failure, stream.find("report.rendered"));

  // The log: requested, then per attempt started + failed, downloaded, rendered; all valid.
  const auto events = events_of(id);
  EXPECT_TRUE(schema_problems(events).empty()) << ::testing::PrintToString(schema_problems(events));
  EXPECT_EQ(count_type(events, "report.download_started"), 3u);
  EXPECT_EQ(count_type(events, "report.attempt_failed"), 2u);
  EXPECT_EQ(count_type(events, "report.rendered"), 1u);

  // The PDF: served with its length and sha256 as ETag, and it holds the accented title.
  const auto pdf = call(beast_http::verb::get, "/v1/reports/" + id + "/pdf");
  ASSERT_EQ(pdf.status, 200u) << pdf.body;
  EXPECT_EQ(pdf.headers.at("content-type"), "application/pdf");
  EXPECT_EQ(pdf.headers.at("content-length"), std::to_string(pdf.body.size()));
  EXPECT_EQ(pdf.headers.at("etag"), "\"" + std::string(report["pdf"]["sha256"].GetString()) + "\"");
  const auto file = data_.path() / "check.pdf";
  std::ofstream(file, std::ios::binary) << pdf.body;
  const auto text_file = data_.path() / "check.txt";
  ASSERT_EQ(std::system(("pdftotext " + file.string() + " " + text_file.string()).c_str()), 0);
  std::stringstream text;
  text << std::ifstream(text_file).rdbuf();
  EXPECT_THAT(text.str(), HasSubstr("Relatório de chamadas"));
  EXPECT_THAT(text.str(), HasSubstr("José Núñez"));
}

TEST_F(JobsTest, AMissingSourceFailsAtOnceGoesToTheDeadLettersAndCanBeRetried) {
  const auto id = request_report("Missing", sources_.url("/missing.csv"));
  const auto failed = report_when(id, "failed");
  EXPECT_EQ(failed["attempts"].GetInt(), 1);
  EXPECT_THAT(failed["failure"].GetString(), HasSubstr("404"));
  EXPECT_FALSE(failed["errors"][0]["retryable"].GetBool());
  EXPECT_EQ(call(beast_http::verb::get, "/v1/reports/" + id + "/pdf").status, 404u);

  const auto letter = only_dead_letter(id);
  ASSERT_TRUE(letter.IsObject());
  EXPECT_STREQ(letter["kind"].GetString(), "report");
  EXPECT_EQ(letter["attempts"].GetInt(), 1);
  EXPECT_THAT(letter["last_error"].GetString(), HasSubstr("404"));

  // Only a failed report may be retried; the retry is a new round, which fails again here.
  const auto retry = call(beast_http::verb::post, "/v1/reports/" + id + "/retry");
  EXPECT_EQ(retry.status, 202u) << retry.body;
  EXPECT_TRUE(eventually([&] { return sources_.calls("/missing.csv") == 2; }));
  rapidjson::Document again;
  EXPECT_TRUE(eventually([&] {
    again = report_when(id, "failed");
    return again["round"].GetInt() == 1 && again["errors"].Size() == 2;
  })) << "round 1 failed too, its error added to the first";
  EXPECT_EQ(std::string(again["errors"][1]["error"].GetString()).find("404") != std::string::npos,
            true);
  EXPECT_TRUE(eventually([&] { return read_topic(kafka_, kafka_.jobs_dlq_topic).size() == 2; }))
      << "one dead letter per failure";
  const auto ok_id = request_report("Fine", sources_.url("/ok.csv"));
  report_when(ok_id, "ready");
  const auto conflict = call(beast_http::verb::post, "/v1/reports/" + ok_id + "/retry");
  EXPECT_EQ(conflict.status, 409u) << conflict.body;
}

TEST_F(JobsTest, PermanentErrorsAreNotRetriedAndRetryableOnesRunOutOfAttempts) {
  const auto html = request_report("HTML", sources_.url("/page.html"));
  const auto huge = request_report("Too big", sources_.url("/huge.csv"));
  const auto timeout = request_report("Stalls", sources_.url("/stall.csv"));
  const auto wrong_type = report_when(html, "failed");
  EXPECT_EQ(wrong_type["attempts"].GetInt(), 1);
  EXPECT_THAT(wrong_type["failure"].GetString(), HasSubstr("text/html"));
  const auto too_big = report_when(huge, "failed");
  EXPECT_EQ(too_big["attempts"].GetInt(), 1) << "over the size limit is permanent";
  EXPECT_FALSE(too_big["errors"][0]["retryable"].GetBool());
  EXPECT_EQ(sources_.calls("/huge.csv"), 1);
  // The stalled source answers after the total timeout (3 s): retryable, the later attempts
  // get an answer at once.
  const auto recovered = report_when(timeout, "ready");
  EXPECT_EQ(recovered["attempts"].GetInt(), 2);
  EXPECT_TRUE(recovered["errors"][0]["retryable"].GetBool());
  const auto unreachable = request_report("Nobody there", "http://127.0.0.1:1/x.csv");
  const auto exhausted = report_when(unreachable, "failed", 90s);
  EXPECT_EQ(exhausted["attempts"].GetInt(), 4) << "workers.max_attempts";
  EXPECT_EQ(exhausted["errors"].Size(), 4u);
}

TEST_F(JobsTest, APrivateSourceIsRefusedUnlessAllowed) {
  kill_serve();
  allow_private_ = false;
  start();
  const auto id = request_report("Internal", sources_.url("/ok.csv"));
  const auto failed = report_when(id, "failed");
  EXPECT_EQ(failed["attempts"].GetInt(), 1);
  EXPECT_THAT(failed["failure"].GetString(), HasSubstr("not a public address"));
  EXPECT_EQ(sources_.calls("/ok.csv"), 0) << "refused before connecting";
}

TEST_F(JobsTest, AWorkerKilledMidDownloadLosesNothingAndRendersOnce) {
  const auto id = request_report("Killed while downloading", sources_.url("/stall.csv"));
  ASSERT_TRUE(eventually([&] { return sources_.calls("/stall.csv") == 1; }));
  kill_serve();
  sources_.release_stall();
  start();
  report_when(id, "ready");
  const auto events = events_of(id);
  EXPECT_EQ(count_type(events, "report.rendered"), 1u);
  EXPECT_EQ(count_type(events, "report.downloaded"), 1u);
  EXPECT_TRUE(schema_problems(events).empty());
}

TEST_F(JobsTest, AWorkerKilledMidRenderLosesNothingAndRendersOnce) {
  const auto id = request_report("Killed while rendering", sources_.url("/big.csv"));
  report_when(id, "downloaded", 60s);
  kill_serve();
  EXPECT_EQ(count_type(events_of(id), "report.rendered"), 0u) << "killed while rendering";
  start();
  const auto ready = report_when(id, "ready", 120s);
  const auto events = events_of(id);
  EXPECT_EQ(count_type(events, "report.rendered"), 1u);
  EXPECT_EQ(count_type(events, "report.downloaded"), 1u);
  EXPECT_GT(ready["pdf"]["pages"].GetInt(), 100);
  EXPECT_FALSE(std::filesystem::exists(data_.path() / "reports" / (id + ".pdf.part")));
}

TEST_F(JobsTest, TwoWorkerProcessesRunEachJobOnce) {
  // A second process with only the workers role: its commands go through cauce.commands to the
  // first process's processor, and both claim jobs from the same table.
  auto workers_env = env();
  workers_env["CAUCE_ROLES"] = "workers";
  workers_env["CAUCE_WORKERS_CONCURRENCY"] = "4";
  CauceProcess second({"serve"}, workers_env);
  ASSERT_TRUE(second.wait_for_line(R"("msg":"workers started")")) << second.output();
  constexpr int kReports = 24;
  std::vector<std::string> ids;
  for (int i = 0; i < kReports; ++i) {
    ids.push_back(request_report("Report " + std::to_string(i),
                                 sources_.url("/ok.csv?n=" + std::to_string(i))));
  }
  for (const auto& id : ids) report_when(id, "ready");
  for (int i = 0; i < kReports; ++i) {
    EXPECT_EQ(sources_.calls("/ok.csv?n=" + std::to_string(i)), 1) << "source " << i;
  }
  std::size_t rendered = 0;
  for (const auto& e : read_event_log(kafka_)) rendered += e.envelope.type == "report.rendered";
  EXPECT_EQ(rendered, static_cast<std::size_t>(kReports));
  std::size_t by_second = 0;
  const auto output = second.output();
  for (auto at = output.find(R"("msg":"job done")"); at != std::string::npos;
       at = output.find(R"("msg":"job done")", at + 1)) {
    ++by_second;
  }
  RecordProperty("jobs_done_by_the_second_process", static_cast<int>(by_second));
  std::cout << "the workers-only process finished " << by_second << " of " << kReports << " jobs\n";
  second.signal(SIGTERM);
  EXPECT_EQ(second.wait_exit(), 0) << second.output();
}

// The read models as comparable text: every row of `table` as JSON, in key order, without the
// columns that hold positions in the log (a restore renumbers the offsets).
std::string table_text(const TempDatabase& db, const std::string& table, const std::string& order,
                       const std::string& where = "true") {
  return db.query_value(
      "SELECT coalesce(string_agg((to_jsonb(t) - 'partition' - 'offset')::text, "
      "E'\\n' ORDER BY " +
      order + "), '') FROM " + table + " t WHERE " + where);
}

// Every aggregate's events (id, version, type, data, time, command), in log order.
std::map<std::string, std::vector<std::string>> sequences(const core::KafkaConfig& kafka,
                                                          const std::string& skip_type) {
  std::map<std::string, std::vector<std::string>> out;
  for (const auto& e : read_event_log(kafka)) {
    const auto& v = e.envelope;
    if (v.aggregate_type == skip_type) continue;
    out[v.aggregate_id].push_back(v.event_id + " " + std::to_string(v.version) + " " + v.type +
                                  " " + v.data + " " + std::to_string(v.occurred_at_us) + " " +
                                  v.command_id);
  }
  return out;
}

TEST_F(JobsTest, ABackupRestoresOnAnEmptySystemAndACorruptedOneIsRefused) {
  // Some history: contacts with calls and an update, an alert, a ready report.
  std::vector<std::string> contacts;
  for (int i = 0; i < 20; ++i) {
    const auto r = call(beast_http::verb::post, "/v1/contacts",
                        R"({"name":"Contacto )" + std::to_string(i) +
                            R"( Ñandú","phone":"+35191234)" + std::to_string(5000 + i) + R"("})");
    ASSERT_EQ(r.status, 201u) << r.body;
    contacts.push_back(parse(r.body)["id"].GetString());
    ASSERT_EQ(call(beast_http::verb::post, "/v1/contacts/" + contacts.back() + "/calls",
                   R"({"outcome":"answered","duration_s":30})")
                  .status,
              201u);
  }
  ASSERT_EQ(
      call(beast_http::verb::patch, "/v1/contacts/" + contacts[0], R"({"notes":"vip"})").status,
      200u);
  ASSERT_EQ(
      call(beast_http::verb::post, "/v1/alerts", R"({"level":"warning","title":"Disco"})").status,
      201u);
  const auto report_id = request_report("Antes da cópia", sources_.url("/ok.csv"));
  const auto ready = report_when(report_id, "ready");

  const auto requested = call(beast_http::verb::post, "/v1/backups");
  ASSERT_EQ(requested.status, 202u) << requested.body;
  const std::string backup_id = parse(requested.body)["id"].GetString();
  std::string listed;
  ASSERT_TRUE(eventually(
      [&] {
        listed = call(beast_http::verb::get, "/v1/backups").body;
        const auto page = parse(listed);
        return page.IsObject() && page["items"].Size() == 1 &&
               std::string(page["items"][0]["status"].GetString()) == "completed";
      },
      60s))
      << listed << serve_->output();
  const auto backup_dir = data_.path() / "backups" / backup_id;
  for (const auto& file : {std::string("manifest.json"), std::string("readmodels.dump"),
                           std::string("events-0.ndjson.gz"), "reports/" + report_id + ".pdf"}) {
    EXPECT_TRUE(std::filesystem::exists(backup_dir / file)) << file;
  }
  const auto verified = run_cauce({"backups", "verify", backup_id}, env());
  EXPECT_EQ(verified.first, 0) << verified.second;
  EXPECT_THAT(verified.second, HasSubstr("intact"));
  serve_->signal(SIGTERM);
  ASSERT_EQ(serve_->wait_exit(), 0);
  serve_.reset();

  // A corrupted copy is refused by verify and by restore, naming the file; nothing is written.
  const auto corrupted = data_.path() / "corrupted";
  std::filesystem::copy(backup_dir, corrupted);
  {
    std::fstream f(corrupted / "events-1.ndjson.gz",
                   std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(20);
    f.put('\x7f');
  }
  TempDatabase target_db;
  const auto target_kafka = test_kafka(2);
  auto target_env = cauce_env(target_db.config(), target_kafka);
  target_env["CAUCE_DATA_DIR"] = (data_.path() / "target").string();
  const auto refused_verify = run_cauce({"backups", "verify", corrupted.string()}, env());
  EXPECT_EQ(refused_verify.first, 1);
  EXPECT_THAT(refused_verify.second, HasSubstr("events-1.ndjson.gz"));
  const auto refused_restore = run_cauce({"restore", corrupted.string()}, target_env);
  EXPECT_EQ(refused_restore.first, 1);
  EXPECT_THAT(refused_restore.second, HasSubstr("events-1.ndjson.gz"));

  // The real one restores on an empty Kafka and PostgreSQL.
  const auto restored = run_cauce({"restore", backup_dir.string()}, target_env);
  ASSERT_EQ(restored.first, 0) << restored.second;
  EXPECT_THAT(restored.second, HasSubstr(R"("progress":"events")")) << "JSON progress off a TTY";
  EXPECT_THAT(restored.second, HasSubstr("read models match the backup"));
  EXPECT_EQ(sequences(target_kafka, "backup"), sequences(kafka_, "backup"))
      << "same events, same order per aggregate";
  for (const auto& [table, order] :
       std::vector<std::pair<std::string, std::string>>{{"contacts", "id"},
                                                        {"calls", "call_id"},
                                                        {"alerts", "id"},
                                                        {"alert_timeline", "alert_id, version"},
                                                        {"reports", "id"}}) {
    EXPECT_EQ(table_text(target_db, table, order), table_text(db_, table, order)) << table;
  }
  EXPECT_EQ(table_text(target_db, "events", "event_id", "aggregate_type <> 'backup'"),
            table_text(db_, "events", "event_id", "aggregate_type <> 'backup'"));
  const auto again = run_cauce({"restore", backup_dir.string()}, target_env);
  EXPECT_EQ(again.first, 1) << "a second restore onto the same system is refused";
  EXPECT_THAT(again.second, HasSubstr("not empty"));

  // The restored system works: its processor rebuilt the aggregates from the restored log.
  CauceProcess target({"serve"}, target_env);
  const auto listening = target.wait_for_line(R"("msg":"listening")");
  ASSERT_TRUE(listening) << target.output();
  const auto port = listening_port(*listening);
  std::string key;
  std::getline(std::ifstream(data_.path() / "target" / "admin.key"), key);
  ASSERT_TRUE(eventually(
      [&] { return http_request(port, beast_http::verb::get, "/readyz").status == 200; }));
  const auto patched = http_request(port, beast_http::verb::patch, "/v1/contacts/" + contacts[0],
                                    R"({"notes":"still vip"})",
                                    {{"Authorization", "Bearer " + key},
                                     {"Content-Type", "application/json"},
                                     {"If-Match", "\"3\""}});
  EXPECT_EQ(patched.status, 200u) << patched.body;
  EXPECT_THAT(patched.body, HasSubstr(R"("version":4)"));
  const auto pdf = http_request(port, beast_http::verb::get, "/v1/reports/" + report_id + "/pdf",
                                "", {{"Authorization", "Bearer " + key}});
  EXPECT_EQ(pdf.status, 200u) << "the rendered report came back with the backup";
  EXPECT_EQ(pdf.headers.count("etag") ? pdf.headers.at("etag") : "",
            "\"" + std::string(ready["pdf"]["sha256"].GetString()) + "\"");
  target.signal(SIGTERM);
  EXPECT_EQ(target.wait_exit(), 0);
}

// ---- backups kept off the box (backups.copy_to) ----

// A file's sha256 (hex).
std::string sha256_of(const std::filesystem::path& path) {
  return core::sha256_file_hex(path.string());
}

// The complete backups (or copies) under `dir`: its directories not named ".<...>.tmp".
std::set<std::string> backup_ids_in(const std::filesystem::path& dir) {
  std::set<std::string> out;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const auto name = entry.path().filename().string();
    if (entry.is_directory() && !name.starts_with(".")) out.insert(name);
  }
  return out;
}

// The value of a metric without labels on /metrics (nullopt: not there).
std::optional<double> metric_value(std::uint16_t port, const std::string& name) {
  const auto text = http_request(port, beast_http::verb::get, "/metrics").body;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with(name + " ")) return std::stod(line.substr(name.size() + 1));
  }
  return std::nullopt;
}

class BackupCopyTest : public JobsTest {
 protected:
  BackupCopyTest() { extra_env_["CAUCE_BACKUPS_COPY_TO"] = copy_root().string(); }

  std::filesystem::path copy_root() const { return copies_.path() / "copies"; }

  void restart() {
    serve_->signal(SIGTERM);
    ASSERT_EQ(serve_->wait_exit(), 0) << serve_->output();
    serve_.reset();
    start();
  }

  std::string request_backup() {
    const auto requested = call(beast_http::verb::post, "/v1/backups");
    EXPECT_EQ(requested.status, 202u) << requested.body;
    const auto d = parse(requested.body);
    return d.IsObject() && d.HasMember("id") ? d["id"].GetString() : "not-requested";
  }

  // The backup's item of GET /v1/backups once its copy's status is `copy_status`.
  rapidjson::Document backup_when_copy(const std::string& id, const std::string& copy_status) {
    std::string last;
    rapidjson::Document item;
    const bool reached = eventually(
        [&] {
          last = call(beast_http::verb::get, "/v1/backups?limit=100").body;
          const auto page = parse(last);
          if (!page.IsObject() || !page.HasMember("items")) return false;
          for (const auto& b : page["items"].GetArray()) {
            if (b["id"].GetString() != id || !b["copy"].IsObject()) continue;
            if (b["copy"]["status"].GetString() != copy_status) return false;
            item.CopyFrom(b, item.GetAllocator());
            return true;
          }
          return false;
        },
        90s, 100ms);
    EXPECT_TRUE(reached) << "backup " << id << "'s copy never became " << copy_status
                         << "; last: " << last << "\n"
                         << (serve_ ? serve_->output() : "");
    return item;
  }

  TempDir copies_;  // stands for another mount (NFS, SMB, a synced folder)
};

TEST_F(BackupCopyTest, ABackupLandsInBothPlacesAndRestoresFromItsCopyAlone) {
  std::vector<std::string> contacts;
  for (int i = 0; i < 6; ++i) {
    const auto r = call(beast_http::verb::post, "/v1/contacts",
                        R"({"name":"Cópia )" + std::to_string(i) + R"(","phone":"+3519100)" +
                            std::to_string(1000 + i) + R"("})");
    ASSERT_EQ(r.status, 201u) << r.body;
    contacts.push_back(parse(r.body)["id"].GetString());
  }
  const auto report_id = request_report("Fora da caixa", sources_.url("/ok.csv"));
  report_when(report_id, "ready");

  const auto id = request_backup();
  const auto item = backup_when_copy(id, "copied");
  ASSERT_TRUE(item.IsObject());
  EXPECT_STREQ(item["status"].GetString(), "completed");
  const auto local = data_.path() / "backups" / id;
  const auto copy = copy_root() / id;
  EXPECT_EQ(item["copy"]["directory"].GetString(), copy.string());
  EXPECT_EQ(item["copy"]["to"].GetString(), copy_root().string());
  EXPECT_EQ(item["copy"]["attempts"].GetInt(), 1);
  EXPECT_TRUE(item["copy"]["error"].IsNull());

  // Both places hold the same files with equal checksums, the report's PDF and its downloaded
  // source among them; the copy's manifest checksum is the backup's, in the read model and the
  // log.
  const auto manifest = parse([&] {
    std::ifstream in(local / "manifest.json");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }());
  ASSERT_TRUE(manifest.IsObject());
  std::set<std::string> names;
  for (const auto& f : manifest["files"].GetArray()) {
    const std::string name = f["name"].GetString();
    names.insert(name);
    ASSERT_TRUE(std::filesystem::exists(copy / name)) << name;
    EXPECT_EQ(sha256_of(copy / name), sha256_of(local / name)) << name;
    EXPECT_EQ(sha256_of(copy / name), f["sha256"].GetString()) << name;
  }
  EXPECT_TRUE(names.contains("reports/" + report_id + ".pdf"));
  EXPECT_TRUE(names.contains("reports/" + report_id + ".source"));
  EXPECT_THAT(manifest["data_files"].GetString(), HasSubstr("reports/<id>.source"));
  const auto manifest_sha = sha256_of(local / "manifest.json");
  EXPECT_EQ(sha256_of(copy / "manifest.json"), manifest_sha);
  EXPECT_EQ(sha256_of(copy / "manifest.sha256"), sha256_of(local / "manifest.sha256"));
  EXPECT_EQ(item["sha256"].GetString(), manifest_sha);
  EXPECT_EQ(item["copy"]["sha256"].GetString(), manifest_sha);
  const auto events = events_of(id);
  EXPECT_THAT(schema_problems(events), ::testing::IsEmpty());
  ASSERT_EQ(count_type(events, "backup.copied"), 1u);
  for (const auto& e : events) {
    if (e.envelope.type == "backup.completed") {
      EXPECT_EQ(parse(e.envelope.data)["copy_to"].GetString(), copy_root().string());
    }
    if (e.envelope.type == "backup.copied") {
      EXPECT_EQ(parse(e.envelope.data)["sha256"].GetString(), manifest_sha);
    }
  }
  // The success the alert rules watch: the copy's time.
  const auto copied_at =
      static_cast<double>(core::parse_utc_micros(item["copy"]["copied_at"].GetString())) / 1e6;
  std::optional<double> gauge;
  EXPECT_TRUE(eventually([&] {
    gauge = metric_value(port_, "cauce_backup_last_success_timestamp_seconds");
    return gauge && *gauge > 0;
  }));
  ASSERT_TRUE(gauge);
  EXPECT_NEAR(*gauge, copied_at, 1.0);
  // Both temporary directories are on one filesystem here: not off the box, and cauce says so.
  EXPECT_THAT(serve_->output(), HasSubstr("backups.copy_to is on the data dir's filesystem"));
  const auto listed = run_cauce({"backups", "list"}, env());
  EXPECT_THAT(listed.second, HasSubstr(id + "  ")) << listed.second;
  EXPECT_THAT(listed.second, HasSubstr("copy  " + copy.string()));
  serve_->signal(SIGTERM);
  ASSERT_EQ(serve_->wait_exit(), 0);
  serve_.reset();

  // The box is lost: its data dir (backups included) is gone; the copy is all there is. A
  // corrupted duplicate of it is refused by restore, naming the file, before anything is written.
  const auto corrupted = copies_.path() / "corrupted";
  std::filesystem::copy(copy, corrupted, std::filesystem::copy_options::recursive);
  {
    std::fstream f(corrupted / "readmodels.dump", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(40);
    f.put('\x5a');
  }
  TempDatabase target_db;
  const auto target_kafka = test_kafka(2);
  auto target_env = cauce_env(target_db.config(), target_kafka);
  target_env["CAUCE_DATA_DIR"] = (data_.path() / "target").string();
  target_env["CAUCE_BACKUPS_COPY_TO"] = copy_root().string();
  const auto refused = run_cauce({"restore", corrupted.string()}, target_env);
  EXPECT_EQ(refused.first, 1);
  EXPECT_THAT(refused.second, HasSubstr("readmodels.dump"));
  // A manifest with a count changed still parses and describes its files rightly: its own
  // checksum refuses it (else the events would be re-produced before the digests disagreed).
  const auto altered = copies_.path() / "altered";
  std::filesystem::copy(copy, altered, std::filesystem::copy_options::recursive);
  {
    std::ifstream in(altered / "manifest.json");
    std::string text(std::istreambuf_iterator<char>(in), {});
    const auto rows = text.find(R"("rows": )");
    ASSERT_NE(rows, std::string::npos);
    text.insert(rows + 8, "1");
    std::ofstream(altered / "manifest.json", std::ios::trunc) << text;
  }
  const auto refused_manifest = run_cauce({"restore", altered.string()}, target_env);
  EXPECT_EQ(refused_manifest.first, 1);
  EXPECT_THAT(refused_manifest.second, HasSubstr("manifest.json: sha256 differs"));

  std::filesystem::remove_all(data_.path() / "backups");
  // By id: not under the target's data dir, so from backups.copy_to.
  const auto restored = run_cauce({"restore", id}, target_env);
  ASSERT_EQ(restored.first, 0) << restored.second;
  EXPECT_THAT(restored.second, HasSubstr("read models match the backup"));
  EXPECT_EQ(sequences(target_kafka, "backup"), sequences(kafka_, "backup"));
  for (const auto& [table, order] :
       std::vector<std::pair<std::string, std::string>>{{"contacts", "id"}, {"reports", "id"}}) {
    EXPECT_EQ(table_text(target_db, table, order), table_text(db_, table, order)) << table;
  }
  EXPECT_EQ(table_text(target_db, "events", "event_id", "aggregate_type <> 'backup'"),
            table_text(db_, "events", "event_id", "aggregate_type <> 'backup'"));
  for (const auto* extension : {".pdf", ".source"}) {
    const auto name = "reports/" + report_id + extension;
    EXPECT_EQ(sha256_of(data_.path() / "target" / name), sha256_of(copy / name)) << name;
  }
  // Restored from the copy, the target is the installation that copies there: it goes on copying
  // into the same backups.copy_to.
  const auto first_word = [](const std::filesystem::path& path) {
    std::string word;
    std::ifstream(path) >> word;
    return word;
  };
  EXPECT_FALSE(first_word(copy_root() / "cauce-installation").empty());
  EXPECT_EQ(first_word(data_.path() / "target" / "installation"),
            first_word(copy_root() / "cauce-installation"));
  EXPECT_EQ(first_word(copy_root() / "cauce-installation"),
            first_word(data_.path() / "installation"));
}

TEST_F(BackupCopyTest, ACopyThatCannotBeWrittenIsRetriedThenDeadLetteredAndTheBackupStays) {
  // A destination that cannot be written whoever runs cauce (root included): under a file.
  const auto blocker = copies_.path() / "blocker";
  std::ofstream(blocker) << "not a directory";
  extra_env_["CAUCE_BACKUPS_COPY_TO"] = (blocker / "copies").string();
  restart();

  const auto id = request_backup();
  const auto item = backup_when_copy(id, "failed");
  ASSERT_TRUE(item.IsObject());
  EXPECT_STREQ(item["status"].GetString(), "completed") << "the backup itself succeeded";
  EXPECT_EQ(item["copy"]["attempts"].GetInt(), 4) << "workers.max_attempts";
  EXPECT_THAT(item["copy"]["error"].GetString(), HasSubstr("blocker"));
  EXPECT_TRUE(item["copy"]["directory"].IsNull());
  EXPECT_TRUE(item["copy"]["next_attempt_at"].IsNull());

  const auto events = events_of(id);
  EXPECT_THAT(schema_problems(events), ::testing::IsEmpty());
  std::vector<rapidjson::Document> failures;
  for (const auto& e : events) {
    if (e.envelope.type == "backup.copy_attempt_failed") failures.push_back(parse(e.envelope.data));
  }
  ASSERT_EQ(failures.size(), 4u);
  for (std::size_t i = 0; i < failures.size(); ++i) {
    EXPECT_EQ(failures[i]["attempt"].GetInt(), static_cast<int>(i) + 1);
    EXPECT_EQ(failures[i].HasMember("next_attempt_at"), i + 1 < failures.size())
        << "retried with backoff, then given up";
  }
  EXPECT_EQ(count_type(events, "backup.failed"), 0u);

  const auto letter = only_dead_letter(id);
  ASSERT_TRUE(letter.IsObject());
  EXPECT_STREQ(letter["kind"].GetString(), "backup");
  EXPECT_STREQ(letter["step"].GetString(), "copy");
  EXPECT_EQ(letter["attempts"].GetInt(), 4);
  EXPECT_THAT(letter["last_error"].GetString(), HasSubstr("blocker"));

  // The local backup is intact. (That a backup whose copy failed is no success for the gauge is
  // the read model's max(copied_at), read by housekeeping: TheCopyDestinationKeepsTheNewestCopies
  // waits for that read after a restart; a check here could pass before housekeeping ran.)
  const auto verified = run_cauce({"backups", "verify", id}, env());
  EXPECT_EQ(verified.first, 0) << verified.second;
}

// A mount that does not answer (its marker a FIFO nobody writes to: reading it blocks, as I/O on a
// hard NFS mount whose server is gone does) neither holds the start nor a runner: each attempt
// fails at backups.copy_timeout_s, and the copy is given up like any other.
TEST_F(BackupCopyTest, ACopyToThatDoesNotAnswerFailsEachAttemptAtItsDeadline) {
  const auto hung = copies_.path() / "hung";
  std::filesystem::create_directories(hung);
  ASSERT_EQ(::mkfifo((hung / "cauce-installation").c_str(), 0644), 0);
  extra_env_["CAUCE_BACKUPS_COPY_TO"] = hung.string();
  extra_env_["CAUCE_BACKUPS_COPY_TIMEOUT_S"] = "1";
  restart();
  EXPECT_THAT(serve_->output(), HasSubstr("backups.copy_to does not answer"));

  const auto id = request_backup();
  const auto item = backup_when_copy(id, "failed");
  ASSERT_TRUE(item.IsObject());
  EXPECT_STREQ(item["status"].GetString(), "completed");
  EXPECT_EQ(item["copy"]["attempts"].GetInt(), 4) << "workers.max_attempts";
  EXPECT_THAT(item["copy"]["error"].GetString(), HasSubstr("backups.copy_timeout_s"));
  // The runners are free: another backup completes, and its copy is given up the same way.
  const auto next = request_backup();
  const auto next_item = backup_when_copy(next, "failed");
  ASSERT_TRUE(next_item.IsObject());
  EXPECT_STREQ(next_item["status"].GetString(), "completed");
}

TEST_F(BackupCopyTest, TheCopyDestinationKeepsTheNewestCopies) {
  extra_env_["CAUCE_BACKUPS_COPY_KEEP"] = "2";
  restart();
  std::vector<std::string> ids;
  std::string newest_copied_at;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(request_backup());
    const auto item = backup_when_copy(ids.back(), "copied");
    if (item.IsObject()) newest_copied_at = item["copy"]["copied_at"].GetString();
  }
  // Retention runs once the last copy is recorded (the read model may show it a moment before).
  EXPECT_TRUE(eventually([&] {
    return backup_ids_in(copy_root()) == std::set<std::string>{ids[1], ids[2]};
  })) << "backups.copy_keep: the two newest";
  EXPECT_EQ(backup_ids_in(data_.path() / "backups"),
            (std::set<std::string>(ids.begin(), ids.end())))
      << "the local retention is its own";
  // A restarted process took no backup: its gauge is what housekeeping reads, the newest copy's
  // time (0 until it has read it).
  ASSERT_FALSE(newest_copied_at.empty());
  restart();
  const auto newest = static_cast<double>(core::parse_utc_micros(newest_copied_at)) / 1e6;
  std::optional<double> gauge;
  EXPECT_TRUE(eventually([&] {
    gauge = metric_value(port_, "cauce_backup_last_success_timestamp_seconds");
    return gauge && *gauge > 0;
  })) << "housekeeping reads the newest success";
  ASSERT_TRUE(gauge);
  EXPECT_NEAR(*gauge, newest, 1.0);
}

}  // namespace
}  // namespace cauce::testing
