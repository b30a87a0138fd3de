-- The secondary indexes of a read-model generation (read_model.sql has its tables, keys and
-- unique indexes, which the projector relies on). A replay creates these once its generation
-- has caught up, before the switch: maintaining them row by row while bulk-loading the whole
-- log costs more than building them once (bench/README.md, replay). Idempotent: a resumed
-- replay runs them again.

CREATE INDEX IF NOT EXISTS contacts_by_status ON contacts (status, id);
CREATE INDEX IF NOT EXISTS contacts_by_assignee ON contacts (assigned_to, id);
CREATE INDEX IF NOT EXISTS contacts_by_tag ON contacts USING gin (tags);
CREATE INDEX IF NOT EXISTS contacts_search ON contacts USING gin (search gin_trgm_ops);
CREATE INDEX IF NOT EXISTS calls_by_contact ON calls (contact_id, occurred_at DESC, call_id);
CREATE INDEX IF NOT EXISTS alerts_by_state ON alerts (state, id);
CREATE INDEX IF NOT EXISTS alerts_by_level ON alerts (level, id);
CREATE INDEX IF NOT EXISTS reports_by_time ON reports (requested_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS reports_by_schedule ON reports (schedule_id, requested_at DESC, id DESC)
  WHERE schedule_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS parked_events_open ON parked_events (projection, topic, aggregate_id)
  WHERE resolved_at IS NULL;
