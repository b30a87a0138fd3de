#pragma once

// The statements of the workers' due-time table, `worker_jobs` (workers/README.md "The job loop"),
// shared by the adapter (job_worker.cpp) and the tests that run them against PostgreSQL.

#include <pqxx/pqxx>

#include <cauce/workers/schedule.hpp>

namespace cauce::workers {

// Upserts a job's row from its events; a row never goes back to an older version.
inline constexpr const char* kUpsertJob = R"(
  INSERT INTO worker_jobs AS j (kind, id, version, round, attempt, step, started, due_at, title,
                                source_url, content_type, step_at, deadline_level, deadline_at,
                                source_auth, schedule_id, slot_at, trace_parent)
  VALUES ($1, $2::uuid, $3, coalesce($4, 0), $5, $6, $7, to_timestamp($8::double precision / 1e6),
          $9, $10, $11, to_timestamp($12::double precision / 1e6), $13::text,
          CASE WHEN $13::text IS NULL THEN NULL ELSE to_timestamp($8::double precision / 1e6) END,
          $14, $15::uuid, to_timestamp($16::double precision / 1e6), $17)
  ON CONFLICT (kind, id) DO UPDATE SET
    version = excluded.version, round = coalesce($4, j.round), attempt = excluded.attempt,
    step = excluded.step, started = excluded.started, due_at = excluded.due_at,
    step_at = excluded.step_at, deadline_level = excluded.deadline_level,
    deadline_at = excluded.deadline_at,
    title = coalesce(excluded.title, j.title), source_url = coalesce(excluded.source_url,
    j.source_url), content_type = coalesce(excluded.content_type, j.content_type),
    source_auth = coalesce(excluded.source_auth, j.source_auth),
    schedule_id = coalesce(excluded.schedule_id, j.schedule_id),
    slot_at = coalesce(excluded.slot_at, j.slot_at),
    trace_parent = coalesce(excluded.trace_parent, j.trace_parent)
  WHERE j.version < excluded.version)";

// A report schedule's row (workers/README.md "Scheduled reports"): its definition replaced by the
// events that carry one ($12), its step "keep" staying done while paused. slot_after never moves
// back: a change or resume stamped by a clock behind the one that fired the last slot counts
// from that slot (a slot at or before it would only be refused).
inline constexpr const char* kUpsertSchedule = R"(
  INSERT INTO worker_jobs AS j (kind, id, version, round, attempt, step, started, due_at, step_at,
                                title, source_url, source_auth, recurrence, timezone,
                                schedule_revision, slot_after, trace_parent)
  VALUES ('report_schedule', $1::uuid, $2, 0, 1, CASE WHEN $3 = 'keep' THEN 'slot' ELSE $3 END,
          false, to_timestamp($4::double precision / 1e6), to_timestamp($4::double precision / 1e6),
          $5, $6, $7, $8, $9, $10, to_timestamp($11::double precision / 1e6), $13)
  ON CONFLICT (kind, id) DO UPDATE SET
    version = excluded.version, due_at = excluded.due_at, step_at = excluded.step_at,
    step = CASE WHEN $3 <> 'keep' THEN $3 WHEN j.step = 'done' THEN 'done' ELSE 'slot' END,
    title = CASE WHEN $12 THEN excluded.title ELSE j.title END,
    source_url = CASE WHEN $12 THEN excluded.source_url ELSE j.source_url END,
    source_auth = CASE WHEN $12 THEN excluded.source_auth ELSE j.source_auth END,
    recurrence = CASE WHEN $12 THEN excluded.recurrence ELSE j.recurrence END,
    timezone = CASE WHEN $12 THEN excluded.timezone ELSE j.timezone END,
    schedule_revision = coalesce(excluded.schedule_revision, j.schedule_revision),
    slot_after = greatest(excluded.slot_after, j.slot_after),
    trace_parent = coalesce(excluded.trace_parent, j.trace_parent)
  WHERE j.version < excluded.version)";

// One due job for this runner: not leased (or its lease expired), and its row has caught up
// with what a runner reported last.
inline constexpr const char* kClaimJob = R"(
  UPDATE worker_jobs j SET lease_owner = $1,
                           lease_until = now() + make_interval(secs => $2::double precision / 1e3)
  WHERE (j.kind, j.id) = (
    SELECT kind, id FROM worker_jobs
    WHERE step <> 'done' AND due_at <= now() AND version >= awaits_version
      AND (lease_until IS NULL OR lease_until < now())
      AND CASE WHEN kind IN ('alert', 'report_schedule') OR step = 'request' THEN 'timed'
               WHEN kind = 'webhook' THEN 'webhook' ELSE 'job' END = $3
    ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED)
  RETURNING j.kind, j.id::text, j.version, j.round, j.attempt, j.step, j.started,
            coalesce(j.title, ''), coalesce(j.source_url, ''), coalesce(j.content_type, ''),
            (extract(epoch FROM j.step_at) * 1e6)::bigint, coalesce(j.deadline_level, ''),
            coalesce((extract(epoch FROM j.deadline_at) * 1e6)::bigint, 0),
            coalesce(j.source_auth, ''), coalesce(j.schedule_id::text, ''),
            coalesce((extract(epoch FROM j.slot_at) * 1e6)::bigint, 0),
            coalesce(j.recurrence, ''), coalesce(j.timezone, ''),
            coalesce(j.schedule_revision, 0),
            coalesce((extract(epoch FROM j.slot_after) * 1e6)::bigint, 0),
            coalesce(j.trace_parent, ''))";

// Gives the job back: due again at once (or after `$4` ms), and not before the row reflects
// version `$3` (what this runner's last command made of the job). The delay only holds for the
// row this runner knows: one the feeder has meanwhile written at a newer version (a schedule
// changed by a PATCH while its slot was computed from the old recurrence) keeps the due_at the
// feeder gave it, so a release from a stale claim never puts the row off.
inline constexpr const char* kReleaseJob = R"(
  UPDATE worker_jobs SET lease_owner = NULL, lease_until = NULL,
                         awaits_version = greatest(awaits_version, $3),
                         due_at = CASE WHEN version <= $3
                                       THEN greatest(due_at, now() + make_interval(
                                              secs => $4::double precision / 1e3))
                                       ELSE due_at END
  WHERE kind = $1 AND id = $2::uuid AND lease_owner = $5)";

// Writes the row `s` describes (a job's, an alert's deadline, a report schedule's),
// version-guarded.
inline void upsert_entry(pqxx::transaction_base& txn, const ScheduleEntry& s) {
  if (s.kind == "report_schedule") {
    txn.exec_params(kUpsertSchedule, s.id, s.version, s.step, s.due_at_us, s.title, s.source_url,
                    s.source_auth, s.recurrence, s.timezone, s.revision, s.slot_after_us,
                    s.definition, s.trace_parent);
    return;
  }
  txn.exec_params(kUpsertJob, s.kind, s.id, s.version, s.round, s.attempt, s.step, s.started,
                  s.due_at_us, s.title, s.source_url, s.content_type, s.at_us, s.deadline_level,
                  s.source_auth, s.schedule_id, s.slot_at_us, s.trace_parent);
}

}  // namespace cauce::workers
