// The application as a plugin: configuration, infrastructure plugins, domain services,
// routes and the error handler. server.ts and the tests build it the same way.
import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify'
import fp from 'fastify-plugin'
import AjvCompiler from '@fastify/ajv-compiler'
import fastifyFormbody from '@fastify/formbody'
import { blockLogStream } from './lib/log-stream.js'
import configPlugin, { type Config } from './plugins/external/config.js'
import metricsPlugin from './plugins/external/metrics.js'
import dbPlugin from './plugins/external/db.js'
import redisPlugin from './plugins/external/redis.js'
import revocationPlugin from './plugins/app/revocation/index.js'
import authPlugin from './plugins/app/auth.js'
import usersPlugin from './plugins/app/users/index.js'
import sessionsPlugin from './plugins/app/sessions/index.js'
import auditPlugin from './plugins/app/audit/index.js'
import swaggerPlugin from './plugins/external/swagger.js'
import securityPlugin from './plugins/external/security.js'
import lockoutPlugin from './plugins/app/lockout/index.js'
import clientsPlugin from './plugins/app/clients/index.js'
import oauthPlugin from './plugins/app/oauth/index.js'
import { errorHandler } from './lib/errors.js'
import { sharedSchemas } from './schemas/common.js'
import { ChangePasswordBody, ChangeRoleBody, Credentials, LoginBody, Me, PasswordGrant, RefreshBody, Session, TokenPair } from './schemas/auth.js'
import { PatchUserBody, User, UserPage } from './schemas/users.js'
import { AuditEvent, AuditPage } from './schemas/audit.js'
import { Health, Readiness } from './schemas/health.js'
import { clientSchemas } from './schemas/clients.js'
import { oauthSchemas } from './schemas/oauth.js'
import authRoutes from './routes/auth/index.js'
import verifyRoutes from './routes/auth/verify.js'
import userRoutes from './routes/users/index.js'
import auditRoutes from './routes/audit/index.js'
import clientRoutes from './routes/clients/index.js'
import oauthRoutes from './routes/oauth/index.js'
import healthRoutes from './routes/health/index.js'
import wellKnownRoutes, { Jwks } from './routes/well-known/index.js'

export interface AppOptions {
  config: Config
  /** Expired-session purge interval (ms); tests turn it off with 0. */
  purgeIntervalMs?: number
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

/**
 * stdout, written asynchronously in blocks of 4 KiB or every second, whichever comes first;
 * one per process. One write(2) per log line, or per event-loop turn, cost a tenth of the
 * CPU of an authenticated request (docs/benchmarks.md). Flushed synchronously on close.
 */
const logDestination = blockLogStream()

// JSON bodies are validated without coercion (12345678 or true where a string is expected
// is a 400), while query strings and params are coerced as usual (?limit=20).
const ajvCompiler = AjvCompiler()
const buildValidator: any = (externalSchemas: any, ajvOptions: any) => {
  const base = { customOptions: {}, plugins: [], ...ajvOptions }
  const body = ajvCompiler(externalSchemas, { ...base, customOptions: { ...base.customOptions, coerceTypes: false } })
  const rest = ajvCompiler(externalSchemas, base)
  return (route: { httpPart?: string }) => route.httpPart === 'body' ? body(route as any) : rest(route as any)
}

/** Fastify's own options: the one place that sets logging, limits and request ids. */
export function serverOptions (config: Config): FastifyServerOptions {
  return {
    logger: {
      level: config.LOG_LEVEL,
      // Defence in depth: no log line here holds headers or bodies, but if one ever does,
      // secrets come out as [Redacted]. Explicit paths only: wildcards cost every line.
      redact: {
        paths: ['req.headers.authorization', 'req.headers.cookie', 'res.headers["set-cookie"]',
          'body.password', 'body.currentPassword', 'body.newPassword', 'body.refresh_token',
          'body.access_token'],
        censor: '[Redacted]'
      },
      // Asynchronous writes to stdout: the request path never waits on a write(2).
      // Flushed on close (see onClose below).
      stream: logDestination
    },
    // One log line per request (onResponse in app), not Fastify's two.
    logController: new LogController({ disableRequestLogging: true }),
    trustProxy: config.TRUST_PROXY,
    bodyLimit: 16 * 1024,
    // A client's X-Request-Id is kept when it is sane, so logs join up across services.
    requestIdHeader: false,
    genReqId: (req: IncomingMessage) => {
      const given = req.headers['x-request-id']
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID()
    },
    // `example` is OpenAPI's annotation keyword: known to ajv, validates nothing.
    ajv: { customOptions: { allErrors: false, keywords: ['example'] } },
    schemaController: { compilersFactory: { buildValidator } },
    routerOptions: { maxParamLength: 200 },
    return503OnClosing: true
  }
}

async function app (fastify: FastifyInstance, opts: AppOptions): Promise<void> {
  const { config } = opts
  fastify.setErrorHandler(errorHandler)
  // JSON (and the login form) only: any other body is a 415 before it reaches a route.
  fastify.removeContentTypeParser('text/plain')

  // Hooks on every request are callback-style: an async hook costs a promise per request.
  fastify.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id)
    done()
  })
  fastify.addHook('onClose', async () => {
    // Whatever is still buffered reaches stdout before the process exits.
    try { logDestination.flushSync() } catch {}
  })

  for (const schema of [...sharedSchemas, User, UserPage, PatchUserBody, Credentials, LoginBody,
    PasswordGrant, TokenPair, RefreshBody, Me, ChangeRoleBody, ChangePasswordBody, Session,
    AuditEvent, AuditPage, Health, Readiness, Jwks, ...clientSchemas, ...oauthSchemas]) {
    fastify.addSchema(schema)
  }

  await fastify.register(configPlugin, { config })
  await fastify.register(metricsPlugin)
  const { metrics } = fastify
  // One hook per response, for both the log line and the request metrics (the route
  // options are read once: Fastify builds them afresh on every read).
  fastify.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.url
    const ms = reply.elapsedTime
    metrics.observeRequest(request.method, route ?? 'unmatched', reply.statusCode, ms)
    request.log.info({
      method: request.method,
      url: route ?? request.url.split('?', 1)[0],
      statusCode: reply.statusCode,
      ms: Math.round(ms * 100) / 100
    }, 'request completed')
    done()
  })
  await fastify.register(fastifyFormbody, { bodyLimit: 16 * 1024 })
  await fastify.register(dbPlugin, { databaseUrl: config.DATABASE_URL, poolSize: config.DATABASE_POOL_SIZE })
  await fastify.register(redisPlugin, { url: config.REDIS_URL, keyPrefix: config.REDIS_KEY_PREFIX })
  await fastify.register(revocationPlugin, { sessionTtlSeconds: config.REFRESH_TOKEN_TTL })
  await fastify.register(authPlugin, {
    secret: config.jwtKey,
    keys: config.signingKeys,
    issuer: config.JWT_ISSUER,
    audience: config.JWT_AUDIENCE,
    accessTtl: config.ACCESS_TOKEN_TTL
  })
  await fastify.register(auditPlugin)
  await fastify.register(lockoutPlugin, { threshold: config.LOCKOUT_THRESHOLD })
  await fastify.register(usersPlugin, {
    memoryCost: config.ARGON2_MEMORY_COST,
    timeCost: config.ARGON2_TIME_COST,
    parallelism: config.ARGON2_PARALLELISM
  })
  await fastify.register(sessionsPlugin, {
    refreshTtl: config.REFRESH_TOKEN_TTL,
    accessTtl: config.ACCESS_TOKEN_TTL,
    purgeIntervalMs: opts.purgeIntervalMs
  })
  await fastify.register(clientsPlugin)
  await fastify.register(oauthPlugin, { issuer: config.JWT_ISSUER, audience: config.JWT_AUDIENCE })
  await fastify.register(securityPlugin, { corsOrigins: config.corsOrigins })
  await fastify.register(swaggerPlugin)

  if (config.ADMIN_USERNAME !== undefined && config.ADMIN_PASSWORD !== undefined) {
    if (await fastify.users.ensureAdmin(config.ADMIN_USERNAME, config.ADMIN_PASSWORD)) {
      fastify.log.info({ username: config.ADMIN_USERNAME }, 'initial admin created')
    }
  }

  await fastify.register(healthRoutes)
  await fastify.register(wellKnownRoutes)
  await fastify.register(authRoutes, { prefix: '/auth' })
  await fastify.register(verifyRoutes, { prefix: '/auth' })
  await fastify.register(userRoutes, { prefix: '/users' })
  await fastify.register(auditRoutes, { prefix: '/audit' })
  await fastify.register(clientRoutes, { prefix: '/clients' })
  await fastify.register(oauthRoutes, { prefix: '/oauth' })
}

// Not encapsulated: the server (and a test) sees the decorators the app adds.
export default fp<AppOptions>(app, { name: 'app' })
