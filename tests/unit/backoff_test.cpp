#include <gtest/gtest.h>

#include <cauce/core/backoff.hpp>
#include <cauce/core/log.hpp>

namespace cauce::core {
namespace {

using std::chrono::milliseconds;

TEST(BackoffTest, DoublesWithJitterUpToTheCapAndStartsOverAfterReset) {
  Backoff backoff(milliseconds(100), milliseconds(1000));
  const milliseconds ceilings[] = {milliseconds(100), milliseconds(200),  milliseconds(400),
                                   milliseconds(800), milliseconds(1000), milliseconds(1000)};
  for (const auto ceiling : ceilings) {
    const auto d = backoff.next();
    EXPECT_GE(d, ceiling / 2);
    EXPECT_LE(d, ceiling);
  }
  for (int i = 0; i < 100; ++i) EXPECT_LE(backoff.next(), milliseconds(1000)) << "capped";
  backoff.reset();
  EXPECT_LE(backoff.next(), milliseconds(100));
}

TEST(BackoffTest, TwoInstancesDoNotRetryInLockstep) {
  Backoff a(milliseconds(1000), milliseconds(60000));
  Backoff b(milliseconds(1000), milliseconds(60000));
  int same = 0;
  for (int i = 0; i < 20; ++i) same += a.next() == b.next();
  EXPECT_LT(same, 5);
}

// A condition that lasts is logged when it starts and when it clears, with the repeats counted.
TEST(ConditionLogTest, LogsTheStartAndTheEndNotEveryRepeat) {
  const Logger logger("test");
  ConditionLog condition(logger);
  testing::internal::CaptureStderr();
  for (int i = 0; i < 1000; ++i) condition.failing("dependency down", {{"attempt", i}});
  condition.cleared("dependency back");
  condition.cleared("dependency back");  // nothing: it is not failing
  condition.failing("dependency down again");
  const auto out = testing::internal::GetCapturedStderr();
  std::size_t lines = 0;
  for (const char c : out) lines += c == '\n';
  EXPECT_EQ(lines, 3u) << out;
  EXPECT_NE(out.find("\"suppressed_repeats\":999"), std::string::npos) << out;
  EXPECT_TRUE(condition.active());
}

}  // namespace
}  // namespace cauce::core
