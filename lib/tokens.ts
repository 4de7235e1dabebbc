// Access tokens: signing them here; verifying them is the resource-server package's code
// (packages/resource-server/src/tokens.ts), so that this service and every service that
// accepts its tokens verify the same way. plugins/app/auth.ts is the thin plugin over it.
import { randomUUID } from 'node:crypto'
import { createSigner, type Algorithm } from 'fast-jwt'
import { createAccessTokenVerifier, hasSecondFactor, TokenError, type AccessClaims } from '@auth-service/fastify-resource-server/tokens'
import type { SigningKeys } from './keys.js'
import type { Role } from '../schemas/common.js'

export { hasSecondFactor, TokenError, type AccessClaims }

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
  signAccess: (claims: { sub: string, username: string, role: Role, sid: string, sca: number, amr: string[] }, short?: { iat: number, ttl: number }) => string
  /** The claims of the bearer token in an Authorization header; throws a TokenError otherwise. */
  verifyBearer: (header: string) => AccessClaims
  /** The claims of a bare access token (introspection, revocation); throws a TokenError otherwise. */
  verify: (token: string) => AccessClaims
}

export function createTokens (opts: TokenOptions): Tokens {
  const { keys } = opts
  const verifier = createAccessTokenVerifier({
    ...(keys === undefined
      ? { secret: opts.secret }
      : { keys: keys.publicKeys.map(({ kid, alg, pem }) => ({ kid, alg, pem })) }),
    issuer: opts.issuer,
    audience: opts.audience,
    maxAge: opts.accessTtl
  })

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

  return {
    accessTtl: opts.accessTtl,
    signAccess ({ sub, username, role, sid, sca, amr }, short) {
      const payload = { sub, preferred_username: username, role, sid, sca, amr, jti: randomUUID() }
      if (short === undefined) return sign(payload)
      return signUntil({ ...payload, iat: short.iat, exp: short.iat + short.ttl })
    },
    verifyBearer: verifier.verifyBearer,
    verify: verifier.verify
  }
}
