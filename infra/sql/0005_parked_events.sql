-- Events a projection could not apply (a data failure: a value PostgreSQL refuses, a record
-- that is not a cauce event, a schema_version without an upcaster). Each is parked here once,
-- the checkpoint moves past it and the projection goes on; later events of the same aggregate
-- are held back here too (applying them without their predecessor would fold a wrong row),
-- until an operator retries (`cauce parked retry ID`: the stored record is applied through
-- the code of the day) or skips them.
CREATE TABLE parked_events (
  id              bigserial   PRIMARY KEY,
  projection      text        NOT NULL,
  topic           text        NOT NULL,
  partition       integer     NOT NULL,
  "offset"        bigint      NOT NULL,
  event_id        uuid,                  -- NULL: the record did not decode into an event
  type            text,
  aggregate_type  text,
  aggregate_id    uuid,
  record          bytea       NOT NULL,  -- the value retried: as read, or the event upcast
  error           text        NOT NULL,  -- why it was parked (the last attempt's error)
  sqlstate        text,                  -- PostgreSQL's code when PostgreSQL refused it
  attempts        integer     NOT NULL DEFAULT 1,
  parked_at       timestamptz NOT NULL DEFAULT now(),
  last_attempt_at timestamptz NOT NULL DEFAULT now(),
  resolution      text        CHECK (resolution IN ('retried', 'skipped')),
  resolved_at     timestamptz,
  resolved_by     text,
  UNIQUE (projection, topic, partition, "offset")
);
-- What the projector asks on every batch while anything is parked, and what operators list.
CREATE INDEX parked_events_open ON parked_events (projection, topic, aggregate_id)
  WHERE resolved_at IS NULL;
