// Asymmetric signing keys (EdDSA/Ed25519 or ES256/P-256) from PEM: which algorithm each
// key pins, its `kid` (RFC 7638 thumbprint) and its public JWK for the JWKS endpoint.
import { createHash, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto'

export type AsymmetricAlgorithm = 'EdDSA' | 'ES256'

export interface PublicJwk {
  kty: string
  crv: string
  x: string
  y?: string
  kid: string
  alg: AsymmetricAlgorithm
  use: 'sig'
}

export interface PublicKey {
  kid: string
  alg: AsymmetricAlgorithm
  pem: string
  jwk: PublicJwk
}

export interface SigningKeys {
  alg: AsymmetricAlgorithm
  kid: string
  privatePem: string
  /** The signing key's public half first, then previous keys that still verify. */
  publicKeys: PublicKey[]
}

/** Environment values may carry PEM newlines escaped as `\n` (one-line .env entries). */
function unescape (pem: string): string {
  return pem.includes('\\n') ? pem.replace(/\\n/g, '\n') : pem
}

function algorithmOf (key: KeyObject): AsymmetricAlgorithm {
  if (key.asymmetricKeyType === 'ed25519') return 'EdDSA'
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ES256'
  throw new Error('only Ed25519 (EdDSA) and P-256 (ES256) keys are supported')
}

function describe (key: KeyObject): PublicKey {
  const alg = algorithmOf(key)
  const jwk = key.export({ format: 'jwk' }) as Record<string, string>
  // RFC 7638: the thumbprint hashes the required members in lexicographic order.
  const required: Record<string, string> = alg === 'EdDSA'
    ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x }
    : { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y }
  const kid = createHash('sha256').update(JSON.stringify(required)).digest('base64url')
  return { kid, alg, pem: key.export({ format: 'pem', type: 'spki' }).toString(), jwk: { ...required, kid, alg, use: 'sig' } as PublicJwk }
}

/**
 * Parses JWT_PRIVATE_KEY and the optional JWT_PUBLIC_KEY (one or more concatenated PEM
 * public keys: during a rotation, the previous key's, so its tokens keep verifying
 * until they expire). Throws with a message naming the variable.
 */
export function loadSigningKeys (privatePem: string, publicPems?: string): SigningKeys {
  let privateKey: KeyObject
  try {
    privateKey = createPrivateKey(unescape(privatePem))
  } catch {
    throw new Error('JWT_PRIVATE_KEY is not a PEM private key')
  }
  let current: PublicKey
  try {
    current = describe(createPublicKey(privateKey))
  } catch (err) {
    throw new Error(`JWT_PRIVATE_KEY: ${(err as Error).message}`)
  }
  const publicKeys = [current]
  const blocks = unescape(publicPems ?? '').match(/-----BEGIN PUBLIC KEY-----[\s\S]+?-----END PUBLIC KEY-----/g) ?? []
  if (publicPems !== undefined && blocks.length === 0) throw new Error('JWT_PUBLIC_KEY holds no PEM public key')
  for (const block of blocks) {
    let key: PublicKey
    try {
      key = describe(createPublicKey(block))
    } catch (err) {
      throw new Error(`JWT_PUBLIC_KEY: ${(err as Error).message}`)
    }
    if (!publicKeys.some((k) => k.kid === key.kid)) publicKeys.push(key)
  }
  return { alg: current.alg, kid: current.kid, privatePem: unescape(privatePem), publicKeys }
}
