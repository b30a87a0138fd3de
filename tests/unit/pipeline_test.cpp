// The request pipeline (routing, auth, handler, problem mapping, metrics) without a network:
// HttpServer::handle is what every connection calls.
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>

#include <cauce/api/http_metrics.hpp>
#include <cauce/api/problem.hpp>
#include <cauce/api/server.hpp>
#include <cauce/core/errors.hpp>

#include "memory_key_store.hpp"

namespace cauce::api {
namespace {

// GET over a real connection; the status code.
unsigned http_get(std::uint16_t port, const std::string& target, const std::string& token = "") {
  boost::asio::io_context io;
  boost::beast::tcp_stream stream(io);
  stream.connect({boost::asio::ip::make_address("127.0.0.1"), port});
  stream.expires_after(std::chrono::seconds(20));
  http::request<http::string_body> req(http::verb::get, target, 11);
  req.set(http::field::host, "127.0.0.1");
  if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
  http::write(stream, req);
  boost::beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(stream, buffer, res);
  return res.result_int();
}

class PipelineTest : public ::testing::Test {
 protected:
  PipelineTest() : keys_(store_), metrics_(registry_) {
    router_.add(http::verb::get, "/v1/things/{id}", Role::kReader, [](Request& r) {
      return json_response(r, http::status::ok,
                           "{\"id\":\"" + std::string(r.path_param("id")) + "\",\"who\":\"" +
                               r.principal->name + "\"}");
    });
    router_.add(http::verb::post, "/v1/admin-only", Role::kAdmin,
                [](Request& r) { return json_response(r, http::status::ok, "{}"); });
    router_.add(http::verb::get, "/public", std::nullopt,
                [](Request& r) { return json_response(r, http::status::ok, "{}"); });
    router_.add(http::verb::get, "/down", std::nullopt, [](Request&) -> Response {
      throw core::DependencyError("kafka", "broker gone", true);
    });
    router_.add(http::verb::get, "/conflict", std::nullopt, [](Request&) -> Response {
      throw ApiError(http::status::conflict, "rule-violation", "archived contacts are final");
    });
    server_ = std::make_unique<HttpServer>(core::HttpConfig{}, router_, keys_, metrics_);
    reader_ = keys_.create("reader-bot", Role::kReader).token;
  }

  Response call(http::verb method, std::string target, std::string token = "",
                std::string request_id = "") {
    http::request<http::string_body> req(method, target, 11);
    if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
    if (!request_id.empty()) req.set("X-Request-Id", request_id);
    return server_->handle(std::move(req));
  }

  testing::MemoryKeyStore store_;
  ApiKeys keys_;
  prometheus::Registry registry_;
  HttpMetrics metrics_;
  Router router_;
  std::unique_ptr<HttpServer> server_;
  std::string reader_;
};

// Keys missing from the cache are looked up off the I/O threads (issue 11): with every lookup
// stuck in the store, more of them in flight than there are I/O threads, the server still
// answers over the network, and the stuck requests answer once the store does.
TEST_F(PipelineTest, KeyLookupsStuckInTheStoreNeverHoldTheIoThreads) {
  ASSERT_TRUE(keys_.authenticate(reader_)) << "the reader's key is in the cache";
  const int finds_before = store_.finds.load();
  std::mutex mutex;
  std::condition_variable released_cv;
  bool released = false;
  store_.after_find = [&] {
    std::unique_lock lock(mutex);
    released_cv.wait(lock, [&] { return released; });
  };
  core::HttpConfig config;
  config.port = 0;
  config.threads = 2;
  HttpServer server(config, router_, keys_, metrics_);
  const auto port = server.start();
  auto get = [port](const std::string& target, const std::string& token) {
    return http_get(port, target, token);
  };
  std::vector<std::future<unsigned>> stuck;
  for (int i = 0; i < 6; ++i) {
    char id[17];
    std::snprintf(id, sizeof id, "%016x", 0xabc0 + i);
    stuck.push_back(std::async(std::launch::async, get, "/v1/things/1",
                               std::string("ck_") + id + "_" + std::string(64, 'b')));
  }
  while (store_.finds.load() < finds_before + 2)
    std::this_thread::yield();  // lookups are stuck in the store
  EXPECT_EQ(get("/public", ""), 200u) << "an I/O thread is free";
  EXPECT_EQ(get("/v1/things/2", reader_), 200u) << "a cached key needs no lookup";
  {
    const std::lock_guard lock(mutex);
    released = true;
  }
  released_cv.notify_all();
  for (auto& f : stuck) EXPECT_EQ(f.get(), 401u);
  server.stop();
}

// Past http.max_connections a new connection gets a 503 at once; the open ones are unaffected.
TEST_F(PipelineTest, ConnectionsPastTheCapGetA503) {
  core::HttpConfig config;
  config.port = 0;
  config.max_connections = 2;
  HttpServer server(config, router_, keys_, metrics_);
  const auto port = server.start();
  boost::asio::io_context io;
  std::vector<std::unique_ptr<boost::beast::tcp_stream>> open;
  for (int i = 0; i < 2; ++i) {
    open.push_back(std::make_unique<boost::beast::tcp_stream>(io));
    open.back()->connect({boost::asio::ip::make_address("127.0.0.1"), port});
  }
  EXPECT_EQ(http_get(port, "/public"), 503u);
  // An open connection still works; once one closes, new ones are taken again.
  http::request<http::string_body> req(http::verb::get, "/public", 11);
  req.set(http::field::host, "127.0.0.1");
  http::write(*open[0], req);
  boost::beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(*open[0], buffer, res);
  EXPECT_EQ(res.result_int(), 200u);
  open.clear();
  bool accepted = false;
  for (int i = 0; i < 200 && !accepted; ++i) {
    accepted = http_get(port, "/public") == 200u;
    if (!accepted) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(accepted);
  server.stop();
}

TEST_F(PipelineTest, AuthenticatedRequestReachesTheHandlerWithItsPrincipal) {
  const auto r = call(http::verb::get, "/v1/things/42", reader_);
  EXPECT_EQ(r.result(), http::status::ok);
  EXPECT_EQ(r.body(), R"({"id":"42","who":"reader-bot"})");
}

TEST_F(PipelineTest, MissingOrUnknownKeyIs401WrongRoleIs403) {
  const auto missing = call(http::verb::get, "/v1/things/1");
  EXPECT_EQ(missing.result(), http::status::unauthorized);
  EXPECT_EQ(missing[http::field::www_authenticate], "Bearer realm=\"cauce\"");
  EXPECT_EQ(call(http::verb::get, "/v1/things/1", "ck_nonsense").result(),
            http::status::unauthorized);
  const auto forbidden = call(http::verb::post, "/v1/admin-only", reader_);
  EXPECT_EQ(forbidden.result(), http::status::forbidden);
  EXPECT_EQ(forbidden[http::field::content_type], "application/problem+json");
}

TEST_F(PipelineTest, UnknownPathIs404AndWrongMethodIs405WithAllow) {
  EXPECT_EQ(call(http::verb::get, "/nowhere").result(), http::status::not_found);
  const auto r = call(http::verb::delete_, "/public");
  EXPECT_EQ(r.result(), http::status::method_not_allowed);
  EXPECT_EQ(r[http::field::allow], "GET");
}

TEST_F(PipelineTest, HandlerErrorsAreMappedInOnePlace) {
  const auto down = call(http::verb::get, "/down");
  EXPECT_EQ(down.result(), http::status::service_unavailable);
  EXPECT_EQ(down[http::field::retry_after], "1");
  EXPECT_EQ(call(http::verb::get, "/conflict").result(), http::status::conflict);
}

TEST_F(PipelineTest, RequestIdsAreEchoedWhenPlainAndMintedOtherwise) {
  EXPECT_EQ(call(http::verb::get, "/public", "", "abc-123")["X-Request-Id"], "abc-123");
  const auto minted = call(http::verb::get, "/public", "", "bad id\twith spaces");
  EXPECT_NE(minted["X-Request-Id"], "bad id\twith spaces");
  EXPECT_EQ(minted["X-Request-Id"].size(), 16u);
}

// W3C Trace Context: every answer names cauce's span in `traceparent`, a child of the request's
// when it sent one that is well-formed; a malformed one is ignored (a new trace), never refused.
TEST_F(PipelineTest, EveryAnswerCarriesItsTraceParent) {
  const auto with = [this](std::vector<std::string> values, std::string target = "/public") {
    http::request<http::string_body> req(http::verb::get, target, 11);
    for (const auto& value : values) req.insert("traceparent", value);
    return server_->handle(std::move(req));
  };
  const std::string incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  const auto continued = with({incoming});
  EXPECT_EQ(continued.result(), http::status::ok);
  const auto ours = core::TraceParent::parse(continued["traceparent"]);
  ASSERT_TRUE(ours) << continued["traceparent"];
  EXPECT_EQ(ours->trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_NE(ours->span_id(), "00f067aa0ba902b7");
  EXPECT_TRUE(ours->sampled());
  // Refusals and errors too.
  for (const auto* target : {"/nowhere", "/down", "/v1/things/1"}) {
    const auto r = with({incoming}, target);
    EXPECT_GE(r.result_int(), 400u) << target;
    EXPECT_EQ(r["traceparent"].substr(0, 35), incoming.substr(0, 35)) << target;
  }
  const std::vector<std::vector<std::string>> fresh_cases = {
      {},
      {"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"},
      {"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
      {"00-00000000000000000000000000000000-00f067aa0ba902b7-01"},
      {"not a traceparent"},
      {incoming, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}};
  for (const auto& values : fresh_cases) {
    const auto r = with(values);
    EXPECT_EQ(r.result(), http::status::ok) << (values.empty() ? "" : values[0]);
    const auto started = core::TraceParent::parse(r["traceparent"]);
    ASSERT_TRUE(started) << r["traceparent"];
    EXPECT_NE(started->trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
    EXPECT_FALSE(started->sampled());
  }
}

TEST_F(PipelineTest, MetricsCountByRoutePatternNotRawPath) {
  call(http::verb::get, "/v1/things/1", reader_);
  call(http::verb::get, "/v1/things/2", reader_);
  call(http::verb::get, "/nowhere");
  const auto text = prometheus::TextSerializer().Serialize(registry_.Collect());
  EXPECT_NE(
      text.find(
          R"(cauce_http_requests_total{method="GET",route="/v1/things/{id}",status="200"} 2)"),
      std::string::npos)
      << text;
  EXPECT_NE(text.find(R"(route="unmatched",status="404")"), std::string::npos);
  EXPECT_NE(text.find("cauce_http_request_duration_seconds_bucket"), std::string::npos);
}

}  // namespace
}  // namespace cauce::api
