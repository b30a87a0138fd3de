#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <cauce/api/problem.hpp>
#include <cauce/core/errors.hpp>

namespace cauce::api {
namespace {

rapidjson::Document body_of(const Response& r) {
  rapidjson::Document doc;
  doc.Parse(r.body().c_str());
  return doc;
}

Request request_with_id() {
  Request request;
  request.message = http::request<http::string_body>(http::verb::get, "/x", 11);
  request.request_id = "req-1";
  return request;
}

TEST(ProblemTest, ApiErrorBecomesProblemJsonWithFieldErrors) {
  const auto r = problem_response(request_with_id(),
                                  std::make_exception_ptr(invalid_field("name", "is required")));
  EXPECT_EQ(r.result(), http::status::bad_request);
  EXPECT_EQ(r[http::field::content_type], "application/problem+json");
  const auto doc = body_of(r);
  EXPECT_STREQ(doc["type"].GetString(), "urn:cauce:problem:invalid-input");
  EXPECT_STREQ(doc["title"].GetString(), "Bad Request");
  EXPECT_EQ(doc["status"].GetInt(), 400);
  EXPECT_STREQ(doc["request_id"].GetString(), "req-1");
  ASSERT_EQ(doc["errors"].Size(), 1u);
  EXPECT_STREQ(doc["errors"][0]["field"].GetString(), "name");
}

TEST(ProblemTest, DependencyDownIs503WithRetryAfter) {
  const auto r =
      problem_response(request_with_id(), std::make_exception_ptr(core::DependencyError(
                                              "postgres", "connection refused to 10.0.0.5", true)));
  EXPECT_EQ(r.result(), http::status::service_unavailable);
  EXPECT_EQ(r[http::field::retry_after], "1");
  EXPECT_EQ(r.body().find("10.0.0.5"), std::string::npos) << "internals stay in the log";
}

TEST(ProblemTest, UnexpectedErrorsRevealNothing) {
  const auto r = problem_response(
      request_with_id(), std::make_exception_ptr(std::runtime_error("SELECT secret FROM x")));
  EXPECT_EQ(r.result(), http::status::internal_server_error);
  EXPECT_EQ(r.body().find("SELECT"), std::string::npos);
  EXPECT_EQ(body_of(r)["status"].GetInt(), 500);
}

}  // namespace
}  // namespace cauce::api
