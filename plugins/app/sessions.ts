// Provides `fastify.sessions`: one row per login, opaque single-use refresh tokens with
// theft detection, logout, and the periodic clean-up of expired sessions.
import { createHash, randomBytes } from 'node:crypto'
import fp from 'fastify-plugin'
import type { PoolClient } from 'pg'
import type { Role } from '../../schemas/users.js'
import type { Session } from '../../schemas/auth.js'
import { BadCredentials, NotFound, Unauthorized } from '../../lib/errors.js'
import type { RevocationDb, RevocationService } from './revocation/index.js'
import { epochUs } from '../external/db.js'

declare module 'fastify' {
  interface FastifyInstance {
    sessions: SessionService
  }
}

export interface ClientMeta {
  ip: string
  userAgent: string | null
}

/** What a new access token needs to know about its session. */
export interface IssuedSession {
  userId: string
  username: string
  role: Role
  sid: string
  /** Session creation time, µs since the epoch, database clock. */
  sca: number
  refreshToken: string
}

// 256 random bits. Stored only as SHA-256: the token has full entropy, so a fast hash is
// enough to make a database leak useless, and lookup stays an index probe.
function newRefreshToken (): { token: string, hash: Buffer } {
  const token = randomBytes(32).toString('base64url')
  return { token, hash: hashToken(token) }
}

function hashToken (token: string): Buffer {
  return createHash('sha256').update(token).digest()
}

const SESSION_US = epochUs('s.created_at')

export class SessionService {
  constructor (
    private readonly db: RevocationDb,
    private readonly revocation: RevocationService,
    private readonly refreshTtl: number
  ) {}

  private async insertRefreshToken (client: PoolClient, sid: string): Promise<string> {
    const { token, hash } = newRefreshToken()
    await client.query(
      `INSERT INTO refresh_tokens (token_hash, session_id, expires_at)
       VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3))`, [hash, sid, this.refreshTtl])
    return token
  }

  /**
   * Starts a session for a user whose password was just verified: one statement (atomic
   * on its own), so this costs a login one round trip to PostgreSQL.
   */
  async create (userId: string, meta: ClientMeta): Promise<IssuedSession> {
    const { token, hash } = newRefreshToken()
    // FOR SHARE: a concurrent role change or disable either commits before this read
    // (and we see it) or waits for our statement (and its revoked_after is later than
    // our session): no token is ever issued with a role that was already changed.
    const { rows } = await this.db.query(
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
         FROM s, u`, [userId, this.refreshTtl, meta.ip, meta.userAgent, hash])
    // Same answer as any failed login: a user disabled mid-login learns nothing more.
    if (rows.length === 0) throw new BadCredentials()
    const r = rows[0]
    return { userId, username: r.username, role: r.role, sid: r.id, sca: Number(r.sca), refreshToken: token }
  }

  /**
   * Rotates a refresh token. The old one is retired atomically (UPDATE … WHERE used_at
   * IS NULL): of two concurrent refreshes with the same token one wins, and the other
   * sees a used token. Presenting a used token is treated as theft: the whole session
   * ends, and `onReuse` is told so it can be audited.
   */
  async refresh (refreshToken: string, meta: ClientMeta,
    onReuse: (userId: string, sid: string) => Promise<void>): Promise<IssuedSession> {
    const hash = hashToken(refreshToken)
    const issued = await this.db.transact(async (client) => {
      const { rows: used } = await client.query(
        `UPDATE refresh_tokens SET used_at = clock_timestamp()
          WHERE token_hash = $1 AND used_at IS NULL AND expires_at > clock_timestamp()
          RETURNING session_id`, [hash])
      if (used.length === 0) return null
      const sid: string = used[0].session_id
      const { rows } = await client.query(
        `SELECT s.user_id, u.username, u.role, ${SESSION_US} AS sca,
                s.revoked_at IS NULL AND s.expires_at > clock_timestamp()
                  AND s.created_at > u.revoked_after AND NOT u.disabled AS live
           FROM sessions s JOIN users u ON u.id = s.user_id
          WHERE s.id = $1 FOR UPDATE OF s FOR SHARE OF u`, [sid])
      if (rows.length === 0 || rows[0].live !== true) throw new Unauthorized('Invalid refresh token')
      await client.query(
        `UPDATE sessions SET last_used_at = clock_timestamp(), ip = $2, user_agent = $3,
                expires_at = clock_timestamp() + make_interval(secs => $4) WHERE id = $1`,
        [sid, meta.ip, meta.userAgent, this.refreshTtl])
      const token = await this.insertRefreshToken(client, sid)
      const r = rows[0]
      return { userId: r.user_id, username: r.username, role: r.role, sid, sca: Number(r.sca), refreshToken: token }
    })
    if (issued !== null) return issued

    const { rows } = await this.db.query(
      `SELECT t.session_id, s.user_id FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
        WHERE t.token_hash = $1 AND t.used_at IS NOT NULL AND s.revoked_at IS NULL`, [hash])
    if (rows.length > 0) {
      await this.end(rows[0].user_id, rows[0].session_id)
      await onReuse(rows[0].user_id, rows[0].session_id)
    }
    throw new Unauthorized('Invalid refresh token')
  }

  /**
   * Ends one session of a user: its access and refresh tokens. False if there was none
   * live (unknown, someone else's, already ended, or dead through the user's revoked_after).
   */
  async end (userId: string, sid: string): Promise<boolean> {
    return await this.revocation.revoke(async (client, revoked) => {
      const { rowCount } = await client.query(
        `UPDATE sessions s SET revoked_at = clock_timestamp() FROM users u
          WHERE s.id = $1 AND s.user_id = $2 AND u.id = s.user_id AND s.revoked_at IS NULL
            AND s.expires_at > clock_timestamp() AND s.created_at > u.revoked_after`,
        [sid, userId])
      if (rowCount === 0) return false
      revoked.session(userId, sid)
      return true
    })
  }

  /** Ends every session of the user. */
  async endAll (userId: string): Promise<void> {
    await this.revocation.revoke(async (client, revoked) => {
      const { rows } = await client.query(
        `UPDATE users SET revoked_after = clock_timestamp() WHERE id = $1
         RETURNING ${epochUs('revoked_after')} AS ra`, [userId])
      if (rows.length > 0) revoked.user(userId, rows[0].ra)
    })
  }

  /** The user's live sessions, newest first. */
  async list (userId: string, currentSid: string): Promise<Session[]> {
    const { rows } = await this.db.query(
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
      ip: r.ip,
      current: r.id === currentSid
    }))
  }

  /** Ends one of the caller's own sessions; anyone else's is "not found", never "forbidden". */
  async endOwn (userId: string, sid: string): Promise<void> {
    if (!await this.end(userId, sid)) throw new NotFound('Session not found')
  }

  /**
   * Deletes sessions that can no longer be used: expired, or revoked longer ago than
   * an access token lives. Deleting is always safe: a token whose session row is gone
   * is refused (see docs/revocation.md).
   */
  async purgeExpired (accessTtl: number): Promise<number> {
    const { rowCount } = await this.db.query(
      `DELETE FROM sessions WHERE expires_at < clock_timestamp() - make_interval(secs => $1)
          OR revoked_at < clock_timestamp() - make_interval(secs => $1)`, [accessTtl])
    return rowCount ?? 0
  }
}

export interface SessionOptions {
  refreshTtl: number
  accessTtl: number
  /** How often expired sessions are purged (ms); 0 turns it off. */
  purgeIntervalMs?: number
}

export default fp<SessionOptions>(async function sessionsPlugin (fastify, opts) {
  const sessions = new SessionService(fastify.db, fastify.revocation, opts.refreshTtl)
  fastify.decorate('sessions', sessions)

  // Clean-up runs inside the service (no cron outside it); every instance may run it,
  // the DELETE is idempotent. unref(): it never keeps the process alive.
  const every = opts.purgeIntervalMs ?? 10 * 60 * 1000
  if (every > 0) {
    const timer = setInterval(() => {
      sessions.purgeExpired(opts.accessTtl).then((n) => {
        if (n > 0) fastify.log.info({ purged: n }, 'expired sessions purged')
      }, (err: Error) => fastify.log.warn({ err: { message: err.message } }, 'session purge failed'))
    }, every)
    timer.unref()
    fastify.addHook('onClose', async () => clearInterval(timer))
  }
}, { name: 'sessions', dependencies: ['db', 'revocation'] })
