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

// A backup's off-box copy folds into the backup's row (0016's columns) and never moves the
// backup's own status: a copy given up leaves the backup completed.
TEST(BatchTest, ABackupsCopyHasItsOwnColumnsAndLeavesTheBackupCompleted) {
  constexpr const char* kBackup = "0190a1b2-0000-7000-8000-0000000000dd";
  const std::string sha(64, 'a');
  const auto copied_rows = parse(
      fold_batch({record(0, "backup", kBackup, "backup.completed", 3,
                         R"({"attempt":1,"bytes":10,"sha256":")" + sha +
                             R"(","positions":[3],"events":3,"copy_to":"/mnt/nfs/cauce"})"),
                  record(1, "backup", kBackup, "backup.copy_attempt_failed", 4,
                         R"({"attempt":1,"error":"Permission denied",)"
                         R"("next_attempt_at":"2025-11-24T16:00:09.000000Z"})"),
                  record(2, "backup", kBackup, "backup.copied", 5,
                         R"({"attempt":2,"directory":"/mnt/nfs/cauce/b","bytes":10,"sha256":")" +
                             sha + "\"}")})
          .backups);
  ASSERT_EQ(copied_rows.Size(), 1u);
  const auto& copied = copied_rows[0];
  EXPECT_STREQ(copied["status"].GetString(), "completed");
  EXPECT_STREQ(copied["copy_status"].GetString(), "copied");
  EXPECT_STREQ(copied["copy_to"].GetString(), "/mnt/nfs/cauce");
  EXPECT_STREQ(copied["copy_directory"].GetString(), "/mnt/nfs/cauce/b");
  EXPECT_EQ(copied["copy_attempts"].GetInt64(), 2);
  EXPECT_STREQ(copied["copy_error"].GetString(), "") << "cleared once copied";
  EXPECT_STREQ(copied["copy_next_attempt_at"].GetString(), "");
  EXPECT_TRUE(copied.HasMember("copied_at"));

  const auto given_up_rows =
      parse(fold_batch({record(0, "backup", kBackup, "backup.copy_attempt_failed", 6,
                               R"({"attempt":2,"error":"Permission denied"})")})
                .backups);
  ASSERT_EQ(given_up_rows.Size(), 1u);
  const auto& given_up = given_up_rows[0];
  EXPECT_FALSE(given_up.HasMember("status")) << "the backup's status is left as it is";
  EXPECT_STREQ(given_up["copy_status"].GetString(), "failed");
  EXPECT_STREQ(given_up["copy_error"].GetString(), "Permission denied");
  EXPECT_STREQ(given_up["copy_next_attempt_at"].GetString(), "");
}

}  // namespace
}  // namespace cauce::projections
