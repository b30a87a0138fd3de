// Query strings, opaque cursors and position tokens: every bad input is a 400 naming it.
#include "query_params.hpp"

#include <gtest/gtest.h>

#include <cauce/api/problem.hpp>

namespace cauce::api {
namespace {

std::string field_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const ApiError& e) {
    return e.errors().empty() ? "<none>" : e.errors().front().field;
  }
  return "<ok>";
}

bool any_key(const std::string& key) { return !key.empty(); }

TEST(QueryParamsTest, DecodesPercentEscapesAndPlus) {
  const auto p =
      query_params("/v1/contacts?q=Ana+L%C3%ADma&tag=a%2Cb&limit=5", {"q", "tag", "limit"});
  EXPECT_EQ(p.at("q"), "Ana L\xC3\xADma");
  EXPECT_EQ(p.at("tag"), "a,b");
  EXPECT_EQ(page_limit(p), 5);
  EXPECT_EQ(page_limit({}), 50);
}

TEST(QueryParamsTest, BadParametersNameThemselves) {
  EXPECT_EQ(field_of([] { query_params("/x?colour=red", {"q"}); }), "colour");
  EXPECT_EQ(field_of([] { query_params("/x?q=a&q=b", {"q"}); }), "q");
  EXPECT_EQ(field_of([] { query_params("/x?q=%zz", {"q"}); }), "q");
  EXPECT_EQ(field_of([] { query_params("/x?q=%4", {"q"}); }), "q");
  // What PostgreSQL would refuse (a 500 otherwise): bytes that are not UTF-8, control chars.
  for (const auto* bad : {"%FF", "%00", "a%0Ab", "%C3", "%C0%AF", "%ED%A0%80", "%F4%90%80%80"}) {
    EXPECT_EQ(field_of([&] { query_params(std::string("/x?q=") + bad, {"q"}); }), "q") << bad;
  }
  EXPECT_EQ(field_of([] { query_params("/x?%FF=1", {"q"}); }), "query");
  EXPECT_EQ(query_params("/x?q=%F0%9F%93%9E", {"q"}).at("q"), "\xF0\x9F\x93\x9E");
  for (const auto* bad : {"0", "501", "-1", "ten", "", "99999999999999999999"}) {
    EXPECT_EQ(field_of([&] { page_limit({{"limit", bad}}); }), "limit") << bad;
  }
}

TEST(QueryParamsTest, CursorsRoundTripAndBelongToOneList) {
  const auto cursor = encode_cursor("calls", "2025-11-24T16:00:00.000000Z|abc");
  EXPECT_EQ(
      cursor.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
      std::string::npos)
      << "URL-safe";
  EXPECT_EQ(decode_cursor(cursor, "calls", any_key), "2025-11-24T16:00:00.000000Z|abc");
  EXPECT_EQ(field_of([&] { decode_cursor(cursor, "contacts", any_key); }), "cursor");
  EXPECT_EQ(field_of([] { decode_cursor("!!", "calls", any_key); }), "cursor");
  EXPECT_EQ(
      field_of([&] { decode_cursor(cursor, "calls", [](const std::string&) { return false; }); }),
      "cursor");
}

TEST(QueryParamsTest, PositionTokens) {
  Request r;
  EXPECT_FALSE(min_position(r));
  r.message.set("Cauce-Min-Position", "3:1234");
  const auto p = min_position(r);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->partition, 3);
  EXPECT_EQ(p->offset, 1234);
  // Exactly the spec's pattern ^[0-9]{1,6}:[0-9]{1,17}$.
  r.message.set("Cauce-Min-Position", "999999:99999999999999999");
  EXPECT_TRUE(min_position(r));
  for (const auto* bad : {"", "3", "3:", ":4", "a:b", "-1:4", "3:4:5", "3:99999999999999999999",
                          "1234567:1", "0000001:1", "1:123456789012345678", "+1:4", "1: 4"}) {
    r.message.set("Cauce-Min-Position", bad);
    EXPECT_EQ(field_of([&] { min_position(r); }), "Cauce-Min-Position") << bad;
  }
}

TEST(QueryParamsTest, IfMatchIsAVersionAsETagGivesIt) {
  Request r;
  EXPECT_FALSE(expected_version(r));
  for (const auto& [value, version] : std::vector<std::pair<const char*, std::int64_t>>{
           {"\"3\"", 3},
           {"W/\"3\"", 3},
           {"3", 3},
           {"W/3", 3},
           {"\"999999999999999999\"", 999999999999999999}}) {
    r.message.set(http::field::if_match, value);
    EXPECT_EQ(expected_version(r), version) << value;
  }
  r.message.set(http::field::if_match, "*");
  EXPECT_FALSE(expected_version(r));
  for (const auto* bad : {"", "-0", "W/\"-0\"", "+3", "\"3", "3\"", "1234567890123456789", "3.0"}) {
    r.message.set(http::field::if_match, bad);
    EXPECT_EQ(field_of([&] { expected_version(r); }), "If-Match") << bad;
  }
}

TEST(QueryParamsTest, PathUuidsAreTakenInAnyCaseAndAnsweredInLowerCase) {
  Request r;
  r.path_params = {{"id", "01A24587-A6A8-7963-9E29-C0F42D654002"}};
  EXPECT_EQ(path_uuid(r), "01a24587-a6a8-7963-9e29-c0f42d654002");
  for (const auto* bad :
       {"", "01a24587a6a879639e29c0f42d654002", "01a24587-a6a8-7963-9e29-c0f42d65400g",
        "{01a24587-a6a8-7963-9e29-c0f42d654002}"}) {
    r.path_params = {{"id", bad}};
    EXPECT_EQ(field_of([&] { path_uuid(r); }), "id") << bad;
  }
}

}  // namespace
}  // namespace cauce::api
