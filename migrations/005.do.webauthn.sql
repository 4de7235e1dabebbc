-- Passkeys (WebAuthn Level 3, issue 15): the credentials users register, the challenges of
-- ceremonies in progress, and which credential started a session (docs/passkeys.md).

-- One row per registered credential. public_key is the COSE key the authenticator gave at
-- registration; counter the last signature counter seen (0: the authenticator keeps none,
-- as synced passkeys do). backup_eligible is the BE flag of the registration's
-- authenticator data, signed by the authenticator: a key that may be synced to other
-- devices is software-protected (amr "swk"), one bound to its device is "hwk".
-- At most a few per user (WebAuthnService's cap); they go with their user.
CREATE TABLE webauthn_credentials (
  id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  credential_id   bytea NOT NULL UNIQUE CHECK (octet_length(credential_id) BETWEEN 1 AND 1023),
  public_key      bytea NOT NULL,
  counter         bigint NOT NULL DEFAULT 0 CHECK (counter >= 0),
  transports      text[] NOT NULL DEFAULT '{}',
  backup_eligible boolean NOT NULL,
  name            text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 64),
  created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
  last_used_at    timestamptz
);
CREATE INDEX webauthn_credentials_user_idx ON webauthn_credentials (user_id, created_at);

-- A ceremony's challenge: 32 random bytes, deleted by the verify that presents it (single
-- use, even when the verification then fails) and useless after expires_at. Expired rows
-- are purged in batches on this index. purpose says what the ceremony may do:
-- 'register' (user_id, and session_id the caller's session, checked live at commit),
-- 'login' (anyone: a discoverable credential names its user) or 'mfa' (the second step of
-- a password login: mfa_token_hash names it).
CREATE TABLE webauthn_challenges (
  challenge      bytea PRIMARY KEY CHECK (octet_length(challenge) = 32),
  purpose        text NOT NULL CHECK (purpose IN ('register', 'login', 'mfa')),
  user_id        uuid REFERENCES users (id) ON DELETE CASCADE,
  session_id     uuid,
  mfa_token_hash bytea,
  name           text CHECK (char_length(name) BETWEEN 1 AND 64),
  expires_at     timestamptz NOT NULL
);
CREATE INDEX webauthn_challenges_expires_idx ON webauthn_challenges (expires_at);

-- The credential a session was signed in with (passwordless, or as the second factor):
-- deleting the credential ends these sessions. The row then keeps its revoked session
-- until the purge, with the reference cleared.
ALTER TABLE sessions ADD COLUMN credential_id uuid REFERENCES webauthn_credentials (id) ON DELETE SET NULL;
CREATE INDEX sessions_credential_idx ON sessions (credential_id) WHERE credential_id IS NOT NULL;
