// /health (the process is up), /ready (PostgreSQL and Redis answer) and /metrics (Prometheus).
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Health, Readiness } from '../../schemas/health.js'
import { ref } from '../../schemas/common.js'
import { withTimeout } from '../../lib/timeout.js'

// A readiness probe must answer quickly even when a dependency hangs.
const CHECK_TIMEOUT_MS = 1000

async function within<T> (ms: number, work: () => Promise<T>): Promise<'ok' | 'down'> {
  try {
    await withTimeout(work(), ms, () => new Error('check timed out'))
    return 'ok'
  } catch {
    return 'down'
  }
}

const routes: FastifyPluginAsyncTypebox = async function (fastify) {
  const { db, redis, metrics } = fastify

  fastify.get('/health', {
    schema: {
      tags: ['ops'],
      operationId: 'health',
      summary: 'Liveness: 200 while the process runs (touches no dependency)',
      response: { 200: ref(Health, 'The process is up') }
    }
  }, async function () {
    return { status: 'ok' as const }
  })

  fastify.get('/ready', {
    schema: {
      tags: ['ops'],
      operationId: 'ready',
      summary: 'Readiness: PostgreSQL and Redis both answer',
      description: 'Each check answers within 1 s, so an outage is noticed quickly.',
      response: {
        200: ref(Readiness, 'Ready: both dependencies answer'),
        503: ref(Readiness, 'Not ready: the failing check is `down`')
      }
    }
  }, async function (_request, reply) {
    const [postgres, redisCheck] = await Promise.all([
      within(CHECK_TIMEOUT_MS, () => db.query('SELECT 1')),
      within(CHECK_TIMEOUT_MS, () => redis.ping())
    ])
    const status = postgres === 'ok' && redisCheck === 'ok' ? 'ok' : 'down'
    return reply.code(status === 'ok' ? 200 : 503).send({ status, checks: { postgres, redis: redisCheck } })
  })

  // Unauthenticated, as Prometheus scrapers expect: it carries only counts and timings by
  // route template (no user, IP or token; see plugins/external/metrics.ts). Deployments that must
  // hide even those keep /metrics off the public ingress.
  fastify.get('/metrics', {
    schema: {
      tags: ['ops'],
      operationId: 'metrics',
      summary: 'Prometheus metrics: requests by route, logins, revocations, Redis fallbacks, pool usage',
      response: {
        200: {
          description: 'Prometheus text exposition format 0.0.4',
          content: { 'text/plain': { schema: { type: 'string' } } }
        }
      }
    }
  }, async function (_request, reply) {
    const body = await metrics.registry.metrics()
    return reply.type(metrics.registry.contentType).send(body)
  })
}

export default routes
