-- One generation of the read models, as the projection code of this build writes them: run by
-- `cauce replay` inside a fresh schema (search_path = that schema, public). Column meanings are
-- commented where the tables were first created (infra/sql/0002, 0005, 0007, 0009, 0011, 0015, 0016); a
-- generation built here has exactly the shape the migrations give read_model_1 (a test compares
-- columns, constraints, indexes, triggers and functions). A change to how events are folded is
-- made here and lands by a replay; an additive one (a column, a counter table) is made here and
-- in a migration too, which adds it to the existing generations in place (0009, 0011).

CREATE TABLE projection_checkpoints (
  projection  text        NOT NULL,
  topic       text        NOT NULL,
  partition   integer     NOT NULL,
  next_offset bigint      NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now(),
  retired     boolean     NOT NULL DEFAULT false,
  PRIMARY KEY (projection, topic, partition)
);

CREATE TABLE events (
  partition      integer     NOT NULL,
  "offset"       bigint      NOT NULL,
  event_id       uuid        NOT NULL UNIQUE,
  type           text        NOT NULL,
  schema_version integer     NOT NULL,
  aggregate_type text        NOT NULL,
  aggregate_id   uuid        NOT NULL,
  version        bigint      NOT NULL,
  occurred_at    timestamptz NOT NULL,
  command_id     uuid        NOT NULL,
  correlation_id text        NOT NULL,
  causation_id   uuid        NOT NULL,
  actor          text        NOT NULL,
  data           jsonb       NOT NULL,
  PRIMARY KEY (partition, "offset")
);
CREATE UNIQUE INDEX events_by_aggregate ON events (aggregate_type, aggregate_id, version);

CREATE TABLE contacts (
  id           uuid        PRIMARY KEY,
  name         text        NOT NULL,
  phone        text        NOT NULL,
  email        text,
  tags         text[]      NOT NULL DEFAULT '{}',
  notes        text,
  status       text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'archived')),
  assigned_to  text,
  calls_count  integer     NOT NULL DEFAULT 0,
  last_call_at timestamptz,
  created_at   timestamptz NOT NULL,
  updated_at   timestamptz NOT NULL,
  version      bigint      NOT NULL,
  search       text GENERATED ALWAYS AS
                 (lower(name || ' ' || phone || ' ' || coalesce(email, ''))) STORED,
  -- The last claim (infra/sql/0009_contact_claims.sql): live while claimed_until is ahead.
  claimed_by    text,
  claimed_until timestamptz
);

CREATE TABLE calls (
  call_id     uuid        PRIMARY KEY,
  contact_id  uuid        NOT NULL,
  outcome     text        NOT NULL,
  duration_s  integer     NOT NULL,
  notes       text,
  operator    text,
  occurred_at timestamptz NOT NULL,
  version     bigint      NOT NULL
);

CREATE TABLE alerts (
  id          uuid        PRIMARY KEY,
  level       text        NOT NULL CHECK (level IN ('info', 'warning', 'critical')),
  title       text        NOT NULL,
  region      text,
  source      text,
  details     text,
  state       text        NOT NULL CHECK (state IN ('open', 'acknowledged', 'closed')),
  resolution  text,
  raised_at   timestamptz NOT NULL,
  updated_at  timestamptz NOT NULL,
  closed_at   timestamptz,
  version     bigint      NOT NULL,
  acknowledged_at timestamptz  -- infra/sql/0011_stats.sql
);

CREATE TABLE alert_timeline (
  alert_id    uuid        NOT NULL,
  version     bigint      NOT NULL,
  type        text        NOT NULL,
  occurred_at timestamptz NOT NULL,
  actor       text        NOT NULL,
  data        jsonb       NOT NULL,
  PRIMARY KEY (alert_id, version)
);

CREATE TABLE reports (
  id              uuid        PRIMARY KEY,
  title           text        NOT NULL,
  source_url      text        NOT NULL,
  status          text        NOT NULL,
  attempts        integer     NOT NULL DEFAULT 0,
  errors          jsonb       NOT NULL DEFAULT '[]',
  requested_at    timestamptz NOT NULL,
  updated_at      timestamptz NOT NULL,
  version         bigint      NOT NULL,
  round           integer     NOT NULL DEFAULT 0,
  next_attempt_at timestamptz,
  content_type    text,
  source_bytes    bigint,
  source_sha256   text,
  pages           integer,
  pdf_bytes       bigint,
  pdf_sha256      text,
  failure         text,
  -- Scheduled reports (infra/sql/0013_report_schedules.sql).
  schedule_id     uuid,
  slot_at         timestamptz,
  source_auth     text
);

CREATE TABLE report_schedules (
  id             uuid        PRIMARY KEY,
  title          text        NOT NULL,
  source_url     text        NOT NULL,
  every          text,
  cron           text,
  timezone       text        NOT NULL,
  source_auth    text,
  status         text        NOT NULL CHECK (status IN ('active', 'paused', 'deleted')),
  slots_from     timestamptz NOT NULL,
  last_slot_at   timestamptz,
  last_report_id uuid,
  created_at     timestamptz NOT NULL,
  updated_at     timestamptz NOT NULL,
  version        bigint      NOT NULL
);

CREATE TABLE backups (
  id              uuid        PRIMARY KEY,
  status          text        NOT NULL,
  size_bytes      bigint,
  sha256          text,
  positions       jsonb,
  requested_at    timestamptz NOT NULL,
  created_at      timestamptz,
  updated_at      timestamptz NOT NULL,
  version         bigint      NOT NULL,
  round           integer     NOT NULL DEFAULT 0,
  attempts        integer     NOT NULL DEFAULT 0,
  errors          jsonb       NOT NULL DEFAULT '[]',
  next_attempt_at timestamptz,
  events          bigint,
  failure         text,
  copy_status     text CHECK (copy_status IN ('pending', 'copied', 'failed')),
  copy_to         text,
  copy_directory  text,
  copy_sha256     text,
  copy_bytes      bigint,
  copy_attempts   integer     NOT NULL DEFAULT 0,
  copy_error      text,
  copy_next_attempt_at timestamptz,
  copied_at       timestamptz
);

CREATE TABLE parked_events (
  id              bigserial   PRIMARY KEY,
  projection      text        NOT NULL,
  topic           text        NOT NULL,
  partition       integer     NOT NULL,
  "offset"        bigint      NOT NULL,
  event_id        uuid,
  type            text,
  aggregate_type  text,
  aggregate_id    uuid,
  record          bytea       NOT NULL,
  error           text        NOT NULL,
  sqlstate        text,
  attempts        integer     NOT NULL DEFAULT 1,
  parked_at       timestamptz NOT NULL DEFAULT now(),
  last_attempt_at timestamptz NOT NULL DEFAULT now(),
  resolution      text        CHECK (resolution IN ('retried', 'skipped')),
  resolved_at     timestamptz,
  resolved_by     text,
  UNIQUE (projection, topic, partition, "offset")
);

-- Bulk imports (infra/sql/0015_imports.sql): one row per POST /v1/imports, and its rejected rows.
CREATE TABLE imports (
  id          uuid        PRIMARY KEY,
  status      text        NOT NULL CHECK (status IN ('running', 'completed', 'failed')),
  format      text        NOT NULL,
  actor       text        NOT NULL,
  rows_total  bigint      NOT NULL DEFAULT 0,
  accepted    bigint      NOT NULL DEFAULT 0,
  rejected    bigint      NOT NULL DEFAULT 0,
  duplicates  bigint      NOT NULL DEFAULT 0,
  bytes       bigint      NOT NULL DEFAULT 0,
  failure     text,
  started_at  timestamptz NOT NULL,
  updated_at  timestamptz NOT NULL,
  finished_at timestamptz,
  version     bigint      NOT NULL
);

CREATE TABLE import_errors (
  import_id uuid   NOT NULL,
  "row"     bigint NOT NULL,
  field     text   NOT NULL,
  message   text   NOT NULL,
  PRIMARY KEY (import_id, "row")
);

-- The dashboard's counters and the triggers that keep them (infra/sql/0011_stats.sql), in this
-- generation.
SELECT read_model_add_stats(current_schema());

-- Webhooks (infra/sql/0014_webhooks.sql), in this generation.
SELECT read_model_add_webhooks(current_schema());
