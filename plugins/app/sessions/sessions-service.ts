// Sessions: login, opaque single-use refresh tokens with theft detection, logout, and the
// clean-up of sessions that ended. Each step a user takes is recorded in the audit log.
import { createHash, createHmac, randomBytes } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import type { Session } from '../../../schemas/auth.js'
import { BadCredentials, NotFound, tooManyRequests, Unauthorized } from '../../../lib/errors.js'
import type { Db, Queryable } from '../../external/db.js'
import type { RevocationReason, RevocationService } from '../revocation/revocation-service.js'
import type { AuditContext, AuditRecord, AuditService, ChangeContext } from '../audit/audit-service.js'
import type { LockoutService } from '../lockout/lockout-service.js'
import type { UserService } from '../users/users-service.js'
import type { FactorCheck, MfaService, MfaTokenRef, PendingLogin } from '../mfa/mfa-service.js'
import type { SessionClaims, SessionsRepository } from './sessions-repository.js'

/** The request a session is started or refreshed by. */
export interface ClientMeta extends AuditContext {
  userAgent: string | null
}

/** What a new token pair needs to know about its session. */
export interface IssuedSession extends SessionClaims {
  refreshToken: string
  /** When the session ends at the latest (unix s): no access token may outlive it. */
  endsAt: number
}

export interface SessionSettings {
  /** REFRESH_TOKEN_TTL: a session unused this long ends. */
  refreshTtl: number
  /** SESSION_MAX_LIFETIME: a session ends this long after its login, however often refreshed. */
  maxLifetime: number
  /** REFRESH_REUSE_INTERVAL: the grace for presenting a just-used refresh token again. */
  reuseInterval: number
  /** REFRESH_RATE_LIMIT: refreshes per minute per session. */
  refreshRateLimit: number
}

/**
 * Used refresh tokens kept per session for reuse detection: presenting one of the last
 * this many ends the session; an older one is only refused (401), as an unknown token.
 * Also the longest chain of successors the grace follows.
 */
const USED_TOKENS_KEPT = 10
/** Sessions (and salts) deleted per statement by the purge. */
const PURGE_BATCH = 5000

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

/**
 * The refresh token that replaces `token`: HMAC-SHA-256 keyed with the token itself over a
 * random salt the rotation stored. Only a holder of `token` can compute it, and only while
 * the salt is kept (REFRESH_REUSE_INTERVAL): that is the grace, with no token stored.
 */
function successor (token: string, salt: Buffer): string {
  return createHmac('sha256', token).update(salt).digest('base64url')
}

export class SessionService {
  constructor (
    private readonly db: Db,
    /** Sessions in PostgreSQL; a test may wrap `create` to hold a login mid-way. */
    readonly repository: SessionsRepository,
    private readonly revocation: RevocationService,
    private readonly users: UserService,
    private readonly lockout: LockoutService,
    private readonly audit: AuditService,
    private readonly mfa: MfaService,
    private readonly settings: SessionSettings,
    private readonly log: FastifyBaseLogger
  ) {}

  /**
   * Checks the credentials (`name`: a username, or a verified email) and starts a session
   * (one PostgreSQL round trip after argon2); for a user with a second factor, a login
   * waiting for it instead (`mfa`). A temporary password an admin set is refused before
   * the second factor is asked (verifyLogin: 403 with a reset token); the second factor
   * stays, and the next login with the new password asks for it.
   */
  async login (name: string, password: string, meta: ClientMeta): Promise<IssuedSession | { mfa: PendingLogin }> {
    const { user, passwordHash } = await this.users.verifyLogin(name, password, meta)
    if (user.mfaEnabled) {
      const pending = await this.mfa.challenge(user.id, passwordHash)
      if (pending !== null) {
        // The password was right, but this client's run of failures goes on until the
        // second factor is too: signing in again does not reset the count of wrong codes.
        await this.lockout.succeeded(user.username, meta.ip, { partly: true })
        await this.audit.record({ ...meta, type: 'mfa_challenge', actorId: user.id, subjectId: user.id, detail: { methods: pending.methods } })
        return { mfa: pending }
      }
    }
    return await this.start(user.id, passwordHash, meta, ['pwd'], user.username)
  }

  /**
   * Starts a session for a user whose credentials were checked: `passwordHash` the hash
   * the password was checked against (the session starts only while it is current; null
   * without a password), `amr` how (RFC 8176). With `username`, this client's run of
   * failed attempts at it ends. With `client`, inside the caller's transaction. With
   * `credentialId`, the passkey the login used: deleting it ends the session.
   */
  async start (userId: string, passwordHash: string | null, meta: ClientMeta, amr: string[], username?: string, client?: Queryable,
    credentialId?: string): Promise<IssuedSession> {
    const { token, hash } = newRefreshToken()
    const lifetime = Math.min(this.settings.refreshTtl, this.settings.maxLifetime)
    const endsAt = Math.floor(Date.now() / 1000) + lifetime
    // A success ends the run of failures; both round trips at once.
    const [claims] = await Promise.all([
      this.repository.create(userId, passwordHash, meta, hash, lifetime, amr, client, credentialId),
      username === undefined ? undefined : this.lockout.succeeded(username, meta.ip)
    ])
    // Same answer as any failed login: a user disabled, or whose password changed, while
    // this login was checking the old one learns nothing more (nor one who enrolled a
    // second factor meanwhile: the next login asks for it).
    if (claims === null) throw new BadCredentials()
    await this.audit.record({ ...meta, type: 'login', actorId: userId, subjectId: userId, detail: { sessionId: claims.sid, amr } }, client)
    return { ...claims, refreshToken: token, endsAt }
  }

  /**
   * Completes a login that waits for its second factor: `check` proves the factor inside
   * the transaction that uses the `mfa_token` up and starts the session (so a token serves
   * one login, and a code one login). A wrong factor counts toward the username's lockout
   * like a wrong password, and toward the token's own limit; both answer 401.
   */
  async completeLogin (mfaToken: MfaTokenRef, meta: ClientMeta, check: FactorCheck): Promise<IssuedSession> {
    const pending = await this.mfa.pending(mfaToken)
    if (pending === null) throw new Unauthorized('Invalid or expired mfa_token: sign in again')
    // Counted before the factor is checked, as a password is: parallel guesses cannot all
    // get through. Exempt from the username's lock across clients: this client has the password.
    const attempt = await this.lockout.attempt(pending.username, meta.ip, { exempt: true })
    if (attempt.refused) {
      await this.audit.record({ ...meta, type: 'mfa_locked', subjectId: pending.userId, detail: { lock: attempt.scope } })
      throw tooManyRequests('Too many wrong codes for this account, try again later', attempt.retryAfter)
    }
    const outcome = await this.db.transact(async (client) => {
      const used = await this.mfa.consume(mfaToken, client, check)
      if ('failed' in used) return used
      return await this.start(used.userId, null, meta, used.amr, undefined, client, used.credentialId)
    })
    if ('failed' in outcome) {
      await this.audit.record({ ...meta, type: 'mfa_failed', subjectId: pending.userId, detail: { reason: outcome.failed, failures: attempt.failures } })
      throw new Unauthorized(outcome.failed === 'bad_code' ? 'Wrong or already used code' : 'Invalid or expired mfa_token: sign in again')
    }
    await this.lockout.succeeded(pending.username, meta.ip)
    return outcome
  }

  /**
   * Rotates a refresh token. Of two concurrent refreshes with the same token one rotates
   * it; the other, like any retry within REFRESH_REUSE_INTERVAL, gets the same successor
   * (the grace). Presenting a used token later is treated as theft: the whole session ends.
   */
  async refresh (refreshToken: string, meta: ClientMeta): Promise<IssuedSession> {
    const presented = hashToken(refreshToken)
    const outcome = await this.db.transact(async (client): Promise<IssuedSession | { reusedBy: string, sid: string } | null> => {
      const salt = randomBytes(32)
      const sid = await this.repository.useRefreshToken(presented, salt, client)
      if (sid !== null) {
        const next = successor(refreshToken, salt)
        const claims = await this.lockLive(sid, client)
        return await this.renew(claims, meta, next, hashToken(next), client)
      }
      const used = await this.repository.findUsed(presented, this.settings.reuseInterval, client)
      if (used === null) return null // unknown or expired: nothing to end
      if (used.inGrace) {
        // A retry, or the loser of a race: the session goes on with the successor.
        const claims = await this.lockLive(used.sid, client)
        const current = await this.currentSuccessor(used.sid, refreshToken, used.salt, client)
        if (current === null) throw new Unauthorized('Invalid refresh token')
        return await this.renew(claims, meta, current, null, client)
      }
      // Theft: recorded, with its audit event, whether or not Redis can be written now.
      const userId = await this.repository.markReused(used.sid, client)
      if (userId === null) return null // ended, or its reuse already recorded
      await this.audit.record({ ...meta, type: 'refresh_reuse', subjectId: userId, detail: { sessionId: used.sid } }, client)
      return { reusedBy: userId, sid: used.sid }
    })
    if (outcome !== null && 'refreshToken' in outcome) return outcome
    if (outcome !== null) await this.endReused(outcome.reusedBy, outcome.sid)
    throw new Unauthorized('Invalid refresh token')
  }

  /** Locks a session for a refresh: its claims if it is live and under its rate limit. */
  private async lockLive (sid: string, client: Queryable): Promise<SessionClaims> {
    const session = await this.repository.lockForRefresh(sid, this.settings.refreshRateLimit, client)
    if (session === null || !session.live) throw new Unauthorized('Invalid refresh token')
    if (session.retryAfter > 0) throw tooManyRequests('Too many refreshes of this session, try again later', session.retryAfter)
    const { live: _, retryAfter: __, ...claims } = session
    return claims
  }

  private async renew (claims: SessionClaims, meta: ClientMeta, refreshToken: string, hash: Buffer | null, client: Queryable): Promise<IssuedSession> {
    const endsAt = await this.repository.renew(claims.sid, meta, hash, { ...this.settings, keepUsed: USED_TOKENS_KEPT }, client)
    return { ...claims, refreshToken, endsAt }
  }

  /**
   * The session's current refresh token, derived from a used one: its successor, or the
   * successor's successor if that was used too (a client that went on within the
   * interval). Null when the chain breaks (a salt cleared, a token expired or deleted).
   */
  private async currentSuccessor (sid: string, used: string, salt: Buffer | null, client: Queryable): Promise<string | null> {
    const tokens = await this.repository.tokensOf(sid, client)
    let token = used
    for (let hop = 0; hop < USED_TOKENS_KEPT && salt !== null; hop++) {
      token = successor(token, salt)
      const row = tokens.get(hashToken(token).toString('hex'))
      if (row === undefined) return null
      if (row.unused) return row.usable ? token : null
      salt = row.salt
    }
    return null
  }

  /**
   * Ends a session whose refresh-token reuse was recorded: an ordinary revoking
   * transaction (Redis before COMMIT). With Redis unreachable it changes nothing now;
   * replayReuses() tries again until it lands.
   */
  private async endReused (userId: string, sid: string): Promise<void> {
    try {
      await this.revocation.revoke(async (client, revoked) => {
        await this.revocation.holdUser(client, userId)
        if (await this.repository.endReused(sid, client)) revoked.session(userId, sid, 'refresh_reuse')
      })
    } catch (err) {
      this.log.warn({ err: { message: (err as Error).message }, sessionId: sid }, 'refresh-token reuse recorded; the session ends once Redis can be written')
    }
  }

  /** Ends the sessions whose reuse was recorded but not yet applied (oldest first); how many tried. */
  async replayReuses (): Promise<number> {
    if (!this.revocation.canRevoke()) return 0
    const pending = await this.repository.listReusedLive(100)
    for (const { userId, sid } of pending) await this.endReused(userId, sid)
    return pending.length
  }

  /**
   * Ends one session of a user: its access and refresh tokens. False if there was none
   * live (unknown, someone else's, already ended, or dead through the user's revoked_after).
   * `event` is recorded in the same transaction when it does end. With `callerSid`, the
   * caller's own session must be live when it commits. `reason` is what the security
   * event about it says (a logout unless told otherwise).
   */
  async end (userId: string, sid: string, event?: AuditRecord, callerSid?: string | null, reason: RevocationReason = 'logout'): Promise<boolean> {
    return await this.revocation.revoke(async (client, revoked) => {
      await this.revocation.requireLiveSession(client, userId, callerSid)
      await this.revocation.holdUser(client, userId)
      if (!await this.repository.revoke(userId, sid, client)) return false
      revoked.session(userId, sid, reason)
      if (event !== undefined) await this.audit.record(event, client)
      return true
    })
  }

  /** Ends the caller's current session. */
  async logout (userId: string, sid: string, ctx: AuditContext): Promise<void> {
    await this.end(userId, sid, { ...ctx, type: 'logout', subjectId: userId, detail: { sessionId: sid } })
  }

  /**
   * Ends every session of the user; the caller's session (none for the operator at the
   * command line) must be live when it commits.
   */
  async endAll (userId: string, ctx: ChangeContext): Promise<void> {
    await this.revocation.revoke(async (client, revoked) => {
      await this.revocation.requireLiveSession(client, userId, ctx.sessionId)
      const revokedAfterUs = await this.repository.revokeAll(userId, client)
      if (revokedAfterUs === null) return
      revoked.user(userId, revokedAfterUs, 'logout_all')
      await this.audit.record({ ...ctx, type: 'logout_all', subjectId: userId }, client)
    })
  }

  /**
   * Ends one of the caller's own sessions; anyone else's is "not found", never "forbidden".
   * The caller's session must be live when it commits.
   */
  async endOwn (userId: string, sid: string, ctx: AuditContext): Promise<void> {
    const event: AuditRecord = { ...ctx, type: 'session_revoked', subjectId: userId, detail: { sessionId: sid } }
    if (!await this.end(userId, sid, event, ctx.sessionId, 'session_deleted')) throw new NotFound('Session not found')
  }

  /** The user's live sessions, newest first; `current` marks the caller's. */
  async list (userId: string, currentSid: string): Promise<Session[]> {
    const sessions = await this.repository.listLive(userId)
    return sessions.map((s) => ({ ...s, current: s.id === currentSid }))
  }

  /**
   * Deletes sessions that can no longer be used: expired, or revoked (revoked_after
   * included, see migrations/003) longer ago than an access token lives, in batches; and
   * clears the grace salts whose interval has passed. Deleting is always safe: a token
   * whose session row is gone is refused (see docs/revocation.md). How many sessions.
   */
  async purgeExpired (accessTtl: number): Promise<number> {
    while (await this.repository.clearSalts(this.settings.reuseInterval, PURGE_BATCH) === PURGE_BATCH);
    let total = 0
    for (;;) {
      const n = await this.repository.deleteEnded(accessTtl, PURGE_BATCH)
      total += n
      if (n < PURGE_BATCH) return total
    }
  }
}
