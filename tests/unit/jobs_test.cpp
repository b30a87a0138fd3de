// The Report and Backup job aggregates: the order of a job's steps, attempts, failures, retries.
#include <cauce/commands/jobs.hpp>

#include "given_when_then.hpp"

namespace cauce::commands {
namespace {

using commands::testing::at;
using commands::testing::then_events;
using commands::testing::then_rejected;

const std::string kSha(64, 'a');
const report::Requested kRequested{"Q3", "https://example.org/q3.csv"};

report::State report_given(std::vector<report::Event> events) {
  return commands::testing::given<report::State, report::Event>(events);
}
backup::State backup_given(std::vector<backup::Event> events) {
  return commands::testing::given<backup::State, backup::Event>(events);
}

TEST(ReportJobTest, AHappyReportDownloadsThenRenders) {
  using namespace report;
  auto s = report_given({kRequested});
  EXPECT_EQ(s.status, Status::kRequested);
  EXPECT_EQ(then_events(decide(s, StartDownload{1}, at()))[0], (Event{DownloadStarted{1}}));
  s = report_given({kRequested, DownloadStarted{1}});
  EXPECT_EQ(s.status, Status::kDownloading);
  EXPECT_EQ(then_rejected(decide(s, RecordRender{1, 2, 10, kSha}, at())).code, "conflict")
      << "no render before the download";
  const auto downloaded = then_events(decide(s, RecordDownload{1, 10, kSha, "text/csv"}, at()));
  EXPECT_EQ(downloaded[0], (Event{Downloaded{1, 10, kSha, "text/csv"}}));
  s = report_given({kRequested, DownloadStarted{1}, Downloaded{1, 10, kSha, "text/csv"}});
  EXPECT_EQ(then_events(decide(s, RecordRender{1, 2, 100, kSha}, at()))[0],
            (Event{Rendered{1, 2, 100, kSha}}));
  s = evolve(s, Rendered{1, 2, 100, kSha});
  EXPECT_EQ(s.status, Status::kReady);
  EXPECT_EQ(then_rejected(decide(s, RecordRender{1, 2, 100, kSha}, at())).code, "conflict")
      << "rendered once";
}

TEST(ReportJobTest, AttemptsFollowEachOtherAndAFinalFailureFailsTheJob) {
  using namespace report;
  const auto started = report_given({kRequested, DownloadStarted{1}});
  EXPECT_EQ(then_rejected(decide(report_given({kRequested}), StartDownload{2}, at())).field,
            "attempt");
  EXPECT_EQ(then_rejected(decide(started, StartDownload{2}, at())).code, "conflict")
      << "attempt 2 only after attempt 1 failed";
  const auto retry_later =
      then_events(decide(started, RecordFailure{1, "download", "HTTP 500", true, 1'000'000}, at()));
  ASSERT_EQ(retry_later.size(), 1u);
  EXPECT_EQ(retry_later[0],
            (Event{job::AttemptFailed{1, "download", "HTTP 500", true, 1'000'000}}));
  const auto retrying = evolve(started, retry_later[0]);
  EXPECT_EQ(retrying.status, Status::kRetrying);
  EXPECT_EQ(then_events(decide(retrying, StartDownload{2}, at()))[0], (Event{DownloadStarted{2}}));
  EXPECT_EQ(then_rejected(decide(retrying, RecordFailure{1, "download", "x", true, 5}, at())).code,
            "conflict")
      << "a failure is reported once";

  const auto final = then_events(
      decide(started, RecordFailure{1, "download", "HTTP 404", false, std::nullopt}, at()));
  ASSERT_EQ(final.size(), 2u);
  EXPECT_EQ(final[1], (Event{job::Failed{"HTTP 404", 1}}));
  EXPECT_EQ(then_rejected(decide(started, RecordFailure{1, "download", "x", false, 5}, at())).field,
            "next_attempt_at")
      << "a permanent error is not retried";
  const auto long_error = std::string(999, 'e') + "\xc3\xa9" + std::string(10, 'e');
  const auto clipped = then_events(
      decide(started, RecordFailure{1, "download", long_error, false, std::nullopt}, at()));
  const auto& failed = std::get<job::AttemptFailed>(clipped[0]);
  EXPECT_LE(failed.error.size(), job::kMaxErrorBytes);
  EXPECT_EQ(failed.error.size(), 999u) << "cut before the two-byte character, not inside it";
}

TEST(ReportJobTest, OnlyAFailedReportIsRetriedAndItsAttemptsStartAgain) {
  using namespace report;
  EXPECT_EQ(then_rejected(decide(report::State{}, Retry{}, at())).code, "not_found");
  EXPECT_EQ(then_rejected(decide(report_given({kRequested}), Retry{}, at())).code, "conflict");
  const auto failed = report_given({kRequested, DownloadStarted{1},
                                    job::AttemptFailed{1, "download", "404", false, std::nullopt},
                                    job::Failed{"404", 1}});
  EXPECT_EQ(failed.status, Status::kFailed);
  EXPECT_EQ(then_rejected(decide(failed, Retry{}, at(1, 3))).code, "version_mismatch");
  const auto retried = then_events(decide(failed, Retry{}, at(1, 4)));
  EXPECT_EQ(retried[0], (Event{job::Retried{1}}));
  const auto again = evolve(failed, retried[0]);
  EXPECT_EQ(again.status, Status::kRequested);
  EXPECT_EQ(again.round, 1);
  EXPECT_EQ(then_events(decide(again, StartDownload{1}, at()))[0], (Event{DownloadStarted{1}}));
}

TEST(ReportJobTest, EveryEventRoundTripsThroughJson) {
  using namespace report;
  for (const Event& e : std::vector<Event>{
           kRequested, DownloadStarted{2}, Downloaded{2, 5, kSha, "application/json"},
           job::AttemptFailed{2, "render", "bad csv", false, std::nullopt},
           job::AttemptFailed{3, "download", "timeout", true, 1'700'000'000'123'456},
           Rendered{2, 7, 900, kSha}, job::Failed{"bad csv", 2}, job::Retried{3}}) {
    EXPECT_EQ(event_from_json(event_type(e), to_json(e)), e) << to_json(e);
  }
}

TEST(BackupJobTest, ABackupRunsCompletesAndExpires) {
  using namespace backup;
  auto s = backup_given({Requested{}});
  EXPECT_EQ(then_events(decide(s, Start{1}, at()))[0], (Event{Started{1}}));
  s = backup_given({Requested{}, Started{1}});
  EXPECT_EQ(then_rejected(decide(s, Expire{}, at())).code, "conflict");
  EXPECT_EQ(then_rejected(decide(s, RecordCompletion{1, 10, kSha, {}, 0}, at())).field,
            "positions");
  const Completed done{1, 10, kSha, {4, 0, 9}, 13};
  EXPECT_EQ(then_events(decide(s, RecordCompletion{1, 10, kSha, {4, 0, 9}, 13}, at()))[0],
            Event{done});
  s = evolve(s, done);
  EXPECT_EQ(s.status, Status::kCompleted);
  EXPECT_EQ(then_events(decide(s, Expire{}, at()))[0], (Event{Expired{}}));
  EXPECT_EQ(then_rejected(decide(evolve(s, Expired{}), Expire{}, at())).code, "conflict");
  for (const Event& e : std::vector<Event>{Requested{}, Started{1}, done, Expired{},
                                           job::AttemptFailed{1, "backup", "x", true, 5},
                                           job::Failed{"x", 8}, job::Retried{1}}) {
    EXPECT_EQ(event_from_json(event_type(e), to_json(e)), e) << to_json(e);
  }
}

TEST(BackupJobTest, ACompletedBackupsCopyIsRecordedOnceAttemptByAttempt) {
  using namespace backup;
  const auto started = backup_given({Requested{}, Started{1}});
  // Without copy_to there is no copy to record.
  const auto alone = evolve(started, Completed{1, 10, kSha, {4}, 3});
  EXPECT_EQ(alone.copy, CopyStatus::kNone);
  EXPECT_EQ(then_rejected(decide(alone, RecordCopy{1, "/mnt/c/b", 10, kSha}, at())).field, "state");
  // With it, the copy is pending until an attempt records it.
  const Completed completed{1, 10, kSha, {4}, 3, "/mnt/copies"};
  EXPECT_EQ(
      then_events(decide(started, RecordCompletion{1, 10, kSha, {4}, 3, "/mnt/copies"}, at()))[0],
      Event{completed});
  auto s = evolve(started, completed);
  EXPECT_EQ(s.copy, CopyStatus::kPending);
  // Retention waits for the copy: its files are what the copy reads.
  const auto waits = then_rejected(decide(s, Expire{}, at()));
  EXPECT_EQ(waits.code, "too_early") << "asked again later, not remembered";
  EXPECT_EQ(waits.field, "copy");
  EXPECT_EQ(then_rejected(decide(s, RecordCopy{2, "/mnt/copies/b", 10, kSha}, at())).field,
            "attempt");
  // A failed attempt with a next one keeps it pending, and the backup completed.
  const CopyAttemptFailed first{1, "/mnt/copies: Permission denied", 1'700'000'000'000'000};
  EXPECT_EQ(
      then_events(decide(s, RecordCopyFailure{1, first.error, first.next_attempt_at_us}, at()))[0],
      Event{first});
  s = evolve(s, first);
  EXPECT_EQ(s.status, Status::kCompleted);
  EXPECT_EQ(s.copy, CopyStatus::kPending);
  EXPECT_EQ(then_rejected(decide(s, RecordCopyFailure{1, "again", std::nullopt}, at())).field,
            "attempt")
      << "an attempt is recorded once";
  EXPECT_EQ(then_rejected(decide(s, RecordCopy{2, "/mnt/copies/b", 10, "short"}, at())).field,
            "sha256");
  const Copied copied{2, "/mnt/copies/b", 10, kSha};
  EXPECT_EQ(then_events(decide(s, RecordCopy{2, "/mnt/copies/b", 10, kSha}, at()))[0],
            Event{copied});
  const auto done = evolve(s, copied);
  EXPECT_EQ(done.copy, CopyStatus::kCopied);
  EXPECT_EQ(then_events(decide(done, Expire{}, at()))[0], (Event{Expired{}}));
  EXPECT_EQ(then_rejected(decide(done, RecordCopy{3, "/mnt/copies/b", 10, kSha}, at())).field,
            "state");
  // A final failure gives the copy up; the backup stays completed and can still expire.
  const auto given_up = evolve(s, CopyAttemptFailed{2, "still denied", std::nullopt});
  EXPECT_EQ(given_up.copy, CopyStatus::kFailed);
  EXPECT_EQ(given_up.status, Status::kCompleted);
  EXPECT_EQ(then_rejected(decide(given_up, RecordCopy{3, "/mnt/copies/b", 10, kSha}, at())).code,
            "conflict");
  EXPECT_EQ(then_events(decide(given_up, Expire{}, at()))[0], (Event{Expired{}}));
  for (const Event& e :
       std::vector<Event>{completed, copied, first, CopyAttemptFailed{3, "x", std::nullopt}}) {
    EXPECT_EQ(event_from_json(event_type(e), to_json(e)), e) << to_json(e);
  }
  EXPECT_EQ(event_type(copied), "backup.copied");
  EXPECT_EQ(event_type(first), "backup.copy_attempt_failed");
}

}  // namespace
}  // namespace cauce::commands

namespace cauce::commands::report {
namespace {

using commands::testing::at;
using commands::testing::then_events;
using commands::testing::then_rejected;

TEST(ReportTest, RequestNeedsAnHttpUrl) {
  EXPECT_EQ(then_events(decide(State{}, Request{"Q3", "https://example.org/q3.csv"}, at())).size(),
            1u);
  for (const auto* url : {"ftp://example.org/x", "file:///etc/passwd", "https://", "http://a b/",
                          "https://user@host/x", "javascript:alert(1)", "http://host:99999/"}) {
    EXPECT_EQ(then_rejected(decide(State{}, Request{"Q3", url}, at())).field, "source_url") << url;
  }
  EXPECT_EQ(then_rejected(decide(State{}, Request{"", "https://example.org"}, at())).field,
            "title");
  const auto state = evolve(State{}, Requested{"Q3", "https://example.org"});
  EXPECT_EQ(then_rejected(decide(state, Request{"Q3", "https://example.org"}, at())).code,
            "already_exists");
  const Event e = Requested{"Q3", "https://example.org/q3.csv"};
  EXPECT_EQ(event_from_json(event_type(e), to_json(e)), e);
}

}  // namespace
}  // namespace cauce::commands::report

namespace cauce::commands::backup {
namespace {

using commands::testing::at;
using commands::testing::then_events;
using commands::testing::then_rejected;

TEST(BackupTest, RequestedOnce) {
  EXPECT_EQ(then_events(decide(State{}, Request{}, at())).size(), 1u);
  EXPECT_EQ(then_rejected(decide(evolve(State{}, Requested{}), Request{}, at())).code,
            "already_exists");
  EXPECT_EQ(event_type(Requested{}), "backup.requested");
}

}  // namespace
}  // namespace cauce::commands::backup
