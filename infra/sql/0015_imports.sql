-- Bulk imports (issue 16, part 4: POST /v1/imports). The import aggregate's events fold into
--
--   imports (id, status, format, actor, rows_total, accepted, rejected, duplicates, bytes,
--            failure, started_at, updated_at, finished_at, version)
--     one row per upload: running until it completed (every row accounted for) or failed (the
--     upload ended early; failure says why, the counts what was done before);
--   import_errors (import_id, row, field, message)
--     one row per rejected row of an import (its number in the file, the field at fault, why),
--     listed by GET /v1/imports/{id}/errors in row order.
--
-- Every read-model generation gets both tables (the live one and any a replay is building), the
-- generations' table list gains them, and public's views are made again. The list is extended,
-- not rewritten: other migrations may have added tables of their own to it.
DO $$
DECLARE
  generation text;
  tables text[] := read_model_tables();
BEGIN
  -- No switch while the generations are altered (a switch locks this row first too).
  PERFORM 1 FROM read_model_live FOR UPDATE;
  FOR generation IN
    SELECT n.nspname FROM pg_namespace n
    WHERE n.nspname LIKE 'read\_model\_%' AND to_regclass(quote_ident(n.nspname) || '.contacts') IS NOT NULL
  LOOP
    EXECUTE format($f$
      CREATE TABLE %1$I.imports (
        id          uuid        PRIMARY KEY,
        status      text        NOT NULL CHECK (status IN ('running', 'completed', 'failed')),
        format      text        NOT NULL,
        actor       text        NOT NULL,
        rows_total  bigint      NOT NULL DEFAULT 0,
        accepted    bigint      NOT NULL DEFAULT 0,
        rejected    bigint      NOT NULL DEFAULT 0,
        duplicates  bigint      NOT NULL DEFAULT 0,
        bytes       bigint      NOT NULL DEFAULT 0,
        failure     text,
        started_at  timestamptz NOT NULL,
        updated_at  timestamptz NOT NULL,
        finished_at timestamptz,
        version     bigint      NOT NULL);
      CREATE TABLE %1$I.import_errors (
        import_id uuid   NOT NULL,
        "row"     bigint NOT NULL,
        field     text   NOT NULL,
        message   text   NOT NULL,
        PRIMARY KEY (import_id, "row"));
    $f$, generation);
  END LOOP;
  IF NOT 'imports' = ANY (tables) THEN
    tables := tables || ARRAY['imports', 'import_errors'];
  END IF;
  EXECUTE format('CREATE OR REPLACE FUNCTION read_model_tables() RETURNS text[] '
                 'LANGUAGE sql IMMUTABLE PARALLEL SAFE AS %L',
                 format('SELECT %L::text[]', tables));
  PERFORM read_model_point_views((SELECT schema FROM read_model_live));
END $$;

COMMENT ON FUNCTION read_model_tables() IS
  'the tables of a read-model generation that public''s views expose';
