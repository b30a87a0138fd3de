// The projector's pure part: one batch of events folded into the rows it changes.
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <cauce/projections/batch.hpp>

namespace cauce::projections {
namespace {

constexpr const char* kContact = "0190a1b2-0000-7000-8000-0000000000aa";
constexpr const char* kAlert = "0190a1b2-0000-7000-8000-0000000000bb";

LogRecord record(std::int64_t offset, const char* aggregate_type, const char* id,
                 const std::string& type, std::int64_t version, const std::string& data) {
  LogRecord r;
  r.partition = 2;
  r.offset = offset;
  auto& e = r.event;
  e.event_id = "0190a1b2-0000-7000-8000-00000000" + std::to_string(1000 + offset);
  e.type = type;
  e.schema_version = type == "contact.call_logged" ? 2 : 1;
  e.aggregate_type = aggregate_type;
  e.aggregate_id = id;
  e.version = version;
  e.occurred_at_us = 1'764'000'000'000'000 + offset;
  e.command_id = e.event_id;
  e.causation_id = e.event_id;
  e.correlation_id = "c";
  e.actor = "tester";
  e.data = data;
  return r;
}

rapidjson::Document parse(const std::string& json) {
  rapidjson::Document d;
  d.Parse(json.c_str());
  return d;
}

std::string call(const char* call_id, const char* at) {
  return std::string(R"({"call_id":")") + call_id +
         R"(","outcome":"busy","duration_s":3,"operator":"op1","called_at":")" + at + "\"}";
}

TEST(BatchTest, ACreatedAggregateCarriesItsWholeFoldedRow) {
  const auto rows = fold_batch({
      record(0, "contact", kContact, "contact.registered", 1,
             R"({"name":"Ana","phone":"+351912345678","tags":["vip"]})"),
      record(1, "contact", kContact, "contact.call_logged", 2,
             call("0190a1b2-0000-7000-8000-0000000000c1", "2025-11-24T16:00:05.000000Z")),
      record(2, "contact", kContact, "contact.call_logged", 3,
             call("0190a1b2-0000-7000-8000-0000000000c2", "2025-11-24T16:00:01.000000Z")),
      record(3, "contact", kContact, "contact.assigned", 4, R"({"operator":"op2"})"),
  });
  const auto contacts = parse(rows.contacts);
  ASSERT_EQ(contacts.Size(), 1u);
  const auto& c = contacts[0];
  EXPECT_TRUE(c["created"].GetBool());
  EXPECT_EQ(c["first_version"].GetInt64(), 1);
  EXPECT_EQ(c["version"].GetInt64(), 4);
  EXPECT_EQ(c["calls_added"].GetInt64(), 2);
  EXPECT_STREQ(c["last_call_at"].GetString(), "2025-11-24T16:00:05.000000Z") << "the latest call";
  EXPECT_STREQ(c["assigned_to"].GetString(), "op2");
  EXPECT_STREQ(c["status"].GetString(), "active");
  ASSERT_EQ(rows.calls.size(), 2u);
  EXPECT_EQ(rows.calls[1].version, 3);
  EXPECT_EQ(*rows.calls[0].operator_name, "op1");
  EXPECT_EQ(parse(rows.events).Size(), 4u);
  const auto notifications = parse(rows.notifications);
  ASSERT_EQ(notifications.Size(), 4u);
  EXPECT_STREQ(notifications[3]["position"].GetString(), "2:3");
  EXPECT_STREQ(notifications[3]["topic"].GetString(), "contacts");
}

TEST(BatchTest, AChangeToAnExistingRowNamesOnlyWhatChangedAndItsVersionRange) {
  const auto rows = fold_batch({
      record(7, "contact", kContact, "contact.updated", 5, R"({"notes":"call back"})"),
      record(8, "contact", kContact, "contact.archived", 6, R"({"reason":"gone"})"),
      record(9, "alert", kAlert, "alert.escalated", 2, R"({"from":"info","to":"critical"})"),
  });
  const auto c = parse(rows.contacts);
  EXPECT_FALSE(c[0]["created"].GetBool());
  EXPECT_EQ(c[0]["first_version"].GetInt64(), 5);
  EXPECT_EQ(c[0]["version"].GetInt64(), 6);
  EXPECT_STREQ(c[0]["notes"].GetString(), "call back");
  EXPECT_STREQ(c[0]["status"].GetString(), "archived");
  EXPECT_FALSE(c[0].HasMember("name")) << "unchanged columns stay out (NULL = keep)";
  const auto a = parse(rows.alerts);
  EXPECT_STREQ(a[0]["level"].GetString(), "critical");
  EXPECT_EQ(parse(rows.alert_timeline).Size(), 1u);
}

TEST(BatchTest, UnknownTypesAreReportedAndLogRowsCanBeLeftOut) {
  const auto rows = fold_batch({record(0, "report", kAlert, "report.shredded", 2, "{}"),
                                record(1, "widget", kContact, "widget.made", 1, "{}")},
                               false);
  EXPECT_EQ(rows.unprojected_types, (std::vector<std::string>{"report.shredded", "widget.made"}));
  EXPECT_EQ(rows.events, "[]");
  EXPECT_EQ(rows.notifications, "[]");
  EXPECT_EQ(topic_of("backup"), "backups");
}

TEST(BatchTest, DataOfTheWrongTypeNamesTheEventAndField) {
  try {
    fold_batch({record(0, "contact", kContact, "contact.assigned", 2, R"({"operator":7})")});
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("data.operator"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace cauce::projections
