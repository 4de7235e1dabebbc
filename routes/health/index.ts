// /health (the process is up), /ready (taking traffic; how PostgreSQL and Redis are) and /metrics (Prometheus).
import { createServer, type Server } from 'node:http'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Health, Readiness } from '../../schemas/health.js'
import { ref } from '../../schemas/common.js'
import { withTimeout } from '../../lib/timeout.js'
import { hostForUrl, StartupError } from '../../lib/startup.js'

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
  const { db, redis, metrics, config } = fastify

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

  // Shutting down: set before the listener closes (preClose), while requests already on
  // open connections are still answered (with `Connection: close`).
  let draining = false
  fastify.addHook('preClose', (done) => {
    draining = true
    done()
  })

  // Not ready (503) only while this instance cannot take traffic. A dependency down is
  // `degraded` (200): every instance shares it, so taking them all out of the load
  // balancer would turn a degraded service into an outage. Starting needs no state of its
  // own: the port opens only once the migrations are applied and the routes are ready.
  fastify.get('/ready', {
    schema: {
      tags: ['ops'],
      operationId: 'ready',
      summary: 'Readiness: 200 while this instance takes traffic, with the state of PostgreSQL and Redis',
      description: 'Each check answers within 1 s, so an outage is noticed quickly. A dependency that does not answer ' +
        'makes the status `degraded`, still 200: every instance shares it. 503 only while this instance shuts down ' +
        '(before start-up has applied the migrations, the port is not open).',
      response: {
        200: ref(Readiness, 'Taking traffic: `ok`, or `degraded` with the failing check `down`'),
        503: ref(Readiness, 'Shutting down (`draining`): send traffic elsewhere')
      }
    }
  }, async function (_request, reply) {
    const [postgres, redisCheck] = await Promise.all([
      within(CHECK_TIMEOUT_MS, () => db.query('SELECT 1')),
      // Running without Redis by choice (a single instance) is not an outage.
      redis === null ? 'disabled' as const : within(CHECK_TIMEOUT_MS, () => redis.ping())
    ])
    const checks = { postgres, redis: redisCheck }
    if (draining) return reply.code(503).send({ status: 'draining' as const, checks })
    return { status: postgres === 'ok' && redisCheck !== 'down' ? 'ok' as const : 'degraded' as const, checks }
  })

  // Unauthenticated, as Prometheus scrapers expect: it carries only counts and timings by
  // route template (no user, IP or token; see plugins/external/metrics.ts). METRICS_PORT moves
  // it off the API's port (a listener of its own, for a network Prometheus alone reaches) or
  // switches it off.
  const exposition = async () => ({ body: await metrics.registry.metrics(), type: metrics.registry.contentType })
  if (config.metrics === 'api') {
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
      const { body, type } = await exposition()
      return reply.type(type).send(body)
    })
  } else if (config.metrics !== 'off') {
    const listener = metricsListener(exposition)
    const port = config.metrics
    // Bound with the app (onReady, before the API's own listen), so a taken port stops
    // start-up like a taken PORT does.
    fastify.addHook('onReady', async () => {
      await new Promise<void>((resolve, reject) => {
        listener.once('error', (err: Error & { code?: string }) => reject(err.code === 'EADDRINUSE'
          ? new StartupError(`METRICS_PORT: ${config.HOST}:${port} is already in use`)
          : err))
        listener.listen(port, config.HOST, resolve)
      })
      fastify.log.info(`metrics on http://${hostForUrl(config.HOST)}:${port}/metrics`)
    })
    fastify.addHook('onClose', async () => {
      listener.closeAllConnections()
      await new Promise((resolve) => listener.close(resolve))
    })
  }
}

/** A listener that serves GET /metrics and nothing else: no API, no docs, no Fastify. */
function metricsListener (exposition: () => Promise<{ body: string, type: string }>): Server {
  return createServer((req, res) => {
    const path = (req.url ?? '').split('?', 1)[0]
    if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('Not Found\n')
      return
    }
    exposition().then(({ body, type }) => {
      res.writeHead(200, { 'content-type': type }).end(req.method === 'HEAD' ? undefined : body)
    }, () => {
      res.writeHead(500, { 'content-type': 'text/plain' }).end('Internal Server Error\n')
    })
  })
}

export default routes
