-- Contact claims (issue 16): who holds a contact while calling it, and until when. A claim
-- lapses by itself once claimed_until has passed; queries compare with now().
--
-- Every read-model generation gets the columns (the live one and any a replay is building), and
-- public's views are made again: a view's SELECT * was expanded when it was created.
DO $$
DECLARE
  generation text;
BEGIN
  FOR generation IN
    SELECT n.nspname FROM pg_namespace n
    WHERE n.nspname LIKE 'read\_model\_%' AND to_regclass(quote_ident(n.nspname) || '.contacts') IS NOT NULL
  LOOP
    EXECUTE format('ALTER TABLE %I.contacts ADD COLUMN claimed_by text, '
                   'ADD COLUMN claimed_until timestamptz', generation);
  END LOOP;
  PERFORM read_model_point_views((SELECT schema FROM read_model_live));
END $$;
