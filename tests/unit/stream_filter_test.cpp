// StreamFilter: which of its topics' notifications a filtered stream lets through (issue 16 part
// 6).
#include <gtest/gtest.h>

#include <cauce/projections/notification_hub.hpp>

namespace cauce::projections {
namespace {

Notification alert(std::string level, std::string region = "") {
  Notification n;
  n.topic = "alerts";
  n.level = std::move(level);
  n.region = std::move(region);
  return n;
}

Notification contact(std::vector<std::string> people) {
  Notification n;
  n.topic = "contacts";
  n.people = std::move(people);
  return n;
}

TEST(StreamFilterTest, NoFilterLetsEverythingThrough) {
  const StreamFilter none;
  EXPECT_TRUE(none.matches(alert("info")));
  EXPECT_TRUE(none.matches(contact({})));
}

TEST(StreamFilterTest, MinLevelKeepsThatLevelAndAbove) {
  StreamFilter f;
  f.min_level = "warning";
  EXPECT_FALSE(f.matches(alert("info")));
  EXPECT_TRUE(f.matches(alert("warning")));
  EXPECT_TRUE(f.matches(alert("critical")));
  EXPECT_FALSE(f.matches(alert(""))) << "an alert whose level is not known is not let through";
  EXPECT_TRUE(f.matches(contact({}))) << "a filter narrows only its own topic";
}

TEST(StreamFilterTest, RegionsKeepOnlyTheirAlerts) {
  StreamFilter f;
  f.regions = std::set<std::string>{"north", "V"};
  EXPECT_TRUE(f.matches(alert("info", "V")));
  EXPECT_FALSE(f.matches(alert("info", "v"))) << "region names are exact";
  EXPECT_FALSE(f.matches(alert("critical"))) << "an alert without a region is in none";
}

TEST(StreamFilterTest, PersonKeepsTheContactsThatConcernThem) {
  StreamFilter f;
  f.person = "alice";
  EXPECT_TRUE(f.matches(contact({"bob", "alice"})));
  EXPECT_FALSE(f.matches(contact({"bob"})));
  EXPECT_FALSE(f.matches(contact({})));
  EXPECT_TRUE(f.matches(alert("info"))) << "a filter narrows only its own topic";
}

TEST(StreamFilterTest, LevelsRankInOrder) {
  EXPECT_LT(level_rank("info"), level_rank("warning"));
  EXPECT_LT(level_rank("warning"), level_rank("critical"));
  EXPECT_EQ(level_rank("urgent"), 0);
}

}  // namespace
}  // namespace cauce::projections
