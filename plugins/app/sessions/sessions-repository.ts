// Sessions and their refresh tokens in PostgreSQL. Every method runs on the pool, or on
// the client of a transaction when it is given one. Times come from the database clock.
import type { Role } from '../../../schemas/users.js'
import type { Session } from '../../../schemas/auth.js'
import type { Db, Queryable } from '../../external/db.js'
import { epochUs } from '../../../lib/sql.js'
import type { ClientMeta } from './sessions-service.js'

/** A session with what an access token for it carries. */
export interface SessionClaims {
  userId: string
  username: string
  role: Role
  sid: string
  /** Session creation time, µs since the epoch, database clock. */
  sca: number
}

/** A refresh token that still works, with its session and user (times in s since the epoch). */
export interface LiveRefreshToken {
  userId: string
  username: string
  role: Role
  sid: string
  iat: number
  exp: number
}

const SESSION_US = epochUs('s.created_at')

export class SessionsRepository {
  constructor (private readonly db: Db) {}

  /**
   * Inserts a session and its first refresh token for a user that is not disabled, in one
   * statement (atomic on its own, one round trip); null when there is no such user.
   */
  async create (userId: string, meta: ClientMeta, tokenHash: Buffer, ttlSeconds: number, client: Queryable = this.db): Promise<SessionClaims | null> {
    // FOR SHARE: a concurrent role change or disable either commits before this read
    // (and we see it) or waits for our statement (and its revoked_after is later than
    // our session): no token is ever issued with a role that was already changed.
    const { rows } = await client.query(
      `WITH u AS (
         SELECT id, username, role FROM users WHERE id = $1 AND NOT disabled FOR SHARE
       ), s AS (
         INSERT INTO sessions (user_id, expires_at, ip, user_agent)
         SELECT id, clock_timestamp() + make_interval(secs => $2), $3, $4 FROM u
         RETURNING id, created_at
       ), r AS (
         INSERT INTO refresh_tokens (token_hash, session_id, expires_at)
         SELECT $5, id, clock_timestamp() + make_interval(secs => $2) FROM s
       )
       SELECT s.id, ${SESSION_US} AS sca, u.username, u.role
         FROM s, u`, [userId, ttlSeconds, meta.ip, meta.userAgent, tokenHash])
    if (rows.length === 0) return null
    const r = rows[0]
    return { userId, username: r.username, role: r.role, sid: r.id, sca: Number(r.sca) }
  }

  async insertRefreshToken (sid: string, tokenHash: Buffer, ttlSeconds: number, client: Queryable = this.db): Promise<void> {
    await client.query(
      `INSERT INTO refresh_tokens (token_hash, session_id, expires_at)
       VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3))`, [tokenHash, sid, ttlSeconds])
  }

  /**
   * Marks an unused, unexpired refresh token used, atomically (UPDATE … WHERE used_at IS
   * NULL: of two concurrent calls one wins); its session id, or null for the loser and
   * for an unknown, used or expired token.
   */
  async useRefreshToken (tokenHash: Buffer, client: Queryable = this.db): Promise<string | null> {
    const { rows } = await client.query(
      `UPDATE refresh_tokens SET used_at = clock_timestamp()
        WHERE token_hash = $1 AND used_at IS NULL AND expires_at > clock_timestamp()
        RETURNING session_id`, [tokenHash])
    return rows.length === 0 ? null : rows[0].session_id
  }

  /** Locks a session (and shares its user's row); whether it is live, or null without it. */
  async lockForRefresh (sid: string, client: Queryable): Promise<(SessionClaims & { live: boolean }) | null> {
    const { rows } = await client.query(
      `SELECT s.user_id, u.username, u.role, ${SESSION_US} AS sca,
              s.revoked_at IS NULL AND s.expires_at > clock_timestamp()
                AND s.created_at > u.revoked_after AND NOT u.disabled AS live
         FROM sessions s JOIN users u ON u.id = s.user_id
        WHERE s.id = $1 FOR UPDATE OF s FOR SHARE OF u`, [sid])
    if (rows.length === 0) return null
    const r = rows[0]
    return { userId: r.user_id, username: r.username, role: r.role, sid, sca: Number(r.sca), live: r.live === true }
  }

  /** Records a use of the session and extends its life. */
  async touch (sid: string, meta: ClientMeta, ttlSeconds: number, client: Queryable = this.db): Promise<void> {
    await client.query(
      `UPDATE sessions SET last_used_at = clock_timestamp(), ip = $2, user_agent = $3,
              expires_at = clock_timestamp() + make_interval(secs => $4) WHERE id = $1`,
      [sid, meta.ip, meta.userAgent, ttlSeconds])
  }

  /** The session of a refresh token that was already used, if that session is not revoked. */
  async findReused (tokenHash: Buffer, client: Queryable = this.db): Promise<{ userId: string, sid: string } | null> {
    const { rows } = await client.query(
      `SELECT t.session_id, s.user_id FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
        WHERE t.token_hash = $1 AND t.used_at IS NOT NULL AND s.revoked_at IS NULL`, [tokenHash])
    return rows.length === 0 ? null : { userId: rows[0].user_id, sid: rows[0].session_id }
  }

  /**
   * The session and user of a refresh token that still works: unused, unexpired, its
   * session live (token introspection and revocation); null otherwise.
   */
  async findLiveRefreshToken (tokenHash: Buffer, client: Queryable = this.db): Promise<LiveRefreshToken | null> {
    const { rows } = await client.query(
      `SELECT s.user_id, u.username, u.role, s.id AS sid,
              floor(extract(epoch FROM t.created_at))::bigint AS iat,
              floor(extract(epoch FROM t.expires_at))::bigint AS exp
         FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id JOIN users u ON u.id = s.user_id
        WHERE t.token_hash = $1 AND t.used_at IS NULL AND t.expires_at > clock_timestamp()
          AND s.revoked_at IS NULL AND s.expires_at > clock_timestamp()
          AND s.created_at > u.revoked_after AND NOT u.disabled`, [tokenHash])
    if (rows.length === 0) return null
    const r = rows[0]
    return { userId: r.user_id, username: r.username, role: r.role, sid: r.sid, iat: Number(r.iat), exp: Number(r.exp) }
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

  /** Deletes sessions that expired, or were revoked, more than `seconds` ago; how many. */
  async deleteEndedBefore (seconds: number, client: Queryable = this.db): Promise<number> {
    const { rowCount } = await client.query(
      `DELETE FROM sessions WHERE expires_at < clock_timestamp() - make_interval(secs => $1)
          OR revoked_at < clock_timestamp() - make_interval(secs => $1)`, [seconds])
    return rowCount ?? 0
  }
}
