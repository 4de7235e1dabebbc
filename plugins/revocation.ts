// Provides `fastify.revocation`: is a token's session still live (one Redis round trip on
// the hot path), and revoking transactions that keep Redis never laxer than PostgreSQL.
// The design, its invariants and its failure modes: docs/revocation.md.
import fp from 'fastify-plugin'
import type { FastifyBaseLogger } from 'fastify'
import type { PoolClient } from 'pg'
import type { Redis, Result } from 'ioredis'
import { Unavailable } from './errors.js'

declare module 'fastify' {
  interface FastifyInstance {
    revocation: RevocationService
  }
}

declare module 'ioredis' {
  interface RedisCommander<Context> {
    authRevoke(key: string, ra: string, ttlMs: number, ...sids: string[]): Result<number, Context>
    authFill(key: string, ra: string, sid: string, state: string, ttlMs: number): Result<number, Context>
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

// A read-through fill: `ra` only rises, and "ok" is written with HSETNX so that a fill
// that raced a revocation can never overwrite its "x".
const FILL_LUA = `
local key = KEYS[1]
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
SELECT (extract(epoch FROM u.revoked_after) * 1000000)::bigint AS ra,
       (s.id IS NOT NULL AND s.revoked_at IS NULL AND s.expires_at > now()) AS live
  FROM users u
  LEFT JOIN sessions s ON s.id = $2 AND s.user_id = u.id
 WHERE u.id = $1`

/** How long Redis is left alone after a failed command (a simple circuit breaker). */
const BREAKER_OPEN_MS = 1000

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

  constructor (
    private readonly redis: Redis,
    private readonly db: RevocationDb,
    private readonly log: FastifyBaseLogger,
    private readonly ttlMs: number
  ) {
    redis.defineCommand('authRevoke', { numberOfKeys: 1, lua: REVOKE_LUA })
    redis.defineCommand('authFill', { numberOfKeys: 1, lua: FILL_LUA })
  }

  /** Hash tag around the user id: all of a user's state lives in one cluster slot. */
  static key (userId: string): string {
    return '{' + userId + '}'
  }

  redisUsable (): boolean {
    return this.redis.status === 'ready' && Date.now() >= this.openUntil
  }

  private trip (err: unknown): void {
    if (Date.now() >= this.openUntil) {
      this.log.warn({ err: { message: (err as Error).message } }, 'Redis failed: answering from PostgreSQL for a while')
    }
    this.openUntil = Date.now() + BREAKER_OPEN_MS
  }

  /**
   * Is the token of session `sid` of user `sub`, whose session was created at `sca`
   * (µs, database clock), still live? Warm cache: one HMGET and nothing else.
   */
  async isLive (sub: string, sid: string, sca: number): Promise<boolean> {
    if (this.redisUsable()) {
      try {
        const [ra, s] = await this.redis.hmget(RevocationService.key(sub), 'ra', 's:' + sid)
        if (s === 'x') return false
        if (ra !== null) {
          if (sca <= Number(ra)) return false
          if (s === 'ok') return true
        }
      } catch (err) {
        this.trip(err)
      }
    }
    return await this.readThrough(sub, sid, sca)
  }

  private async readState (sub: string, sid: string): Promise<{ ra: string, live: boolean } | null> {
    const { rows } = await this.db.query(STATE_SQL, [sub, sid])
    return rows.length === 0 ? null : { ra: rows[0].ra as string, live: rows[0].live as boolean }
  }

  /** Cache miss (first use, eviction, FLUSHALL) or Redis down: decide from PostgreSQL. */
  private async readThrough (sub: string, sid: string, sca: number): Promise<boolean> {
    const state = await this.readState(sub, sid)
    const decide = (st: typeof state) => st !== null && st.live && sca > Number(st.ra)
    if (!this.redisUsable()) return decide(state)
    const key = RevocationService.key(sub)
    try {
      await this.redis.authFill(key, state?.ra ?? '', sid, state?.live === true ? 'ok' : 'x', this.ttlMs)
      // Read the truth once more after the fill landed. A revocation that committed
      // between our first read and our fill (and whose own Redis write a FLUSHALL may
      // have erased) is seen now and written over our "ok"; one that commits later
      // writes Redis again after its COMMIT. Either way no stale "ok" survives.
      const again = await this.readState(sub, sid)
      if (again === null || !again.live || again.ra !== state?.ra) {
        await this.redis.authRevoke(key, again?.ra ?? '', this.ttlMs, ...(again?.live === true ? [] : [sid]))
      }
      return decide(state) && decide(again)
    } catch (err) {
      if (!isRedisError(err)) throw err
      this.trip(err)
      return decide(state)
    }
  }

  private async write (set: RevocationSet): Promise<void> {
    if (set.users.size === 0) return
    if (!this.redisUsable()) throw new Unavailable()
    try {
      await Promise.all([...set.users].map(([userId, e]) =>
        this.redis.authRevoke(RevocationService.key(userId), e.ra, this.ttlMs, ...e.sids)))
    } catch (err) {
      this.trip(err)
      throw new Unavailable()
    }
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
    await this.write(set).catch((err: unknown) => {
      // Committed, and the pre-commit write landed: only the flush-race guard is lost.
      this.log.warn({ err: { message: (err as Error).message } }, 'post-commit revocation write failed')
    })
    return result
  }
}

function isRedisError (err: unknown): boolean {
  const e = err as { name?: string, message?: string, code?: string }
  return e?.name === 'ReplyError' || e?.name === 'MaxRetriesPerRequestError' ||
    /Stream isn't writeable|Connection is closed|Command timed out/.test(e?.message ?? '')
}

export default fp<{ sessionTtlSeconds: number }>(async function revocationPlugin (fastify, opts) {
  fastify.decorate('revocation', new RevocationService(
    fastify.redis, fastify.db, fastify.log, opts.sessionTtlSeconds * 1000))
}, { name: 'revocation', dependencies: ['db', 'redis'] })
