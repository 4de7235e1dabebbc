// The revocation cache and the revoking transactions (docs/revocation.md). Without Redis
// (a single instance, lib/local-mode.ts) there is no cache: every check takes the path it
// takes while Redis is unreachable, a read of PostgreSQL, and revoking transactions have
// nothing to write but PostgreSQL ("Without Redis" in docs/revocation.md).
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { FastifyBaseLogger } from 'fastify'
import type { Redis, Result } from 'ioredis'
import { checkFields, decide as decideCached, PROTOCOL_KEY, PROTOCOL_VERSION, userKey } from '@auth-service/fastify-resource-server/protocol'
import { InvalidToken, Unavailable } from '../../../lib/errors.js'
import { withTimeout } from '../../../lib/timeout.js'
import type { Db, Queryable } from '../../external/db.js'
import type { Metrics } from '../../external/metrics.js'
import type { RevocationRepository, TokenState } from './revocation-repository.js'

declare module 'ioredis' {
  interface RedisCommander<Context> {
    authRevoke(key: string, ra: string, until: number, ...sids: string[]): Result<number, Context>
    authFill(key: string, ra: string, sid: string, state: string, until: number, epoch: string): Result<number, Context>
    authEpoch(key: string, candidate: string, until: number): Result<string, Context>
  }
}

// The scripts, beside this file (`npm run build` copies them into dist/). trim.lua is the
// part of fill.lua and revoke.lua that keeps a hash bounded.
const script = (name: string) => readFileSync(new URL(name, import.meta.url), 'utf8')
const TRIM_LUA = script('trim.lua')
const REVOKE_LUA = TRIM_LUA + script('revoke.lua')
const FILL_LUA = TRIM_LUA + script('fill.lua')
const EPOCH_LUA = script('epoch.lua')

/** How long Redis is left alone after a failed command (a simple circuit breaker). */
const BREAKER_OPEN_MS = 1000
/**
 * A read of the truth on the request path gives up after this long (503): with Redis
 * down every request reads PostgreSQL, and the contract wants an answer within 1 s.
 */
const READ_TIMEOUT_MS = 800
/** A committed revocation whose post-commit Redis write failed is retried this often… */
const RETRY_EVERY_MS = 500
/** …for this long, and at most this many are kept (the pre-commit write already landed). */
const RETRY_FOR_MS = 10 * 60_000
const RETRY_MAX = 10_000
/**
 * Added to every field's expiry in Redis: instances check a token's `exp` with their own
 * clocks, Redis trims with its own. Clocks are assumed NTP-close; trimming a field early
 * would only cost a PostgreSQL read (docs/revocation.md, "Keeping the hashes small").
 */
const CLOCK_SLACK_S = 2

/**
 * Why sessions ended: what a security event tells receivers (plugins/app/events/). A
 * revoking call that names none still ends the sessions and sends the plain
 * session-revoked event.
 */
export type RevocationReason = 'logout' | 'logout_all' | 'session_deleted' | 'refresh_reuse' | 'password_changed' |
  'role_changed' | 'user_disabled' | 'user_deleted' | 'lockout' | 'revoked'

/** One revocation as it happened: a session, or every session of a user (`sid` null). */
export interface Revoked {
  userId: string
  sid: string | null
  reason: RevocationReason
}

/**
 * Runs inside every revoking transaction, after its SQL and before the Redis write: the
 * outbox of security events is written here, so that every kind of revocation commits its
 * events with it, or neither.
 */
export type RevocationHook = (client: Queryable, revoked: readonly Revoked[]) => Promise<void>

/** Revocations collected during one transaction, written to Redis before and after COMMIT. */
export class RevocationSet {
  readonly users = new Map<string, { ra: string, sids: string[] }>()
  /** In the order they were made. */
  readonly events: Revoked[] = []

  private entry (userId: string) {
    let e = this.users.get(userId)
    if (!e) {
      e = { ra: '', sids: [] }
      this.users.set(userId, e)
    }
    return e
  }

  /** The session is dead (logout, session deleted, refresh-token reuse). */
  session (userId: string, sid: string, reason: RevocationReason = 'revoked'): void {
    this.entry(userId).sids.push(sid)
    this.events.push({ userId, sid, reason })
  }

  /** Every session of the user created at or before `revokedAfterUs` is dead. */
  user (userId: string, revokedAfterUs: string | number, reason: RevocationReason = 'revoked'): void {
    const e = this.entry(userId)
    if (e.ra === '' || Number(e.ra) < Number(revokedAfterUs)) e.ra = String(revokedAfterUs)
    this.events.push({ userId, sid: null, reason })
  }
}

export class RevocationService {
  private openUntil = 0
  /** Epochs this process creates: a random prefix and a counter are unique enough. */
  private readonly epochPrefix = randomBytes(6).toString('base64url')
  private epochCounter = 0
  private backlog: Array<{ set: RevocationSet, until: number }> = []
  private retryTimer: NodeJS.Timeout | undefined
  private readonly hooks: RevocationHook[] = []
  private readonly committedHooks: Array<() => void> = []
  /** The readThroughs metric's label for a check answered from PostgreSQL without asking Redis. */
  private readonly fallbackReason: 'redis_unavailable' | 'no_redis'

  constructor (
    /** Null: no Redis at all (a single instance); the cache is then absent, not stale. */
    private readonly redis: Redis | null,
    private readonly db: Db,
    /** Reads the truth; a test may wrap `readState` to hold a read-through mid-way. */
    readonly repository: RevocationRepository,
    private readonly log: FastifyBaseLogger,
    /** ACCESS_TOKEN_TTL: how long a token issued now can be presented. */
    private readonly accessTtl: number,
    private readonly metrics?: Metrics
  ) {
    this.fallbackReason = redis === null ? 'no_redis' : 'redis_unavailable'
    redis?.defineCommand('authRevoke', { numberOfKeys: 1, lua: REVOKE_LUA })
    redis?.defineCommand('authFill', { numberOfKeys: 1, lua: FILL_LUA })
    redis?.defineCommand('authEpoch', { numberOfKeys: 1, lua: EPOCH_LUA })
  }

  /** The user's hash (the Redis protocol's key, docs/revocation.md): one cluster slot per user. */
  static key (userId: string): string {
    return userKey(userId)
  }

  /**
   * Writes the protocol marker that readers of the cache (the resource-server plugin)
   * check before they trust it. At start-up, and again whenever a user's hash had to be
   * re-created (the marker may have gone with it in a FLUSHALL).
   */
  async announceProtocol (): Promise<void> {
    await this.redis?.set(PROTOCOL_KEY, PROTOCOL_VERSION)
  }

  /** The client while Redis is connected and the breaker closed; else null (also without Redis). */
  private usable (): Redis | null {
    return this.redis !== null && this.redis.status === 'ready' && Date.now() >= this.openUntil ? this.redis : null
  }

  /** Connected, and the breaker is closed. */
  redisUsable (): boolean {
    return this.usable() !== null
  }

  /**
   * A revoking transaction can commit now: Redis can be written before COMMIT, or there is
   * no Redis to keep in step (a single instance, where PostgreSQL alone decides).
   */
  canRevoke (): boolean {
    return this.redis === null || this.usable() !== null
  }

  private trip (err: unknown): void {
    if (Date.now() >= this.openUntil) {
      this.metrics?.breakerTrips.inc()
      this.log.warn({ err: { message: (err as Error).message } }, 'Redis failed: answering from PostgreSQL for a while')
    }
    this.openUntil = Date.now() + BREAKER_OPEN_MS
  }

  /**
   * Until when (unix s) a field written now about a dead session is needed: any token of
   * it was issued before now, so it expires within ACCESS_TOKEN_TTL.
   */
  private deadUntil (): number {
    return Math.floor(Date.now() / 1000) + this.accessTtl + CLOCK_SLACK_S
  }

  /**
   * Is the token of session `sid` of user `sub`, whose session was created at `sca`
   * (µs, database clock), still live? `exp` is the token's own expiry (unix s): how long
   * a cached answer about it is worth keeping. Warm cache: one HMGET and nothing else.
   */
  isLive (sub: string, sid: string, sca: number, exp?: number): Promise<boolean> {
    const redis = this.usable()
    if (redis === null) return this.fromPostgres(sub, sid, sca)
    // One promise on the hot path (the HMGET's), not one per async function it passes.
    // The fields and the decision are the Redis protocol's, shared with the plugin that
    // other services use; `e` (the epoch) is this service's own, for the read-through.
    return redis.hmget(RevocationService.key(sub), ...checkFields(sid), 'e').then((values) => {
      const cached = decideCached(values, sca)
      if (cached !== 'unknown') return cached === 'live'
      return this.readThrough(redis, sub, sid, sca, values[values.length - 1], exp)
    }, (err: unknown) => {
      this.trip(err)
      return this.fromPostgres(sub, sid, sca)
    })
  }

  private readState (sub: string, sid: string): Promise<TokenState | null> {
    // Bounded: a PostgreSQL that hangs costs this request a 503, not a stuck socket.
    return withTimeout(this.repository.readState(sub, sid), READ_TIMEOUT_MS, () => new Unavailable('postgres'))
  }

  /** Redis unreachable (or its breaker open, or none at all): decide from PostgreSQL alone, fill nothing. */
  private async fromPostgres (sub: string, sid: string, sca: number): Promise<boolean> {
    this.metrics?.readThroughs.inc({ reason: this.fallbackReason })
    return decide(await this.readState(sub, sid), sca)
  }

  /**
   * Cache miss (first use, eviction, FLUSHALL): pin the hash's epoch, read PostgreSQL,
   * decide, and fill Redis if the epoch is still the same (docs/revocation.md, "the race").
   */
  private async readThrough (redis: Redis, sub: string, sid: string, sca: number, seen: string | null, exp: number | undefined): Promise<boolean> {
    this.metrics?.readThroughs.inc({ reason: 'miss' })
    const key = RevocationService.key(sub)
    // A live answer is kept as long as the presented token lives; a later token of the
    // same session (after a refresh) misses once more when it is gone.
    const liveUntil = exp === undefined ? this.deadUntil() : exp + CLOCK_SLACK_S
    let epoch = seen
    try {
      if (epoch === null) {
        // No hash: first use, or Redis was emptied, and the marker may be gone with it.
        this.announceProtocol().catch(() => {})
        epoch = await redis.authEpoch(key, `${this.epochPrefix}.${++this.epochCounter}`, liveUntil)
      }
    } catch (err) {
      this.trip(err)
      return decide(await this.readState(sub, sid), sca)
    }
    const state = await this.readState(sub, sid)
    let filled: number
    try {
      const live = state?.live === true
      filled = await redis.authFill(key, state?.ra ?? '', sid, live ? 'ok' : 'x', live ? liveUntil : this.deadUntil(), epoch)
    } catch (err) {
      // A fill that times out may still land later: the epoch check makes that harmless.
      this.trip(err)
      return decide(state, sca)
    }
    if (filled === 1) return decide(state, sca)
    // The key was emptied after we pinned its epoch. A revocation that committed after our
    // read may have had its Redis write erased: read the truth again (it now includes any
    // such revocation) and write back what it says is dead; "live" is left for a later fill.
    const again = await this.readState(sub, sid)
    if (!decide(again, sca)) {
      await redis.authRevoke(key, again?.ra ?? '', this.deadUntil(), ...(again?.live === true ? [] : [sid]))
        .catch((err: unknown) => this.trip(err))
    }
    return decide(again, sca)
  }

  /**
   * Inside a write's transaction: the caller's session must still be live when the write
   * commits, not only when its request came in (the revocation promise holds at commit).
   * No session (a call without a signed-in caller): nothing to check.
   *
   * The user's row and the session's are locked until COMMIT, so whatever would end the
   * session waits for the write or is seen by it. Unless `userLocked`: the caller holds
   * the user's row FOR UPDATE already (an admin's change), and the session is only read,
   * since locking it then could deadlock with a refresh that holds it and waits for the
   * user's row; ending a session takes a share of the user's row first (holdUser()), so
   * it cannot commit between this read and our COMMIT either.
   */
  async requireLiveSession (client: Queryable, userId: string | null, sid: string | null | undefined, opts: { userLocked?: boolean } = {}): Promise<void> {
    if (userId === null || sid == null) return
    if (!await this.repository.sessionLive(userId, sid, client, opts.userLocked !== true)) {
      throw new InvalidToken('Access token has been revoked')
    }
  }

  /**
   * Inside a transaction about to end one of the user's sessions, before it touches the
   * session: a share of the user's row until COMMIT. A write that holds that row (an
   * admin's change, checked at commit) then commits before the end of its own session
   * or sees it; and the lock order, user before session, is the one a deletion of the
   * user follows too (its row, then its sessions), so the two never deadlock.
   */
  async holdUser (client: Queryable, userId: string): Promise<void> {
    await this.repository.holdUser(userId, client)
  }

  private async write (set: RevocationSet): Promise<void> {
    // Without Redis there is no cache that could lag behind PostgreSQL: every check reads it.
    if (set.users.size === 0 || this.redis === null) return
    const redis = this.usable()
    if (redis === null) {
      this.metrics?.revocationsRefused.inc()
      throw new Unavailable('redis')
    }
    try {
      await this.writeNow(redis, set)
    } catch (err) {
      this.trip(err)
      this.metrics?.revocationsRefused.inc()
      throw new Unavailable('redis')
    }
  }

  private async writeNow (redis: Redis, set: RevocationSet): Promise<void> {
    const until = this.deadUntil()
    await Promise.all([...set.users].map(([userId, e]) =>
      redis.authRevoke(RevocationService.key(userId), e.ra, until, ...e.sids)))
  }

  /**
   * Runs `fn` in a PostgreSQL transaction and writes the revocations it collected to
   * Redis before COMMIT (Redis unreachable: roll back, 503, nothing changed) and once
   * more after it. Redis is therefore never laxer than PostgreSQL at any moment a
   * request could observe, and the revoking call returns only when both hold.
   */
  async revoke<T>(fn: (client: Queryable, revoked: RevocationSet) => Promise<T>): Promise<T> {
    const set = new RevocationSet()
    const result = await this.db.transact(async (client) => {
      const r = await fn(client, set)
      if (set.events.length > 0) {
        for (const hook of this.hooks) await hook(client, set.events)
      }
      await this.write(set)
      return r
    })
    if (set.events.length > 0) for (const committed of this.committedHooks) committed()
    for (const e of set.users.values()) {
      if (e.ra !== '') this.metrics?.revocations.inc({ kind: 'user' })
      if (e.sids.length > 0) this.metrics?.revocations.inc({ kind: 'session' }, e.sids.length)
    }
    if (set.users.size > 0 && this.redis !== null) {
      await this.writeNow(this.redis, set).catch((err: unknown) => {
        // Committed, and the pre-commit write landed: only the flush-race guard is lost
        // until the retry lands (a FLUSHALL in between would otherwise erase both writes).
        this.trip(err)
        this.log.warn({ err: { message: (err as Error).message } }, 'post-commit revocation write failed: retrying in the background')
        this.retryLater(set)
      })
    }
    return result
  }

  private retryLater (set: RevocationSet): void {
    if (this.backlog.length >= RETRY_MAX) {
      this.log.error('post-commit revocation backlog full: dropping the oldest')
      this.backlog.shift()
    }
    this.backlog.push({ set, until: Date.now() + RETRY_FOR_MS })
    this.retryTimer ??= setInterval(() => { this.drain().catch(() => {}) }, RETRY_EVERY_MS).unref()
  }

  /** Re-applies the post-commit writes that failed, oldest first, while Redis answers. */
  async drain (): Promise<void> {
    const now = Date.now()
    this.backlog = this.backlog.filter((b) => b.until > now)
    for (let redis = this.usable(); this.backlog.length > 0 && redis !== null; redis = this.usable()) {
      try {
        await this.writeNow(redis, this.backlog[0].set)
        this.backlog.shift()
      } catch (err) {
        this.trip(err)
      }
    }
    if (this.backlog.length === 0 && this.retryTimer !== undefined) {
      clearInterval(this.retryTimer)
      this.retryTimer = undefined
    }
  }

  /**
   * `hook` runs in every revoking transaction that revoked something (see RevocationHook);
   * `committed`, if given, after each such transaction committed.
   */
  onRevoke (hook: RevocationHook, committed?: () => void): void {
    this.hooks.push(hook)
    if (committed !== undefined) this.committedHooks.push(committed)
  }

  /** Pending post-commit writes (for /metrics). */
  get backlogSize (): number {
    return this.backlog.length
  }

  async close (): Promise<void> {
    await this.drain().catch(() => {})
    clearInterval(this.retryTimer)
    this.retryTimer = undefined
  }
}

/** A token is live when its session is, and the session began after the user's revoked_after. */
function decide (state: TokenState | null, sca: number): boolean {
  return state !== null && state.live && sca > Number(state.ra)
}
