-- Issue 16 part 6: who holds a key, and what of the live streams it may see.
--
-- api_keys.actor is the identity the key's commands record as `actor` (until now the key's
-- name was: existing keys keep it). topics / regions limit what the key may stream: NULL is
-- everything, an array the stream topics and the alert regions it may read.
ALTER TABLE api_keys
  ADD COLUMN actor   text,
  ADD COLUMN topics  text[],
  ADD COLUMN regions text[];
UPDATE api_keys SET actor = name;
ALTER TABLE api_keys ALTER COLUMN actor SET NOT NULL;

COMMENT ON COLUMN api_keys.actor IS 'the identity its commands record as actor';
COMMENT ON COLUMN api_keys.topics IS 'stream topics the key may read; NULL: all';
COMMENT ON COLUMN api_keys.regions IS 'alert regions the key may stream; NULL: all';

-- What server-side stream filters look at, stored with each notification by the projector in
-- the transaction that writes it (so a resume with Last-Event-ID sees the same filtered view):
-- an alert's level and region, and the actors a contact is assigned to or claimed by (plus the
-- one a reassignment or a release took it from).
ALTER TABLE notifications
  ADD COLUMN level  text,
  ADD COLUMN region text,
  ADD COLUMN people text[];

UPDATE notifications n SET level = a.level, region = a.region
FROM alerts a WHERE n.topic = 'alerts' AND a.id = n.aggregate_id;
UPDATE notifications n
SET people = array_remove(ARRAY[c.assigned_to, c.claimed_by], NULL)
FROM contacts c WHERE n.topic = 'contacts' AND c.id = n.aggregate_id;
