#include <gtest/gtest.h>

#include <cauce/api/json.hpp>
#include <cauce/api/problem.hpp>

namespace cauce::api {
namespace {

Request json_request(std::string body, std::string content_type = "application/json") {
  Request request;
  request.message = http::request<http::string_body>(http::verb::post, "/x", 11);
  request.message.set(http::field::content_type, content_type);
  request.message.body() = std::move(body);
  return request;
}

ApiError error_of(const Request& request) {
  try {
    parse_json_object(request);
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "accepted: " << request.message.body();
  return ApiError(http::status::ok, "", "");
}

TEST(JsonBodyTest, MalformedJsonNamesTheByteOffset) {
  const auto e = error_of(json_request(R"({"name": "x",})"));
  EXPECT_EQ(e.status(), http::status::bad_request);
  EXPECT_EQ(e.slug(), "malformed-json");
  EXPECT_NE(e.detail().find("at byte 13"), std::string::npos) << e.detail();
}

TEST(JsonBodyTest, RefusesNonObjectsTrailingDataBadUtf8AndOtherMediaTypes) {
  EXPECT_EQ(error_of(json_request("[1,2]")).errors().at(0).field, "body");
  EXPECT_EQ(error_of(json_request(R"({} {})")).slug(), "malformed-json");
  EXPECT_EQ(error_of(json_request("{\"a\": \"\xff\"}")).slug(), "malformed-json");
  EXPECT_EQ(error_of(json_request("")).slug(), "malformed-json");
  EXPECT_EQ(error_of(json_request("{}", "text/plain")).status(),
            http::status::unsupported_media_type);
}

TEST(JsonBodyTest, AcceptsObjectsWithCharsetParameter) {
  const auto doc =
      parse_json_object(json_request(R"({"a": 1})", "application/json; charset=utf-8"));
  EXPECT_TRUE(doc.HasMember("a"));
}

// OpenAPI 3.1 (JSON Schema 2020-12) counts 60.0 as an integer, and the contract says so.
TEST(JsonBodyTest, AWholeNumberWrittenWithAFractionIsAnInteger) {
  const auto doc =
      parse_json_object(json_request(R"({"a": 60.0, "b": 1e3, "c": -0.0, "d": 1.5, "e": 1e300})"));
  EXPECT_TRUE(doc["a"].IsInt64());
  EXPECT_EQ(doc["a"].GetInt64(), 60);
  EXPECT_EQ(doc["b"].GetInt64(), 1000);
  EXPECT_EQ(doc["c"].GetInt64(), 0);
  EXPECT_TRUE(doc["d"].IsDouble());
  EXPECT_TRUE(doc["e"].IsDouble()) << "past 2^53 a double is not exact: it stays one";
}

TEST(JsonBodyTest, UnknownFieldsAndBadStringsAreNamed) {
  const auto doc = parse_json_object(json_request(R"({"name": 5, "colour": "red"})"));
  try {
    reject_unknown_fields(doc, {"name"});
    FAIL();
  } catch (const ApiError& e) {
    EXPECT_EQ(e.errors().at(0).field, "colour");
  }
  try {
    required_string(doc, "name", 10);
    FAIL();
  } catch (const ApiError& e) {
    EXPECT_EQ(e.errors().at(0).field, "name");
  }
}

}  // namespace
}  // namespace cauce::api
