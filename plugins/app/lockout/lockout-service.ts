// Failed password attempts per username, counted where every instance sees them (Redis;
// in this process for a single instance without Redis, lockout-store.ts): per client (IP,
// or IPv6 /64) a lock that grows with each failure in a row, and across all clients a
// throttle on the username. The design and its trade-off: README, "Password guessing and
// lockouts".
import type { FastifyBaseLogger } from 'fastify'
import { clientKey } from '../../../lib/client-ip.js'
import type { LockoutLimits, LockoutStore } from './lockout-store.js'

/** A client's first lock 30 s, doubling with each further failure, at most 15 minutes. */
const FIRST_LOCK_MS = 30_000
const LONGEST_LOCK_MS = 15 * 60_000
/**
 * Across clients a throttle, not a block: 1 s, doubling, at most a minute. Whoever holds a
 * guess list and many addresses gets one guess a minute at most, and nobody else waits longer.
 */
const GLOBAL_FIRST_LOCK_MS = 1000
const GLOBAL_LONGEST_LOCK_MS = 60_000
/** Failures across clients are counted per day; a username quiet for a day is forgotten. */
const WINDOW_MS = 24 * 60 * 60_000

/** What came of counting an attempt. */
export type Attempt =
  | { refused: false, /** Failures in a row from this client, this attempt included. */ failures: number }
  | { refused: true, retryAfter: number, scope: 'client' | 'username' }

export interface LockoutOptions {
  /** Failures in a row from one client that lock that client out of the username. */
  threshold: number
  /** Failures from all clients within a day that throttle the username for everyone else. */
  globalThreshold: number
}

export class LockoutService {
  readonly threshold: number
  readonly globalThreshold: number
  private readonly limits: LockoutLimits

  constructor (
    private readonly store: LockoutStore,
    private readonly log: FastifyBaseLogger,
    opts: LockoutOptions
  ) {
    this.threshold = opts.threshold
    this.globalThreshold = opts.globalThreshold
    this.limits = {
      threshold: opts.threshold,
      globalThreshold: opts.globalThreshold,
      firstMs: FIRST_LOCK_MS,
      longestMs: LONGEST_LOCK_MS,
      globalFirstMs: GLOBAL_FIRST_LOCK_MS,
      globalLongestMs: GLOBAL_LONGEST_LOCK_MS,
      windowMs: WINDOW_MS
    }
  }

  // Keyed by the lower-cased username whether or not the user exists, so a lockout says
  // nothing about which usernames are registered. Usernames are ASCII (the schemas see to
  // it), where toLowerCase() and PostgreSQL's lower() agree: the key is the account's.
  private key (username: string): string {
    return `{lock:${username.toLowerCase()}}`
  }

  /**
   * Counts an attempt at the username's password from the client at `ip`, before the
   * password is checked: of N parallel attempts, at most the threshold get through. An
   * attempt that turns out right is settled with succeeded(). `exempt`: the username's
   * lock (across clients) does not apply to this client. Fails open when Redis is down
   * (argon2 still bounds the rate).
   */
  async attempt (username: string, ip: string, opts: { exempt?: boolean } = {}): Promise<Attempt> {
    let result: [number, number]
    try {
      result = await this.store.attempt(this.key(username), clientKey(ip), this.limits, opts.exempt === true)
    } catch (err) {
      this.log.warn({ err: { message: (err as Error).message } }, 'password attempt not counted: Redis unavailable')
      return { refused: false, failures: 0 }
    }
    const [state, value] = result
    if (state === 0) return { refused: false, failures: value }
    return { refused: true, retryAfter: Math.ceil(value / 1000), scope: state === 1 ? 'client' : 'username' }
  }

  /**
   * The attempt's password (or second factor) was right: this client's run of failures
   * ends. `partly`: a password right with a second factor still to come; the run goes on
   * until that is right too (succeeded() once more).
   */
  async succeeded (username: string, ip: string, opts: { partly?: boolean } = {}): Promise<void> {
    await this.store.succeeded(this.key(username), clientKey(ip), this.globalThreshold, opts.partly === true)
      .catch((err: Error) => this.log.warn({ err: { message: err.message } }, 'password attempt not settled: Redis unavailable'))
  }

  /** Forgets every failure and lock of the username (an admin's call): throws if Redis is down. */
  async clear (username: string): Promise<void> {
    await this.store.clear(this.key(username))
  }
}
