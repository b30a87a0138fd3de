-- API keys (shared/API.md §Auth). Only a salted SHA-256 of each key's secret is stored; the
-- key itself is shown once, when it is created.
CREATE TABLE api_keys (
  id          text PRIMARY KEY,          -- the public part of the key: ck_<id>_<secret>
  name        text NOT NULL,             -- who holds it; becomes the `actor` of their commands
  role        text NOT NULL CHECK (role IN ('reader', 'operator', 'admin')),
  salt        text NOT NULL,             -- 16 random bytes, hex
  secret_hash text NOT NULL,             -- hex sha256(salt || secret)
  created_at  timestamptz NOT NULL DEFAULT now(),
  revoked_at  timestamptz                -- a revoked key is refused from then on
);

COMMENT ON TABLE api_keys IS 'API keys: salted SHA-256 of the secret, never the key itself';

CREATE INDEX api_keys_active ON api_keys (role) WHERE revoked_at IS NULL;
