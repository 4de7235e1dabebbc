// A software WebAuthn authenticator for in-process tests: ES256 keys, attestation "none",
// discoverable credentials, and a signature counter the test controls (a cloned key is a
// copy of a credential whose counter then falls behind). The browser test uses Chrome's
// virtual authenticator instead (test/integration/passkeys-browser.test.ts).
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto'
import { isoCBOR } from '@simplewebauthn/server/helpers'

type CBORType = Parameters<typeof isoCBOR.encode>[0]

export interface SoftCredential {
  id: Buffer
  privateKey: KeyObject
  rpId: string
  userHandle: string
  /** The next assertion signs counter + 1 (0 stays 0: an authenticator that keeps none). */
  counter: number
}

const UP = 0x01
const UV = 0x04
const BE = 0x08
const AT = 0x40

const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest()
const b64 = (data: Buffer | Uint8Array) => Buffer.from(data).toString('base64url')

function clientData (type: 'webauthn.create' | 'webauthn.get', challenge: string, origin: string): Buffer {
  return Buffer.from(JSON.stringify({ type, challenge, origin, crossOrigin: false }))
}

function authenticatorData (rpId: string, flags: number, counter: number, attested = Buffer.alloc(0)): Buffer {
  const count = Buffer.alloc(4)
  count.writeUInt32BE(counter)
  return Buffer.concat([sha256(rpId), Buffer.from([flags]), count, attested])
}

export interface CreateOptions {
  origin: string
  /** The relying party the authenticator scopes the key to (default: the options' rp.id). */
  rpId?: string
  /** A key that may be synced (the BE flag): a passkey, "swk". */
  backupEligible?: boolean
  /** The counter the authenticator starts from (0: it keeps none). */
  counter?: number
}

/** navigator.credentials.create(): a new credential for creation options, and its toJSON(). */
export function create (options: { challenge: string, rp: { id?: string }, user: { id: string } }, opts: CreateOptions) {
  const rpId = opts.rpId ?? options.rp.id as string
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const jwk = publicKey.export({ format: 'jwk' })
  const cose = isoCBOR.encode(new Map<number, CBORType>([
    [1, 2], [3, -7], [-1, 1], [-2, Buffer.from(jwk.x as string, 'base64url')], [-3, Buffer.from(jwk.y as string, 'base64url')]
  ]))
  const id = randomBytes(16)
  const idLength = Buffer.alloc(2)
  idLength.writeUInt16BE(id.length)
  const attested = Buffer.concat([Buffer.alloc(16), idLength, id, Buffer.from(cose)])
  const flags = UP | UV | AT | (opts.backupEligible === true ? BE : 0)
  const counter = opts.counter ?? 0
  const attestationObject = isoCBOR.encode(new Map<string, CBORType>([
    ['fmt', 'none'], ['attStmt', new Map()], ['authData', authenticatorData(rpId, flags, counter, attested)]
  ]))
  const credential: SoftCredential = { id, privateKey, rpId, userHandle: options.user.id, counter }
  const json = {
    id: b64(id),
    rawId: b64(id),
    type: 'public-key' as const,
    authenticatorAttachment: 'platform' as const,
    clientExtensionResults: {},
    response: {
      clientDataJSON: b64(clientData('webauthn.create', options.challenge, opts.origin)),
      attestationObject: b64(attestationObject),
      transports: ['internal']
    }
  }
  return { credential, json }
}

export interface GetOptions {
  origin: string
  /** Sign with this counter instead of the next one (a clone's, fallen behind). */
  counter?: number
  /** User verified (the UV flag); default true. */
  verified?: boolean
  backupEligible?: boolean
}

/** navigator.credentials.get(): an assertion of `credential` for request options, and its toJSON(). */
export function get (credential: SoftCredential, options: { challenge: string }, opts: GetOptions) {
  const counter = opts.counter ?? (credential.counter === 0 ? 0 : credential.counter + 1)
  credential.counter = counter
  const flags = UP | (opts.verified === false ? 0 : UV) | (opts.backupEligible === true ? BE : 0)
  const data = authenticatorData(credential.rpId, flags, counter)
  const client = clientData('webauthn.get', options.challenge, opts.origin)
  const signature = sign('sha256', Buffer.concat([data, sha256(client)]), credential.privateKey)
  return {
    id: b64(credential.id),
    rawId: b64(credential.id),
    type: 'public-key' as const,
    authenticatorAttachment: 'platform' as const,
    clientExtensionResults: {},
    response: {
      clientDataJSON: b64(client),
      authenticatorData: b64(data),
      signature: b64(signature),
      userHandle: credential.userHandle
    }
  }
}
