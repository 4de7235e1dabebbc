-- Sessions that end for good and data that stops growing (issue 12, items 12–19; the why of
-- each is in docs/revocation.md, "Sessions, refresh tokens and what is kept").

-- A session ended by its user's revoked_after (logout-all, password change, role change,
-- disable) gets revoked_at too, whatever code path raised revoked_after: the purge then
-- finds every ended session on one index of sessions alone, without a join to users.
-- Nothing depends on it for correctness: a session is dead if either says so. A session row
-- locked at that instant (a refresh in flight, which takes it before the user's row) is
-- skipped rather than waited for, which could deadlock; it is purged at its expiry instead.
CREATE FUNCTION sessions_end_with_revoked_after() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE sessions SET revoked_at = NEW.revoked_after
   WHERE id IN (SELECT id FROM sessions
                 WHERE user_id = NEW.id AND revoked_at IS NULL AND created_at <= NEW.revoked_after
                   FOR UPDATE SKIP LOCKED);
  RETURN NULL;
END
$$;
CREATE TRIGGER users_revoked_after_ends_sessions
  AFTER UPDATE OF revoked_after ON users
  FOR EACH ROW WHEN (NEW.revoked_after > OLD.revoked_after)
  EXECUTE FUNCTION sessions_end_with_revoked_after();
-- The sessions that revoked_after ended before this migration.
UPDATE sessions s SET revoked_at = u.revoked_after
  FROM users u
 WHERE u.id = s.user_id AND s.revoked_at IS NULL AND s.created_at <= u.revoked_after;

-- The purge: sessions whose end (expiry or revocation, whichever came first; least()
-- ignores a NULL revoked_at) is older than the cut-off, found on this index in batches.
CREATE INDEX sessions_ended_at_idx ON sessions (least(expires_at, revoked_at));
DROP INDEX sessions_expires_at_idx;

-- A refresh-token reuse, recorded at once (with its audit event, in one transaction) even
-- when Redis cannot be written; the session's end itself is then an ordinary revoking
-- transaction, replayed until Redis takes it. Refresh refuses the session from this instant.
ALTER TABLE sessions ADD COLUMN reuse_detected_at timestamptz;
CREATE INDEX sessions_reuse_pending_idx ON sessions (reuse_detected_at)
  WHERE reuse_detected_at IS NOT NULL AND revoked_at IS NULL;

-- Per-session refresh rate: refreshes counted in a fixed one-minute window.
ALTER TABLE sessions ADD COLUMN refresh_window_at timestamptz;
ALTER TABLE sessions ADD COLUMN refresh_count integer NOT NULL DEFAULT 0;

-- The refresh grace: a rotation draws a random salt, kept on the used token's row, and the
-- successor is HMAC-SHA-256(used token, salt). Whoever presents the used token again
-- within REFRESH_REUSE_INTERVAL gets the same successor back, recomputed; neither token is
-- stored, and the salt is cleared once the interval has passed.
ALTER TABLE refresh_tokens ADD COLUMN next_salt bytea;
CREATE INDEX refresh_tokens_salted_idx ON refresh_tokens (used_at) WHERE next_salt IS NOT NULL;

-- Audit retention: events older than AUDIT_RETENTION_DAYS are deleted in batches.
CREATE INDEX audit_events_at_idx ON audit_events (at);
