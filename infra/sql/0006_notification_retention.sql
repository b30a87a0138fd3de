-- The highest notification id the retention delete has removed. A client resuming after an id
-- at or below it (Last-Event-ID older than `projections.notifications_retention_h`) has missed
-- notifications that no longer exist: the API tells it so (SSE `event: reset`) instead of
-- silently resuming from the oldest row kept.
CREATE TABLE notification_retention (
  singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  pruned_through bigint  NOT NULL DEFAULT 0
);
INSERT INTO notification_retention DEFAULT VALUES;
