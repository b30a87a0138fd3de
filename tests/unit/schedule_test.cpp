// The pure half of the job loop: how events move a job's row, the backoff, the step ids, the
// backup slots and which backups retention deletes (with an injected clock).
#include <fstream>

#include <gtest/gtest.h>

#include <cauce/commands/jobs.hpp>
#include <cauce/core/crypto.hpp>
#include <cauce/core/log.hpp>
#include <cauce/workers/backup.hpp>
#include <cauce/workers/schedule.hpp>

namespace cauce::workers {
namespace {

using namespace std::chrono_literals;

constexpr std::int64_t kNow = 1'780'000'000'000'000;  // 2026-05-28

commands::EventEnvelope event(const std::string& type, std::int64_t version,
                              const std::string& data) {
  commands::EventEnvelope e;
  e.type = type;
  e.aggregate_type = type.substr(0, type.find('.'));
  e.aggregate_id = "0190a5a0-0000-7000-8000-000000000001";
  e.version = version;
  e.occurred_at_us = kNow;
  e.data = data;
  return e;
}

// A report schedule's row: a change of the recurrence restarts the slots (revision and
// slot_after from the change); a change of anything else replaces the definition and keeps them
// (the row, due at the change, then fires a slot already due); a change from before the flag
// existed restarts them.
TEST(ScheduleTest, OnlyAChangeOfTheRecurrenceRestartsAScheduleRowsSlots) {
  const std::string definition =
      R"({"title":"T","source_url":"https://x.org/a","every":"1h","timezone":"UTC")";
  const auto title_only = schedule_entries_after(
      event("report_schedule.changed", 4, definition + R"(,"recurrence_changed":false})"));
  ASSERT_EQ(title_only.size(), 1u);
  EXPECT_TRUE(title_only[0].definition);
  EXPECT_EQ(title_only[0].title, "T");
  EXPECT_EQ(title_only[0].recurrence, "every 1h");
  EXPECT_FALSE(title_only[0].revision) << "the row keeps its revision";
  EXPECT_FALSE(title_only[0].slot_after_us) << "and the instant its slots count after";
  EXPECT_EQ(title_only[0].due_at_us, kNow) << "due at once: a slot already due fires";
  for (const auto& data : {definition + R"(,"recurrence_changed":true})", definition + "}"}) {
    const auto restarted = schedule_entries_after(event("report_schedule.changed", 4, data));
    ASSERT_EQ(restarted.size(), 1u);
    EXPECT_EQ(restarted[0].revision, 4) << data;
    EXPECT_EQ(restarted[0].slot_after_us, kNow) << data;
  }
}

// Traces across processes: a row keeps the traceparent of the event that wrote it (every row
// the event moves, a triggered slot's report too), so the runner's next command continues it.
TEST(ScheduleTest, ARowKeepsTheTraceOfTheEventThatWroteIt) {
  constexpr std::string_view kTrace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  auto requested = event("report.requested", 1, R"({"title":"Q3","source_url":"http://x/a"})");
  requested.trace_parent = *core::TraceParent::parse(kTrace);
  const auto rows = schedule_entries_after(requested);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].trace_parent, kTrace);
  auto triggered = event("report_schedule.triggered", 3,
                         R"({"slot_at":"2026-05-28T20:26:40.000000Z","report_id":)"
                         R"("0190a5a0-0000-7000-8000-000000000002","title":"T",)"
                         R"("source_url":"https://x.org/a"})");
  triggered.trace_parent = *core::TraceParent::parse(kTrace);
  const auto slot = schedule_entries_after(triggered);
  ASSERT_EQ(slot.size(), 2u);
  for (const auto& row : slot) EXPECT_EQ(row.trace_parent, kTrace) << row.kind;
  // An event from before traces were carried leaves the row's as it is (NULL: coalesce).
  const auto untraced =
      schedule_entries_after(event("report.requested", 1, R"({"title":"Q3","source_url":"x"})"));
  ASSERT_EQ(untraced.size(), 1u);
  EXPECT_FALSE(untraced[0].trace_parent);
}

TEST(ScheduleTest, AReportsEventsMoveItsRowStepByStep) {
  const auto requested =
      schedule_after(event("report.requested", 1, R"({"title":"Q3","source_url":"http://x/a"})"));
  ASSERT_TRUE(requested);
  EXPECT_EQ(requested->step, "download");
  EXPECT_EQ(requested->attempt, 1);
  EXPECT_FALSE(requested->started);
  EXPECT_EQ(requested->round, 0);
  EXPECT_EQ(requested->source_url, "http://x/a");
  EXPECT_EQ(requested->due_at_us, kNow);

  const auto started = schedule_after(event("report.download_started", 2, R"({"attempt":1})"));
  EXPECT_TRUE(started->started) << "a rerun after a crash skips the start";
  EXPECT_FALSE(started->round) << "the round stays what the row has";

  const auto later = core::format_utc_micros(kNow + 4'000'000);
  const auto retry = schedule_after(event(
      "report.attempt_failed", 3,
      R"({"attempt":1,"step":"download","error":"HTTP 500","retryable":true,"next_attempt_at":")" +
          later + R"("})"));
  EXPECT_EQ(retry->attempt, 2);
  EXPECT_EQ(retry->step, "download");
  EXPECT_FALSE(retry->started);
  EXPECT_EQ(retry->due_at_us, kNow + 4'000'000) << "due when the backoff says, not before";

  const auto downloaded =
      schedule_after(event("report.downloaded", 5,
                           R"({"attempt":2,"bytes":3,"sha256":")" + std::string(64, 'a') +
                               R"(","content_type":"text/csv"})"));
  EXPECT_EQ(downloaded->step, "render");
  EXPECT_EQ(downloaded->content_type, "text/csv");

  for (const auto& [type, data] : std::vector<std::pair<std::string, std::string>>{
           {"report.rendered", R"({"attempt":2,"pages":1,"bytes":1,"sha256":"x"})"},
           {"report.failed", R"({"reason":"x","attempts":2})"},
           {"report.attempt_failed",
            R"({"attempt":2,"step":"render","error":"bad","retryable":false})"}}) {
    EXPECT_EQ(schedule_after(event(type, 6, data))->step, "done") << type;
  }
  const auto retried = schedule_after(event("report.retried", 7, R"({"round":1})"));
  EXPECT_EQ(retried->round, 1);
  EXPECT_EQ(retried->attempt, 1);
  EXPECT_EQ(retried->step, "download");
  EXPECT_FALSE(schedule_after(event("contact.registered", 1, "{}")));
}

TEST(ScheduleTest, AnAlertsRowIsItsPendingDeadline) {
  const Deadlines deadlines{.info_s = 0, .warning_s = 1800, .critical_s = 300};
  const auto raised =
      schedule_after(event("alert.raised", 1, R"({"level":"warning","title":"x"})"), deadlines);
  ASSERT_TRUE(raised);
  EXPECT_EQ(raised->kind, "alert");
  EXPECT_EQ(raised->step, "deadline");
  EXPECT_EQ(raised->deadline_level, "warning");
  EXPECT_EQ(raised->due_at_us, kNow + 1800'000'000) << "the level's deadline from the event";
  const auto escalated = schedule_after(
      event("alert.escalated", 3, R"({"from":"warning","to":"critical"})"), deadlines);
  EXPECT_EQ(escalated->deadline_level, "critical");
  EXPECT_EQ(escalated->due_at_us, kNow + 300'000'000);
  for (const auto& [type, data] : std::vector<std::pair<std::string, std::string>>{
           {"alert.acknowledged", "{}"},
           {"alert.closed", R"({"resolution":"x"})"},
           {"alert.deadline_missed",
            R"({"level":"critical","deadline_at":"2026-05-28T20:26:40.000000Z"})"},
           {"alert.raised", R"({"level":"info","title":"no deadline at info"})"}}) {
    const auto row = schedule_after(event(type, 4, data), deadlines);
    ASSERT_TRUE(row) << type;
    EXPECT_EQ(row->step, "done") << type;
  }
  EXPECT_EQ(deadline_command_id("a", "warning", 1), deadline_command_id("a", "warning", 1));
  EXPECT_NE(deadline_command_id("a", "warning", 1), deadline_command_id("a", "critical", 1));
}

// A webhook's row is its deliveries: due once registered or enabled, done while disabled.
TEST(ScheduleTest, AWebhooksRowIsDueWhileItIsActive) {
  const auto registered = schedule_after(event(
      "webhook.registered", 1, R"({"url":"https://h.example","topics":["alerts"],"filters":{}})"));
  ASSERT_TRUE(registered);
  EXPECT_EQ(registered->kind, "webhook");
  EXPECT_EQ(registered->step, "deliver");
  EXPECT_EQ(registered->due_at_us, kNow);
  const auto disabled = schedule_after(
      event("webhook.disabled", 2, R"({"reason":"failing","consecutive_failures":10})"));
  EXPECT_EQ(disabled->step, "done");
  EXPECT_EQ(disabled->version, 2);
  EXPECT_EQ(schedule_after(event("webhook.enabled", 3, "{}"))->step, "deliver");
}

TEST(ScheduleTest, ABackupRunsAsOneStep) {
  EXPECT_EQ(schedule_after(event("backup.requested", 1, "{}"))->step, "backup");
  EXPECT_TRUE(schedule_after(event("backup.started", 2, R"({"attempt":1})"))->started);
  EXPECT_EQ(schedule_after(event("backup.expired", 4, "{}"))->step, "done");
}

// A backup with an off-box copy goes on to step "copy" once completed; a failed copy attempt with
// a next one is due then, at the next attempt; a copy recorded or given up leaves nothing to run.
TEST(ScheduleTest, ACompletedBackupsCopyIsAStepWithItsOwnAttempts) {
  const std::string completed =
      R"({"attempt":2,"bytes":10,"sha256":"00","positions":[1],"events":1)";
  EXPECT_EQ(schedule_after(event("backup.completed", 3, completed + "}"))->step, "done");
  const auto copy =
      schedule_after(event("backup.completed", 3, completed + R"(,"copy_to":"/mnt/c"})"));
  EXPECT_EQ(copy->step, "copy");
  EXPECT_EQ(copy->attempt, 1) << "the copy's attempts count from 1";
  EXPECT_TRUE(copy->started) << "no start event to send";
  EXPECT_EQ(copy->due_at_us, kNow);
  const auto retry = schedule_after(event("backup.copy_attempt_failed", 4,
                                          R"({"attempt":1,"error":"denied",)"
                                          R"("next_attempt_at":"2026-05-28T20:26:41.000000Z"})"));
  EXPECT_EQ(retry->step, "copy");
  EXPECT_EQ(retry->attempt, 2);
  EXPECT_EQ(retry->due_at_us, kNow + 1'000'000);
  EXPECT_EQ(
      schedule_after(event("backup.copy_attempt_failed", 5, R"({"attempt":2,"error":"denied"})"))
          ->step,
      "done");
  EXPECT_EQ(schedule_after(event("backup.copied", 5, R"({"attempt":2})"))->step, "done");
}

TEST(ScheduleTest, RetryDelaysAreFullJitterUnderACappedDoubling) {
  const auto base = 1000ms;
  const auto cap = 300000ms;
  EXPECT_EQ(retry_delay(1, base, cap, 0), 0ms);
  EXPECT_EQ(retry_delay(1, base, cap, 1000), 1000ms) << "attempt 1: within [0, 1 s]";
  EXPECT_EQ(retry_delay(1, base, cap, 1001), 0ms);
  EXPECT_EQ(retry_delay(3, base, cap, 4000), 4000ms) << "attempt 3: within [0, 4 s]";
  EXPECT_EQ(retry_delay(20, base, cap, 300000), 300000ms) << "capped at 5 min";
  EXPECT_EQ(retry_delay(200, base, cap, ~0ULL), std::chrono::milliseconds(~0ULL % 300001));
  std::uint64_t random = 88172645463325252ULL;
  for (int attempt = 1; attempt <= 12; ++attempt) {
    random ^= random << 13;
    random ^= random >> 7;
    random ^= random << 17;
    const auto d = retry_delay(attempt, base, cap, random);
    EXPECT_GE(d, 0ms);
    EXPECT_LE(d, std::min(cap, base * (std::int64_t{1} << (attempt - 1))));
  }
}

TEST(ScheduleTest, StepIdsAndBackupSlotsAreTheSameWhoeverAsks) {
  const auto id = "0190a5a0-0000-7000-8000-000000000001";
  EXPECT_EQ(step_command_id("report", id, 0, 1, "report.start_download"),
            step_command_id("report", id, 0, 1, "report.start_download"));
  EXPECT_NE(step_command_id("report", id, 0, 1, "report.start_download"),
            step_command_id("report", id, 0, 2, "report.start_download"));
  EXPECT_NE(step_command_id("report", id, 0, 1, "report.start_download"),
            step_command_id("report", id, 1, 1, "report.start_download"));
  const auto slot_start = kNow - kNow % 1'800'000'000;
  EXPECT_EQ(scheduled_backup_id(slot_start, 1800),
            scheduled_backup_id(slot_start + 1'799'999'999, 1800));
  EXPECT_NE(scheduled_backup_id(slot_start, 1800),
            scheduled_backup_id(slot_start + 1'800'000'000, 1800));
  EXPECT_TRUE(commands::is_uuid(scheduled_backup_id(kNow, 1800)));
}

TEST(ScheduleTest, ErrorsBecomeTextAJobEventCanHold) {
  EXPECT_EQ(printable_error("HTTP 404"), "HTTP 404");
  EXPECT_EQ(printable_error("t\xe9xt/html"), "t\xEF\xBF\xBDxt/html") << "Latin-1 byte";
  EXPECT_EQ(printable_error("a\nb\x01"
                            "c"),
            "a b c");
  EXPECT_EQ(printable_error(std::string("nul\0here", 8)), "nul here");
  EXPECT_EQ(printable_error("\xed\xa0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD")
      << "a surrogate is not UTF-8";
  EXPECT_EQ(printable_error("\xc0\xaf"), "\xEF\xBF\xBD\xEF\xBF\xBD") << "overlong";
  EXPECT_EQ(printable_error("José 李娜 😀"), "José 李娜 😀");
  EXPECT_EQ(printable_error(""), "unknown error");
  EXPECT_LE(printable_error(std::string(5000, 'x')).size(), commands::job::kMaxErrorBytes);
}

// A directory of fake backups: complete ones (a manifest), one being written, one broken.
class RetentionTest : public ::testing::Test {
 protected:
  RetentionTest()
      : dir_(std::filesystem::temp_directory_path() / ("cauce-retention-" + core::random_hex(6))) {
    std::filesystem::create_directories(dir_);
  }
  ~RetentionTest() override { std::filesystem::remove_all(dir_); }

  void backup(const std::string& id, std::int64_t created_at_us) {
    std::filesystem::create_directories(dir_ / id);
    std::ofstream(dir_ / id / "manifest.json")
        << R"({"format":1,"id":")" << id << R"(","created_at":")"
        << core::format_utc_micros(created_at_us) << R"(","events":0,"files":[]})";
  }

  std::filesystem::path dir_;
};

TEST_F(RetentionTest, ExactlyTheCompleteBackupsOlderThanTheRetentionExpire) {
  constexpr std::int64_t kHour = 3'600'000'000;
  backup("eight-days", kNow - 8 * 24 * kHour);
  backup("seven-days-and-a-second", kNow - 7 * 24 * kHour - 1'000'000);
  backup("six-days", kNow - 6 * 24 * kHour);
  backup("an-hour", kNow - kHour);
  std::filesystem::create_directories(dir_ / ".being-written.tmp");  // no manifest yet
  std::filesystem::create_directories(dir_ / "broken");
  std::ofstream(dir_ / "broken" / "manifest.json") << "{not json";

  const auto expired = expired_backups(dir_, kNow, std::chrono::hours(24 * 7));
  ASSERT_EQ(expired.size(), 2u);
  EXPECT_EQ(expired[0].id, "eight-days");
  EXPECT_EQ(expired[1].id, "seven-days-and-a-second");
  EXPECT_EQ(list_backups(dir_).size(), 4u) << "only complete backups are listed";
  EXPECT_EQ(expired_backups(dir_, kNow + 2 * 24 * kHour, std::chrono::hours(24 * 7)).size(), 3u)
      << "two days later the six-day-old one has expired too: the clock decides";
}

}  // namespace
}  // namespace cauce::workers
