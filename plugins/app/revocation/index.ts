// Provides `fastify.revocation`: is a token's session still live (one Redis round trip on
// the hot path), and revoking transactions that keep Redis never laxer than PostgreSQL.
// The design, its invariants and its failure modes: docs/revocation.md.
import fp from 'fastify-plugin'
import { RevocationRepository } from './revocation-repository.js'
import { RevocationService } from './revocation-service.js'

declare module 'fastify' {
  interface FastifyInstance {
    revocation: RevocationService
  }
}

export default fp<{ accessTtlSeconds: number }>(async function revocationPlugin (fastify, opts) {
  const { metrics } = fastify
  const service = new RevocationService(fastify.redis, fastify.db, new RevocationRepository(fastify.db), fastify.log,
    opts.accessTtlSeconds, metrics)
  // Without Redis there is no breaker or backlog to watch: every check reads PostgreSQL.
  if (fastify.redis !== null) {
    metrics.gauge('auth_redis_breaker_open', '1 while token checks skip Redis and read PostgreSQL', () => Number(!service.redisUsable()))
    metrics.gauge('auth_revocation_retry_backlog', 'Committed revocations whose post-commit Redis write awaits a retry', () => service.backlogSize)
  }
  fastify.decorate('revocation', service)
  // Readers in other services trust this Redis only once it says which protocol it holds.
  await service.announceProtocol().catch((err: Error) => {
    fastify.log.warn({ err: { message: err.message } }, 'could not write the Redis protocol marker: other services will introspect')
  })
  // Before the Redis client closes (onClose hooks run in reverse order): a last try at
  // any post-commit write still pending.
  fastify.addHook('onClose', async () => await service.close())
}, { name: 'revocation', dependencies: ['db', 'redis', 'metrics'] })
