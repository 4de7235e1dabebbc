// Provides each request's trail: its id echoed in X-Request-Id (the id itself comes from
// genReqId, lib/server-options.ts), one log line (with the user, the client IP and the
// error code) and the request metrics per response,
// and the log lines buffered by the destination written out every second and on close.
import fp from 'fastify-plugin'
import type { Logger } from 'pino'

/** How long a log line may wait in the destination's buffer on a quiet service. */
const FLUSH_INTERVAL_MS = 1000

export default fp(async function requestLoggingPlugin (fastify) {
  const { metrics } = fastify

  // Set by the error handler (lib/errors.ts); declared so every reply has the same shape.
  fastify.decorateReply('errorCode')

  // Hooks on every request are callback-style: an async hook costs a promise per request.
  fastify.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id)
    done()
  })

  // One hook per response, for both the log line and the request metrics (the route
  // options are read once: Fastify builds them afresh on every read).
  fastify.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.url
    const ms = reply.elapsedTime
    metrics.observeRequest(request.method, route ?? 'unmatched', reply.statusCode, ms)
    // Who and from where (the client IP as TRUST_PROXY resolves it), and why it failed (the
    // error handler's code): what an operator searches for. Undefined fields are left out.
    request.log.info({
      method: request.method,
      url: route ?? request.url.split('?', 1)[0],
      statusCode: reply.statusCode,
      ms: Math.round(ms * 100) / 100,
      ip: request.ip,
      userId: request.user?.sub,
      code: reply.errorCode
    }, 'request completed')
    done()
  })

  // Fastify's logger is pino (lib/server-options.ts): flush() hands its destination's
  // buffer to the fd. pino itself flushes it when the process exits.
  const log = fastify.log as Logger
  const flushing = setInterval(() => log.flush(), FLUSH_INTERVAL_MS).unref()
  fastify.addHook('onClose', async () => {
    clearInterval(flushing)
    await new Promise<void>((resolve) => log.flush(() => resolve()))
  })
}, { name: 'request-logging', dependencies: ['metrics'] })
