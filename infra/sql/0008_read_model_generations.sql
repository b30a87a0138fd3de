-- Blue/green read models (DESIGN §4, issue 14): the read-model tables move into a schema of
-- their own, one per generation ("read_model_1", "read_model_2", ...). `cauce replay` builds a
-- new generation from the log while the live one serves, then switches in one transaction by
-- pointing the views below at it. Queries, the workers and operators' tools read the views
-- (`contacts` is `public.contacts`, a view of the live generation's table); the projector
-- writes a generation's tables directly (its connection's search_path starts with the schema).
-- A fresh generation's tables come from projections/sql/read_model.sql (the current shape;
-- a test keeps it equal to what migrations 0002-0008 leave behind).

-- A switch marks the old generation's checkpoints retired, in the transaction that moves the
-- views: a projector still writing there sees it when it next locks them, and moves over.
ALTER TABLE projection_checkpoints ADD COLUMN retired boolean NOT NULL DEFAULT false;

CREATE SCHEMA read_model_1;
ALTER TABLE projection_checkpoints SET SCHEMA read_model_1;
ALTER TABLE events SET SCHEMA read_model_1;
ALTER TABLE contacts SET SCHEMA read_model_1;
ALTER TABLE calls SET SCHEMA read_model_1;
ALTER TABLE alerts SET SCHEMA read_model_1;
ALTER TABLE alert_timeline SET SCHEMA read_model_1;
ALTER TABLE reports SET SCHEMA read_model_1;
ALTER TABLE backups SET SCHEMA read_model_1;
ALTER TABLE parked_events SET SCHEMA read_model_1;

-- Which generation serves. One row; changed only by read_model_switch().
CREATE TABLE read_model_live (
  singleton   boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
  schema      text        NOT NULL,
  switched_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO read_model_live (schema) VALUES ('read_model_1');

CREATE SEQUENCE read_model_generations START 2;  -- the next generation's number

-- Per partition of the event topic, the first offset no notification has been written for.
-- Every generation's projector writes notifications only at or past it (and moves it), so the
-- notification stream stays gapless and without repeats while two generations project side by
-- side and across the switch.
CREATE TABLE notification_marks (
  topic       text    NOT NULL,
  partition   integer NOT NULL,
  next_offset bigint  NOT NULL,
  PRIMARY KEY (topic, partition)
);
INSERT INTO notification_marks (topic, partition, next_offset)
  SELECT topic, partition, max(next_offset)
  FROM read_model_1.projection_checkpoints GROUP BY topic, partition;

-- Replays (cauce replay, POST /v1/admin/replays): one row each, its progress written by the
-- process running it about once a second.
CREATE TABLE replays (
  id            uuid        PRIMARY KEY,
  projection    text        NOT NULL,
  schema        text        NOT NULL UNIQUE,       -- the generation it builds
  status        text        NOT NULL CHECK (status IN ('building', 'switched', 'failed', 'abandoned')),
  requested_by  text        NOT NULL,
  start_offsets jsonb       NOT NULL,              -- {"partition": first offset replayed}
  applied       bigint      NOT NULL DEFAULT 0,    -- events applied so far
  remaining     bigint,                            -- records between its checkpoints and the ends
  progress      double precision NOT NULL DEFAULT 0,  -- 0..1, of the log to replay
  events_per_s  double precision,
  eta_s         double precision,
  error         text,
  old_schema    text,                              -- the generation it replaced
  drop_after    timestamptz,                       -- when the old generation is dropped
  dropped_at    timestamptz,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  switched_at   timestamptz
);
CREATE UNIQUE INDEX replays_one_building ON replays (projection) WHERE status = 'building';

-- The read-model tables of a generation, by name: what the views expose and a switch moves.
CREATE FUNCTION read_model_tables() RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT ARRAY['projection_checkpoints', 'events', 'contacts', 'calls', 'alerts',
                     'alert_timeline', 'reports', 'backups', 'parked_events'] $$;

-- (Re)creates public's views of generation `target`'s tables. Views of simple tables are
-- updatable and planned away: a query on `contacts` costs what one on the table costs.
CREATE FUNCTION read_model_point_views(target text) RETURNS void
  LANGUAGE plpgsql AS $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY read_model_tables() LOOP
    EXECUTE format('DROP VIEW IF EXISTS public.%I', t);
    EXECUTE format('CREATE VIEW public.%I AS SELECT * FROM %I.%I', t, target, t);
  END LOOP;
END $$;

SELECT read_model_point_views('read_model_1');
