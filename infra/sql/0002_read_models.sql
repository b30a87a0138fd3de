-- Read models (DESIGN §4): plain tables folded from cauce.events by the projector. They are
-- disposable: dropping them and replaying the log gives the same rows. Every row carries the
-- version of the last event applied to it; an event at or below it is a no-op.

CREATE EXTENSION IF NOT EXISTS pg_trgm;  -- trusted: the database owner may create it

-- How far each projection has applied each partition of the event topic, committed in the same
-- transaction as the rows it produced (exactly once).
CREATE TABLE projection_checkpoints (
  projection  text        NOT NULL,
  topic       text        NOT NULL,
  partition   integer     NOT NULL,
  next_offset bigint      NOT NULL,  -- the first offset not applied yet
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (projection, topic, partition)
);
COMMENT ON TABLE projection_checkpoints IS
  'Per projection and partition of the event topic: the next offset to apply.';

-- Every event envelope, with where it sits in the log: history queries never scan Kafka.
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
COMMENT ON TABLE events IS 'The event log as projected (upcast to the current schema versions).';

CREATE TABLE contacts (
  id           uuid        PRIMARY KEY,
  name         text        NOT NULL,
  phone        text        NOT NULL,  -- E.164
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
                 (lower(name || ' ' || phone || ' ' || coalesce(email, ''))) STORED
);
CREATE INDEX contacts_by_status ON contacts (status, id);
CREATE INDEX contacts_by_assignee ON contacts (assigned_to, id);
CREATE INDEX contacts_by_tag ON contacts USING gin (tags);
CREATE INDEX contacts_search ON contacts USING gin (search gin_trgm_ops);
COMMENT ON COLUMN contacts.search IS 'name, phone and email, lower case, for ?q= (trigram index)';

CREATE TABLE calls (
  call_id     uuid        PRIMARY KEY,
  contact_id  uuid        NOT NULL,
  outcome     text        NOT NULL,
  duration_s  integer     NOT NULL,
  notes       text,
  operator    text,
  occurred_at timestamptz NOT NULL,
  version     bigint      NOT NULL  -- the contact's version after this call
);
CREATE INDEX calls_by_contact ON calls (contact_id, occurred_at DESC, call_id);

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
  version     bigint      NOT NULL
);
CREATE INDEX alerts_by_state ON alerts (state, id);
CREATE INDEX alerts_by_level ON alerts (level, id);

-- What happened to each alert, one row per event.
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
  id           uuid        PRIMARY KEY,
  title        text        NOT NULL,
  source_url   text        NOT NULL,
  status       text        NOT NULL,  -- requested, downloading, downloaded, rendering, ready, failed
  attempts     integer     NOT NULL DEFAULT 0,
  errors       jsonb       NOT NULL DEFAULT '[]',
  requested_at timestamptz NOT NULL,
  updated_at   timestamptz NOT NULL,
  version      bigint      NOT NULL
);

CREATE TABLE backups (
  id           uuid        PRIMARY KEY,
  status       text        NOT NULL,  -- requested, running, completed, failed
  size_bytes   bigint,
  sha256       text,
  positions    jsonb,                 -- the log offsets the backup covers, per partition
  requested_at timestamptz NOT NULL,
  created_at   timestamptz,
  updated_at   timestamptz NOT NULL,
  version      bigint      NOT NULL
);

-- Change notifications for live clients, written in the projection transaction; their ids are
-- the SSE ids (Last-Event-ID resumes from here). Old rows are deleted after a retention period.
CREATE TABLE notifications (
  id           bigserial   PRIMARY KEY,
  topic        text        NOT NULL,  -- contacts, alerts, reports, backups
  type         text        NOT NULL,  -- the event type
  aggregate_id uuid        NOT NULL,
  version      bigint      NOT NULL,
  position     text        NOT NULL,  -- the event's position token
  created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notifications_by_time ON notifications (created_at);
