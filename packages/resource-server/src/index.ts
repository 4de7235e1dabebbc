// A Fastify plugin for services that accept the auth service's access tokens. Provides
// `fastify.authenticate` (an onRequest hook), `fastify.requireRole(role)`,
// `fastify.requireMfa` and `request.user`. A token is verified locally (the HS256
// secret, or the issuer's JWKS), then its revocation state is read with the one Redis
// command the auth service itself uses, decided by the same code (./protocol.ts); when Redis cannot say (a miss, Redis
// unreachable, a protocol version it does not speak), the auth service is asked by token
// introspection; when neither can be asked, the request is refused with 503.
import fp from 'fastify-plugin'
import { Redis, type Cluster } from 'ioredis'
import type {
  FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction,
  onRequestAsyncHookHandler, onRequestHookHandler
} from 'fastify'
import { checkFields, decide, PROTOCOL_KEY, PROTOCOL_VERSION, userKey, type CacheDecision } from './protocol.js'
import { createAccessTokenVerifier, hasSecondFactor, TokenError, UnknownKeyError, type AccessClaims, type Role } from './tokens.js'
import { JwksKeys } from './jwks.js'
import { createIntrospector, type Introspect } from './introspection.js'

export type { AccessClaims, Role } from './tokens.js'
export { hasSecondFactor, SECOND_FACTORS } from './tokens.js'
export type { CacheDecision } from './protocol.js'
export { PROTOCOL_KEY, PROTOCOL_VERSION } from './protocol.js'

export interface ResourceServerOptions {
  /**
   * The auth service's base URL (e.g. `http://auth:3000`): the JWKS and introspection
   * endpoints are found under it unless given one by one.
   */
  authUrl?: string
  /** Default `<authUrl>/.well-known/jwks.json`. Not used with `secret`. */
  jwksUrl?: string
  /** Default `<authUrl>/oauth/introspect`. */
  introspectionUrl?: string
  /** This service's registered client (`POST /clients` at the auth service), for introspection. */
  clientId: string
  clientSecret: string
  /**
   * The HS256 secret, when the auth service signs with one (`JWT_SECRET`). Without it the
   * keys come from the JWKS (EdDSA/ES256), and this service holds no secret at all.
   */
  secret?: string
  /** `iss` and `aud` the tokens must carry (the auth service's JWT_ISSUER, JWT_AUDIENCE). */
  issuer?: string
  audience?: string
  /**
   * The Redis the auth service writes revocations to: a URL (the plugin makes and closes
   * its own client) or an ioredis client or Cluster of yours, without a `keyPrefix` of its
   * own (the plugin only reads, and never waits for a command longer than its timeout).
   */
  redis: string | Redis | Cluster
  /** The auth service's REDIS_KEY_PREFIX (default `auth:`). */
  keyPrefix?: string
  /** An introspection call gives up after this long: a 503 (default 1000 ms). */
  introspectionTimeoutMs?: number
  /** After a failed Redis command, Redis is left alone this long (default 1000 ms). */
  redisBreakerMs?: number
  /** A Redis command (our own client only) gives up after this long (default 250 ms). */
  redisCommandTimeoutMs?: number
  /** Least time between two JWKS fetches caused by unknown `kid`s (default 10 s). */
  jwksMinRefreshMs?: number
  /**
   * Keys older than this are fetched again in the background (default 5 min), so that a
   * key the auth service retired stops verifying here too.
   */
  jwksMaxAgeMs?: number
  /** The realm of the `WWW-Authenticate` challenges (default `api`). */
  realm?: string
  /**
   * Every token `authenticate` admits must come from a login with a second factor (its
   * `amr` names a TOTP/recovery code or a passkey: hasSecondFactor()); others get 403
   * `AUTH_MFA_REQUIRED`. Default false: use the `requireMfa` hook on the routes that need it.
   */
  requireMfa?: boolean
}

/** Counters of what the checks did, for tests and metrics. */
export interface ResourceServerStats {
  /** Decided from the one Redis read. */
  redisDecisions: number
  /** Introspection calls made. */
  introspections: number
  /** Requests refused with 503: neither Redis nor introspection could decide. */
  unavailable: number
}

export interface ResourceServer {
  readonly stats: ResourceServerStats
  /** Whether Redis is trusted: the protocol marker says a version this code speaks. */
  readonly redisTrusted: boolean
  /** Reads the protocol marker again now. */
  checkProtocol: () => Promise<void>
}

declare module 'fastify' {
  interface FastifyInstance {
    authenticate: onRequestHookHandler
    requireRole: (role: Role) => onRequestAsyncHookHandler
    /** After `authenticate`: 403 `AUTH_MFA_REQUIRED` unless the token's login had a second factor. */
    requireMfa: onRequestAsyncHookHandler
    resourceServer: ResourceServer
  }
  interface FastifyRequest {
    /** The verified claims of the request's access token, set by `authenticate`. */
    user: AccessClaims
  }
}

/** An answer the hooks give; Fastify's error handler sends `{ statusCode, error, message, code }`. */
export class ResourceServerError extends Error {
  constructor (readonly statusCode: number, readonly code: string, message: string) {
    super(message)
  }
}

const MARKER_RECHECK_MS = 1000
/** How long registration waits for Redis; without it, requests are introspected meanwhile. */
const REDIS_START_WAIT_MS = 1000

/** Reads a user's revocation state with one HMGET, while Redis is there and trusted. */
class RevocationReader {
  trusted = false
  private openUntil = 0
  private lastMarkerCheck = 0

  constructor (
    private readonly redis: Redis | Cluster,
    private readonly prefix: string,
    private readonly breakerMs: number,
    private readonly log: FastifyBaseLogger
  ) {}

  /** Connected, the breaker closed, and the marker says our protocol. */
  usable (): boolean {
    return this.trusted && this.redis.status === 'ready' && Date.now() >= this.openUntil
  }

  private trip (err: unknown): void {
    if (Date.now() >= this.openUntil) {
      this.log.warn({ err: { message: (err as Error).message } }, 'Redis failed: asking the auth service for a while')
    }
    this.openUntil = Date.now() + this.breakerMs
  }

  /** The one round trip; a failure is `unknown` (and opens the breaker). */
  read (claims: AccessClaims): Promise<CacheDecision> {
    return this.redis.hmget(this.prefix + userKey(claims.sub), ...checkFields(claims.sid)).then(
      (values) => decide(values, claims.sca),
      (err: unknown) => {
        this.trip(err)
        return 'unknown' as const
      })
  }

  async checkMarker (): Promise<void> {
    this.lastMarkerCheck = Date.now()
    let marker: string | null
    try {
      marker = await this.redis.get(this.prefix + PROTOCOL_KEY)
    } catch (err) {
      this.trip(err)
      return
    }
    const trusted = marker === PROTOCOL_VERSION
    if (trusted !== this.trusted) {
      if (trusted) {
        this.log.info({ protocol: marker }, 'Redis revocation protocol recognised: deciding from Redis')
      } else {
        this.log.warn({ found: marker, expected: PROTOCOL_VERSION, key: this.prefix + PROTOCOL_KEY },
          'Redis does not hold revocation protocol ' + PROTOCOL_VERSION + ': asking the auth service instead')
      }
    }
    this.trusted = trusted
  }

  /** After a miss, or while untrusted: read the marker again, at most once a second. */
  recheckMarker (): void {
    if (this.redis.status === 'ready' && Date.now() - this.lastMarkerCheck >= MARKER_RECHECK_MS) {
      this.checkMarker().catch(() => {})
    }
  }
}

/** Waits (a bounded while) for the client to be ready; connects it when it is ours. */
async function untilReady (redis: Redis | Cluster, owned: boolean, ms: number): Promise<void> {
  if (redis.status === 'ready') return
  let timer: NodeJS.Timeout | undefined
  const ready = new Promise<void>((resolve) => {
    redis.once('ready', resolve)
    timer = setTimeout(() => { redis.off('ready', resolve); resolve() }, ms)
  })
  if (owned && redis.status === 'wait') (redis as Redis).connect().catch(() => {})
  await ready
  clearTimeout(timer)
}

function ownClient (url: string, commandTimeout: number): Redis {
  const client = new Redis(url, {
    lazyConnect: true,
    // Fail fast: while Redis is unreachable a request asks the auth service instead of
    // queueing behind a dead socket.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout,
    // A connection with commands outstanding that hears nothing for this long is rebuilt
    // (a black-holed connection would otherwise look open for minutes).
    socketTimeout: 1000,
    connectTimeout: 1000,
    keepAlive: 10_000,
    // Reads of concurrent requests share one write.
    enableAutoPipelining: true,
    retryStrategy: (times: number) => Math.min(50 * times, 500)
  })
  return client
}

async function resourceServer (fastify: FastifyInstance, opts: ResourceServerOptions): Promise<void> {
  const base = opts.authUrl?.replace(/\/+$/, '')
  const jwksUrl = opts.jwksUrl ?? (base === undefined ? undefined : `${base}/.well-known/jwks.json`)
  const introspectionUrl = opts.introspectionUrl ?? (base === undefined ? undefined : `${base}/oauth/introspect`)
  if (introspectionUrl === undefined) throw new Error('resource-server: give authUrl or introspectionUrl')
  if (opts.secret === undefined && jwksUrl === undefined) throw new Error('resource-server: give secret (HS256), or authUrl or jwksUrl (JWKS)')
  if (typeof opts.clientId !== 'string' || typeof opts.clientSecret !== 'string') {
    throw new Error('resource-server: clientId and clientSecret (a client registered at the auth service) are required')
  }
  if (typeof opts.redis !== 'string' && (opts.redis.options as { keyPrefix?: string }).keyPrefix) {
    throw new Error('resource-server: the Redis client must not have a keyPrefix of its own: set the keyPrefix option')
  }

  const log = fastify.log.child({ plugin: 'resource-server' })
  const realm = opts.realm ?? 'api'
  const verifier = createAccessTokenVerifier({
    ...(opts.secret === undefined ? { keys: [] } : { secret: opts.secret }),
    issuer: opts.issuer ?? 'auth-service',
    audience: opts.audience ?? 'auth-service'
  })
  let jwks: JwksKeys | undefined
  if (opts.secret === undefined) {
    jwks = new JwksKeys({ url: jwksUrl as string, minRefreshMs: opts.jwksMinRefreshMs, maxAgeMs: opts.jwksMaxAgeMs }, verifier,
      (err) => log.warn({ err: { message: err.message } }, 'JWKS fetch failed'))
    // Not fatal: the keys are fetched again by the first token that needs them.
    await jwks.refresh()
  }

  const owned = typeof opts.redis === 'string'
  const redis = typeof opts.redis === 'string' ? ownClient(opts.redis, opts.redisCommandTimeoutMs ?? 250) : opts.redis
  let redisDown = false
  const reader = new RevocationReader(redis, opts.keyPrefix ?? 'auth:', opts.redisBreakerMs ?? 1000, log)
  const onError = (err: Error) => {
    if (!redisDown) log.warn({ err: { message: err.message } }, 'Redis connection error: asking the auth service')
    redisDown = true
  }
  // A Redis that comes back may be another one, or emptied: read its marker first.
  const onReady = () => {
    redisDown = false
    reader.checkMarker().catch(() => {})
  }
  let closing = false
  // ioredis reconnects by itself, except in a few corners where the client ends for
  // good: start our own again, until the app closes.
  const onEnd = () => {
    if (!closing) setTimeout(() => { if (!closing) (redis as Redis).connect().catch(() => {}) }, 500).unref()
  }
  redis.on('error', onError)
  redis.on('ready', onReady)
  if (owned) redis.on('end', onEnd)
  // Not fatal either: without Redis every request is introspected until it comes.
  await untilReady(redis, owned, REDIS_START_WAIT_MS)
  if (redis.status === 'ready') await reader.checkMarker()

  const introspect: Introspect = createIntrospector({
    url: introspectionUrl,
    clientId: opts.clientId,
    clientSecret: opts.clientSecret,
    timeoutMs: opts.introspectionTimeoutMs
  })
  const stats: ResourceServerStats = { redisDecisions: 0, introspections: 0, unavailable: 0 }

  function refuse (reply: FastifyReply, code: 'AUTH_MISSING_TOKEN' | 'AUTH_INVALID_TOKEN', message: string): ResourceServerError {
    // RFC 6750 §3: every 401 names the scheme; an error code only when a token was presented.
    reply.header('www-authenticate', code === 'AUTH_INVALID_TOKEN'
      ? `Bearer realm="${realm}", error="invalid_token"`
      : `Bearer realm="${realm}"`)
    return new ResourceServerError(401, code, message)
  }

  // The auth service's own code for it: sign in again, with the second factor.
  function secondFactorRequired (): ResourceServerError {
    return new ResourceServerError(403, 'AUTH_MFA_REQUIRED', 'Requires a sign-in with a second factor')
  }

  function unavailable (reply: FastifyReply): ResourceServerError {
    stats.unavailable++
    reply.header('retry-after', '1')
    return new ResourceServerError(503, 'AUTH_UNAVAILABLE', 'Cannot check the access token now, try again')
  }

  /** Live or not, from introspection; throws when the auth service cannot be asked. */
  async function viaIntrospection (token: string, claims: AccessClaims): Promise<boolean> {
    stats.introspections++
    const answer = await introspect(token)
    return answer.active && answer.sub === claims.sub && answer.sid === claims.sid &&
      (answer.token_type === undefined || answer.token_type === 'access_token')
  }

  function isLive (token: string, claims: AccessClaims): Promise<boolean> {
    if (reader.usable()) {
      // One promise on the warm path: the HMGET's.
      return reader.read(claims).then((decision) => {
        if (decision !== 'unknown') {
          stats.redisDecisions++
          return decision === 'live'
        }
        reader.recheckMarker()
        return viaIntrospection(token, claims)
      })
    }
    reader.recheckMarker()
    return viaIntrospection(token, claims)
  }

  function finish (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction, token: string, claims: AccessClaims): void {
    isLive(token, claims).then((live) => {
      if (!live) return done(refuse(reply, 'AUTH_INVALID_TOKEN', 'Access token has been revoked'))
      // After the revocation check: a revoked token is a 401 whatever its login was.
      if (opts.requireMfa === true && !hasSecondFactor(claims)) return done(secondFactorRequired())
      request.user = claims
      done()
    }, (err: unknown) => {
      log.warn({ err: { message: (err as Error).message } }, 'token check failed: neither Redis nor introspection could decide')
      done(unavailable(reply))
    })
  }

  // Callback-style, as a hook on every request should be: the HMGET's promise is the only one.
  function authenticate (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    const header = request.headers.authorization
    if (header === undefined) {
      done(refuse(reply, 'AUTH_MISSING_TOKEN', 'Missing access token'))
      return
    }
    jwks?.refreshIfStale()
    let claims: AccessClaims
    try {
      claims = verifier.verifyBearer(header)
    } catch (err) {
      if (err instanceof UnknownKeyError && jwks !== undefined) {
        retryWithFreshKeys(jwks, request, reply, done, header)
        return
      }
      done(err instanceof TokenError ? refuse(reply, 'AUTH_INVALID_TOKEN', err.message) : err as Error)
      return
    }
    finish(request, reply, done, header.slice(7), claims)
  }

  // An unknown kid: the issuer may have rotated its key. Fetch the JWKS again (rate-
  // limited) and verify once more; if the keys could not be fetched, nobody can tell: 503.
  function retryWithFreshKeys (keys: JwksKeys, request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction, header: string): void {
    keys.refreshForUnknownKid().then((current) => {
      let claims: AccessClaims
      try {
        claims = verifier.verifyBearer(header)
      } catch (err) {
        if (err instanceof UnknownKeyError && !current) return done(unavailable(reply))
        return done(err instanceof TokenError ? refuse(reply, 'AUTH_INVALID_TOKEN', err.message) : err as Error)
      }
      finish(request, reply, done, header.slice(7), claims)
    }, done)
  }

  fastify.decorateRequest('user', null as unknown as AccessClaims)
  fastify.decorate('authenticate', authenticate)
  fastify.decorate('requireRole', function requireRole (role: Role) {
    return async function (request: FastifyRequest) {
      // The role in a live token is current: the auth service revokes tokens on a role change.
      if (request.user?.role !== role) throw new ResourceServerError(403, 'AUTH_FORBIDDEN', `Requires role ${role}`)
    }
  })
  fastify.decorate('requireMfa', async function requireMfa (request: FastifyRequest) {
    if (request.user === null || !hasSecondFactor(request.user)) throw secondFactorRequired()
  })
  fastify.decorate('resourceServer', {
    stats,
    get redisTrusted () { return reader.trusted },
    checkProtocol: () => reader.checkMarker()
  })

  fastify.addHook('onClose', async () => {
    closing = true
    redis.off('ready', onReady)
    if (owned) {
      redis.off('end', onEnd)
      await (redis as Redis).quit().catch(() => redis.disconnect())
    }
    redis.off('error', onError)
  })
}

export default fp<ResourceServerOptions>(resourceServer, { name: '@auth-service/fastify-resource-server', fastify: '5.x' })
export { resourceServer }
