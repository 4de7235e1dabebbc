// Sessions and their refresh tokens in PostgreSQL. Every method runs on the pool, or on
// the client of a transaction when it is given one. Times come from the database clock.
import type { Role } from '../../../schemas/users.js'
import type { Session } from '../../../schemas/auth.js'
import type { Db, Queryable } from '../../external/db.js'
import { epochUs } from '../../../lib/sql.js'
import { hasSecondFactor } from '../../../lib/tokens.js'
import type { ClientMeta } from './sessions-service.js'

/** A session with what an access token for it carries. */
export interface SessionClaims {
  userId: string
  username: string
  role: Role
  sid: string
  /** Session creation time, µs since the epoch, database clock. */
  sca: number
  /** How the login was authenticated (RFC 8176), e.g. ['pwd'] or ['pwd', 'otp']. */
  amr: string[]
}

/** A refresh token that still works, with its session and user (times in s since the epoch). */
export interface LiveRefreshToken {
  userId: string
  username: string
  role: Role
  sid: string
  iat: number
  exp: number
  /** The session's (RFC 8176). */
  amr: string[]
}

const SESSION_US = epochUs('s.created_at')

export class SessionsRepository {
  constructor (private readonly db: Db) {}

  /**
   * Inserts a session and its first refresh token for a user that is not disabled and
   * whose password hash is still `passwordHash` (the one the login checked; null for a
   * login without a password), in one statement (atomic on its own, one round trip); null
   * when there is no such user. `amr`: how the login was authenticated (RFC 8176);
   * `credentialId`: the passkey it used, whose deletion ends the session.
   */
  async create (userId: string, passwordHash: string | null, meta: ClientMeta, tokenHash: Buffer, ttlSeconds: number,
    amr: string[], client: Queryable = this.db, credentialId: string | null = null): Promise<SessionClaims | null> {
    // FOR SHARE: a concurrent role change or disable either commits before this read
    // (and we see it) or waits for our statement (and its revoked_after is later than
    // our session): no token is ever issued with a role that was already changed. The
    // same for a password change: a login that checked the old password while it was
    // being changed gets no session (a fresh hash has a fresh salt, so any change shows).
    // And a login without a second factor gets none once the user has one (users.mfa is
    // re-read after the lock of an enrolment in flight: migrations/004).
    const { rows } = await client.query(
      `WITH u AS (
         SELECT id, username, role FROM users
          WHERE id = $1 AND NOT disabled AND ($6::text IS NULL OR password_hash = $6) AND ($8 OR NOT mfa) FOR SHARE
       ), s AS (
         INSERT INTO sessions (user_id, expires_at, ip, user_agent, amr, credential_id)
         SELECT id, clock_timestamp() + make_interval(secs => $2), $3, $4, $7, $9 FROM u
         RETURNING id, created_at, amr
       ), r AS (
         INSERT INTO refresh_tokens (token_hash, session_id, expires_at)
         SELECT $5, id, clock_timestamp() + make_interval(secs => $2) FROM s
       )
       SELECT s.id, ${SESSION_US} AS sca, u.username, u.role, s.amr
         FROM s, u`, [userId, ttlSeconds, meta.ip, meta.userAgent, tokenHash, passwordHash, amr, hasSecondFactor({ amr }), credentialId])
    if (rows.length === 0) return null
    const r = rows[0]
    return { userId, username: r.username, role: r.role, sid: r.id, sca: Number(r.sca), amr: r.amr }
  }

  /**
   * Marks an unused, unexpired refresh token used, atomically (UPDATE … WHERE used_at IS
   * NULL: of two concurrent calls one wins), keeping the salt its successor is derived
   * with; its session id, or null for the loser and for an unknown, used or expired token.
   */
  async useRefreshToken (tokenHash: Buffer, salt: Buffer, client: Queryable = this.db): Promise<string | null> {
    const { rows } = await client.query(
      `UPDATE refresh_tokens SET used_at = clock_timestamp(), next_salt = $2
        WHERE token_hash = $1 AND used_at IS NULL AND expires_at > clock_timestamp()
        RETURNING session_id`, [tokenHash, salt])
    return rows.length === 0 ? null : rows[0].session_id
  }

  /**
   * Locks a session (and shares its user's row): whether it can be refreshed, and how
   * long until it may be again when it has had `rateLimit` refreshes in its current
   * minute (0: now). Null without the session. A session refreshed in its last second
   * counts as ended: no token may outlive it.
   */
  async lockForRefresh (sid: string, rateLimit: number, client: Queryable): Promise<(SessionClaims & { live: boolean, retryAfter: number }) | null> {
    const { rows } = await client.query(
      `SELECT s.user_id, u.username, u.role, ${SESSION_US} AS sca, s.amr,
              s.revoked_at IS NULL AND s.reuse_detected_at IS NULL
                AND s.expires_at > clock_timestamp() + interval '1 second'
                AND s.created_at > u.revoked_after AND NOT u.disabled AS live,
              CASE WHEN s.refresh_window_at > clock_timestamp() - interval '1 minute' AND s.refresh_count >= $2
                   THEN ceil(extract(epoch FROM s.refresh_window_at + interval '1 minute' - clock_timestamp()))::int
                   ELSE 0 END AS retry_after
         FROM sessions s JOIN users u ON u.id = s.user_id
        WHERE s.id = $1 FOR UPDATE OF s FOR SHARE OF u`, [sid, rateLimit])
    if (rows.length === 0) return null
    const r = rows[0]
    return { userId: r.user_id, username: r.username, role: r.role, sid, sca: Number(r.sca), amr: r.amr, live: r.live === true, retryAfter: Math.max(0, r.retry_after) }
  }

  /**
   * A refresh of a locked session, in one statement: records the use (time, client, the
   * refresh counted in its minute), extends its life up to its absolute end, inserts the
   * new refresh token (unless `tokenHash` is null: the grace hands out the existing one),
   * deletes used tokens beyond the `keepUsed` most recent, and clears the salts of those
   * used longer ago than `reuseInterval`. The session's end, unix seconds.
   */
  async renew (sid: string, meta: ClientMeta, tokenHash: Buffer | null,
    opts: { refreshTtl: number, maxLifetime: number, keepUsed: number, reuseInterval: number }, client: Queryable): Promise<number> {
    const { rows } = await client.query(
      `WITH s AS (
         UPDATE sessions SET last_used_at = clock_timestamp(), ip = $2, user_agent = $3,
                expires_at = least(clock_timestamp() + make_interval(secs => $4), created_at + make_interval(secs => $5)),
                refresh_count = CASE WHEN refresh_window_at > clock_timestamp() - interval '1 minute' THEN refresh_count + 1 ELSE 1 END,
                refresh_window_at = CASE WHEN refresh_window_at > clock_timestamp() - interval '1 minute' THEN refresh_window_at ELSE clock_timestamp() END
          WHERE id = $1 RETURNING expires_at
       ), issued AS (
         INSERT INTO refresh_tokens (token_hash, session_id, expires_at)
         SELECT $6, $1, expires_at FROM s WHERE $6::bytea IS NOT NULL
       ), kept AS (
         SELECT token_hash FROM refresh_tokens WHERE session_id = $1 AND used_at IS NOT NULL
          ORDER BY used_at DESC LIMIT $7
       ), dropped AS (
         DELETE FROM refresh_tokens WHERE session_id = $1 AND used_at IS NOT NULL
            AND token_hash NOT IN (SELECT token_hash FROM kept)
       ), unsalted AS (
         UPDATE refresh_tokens SET next_salt = NULL
          WHERE session_id = $1 AND next_salt IS NOT NULL AND token_hash IN (SELECT token_hash FROM kept)
            AND used_at <= clock_timestamp() - make_interval(secs => $8)
       )
       SELECT floor(extract(epoch FROM expires_at))::bigint AS ends_at FROM s`,
      [sid, meta.ip, meta.userAgent, opts.refreshTtl, opts.maxLifetime, tokenHash, opts.keepUsed, opts.reuseInterval])
    return Number(rows[0].ends_at)
  }

  /**
   * A used refresh token: its session and user, the salt of its successor (null once
   * cleared), and whether it was used less than `reuseInterval` seconds ago.
   */
  async findUsed (tokenHash: Buffer, reuseInterval: number, client: Queryable = this.db): Promise<{ sid: string, userId: string, salt: Buffer | null, inGrace: boolean } | null> {
    const { rows } = await client.query(
      `SELECT t.session_id, s.user_id, t.next_salt,
              t.used_at > clock_timestamp() - make_interval(secs => $2) AS in_grace
         FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
        WHERE t.token_hash = $1 AND t.used_at IS NOT NULL`, [tokenHash, reuseInterval])
    if (rows.length === 0) return null
    const r = rows[0]
    return { sid: r.session_id, userId: r.user_id, salt: r.next_salt, inGrace: r.in_grace === true }
  }

  /** The refresh tokens a session still has rows for, by hash (hex). */
  async tokensOf (sid: string, client: Queryable): Promise<Map<string, { unused: boolean, usable: boolean, salt: Buffer | null }>> {
    const { rows } = await client.query(
      `SELECT encode(token_hash, 'hex') AS hash, used_at IS NULL AS unused,
              used_at IS NULL AND expires_at > clock_timestamp() AS usable, next_salt
         FROM refresh_tokens WHERE session_id = $1`, [sid])
    return new Map(rows.map((r) => [r.hash, { unused: r.unused, usable: r.usable, salt: r.next_salt }]))
  }

  /**
   * Records a refresh-token reuse on a session that has not ended; the session's user, or
   * null when it had ended or a reuse was already recorded (of two concurrent ones, one).
   */
  async markReused (sid: string, client: Queryable): Promise<string | null> {
    const { rows } = await client.query(
      `UPDATE sessions SET reuse_detected_at = clock_timestamp()
        WHERE id = $1 AND reuse_detected_at IS NULL AND revoked_at IS NULL RETURNING user_id`, [sid])
    return rows.length === 0 ? null : rows[0].user_id
  }

  /** Ends a session whose reuse was recorded; false when it had ended already. */
  async endReused (sid: string, client: Queryable): Promise<boolean> {
    const { rowCount } = await client.query(
      `UPDATE sessions SET revoked_at = clock_timestamp()
        WHERE id = $1 AND reuse_detected_at IS NOT NULL AND revoked_at IS NULL`, [sid])
    return rowCount !== 0
  }

  /** Sessions with a recorded reuse that have not ended yet, oldest first. */
  async listReusedLive (limit: number, client: Queryable = this.db): Promise<Array<{ sid: string, userId: string }>> {
    const { rows } = await client.query(
      `SELECT id, user_id FROM sessions WHERE reuse_detected_at IS NOT NULL AND revoked_at IS NULL
        ORDER BY reuse_detected_at LIMIT $1`, [limit])
    return rows.map((r) => ({ sid: r.id, userId: r.user_id }))
  }

  /**
   * The session and user of a refresh token that still works: unused, unexpired, its
   * session live and not marked for a reuse (token introspection and revocation); null
   * otherwise. `exp`: the token's or its session's end, whichever is first.
   */
  async findLiveRefreshToken (tokenHash: Buffer, client: Queryable = this.db): Promise<LiveRefreshToken | null> {
    const { rows } = await client.query(
      `SELECT s.user_id, u.username, u.role, s.id AS sid, s.amr,
              floor(extract(epoch FROM t.created_at))::bigint AS iat,
              floor(extract(epoch FROM least(t.expires_at, s.expires_at)))::bigint AS exp
         FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id JOIN users u ON u.id = s.user_id
        WHERE t.token_hash = $1 AND t.used_at IS NULL AND t.expires_at > clock_timestamp()
          AND s.revoked_at IS NULL AND s.reuse_detected_at IS NULL AND s.expires_at > clock_timestamp()
          AND s.created_at > u.revoked_after AND NOT u.disabled`, [tokenHash])
    if (rows.length === 0) return null
    const r = rows[0]
    return { userId: r.user_id, username: r.username, role: r.role, sid: r.sid, iat: Number(r.iat), exp: Number(r.exp), amr: r.amr }
  }

  /** Sets revoked_at of one live session of the user; false if there was none. */
  async revoke (userId: string, sid: string, client: Queryable = this.db): Promise<boolean> {
    const { rowCount } = await client.query(
      `UPDATE sessions s SET revoked_at = clock_timestamp() FROM users u
        WHERE s.id = $1 AND s.user_id = $2 AND u.id = s.user_id AND s.revoked_at IS NULL
          AND s.expires_at > clock_timestamp() AND s.created_at > u.revoked_after`,
      [sid, userId])
    return rowCount !== 0
  }

  /**
   * Sets revoked_at of every live session of the user but `keepSid` (null: every one); the
   * ids of those it ended. For a change that must end the other sessions and keep the one
   * that made it (enrolling or removing a second factor).
   */
  async revokeOthers (userId: string, keepSid: string | null, client: Queryable): Promise<string[]> {
    const { rows } = await client.query(
      `UPDATE sessions s SET revoked_at = clock_timestamp() FROM users u
        WHERE s.user_id = $1 AND u.id = s.user_id AND s.id IS DISTINCT FROM $2 AND s.revoked_at IS NULL
          AND s.expires_at > clock_timestamp() AND s.created_at > u.revoked_after
       RETURNING s.id`, [userId, keepSid])
    return rows.map((r) => r.id)
  }

  /** Sets the user's revoked_after: every session ends. The new value in µs, or null without the user. */
  async revokeAll (userId: string, client: Queryable = this.db): Promise<string | null> {
    const { rows } = await client.query(
      `UPDATE users SET revoked_after = clock_timestamp() WHERE id = $1
       RETURNING ${epochUs('revoked_after')} AS ra`, [userId])
    return rows.length === 0 ? null : rows[0].ra
  }

  /** The user's live sessions, newest first. */
  async listLive (userId: string, client: Queryable = this.db): Promise<Array<Omit<Session, 'current'>>> {
    const { rows } = await client.query(
      `SELECT s.id, s.created_at, s.last_used_at, s.user_agent, s.ip
         FROM sessions s JOIN users u ON u.id = s.user_id
        WHERE s.user_id = $1 AND s.revoked_at IS NULL AND s.expires_at > clock_timestamp()
          AND s.created_at > u.revoked_after
        ORDER BY s.created_at DESC`, [userId])
    return rows.map((r) => ({
      id: r.id,
      createdAt: r.created_at.toISOString(),
      lastUsedAt: r.last_used_at.toISOString(),
      userAgent: r.user_agent,
      ip: r.ip
    }))
  }

  /**
   * Deletes up to `limit` sessions that ended (expired or revoked, whichever first) more
   * than `seconds` ago; how many. now() rather than clock_timestamp() and a parameter, so
   * the expression index on least(expires_at, revoked_at) serves it; one short statement
   * per batch, each inside the statement timeout; SKIP LOCKED lets instances purge side
   * by side. Their refresh tokens go with them (ON DELETE CASCADE).
   */
  async deleteEnded (seconds: number, limit: number): Promise<number> {
    const { rowCount } = await this.db.query(
      `DELETE FROM sessions WHERE id IN (
         SELECT id FROM sessions WHERE least(expires_at, revoked_at) < now() - make_interval(secs => $1)
          LIMIT $2 FOR UPDATE SKIP LOCKED)`, [seconds, limit])
    return rowCount ?? 0
  }

  /** Clears up to `limit` salts of refresh tokens used more than `seconds` ago; how many. */
  async clearSalts (seconds: number, limit: number): Promise<number> {
    const { rowCount } = await this.db.query(
      `UPDATE refresh_tokens SET next_salt = NULL WHERE token_hash IN (
         SELECT token_hash FROM refresh_tokens
          WHERE next_salt IS NOT NULL AND used_at <= now() - make_interval(secs => $1)
          LIMIT $2 FOR UPDATE SKIP LOCKED)`, [seconds, limit])
    return rowCount ?? 0
  }
}
