// Delivers the outbox: pushes SETs (RFC 8935) and logout tokens (Back-Channel Logout 1.0)
// to their receivers, with retries and exponential backoff. Every instance runs one: rows
// are claimed with SKIP LOCKED and leased, so instances never send the same row at the
// same time, and a row whose instance died mid-delivery is sent again when its lease runs
// out (at least once; receivers dedupe by jti). docs/integration.md has the guarantees.
import type { FastifyBaseLogger } from 'fastify'
import type { Counter } from 'prom-client'
import type { Queryable } from '../../external/db.js'
import type { Claimed, EventsRepository } from './events-repository.js'
import type { EventSigner } from './tokens.js'

export interface DispatchSettings {
  /** EVENTS_DISPATCH_INTERVAL_MS: how often the outbox is looked at; also the first retry delay. */
  intervalMs: number
  /** EVENTS_DELIVERY_TIMEOUT_MS: one push gives up after this long. */
  timeoutMs: number
  /** EVENTS_RETRY_MAX_DELAY: the backoff stops doubling here (seconds). */
  maxDelayS: number
  /** EVENTS_MAX_AGE: an event still undelivered this long after it was written is given up (seconds). */
  maxAgeS: number
  /** EVENTS_RETENTION: delivered and failed events are kept this long (seconds). */
  retentionS: number
}

export interface DispatchCounters {
  delivered: Counter<'channel'>
  failed: Counter<'reason'>
  retries: Counter
}

/** Rows claimed per query; each is the head of its own (receiver, subject), so they go out in parallel. */
const BATCH = 50
/** Claim rounds per run: a run ends, and the timer comes back, rather than loop forever. */
const MAX_ROUNDS = 20
/** Rows expired or purged per statement. */
const HOUSEKEEPING_BATCH = 5000
/** How often expiry and retention run (they are cheap, and every instance may run them). */
const HOUSEKEEPING_EVERY_MS = 60_000
/** Of a receiver's refusal, this much is kept as the row's last error: its `err` code, never its body. */
const ERR_CODE = /^[A-Za-z0-9_.:-]{1,64}$/

export class Dispatcher {
  private timer: NodeJS.Timeout | undefined
  private running: Promise<void> | null = null
  private again = false
  private closed = false
  private nextHousekeeping = 0

  constructor (
    private readonly db: Queryable,
    private readonly repository: EventsRepository,
    private readonly signer: EventSigner,
    private readonly settings: DispatchSettings,
    private readonly log: FastifyBaseLogger,
    private readonly counters: DispatchCounters
  ) {}

  start (): void {
    this.timer = setInterval(() => this.wake(), this.settings.intervalMs)
    this.timer.unref()
    this.wake()
  }

  /** Looks at the outbox now (an event was just committed), or again right after the current run. */
  wake (): void {
    if (this.closed) return
    if (this.running !== null) {
      this.again = true
      return
    }
    this.running = this.loop().finally(() => { this.running = null })
  }

  private async loop (): Promise<void> {
    do {
      this.again = false
      try {
        await this.run()
      } catch (err) {
        this.log.warn({ err: { message: (err as Error).message } }, 'security event dispatch failed: trying again')
      }
    } while (this.again && !this.closed)
  }

  /** One pass: claim and deliver until nothing is due, then housekeeping when it is time. */
  async run (): Promise<void> {
    // The lease outlasts the push it covers, so that no other instance takes the row while it is in flight.
    const leaseMs = this.settings.timeoutMs * 2 + 1000
    for (let round = 0; round < MAX_ROUNDS && !this.closed; round++) {
      const claimed = await this.repository.claim(this.db, BATCH, leaseMs)
      if (claimed.length === 0) break
      await Promise.all(claimed.map(async (row) => await this.deliver(row)))
    }
    if (Date.now() >= this.nextHousekeeping && !this.closed) {
      this.nextHousekeeping = Date.now() + HOUSEKEEPING_EVERY_MS
      await this.housekeeping()
    }
  }

  /** Gives up on events too old to deliver, and deletes ended ones past their retention. */
  async housekeeping (): Promise<{ expired: number, purged: number }> {
    let expired = 0
    let purged = 0
    for (let n = HOUSEKEEPING_BATCH; n === HOUSEKEEPING_BATCH;) {
      n = await this.repository.expire(this.db, this.settings.maxAgeS, HOUSEKEEPING_BATCH)
      expired += n
    }
    for (let n = HOUSEKEEPING_BATCH; n === HOUSEKEEPING_BATCH;) {
      n = await this.repository.purge(this.db, this.settings.retentionS, HOUSEKEEPING_BATCH)
      purged += n
    }
    if (expired > 0) {
      this.counters.failed.inc({ reason: 'expired' }, expired)
      this.log.warn({ expired }, 'security events given up after EVENTS_MAX_AGE undelivered')
    }
    return { expired, purged }
  }

  /** The backoff after the `attempts`-th failure: one interval, doubling, capped. */
  private backoff (attempts: number): number {
    const base = this.settings.intervalMs * 2 ** Math.min(attempts - 1, 30)
    return Math.min(base, this.settings.maxDelayS * 1000)
  }

  private async deliver (row: Claimed): Promise<void> {
    const outcome = await this.post(row)
    if (outcome.ok) {
      await this.repository.delivered(this.db, row.id)
      this.counters.delivered.inc({ channel: row.channel })
    } else if (outcome.final) {
      await this.repository.failed(this.db, row.id, outcome.error)
      this.counters.failed.inc({ reason: 'rejected' })
      this.log.warn({ jti: row.jti, receiver: row.aud, error: outcome.error }, 'security event refused by its receiver: not retried')
    } else {
      await this.repository.retry(this.db, row.id, this.backoff(row.attempts), outcome.error)
      this.counters.retries.inc()
    }
  }

  /**
   * One push. 2xx: delivered. 400: refused for good (RFC 8935 §2.3, Back-Channel Logout
   * §2.8: the token itself is wrong, sending it again would not help). Anything else, a
   * timeout or a connection error: tried again later.
   */
  private async post (row: Claimed): Promise<{ ok: true } | { ok: false, final: boolean, error: string }> {
    const token = this.signer.sign(row, row.aud)
    const backchannel = row.channel === 'backchannel'
    const headers: Record<string, string> = backchannel
      ? { 'content-type': 'application/x-www-form-urlencoded' }
      : { 'content-type': 'application/secevent+jwt', accept: 'application/json' }
    if (row.authorization !== null) headers.authorization = row.authorization
    let res: Response
    try {
      res = await fetch(row.url, {
        method: 'POST',
        headers,
        body: backchannel ? new URLSearchParams({ logout_token: token }).toString() : token,
        // A receiver that redirects is misconfigured: the token is not sent on to another host.
        redirect: 'manual',
        signal: AbortSignal.timeout(this.settings.timeoutMs)
      })
    } catch (err) {
      const name = (err as Error).name
      return { ok: false, final: false, error: name === 'TimeoutError' ? 'timeout' : 'unreachable' }
    }
    if (res.status >= 200 && res.status < 300) {
      await res.body?.cancel()
      return { ok: true }
    }
    if (res.status === 400) {
      const body = await res.json().catch(() => ({})) as { err?: unknown, error?: unknown }
      const code = typeof body.err === 'string' ? body.err : body.error
      return { ok: false, final: true, error: typeof code === 'string' && ERR_CODE.test(code) ? `400 ${code}` : '400' }
    }
    await res.body?.cancel()
    return { ok: false, final: false, error: `HTTP ${res.status}` }
  }

  async close (): Promise<void> {
    this.closed = true
    clearInterval(this.timer)
    await this.running
  }
}
