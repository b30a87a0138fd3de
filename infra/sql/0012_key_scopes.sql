-- Issue 16 part 6: who holds a key, and what of the live streams it may see.
--
-- api_keys.actor is the identity the key's commands record as `actor`; NULL (every key made
-- before this migration, or by an older build still running during an upgrade) means its name,
-- as before. topics / regions limit what the key may stream: NULL is everything, an array the
-- stream topics and the alert regions it may read.
ALTER TABLE api_keys
  ADD COLUMN actor   text,
  ADD COLUMN topics  text[],
  ADD COLUMN regions text[];

COMMENT ON COLUMN api_keys.actor IS 'the identity its commands record as actor; NULL: the name';
COMMENT ON COLUMN api_keys.topics IS 'stream topics the key may read; NULL: all';
COMMENT ON COLUMN api_keys.regions IS 'alert regions the key may stream; NULL: all';

-- What server-side stream filters look at, stored with each notification by the projector in
-- the transaction that writes it (so a resume with Last-Event-ID sees the same filtered view):
-- an alert's level and region, and the actors a contact is assigned to or claimed by (plus the
-- one a reassignment or a release took it from). Rows written before have none: a filter
-- leaves them out (no backfill: today's state is not what those events saw, and rewriting the
-- append-only table would spoil its BRIN order; they age out with the retention).
ALTER TABLE notifications
  ADD COLUMN level  text,
  ADD COLUMN region text,
  ADD COLUMN people text[];
