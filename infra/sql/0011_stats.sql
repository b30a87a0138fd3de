-- The live dashboard's figures (issue 16, GET /v1/stats): counters and buckets kept by
-- statement-level triggers on the read models, so they change in the projector's own
-- transaction (a batch's rows at once, through transition tables) and a query reads a few small
-- tables instead of scanning whole ones.
--
--   stats_open_alerts (level, region, count)   alerts not closed; region '' when none
--   stats_alert_hours (hour, raised, closed)   UTC hours
--   alert_acks (alert_id, acknowledged_at, seconds)   one row per acknowledged alert: the
--                                              median and p90 of the last 24 h read an index range
--   stats_calls_day (day, operator, outcome, count)   UTC days; operator '' when none
--   stats_contacts (status, count)
--   contacts_claimed: an index on claimed_until (contacts claimed now: a range of it)
--
-- alerts.acknowledged_at (new) is when the alert was acknowledged: a batch that raises and
-- acknowledges an alert inserts its row already acknowledged, so the time has to be on the row.
--
-- read_model_add_stats(target) makes all of it in generation `target` and fills it from the
-- tables there; projections/sql/read_model.sql calls it for a new generation, and this
-- migration for each existing one. Names are qualified in the trigger functions' bodies: they
-- act on their own generation whatever the writer's search_path.

CREATE FUNCTION read_model_add_stats(target text) RETURNS void
  LANGUAGE plpgsql AS $outer$
BEGIN
  EXECUTE format($$
    CREATE TABLE %1$I.stats_open_alerts (
      level  text   NOT NULL,
      region text   NOT NULL,
      count  bigint NOT NULL,
      PRIMARY KEY (level, region));
    CREATE TABLE %1$I.stats_alert_hours (
      hour   timestamptz PRIMARY KEY,
      raised bigint      NOT NULL DEFAULT 0,
      closed bigint      NOT NULL DEFAULT 0);
    CREATE TABLE %1$I.alert_acks (
      alert_id        uuid             PRIMARY KEY,
      acknowledged_at timestamptz      NOT NULL,
      seconds         double precision NOT NULL);
    CREATE INDEX alert_acks_by_time ON %1$I.alert_acks (acknowledged_at);
    CREATE TABLE %1$I.stats_calls_day (
      day      date   NOT NULL,
      operator text   NOT NULL,
      outcome  text   NOT NULL,
      count    bigint NOT NULL,
      PRIMARY KEY (day, operator, outcome));
    CREATE TABLE %1$I.stats_contacts (
      status text   PRIMARY KEY,
      count  bigint NOT NULL);
    CREATE INDEX contacts_claimed ON %1$I.contacts (claimed_until) WHERE claimed_until IS NOT NULL;

    CREATE FUNCTION %1$I.stats_alerts_inserted() RETURNS trigger LANGUAGE plpgsql AS $f$
    BEGIN
      INSERT INTO %1$I.stats_open_alerts AS s (level, region, count)
        SELECT level, coalesce(region, ''), count(*) FROM new_rows WHERE state <> 'closed'
        GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (level, region) DO UPDATE SET count = s.count + excluded.count;
      INSERT INTO %1$I.stats_alert_hours AS s (hour, raised, closed)
        SELECT hour, sum(raised), sum(closed) FROM (
          SELECT date_trunc('hour', raised_at, 'UTC') AS hour, 1 AS raised, 0 AS closed
          FROM new_rows
          UNION ALL
          SELECT date_trunc('hour', closed_at, 'UTC'), 0, 1 FROM new_rows
          WHERE closed_at IS NOT NULL) h
        GROUP BY hour ORDER BY hour
        ON CONFLICT (hour) DO UPDATE SET raised = s.raised + excluded.raised,
                                         closed = s.closed + excluded.closed;
      INSERT INTO %1$I.alert_acks (alert_id, acknowledged_at, seconds)
        SELECT id, acknowledged_at, greatest(0, extract(epoch FROM acknowledged_at - raised_at))
        FROM new_rows WHERE acknowledged_at IS NOT NULL
        ON CONFLICT (alert_id) DO NOTHING;
      RETURN NULL;
    END $f$;

    CREATE FUNCTION %1$I.stats_alerts_updated() RETURNS trigger LANGUAGE plpgsql AS $f$
    BEGIN
      INSERT INTO %1$I.stats_open_alerts AS s (level, region, count)
        SELECT level, region, sum(delta) FROM (
          SELECT level, coalesce(region, '') AS region, 1 AS delta FROM new_rows
          WHERE state <> 'closed'
          UNION ALL
          SELECT level, coalesce(region, ''), -1 FROM old_rows WHERE state <> 'closed') d
        GROUP BY level, region HAVING sum(delta) <> 0 ORDER BY level, region
        ON CONFLICT (level, region) DO UPDATE SET count = s.count + excluded.count;
      INSERT INTO %1$I.stats_alert_hours AS s (hour, closed)
        SELECT date_trunc('hour', n.closed_at, 'UTC'), count(*)
        FROM new_rows n JOIN old_rows o USING (id)
        WHERE o.closed_at IS NULL AND n.closed_at IS NOT NULL
        GROUP BY 1 ORDER BY 1
        ON CONFLICT (hour) DO UPDATE SET closed = s.closed + excluded.closed;
      INSERT INTO %1$I.alert_acks (alert_id, acknowledged_at, seconds)
        SELECT n.id, n.acknowledged_at, greatest(0, extract(epoch FROM n.acknowledged_at - n.raised_at))
        FROM new_rows n JOIN old_rows o USING (id)
        WHERE o.acknowledged_at IS NULL AND n.acknowledged_at IS NOT NULL
        ON CONFLICT (alert_id) DO NOTHING;
      RETURN NULL;
    END $f$;

    CREATE FUNCTION %1$I.stats_calls_inserted() RETURNS trigger LANGUAGE plpgsql AS $f$
    BEGIN
      INSERT INTO %1$I.stats_calls_day AS s (day, operator, outcome, count)
        SELECT (occurred_at AT TIME ZONE 'UTC')::date, coalesce(operator, ''), outcome, count(*)
        FROM new_rows GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (day, operator, outcome) DO UPDATE SET count = s.count + excluded.count;
      RETURN NULL;
    END $f$;

    CREATE FUNCTION %1$I.stats_contacts_changed() RETURNS trigger LANGUAGE plpgsql AS $f$
    BEGIN
      IF TG_OP = 'INSERT' THEN
        INSERT INTO %1$I.stats_contacts AS s (status, count)
          SELECT status, count(*) FROM new_rows GROUP BY status ORDER BY status
          ON CONFLICT (status) DO UPDATE SET count = s.count + excluded.count;
      ELSE
        INSERT INTO %1$I.stats_contacts AS s (status, count)
          SELECT status, sum(delta) FROM (
            SELECT status, 1 AS delta FROM new_rows
            UNION ALL
            SELECT status, -1 FROM old_rows) d
          GROUP BY status HAVING sum(delta) <> 0 ORDER BY status
          ON CONFLICT (status) DO UPDATE SET count = s.count + excluded.count;
      END IF;
      RETURN NULL;
    END $f$;

    CREATE TRIGGER stats_alerts_inserted AFTER INSERT ON %1$I.alerts
      REFERENCING NEW TABLE AS new_rows
      FOR EACH STATEMENT EXECUTE FUNCTION %1$I.stats_alerts_inserted();
    CREATE TRIGGER stats_alerts_updated AFTER UPDATE ON %1$I.alerts
      REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
      FOR EACH STATEMENT EXECUTE FUNCTION %1$I.stats_alerts_updated();
    CREATE TRIGGER stats_calls_inserted AFTER INSERT ON %1$I.calls
      REFERENCING NEW TABLE AS new_rows
      FOR EACH STATEMENT EXECUTE FUNCTION %1$I.stats_calls_inserted();
    CREATE TRIGGER stats_contacts_inserted AFTER INSERT ON %1$I.contacts
      REFERENCING NEW TABLE AS new_rows
      FOR EACH STATEMENT EXECUTE FUNCTION %1$I.stats_contacts_changed();
    CREATE TRIGGER stats_contacts_updated AFTER UPDATE ON %1$I.contacts
      REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
      FOR EACH STATEMENT EXECUTE FUNCTION %1$I.stats_contacts_changed();

    -- What the tables hold already (a migrated generation; nothing in a new one).
    INSERT INTO %1$I.stats_open_alerts (level, region, count)
      SELECT level, coalesce(region, ''), count(*) FROM %1$I.alerts WHERE state <> 'closed'
      GROUP BY 1, 2;
    INSERT INTO %1$I.stats_alert_hours (hour, raised, closed)
      SELECT hour, sum(raised), sum(closed) FROM (
        SELECT date_trunc('hour', raised_at, 'UTC') AS hour, 1 AS raised, 0 AS closed
        FROM %1$I.alerts
        UNION ALL
        SELECT date_trunc('hour', closed_at, 'UTC'), 0, 1 FROM %1$I.alerts
        WHERE closed_at IS NOT NULL) h
      GROUP BY hour;
    INSERT INTO %1$I.alert_acks (alert_id, acknowledged_at, seconds)
      SELECT id, acknowledged_at, greatest(0, extract(epoch FROM acknowledged_at - raised_at))
      FROM %1$I.alerts WHERE acknowledged_at IS NOT NULL;
    INSERT INTO %1$I.stats_calls_day (day, operator, outcome, count)
      SELECT (occurred_at AT TIME ZONE 'UTC')::date, coalesce(operator, ''), outcome, count(*)
      FROM %1$I.calls GROUP BY 1, 2, 3;
    INSERT INTO %1$I.stats_contacts (status, count)
      SELECT status, count(*) FROM %1$I.contacts GROUP BY status;
  $$, target);
END $outer$;

-- The tables a generation's views expose (0008's list and the new ones).
CREATE OR REPLACE FUNCTION read_model_tables() RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT ARRAY['projection_checkpoints', 'events', 'contacts', 'calls', 'alerts',
                     'alert_timeline', 'reports', 'backups', 'parked_events',
                     'stats_open_alerts', 'stats_alert_hours', 'alert_acks', 'stats_calls_day',
                     'stats_contacts'] $$;

DO $$
DECLARE
  generation text;
BEGIN
  -- No switch while the generations are altered (a switch locks this row first too).
  PERFORM 1 FROM read_model_live FOR UPDATE;
  FOR generation IN
    SELECT n.nspname FROM pg_namespace n
    WHERE n.nspname LIKE 'read\_model\_%' AND to_regclass(quote_ident(n.nspname) || '.alerts') IS NOT NULL
  LOOP
    -- In the order a projector batch writes them (calls, contacts, alerts): a projector
    -- running meanwhile waits instead of deadlocking with this.
    EXECUTE format('LOCK TABLE %1$I.calls, %1$I.contacts, %1$I.alerts IN ACCESS EXCLUSIVE MODE',
                   generation);
    EXECUTE format('ALTER TABLE %I.alerts ADD COLUMN acknowledged_at timestamptz', generation);
    -- Archiving ends a claim since this version; what was archived while claimed before, too.
    EXECUTE format('UPDATE %I.contacts SET claimed_by = NULL, claimed_until = NULL
                    WHERE status = ''archived'' AND claimed_by IS NOT NULL', generation);
    -- When each was acknowledged, from its timeline.
    EXECUTE format('UPDATE %1$I.alerts a SET acknowledged_at = t.occurred_at
                    FROM %1$I.alert_timeline t
                    WHERE t.alert_id = a.id AND t.type = ''alert.acknowledged''', generation);
    PERFORM read_model_add_stats(generation);
  END LOOP;
  PERFORM read_model_point_views((SELECT schema FROM read_model_live));
END $$;
