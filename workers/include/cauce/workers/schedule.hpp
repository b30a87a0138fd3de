#pragma once

// The pure half of the job loop (workers/README.md): how a job's events move its row in the
// workers' due-time table, the backoff between attempts and the ids of the commands a worker
// sends. No I/O here; job_worker.cpp is the adapter around it.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <cauce/commands/envelope.hpp>
#include <cauce/commands/recurrence.hpp>

namespace cauce::workers {

// A job's row in `worker_jobs` after one of its events.
struct ScheduleEntry {
  std::string kind;  // "report", "backup", "alert" (its deadline), "webhook" (its deliveries)
  std::string id;
  std::int64_t version = 0;           // the event's version: older rows are replaced, never newer
  std::optional<std::int64_t> round;  // nullopt: as the row has it
  std::int64_t attempt = 1;
  std::string step;      // "download", "render", "backup", "copy" (a backup's off-box copy),
                         // "deadline", "deliver", or "done": nothing left to run
  bool started = false;  // the attempt's start is recorded (a rerun skips it)
  std::int64_t due_at_us = 0;
  std::int64_t at_us = 0;  // when the event happened (a render's document time)
  // Set by events that carry them (report.requested, report.downloaded): what a runner needs.
  std::optional<std::string> title;
  std::optional<std::string> source_url;
  std::optional<std::string> content_type;
  // Alerts: the level whose deadline the row waits for, and the deadline (= due_at_us).
  std::optional<std::string> deadline_level;
  // Reports: the secret their download sends (its name); a slot's report: its schedule and slot.
  std::optional<std::string> source_auth;
  std::optional<std::string> schedule_id;
  std::optional<std::int64_t> slot_at_us;
  // Report schedules: whether the event carries the definition (created, changed), which then
  // replaces the row's; the recurrence ("every 15m", "cron 0 7 * * *"), its zone, the revision
  // a trigger must name, and the instant the slots count after. Step "keep": the row stays
  // done if it is (a paused schedule's change), else "slot".
  bool definition = false;
  std::optional<std::string> recurrence;
  std::optional<std::string> timezone;
  std::optional<std::int64_t> revision;
  std::optional<std::int64_t> slot_after_us;
  // The W3C traceparent of the event (its trace_parent; nullopt when it has none): the runner's
  // command for the row's next step continues that trace.
  std::optional<std::string> trace_parent;
};

// The deadline of each alert level in seconds (alerts.deadline_*_s; 0: that level has none).
struct Deadlines {
  int info_s = 0;
  int warning_s = 1800;
  int critical_s = 300;
  int of(std::string_view level) const;
};

// nullopt for events that are not a job's, an alert's or a webhook's (contacts) or do not move
// it. An alert's row is its one pending deadline: set when it is raised or escalated (from that
// event's time), done once it is acknowledged, closed or its deadline missed. A webhook's row is
// its deliveries: due once registered or enabled, done once disabled.
std::optional<ScheduleEntry> schedule_after(const commands::EventEnvelope& event,
                                            const Deadlines& deadlines = {});

// Every row an event moves: schedule_after's, or a report schedule's (and, for a triggered slot,
// the slot's report too, at step "request" until it is requested), each with the event's trace.
std::vector<ScheduleEntry> schedule_entries_after(const commands::EventEnvelope& event,
                                                  const Deadlines& deadlines = {});

// A report schedule's recurrence as a row holds it ("every 15m", "cron 0 7 * * *"), with its
// zone from `zoneinfo_dir`. Throws std::invalid_argument (a zone this machine does not have).
commands::Recurrence recurrence_of(const std::string& recurrence, const std::string& timezone,
                                   const std::filesystem::path& zoneinfo_dir);

// A scheduled slot: its trigger's command id (the schedule, its revision, the slot), its
// report's id (the schedule and the slot: one report per slot whatever the revision) and the
// report request's command id. Every runner in every process derives the same ones.
std::string slot_command_id(const std::string& schedule_id, std::int64_t revision,
                            std::int64_t slot_at_us);
std::string slot_report_id(const std::string& schedule_id, std::int64_t slot_at_us);
std::string slot_request_command_id(const std::string& schedule_id, std::int64_t slot_at_us);

// The deadlines' command for a missed deadline: one id per alert, level and instant, so two
// processes (or one after a restart) that both find it due send one command.
std::string deadline_command_id(const std::string& alert_id, const std::string& level,
                                std::int64_t deadline_at_us);

// An error as a job event can hold it: valid UTF-8 (invalid bytes become U+FFFD), no control
// characters, at most job::kMaxErrorBytes bytes cut at a character boundary, never empty.
std::string printable_error(std::string_view error);

// Full jitter (the AWS architecture blog's "exponential backoff and jitter"): a delay uniformly
// in [0, min(cap, base * 2^(attempt-1))]; `random` is any 64-bit random value.
std::chrono::milliseconds retry_delay(std::int64_t attempt, std::chrono::milliseconds base,
                                      std::chrono::milliseconds cap, std::uint64_t random);

// The command id of one step of one attempt: the same step run twice (a worker killed after
// sending it, a lease that expired) is the same command, applied once.
std::string step_command_id(const std::string& kind, const std::string& id, std::int64_t round,
                            std::int64_t attempt, const std::string& command_type);

// The backup the schedule asks for in the slot holding `now`: every scheduler, in every process,
// derives the same id, so a slot gets one backup however many ask.
std::string scheduled_backup_id(std::int64_t now_us, std::int64_t interval_s);

}  // namespace cauce::workers
