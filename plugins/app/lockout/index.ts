// Provides `fastify.lockout`: failed password attempts per username and client (in Redis,
// shared by every instance), a lock per client and a throttle across clients.
import fp from 'fastify-plugin'
import { LockoutService, type LockoutOptions } from './lockout-service.js'

declare module 'fastify' {
  interface FastifyInstance {
    lockout: LockoutService
  }
}

export default fp<LockoutOptions>(async function lockoutPlugin (fastify, opts) {
  fastify.decorate('lockout', new LockoutService(fastify.redis, fastify.log, opts))
}, { name: 'lockout', dependencies: ['redis'] })
