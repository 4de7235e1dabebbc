// Provides `fastify.lockout`: failed logins in a row per username (in Redis, shared by
// every instance), and a lock that grows with each further failure.
import fp from 'fastify-plugin'
import { LockoutService } from './lockout-service.js'

declare module 'fastify' {
  interface FastifyInstance {
    lockout: LockoutService
  }
}

export default fp<{ threshold: number }>(async function lockoutPlugin (fastify, opts) {
  fastify.decorate('lockout', new LockoutService(fastify.redis, fastify.audit, fastify.log, opts.threshold))
}, { name: 'lockout', dependencies: ['redis', 'audit'] })
