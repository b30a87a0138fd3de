// core::parse_json: the storable-input rule every parser of outside text shares.

#include <gtest/gtest.h>

#include <cauce/core/json.hpp>

namespace cauce::core {
namespace {

std::optional<JsonError> parse(std::string_view text, JsonLimits limits = {}) {
  rapidjson::Document doc;
  return parse_json(text, doc, limits);
}

std::string field_of(std::string_view text) {
  const auto e = parse(text);
  return e ? e->field : "<accepted>";
}

TEST(StrictJsonTest, AcceptsOrdinaryDocuments) {
  rapidjson::Document doc;
  ASSERT_FALSE(
      parse_json(R"({"name":"Zoë 😀","tags":["a","b"],"n":-3,"x":1.5,"o":{"k":null}})", doc));
  EXPECT_STREQ(doc["name"].GetString(), "Zoë 😀");
  EXPECT_EQ(doc["tags"].Size(), 2u);
  EXPECT_FALSE(parse(R"({"pair":"\ud83d\ude00"})")) << "an escaped surrogate pair is one character";
}

TEST(StrictJsonTest, DepthIsBoundedWithoutRecursion) {
  auto nested = [](std::size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); };
  EXPECT_FALSE(parse(nested(32)));
  const auto deeper = parse(nested(33));
  ASSERT_TRUE(deeper);
  EXPECT_EQ(deeper->field, "body");
  EXPECT_NE(deeper->message.find("deeper than 32"), std::string::npos) << deeper->message;
  // 200,000 levels crashed the recursive parser (issue 11); objects too, and unterminated.
  EXPECT_TRUE(parse(nested(200'000)));
  std::string objects;
  for (int i = 0; i < 200'000; ++i) objects += R"({"a":)";
  EXPECT_TRUE(parse(objects));
  EXPECT_FALSE(parse(nested(40), {.max_depth = 40}));
}

TEST(StrictJsonTest, RefusesTextNoDownstreamCanHoldNamingTheField) {
  EXPECT_EQ(field_of(R"({"name":"A\u0000B"})"), "name");
  EXPECT_EQ(field_of(R"({"tags":["ok","\u0000"]})"), "tags[1]");
  EXPECT_EQ(field_of(R"({"o":{"deep":"\udc00"}})"), "o.deep") << "a lone low surrogate";
  EXPECT_EQ(field_of(R"({"o":{"deep":"x\ud800"}})"), "body") << "a high surrogate alone is "
                                                                "a syntax error in RapidJSON";
  EXPECT_EQ(field_of(R"(["\u0000"])"), "body[0]");
  EXPECT_EQ(field_of("{\"k\\u0000\":1}"), "body");
  const auto nul = parse(R"({"name":"A\u0000B"})");
  EXPECT_NE(nul->message.find("U+0000"), std::string::npos) << nul->message;
}

TEST(StrictJsonTest, RefusesDuplicateKeysAtAnyDepth) {
  EXPECT_EQ(field_of(R"({"name":"A","name":"B"})"), "name");
  EXPECT_EQ(field_of(R"({"a":{"x":1,"y":2,"x":3}})"), "a.x");
  EXPECT_EQ(field_of(R"({"a":[{"k":1},{"k":1,"k":2}]})"), "a[1].k");
  EXPECT_FALSE(parse(R"({"a":{"k":1},"b":{"k":1}})")) << "the same key in two objects is fine";
}

TEST(StrictJsonTest, RefusesMalformedTextAndNumbersOutOfRange) {
  for (const auto* text : {"", "{", R"({"a":1,})", "{} {}", "[1e400]", "[NaN]"}) {
    const auto e = parse(text);
    ASSERT_TRUE(e) << text;
    EXPECT_EQ(e->field, "body") << text;
  }
  // Bytes that are not UTF-8 (a raw surrogate, an overlong NUL, a stray byte, a raw NUL).
  for (const auto& text : {std::string("{\"a\":\"\xff\"}"), std::string("{\"a\":\"\xed\xa0\x80\"}"),
                           std::string("{\"a\":\"\xc0\x80\"}"), std::string("[\"\0\"]", 5)}) {
    EXPECT_TRUE(parse(text)) << text;
  }
}

TEST(StrictJsonTest, StorableTextRule) {
  EXPECT_FALSE(storable_text_problem("plain ascii"));
  EXPECT_FALSE(storable_text_problem("ação \xf0\x9f\x98\x80"));
  EXPECT_TRUE(storable_text_problem(std::string_view("a\0b", 3)));
  EXPECT_TRUE(storable_text_problem("\xed\xb0\x80"));      // U+DC00 encoded
  EXPECT_TRUE(storable_text_problem("\xe0\x80\x80"));      // overlong
  EXPECT_TRUE(storable_text_problem("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_TRUE(storable_text_problem("\xc3"));              // truncated
}

}  // namespace
}  // namespace cauce::core
