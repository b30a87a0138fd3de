// `cauce events tail` and `cauce events dump` (issue 14, item 2) on the test broker: a dump of a
// time range holds exactly the events written in it, filtered by type or aggregate; a tail
// prints new events as they are committed, filtered, and stops cleanly on SIGINT.
#include <csignal>
#include <sstream>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <cauce/core/kafka_admin.hpp>
#include <cauce/core/log.hpp>

#include "read_models.hpp"

namespace cauce::testing {
namespace {

using ::testing::HasSubstr;

// The JSON event lines of a command's output (stderr's log and summary lines are skipped).
std::vector<rapidjson::Document> event_lines(const std::string& output) {
  std::vector<rapidjson::Document> out;
  std::istringstream in(output);
  for (std::string line; std::getline(in, line);) {
    if (!line.starts_with(R"({"position")")) continue;
    rapidjson::Document d;
    d.Parse(line.c_str());
    if (!d.HasParseError()) out.push_back(std::move(d));
  }
  return out;
}

std::string micros_now() {
  return core::format_utc_micros(std::chrono::duration_cast<std::chrono::microseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
}

class EventsCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    core::KafkaAdmin(kafka_).ensure_topics(core::cauce_topics(kafka_), kafka_.partitions, 1);
  }
  std::map<std::string, std::string> env() const { return cauce_env(test_postgres(), kafka_); }

  core::KafkaConfig kafka_ = test_kafka();
};

TEST_F(EventsCliTest, ADumpHoldsTheEventsOfItsTimeRangeFilteredByTypeAndAggregate) {
  write_synthetic_log(kafka_, {.contacts = 20, .calls_per_contact = 1, .alerts = 3});
  std::this_thread::sleep_for(200ms);
  const auto from = micros_now();
  std::this_thread::sleep_for(200ms);
  write_synthetic_log(kafka_, {.contacts = 7, .calls_per_contact = 2, .alerts = 4});
  std::this_thread::sleep_for(200ms);
  const auto to = micros_now();
  std::this_thread::sleep_for(200ms);
  write_synthetic_log(kafka_, {.contacts = 5, .calls_per_contact = 0, .alerts = 0});
  const auto log = read_event_log(kafka_);

  const auto [code, out] = run_cauce(
      {"events", "dump", "--from-time", from, "--to-time", to, "--type", "contact.registered"},
      env());
  ASSERT_EQ(code, 0) << out;
  const auto lines = event_lines(out);
  EXPECT_EQ(lines.size(), 7u) << "the 7 contacts registered in the range, not the 20 or the 5";
  for (const auto& d : lines) {
    EXPECT_EQ(std::string(d["event"]["type"].GetString()), "contact.registered");
  }
  EXPECT_THAT(out, HasSubstr("dumped 7 events"));

  // The whole log, every type: what a read_committed consumer reads, in per-partition order.
  const auto [all_code, all] = run_cauce({"events", "dump"}, env());
  ASSERT_EQ(all_code, 0) << all;
  const auto everything = event_lines(all);
  EXPECT_EQ(everything.size(), log.size());

  // One aggregate's events, all of them, in version order.
  const auto& some = log.front().envelope.aggregate_id;
  const auto [one_code, one] = run_cauce({"events", "dump", "--aggregate", some}, env());
  ASSERT_EQ(one_code, 0) << one;
  const auto mine = event_lines(one);
  const auto expected = std::count_if(log.begin(), log.end(), [&](const LoggedEvent& e) {
    return e.envelope.aggregate_id == some;
  });
  ASSERT_EQ(static_cast<long>(mine.size()), expected);
  for (std::size_t i = 0; i < mine.size(); ++i) {
    EXPECT_EQ(mine[i]["event"]["version"].GetInt64(), static_cast<std::int64_t>(i + 1));
  }

  const auto [bad_code, bad] = run_cauce({"events", "dump", "--from-time", "noon"}, env());
  EXPECT_EQ(bad_code, 2) << bad;
  EXPECT_THAT(bad, HasSubstr("from-time"));
  const auto [backwards_code, backwards] =
      run_cauce({"events", "dump", "--from-time", to, "--to-time", from}, env());
  EXPECT_EQ(backwards_code, 2) << backwards;
}

TEST_F(EventsCliTest, ATailPrintsNewCommittedEventsOfTheTypesAskedUntilSigint) {
  write_synthetic_log(kafka_, {.contacts = 5, .calls_per_contact = 1, .alerts = 2});  // before
  CauceProcess tail({"events", "tail", "--type", "alert.raised,alert.closed"}, env());
  ASSERT_TRUE(tail.wait_for_line("tailing")) << tail.output();  // assigned at the ends, as offsets
  write_synthetic_log(kafka_, {.contacts = 3, .calls_per_contact = 1, .alerts = 4});
  // 4 alerts raised after it started, 2 of them closed (the synthetic log closes every other).
  ASSERT_TRUE(eventually([&] { return event_lines(tail.output()).size() >= 6u; }, 20s))
      << tail.output();
  std::this_thread::sleep_for(500ms);  // nothing more comes
  tail.signal(SIGINT);
  ASSERT_EQ(tail.wait_exit(), 0) << tail.output();
  const auto lines = event_lines(tail.output());
  EXPECT_EQ(lines.size(), 6u) << tail.output();
  std::map<std::string, int> types;
  for (const auto& d : lines) ++types[d["event"]["type"].GetString()];
  EXPECT_EQ(types, (std::map<std::string, int>{{"alert.closed", 2}, {"alert.raised", 4}}));
}

}  // namespace
}  // namespace cauce::testing
