// Provides `fastify.sessions`: one row per login, opaque single-use refresh tokens with
// theft detection and a grace for retries, logout, and the periodic clean-up of ended
// sessions.
import fp from 'fastify-plugin'
import { periodic } from '../../../lib/periodic.js'
import { SessionsRepository } from './sessions-repository.js'
import { SessionService, type SessionSettings } from './sessions-service.js'

declare module 'fastify' {
  interface FastifyInstance {
    sessions: SessionService
  }
}

export interface SessionOptions extends SessionSettings {
  accessTtl: number
  /** How often ended sessions are purged (ms); 0 turns it off. */
  purgeIntervalMs?: number
  /** How often recorded refresh-token reuses not yet applied are tried again (ms). */
  replayIntervalMs?: number
}

export default fp<SessionOptions>(async function sessionsPlugin (fastify, opts) {
  const { db, revocation, users, lockout, audit, mfa } = fastify
  const { accessTtl, purgeIntervalMs, replayIntervalMs, ...settings } = opts
  const sessions = new SessionService(db, new SessionsRepository(db), revocation, users, lockout, audit, mfa, settings, fastify.log)
  fastify.decorate('sessions', sessions)

  // Every instance may run the purge: batches skip the rows another one is deleting.
  const every = purgeIntervalMs ?? 10 * 60 * 1000
  const stops: Array<() => Promise<void>> = []
  if (every > 0) {
    stops.push(periodic(every, async () => {
      const n = await sessions.purgeExpired(accessTtl)
      if (n > 0) fastify.log.info({ purged: n }, 'ended sessions purged')
    }, (err) => fastify.log.warn({ err: { message: err.message } }, 'session purge failed')))
  }
  // A reuse recorded while Redis could not be written ends its session as soon as Redis
  // is back, whichever instance recorded it (one indexed query on an index that is
  // empty unless that happened).
  stops.push(periodic(replayIntervalMs ?? 1000, async () => await sessions.replayReuses(),
    (err) => fastify.log.warn({ err: { message: err.message } }, 'replay of refresh-token reuses failed')))
  fastify.addHook('onClose', async () => { await Promise.all(stops.map(async (stop) => await stop())) })
}, { name: 'sessions', dependencies: ['db', 'revocation', 'users', 'lockout', 'audit', 'mfa'] })
