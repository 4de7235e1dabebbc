// Sessions: login, opaque single-use refresh tokens with theft detection, logout, and the
// clean-up of sessions that ended. Each step a user takes is recorded in the audit log.
import { createHash, randomBytes } from 'node:crypto'
import type { Session } from '../../../schemas/auth.js'
import { BadCredentials, NotFound, Unauthorized } from '../../../lib/errors.js'
import type { Db } from '../../external/db.js'
import type { RevocationService } from '../revocation/revocation-service.js'
import type { AuditContext, AuditService } from '../audit/audit-service.js'
import type { LockoutService } from '../lockout/lockout-service.js'
import type { UserService } from '../users/users-service.js'
import type { SessionClaims, SessionsRepository } from './sessions-repository.js'

/** The request a session is started or refreshed by. */
export interface ClientMeta extends AuditContext {
  userAgent: string | null
}

/** What a new token pair needs to know about its session. */
export interface IssuedSession extends SessionClaims {
  refreshToken: string
}

// 256 random bits. Stored only as SHA-256: the token has full entropy, so a fast hash is
// enough to make a database leak useless, and lookup stays an index probe.
function newRefreshToken (): { token: string, hash: Buffer } {
  const token = randomBytes(32).toString('base64url')
  return { token, hash: hashToken(token) }
}

/** How a refresh token is stored and looked up: its SHA-256. */
export function hashToken (token: string): Buffer {
  return createHash('sha256').update(token).digest()
}

export class SessionService {
  constructor (
    private readonly db: Db,
    private readonly repository: SessionsRepository,
    private readonly revocation: RevocationService,
    private readonly users: UserService,
    private readonly lockout: LockoutService,
    private readonly audit: AuditService,
    private readonly refreshTtl: number
  ) {}

  /** Checks the credentials and starts a session (one PostgreSQL round trip after argon2). */
  async login (username: string, password: string, meta: ClientMeta): Promise<IssuedSession> {
    const user = await this.users.verifyLogin(username, password, meta)
    const { token, hash } = newRefreshToken()
    // A success ends the run of failures; both round trips at once.
    const [claims] = await Promise.all([
      this.repository.create(user.id, meta, hash, this.refreshTtl),
      this.lockout.succeeded(username)
    ])
    // Same answer as any failed login: a user disabled mid-login learns nothing more.
    if (claims === null) throw new BadCredentials()
    await this.audit.record({ ...meta, type: 'login', actorId: user.id, subjectId: user.id, detail: { sessionId: claims.sid } })
    return { ...claims, refreshToken: token }
  }

  /**
   * Rotates a refresh token. Of two concurrent refreshes with the same token one wins,
   * and the other sees a used token. Presenting a used token is treated as theft: the
   * whole session ends.
   */
  async refresh (refreshToken: string, meta: ClientMeta): Promise<IssuedSession> {
    const hash = hashToken(refreshToken)
    const issued = await this.db.transact(async (client) => {
      const sid = await this.repository.useRefreshToken(hash, client)
      if (sid === null) return null
      const session = await this.repository.lockForRefresh(sid, client)
      if (session === null || !session.live) throw new Unauthorized('Invalid refresh token')
      await this.repository.touch(sid, meta, this.refreshTtl, client)
      const { token, hash: next } = newRefreshToken()
      await this.repository.insertRefreshToken(sid, next, this.refreshTtl, client)
      const { live: _, ...claims } = session
      return { ...claims, refreshToken: token }
    })
    if (issued !== null) return issued

    const reused = await this.repository.findReused(hash)
    if (reused !== null) {
      await this.end(reused.userId, reused.sid)
      await this.audit.record({ ...meta, type: 'refresh_reuse', subjectId: reused.userId, detail: { sessionId: reused.sid } })
    }
    throw new Unauthorized('Invalid refresh token')
  }

  /**
   * Ends one session of a user: its access and refresh tokens. False if there was none
   * live (unknown, someone else's, already ended, or dead through the user's revoked_after).
   */
  async end (userId: string, sid: string): Promise<boolean> {
    return await this.revocation.revoke(async (client, revoked) => {
      if (!await this.repository.revoke(userId, sid, client)) return false
      revoked.session(userId, sid)
      return true
    })
  }

  /** Ends the caller's current session. */
  async logout (userId: string, sid: string, ctx: AuditContext): Promise<void> {
    await this.end(userId, sid)
    await this.audit.record({ ...ctx, type: 'logout', subjectId: userId, detail: { sessionId: sid } })
  }

  /** Ends every session of the user. */
  async endAll (userId: string, ctx: AuditContext): Promise<void> {
    await this.revocation.revoke(async (client, revoked) => {
      const revokedAfterUs = await this.repository.revokeAll(userId, client)
      if (revokedAfterUs !== null) revoked.user(userId, revokedAfterUs)
    })
    await this.audit.record({ ...ctx, type: 'logout_all', subjectId: userId })
  }

  /** Ends one of the caller's own sessions; anyone else's is "not found", never "forbidden". */
  async endOwn (userId: string, sid: string, ctx: AuditContext): Promise<void> {
    if (!await this.end(userId, sid)) throw new NotFound('Session not found')
    await this.audit.record({ ...ctx, type: 'session_revoked', subjectId: userId, detail: { sessionId: sid } })
  }

  /** The user's live sessions, newest first; `current` marks the caller's. */
  async list (userId: string, currentSid: string): Promise<Session[]> {
    const sessions = await this.repository.listLive(userId)
    return sessions.map((s) => ({ ...s, current: s.id === currentSid }))
  }

  /**
   * Deletes sessions that can no longer be used: expired, or revoked longer ago than
   * an access token lives. Deleting is always safe: a token whose session row is gone
   * is refused (see docs/revocation.md).
   */
  async purgeExpired (accessTtl: number): Promise<number> {
    return await this.repository.deleteEndedBefore(accessTtl)
  }
}
