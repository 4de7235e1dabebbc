// /health (the process is up) and /ready (PostgreSQL and Redis answer).
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Health, Readiness } from '../../schemas/health.js'
import { ref } from '../../schemas/common.js'

// A readiness probe must answer quickly even when a dependency hangs.
const CHECK_TIMEOUT_MS = 1000

async function within<T> (ms: number, work: () => Promise<T>): Promise<'ok' | 'down'> {
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([work(), new Promise((_resolve, reject) => { timer = setTimeout(reject, ms) })])
    return 'ok'
  } catch {
    return 'down'
  } finally {
    clearTimeout(timer)
  }
}

const routes: FastifyPluginAsyncTypebox = async function (fastify) {
  const { db, redis } = fastify

  fastify.get('/health', {
    schema: {
      tags: ['ops'],
      operationId: 'health',
      summary: 'Liveness: 200 while the process runs (touches no dependency)',
      response: { 200: ref(Health) }
    }
  }, async function () {
    return { status: 'ok' as const }
  })

  fastify.get('/ready', {
    schema: {
      tags: ['ops'],
      operationId: 'ready',
      summary: 'Readiness: PostgreSQL and Redis both answer',
      response: { 200: ref(Readiness), 503: ref(Readiness) }
    }
  }, async function (_request, reply) {
    const [postgres, redisCheck] = await Promise.all([
      within(CHECK_TIMEOUT_MS, () => db.query('SELECT 1')),
      within(CHECK_TIMEOUT_MS, () => redis.ping())
    ])
    const status = postgres === 'ok' && redisCheck === 'ok' ? 'ok' : 'down'
    return reply.code(status === 'ok' ? 200 : 503).send({ status, checks: { postgres, redis: redisCheck } })
  })
}

export default routes
