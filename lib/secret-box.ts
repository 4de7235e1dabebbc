// Secrets kept at rest (second-factor secrets): AES-256-GCM under MFA_ENCRYPTION_KEY, with
// associated data naming what the secret belongs to, so a value moved to another row (or
// altered) does not decrypt. Stored as one value: version, nonce, ciphertext, tag.
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto'

const VERSION = 1
const NONCE_BYTES = 12
const TAG_BYTES = 16
export const KEY_BYTES = 32

export class SecretBox {
  constructor (private readonly key: Buffer) {
    if (key.length !== KEY_BYTES) throw new Error(`SecretBox: the key must be ${KEY_BYTES} bytes`)
  }

  seal (plaintext: Buffer, associated: string): Buffer {
    // A random 96-bit nonce per value: far below GCM's limit for one key (2^32 values).
    const nonce = randomBytes(NONCE_BYTES)
    const cipher = createCipheriv('aes-256-gcm', this.key, nonce, { authTagLength: TAG_BYTES })
    cipher.setAAD(Buffer.from(associated))
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()])
    return Buffer.concat([Buffer.from([VERSION]), nonce, body, cipher.getAuthTag()])
  }

  /** The plaintext; throws when the value was not sealed with this key for `associated`. */
  open (sealed: Buffer, associated: string): Buffer {
    if (sealed.length < 1 + NONCE_BYTES + TAG_BYTES || sealed[0] !== VERSION) throw new Error('SecretBox: not a sealed value')
    const nonce = sealed.subarray(1, 1 + NONCE_BYTES)
    const tag = sealed.subarray(sealed.length - TAG_BYTES)
    const decipher = createDecipheriv('aes-256-gcm', this.key, nonce, { authTagLength: TAG_BYTES })
    decipher.setAAD(Buffer.from(associated))
    decipher.setAuthTag(tag)
    return Buffer.concat([decipher.update(sealed.subarray(1 + NONCE_BYTES, sealed.length - TAG_BYTES)), decipher.final()])
  }
}

/**
 * Outside production, without MFA_ENCRYPTION_KEY: a key derived (HKDF-SHA-256) from the
 * token signing key, so that development needs no extra setting and the secrets stay
 * readable as long as that key is kept (lib/local-mode.ts keeps it in ./.data/).
 */
export function deriveKey (material: string, purpose: string): Buffer {
  return Buffer.from(hkdfSync('sha256', material, '', `auth-service ${purpose}`, KEY_BYTES))
}
