// Access tokens: signing them, and turning an Authorization header into verified,
// well-formed claims. Free of Fastify, so that services other than this one can verify
// the same way (plugins/app/auth.ts is the thin plugin over it).
import { randomUUID } from 'node:crypto'
import { createSigner, createVerifier, type Algorithm } from 'fast-jwt'
import type { SigningKeys } from './keys.js'
import { UUID_PATTERN, type Role } from '../schemas/common.js'

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

export interface TokenOptions {
  /** The HS256 secret, used when there are no asymmetric keys. */
  secret: string
  /** EdDSA/ES256 keys: sign with the first, verify with any (by `kid`). */
  keys?: SigningKeys
  issuer: string
  audience: string
  /** Access token lifetime, seconds. */
  accessTtl: number
}

export interface Tokens {
  accessTtl: number
  /** `short`: a lifetime below accessTtl (seconds from `iat`), for a session that ends sooner. */
  signAccess: (claims: { sub: string, username: string, role: Role, sid: string, sca: number }, short?: { iat: number, ttl: number }) => string
  /** The claims of the bearer token in an Authorization header; throws a TokenError otherwise. */
  verifyBearer: (header: string) => AccessClaims
}

/** A header or token refused; the message is safe to show the client. */
export class TokenError extends Error {}

// A bearer token in the only place it may be (never a query string or a cookie), of a
// sane size: anything longer is refused before any parsing.
const BEARER = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)$/i
const MAX_HEADER_LENGTH = 4096
const UUID = new RegExp(UUID_PATTERN)
const REQUIRED_CLAIMS = ['sub', 'sid', 'sca', 'role', 'jti', 'iat', 'exp', 'iss', 'aud']
/** How far ahead of this instance's clock a token's `iat` may be: instances' clocks differ a little. */
const CLOCK_TOLERANCE_S = 10

// Claims are checked for shape even though the signature is ours: nothing malformed ever
// reaches a SQL parameter or a Redis key.
function wellFormed (claims: AccessClaims): boolean {
  return typeof claims.sub === 'string' && UUID.test(claims.sub) &&
    typeof claims.sid === 'string' && UUID.test(claims.sid) &&
    Number.isSafeInteger(claims.sca) &&
    (claims.role === 'user' || claims.role === 'admin')
}

export function createTokens (opts: TokenOptions): Tokens {
  const { keys } = opts
  // One pinned algorithm per key (RFC 8725 §3.1): no "none", no HS/ES confusion.
  const verifierFor = (algorithm: Algorithm, key: string) => createVerifier({
    algorithms: [algorithm],
    key,
    allowedIss: opts.issuer,
    allowedAud: opts.audience,
    requiredClaims: REQUIRED_CLAIMS,
    // No token lives longer than the access-token lifetime, whatever its `exp` says: one
    // signed with a far `exp` (a leaked key, a signing bug) still dies with its `iat`.
    maxAge: opts.accessTtl * 1000,
    cache: false
  }) as (token: string) => AccessClaims

  let verifySignature: (token: string) => AccessClaims
  if (keys === undefined) {
    verifySignature = verifierFor('HS256', opts.secret)
  } else {
    // The token's `kid` picks the key (the current one, or a previous one during a
    // rotation); a missing or unknown kid is refused.
    const byKid = new Map(keys.publicKeys.map((k) => [k.kid, verifierFor(k.alg, k.pem)]))
    verifySignature = function verifyByKid (token) {
      const header = JSON.parse(Buffer.from(token.slice(0, token.indexOf('.')), 'base64url').toString())
      const verify = typeof header?.kid === 'string' ? byKid.get(header.kid) : undefined
      if (verify === undefined) throw new Error('unknown kid')
      return verify(token)
    }
  }

  const signerOptions = {
    key: keys?.privatePem ?? opts.secret,
    algorithm: (keys?.alg ?? 'HS256') as Algorithm,
    kid: keys?.kid,
    iss: opts.issuer,
    aud: opts.audience
  }
  const sign = createSigner({ ...signerOptions, expiresIn: opts.accessTtl * 1000 })
  // For a token that must end with its session (SESSION_MAX_LIFETIME): iat and exp given.
  const signUntil = createSigner(signerOptions)

  function verifyBearer (header: string): AccessClaims {
    const match = header.length <= MAX_HEADER_LENGTH ? BEARER.exec(header) : null
    if (match === null) throw new TokenError('Malformed Authorization header: expected "Bearer <token>"')
    let claims: AccessClaims
    try {
      claims = verifySignature(match[1])
    } catch {
      throw new TokenError('Invalid or expired access token')
    }
    // An `iat` in the future would stretch maxAge as far as the signer likes.
    if (!wellFormed(claims) || claims.iat > Date.now() / 1000 + CLOCK_TOLERANCE_S) {
      throw new TokenError('Invalid or expired access token')
    }
    return claims
  }

  return {
    accessTtl: opts.accessTtl,
    signAccess ({ sub, username, role, sid, sca }, short) {
      const payload = { sub, preferred_username: username, role, sid, sca, jti: randomUUID() }
      if (short === undefined) return sign(payload)
      return signUntil({ ...payload, iat: short.iat, exp: short.iat + short.ttl })
    },
    verifyBearer: cachedVerifier(verifyBearer, opts.accessTtl)
  }
}

// What does not change between requests with the same Authorization header (its syntax,
// the signature, the claims' shape) is checked once and remembered with it, in a bounded
// cache; expiry is checked on every hit, revocation (by the caller) on every request.
//
// Why not fast-jwt's own cache: by default it keys entries by a SHA-256 of the token, a
// native Hash object per request whose allocation survived young-generation GCs and grew
// the old generation under load (docs/benchmarks.md); given a key builder, it warns on
// every start (GHSA-rp9m-7r4c-75qg, about builders that could collide). The header itself
// cannot collide with another token.

/**
 * `verify`, remembered for up to `size` headers (oldest forgotten first). A hit is served
 * only until the token's `exp`, or `maxAge` seconds after its `iat` if sooner; errors are
 * never cached. The cache holds the last `size`
 * bearers' tokens, which a heap dump would show; that dump would also hold the signing
 * key, so it is as secret as the key already is.
 */
function cachedVerifier (verify: (header: string) => AccessClaims, maxAge: number, size = 1000): (header: string) => AccessClaims {
  const cache = new Map<string, AccessClaims>()
  return function cachedVerify (header: string): AccessClaims {
    const hit = cache.get(header)
    if (hit !== undefined) {
      if (Math.min(hit.exp, hit.iat + maxAge) * 1000 > Date.now()) return hit
      cache.delete(header)
    }
    const claims = verify(header)
    if (cache.size >= size) cache.delete(cache.keys().next().value as string)
    cache.set(header, claims)
    return claims
  }
}
