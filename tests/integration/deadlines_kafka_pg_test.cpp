// Alert deadlines (issue 16, part 2) on the real `cauce serve`: an open alert nobody acknowledges
// escalates itself one level per missed deadline, as actor system:deadlines; acknowledging or
// closing takes the deadline off; a deadline that passes while cauce is down fires once when it
// is back; with two processes running the deadlines, each fires once. Deadlines of 1-3 s here
// (settings), runners polling every 100 ms.
#include <algorithm>
#include <csignal>
#include <iostream>
#include <regex>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cauce/core/log.hpp>

#include "event_log.hpp"
#include "served.hpp"

namespace cauce::testing {
namespace {

namespace beast_http = boost::beast::http;
using ::testing::ElementsAre;

class DeadlinesTest : public ServedTest {
 protected:
  void SetUp() override {
    // Commands may wait past the default 4 s for their outcome on 2 cores under `ctest -j`:
    // the test is about deadlines, not latency.
    settings = {{"CAUCE_ALERTS_DEADLINE_CRITICAL_S", "2"},
                {"CAUCE_ALERTS_DEADLINE_INFO_S", "0"},
                {"CAUCE_WORKERS_POLL_MS", "100"},
                {"CAUCE_COMMANDS_REPLY_TIMEOUT_MS", "30000"}};
    ServedTest::SetUp();
  }

  // `cauce serve` with a warning deadline of `warning_s` seconds (critical 2 s, info none).
  void serve(int warning_s = 1) {
    settings["CAUCE_ALERTS_DEADLINE_WARNING_S"] = std::to_string(warning_s);
    ServedTest::serve();
  }

  std::string raise(const std::string& level) const {
    const auto r = call(beast_http::verb::post, "/v1/alerts",
                        R"({"level":")" + level + R"(","title":"Queue over 50"})");
    EXPECT_EQ(r.status, 201u) << r.body;
    return json_member(r.body, "id");
  }

  // "<type> <actor> <data>" of the alert's events, in order.
  std::vector<std::string> history(const std::string& alert) const {
    std::vector<std::string> out;
    for (const auto& e : read_event_log(kafka_)) {
      if (e.envelope.aggregate_id == alert && e.envelope.type != "alert.raised") {
        out.push_back(e.envelope.type + " " + e.envelope.actor + " " + e.envelope.data);
      }
    }
    return out;
  }

  // Waits until the alert's history has `n` entries past its raise (or the timeout).
  std::vector<std::string> history_of_size(const std::string& alert, std::size_t n,
                                           std::chrono::milliseconds timeout = 20s) const {
    std::vector<std::string> h;
    eventually(
        [&] {
          h = history(alert);
          return h.size() >= n;
        },
        timeout);
    return h;
  }
};

TEST_F(DeadlinesTest, AnUnacknowledgedAlertEscalatesItselfOncePerLevel) {
  serve();
  const auto alert = raise("warning");
  // warning (1 s) -> critical (2 s) -> the critical miss recorded; then nothing more.
  history_of_size(alert, 3);
  std::this_thread::sleep_for(3s);
  const auto log = read_event_log(kafka_);
  EXPECT_THAT(schema_problems(log), ::testing::IsEmpty());
  std::vector<commands::EventEnvelope> events;
  for (const auto& e : log) {
    if (e.envelope.aggregate_id == alert) events.push_back(e.envelope);
  }
  ASSERT_EQ(events.size(), 4u) << ::testing::PrintToString(history(alert));
  const auto raised_at = events[0].occurred_at_us;
  EXPECT_EQ(events[1].type, "alert.deadline_missed");
  EXPECT_EQ(events[2].type, "alert.escalated");
  EXPECT_EQ(events[2].data, R"({"from":"warning","to":"critical"})");
  EXPECT_EQ(events[3].type, "alert.deadline_missed");
  for (std::size_t i = 1; i < events.size(); ++i) EXPECT_EQ(events[i].actor, "system:deadlines");
  // The deadline's instant is exact, and nothing fired before it.
  const auto warning_deadline = raised_at + 1'000'000;
  EXPECT_EQ(events[1].data, R"({"level":"warning","deadline_at":")" +
                                core::format_utc_micros(warning_deadline) + R"("})");
  EXPECT_GE(events[1].occurred_at_us, warning_deadline);
  const auto critical_deadline = events[2].occurred_at_us + 2'000'000;
  EXPECT_EQ(events[3].data, R"({"level":"critical","deadline_at":")" +
                                core::format_utc_micros(critical_deadline) + R"("})");
  EXPECT_GE(events[3].occurred_at_us, critical_deadline);
  // The read model and its timeline show it.
  const auto shown = call(beast_http::verb::get, "/v1/alerts/" + alert);
  EXPECT_EQ(json_member(shown.body, "level"), "critical") << shown.body;
  EXPECT_NE(shown.body.find("system:deadlines"), std::string::npos) << shown.body;
}

TEST_F(DeadlinesTest, AcknowledgingOrClosingTakesTheDeadlineOff) {
  serve(3);
  const auto acknowledged = raise("warning");
  EXPECT_EQ(
      call(beast_http::verb::post, "/v1/alerts/" + acknowledged + "/acknowledge", "{}").status,
      200u);
  const auto closed = raise("warning");
  EXPECT_EQ(call(beast_http::verb::post, "/v1/alerts/" + closed + "/close",
                 R"({"resolution":"false alarm"})")
                .status,
            200u);
  const auto ignored = raise("warning");
  // The third one, left alone, shows the deadline ran; the others by then had theirs taken off.
  history_of_size(ignored, 2);
  std::this_thread::sleep_for(1s);
  EXPECT_THAT(history(acknowledged), ElementsAre(::testing::StartsWith("alert.acknowledged")));
  EXPECT_THAT(history(closed), ElementsAre(::testing::StartsWith("alert.closed")));
  const auto info = raise("info");  // alerts.deadline_info_s 0: no deadline at all
  std::this_thread::sleep_for(2s);
  EXPECT_THAT(history(info), ::testing::IsEmpty());
}

// An acknowledged alert escalated by hand gets a row for its new level from the feeder (which
// reads events, not state); the runner's command is refused and the row put to done: no miss, and
// no runner sending it again and again.
TEST_F(DeadlinesTest, ADeadlineTheAlertLeftIsPutOffOnce) {
  serve(3);
  const auto alert = raise("warning");
  EXPECT_EQ(call(beast_http::verb::post, "/v1/alerts/" + alert + "/acknowledge", "{}").status,
            200u);
  EXPECT_EQ(
      call(beast_http::verb::post, "/v1/alerts/" + alert + "/escalate", R"({"level":"critical"})")
          .status,
      200u);
  const auto off = [&] {
    const auto metrics = http_request(port_, beast_http::verb::get, "/metrics").body;
    std::smatch m;
    static const std::regex kOff(
        R"re(cauce_worker_steps_total\{kind="alert",result="off",step="deadline"\} ([0-9.e+]+))re");
    return std::regex_search(metrics, m, kOff) ? std::stod(m[1]) : -1.0;
  };
  EXPECT_TRUE(eventually([&] { return off() >= 1; }, 20s)) << "the critical deadline ran";
  std::this_thread::sleep_for(2s);
  EXPECT_EQ(off(), 1.0) << "put off once, not retried";
  EXPECT_THAT(history(alert), ElementsAre(::testing::StartsWith("alert.acknowledged"),
                                          ::testing::StartsWith("alert.escalated admin")));
}

TEST_F(DeadlinesTest, ADeadlineThatPassedWhileCauceWasDownFiresOnceWhenItIsBack) {
  serve(3);
  const auto alert = raise("warning");
  serve_->signal(SIGTERM);
  ASSERT_EQ(serve_->wait_exit(), 0) << serve_->output();
  std::this_thread::sleep_for(4s);  // past the 3 s deadline, nobody running
  EXPECT_THAT(history(alert), ::testing::IsEmpty());
  serve(3);
  const auto h = history_of_size(alert, 2);
  ASSERT_GE(h.size(), 2u);
  EXPECT_THAT(
      h[0], ::testing::StartsWith(R"(alert.deadline_missed system:deadlines {"level":"warning")"));
  EXPECT_THAT(h[1], ::testing::StartsWith("alert.escalated system:deadlines"));
  // Once: whatever follows is the critical level's own deadline, never the warning one again.
  std::this_thread::sleep_for(1s);
  const auto after = history(alert);
  EXPECT_EQ(std::count_if(after.begin(), after.end(),
                          [](const std::string& e) {
                            return e.find(R"("level":"warning")") != std::string::npos;
                          }),
            1);
}

TEST_F(DeadlinesTest, TwoProcessesRunningTheDeadlinesFireEachOnce) {
  serve();
  auto second_env = env();  // the same settings as the first
  second_env["CAUCE_ROLES"] = "workers";
  CauceProcess second({"serve"}, second_env);
  ASSERT_TRUE(second.wait_for_line(R"("msg":"workers started")")) << second.output();
  std::vector<std::string> alerts;
  for (int i = 0; i < 10; ++i) alerts.push_back(raise("warning"));
  for (const auto& alert : alerts) history_of_size(alert, 3);
  std::this_thread::sleep_for(1s);
  int by_second = 0;
  for (const auto& alert : alerts) {
    EXPECT_THAT(history(alert),
                ElementsAre(::testing::StartsWith("alert.deadline_missed system:deadlines"),
                            ::testing::StartsWith("alert.escalated system:deadlines"),
                            ::testing::StartsWith("alert.deadline_missed system:deadlines")))
        << alert;
  }
  const auto output = second.output();
  for (auto at = output.find("alert deadline missed"); at != std::string::npos;
       at = output.find("alert deadline missed", at + 1)) {
    ++by_second;
  }
  std::cout << "the workers-only process sent " << by_second << " of " << 2 * alerts.size()
            << " missed deadlines\n";
  second.signal(SIGTERM);
  EXPECT_EQ(second.wait_exit(), 0) << second.output();
}

}  // namespace
}  // namespace cauce::testing
