// The HTTP shell over real sockets and a real database: auth, every error class as
// problem+json, key management, metrics and graceful drain.
#include <future>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include "in_process_api.hpp"

namespace cauce::testing {
namespace {

using ::testing::HasSubstr;

rapidjson::Document json(const HttpResult& r) {
  rapidjson::Document doc;
  doc.Parse(r.body.c_str());
  EXPECT_FALSE(doc.HasParseError()) << r.body;
  return doc;
}

void expect_problem(const HttpResult& r, unsigned status) {
  EXPECT_EQ(r.status, status) << r.body;
  EXPECT_EQ(r.headers.count("content-type") ? r.headers.at("content-type") : "",
            "application/problem+json");
  const auto doc = json(r);
  ASSERT_TRUE(doc.IsObject());
  EXPECT_EQ(doc["status"].GetUint(), status);
  EXPECT_TRUE(doc.HasMember("type") && doc.HasMember("title") && doc.HasMember("detail"));
  EXPECT_TRUE(doc.HasMember("request_id"));
}

class HttpPgTest : public ::testing::Test {
 protected:
  TempDatabase db_;
  InProcessApi api_{db_.config()};
};

TEST_F(HttpPgTest, MissingOrUnknownKeyIs401) {
  expect_problem(http_request(api_.port(), http::verb::get, "/v1/keys"), 401);
  expect_problem(http_request(api_.port(), http::verb::get, "/v1/keys", "",
                              bearer("ck_0123456789abcdef_" + std::string(64, 'a'))),
                 401);
  expect_problem(
      http_request(api_.port(), http::verb::get, "/v1/keys", "", {{"Authorization", "Basic eA=="}}),
      401);
}

TEST_F(HttpPgTest, WrongRoleIs403) {
  const auto reader = api_.keys().create("dashboard", api::Role::kReader).token;
  const auto r = http_request(api_.port(), http::verb::get, "/v1/keys", "", bearer(reader));
  expect_problem(r, 403);
  EXPECT_THAT(r.body, HasSubstr("admin"));
}

TEST_F(HttpPgTest, UnknownPathIs404AndWrongMethodIs405) {
  expect_problem(http_request(api_.port(), http::verb::get, "/v1/nothing-here"), 404);
  const auto r = http_request(api_.port(), http::verb::put, "/v1/keys");
  expect_problem(r, 405);
  EXPECT_EQ(r.headers.at("allow"), "GET, POST");
}

TEST_F(HttpPgTest, OversizeBodyIs413) {
  const std::string big(1024 * 1024 + 1, 'x');
  expect_problem(
      http_request(api_.port(), http::verb::post, "/v1/keys", big, bearer(api_.admin_token())),
      413);
  // The server stays up and keeps answering.
  EXPECT_EQ(http_request(api_.port(), http::verb::get, "/healthz").status, 200u);
}

TEST_F(HttpPgTest, MalformedJsonIs400WithThePosition) {
  const auto r = http_request(api_.port(), http::verb::post, "/v1/keys", R"({"name": "x", )",
                              bearer(api_.admin_token()));
  expect_problem(r, 400);
  EXPECT_THAT(json(r)["detail"].GetString(), HasSubstr("at byte"));
}

TEST_F(HttpPgTest, InvalidFieldsAre400NamingTheField) {
  const auto unknown = http_request(api_.port(), http::verb::post, "/v1/keys",
                                    R"({"name": "x", "role": "reader", "colour": "red"})",
                                    bearer(api_.admin_token()));
  expect_problem(unknown, 400);
  EXPECT_STREQ(json(unknown)["errors"][0]["field"].GetString(), "colour");
  const auto bad_role =
      http_request(api_.port(), http::verb::post, "/v1/keys", R"({"name": "x", "role": "root"})",
                   bearer(api_.admin_token()));
  expect_problem(bad_role, 400);
  EXPECT_STREQ(json(bad_role)["errors"][0]["field"].GetString(), "role");
  const auto wrong_type =
      http_request(api_.port(), http::verb::post, "/v1/keys", R"({"name": 7, "role": "reader"})",
                   bearer(api_.admin_token()));
  EXPECT_STREQ(json(wrong_type)["errors"][0]["field"].GetString(), "name");
  expect_problem(http_request(api_.port(), http::verb::post, "/v1/keys", "name=x",
                              {{"Authorization", "Bearer " + api_.admin_token()},
                               {"Content-Type", "application/x-www-form-urlencoded"}}),
                 415);
}

TEST_F(HttpPgTest, BrokenHttpIs400AndTheServerStaysUp) {
  const auto answer = raw_exchange(api_.port(), "GET /healthz HTTP/1.1\r\nHost x\r\n\r\n");
  EXPECT_THAT(answer, ::testing::StartsWith("HTTP/1.1 400"));
  EXPECT_THAT(answer, HasSubstr("application/problem+json"));
  EXPECT_EQ(http_request(api_.port(), http::verb::get, "/healthz").status, 200u);
}

// Without a key the answer comes from the headers alone: no `100 Continue`, no body read.
TEST_F(HttpPgTest, ARequestWithoutAKeyIsRefusedBeforeItsBodyIsRead) {
  const auto answer = raw_exchange(api_.port(),
                                   "POST /v1/keys HTTP/1.1\r\nHost: x\r\nContent-Type: "
                                   "application/json\r\nExpect: 100-continue\r\n"
                                   "Content-Length: 900000\r\n\r\n",
                                   5s);
  EXPECT_THAT(answer, ::testing::StartsWith("HTTP/1.1 401")) << answer;
  EXPECT_THAT(answer, ::testing::Not(HasSubstr("100 Continue")));
  const auto malformed = raw_exchange(api_.port(),
                                      "POST /v1/keys HTTP/1.1\r\nHost: x\r\nAuthorization: "
                                      "Bearer nope\r\nContent-Length: 900000\r\n\r\n",
                                      5s);
  EXPECT_THAT(malformed, ::testing::StartsWith("HTTP/1.1 401")) << malformed;
  EXPECT_EQ(http_request(api_.port(), http::verb::get, "/healthz").status, 200u);
}

TEST_F(HttpPgTest, AdminCreatesListsAndRevokesKeys) {
  const auto created =
      http_request(api_.port(), http::verb::post, "/v1/keys",
                   R"({"name": "night shift", "role": "operator"})", bearer(api_.admin_token()));
  ASSERT_EQ(created.status, 201u) << created.body;
  const auto doc = json(created);
  const std::string id = doc["id"].GetString();
  const std::string token = doc["key"].GetString();
  EXPECT_EQ(created.headers.at("location"), "/v1/keys/" + id);
  EXPECT_STREQ(doc["role"].GetString(), "operator");
  EXPECT_FALSE(std::string(doc["created_at"].GetString()).empty());

  const auto listed =
      http_request(api_.port(), http::verb::get, "/v1/keys", "", bearer(api_.admin_token()));
  ASSERT_EQ(listed.status, 200u);
  EXPECT_THAT(listed.body, HasSubstr("night shift"));
  EXPECT_THAT(listed.body, ::testing::Not(HasSubstr(token.substr(20))));  // never the secret

  // The operator key authenticates (operator < admin, so this route is 403, not 401).
  EXPECT_EQ(http_request(api_.port(), http::verb::get, "/v1/keys", "", bearer(token)).status, 403u);
  EXPECT_EQ(http_request(api_.port(), http::verb::delete_, "/v1/keys/" + id, "",
                         bearer(api_.admin_token()))
                .status,
            204u);
  EXPECT_EQ(http_request(api_.port(), http::verb::get, "/v1/keys", "", bearer(token)).status, 401u);
  expect_problem(http_request(api_.port(), http::verb::delete_, "/v1/keys/" + id, "",
                              bearer(api_.admin_token())),
                 404);
}

TEST_F(HttpPgTest, MetricsCountRequestsByRouteMethodAndStatus) {
  http_request(api_.port(), http::verb::get, "/v1/keys");
  http_request(api_.port(), http::verb::get, "/healthz");
  const auto metrics = http_request(api_.port(), http::verb::get, "/metrics");
  ASSERT_EQ(metrics.status, 200u);
  EXPECT_THAT(
      metrics.body,
      HasSubstr(R"(cauce_http_requests_total{method="GET",route="/v1/keys",status="401"} 1)"));
  EXPECT_THAT(metrics.body, HasSubstr("cauce_http_request_duration_seconds_count"));
}

TEST(HttpDrainTest, ShutdownLetsInFlightRequestsFinish) {
  TempDatabase db;
  std::promise<void> entered;
  std::promise<void> release;
  auto released = release.get_future().share();
  InProcessApi api(db.config(), {}, [&](api::Router& router, api::ApiKeys&) {
    router.add(http::verb::get, "/slow", std::nullopt, [&](api::Request& r) {
      entered.set_value();
      released.wait();
      return api::json_response(r, http::status::ok, R"({"finished":true})");
    });
  });
  auto in_flight = std::async(std::launch::async,
                              [&] { return http_request(api.port(), http::verb::get, "/slow"); });
  entered.get_future().wait();
  auto stopping = std::async(std::launch::async, [&] { api.server().stop(); });
  // stop() is draining: it must not return while the request is still running.
  EXPECT_EQ(stopping.wait_for(300ms), std::future_status::timeout);
  release.set_value();
  const auto result = in_flight.get();
  EXPECT_EQ(result.status, 200u);
  EXPECT_EQ(result.body, R"({"finished":true})");
  stopping.get();
  EXPECT_ANY_THROW(http_request(api.port(), http::verb::get, "/healthz", "", {}, 2s))
      << "a stopped server accepts nothing";
}

}  // namespace
}  // namespace cauce::testing
