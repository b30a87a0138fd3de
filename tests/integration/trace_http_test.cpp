// W3C Trace Context across processes (issue 18, part 6) on the real `cauce serve`: a request's
// `traceparent` is answered in cauce's span, carried on its events (envelope and Kafka header)
// and written in the log lines of the API, the processor and the projector about its command; a
// request without one, or with a malformed one, starts a new trace (never a 400); a report's job
// steps continue the trace of the request that asked for it.
#include <set>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cauce/core/trace.hpp>

#include "event_log.hpp"
#include "served.hpp"
#include "source_server.hpp"

namespace cauce::testing {
namespace {

namespace beast_http = boost::beast::http;
using Headers = std::vector<std::pair<std::string, std::string>>;

constexpr std::string_view kIncoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
constexpr std::string_view kIncomingTrace = "4bf92f3577b34da6a3ce929d0e0e4736";

class TraceTest : public ServedTest {
 protected:
  void SetUp() override {
    settings["CAUCE_LOG_LEVEL"] = "debug";  // the per-command lines (api/README.md "Traces")
    settings["CAUCE_DOWNLOAD_ALLOW_PRIVATE"] = "true";  // the report source is on loopback
    ServedTest::SetUp();
    serve();
  }

  HttpResult register_contact(Headers headers) const {
    return call(beast_http::verb::post, "/v1/contacts",
                R"({"name":"Ana Lima","phone":"+351 912 345 678"})", "", std::move(headers));
  }

  // cauce's span as the answer names it (a failure when it is not a traceparent).
  static core::TraceParent answered(const HttpResult& r) {
    const auto trace = core::TraceParent::parse(header(r, "traceparent"));
    EXPECT_TRUE(trace) << "traceparent: \"" << header(r, "traceparent") << "\"";
    return trace.value_or(core::TraceParent{});
  }

  // The events of aggregate `id` on the log, once there are at least `count`; every event on the
  // log checked against schemas/ and its headers (the traceparent header is its trace_parent).
  std::vector<LoggedEvent> events_of(const std::string& id, std::size_t count = 1) const {
    std::vector<LoggedEvent> out;
    eventually(
        [&] {
          out.clear();
          for (auto& e : read_event_log(kafka_)) {
            if (e.envelope.aggregate_id == id) out.push_back(std::move(e));
          }
          return out.size() >= count;
        },
        60s);
    EXPECT_THAT(schema_problems(out), ::testing::IsEmpty());
    EXPECT_GE(out.size(), count) << "events of " << id;
    return out;
  }

  // The server's log line of `component` saying `msg` whose trace_id is `trace_id`, once written
  // ("" if none comes).
  std::string log_line(const std::string& component, const std::string& msg,
                       std::string_view trace_id) const {
    const std::string head = R"("component":")" + component + R"(","msg":")" + msg + "\"";
    const std::string trace = R"("trace_id":")" + std::string(trace_id) + "\"";
    std::string found;
    eventually(
        [&] {
          std::istringstream lines(serve_->output());
          for (std::string line; std::getline(lines, line);) {
            if (line.find(head) != std::string::npos && line.find(trace) != std::string::npos) {
              found = line;
              return true;
            }
          }
          return false;
        },
        30s);
    EXPECT_FALSE(found.empty()) << component << " never logged \"" << msg << "\" with " << trace;
    return found;
  }

  static std::string span_of(const std::string& line) { return json_member(line, "span_id"); }
};

TEST_F(TraceTest, ARequestsTraceIsFollowedThroughTheEventsAndTheLogLines) {
  const auto r = register_contact({{"traceparent", std::string(kIncoming)}});
  ASSERT_EQ(r.status, 201u) << r.body;
  const auto api = answered(r);
  EXPECT_EQ(api.trace_id(), kIncomingTrace);
  EXPECT_NE(api.span_id(), "00f067aa0ba902b7") << "cauce's span, not the caller's";
  EXPECT_TRUE(api.sampled()) << "the caller's sampled flag goes on";

  const auto id = json_member(r.body, "id");
  const auto events = events_of(id);
  ASSERT_EQ(events.size(), 1u);
  const auto& event = events[0];
  EXPECT_EQ(event.envelope.trace_parent.trace_id(), kIncomingTrace);
  EXPECT_NE(event.envelope.trace_parent.span_id(), api.span_id()) << "the processor's span";
  EXPECT_EQ(event.headers.at("traceparent"), event.envelope.trace_parent.text());
  const auto raw = json_member(event.value, "trace_parent");
  EXPECT_EQ(raw, event.envelope.trace_parent.text()) << "analytics consumers read it as is";

  // Projected (the read waits for the command's position), then every side has said so.
  ASSERT_EQ(get("/v1/contacts/" + id, header(r, "cauce-position")).status, 200u);
  EXPECT_EQ(span_of(log_line("http", "command accepted", kIncomingTrace)), api.span_id());
  const auto processor_span = std::string(event.envelope.trace_parent.span_id());
  EXPECT_EQ(span_of(log_line("processor", "command decided", kIncomingTrace)), processor_span);
  EXPECT_EQ(span_of(log_line("processor", "command appended", kIncomingTrace)), processor_span);
  const auto applied = log_line("projector", "event applied", kIncomingTrace);
  EXPECT_EQ(span_of(applied), processor_span);
  EXPECT_EQ(json_member(applied, "event_id"), event.envelope.event_id);

  // A refused command is logged with its trace too.
  const auto refused = call(beast_http::verb::post, "/v1/contacts/" + id + "/archive", "", "",
                            {{"traceparent", std::string(kIncoming)}, {"If-Match", "\"7\""}});
  EXPECT_EQ(refused.status, 412u) << refused.body;
  EXPECT_EQ(answered(refused).trace_id(), kIncomingTrace);
  const auto line = log_line("http", "command refused", kIncomingTrace);
  EXPECT_EQ(json_member(line, "status"), "412");
  EXPECT_EQ(span_of(line), answered(refused).span_id());
}

TEST_F(TraceTest, WithoutAWellFormedTraceparentARequestStartsANewTrace) {
  // None, then malformed ones: W3C says ignore them and start anew; never a 400.
  const std::vector<Headers> cases = {
      {},
      {{"traceparent", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01"}},
      {{"traceparent", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}},
      {{"traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"}},
      {{"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"}},
      {{"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"}},
      {{"traceparent", "a traceparent it is not"}},
  };
  std::set<std::string> traces;
  for (const auto& headers : cases) {
    const auto what = headers.empty() ? std::string("none") : headers[0].second;
    const auto r = register_contact(headers);
    ASSERT_EQ(r.status, 201u) << what << ": " << r.body;
    const auto started = answered(r);
    EXPECT_NE(started.trace_id(), kIncomingTrace) << what;
    EXPECT_FALSE(started.sampled()) << what;
    traces.emplace(started.trace_id());
    const auto events = events_of(json_member(r.body, "id"));
    ASSERT_FALSE(events.empty()) << what;
    EXPECT_EQ(events[0].envelope.trace_parent.trace_id(), started.trace_id())
        << what << ": the event is in the trace the answer named";
  }
  EXPECT_EQ(traces.size(), cases.size()) << "a new trace each time";

  // A later version is read by its version-00 fields: the trace goes on.
  const auto later = register_contact(
      {{"traceparent", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes"}});
  ASSERT_EQ(later.status, 201u) << later.body;
  EXPECT_EQ(answered(later).trace_id(), kIncomingTrace);
  EXPECT_EQ(events_of(json_member(later.body, "id"))[0].envelope.trace_parent.trace_id(),
            kIncomingTrace);
}

TEST_F(TraceTest, AReportsJobStepsContinueTheTraceOfTheRequestThatAskedForIt) {
  SourceServer source([](const std::string&, int, SourceServer::Response& response) {
    response.body() = "day,calls\n2026-12-04,118\n2026-12-05,97\n";
  });
  const auto r = call(beast_http::verb::post, "/v1/reports",
                      R"({"title":"Calls","source_url":")" + source.url("/calls.csv") + "\"}", "",
                      {{"traceparent", std::string(kIncoming)}});
  ASSERT_EQ(r.status, 202u) << r.body;
  const auto id = json_member(r.body, "id");
  ASSERT_TRUE(eventually(
      [&] { return json_member(get("/v1/reports/" + id).body, "status") == "ready"; }, 60s))
      << get("/v1/reports/" + id).body;

  // requested, download_started, downloaded, rendered: the API's command and the worker's.
  const auto events = events_of(id, 4);
  std::set<std::string> spans;
  for (const auto& e : events) {
    EXPECT_EQ(e.envelope.trace_parent.trace_id(), kIncomingTrace) << e.envelope.type;
    spans.emplace(e.envelope.trace_parent.span_id());
  }
  EXPECT_GE(spans.size(), 3u) << "each command decided in a span of its own";
  const auto started = log_line("workers", "job attempt started", kIncomingTrace);
  const auto done = log_line("workers", "job done", kIncomingTrace);
  EXPECT_EQ(json_member(done, "id"), id);
  EXPECT_FALSE(spans.contains(span_of(started))) << "the worker's span is its own";
}

}  // namespace
}  // namespace cauce::testing
