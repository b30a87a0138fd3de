-- Signed webhooks (issue 16, part 7; api/README.md "Webhooks", workers/README.md "Webhook
-- deliveries").
--
-- The read model `webhooks` (one row per webhook, folded from its events by the projector) lives
-- in each read-model generation like the others: read_model_add_webhooks(target) makes it there;
-- projections/sql/read_model.sql calls it for a new generation, and this migration for each
-- existing one. The secret and the delivery state are not read models (they are not folded from
-- the log) and live in public: webhook_secrets, webhook_feeds, webhook_deliveries.

CREATE FUNCTION read_model_add_webhooks(target text) RETURNS void
  LANGUAGE plpgsql AS $outer$
BEGIN
  EXECUTE format($$
    CREATE TABLE %1$I.webhooks (
      id                   uuid        PRIMARY KEY,
      url                  text        NOT NULL,
      topics               text[]      NOT NULL,
      filters              jsonb       NOT NULL DEFAULT '{}',  -- min_level, region, assigned_to
      status               text        NOT NULL,               -- active, disabled
      disabled_reason      text,                               -- while disabled
      consecutive_failures integer,                            -- what disabled it
      last_error           text,
      disabled_at          timestamptz,
      created_at           timestamptz NOT NULL,
      updated_at           timestamptz NOT NULL,
      version              bigint      NOT NULL);
  $$, target);
END $outer$;

-- The tables a generation's views expose: whatever the list holds now (another migration may
-- have added to it) and webhooks.
DO $$
BEGIN
  EXECUTE format(
    'CREATE OR REPLACE FUNCTION read_model_tables() RETURNS text[] '
    'LANGUAGE sql IMMUTABLE PARALLEL SAFE AS %L',
    'SELECT ' || quote_literal((SELECT read_model_tables() || ARRAY['webhooks'])) || '::text[]');
END $$;

DO $$
DECLARE
  generation text;
BEGIN
  -- No switch while the generations are altered (a switch locks this row first too).
  PERFORM 1 FROM read_model_live FOR UPDATE;
  FOR generation IN
    SELECT n.nspname FROM pg_namespace n
    WHERE n.nspname LIKE 'read\_model\_%' AND to_regclass(quote_ident(n.nspname) || '.alerts') IS NOT NULL
      AND to_regclass(quote_ident(n.nspname) || '.webhooks') IS NULL
  LOOP
    PERFORM read_model_add_webhooks(generation);
  END LOOP;
  PERFORM read_model_point_views((SELECT schema FROM read_model_live));
END $$;

-- Each webhook's signing secret, written by the API in the request that registers it, before
-- the command is sent: never in an event (the log is public to its consumers, kept forever and
-- copied into backups), shared by every process through PostgreSQL, and there after restarts.
-- start_after: the newest notification id when the webhook was registered; its deliveries are
-- the notifications after it.
CREATE TABLE webhook_secrets (
  webhook_id  uuid        PRIMARY KEY,
  secret      text        NOT NULL,
  start_after bigint      NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);

-- Where each webhook's delivery worker is in the notifications table, and its failures in a row.
CREATE TABLE webhook_feeds (
  webhook_id           uuid        PRIMARY KEY,
  cursor               bigint      NOT NULL,  -- the last notification id taken into deliveries
  consecutive_failures integer     NOT NULL DEFAULT 0,
  last_error           text,
  updated_at           timestamptz NOT NULL DEFAULT now()
);

-- One row per notification a webhook takes (GET /v1/webhooks/{id}/deliveries), with what its
-- attempts did. pending: not tried yet; retrying: an attempt failed, the next is due at
-- next_attempt_at; delivered; failed: given up (dead-lettered to cauce.jobs.dlq).
CREATE TABLE webhook_deliveries (
  id              bigserial   PRIMARY KEY,
  webhook_id      uuid        NOT NULL,
  notification_id bigint      NOT NULL,
  topic           text        NOT NULL,
  type            text        NOT NULL,
  aggregate_id    uuid        NOT NULL,
  version         bigint      NOT NULL,
  position        text        NOT NULL,
  status          text        NOT NULL CHECK (status IN ('pending', 'retrying', 'delivered', 'failed')),
  attempts        integer     NOT NULL DEFAULT 0,
  response_code   integer,                -- of the last attempt, when it got an answer
  error           text,                   -- of the last failed attempt
  created_at      timestamptz NOT NULL DEFAULT now(),
  last_attempt_at timestamptz,
  next_attempt_at timestamptz,
  delivered_at    timestamptz,
  UNIQUE (webhook_id, notification_id)
);
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, id);
CREATE INDEX webhook_deliveries_open ON webhook_deliveries (webhook_id, id)
  WHERE status IN ('pending', 'retrying');
CREATE INDEX webhook_deliveries_done ON webhook_deliveries (created_at)
  WHERE status IN ('delivered', 'failed');

COMMENT ON COLUMN worker_jobs.kind IS 'report, backup, alert (its deadline), webhook (its deliveries)';
