// Provides `fastify.events`: security events for other services (SSF 1.0 with CAEP and RISC
// events, Back-Channel Logout 1.0). Every revoking transaction writes its events to the
// outbox before it commits (RevocationService.onRevoke); the dispatcher of every instance
// pushes them; /ssf (routes/ssf) manages streams and serves polls. Without an asymmetric
// key (JWT_PRIVATE_KEY or SSF_PRIVATE_KEY) nothing is written and /ssf answers 501.
import fp from 'fastify-plugin'
import pg from 'pg'
import { Counter, Gauge } from 'prom-client'
import type { Queryable } from '../../external/db.js'
import { Dispatcher, type DispatchSettings } from './dispatcher.js'
import { EventsRepository } from './events-repository.js'
import { EventsService } from './events-service.js'
import { EventSigner } from './tokens.js'

declare module 'fastify' {
  interface FastifyInstance {
    events: EventsService
    /** Null when events are off (no key). */
    eventDispatcher: Dispatcher | null
  }
}

export interface EventsPluginOptions extends DispatchSettings {
  issuer: string
  publicUrl?: string
  databaseUrl: string
}

/** Connections of the dispatcher's own pool: its work never waits for, nor holds up, a request's. */
const DISPATCH_POOL_SIZE = 2

export default fp<EventsPluginOptions>(async function eventsPlugin (fastify, opts) {
  const { db, revocation, audit, metrics, config } = fastify
  const key = config.eventKeys
  const signer = key === undefined ? null : new EventSigner(key, opts.issuer)
  const repository = new EventsRepository()
  const events = new EventsService(db, repository, signer, audit, { issuer: opts.issuer, publicUrl: opts.publicUrl })
  fastify.decorate('events', events)

  const registers = [metrics.registry]
  const counters = {
    delivered: new Counter({ name: 'auth_security_events_delivered_total', help: 'Security events a receiver accepted (pushed by this instance), by channel: ssf or backchannel', labelNames: ['channel'], registers }),
    failed: new Counter({ name: 'auth_security_events_failed_total', help: 'Security events given up: reason=rejected (a receiver answered 400) or expired (undelivered for EVENTS_MAX_AGE)', labelNames: ['reason'], registers }),
    retries: new Counter({ name: 'auth_security_event_retries_total', help: 'Pushes that failed and will be tried again (receiver down, slow or 5xx)', registers })
  }
  counters.delivered.inc({ channel: 'ssf' }, 0)
  counters.delivered.inc({ channel: 'backchannel' }, 0)
  counters.failed.inc({ reason: 'rejected' }, 0)
  counters.failed.inc({ reason: 'expired' }, 0)

  let dispatcher: Dispatcher | null = null
  let pool: pg.Pool | null = null
  if (signer !== null) {
    pool = new pg.Pool({
      connectionString: opts.databaseUrl,
      max: DISPATCH_POOL_SIZE,
      connectionTimeoutMillis: 2000,
      statement_timeout: 5000,
      query_timeout: 6000,
      idleTimeoutMillis: 30_000
    })
    pool.on('error', (err) => fastify.log.warn({ err: { message: err.message } }, 'idle PostgreSQL client of the event dispatcher failed'))
    const own = pool as unknown as Queryable
    dispatcher = new Dispatcher(own, repository, signer, opts, fastify.log, counters)
    const d = dispatcher
    revocation.onRevoke(async (client, revoked) => await events.recordRevocations(client, revoked), () => {
      events.committed()
      d.wake()
    })

    // Read from PostgreSQL when /metrics is scraped (never on the request path); both
    // gauges share one query per scrape.
    let reading: Promise<{ pending: number, oldestAge: number }> | null = null
    const backlog = () => {
      reading ??= repository.backlog(own).finally(() => { setTimeout(() => { reading = null }, 1000).unref() })
      return reading
    }
    new Gauge({ // eslint-disable-line no-new
      name: 'auth_security_events_pending',
      help: 'Security events written and not yet delivered, failed or expired (all instances)',
      registers,
      async collect () { this.set((await backlog().catch(() => ({ pending: 0 }))).pending) }
    })
    new Gauge({ // eslint-disable-line no-new
      name: 'auth_security_events_oldest_pending_age_seconds',
      help: 'Age of the oldest undelivered security event (0: none): how far behind delivery is',
      registers,
      async collect () { this.set((await backlog().catch(() => ({ oldestAge: 0 }))).oldestAge) }
    })
    dispatcher.start()
  }
  fastify.decorate('eventDispatcher', dispatcher)

  // Before the pools close (onClose hooks run in reverse order of registration).
  fastify.addHook('onClose', async () => {
    events.close()
    await dispatcher?.close()
    await pool?.end()
  })
}, { name: 'events', dependencies: ['db', 'revocation', 'audit', 'metrics', 'config'] })
