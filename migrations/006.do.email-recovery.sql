-- Account recovery (issue 16): an optional email per user, and single-use tokens for a
-- password reset and for proving an email address (docs/recovery.md).

-- Optional, unique without regard to case (the index), stored as given. It starts
-- unverified; only a verified one receives reset mail or signs in.
ALTER TABLE users ADD COLUMN email text CHECK (email IS NULL OR char_length(email) BETWEEN 3 AND 254);
ALTER TABLE users ADD COLUMN email_verified boolean NOT NULL DEFAULT false;
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));

-- When the password last changed (database clock): a reset token issued before it is dead.
-- Stamped by the trigger, so that every path that writes password_hash (change-password,
-- a reset, an admin's temporary password, a rehash at login) kills older reset tokens
-- without each having to remember to.
ALTER TABLE users ADD COLUMN password_changed_at timestamptz NOT NULL DEFAULT 'epoch';
CREATE FUNCTION users_stamp_password_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.password_changed_at := clock_timestamp();
  RETURN NEW;
END
$$;
CREATE TRIGGER users_password_changed
  BEFORE UPDATE OF password_hash ON users
  FOR EACH ROW WHEN (NEW.password_hash IS DISTINCT FROM OLD.password_hash)
  EXECUTE FUNCTION users_stamp_password_change();

-- Reset and verification tokens: 256 random bits, stored only as their SHA-256 (full
-- entropy: a fast hash makes a leaked table useless and keeps lookup an index probe).
-- A token is deleted when it is used, and a new one of the same purpose replaces the
-- user's older ones, so a user holds at most one of each; expired rows are purged.
CREATE TABLE recovery_tokens (
  token_hash bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
  user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  purpose    text NOT NULL CHECK (purpose IN ('password_reset', 'email_verify')),
  -- The address a verification token proves: it dies if the user's email changes.
  email      text,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  expires_at timestamptz NOT NULL
);
CREATE INDEX recovery_tokens_user_idx ON recovery_tokens (user_id, purpose);
CREATE INDEX recovery_tokens_expires_at_idx ON recovery_tokens (expires_at);
