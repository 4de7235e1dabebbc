-- Users, sessions and refresh tokens: the truth that the Redis cache mirrors.
-- Every time that orders a revocation against a session comes from this database's
-- clock (clock_timestamp()), never from an instance's clock: see docs/revocation.md.

CREATE TABLE users (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  username      text NOT NULL CHECK (username ~ '^[A-Za-z0-9_.-]{3,32}$'),
  password_hash text NOT NULL,
  role          text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
  disabled      boolean NOT NULL DEFAULT false,
  -- Every session created at or before this instant is dead (role change, disable,
  -- password change, logout-all).
  revoked_after timestamptz NOT NULL DEFAULT 'epoch',
  created_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- Unique without regard to case; stored as registered.
CREATE UNIQUE INDEX users_username_lower_key ON users (lower(username));
CREATE INDEX users_created_at_id_idx ON users (created_at, id);

CREATE TABLE sessions (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
  last_used_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  expires_at   timestamptz NOT NULL,
  revoked_at   timestamptz,
  user_agent   text,
  ip           text
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);

-- Refresh tokens are stored only as SHA-256 hashes. A used token keeps its row (used_at
-- set) so that presenting it again is recognised as theft and ends the session.
CREATE TABLE refresh_tokens (
  token_hash bytea PRIMARY KEY,
  session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  expires_at timestamptz NOT NULL,
  used_at    timestamptz
);
CREATE INDEX refresh_tokens_session_id_idx ON refresh_tokens (session_id);

CREATE TABLE audit_events (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at         timestamptz NOT NULL DEFAULT clock_timestamp(),
  type       text NOT NULL,
  actor_id   uuid,
  subject_id uuid,
  ip         text,
  detail     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_actor_idx ON audit_events (actor_id, id);
CREATE INDEX audit_events_subject_idx ON audit_events (subject_id, id);
