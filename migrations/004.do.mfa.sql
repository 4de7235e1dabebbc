-- Second factors (issue 15): TOTP with recovery codes, the pending second step of a login,
-- and the authentication methods (RFC 8176 `amr`) each session was started with.
-- The why of each: README, "Second factors".

-- One TOTP secret per user, encrypted at rest with AES-256-GCM under MFA_ENCRYPTION_KEY
-- (lib/secret-box.ts: version, nonce, ciphertext and tag in one value; the user id is the
-- associated data, so a value copied onto another user's row does not decrypt).
-- confirmed_at NULL: enrolment started, not yet confirmed with a code (not a factor yet).
-- last_step: the time step of the last code accepted; a code of that step or an earlier
-- one is refused, so a code works once (RFC 6238 §5.2).
CREATE TABLE mfa_totp (
  user_id      uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
  secret       bytea NOT NULL,
  confirmed_at timestamptz,
  last_step    bigint,
  created_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Recovery codes: SHA-256 of each (80 random bits each, so a fast hash leaves nothing to
-- guess offline, as for refresh tokens). A code is deleted when used; regenerating deletes
-- the whole set. At most ten per user.
CREATE TABLE mfa_recovery_codes (
  user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  code_hash  bytea NOT NULL CHECK (octet_length(code_hash) = 32),
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (user_id, code_hash)
);

-- A login waiting for its second factor: the `mfa_token` (256 random bits, stored as its
-- SHA-256), short-lived and single use. It holds the SHA-256 of the password hash the login
-- checked (not the hash itself): the session is created only while that is still the
-- user's password, as for a plain login.
-- Wrong codes are counted per token; a token is deleted when used, after too many wrong
-- codes, and by the purge once expired.
CREATE TABLE mfa_challenges (
  token_hash    bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
  user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  password_digest bytea NOT NULL CHECK (octet_length(password_digest) = 32),
  amr           text[] NOT NULL,
  attempts      integer NOT NULL DEFAULT 0,
  created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
  expires_at    timestamptz NOT NULL
);
CREATE INDEX mfa_challenges_user_id_idx ON mfa_challenges (user_id, created_at);
CREATE INDEX mfa_challenges_expires_at_idx ON mfa_challenges (expires_at);

-- Whether the user has a second factor, kept by every change of one in its transaction
-- (MfaRepository.syncFlag, from the factor tables). A column of the user's row, so that a
-- login creating a password-only session re-checks it after waiting for the row lock of an
-- enrolment in flight (PostgreSQL re-evaluates a locked row's own columns, not a subquery):
-- no password-only session starts after an enrolment committed.
ALTER TABLE users ADD COLUMN mfa boolean NOT NULL DEFAULT false;

-- How the session's login was authenticated (RFC 8176): its access tokens carry it as
-- `amr`, refreshed ones included. Sessions from before this migration were password logins.
ALTER TABLE sessions ADD COLUMN amr text[] NOT NULL DEFAULT '{pwd}';
