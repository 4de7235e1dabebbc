// Where failed password attempts are counted: in Redis (attempt.lua, succeeded.lua), shared
// by every instance; or, for a single instance running without Redis (lib/local-mode.ts), in
// this process, by the same rules written again in TypeScript and kept within a cap. The
// rules themselves (which client is locked, for how long) are the service's
// (lockout-service.ts); a store only keeps the counts and applies them atomically.
import { readFileSync } from 'node:fs'
import type { Redis, Result } from 'ioredis'
import { BoundedMap } from '../../../lib/bounded-map.js'

declare module 'ioredis' {
  interface RedisCommander<Context> {
    authLockAttempt(key: string, client: string, threshold: number, globalThreshold: number, firstMs: number, longestMs: number,
      globalFirstMs: number, globalLongestMs: number, windowMs: number, exempt: string): Result<[number, number], Context>
    authLockSucceeded(key: string, client: string, globalThreshold: number, partly: string): Result<number, Context>
  }
}

/** The thresholds and lock lengths an attempt is counted against (see lockout-service.ts). */
export interface LockoutLimits {
  threshold: number
  globalThreshold: number
  firstMs: number
  longestMs: number
  globalFirstMs: number
  globalLongestMs: number
  /** Failures across clients are counted in windows this long; a username quiet this long is forgotten. */
  windowMs: number
}

/**
 * `[0, failures in a row from this client]` when the attempt may go on, `[1, ms]` refused
 * because the client is locked, `[2, ms]` because the username is.
 */
export type AttemptResult = [number, number]

export interface LockoutStore {
  attempt (key: string, client: string, limits: LockoutLimits, exempt: boolean): Promise<AttemptResult>
  /** `partly`: a right password with a second factor to come: the client's run goes on. */
  succeeded (key: string, client: string, globalThreshold: number, partly: boolean): Promise<void>
  clear (key: string): Promise<void>
}

// The scripts, beside this file (`npm run build` copies them into dist/).
const script = (name: string) => readFileSync(new URL(name, import.meta.url), 'utf8')

export class RedisLockoutStore implements LockoutStore {
  constructor (private readonly redis: Redis) {
    redis.defineCommand('authLockAttempt', { numberOfKeys: 1, lua: script('attempt.lua') })
    redis.defineCommand('authLockSucceeded', { numberOfKeys: 1, lua: script('succeeded.lua') })
  }

  async attempt (key: string, client: string, l: LockoutLimits, exempt: boolean): Promise<AttemptResult> {
    return await this.redis.authLockAttempt(key, client, l.threshold, l.globalThreshold, l.firstMs, l.longestMs,
      l.globalFirstMs, l.globalLongestMs, l.windowMs, exempt ? '1' : '0')
  }

  async succeeded (key: string, client: string, globalThreshold: number, partly: boolean): Promise<void> {
    await this.redis.authLockSucceeded(key, client, globalThreshold, partly ? '1' : '0')
  }

  async clear (key: string): Promise<void> {
    await this.redis.del(key)
  }
}

/** Usernames whose counts one process keeps at most. */
export const MEMORY_USERNAMES = 10_000
/**
 * Clients counted per username at most. A username tried from more addresses than this
 * loses the per-client counts of the ones seen longest ago, and keeps its across-clients
 * throttle, which is what bounds a guesser with many addresses anyway.
 */
export const MEMORY_CLIENTS_PER_USERNAME = 20

interface UsernameState {
  /** Per client: failures in a row, and locked until (ms); insertion order is age. */
  clients: Map<string, { failures: number, lockedUntil: number }>
  /** Failures from all clients in the window that began at `windowStart`. */
  failures: number
  windowStart: number
  lockedUntil: number
}

/** From the threshold on, lock for first × 2^(failures − threshold), at most the longest. */
function lockFor (failures: number, threshold: number, first: number, longest: number): number {
  return Math.floor(Math.min(first * 2 ** (failures - threshold), longest))
}

/**
 * attempt.lua and succeeded.lua for one process. Each call runs to its end without
 * awaiting anything, so parallel attempts are counted one after the other, as the scripts
 * are in Redis. A username's counts live `windowMs` after its last counted attempt, and at
 * most MEMORY_USERNAMES of them are kept: past that, the one attempted longest ago goes.
 */
export class MemoryLockoutStore implements LockoutStore {
  readonly usernames: BoundedMap<string, UsernameState>
  private readonly maxClients: number
  private readonly clock: () => number

  constructor (opts: { maxUsernames?: number, maxClients?: number, clock?: () => number } = {}) {
    this.usernames = new BoundedMap(opts.maxUsernames ?? MEMORY_USERNAMES)
    this.maxClients = opts.maxClients ?? MEMORY_CLIENTS_PER_USERNAME
    this.clock = opts.clock ?? Date.now
  }

  /** Clients whose counts are kept for the username (for tests of the cap). */
  clientsOf (key: string): number {
    return this.usernames.get(key, this.clock())?.clients.size ?? 0
  }

  async attempt (key: string, client: string, l: LockoutLimits, exempt: boolean): Promise<AttemptResult> {
    const now = this.clock()
    const state = this.usernames.get(key, now) ?? { clients: new Map(), failures: 0, windowStart: 0, lockedUntil: 0 }
    const counts = state.clients.get(client) ?? { failures: 0, lockedUntil: 0 }
    // A refused attempt counts nothing and keeps the expiry, as in the script.
    if (counts.lockedUntil > now) return [1, counts.lockedUntil - now]
    if (!exempt && state.lockedUntil > now) return [2, state.lockedUntil - now]

    counts.failures++
    if (counts.failures >= l.threshold) counts.lockedUntil = now + lockFor(counts.failures, l.threshold, l.firstMs, l.longestMs)
    state.clients.delete(client)
    if (state.clients.size >= this.maxClients) state.clients.delete(state.clients.keys().next().value as string)
    state.clients.set(client, counts)

    if (now - state.windowStart > l.windowMs) {
      state.failures = 0
      state.windowStart = now
    }
    state.failures++
    if (state.failures >= l.globalThreshold) {
      state.lockedUntil = now + lockFor(state.failures, l.globalThreshold, l.globalFirstMs, l.globalLongestMs)
    }
    this.usernames.set(key, state, l.windowMs, now)
    return [0, counts.failures]
  }

  async succeeded (key: string, client: string, globalThreshold: number, partly: boolean): Promise<void> {
    const state = this.usernames.get(key, this.clock())
    if (state === undefined) return
    if (!partly) state.clients.delete(client)
    if (state.failures > 0) state.failures--
    if (state.failures < globalThreshold) state.lockedUntil = 0
  }

  async clear (key: string): Promise<void> {
    this.usernames.delete(key)
  }
}
