-- Registered clients: other services that authenticate to this one with HTTP Basic
-- (client_id:client_secret, RFC 6749 §2.3.1), e.g. to introspect tokens.
-- The secret is stored only as its SHA-256: it is 256 random bits, so the hash cannot be
-- reversed by guessing, and checking it costs no slow password hash on every request
-- (argon2 protects low-entropy secrets such as passwords; these have full entropy).
CREATE TABLE clients (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  client_id   text NOT NULL UNIQUE CHECK (client_id ~ '^[A-Za-z0-9_-]{22}$'),
  name        text NOT NULL CHECK (char_length(name) BETWEEN 3 AND 64),
  secret_hash bytea NOT NULL CHECK (octet_length(secret_hash) = 32),
  created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- Unique without regard to case; stored as registered.
CREATE UNIQUE INDEX clients_name_lower_key ON clients (lower(name));
CREATE INDEX clients_created_at_id_idx ON clients (created_at, id);
