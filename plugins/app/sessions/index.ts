// Provides `fastify.sessions`: one row per login, opaque single-use refresh tokens with
// theft detection, logout, and the periodic clean-up of expired sessions.
import fp from 'fastify-plugin'
import { SessionsRepository } from './sessions-repository.js'
import { SessionService } from './sessions-service.js'

declare module 'fastify' {
  interface FastifyInstance {
    sessions: SessionService
  }
}

export interface SessionOptions {
  refreshTtl: number
  accessTtl: number
  /** How often expired sessions are purged (ms); 0 turns it off. */
  purgeIntervalMs?: number
}

export default fp<SessionOptions>(async function sessionsPlugin (fastify, opts) {
  const { db, revocation, users, lockout, audit } = fastify
  const sessions = new SessionService(db, new SessionsRepository(db), revocation, users, lockout, audit, opts.refreshTtl)
  fastify.decorate('sessions', sessions)

  // Clean-up runs inside the service (no cron outside it); every instance may run it,
  // the DELETE is idempotent. unref(): it never keeps the process alive.
  const every = opts.purgeIntervalMs ?? 10 * 60 * 1000
  if (every > 0) {
    const timer = setInterval(() => {
      sessions.purgeExpired(opts.accessTtl).then((n) => {
        if (n > 0) fastify.log.info({ purged: n }, 'expired sessions purged')
      }, (err: Error) => fastify.log.warn({ err: { message: err.message } }, 'session purge failed'))
    }, every)
    timer.unref()
    fastify.addHook('onClose', async () => clearInterval(timer))
  }
}, { name: 'sessions', dependencies: ['db', 'revocation', 'users', 'lockout', 'audit'] })
