// W3C Trace Context level 1's traceparent as cauce reads, starts and continues it.
#include <set>
#include <string>

#include <gtest/gtest.h>

#include <cauce/core/trace.hpp>

namespace cauce::core {
namespace {

constexpr std::string_view kExample = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

bool lower_hex(std::string_view text) {
  return text.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

TEST(TraceParentTest, ReadsTheSpecsExample) {
  const auto parsed = TraceParent::parse(kExample);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->text(), kExample);
  EXPECT_EQ(parsed->trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(parsed->span_id(), "00f067aa0ba902b7");
  EXPECT_TRUE(parsed->sampled());
  const auto unsampled =
      TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
  ASSERT_TRUE(unsampled);
  EXPECT_FALSE(unsampled->sampled());
}

TEST(TraceParentTest, RefusesWhatTheSpecCallsInvalid) {
  for (const std::string_view text : {
           "",
           "00",
           // Version ff is forbidden; a version is two lower-case hex digits.
           "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
           "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
           "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
           // All-zero ids.
           "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
           "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
           // Upper case anywhere.
           "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
           // Wrong lengths and separators.
           "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
           "00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01",
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
           "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
           "00-4bf92f3577b34da6a3ce929d0e0e4736+00f067aa0ba902b7-01",
           " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ",
           // Version 00 has nothing after its flags.
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds",
           // Not hex.
           "00-4bf92f3577b34da6a3ce929d0e0e473z-00f067aa0ba902b7-01",
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0z",
       }) {
    EXPECT_FALSE(TraceParent::parse(text)) << '"' << text << '"';
  }
}

TEST(TraceParentTest, ReadsALaterVersionByItsVersion00Fields) {
  // The forward-compatibility rule: a version above 00 is read as 00 where it has 00's fields;
  // anything past them must start with '-' and is dropped.
  const auto exact = TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  ASSERT_TRUE(exact);
  EXPECT_EQ(exact->text(), kExample);
  const auto longer =
      TraceParent::parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future");
  ASSERT_TRUE(longer);
  EXPECT_EQ(longer->text(), kExample);
  EXPECT_FALSE(TraceParent::parse(
      "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.what-the-future"));
  EXPECT_FALSE(TraceParent::parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0"));
}

TEST(TraceParentTest, KeepsOnlyTheSampledFlag) {
  // Level 1 defines bit 0 only; the other bits are not passed on.
  const auto odd = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff");
  ASSERT_TRUE(odd);
  EXPECT_EQ(odd->text(), kExample);
  const auto even = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-fe");
  ASSERT_TRUE(even);
  EXPECT_EQ(even->text().substr(53), "00");
}

TEST(TraceParentTest, StartsNewTracesWithRandomIds) {
  std::set<std::string> traces;
  std::set<std::string> spans;
  for (int i = 0; i < 1000; ++i) {
    const auto started = TraceParent::start();
    ASSERT_FALSE(started.empty());
    // What it writes, it reads back unchanged.
    const auto again = TraceParent::parse(started.text());
    ASSERT_TRUE(again) << started.text();
    EXPECT_EQ(*again, started);
    EXPECT_TRUE(lower_hex(started.trace_id()));
    EXPECT_TRUE(lower_hex(started.span_id()));
    EXPECT_FALSE(started.sampled());
    traces.emplace(started.trace_id());
    spans.emplace(started.span_id());
  }
  EXPECT_EQ(traces.size(), 1000u);
  EXPECT_EQ(spans.size(), 1000u);
}

TEST(TraceParentTest, AChildContinuesTheTraceInANewSpan) {
  const auto parent = *TraceParent::parse(kExample);
  const auto child = parent.child();
  EXPECT_EQ(child.trace_id(), parent.trace_id());
  EXPECT_NE(child.span_id(), parent.span_id());
  EXPECT_TRUE(child.sampled());
  EXPECT_EQ(TraceParent::parse(child.text()), child);
  // Of no trace, a child starts one.
  const TraceParent none;
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(none.text(), "");
  EXPECT_EQ(none.trace_id(), "");
  EXPECT_EQ(none.span_id(), "");
  EXPECT_FALSE(none.child().empty());
}

}  // namespace
}  // namespace cauce::core
