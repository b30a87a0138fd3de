// The command schemas spell the field rules of commands/rules.hpp as `pattern`s, so that the
// API's contract (api/openapi.yaml references schemas/) says exactly what the server accepts:
// a client, or schemathesis, generating any text a pattern allows must not be refused by the
// rule behind it, nor the other way round. These tests hold the two equal on hand-picked edge
// cases and on many random texts built from the characters that matter to each rule.
#include <cstdio>
#include <functional>
#include <random>
#include <set>

#include <gtest/gtest.h>
#include <rapidjson/document.h>
#include <rapidjson/internal/regex.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cauce/commands/rules.hpp>
#include <cauce/commands/schemas.hpp>
#include <cauce/core/json.hpp>

namespace cauce::commands {
namespace {

void collect_patterns(const rapidjson::Value& node, const std::string& where,
                      std::vector<std::pair<std::string, std::string>>& out) {
  if (node.IsObject()) {
    for (const auto& member : node.GetObject()) {
      const std::string name = member.name.GetString();
      if (name == "pattern" && member.value.IsString()) {
        out.emplace_back(where, member.value.GetString());
      } else {
        collect_patterns(member.value, where + "/" + name, out);
      }
    }
  } else if (node.IsArray()) {
    for (const auto& item : node.GetArray()) collect_patterns(item, where + "[]", out);
  }
}

// RapidJSON's validator silently ignores a pattern its regex engine cannot compile (it knows a
// subset of ECMAScript's syntax: no \d, \s, \u escapes, lookaheads or (?:...)); a pattern the
// server ignores while clients obey it would be a contract the server does not keep.
TEST(SchemaPatternsTest, EveryPatternCompilesInTheServersRegexEngine) {
  std::size_t patterns = 0;
  for (const auto& file : embedded_schema_files()) {
    rapidjson::Document doc;
    doc.Parse(file.text.c_str(), file.text.size());
    ASSERT_FALSE(doc.HasParseError()) << file.file_name;
    std::vector<std::pair<std::string, std::string>> found;
    collect_patterns(doc, file.file_name, found);
    for (const auto& [where, pattern] : found) {
      ++patterns;
      EXPECT_TRUE(rapidjson::internal::Regex(pattern.c_str()).IsValid())
          << where << ": " << pattern;
    }
  }
  EXPECT_GE(patterns, 10u);
}

std::string json_string(std::string_view text) {
  rapidjson::StringBuffer out;
  rapidjson::Writer<rapidjson::StringBuffer> writer(out);
  writer.String(text.data(), static_cast<rapidjson::SizeType>(text.size()));
  return out.GetString();
}

// Whether the schema takes `value` for `field` (the rest of the body valid), or the body is not
// JSON the API parses at all (then neither side gets to judge the value).
std::optional<bool> schema_takes(std::string_view schema, const std::string& body_before,
                                 std::string_view field, std::string_view value) {
  const std::string body =
      body_before + "\"" + std::string(field) + "\":" + json_string(value) + "}";
  rapidjson::Document doc;
  if (core::parse_json(body, doc)) return std::nullopt;
  const auto violation = SchemaRegistry::instance().validate(schema, doc);
  if (violation && violation->field != field) {
    ADD_FAILURE() << "unexpected violation of " << violation->field << " in " << body;
  }
  return !violation.has_value();
}

using Rule = std::function<bool(std::string_view)>;

struct Case {
  std::string schema;
  std::string body_before;  // the body up to the field, valid otherwise
  std::string field;
  Rule rule;  // what the server's rule (with the schema's maxLength) accepts
  std::vector<std::string> tokens;
  std::vector<std::string> edges;
  std::vector<std::string> starts = {""};  // what a random text begins with (one of them)
};

std::string show(std::string_view text) {
  std::string out;
  for (const unsigned char c : text) {
    if (c < 0x20 || c == 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

void expect_agreement(const Case& c) {
  std::mt19937 random(20261205);
  std::size_t accepted = 0;
  std::size_t refused = 0;
  const auto check = [&](const std::string& value) {
    const auto schema = schema_takes(c.schema, c.body_before, c.field, value);
    if (!schema) return;
    const bool rule = c.rule(value);
    (rule ? accepted : refused)++;
    EXPECT_EQ(*schema, rule) << c.field << " \"" << show(value) << "\": the schema "
                             << (*schema ? "takes" : "refuses") << " it, the rule "
                             << (rule ? "takes" : "refuses") << " it";
  };
  for (const auto& edge : c.edges) check(edge);
  std::uniform_int_distribution<std::size_t> pick(0, c.tokens.size() - 1);
  std::uniform_int_distribution<std::size_t> start(0, c.starts.size() - 1);
  std::uniform_int_distribution<int> length(0, 8);
  for (int i = 0; i < 20000; ++i) {
    std::string value = c.starts[start(random)];
    for (int n = length(random); n > 0; --n) value += c.tokens[pick(random)];
    check(value);
  }
  // Both outcomes are well represented, or the random texts tested little.
  EXPECT_GT(accepted, 500u) << c.field;
  EXPECT_GT(refused, 500u) << c.field;
}

TEST(SchemaPatternsTest, PhoneSchemaTakesExactlyWhatNormalizePhoneTakes) {
  expect_agreement({
      "contact.register.v1",
      R"({"name":"Ada",)",
      "phone",
      [](std::string_view v) { return core::utf8_length(v) <= 40 && normalize_phone(v); },
      {"+", "0", "00", "1", "4", "9", "44", "207946", "0958", " ",
       "(", ")", "-",  ".", "x", "/", "\t", "+44",    "0044", "2079460958"},
      {"+442079460958", "+44 20 7946-0958", "0044 (20) 79460958", "(+44) 20 7946 0958",
       "+0442079460958", "00442079460958", "0 0 44 20 7946 0958", "+1234567", "+12345678",
       "+123456789012345", "+1234567890123456", "442079460958", "+44 20 7946 0958\n",
       "++442079460958", "+44+2079460958", "+", "", " "},
      {"", "+", "+", "00", "(+"},
  });
}

TEST(SchemaPatternsTest, EmailSchemaTakesExactlyWhatValidEmailTakes) {
  expect_agreement({
      "contact.register.v1",
      R"({"name":"Ada","phone":"+442079460958",)",
      "email",
      [](std::string_view v) { return !v.empty() && valid_email(v); },
      {"a", "ada", "b.", ".", "@", "example", ".org", "é", "-", "+", " ", "\t", "\x7f", "\x01",
       "..", "x@y.z", "\xc2\xa0"},
      {"ada@example.org", "a@b.c", "a@.c", "a@b.", "@b.c", "a@b", "a@@b.c", "a@b@c.d",
       "ada@exa mple.org", "ada@example.org\n", "\xc3\xa9@\xc3\xa9.\xc3\xa9", "a@b..c", "a@b.c.",
       std::string(64, 'a') + "@b.c", std::string(65, 'a') + "@b.c",
       std::string(64, 'a') + "@" + std::string(187, 'b') + ".c",
       std::string(64, 'a') + "@" + std::string(188, 'b') + ".c"},
  });
}

TEST(SchemaPatternsTest, UrlSchemaTakesExactlyWhatValidHttpUrlTakes) {
  expect_agreement({
      "report.request.v1",
      R"({"title":"Calls",)",
      "source_url",
      [](std::string_view v) { return valid_http_url(v); },
      {"http://", "https://", "host",       "a",    ".",      ":",    "80", "0", "65535",
       "65536",   "99999",    "100000",     "[",    "]",      "::1",  "/",  "?", "#",
       "@",       " ",        "é",          "x=1",  "%20",    "\x7f", "\t", "/", "/",
       "a",       "b",        "/calls.csv", ".org", "?day=1", ":8080"},
      {"http://example.org",
       "https://example.org:8443/calls.csv?day=1#top",
       "http://[::1]:8080/x",
       "http://[::1]",
       "http://[]",
       "http://[::1]x",
       "http://a]b",
       "http://a:",
       "http://a:0",
       "http://a:65535",
       "http://a:65536",
       "http://a:00080",
       "http://a:123456",
       "http://:80",
       "http://",
       "http://u@a",
       "http://a b",
       "http://a/b c",
       "http://a/é",
       "ftp://a",
       "HTTP://a",
       "http://a?x",
       "http://a#",
       "http://a:1:2",
       "http://a" + std::string(2040, 'b'),
       "http://a" + std::string(2041, 'b')},
      {"", "http://", "https://", "https://example.org", "http://[::1]", "http://a/",
       "https://a.b/", "http://host:80/"},
  });
}

TEST(SchemaPatternsTest, NameSchemaTakesExactlyWhatIsNotBlank) {
  expect_agreement({
      "contact.register.v1",
      R"({"phone":"+442079460958",)",
      "name",
      [](std::string_view v) { return !trim(v).empty() && core::utf8_length(v) <= 200; },
      {" ", "\t", "\r", "\n", "a", "é", "\xc2\xa0", "\x0b", "Ada"},
      {"", " ", "\t\r\n ", " a ", "\xc2\xa0", "\x0b", std::string(200, 'a'), std::string(201, 'a')},
  });
}

TEST(SchemaPatternsTest, APatternFailureSaysWhatTheFieldWants) {
  const auto violation = SchemaRegistry::instance().validate_json(
      "contact.register.v1", R"({"name":"Ada","phone":"207946"})");
  ASSERT_TRUE(violation.has_value());
  EXPECT_EQ(violation->field, "phone");
  EXPECT_EQ(violation->message,
            "must be a phone number with its country code, e.g. +44 20 7946 0958");
}

}  // namespace
}  // namespace cauce::commands
