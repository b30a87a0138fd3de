-- Backups kept off the box (issue 18): a completed backup's copy into backups.copy_to, a step of
-- its own after the backup (workers/README.md "Copies off the box"). Its events fold into the
-- backup's row:
--
--   copy_status          NULL: no copy configured when the backup completed; pending (an attempt
--                        is due), copied, failed (given up after workers.max_attempts and
--                        dead-lettered; the backup itself stays completed)
--   copy_to              the destination directory the completion named
--   copy_directory       the copy (<copy_to>/<id>) once copied
--   copy_sha256          its manifest's sha256, read back from the destination
--   copy_bytes           its files' size
--   copy_attempts        copy attempts recorded
--   copy_error           the last failed attempt's error
--   copy_next_attempt_at when the next attempt is due
--   copied_at            when the copy was recorded (cauce_backup_last_success_timestamp_seconds)
--
-- Every read-model generation gets the columns (the live one and any a replay is building), and
-- public's views are made again: a view's SELECT * was expanded when it was created.
DO $$
DECLARE
  generation text;
BEGIN
  -- No switch while the generations are altered (a switch locks this row first too).
  PERFORM 1 FROM read_model_live FOR UPDATE;
  FOR generation IN
    SELECT n.nspname FROM pg_namespace n
    WHERE n.nspname LIKE 'read\_model\_%' AND to_regclass(quote_ident(n.nspname) || '.backups') IS NOT NULL
  LOOP
    EXECUTE format('LOCK TABLE %I.backups IN ACCESS EXCLUSIVE MODE', generation);
    EXECUTE format('ALTER TABLE %I.backups '
                   'ADD COLUMN copy_status text CHECK (copy_status IN (''pending'', ''copied'', ''failed'')), '
                   'ADD COLUMN copy_to text, ADD COLUMN copy_directory text, '
                   'ADD COLUMN copy_sha256 text, ADD COLUMN copy_bytes bigint, '
                   'ADD COLUMN copy_attempts integer NOT NULL DEFAULT 0, '
                   'ADD COLUMN copy_error text, ADD COLUMN copy_next_attempt_at timestamptz, '
                   'ADD COLUMN copied_at timestamptz', generation);
  END LOOP;
  PERFORM read_model_point_views((SELECT schema FROM read_model_live));
END $$;
