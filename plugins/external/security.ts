// Provides HTTP hardening: security headers (helmet), CORS only for the origins
// in CORS_ORIGINS, and per-IP rate limits (@fastify/rate-limit, counted in Redis so that
// all instances share them; in this process, within a cap, when it runs without Redis)
// for the routes that declare `config.rateLimit`.
import fp from 'fastify-plugin'
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import helmet, { type HelmetOptions } from 'helmet'
import fastifyCors from '@fastify/cors'
import fastifyRateLimit from '@fastify/rate-limit'
import { BadRequest, TooManyRequests } from '../../lib/errors.js'
import { clientIp, clientKey } from '../../lib/client-ip.js'
import { BoundedMap } from '../../lib/bounded-map.js'

/**
 * Without Redis, clients counted per rate-limited route (@fastify/rate-limit's in-process
 * store, an LRU: past the cap, the client counted longest ago is forgotten), and
 * rate-limited clients remembered for the audit's once-per-window rule.
 */
export const RATE_LIMIT_CLIENTS = 10_000

export interface SecurityOptions {
  corsOrigins: string[]
  /** RATE_LIMIT_CLIENTS unless a test wants to see the cap. */
  rateLimitClients?: number
}

/**
 * Every response is JSON except Swagger UI's: the headers that matter for an API
 * (OWASP REST Security Cheat Sheet): nothing may be loaded, framed or sniffed from a
 * response, HTTPS is sticky. helmet's document-only headers (COOP, Origin-Agent-Cluster,
 * Referrer-Policy, X-DNS-Prefetch-Control, X-Download-Options,
 * X-Permitted-Cross-Domain-Policies, X-XSS-Protection) are for HTML pages: the docs get them.
 */
export const API_HEADERS: HelmetOptions = {
  contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
  crossOriginOpenerPolicy: false,
  originAgentCluster: false,
  referrerPolicy: false,
  xDnsPrefetchControl: false,
  xDownloadOptions: false,
  xFrameOptions: { action: 'deny' },
  xPermittedCrossDomainPolicies: false,
  xXssProtection: false
}

/** Swagger UI (GET /docs): helmet's full set for HTML pages, its scripts and styles allowed. */
export const DOCUMENT_HEADERS: HelmetOptions = {
  contentSecurityPolicy: {
    directives: {
      defaultSrc: ["'self'"],
      scriptSrc: ["'self'"],
      styleSrc: ["'self'", "'unsafe-inline'"],
      imgSrc: ["'self'", 'data:', 'validator.swagger.io'],
      connectSrc: ["'self'"],
      frameAncestors: ["'none'"],
      // Not forced: the service is often reached over plain HTTP inside a private network,
      // and upgrading Swagger UI's assets to https would break /docs there.
      upgradeInsecureRequests: null
    }
  }
}

/**
 * helmet's headers, computed once by running helmet against a stand-in response. With no
 * CSP nonces they are the same for every response, while @fastify/helmet builds helmet's
 * middleware again for every request: too slow for the hot path (docs/benchmarks.md).
 */
export function securityHeaders (options: HelmetOptions): Record<string, string> {
  const headers: Record<string, string> = {}
  const res = {
    setHeader (name: string, value: string | number) { headers[name.toLowerCase()] = String(value) },
    removeHeader (name: string) { delete headers[name.toLowerCase()] }
  }
  helmet(options)({} as never, res as never, (err?: unknown) => { if (err) throw err })
  return headers
}

/**
 * A body schema keyed by content type (login's JSON or form) validates nothing when the
 * request has no body and no content type: the handler would see `undefined`. Such
 * requests are refused before validation, like a body of the wrong type.
 */
function requireBody (request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction): void {
  if (request.body === undefined) {
    done(new BadRequest('body must be object'))
    return
  }
  done()
}

export default fp<SecurityOptions>(async function securityPlugin (fastify, opts) {
  const clients = opts.rateLimitClients ?? RATE_LIMIT_CLIENTS
  fastify.addHook('onRoute', (route) => {
    // Before @fastify/rate-limit's own onRoute hook (registered below) builds the route's
    // store: its in-process LRU, used without Redis, holds this many clients.
    const limit = (route.config as { rateLimit?: { cache?: number } } | undefined)?.rateLimit
    if (typeof limit === 'object' && limit.cache === undefined) limit.cache = clients

    const body = route.schema?.body as { content?: unknown } | undefined
    if (body?.content === undefined) return
    const hooks = route.preValidation
    route.preValidation = hooks === undefined ? [requireBody] : [requireBody, ...(Array.isArray(hooks) ? hooks : [hooks])]
  })

  const headers = securityHeaders(API_HEADERS)
  fastify.addHook('onRequest', function (_request, reply, done) {
    reply.headers(headers)
    done()
  })

  // No CORS headers at all unless origins are listed: browsers then refuse cross-origin calls.
  if (opts.corsOrigins.length > 0) {
    await fastify.register(fastifyCors, {
      origin: opts.corsOrigins,
      methods: ['GET', 'POST', 'PATCH', 'DELETE'],
      allowedHeaders: ['authorization', 'content-type', 'x-request-id'],
      exposedHeaders: ['retry-after', 'x-request-id'],
      maxAge: 600
    })
  }

  // Whether a refused client is the first of its window (route and client key): the one
  // whose refusal is audited.
  const { redis } = fastify
  const audited = new BoundedMap<string, true>(clients)
  const firstInWindow = redis === null
    ? async (key: string, windowMs: number) => audited.setIfAbsent(key, true, windowMs)
    : async (key: string, windowMs: number) => await redis.set(`rla:${key}`, '1', 'PX', windowMs, 'NX') === 'OK'

  await fastify.register(fastifyRateLimit, {
    global: false,
    // Without Redis, each route's store is the plugin's in-process LRU, capped by the
    // route's `cache` (set above).
    redis: redis ?? undefined,
    nameSpace: 'rl:',
    // Redis down: let requests through (argon2 still bounds the rate) rather than lock
    // every user out; the per-username lockout fails open the same way.
    skipOnError: true,
    // IPv6 clients by their /64 (lib/client-ip.ts).
    keyGenerator: (request) => clientKey(clientIp(request)),
    // Audited once per client, route and window, not per refused request: a client
    // hammering a limit would otherwise write an audit row for each (and slow everyone).
    // Fire and forget: the 429 waits for neither Redis nor the audit row.
    onExceeded: (request, key) => {
      const route = request.routeOptions.url ?? ''
      const windowMs = Number((request.routeOptions.config as { rateLimit?: { timeWindow?: number } }).rateLimit?.timeWindow ?? 60_000)
      firstInWindow(`${route}:${key}`, windowMs).then((first) => {
        if (first) return fastify.audit.record({ type: 'rate_limited', ip: clientIp(request), detail: { route } })
      }, () => {})
    },
    errorResponseBuilder: (_request, context) =>
      new TooManyRequests(`Too many requests, retry in ${context.after}`)
  })
}, { name: 'security', dependencies: ['redis', 'audit'] })
