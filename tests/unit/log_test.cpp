#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <cauce/core/log.hpp>

namespace cauce::core {
namespace {

TEST(LogTest, LineIsOneJsonObjectWithFields) {
  const auto line = format_log_line(LogLevel::kWarn, "http", "quote \" and\nnewline",
                                    {{"port", 8080}, {"ok", true}, {"path", "/x"}, {"ratio", 0.5}});
  EXPECT_EQ(line.find('\n'), std::string::npos);
  rapidjson::Document doc;
  doc.Parse(line.c_str());
  ASSERT_FALSE(doc.HasParseError()) << line;
  EXPECT_STREQ(doc["level"].GetString(), "warn");
  EXPECT_STREQ(doc["component"].GetString(), "http");
  EXPECT_STREQ(doc["msg"].GetString(), "quote \" and\nnewline");
  EXPECT_EQ(doc["port"].GetInt(), 8080);
  EXPECT_TRUE(doc["ok"].GetBool());
  EXPECT_STREQ(doc["path"].GetString(), "/x");
  EXPECT_DOUBLE_EQ(doc["ratio"].GetDouble(), 0.5);
  EXPECT_TRUE(doc.HasMember("ts"));
}

TEST(LogTest, TimestampsAreRfc3339UtcWithMicroseconds) {
  EXPECT_EQ(format_utc_micros(0), "1970-01-01T00:00:00.000000Z");
  EXPECT_EQ(format_utc_micros(1'795'000'000'123'456), "2026-11-18T11:06:40.123456Z");
  // Before 1970 the fraction still counts up from the second before (found by fuzzing).
  EXPECT_EQ(format_utc_micros(-1), "1969-12-31T23:59:59.999999Z");
  EXPECT_EQ(parse_utc_micros("1012-11-24T16:00:05.123456Z"),
            parse_utc_micros("1012-11-24T16:00:05.000000Z") + 123456);
  for (const auto* text : {"1012-11-24T16:00:05.123456Z", "0001-01-01T00:00:00.000000Z",
                           "9999-12-31T23:59:59.999999Z"}) {
    EXPECT_EQ(format_utc_micros(parse_utc_micros(text)), text);
  }
  // Only calendar times: no year 0 (PostgreSQL has none), no February 31st.
  EXPECT_THROW(parse_utc_micros("0000-01-01T00:00:00.000000Z"), std::invalid_argument);
  EXPECT_THROW(parse_utc_micros("2026-02-31T00:00:00.000000Z"), std::invalid_argument);
  EXPECT_THROW(parse_utc_micros("2026-01-01T24:00:00.000000Z"), std::invalid_argument);
}

TEST(LogTest, LevelNamesParse) {
  EXPECT_EQ(parse_log_level("debug"), LogLevel::kDebug);
  EXPECT_EQ(parse_log_level("warn"), LogLevel::kWarn);
  EXPECT_EQ(parse_log_level("error"), LogLevel::kError);
  EXPECT_EQ(parse_log_level("info"), LogLevel::kInfo);
}

}  // namespace
}  // namespace cauce::core
