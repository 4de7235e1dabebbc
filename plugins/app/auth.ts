// Provides `fastify.authenticate` (verify the bearer token, then ask the revocation
// cache), `fastify.requireRole(role)` and `fastify.tokens` (sign access tokens).
import { randomUUID } from 'node:crypto'
import fp from 'fastify-plugin'
import fastifyJwt from '@fastify/jwt'
import { createVerifier, type Algorithm } from 'fast-jwt'
import type { SigningKeys } from '../../lib/keys.js'
import { cachedVerifier } from '../../lib/token-cache.js'
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction, onRequestAsyncHookHandler, onRequestHookHandler } from 'fastify'
import type { Role } from '../../schemas/users.js'
import { Forbidden, InvalidToken, MissingToken } from '../../lib/errors.js'

/** What a verified access token tells about its bearer. */
export interface AccessClaims {
  sub: string
  preferred_username: string
  role: Role
  sid: string
  /** The session's creation time, µs since the epoch, from the database clock. */
  sca: number
  jti: string
  iat: number
  exp: number
  iss: string
  aud: string
}

declare module '@fastify/jwt' {
  interface FastifyJWT {
    payload: Omit<AccessClaims, 'iat' | 'exp' | 'iss' | 'aud'>
    user: AccessClaims
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    authenticate: onRequestHookHandler
    requireRole: (role: Role) => onRequestAsyncHookHandler
    tokens: {
      accessTtl: number
      signAccess: (claims: { sub: string, username: string, role: Role, sid: string, sca: number }) => string
    }
  }
}

// A bearer token in the only place it may be (never a query string or a cookie), of a
// sane size: anything longer is refused before any parsing.
const BEARER = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)$/i
const MAX_TOKEN_LENGTH = 4096
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

export interface AuthOptions {
  secret: string
  /** EdDSA/ES256 keys: sign with the first, verify with any (by `kid`). */
  keys?: SigningKeys
  issuer: string
  audience: string
  accessTtl: number
}

export default fp<AuthOptions>(async function authPlugin (fastify, opts) {
  const { keys } = opts
  const verifyOptions = {
    // One pinned algorithm per key (RFC 8725 §3.1): no "none", no HS/ES confusion.
    algorithms: [keys?.alg ?? 'HS256'] as Algorithm[],
    allowedIss: opts.issuer,
    allowedAud: opts.audience,
    requiredClaims: ['sub', 'sid', 'sca', 'role', 'jti', 'iat', 'exp', 'iss', 'aud'],
    // Tokens already verified are remembered by cachedVerifier() below, not here.
    cache: false
  }
  await fastify.register(fastifyJwt, {
    secret: keys === undefined ? opts.secret : { private: keys.privatePem, public: keys.publicKeys[0].pem },
    sign: {
      algorithm: keys?.alg ?? 'HS256',
      ...(keys === undefined ? {} : { kid: keys.kid }),
      iss: opts.issuer,
      aud: opts.audience,
      expiresIn: opts.accessTtl
    },
    verify: verifyOptions
  })
  const { revocation } = fastify

  // With asymmetric keys, the token's `kid` picks the key (the current one, or a previous
  // one during a rotation); a missing or unknown kid is refused.
  const byKid = new Map((keys?.publicKeys ?? []).map((k) =>
    [k.kid, createVerifier({ ...verifyOptions, algorithms: [k.alg as Algorithm], key: k.pem })]))
  function verifySignature (token: string): AccessClaims {
    if (keys === undefined) return fastify.jwt.verify<AccessClaims>(token)
    const header = JSON.parse(Buffer.from(token.slice(0, token.indexOf('.')), 'base64url').toString())
    const verifier = typeof header?.kid === 'string' ? byKid.get(header.kid) : undefined
    if (verifier === undefined) throw new Error('unknown kid')
    return verifier(token) as AccessClaims
  }

  // What does not change between requests with the same Authorization header (its syntax,
  // the signature, the claims' shape) is checked once and remembered with it, in a bounded
  // cache; expiry is checked on every hit, revocation on every request.
  const verifyBearer = cachedVerifier(function verifyBearer (header: string): AccessClaims {
    const match = header.length <= MAX_TOKEN_LENGTH ? BEARER.exec(header) : null
    if (match === null) throw new InvalidToken('Malformed Authorization header: expected "Bearer <token>"')
    let claims: AccessClaims
    try {
      claims = verifySignature(match[1])
    } catch {
      throw new InvalidToken('Invalid or expired access token')
    }
    // Claims are checked for shape even though the signature is ours: nothing malformed
    // ever reaches a SQL parameter or a Redis key.
    if (typeof claims.sub !== 'string' || !UUID.test(claims.sub) || typeof claims.sid !== 'string' ||
        !UUID.test(claims.sid) || !Number.isSafeInteger(claims.sca) ||
        (claims.role !== 'user' && claims.role !== 'admin')) {
      throw new InvalidToken('Invalid or expired access token')
    }
    return claims
  })

  fastify.decorate('tokens', {
    accessTtl: opts.accessTtl,
    signAccess ({ sub, username, role, sid, sca }) {
      return fastify.jwt.sign({ sub, preferred_username: username, role, sid, sca, jti: randomUUID() })
    }
  })

  /** The verified, well-formed claims of the request's bearer token; throws a 401 otherwise. */
  function bearerClaims (request: FastifyRequest): AccessClaims {
    const header = request.headers.authorization
    if (header === undefined) throw new MissingToken()
    return verifyBearer(header)
  }

  // Callback-style, like every hook on the hot path: the HMGET's promise is the only one.
  fastify.decorate('authenticate', function authenticate (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) {
    let claims: AccessClaims
    try {
      claims = bearerClaims(request)
    } catch (err) {
      done(err as Error)
      return
    }
    revocation.isLive(claims.sub, claims.sid, claims.sca).then((live) => {
      if (!live) return done(new InvalidToken('Access token has been revoked'))
      request.user = claims
      // What a signed-in caller gets back is theirs alone: no cache, shared or private, keeps it.
      reply.header('cache-control', 'no-store')
      done()
    }, done)
  })

  fastify.decorate('requireRole', function requireRole (role: Role) {
    return async function (request: FastifyRequest) {
      // The role in a live token is current: changing a role revokes the user's tokens.
      if (request.user.role !== role) throw new Forbidden(`Requires role ${role}`)
    }
  })
}, { name: 'auth', dependencies: ['revocation'] })
