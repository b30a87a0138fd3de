-- Helpers the read-model queries share.

-- RFC 3339 UTC with microseconds, the one time format of the API and the event envelope:
-- 2026-11-24T07:41:22.123456Z. NULL stays NULL.
CREATE FUNCTION rfc3339(t timestamptz) RETURNS text
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  AS $$ SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') $$;
COMMENT ON FUNCTION rfc3339(timestamptz) IS 'RFC 3339 UTC text with microseconds';
