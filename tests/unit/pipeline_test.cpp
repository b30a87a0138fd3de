// The request pipeline (routing, auth, handler, problem mapping, metrics) without a network:
// HttpServer::handle is what every connection calls.
#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>

#include <cauce/api/http_metrics.hpp>
#include <cauce/api/problem.hpp>
#include <cauce/api/server.hpp>
#include <cauce/core/errors.hpp>

#include "memory_key_store.hpp"

namespace cauce::api {
namespace {

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
