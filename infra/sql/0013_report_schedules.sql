-- Scheduled reports (issue 16, part 3): a report schedule's read model, the reports it requested
-- (their schedule and slot, and the name of the secret their download sends), and the workers'
-- due-time table holding each schedule's next slot (workers/README.md "Scheduled reports").

-- The tables a generation's views expose (0011's list and report_schedules).
CREATE OR REPLACE FUNCTION read_model_tables() RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT ARRAY['projection_checkpoints', 'events', 'contacts', 'calls', 'alerts',
                     'alert_timeline', 'reports', 'backups', 'parked_events',
                     'stats_open_alerts', 'stats_alert_hours', 'alert_acks', 'stats_calls_day',
                     'stats_contacts', 'report_schedules'] $$;

DO $$
DECLARE
  generation text;
BEGIN
  -- No switch while the generations are altered (a switch locks this row first too).
  PERFORM 1 FROM read_model_live FOR UPDATE;
  FOR generation IN
    SELECT n.nspname FROM pg_namespace n
    WHERE n.nspname LIKE 'read\_model\_%' AND to_regclass(quote_ident(n.nspname) || '.reports') IS NOT NULL
  LOOP
    EXECUTE format('LOCK TABLE %I.reports IN ACCESS EXCLUSIVE MODE', generation);
    -- Set for the reports a schedule requested: the schedule, its slot, the secret's name.
    EXECUTE format('ALTER TABLE %I.reports ADD COLUMN schedule_id uuid, '
                   'ADD COLUMN slot_at timestamptz, ADD COLUMN source_auth text', generation);
    EXECUTE format($f$
      CREATE TABLE %I.report_schedules (
        id             uuid        PRIMARY KEY,
        title          text        NOT NULL,
        source_url     text        NOT NULL,
        every          text,                 -- exactly one of every and cron
        cron           text,
        timezone       text        NOT NULL,
        source_auth    text,                 -- a secret's name, never the secret
        status         text        NOT NULL CHECK (status IN ('active', 'paused', 'deleted')),
        slots_from     timestamptz NOT NULL, -- slots count after this (created, changed, resumed)
        last_slot_at   timestamptz,          -- the last slot that fired
        last_report_id uuid,                 -- and its report
        created_at     timestamptz NOT NULL,
        updated_at     timestamptz NOT NULL,
        version        bigint      NOT NULL
      )$f$, generation);
    -- GET /v1/reports (newest first, by schedule): read_model_indexes.sql has them too.
    EXECUTE format('CREATE INDEX IF NOT EXISTS reports_by_time ON %I.reports '
                   '(requested_at DESC, id DESC)', generation);
    EXECUTE format('CREATE INDEX IF NOT EXISTS reports_by_schedule ON %I.reports '
                   '(schedule_id, requested_at DESC, id DESC) WHERE schedule_id IS NOT NULL',
                   generation);
  END LOOP;
  PERFORM read_model_point_views((SELECT schema FROM read_model_live));
END $$;

-- A schedule's row (kind 'report_schedule', step 'slot'; 'done' while paused or once deleted):
-- its recurrence and the instant its slots count from; due_at is put off to the next slot by the
-- runner that computes it. A slot's report (kind 'report', step 'request') until requested: its
-- schedule and slot. Reports: the secret their download sends (its name).
ALTER TABLE worker_jobs
  ADD COLUMN source_auth       text,
  ADD COLUMN schedule_id       uuid,
  ADD COLUMN slot_at           timestamptz,
  ADD COLUMN recurrence        text,         -- "every 15m" or "cron 0 7 * * *"
  ADD COLUMN timezone          text,
  ADD COLUMN schedule_revision bigint,
  ADD COLUMN slot_after        timestamptz;
