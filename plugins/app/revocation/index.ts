// Provides `fastify.revocation`: is a token's session still live (one Redis round trip on
// the hot path), and revoking transactions that keep Redis never laxer than PostgreSQL.
// The design, its invariants and its failure modes: docs/revocation.md.
import { randomBytes } from 'node:crypto'
import fp from 'fastify-plugin'
import type { FastifyBaseLogger } from 'fastify'
import type { PoolClient } from 'pg'
import type { Redis, Result } from 'ioredis'
import { Unavailable } from '../../../lib/errors.js'
import { epochUs } from '../../external/db.js'
import { withTimeout } from '../../../lib/timeout.js'
import type { Metrics } from '../../external/metrics.js'

declare module 'fastify' {
  interface FastifyInstance {
    revocation: RevocationService
  }
}

declare module 'ioredis' {
  interface RedisCommander<Context> {
    authRevoke(key: string, ra: string, ttlMs: number, ...sids: string[]): Result<number, Context>
    authFill(key: string, ra: string, sid: string, state: string, ttlMs: number, epoch: string): Result<number, Context>
    authEpoch(key: string, candidate: string, ttlMs: number): Result<string, Context>
  }
}

// Raise `ra` (never lower it); when it rises, every session created before it is dead
// through `ra` alone, so the per-session fields are dropped (that is the trimming).
// Then mark the given sessions dead.
const REVOKE_LUA = `
local key = KEYS[1]
local ra = ARGV[1]
if ra ~= '' then
  local cur = redis.call('HGET', key, 'ra')
  if not cur or tonumber(cur) < tonumber(ra) then
    for _, f in ipairs(redis.call('HKEYS', key)) do
      if string.sub(f, 1, 2) == 's:' then redis.call('HDEL', key, f) end
    end
    redis.call('HSET', key, 'ra', ra)
  end
end
for i = 3, #ARGV do redis.call('HSET', key, 's:' .. ARGV[i], 'x') end
redis.call('PEXPIRE', key, ARGV[2])
return 1`

// The hash's epoch: a random value created once and kept until the key disappears
// (FLUSHALL, restart, eviction, expiry). A read-through pins it before it reads PostgreSQL.
const EPOCH_LUA = `
local e = redis.call('HGET', KEYS[1], 'e')
if e then return e end
redis.call('HSET', KEYS[1], 'e', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return ARGV[1]`

// A read-through fill, applied only if the epoch pinned before the PostgreSQL read is
// still there: if the key was emptied since, a revocation may have committed after our
// read and had its Redis write erased, and our "live" could resurrect it (returns 0,
// writes nothing). Otherwise `ra` only rises, and "ok" is written with HSETNX so that a
// fill that raced a revocation can never overwrite its "x".
const FILL_LUA = `
local key = KEYS[1]
if redis.call('HGET', key, 'e') ~= ARGV[5] then return 0 end
if ARGV[1] ~= '' then
  local cur = redis.call('HGET', key, 'ra')
  if not cur or tonumber(cur) < tonumber(ARGV[1]) then redis.call('HSET', key, 'ra', ARGV[1]) end
end
if ARGV[3] == 'x' then
  redis.call('HSET', key, 's:' .. ARGV[2], 'x')
else
  redis.call('HSETNX', key, 's:' .. ARGV[2], 'ok')
end
redis.call('PEXPIRE', key, ARGV[4])
return 1`

/** The truth about one token's user and session, read from PostgreSQL. */
const STATE_SQL = `
SELECT ${epochUs('u.revoked_after')} AS ra,
       (s.id IS NOT NULL AND s.revoked_at IS NULL AND s.expires_at > now()) AS live
  FROM users u
  LEFT JOIN sessions s ON s.id = $2 AND s.user_id = u.id
 WHERE u.id = $1`

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

export interface RevocationDb {
  query: (text: string, values?: unknown[]) => Promise<{ rows: any[], rowCount: number | null }>
  transact: <T>(fn: (client: PoolClient) => Promise<T>) => Promise<T>
}

/** Revocations collected during one transaction, written to Redis before and after COMMIT. */
export class RevocationSet {
  readonly users = new Map<string, { ra: string, sids: string[] }>()

  private entry (userId: string) {
    let e = this.users.get(userId)
    if (!e) {
      e = { ra: '', sids: [] }
      this.users.set(userId, e)
    }
    return e
  }

  /** The session is dead (logout, session deleted, refresh-token reuse). */
  session (userId: string, sid: string): void {
    this.entry(userId).sids.push(sid)
  }

  /** Every session of the user created at or before `revokedAfterUs` is dead. */
  user (userId: string, revokedAfterUs: string | number): void {
    const e = this.entry(userId)
    if (e.ra === '' || Number(e.ra) < Number(revokedAfterUs)) e.ra = String(revokedAfterUs)
  }
}

export class RevocationService {
  private openUntil = 0
  /** Epochs this process creates: a random prefix and a counter are unique enough. */
  private readonly epochPrefix = randomBytes(6).toString('base64url')
  private epochCounter = 0
  private backlog: Array<{ set: RevocationSet, until: number }> = []
  private retryTimer: NodeJS.Timeout | undefined

  constructor (
    private readonly redis: Redis,
    private readonly db: RevocationDb,
    private readonly log: FastifyBaseLogger,
    private readonly ttlMs: number,
    private readonly metrics?: Metrics
  ) {
    redis.defineCommand('authRevoke', { numberOfKeys: 1, lua: REVOKE_LUA })
    redis.defineCommand('authFill', { numberOfKeys: 1, lua: FILL_LUA })
    redis.defineCommand('authEpoch', { numberOfKeys: 1, lua: EPOCH_LUA })
  }

  /** Hash tag around the user id: all of a user's state lives in one cluster slot. */
  static key (userId: string): string {
    return '{' + userId + '}'
  }

  /** Connected, and the breaker is closed. */
  redisUsable (): boolean {
    return this.redis.status === 'ready' && Date.now() >= this.openUntil
  }

  private trip (err: unknown): void {
    if (Date.now() >= this.openUntil) {
      this.metrics?.breakerTrips.inc()
      this.log.warn({ err: { message: (err as Error).message } }, 'Redis failed: answering from PostgreSQL for a while')
    }
    this.openUntil = Date.now() + BREAKER_OPEN_MS
  }

  /**
   * Is the token of session `sid` of user `sub`, whose session was created at `sca`
   * (µs, database clock), still live? Warm cache: one HMGET and nothing else.
   */
  isLive (sub: string, sid: string, sca: number): Promise<boolean> {
    if (!this.redisUsable()) return this.fromPostgres(sub, sid, sca)
    // One promise on the hot path (the HMGET's), not one per async function it passes.
    return this.redis.hmget(RevocationService.key(sub), 'ra', 's:' + sid, 'e').then(([ra, s, e]) => {
      if (s === 'x') return false
      if (ra !== null) {
        if (sca <= Number(ra)) return false
        if (s === 'ok') return true
      }
      return this.readThrough(sub, sid, sca, e)
    }, (err: unknown) => {
      this.trip(err)
      return this.fromPostgres(sub, sid, sca)
    })
  }

  private async readState (sub: string, sid: string): Promise<{ ra: string, live: boolean } | null> {
    // Bounded: a PostgreSQL that hangs costs this request a 503, not a stuck socket.
    const { rows } = await withTimeout(this.db.query(STATE_SQL, [sub, sid]), READ_TIMEOUT_MS, () => new Unavailable())
    return rows.length === 0 ? null : { ra: rows[0].ra as string, live: rows[0].live as boolean }
  }

  /** Redis unreachable (or its breaker open): decide from PostgreSQL alone, fill nothing. */
  private async fromPostgres (sub: string, sid: string, sca: number): Promise<boolean> {
    this.metrics?.readThroughs.inc({ reason: 'redis_unavailable' })
    return decide(await this.readState(sub, sid), sca)
  }

  /**
   * Cache miss (first use, eviction, FLUSHALL): pin the hash's epoch, read PostgreSQL,
   * decide, and fill Redis if the epoch is still the same (docs/revocation.md, "the race").
   */
  private async readThrough (sub: string, sid: string, sca: number, seen: string | null): Promise<boolean> {
    this.metrics?.readThroughs.inc({ reason: 'miss' })
    const key = RevocationService.key(sub)
    let epoch = seen
    try {
      epoch ??= await this.redis.authEpoch(key, `${this.epochPrefix}.${++this.epochCounter}`, this.ttlMs)
    } catch (err) {
      this.trip(err)
      return decide(await this.readState(sub, sid), sca)
    }
    const state = await this.readState(sub, sid)
    let filled: number
    try {
      filled = await this.redis.authFill(key, state?.ra ?? '', sid, state?.live === true ? 'ok' : 'x', this.ttlMs, epoch)
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
      await this.redis.authRevoke(key, again?.ra ?? '', this.ttlMs, ...(again?.live === true ? [] : [sid]))
        .catch((err: unknown) => this.trip(err))
    }
    return decide(again, sca)
  }

  private async write (set: RevocationSet): Promise<void> {
    if (set.users.size === 0) return
    if (!this.redisUsable()) {
      this.metrics?.revocationsRefused.inc()
      throw new Unavailable()
    }
    try {
      await this.writeNow(set)
    } catch (err) {
      this.trip(err)
      this.metrics?.revocationsRefused.inc()
      throw new Unavailable()
    }
  }

  private async writeNow (set: RevocationSet): Promise<void> {
    await Promise.all([...set.users].map(([userId, e]) =>
      this.redis.authRevoke(RevocationService.key(userId), e.ra, this.ttlMs, ...e.sids)))
  }

  /**
   * Runs `fn` in a PostgreSQL transaction and writes the revocations it collected to
   * Redis before COMMIT (Redis unreachable: roll back, 503, nothing changed) and once
   * more after it. Redis is therefore never laxer than PostgreSQL at any moment a
   * request could observe, and the revoking call returns only when both hold.
   */
  async revoke<T>(fn: (client: PoolClient, revoked: RevocationSet) => Promise<T>): Promise<T> {
    const set = new RevocationSet()
    const result = await this.db.transact(async (client) => {
      const r = await fn(client, set)
      await this.write(set)
      return r
    })
    for (const e of set.users.values()) {
      if (e.ra !== '') this.metrics?.revocations.inc({ kind: 'user' })
      if (e.sids.length > 0) this.metrics?.revocations.inc({ kind: 'session' }, e.sids.length)
    }
    if (set.users.size > 0) {
      await this.writeNow(set).catch((err: unknown) => {
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
    while (this.backlog.length > 0 && this.redisUsable()) {
      try {
        await this.writeNow(this.backlog[0].set)
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
function decide (state: { ra: string, live: boolean } | null, sca: number): boolean {
  return state !== null && state.live && sca > Number(state.ra)
}

export default fp<{ sessionTtlSeconds: number }>(async function revocationPlugin (fastify, opts) {
  const { metrics } = fastify
  const service = new RevocationService(fastify.redis, fastify.db, fastify.log, opts.sessionTtlSeconds * 1000, metrics)
  metrics.gauge('auth_redis_breaker_open', '1 while token checks skip Redis and read PostgreSQL', () => Number(!service.redisUsable()))
  metrics.gauge('auth_revocation_retry_backlog', 'Committed revocations whose post-commit Redis write awaits a retry', () => service.backlogSize)
  fastify.decorate('revocation', service)
  // Before the Redis client closes (onClose hooks run in reverse order): a last try at
  // any post-commit write still pending.
  fastify.addHook('onClose', async () => await service.close())
}, { name: 'revocation', dependencies: ['db', 'redis', 'metrics'] })
