-- notifications only ever grow at the end (ids and created_at both increase), so a BRIN index
-- serves the retention delete (created_at < cutoff) at a fraction of a B-tree's cost per insert:
-- the projector writes one notification per event (bench/projection).
DROP INDEX notifications_by_time;
CREATE INDEX notifications_by_time ON notifications USING brin (created_at);
