// Account recovery: single-use tokens (a password reset, the proof of an email address),
// the flows that mail them, and a user's own email. The design: docs/recovery.md.
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { FastifyBaseLogger } from 'fastify'
import type { Redis, Result } from 'ioredis'
import { BoundedMap } from '../../../lib/bounded-map.js'
import type { User } from '../../../schemas/users.js'
import { Conflict, InvalidRecoveryToken, InvalidToken, NotConfigured, tooManyRequests, WeakPassword } from '../../../lib/errors.js'
import { passwordProblem } from '../../../lib/password-policy.js'
import type { Db, Queryable } from '../../external/db.js'
import type { Mail, Outgoing } from '../../external/mail.js'
import type { AuditContext, AuditService } from '../audit/audit-service.js'
import type { EventsService } from '../events/events-service.js'
import type { LockoutService } from '../lockout/lockout-service.js'
import type { RevocationService } from '../revocation/revocation-service.js'
import { hashToken } from '../sessions/sessions-service.js'
import type { UsersRepository } from '../users/users-repository.js'
import type { UserService } from '../users/users-service.js'
import type { RecoveryPurpose, RecoveryRepository } from './recovery-repository.js'

declare module 'ioredis' {
  interface RedisCommander<Context> {
    authAccountLimit(key: string, windowMs: number): Result<[number, number], Context>
  }
}

/** A token works for 30 minutes (the contract): long enough to read a mail, short for a thief. */
export const RECOVERY_TOKEN_TTL_S = 30 * 60
/** RECOVERY_ACCOUNT_LIMIT counts the mails asked for one account in this window. */
const ACCOUNT_WINDOW_MS = 60 * 60_000
/** Account names whose mail counts one process keeps at most without Redis (the oldest go first). */
export const MEMORY_ACCOUNTS = 10_000
/** The 501 of a flow that must send mail, without SMTP_URL. */
const MAIL_OFF = 'Mail is not configured on this service: set SMTP_URL and MAIL_FROM'
/** Expired tokens deleted per statement by the purge. */
const PURGE_BATCH = 5000

const ACCOUNT_LIMIT_LUA = readFileSync(new URL('account-limit.lua', import.meta.url), 'utf8')

export interface RecoverySettings {
  /** RECOVERY_ACCOUNT_LIMIT: mails per hour per account. */
  accountLimit: number
  /** APP_URL: where the links in mails point; unset, mails carry the token alone. */
  appUrl?: string
}

// 256 random bits, as for refresh tokens; stored as SHA-256 (hashToken).
function newToken (): string {
  return randomBytes(32).toString('base64url')
}

export class RecoveryService {
  /** The per-account mail counts of a run without Redis. */
  readonly memoryCounts = new BoundedMap<string, { count: number, endsAt: number }>(MEMORY_ACCOUNTS)

  constructor (
    private readonly db: Db,
    readonly repository: RecoveryRepository,
    private readonly users: UsersRepository,
    private readonly userService: UserService,
    private readonly revocation: RevocationService,
    private readonly audit: AuditService,
    private readonly lockout: LockoutService,
    private readonly mail: Mail,
    /** Null on a single instance without Redis: then only the per-client limit applies. */
    private readonly redis: Redis | null,
    private readonly log: FastifyBaseLogger,
    private readonly settings: RecoverySettings,
    /** Security events for other services: the reset is a credential change (plugins/app/events/). */
    private readonly events?: EventsService
  ) {
    redis?.defineCommand('authAccountLimit', { numberOfKeys: 1, lua: ACCOUNT_LIMIT_LUA })
  }

  /**
   * A password-reset token for the user, valid 30 minutes, for POST /auth/password/reset;
   * the user's older reset tokens stop working. With `client`, inside the caller's
   * transaction (an admin's temporary password: the token exists only if that commits).
   * It dies with any password change after it (migrations/006).
   */
  async issueReset (userId: string, client?: Queryable): Promise<string> {
    return await this.issue(userId, 'password_reset', null, client)
  }

  private async issue (userId: string, purpose: RecoveryPurpose, email: string | null, client?: Queryable): Promise<string> {
    const token = newToken()
    await this.repository.insert(hashToken(token), userId, purpose, email, RECOVERY_TOKEN_TTL_S, client)
    return token
  }

  private link (path: string, token: string): string {
    return this.settings.appUrl === undefined ? '' : `${this.settings.appUrl.replace(/\/+$/, '')}/${path}?token=${token}`
  }

  /**
   * Counts a mail asked for an account (`key`: the name it was asked by, lower-cased, so
   * that the count says nothing about whether the account exists); 429 over the limit.
   * Without Redis (one instance), the counts are this process's, capped (MEMORY_ACCOUNTS).
   * Redis down: not counted (the per-client limit and the mail queue's bound remain).
   */
  private async limitAccount (key: string): Promise<void> {
    let count: number, ttlMs: number
    if (this.redis === null) {
      [count, ttlMs] = this.countInMemory(key.toLowerCase())
    } else {
      try {
        [count, ttlMs] = await this.redis.authAccountLimit(`{recovery:${key.toLowerCase()}}`, ACCOUNT_WINDOW_MS)
      } catch (err) {
        this.log.warn({ err: { message: (err as Error).message } }, 'recovery mail limit not counted: Redis unavailable')
        return
      }
    }
    if (count > this.settings.accountLimit) {
      throw tooManyRequests('Too many requests for this account, try again later', Math.max(1, Math.ceil(ttlMs / 1000)))
    }
  }

  /** account-limit.lua for one process: a fixed window from the first mail asked; [count, ms left]. */
  private countInMemory (key: string, now = Date.now()): [number, number] {
    const window = this.memoryCounts.get(key, now)
    if (window === undefined) {
      this.memoryCounts.set(key, { count: 1, endsAt: now + ACCOUNT_WINDOW_MS }, ACCOUNT_WINDOW_MS, now)
      return [1, ACCOUNT_WINDOW_MS]
    }
    window.count++
    return [window.count, window.endsAt - now]
  }

  /**
   * POST /auth/password/forgot: the same answer, after the same work, whether or not `name`
   * (a username, or an email) finds an account. The request only counts it; the lookup, the
   * token and the mail (to a verified address only) happen after the answer, in the mail
   * queue, so neither the time nor the body can tell the caller anything.
   */
  async forgot (name: string, ctx: AuditContext): Promise<void> {
    if (!this.mail.enabled) throw new NotConfigured(MAIL_OFF)
    await this.limitAccount(name)
    this.mail.later('password-reset', async () => {
      const account = await this.users.findAccount(name)
      const to = account !== null && !account.disabled && account.emailVerified ? account.email : null
      const event = { ...ctx, type: 'password_reset_requested' as const, subjectId: account?.id ?? null, detail: { username: name, mailed: to !== null } }
      if (account === null || to === null) {
        await this.audit.record(event)
        return null
      }
      const token = await this.db.transact(async (client) => {
        const issued = await this.issueReset(account.id, client)
        await this.audit.record(event, client)
        return issued
      })
      return this.outgoing(to, account.username, token, 'reset-password')
    })
  }

  private outgoing (to: string, username: string, token: string, path: string): Outgoing {
    return { to, vars: { username, email: to, token, link: this.link(path, token), minutes: String(RECOVERY_TOKEN_TTL_S / 60) } }
  }

  /**
   * POST /auth/password/reset: sets the password and ends every session of the user
   * (through the revocation path: Redis before COMMIT), using the token up. The password
   * rules apply (a weak one leaves the token unused). The username's failed-login locks
   * are cleared: the holder has just proven the account is theirs.
   */
  async resetPassword (token: string, newPassword: string, ctx: AuditContext): Promise<void> {
    const hash = hashToken(token)
    // Checked before argon2 runs: an unknown token costs no hash.
    const holder = await this.repository.find(hash, 'password_reset')
    if (holder === null) throw new InvalidRecoveryToken()
    const problem = passwordProblem(newPassword, holder.username)
    if (problem !== null) throw new WeakPassword(problem)
    const passwordHash = await this.userService.hash(newPassword)
    const userId = await this.revocation.revoke(async (client, revoked) => {
      const taken = await this.repository.take(hash, 'password_reset', client)
      if (taken === null) throw new InvalidRecoveryToken()
      revoked.user(taken.userId, await this.users.resetPassword(taken.userId, passwordHash, client), 'password_changed')
      await this.audit.record({ ...ctx, type: 'password_reset', actorId: taken.userId, subjectId: taken.userId }, client)
      await this.events?.credentialChange(client, taken.userId, { credentialType: 'password', changeType: 'update', initiatingEntity: 'user' })
      return taken.userId
    })
    await this.lockout.clear(holder.username).catch((err: Error) => {
      this.log.warn({ err: { message: err.message }, userId }, 'failed-login locks not cleared after a password reset')
    })
  }

  /** POST /auth/email/verify: the address the token was mailed to is the user's, and still their email. */
  async verifyEmail (token: string, ctx: AuditContext): Promise<void> {
    await this.db.transact(async (client) => {
      const taken = await this.repository.take(hashToken(token), 'email_verify', client)
      if (taken === null || taken.email === null || !await this.users.verifyEmail(taken.userId, taken.email, client)) {
        throw new InvalidRecoveryToken()
      }
      await this.audit.record({ ...ctx, type: 'email_verified', actorId: taken.userId, subjectId: taken.userId }, client)
    })
  }

  /**
   * Queues the verification mail of a user's email (after a registration with one). Nothing
   * without mail: the address stays unverified until the user asks again (PATCH /auth/me).
   */
  sendVerification (user: User): void {
    const email = user.email
    if (!this.mail.enabled || email === null || user.emailVerified) return
    this.mail.later('email-verify', async () => this.outgoing(email, user.username, await this.issue(user.id, 'email_verify', email), 'verify-email'))
  }

  /**
   * PATCH /auth/me: sets (or with null removes) the caller's email. A new address starts
   * unverified and gets a verification mail; the same address, still unverified, gets the
   * mail again. The caller's session must be live when it commits. 409 when another
   * account has the address; 501 without mail for a change that needs one.
   */
  async changeEmail (userId: string, email: string | null | undefined, ctx: AuditContext): Promise<User> {
    if (email === undefined) return await this.userService.getById(userId)
    if (email !== null) {
      if (!this.mail.enabled) throw new NotConfigured(MAIL_OFF)
      await this.limitAccount(`user:${userId}`)
    }
    const { user, token } = await this.db.transact(async (client) => {
      await this.revocation.requireLiveSession(client, userId, ctx.sessionId)
      const current = await this.users.lock({ id: userId }, client)
      // (Unreachable: the live session above needs its user.)
      if (current === null) throw new InvalidToken('Access token has been revoked')
      const user = await this.users.setEmail(userId, email, client)
      if (user === 'email_taken' || user === 'username_taken') throw new Conflict('Email is already in use')
      if (user.email !== current.email) {
        await this.audit.record({ ...ctx, type: 'email_changed', subjectId: userId, detail: { removed: user.email === null } }, client)
      }
      const token = user.email !== null && !user.emailVerified ? await this.issue(userId, 'email_verify', user.email, client) : null
      return { user, token }
    })
    const to = user.email
    if (token !== null && to !== null) this.mail.later('email-verify', async () => this.outgoing(to, user.username, token, 'verify-email'))
    return user
  }

  /** Deletes expired tokens, in batches; how many. */
  async purgeExpired (): Promise<number> {
    let total = 0
    for (;;) {
      const n = await this.repository.deleteExpired(PURGE_BATCH)
      total += n
      if (n < PURGE_BATCH) return total
    }
  }
}
