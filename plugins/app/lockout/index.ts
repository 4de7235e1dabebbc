// Provides `fastify.lockout`: failed password attempts per username and client (in Redis,
// shared by every instance; in this process when it runs without Redis), a lock per client
// and a throttle across clients.
import fp from 'fastify-plugin'
import { LockoutService, type LockoutOptions } from './lockout-service.js'
import { MemoryLockoutStore, RedisLockoutStore } from './lockout-store.js'

declare module 'fastify' {
  interface FastifyInstance {
    lockout: LockoutService
  }
}

export default fp<LockoutOptions>(async function lockoutPlugin (fastify, opts) {
  const store = fastify.redis === null ? new MemoryLockoutStore() : new RedisLockoutStore(fastify.redis)
  fastify.decorate('lockout', new LockoutService(store, fastify.log, opts))
}, { name: 'lockout', dependencies: ['redis'] })
