// Verifying the auth service's access tokens: an Authorization header (or a bare token)
// turned into verified, well-formed claims, or a TokenError. Free of Fastify and Redis:
// the auth service verifies its own tokens with this same code.
import { createVerifier, type Algorithm } from 'fast-jwt'

export type Role = 'user' | 'admin'

/** What a verified access token tells about its bearer. */
export interface AccessClaims {
  sub: string
  preferred_username: string
  role: Role
  sid: string
  /** The session's creation time, µs since the epoch, from the database clock. */
  sca: number
  /**
   * How the session's login was authenticated (RFC 8176): `pwd`, then `otp` (a TOTP or
   * recovery code), `hwk`/`swk` (a passkey). Absent from tokens issued before the service
   * had second factors: read it as a password login.
   */
  amr?: string[]
  jti: string
  iat: number
  exp: number
  iss: string
  aud: string
}

/** A public key that verifies tokens whose header names its `kid`. */
export interface VerificationKey {
  kid: string
  alg: 'EdDSA' | 'ES256'
  /** SPKI PEM. */
  pem: string
}

export interface VerifierOptions {
  /** The HS256 secret, when tokens are signed with one (and `keys` is not given). */
  secret?: string
  /** EdDSA/ES256 public keys, chosen by the token's `kid`; may start empty (see setKeys). */
  keys?: VerificationKey[]
  issuer: string
  audience: string
  /**
   * The longest an access token may live, seconds from its `iat`, whatever its `exp` says
   * (the issuer's access-token lifetime): one signed with a far `exp` (a leaked key, a
   * signing bug) still dies with its `iat`. Unset: `exp` alone decides.
   */
  maxAge?: number
  /** How many verified tokens to remember (default 1000). */
  cacheSize?: number
}

export interface AccessTokenVerifier {
  /** The claims of a bare token; throws a TokenError otherwise. */
  verify: (token: string) => AccessClaims
  /** The claims of the bearer token in an Authorization header; throws a TokenError otherwise. */
  verifyBearer: (header: string) => AccessClaims
  /** Replaces the public keys (a fetched JWKS); tokens remembered so far are forgotten. */
  setKeys: (keys: VerificationKey[]) => void
}

export const INVALID_TOKEN = 'Invalid or expired access token'
export const MALFORMED_HEADER = 'Malformed Authorization header: expected "Bearer <token>"'

/** A header or token refused; the message is safe to show the client. */
export class TokenError extends Error {}

/**
 * The token names a `kid` that no key has: refused, but a verifier that fetches keys
 * (a JWKS) may fetch them again and retry, since the issuer may have rotated its key.
 */
export class UnknownKeyError extends TokenError {
  constructor (readonly kid: string) {
    super(INVALID_TOKEN)
  }
}

// A bearer token in the only place it may be (never a query string or a cookie), of a
// sane size: anything longer is refused before any parsing.
const BEARER = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)$/i
const JWT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/
const MAX_HEADER_LENGTH = 4096
const UUID = /^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$/
const REQUIRED_CLAIMS = ['sub', 'sid', 'sca', 'role', 'jti', 'iat', 'exp', 'iss', 'aud']
/** How far ahead of this instance's clock a token's `iat` may be: instances' clocks differ a little. */
const CLOCK_TOLERANCE_S = 10

/** Does the string have the shape of a JWT (three base64url parts, of a sane size)? */
export function looksLikeJwt (token: string): boolean {
  return token.length <= MAX_HEADER_LENGTH && JWT.test(token)
}

// Claims are checked for shape even though the signature is the issuer's: nothing
// malformed ever reaches a SQL parameter or a Redis key.
function wellFormed (claims: AccessClaims): boolean {
  return typeof claims.sub === 'string' && UUID.test(claims.sub) &&
    typeof claims.sid === 'string' && UUID.test(claims.sid) &&
    Number.isSafeInteger(claims.sca) &&
    (claims.role === 'user' || claims.role === 'admin') &&
    // A string `amr` would pass an includes() check by its substrings.
    (claims.amr === undefined || (Array.isArray(claims.amr) && claims.amr.length <= 8 && claims.amr.every((m) => typeof m === 'string')))
}

/** RFC 8176 values that prove a factor beyond the password: a one-time code, a passkey. */
export const SECOND_FACTORS = ['otp', 'hwk', 'swk', 'mfa'] as const

/** Whether the token's login used a second factor (`amr` names one of SECOND_FACTORS). */
export function hasSecondFactor (claims: Pick<AccessClaims, 'amr'>): boolean {
  return claims.amr?.some((m) => (SECOND_FACTORS as readonly string[]).includes(m)) ?? false
}

export function createAccessTokenVerifier (opts: VerifierOptions): AccessTokenVerifier {
  if (opts.keys === undefined && (opts.secret === undefined || opts.secret === '')) {
    throw new Error('createAccessTokenVerifier: give either the HS256 secret or public keys')
  }
  // One pinned algorithm per key (RFC 8725 §3.1): no "none", no HS/ES confusion.
  const verifierFor = (algorithm: Algorithm, key: string) => createVerifier({
    algorithms: [algorithm],
    key,
    allowedIss: opts.issuer,
    allowedAud: opts.audience,
    requiredClaims: REQUIRED_CLAIMS,
    ...(opts.maxAge === undefined ? {} : { maxAge: opts.maxAge * 1000 }),
    cache: false
  }) as (token: string) => AccessClaims

  let byKid = new Map<string, (token: string) => AccessClaims>()
  const verifyHs = opts.keys === undefined ? verifierFor('HS256', opts.secret as string) : undefined

  // The token's `kid` picks the key (the current one, or a previous one during a
  // rotation); a missing kid is refused, an unknown one too (UnknownKeyError).
  function verifySignature (token: string): AccessClaims {
    if (verifyHs !== undefined) return verifyHs(token)
    const header = JSON.parse(Buffer.from(token.slice(0, token.indexOf('.')), 'base64url').toString())
    const kid: unknown = header?.kid
    if (typeof kid !== 'string') throw new TokenError(INVALID_TOKEN)
    const verify = byKid.get(kid)
    if (verify === undefined) throw new UnknownKeyError(kid.slice(0, 128))
    return verify(token)
  }

  function verifyUncached (token: string): AccessClaims {
    let claims: AccessClaims
    try {
      claims = verifySignature(token)
    } catch (err) {
      if (err instanceof UnknownKeyError) throw err
      throw new TokenError(INVALID_TOKEN)
    }
    // An `iat` in the future would stretch maxAge as far as the signer likes.
    if (!wellFormed(claims) || claims.iat > Date.now() / 1000 + CLOCK_TOLERANCE_S) throw new TokenError(INVALID_TOKEN)
    return claims
  }

  const cache = new VerifiedCache(opts.cacheSize ?? 1000, opts.maxAge ?? Infinity)

  function verify (token: string): AccessClaims {
    if (!looksLikeJwt(token)) throw new TokenError(INVALID_TOKEN)
    return cache.verify(token, verifyUncached)
  }

  function verifyBearer (header: string): AccessClaims {
    const match = header.length <= MAX_HEADER_LENGTH ? BEARER.exec(header) : null
    if (match === null) throw new TokenError(MALFORMED_HEADER)
    return cache.verify(match[1], verifyUncached)
  }

  function setKeys (keys: VerificationKey[]): void {
    byKid = new Map(keys.map((k) => [k.kid, verifierFor(k.alg, k.pem)]))
    // A key that left the set must stop verifying now, not when its tokens expire.
    cache.clear()
  }

  if (opts.keys !== undefined) setKeys(opts.keys)
  return { verify, verifyBearer, setKeys }
}

// What does not change between requests with the same token (its syntax, the signature,
// the claims' shape) is checked once and remembered with it, in a bounded cache; expiry is
// checked on every hit, revocation (by the caller) on every request.
//
// Why not fast-jwt's own cache: by default it keys entries by a SHA-256 of the token, a
// native Hash object per request whose allocation survived young-generation GCs and grew
// the old generation under load (the auth service's docs/benchmarks.md); given a key
// builder, it warns on every start (GHSA-rp9m-7r4c-75qg, about builders that could
// collide). The token itself cannot collide with another token.
//
// The cache holds the last `size` bearers' tokens, which a heap dump would show; that dump
// would also hold the verification secret (HS256), so it is as secret as the key already is.
class VerifiedCache {
  private readonly entries = new Map<string, AccessClaims>()

  constructor (private readonly size: number, private readonly maxAge: number) {}

  /**
   * `verify(token)`, remembered (oldest forgotten first); a hit only until `exp`, or
   * `maxAge` seconds after `iat` if sooner; errors never.
   */
  verify (token: string, verify: (token: string) => AccessClaims): AccessClaims {
    const hit = this.entries.get(token)
    if (hit !== undefined) {
      if (Math.min(hit.exp, hit.iat + this.maxAge) * 1000 > Date.now()) return hit
      this.entries.delete(token)
    }
    const claims = verify(token)
    if (this.entries.size >= this.size) this.entries.delete(this.entries.keys().next().value as string)
    this.entries.set(token, claims)
    return claims
  }

  clear (): void {
    this.entries.clear()
  }
}
