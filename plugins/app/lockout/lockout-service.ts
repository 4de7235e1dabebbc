// Failed logins in a row per username, counted in Redis so that every instance sees
// them, and a lock that grows with each further failure.
import { readFileSync } from 'node:fs'
import type { FastifyBaseLogger } from 'fastify'
import type { Redis, Result } from 'ioredis'
import type { AuditContext, AuditService } from '../audit/audit-service.js'

declare module 'ioredis' {
  interface RedisCommander<Context> {
    authLoginFailed(counter: string, lock: string, threshold: number, baseMs: number, maxMs: number, keepMs: number): Result<number, Context>
  }
}

// The script, beside this file (`npm run build` copies it into dist/).
const FAILED_LUA = readFileSync(new URL('login-failed.lua', import.meta.url), 'utf8')

/** First lock 30 s, doubling with each further failure, at most 15 minutes. */
const BASE_LOCK_MS = 30_000
const MAX_LOCK_MS = 15 * 60_000
/** Failures older than a day without a success are forgotten. */
const KEEP_FAILURES_MS = 24 * 60 * 60_000

export class LockoutService {
  constructor (
    private readonly redis: Redis,
    private readonly audit: AuditService,
    private readonly log: FastifyBaseLogger,
    readonly threshold: number
  ) {
    redis.defineCommand('authLoginFailed', { numberOfKeys: 2, lua: FAILED_LUA })
  }

  // Keyed by the lower-cased username whether or not the user exists, so a lockout
  // says nothing about which usernames are registered.
  private keys (username: string): [string, string] {
    const tag = `{lock:${username.toLowerCase()}}`
    return [`${tag}:failures`, `${tag}:locked`]
  }

  /**
   * Seconds until the username may try again, or 0; an attempt refused for it is recorded.
   * Fails open when Redis is down.
   */
  async retryAfter (username: string, ctx: AuditContext): Promise<number> {
    let ms: number
    try {
      ms = await this.redis.pttl(this.keys(username)[1])
    } catch (err) {
      this.log.warn({ err: { message: (err as Error).message } }, 'lockout check skipped: Redis unavailable')
      return 0
    }
    if (ms <= 0) return 0
    // The subject is the username's user when there is one, found by the INSERT itself: the
    // 429 is the same either way, so the lockout still says nothing about which names exist.
    await this.audit.record({ ...ctx, type: 'login_locked', subjectUsername: username, detail: { username } })
    return Math.ceil(ms / 1000)
  }

  /** Records a failed login; returns the failures in a row so far (0 if unknown). */
  async failed (username: string): Promise<number> {
    try {
      const [counter, lock] = this.keys(username)
      return await this.redis.authLoginFailed(counter, lock, this.threshold, BASE_LOCK_MS, MAX_LOCK_MS, KEEP_FAILURES_MS)
    } catch (err) {
      this.log.warn({ err: { message: (err as Error).message } }, 'failed login not counted: Redis unavailable')
      return 0
    }
  }

  /** A successful login ends the run of failures. */
  async succeeded (username: string): Promise<void> {
    await this.redis.del(...this.keys(username)).catch(() => {})
  }
}
