-- The job lifecycles (issue 13): what the workers report on reports and backups, and the
-- workers' own due-time table.

ALTER TABLE reports
  ADD COLUMN round           integer     NOT NULL DEFAULT 0,  -- operator retries so far
  ADD COLUMN next_attempt_at timestamptz,                     -- while retrying
  ADD COLUMN content_type    text,                            -- of the downloaded source
  ADD COLUMN source_bytes    bigint,
  ADD COLUMN source_sha256   text,
  ADD COLUMN pages           integer,                         -- of the rendered PDF
  ADD COLUMN pdf_bytes       bigint,
  ADD COLUMN pdf_sha256      text,
  ADD COLUMN failure         text;                            -- why it failed, when it did

ALTER TABLE backups
  ADD COLUMN round           integer     NOT NULL DEFAULT 0,
  ADD COLUMN attempts        integer     NOT NULL DEFAULT 0,
  ADD COLUMN errors          jsonb       NOT NULL DEFAULT '[]',
  ADD COLUMN next_attempt_at timestamptz,
  ADD COLUMN events          bigint,                          -- events exported
  ADD COLUMN failure         text;

-- The workers' schedule: one row per job (workers/README.md). Written by the workers' event
-- consumer from the job's events (version-guarded), claimed by a runner with a lease. A job that
-- is ready, failed or completed keeps its row (step 'done'): an event read again can then never
-- bring the job back.
CREATE TABLE worker_jobs (
  kind          text        NOT NULL,  -- report, backup
  id            uuid        NOT NULL,
  version       bigint      NOT NULL,  -- the job's version the row reflects
  round         integer     NOT NULL,
  attempt       integer     NOT NULL,  -- the attempt the step belongs to
  step          text        NOT NULL,  -- download, render, backup
  started       boolean     NOT NULL,  -- the attempt's start is recorded
  due_at        timestamptz NOT NULL,
  lease_owner   text,                 -- the claim's token: "<process instance>/<random>"
  lease_until   timestamptz,
  awaits_version bigint     NOT NULL DEFAULT 0,  -- a runner reported up to here; wait for it
  title         text,                 -- reports: what the runner needs
  source_url    text,
  content_type  text,
  step_at       timestamptz,          -- when the event that set the step happened
  PRIMARY KEY (kind, id)
);
CREATE INDEX worker_jobs_due ON worker_jobs (due_at) WHERE step <> 'done';
CREATE INDEX worker_jobs_leased ON worker_jobs (lease_owner) WHERE lease_owner IS NOT NULL;

-- Dead letters of jobs that failed for good, written with the schedule's rows and published to
-- cauce.jobs.dlq from here (an outbox: a broker that refuses them holds up nothing else).
CREATE TABLE worker_dead_letters (
  id           bigserial   PRIMARY KEY,
  event_id     uuid        NOT NULL UNIQUE,  -- the job's failed event
  key          text        NOT NULL,
  value        text        NOT NULL,
  published_at timestamptz
);
CREATE INDEX worker_dead_letters_pending ON worker_dead_letters (id) WHERE published_at IS NULL;

-- The schedule's slots a backup was requested for (two schedulers never take one twice) are
-- the backup ids themselves: derived from the slot, so the second request is a duplicate.
