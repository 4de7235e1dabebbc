// The application as a plugin: the shared schemas, the plugins (infrastructure, then the
// domain), the routes. server.ts and the tests build it the same way, with the server
// options of lib/server-options.ts; the admin command line (scripts/admin.ts) builds the
// same plugins without the routes.
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import fastifyFormbody from '@fastify/formbody'
import { errorHandler } from './lib/errors.js'
import { BODY_LIMIT } from './lib/server-options.js'
import { sharedSchemas } from './schemas/index.js'
import configPlugin, { mfaEncryptionKey, type Config } from './plugins/external/config.js'
import metricsPlugin from './plugins/external/metrics.js'
import requestLoggingPlugin from './plugins/external/request-logging.js'
import dbPlugin from './plugins/external/db.js'
import redisPlugin from './plugins/external/redis.js'
import mailPlugin from './plugins/external/mail.js'
import securityPlugin from './plugins/external/security.js'
import swaggerPlugin from './plugins/external/swagger.js'
import revocationPlugin from './plugins/app/revocation/index.js'
import authPlugin from './plugins/app/auth.js'
import auditPlugin from './plugins/app/audit/index.js'
import lockoutPlugin from './plugins/app/lockout/index.js'
import usersPlugin from './plugins/app/users/index.js'
import mfaPlugin from './plugins/app/mfa/index.js'
import sessionsPlugin from './plugins/app/sessions/index.js'
import clientsPlugin from './plugins/app/clients/index.js'
import oauthPlugin from './plugins/app/oauth/index.js'
import recoveryPlugin from './plugins/app/recovery/index.js'
import eventsPlugin from './plugins/app/events/index.js'
import webauthnPlugin from './plugins/app/webauthn/index.js'
import healthRoutes from './routes/health/index.js'
import wellKnownRoutes from './routes/well-known/index.js'
import authRoutes from './routes/auth/index.js'
import verifyRoutes from './routes/auth/verify.js'
import recoveryRoutes from './routes/auth/recovery.js'
import mfaRoutes from './routes/auth/mfa.js'
import webauthnRoutes from './routes/auth/webauthn.js'
import userRoutes from './routes/users/index.js'
import auditRoutes from './routes/audit/index.js'
import clientRoutes from './routes/clients/index.js'
import oauthRoutes from './routes/oauth/index.js'
import ssfRoutes from './routes/ssf/index.js'

export interface AppOptions {
  config: Config
  /** Interval of the purges (expired sessions and recovery tokens, waiting MFA logins; ms); tests turn them off with 0. */
  purgeIntervalMs?: number
  /** Clients a rate limit keeps in memory without Redis (RATE_LIMIT_CLIENTS); a test makes it small. */
  rateLimitClients?: number
}

/** The shared schemas and every plugin: the services the routes use, and nothing that listens. */
export async function services (fastify: FastifyInstance, opts: AppOptions): Promise<void> {
  const { config } = opts
  // Set before anything registers: every route, Swagger UI's included, inherits them.
  fastify.setErrorHandler(errorHandler)
  // JSON (and the login form) only: any other body is a 415 before it reaches a route.
  fastify.removeContentTypeParser('text/plain')
  for (const schema of sharedSchemas) fastify.addSchema(schema)

  // Plugins, in an order that satisfies each one's `dependencies`.
  await fastify.register(configPlugin, { config })
  await fastify.register(metricsPlugin)
  await fastify.register(requestLoggingPlugin)
  await fastify.register(fastifyFormbody, { bodyLimit: BODY_LIMIT })
  const startupTimeoutMs = config.STARTUP_TIMEOUT * 1000
  await fastify.register(dbPlugin, { databaseUrl: config.DATABASE_URL, poolSize: config.DATABASE_POOL_SIZE, startupTimeoutMs })
  await fastify.register(redisPlugin, { url: config.withoutRedis ? undefined : config.REDIS_URL, keyPrefix: config.REDIS_KEY_PREFIX, startupTimeoutMs })
  // After the database and Redis: its queue may still use them when the app closes.
  await fastify.register(mailPlugin, { smtpUrl: config.SMTP_URL, from: config.MAIL_FROM, templatesDir: config.MAIL_TEMPLATES_DIR })
  await fastify.register(revocationPlugin, { accessTtlSeconds: config.ACCESS_TOKEN_TTL })
  await fastify.register(authPlugin, {
    secret: config.jwtKey,
    keys: config.signingKeys,
    issuer: config.JWT_ISSUER,
    audience: config.JWT_AUDIENCE,
    accessTtl: config.ACCESS_TOKEN_TTL
  })
  await fastify.register(auditPlugin, { retentionDays: config.AUDIT_RETENTION_DAYS, purgeIntervalMs: opts.purgeIntervalMs })
  await fastify.register(eventsPlugin, {
    issuer: config.JWT_ISSUER,
    publicUrl: config.PUBLIC_URL,
    databaseUrl: config.DATABASE_URL,
    intervalMs: config.EVENTS_DISPATCH_INTERVAL_MS,
    timeoutMs: config.EVENTS_DELIVERY_TIMEOUT_MS,
    maxDelayS: config.EVENTS_RETRY_MAX_DELAY,
    maxAgeS: config.EVENTS_MAX_AGE,
    retentionS: config.EVENTS_RETENTION
  })
  await fastify.register(lockoutPlugin, { threshold: config.LOCKOUT_THRESHOLD, globalThreshold: config.lockoutGlobalThreshold })
  await fastify.register(usersPlugin, {
    memoryCost: config.ARGON2_MEMORY_COST,
    timeCost: config.ARGON2_TIME_COST,
    parallelism: config.ARGON2_PARALLELISM
  })
  await fastify.register(mfaPlugin, {
    encryptionKey: mfaEncryptionKey(config),
    issuer: config.JWT_ISSUER,
    purgeIntervalMs: opts.purgeIntervalMs
  })
  await fastify.register(sessionsPlugin, {
    refreshTtl: config.REFRESH_TOKEN_TTL,
    accessTtl: config.ACCESS_TOKEN_TTL,
    maxLifetime: config.SESSION_MAX_LIFETIME,
    reuseInterval: config.REFRESH_REUSE_INTERVAL,
    refreshRateLimit: config.REFRESH_RATE_LIMIT,
    purgeIntervalMs: opts.purgeIntervalMs
  })
  await fastify.register(recoveryPlugin, {
    accountLimit: config.RECOVERY_ACCOUNT_LIMIT,
    appUrl: config.APP_URL,
    purgeIntervalMs: opts.purgeIntervalMs
  })
  await fastify.register(webauthnPlugin, {
    rpId: config.WEBAUTHN_RP_ID,
    origins: config.webauthnOrigins,
    rpName: config.JWT_ISSUER,
    purgeIntervalMs: opts.purgeIntervalMs
  })
  await fastify.register(clientsPlugin)
  await fastify.register(oauthPlugin, { issuer: config.JWT_ISSUER, audience: config.JWT_AUDIENCE })
  await fastify.register(securityPlugin, { corsOrigins: config.corsOrigins, rateLimitClients: opts.rateLimitClients })
  await fastify.register(swaggerPlugin)
}

async function app (fastify: FastifyInstance, opts: AppOptions): Promise<void> {
  await services(fastify, opts)
  const { config } = opts
  if (config.ADMIN_USERNAME !== undefined && config.ADMIN_PASSWORD !== undefined) {
    const admin = await fastify.users.ensureAdmin(config.ADMIN_USERNAME, config.ADMIN_PASSWORD)
    if (admin === 'created') {
      fastify.log.info({ username: config.ADMIN_USERNAME }, 'initial admin created')
    } else if (admin.role !== 'admin' || admin.disabled) {
      // Loud: whoever set ADMIN_USERNAME expects an admin to sign in with, and there is none.
      fastify.log.warn({ username: admin.username, role: admin.role, disabled: admin.disabled },
        'ADMIN_USERNAME names an existing user that is not an active admin: NO ADMIN WAS CREATED and the user was left as it is; promote it with an admin\'s PATCH /users/:id, or set another ADMIN_USERNAME')
    }
  }

  // Routes, one encapsulated plugin per prefix.
  await fastify.register(healthRoutes)
  await fastify.register(wellKnownRoutes)
  await fastify.register(authRoutes, { prefix: '/auth' })
  await fastify.register(verifyRoutes, { prefix: '/auth' })
  await fastify.register(recoveryRoutes, { prefix: '/auth' })
  await fastify.register(mfaRoutes, { prefix: '/auth/mfa' })
  await fastify.register(webauthnRoutes, { prefix: '/auth/webauthn' })
  await fastify.register(userRoutes, { prefix: '/users' })
  await fastify.register(auditRoutes, { prefix: '/audit' })
  await fastify.register(clientRoutes, { prefix: '/clients' })
  await fastify.register(oauthRoutes, { prefix: '/oauth' })
  await fastify.register(ssfRoutes, { prefix: '/ssf' })
}

// Not encapsulated: the server (and a test) sees the decorators the app adds.
export default fp<AppOptions>(app, { name: 'app' })
