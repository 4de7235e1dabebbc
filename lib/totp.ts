// TOTP (RFC 6238) over HOTP (RFC 4226), with node:crypto: HMAC-SHA-1, 6 digits, 30-second
// steps, the parameters every authenticator app assumes when an otpauth:// URI names none.
// Which step a code was accepted for is the caller's to remember (a code works once).
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'

export const TOTP_DIGITS = 6
export const TOTP_PERIOD_S = 30
/** Steps either side of the current one that are accepted: a phone's clock a little off. */
export const TOTP_SKEW_STEPS = 1
/** RFC 4226 §4 asks for at least 128 bits; 160, the size of SHA-1's output, is the usual. */
const SECRET_BYTES = 20

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'

/** RFC 4648 base32 without padding: how otpauth:// URIs and people carry the secret. */
export function base32Encode (bytes: Buffer): string {
  let out = ''
  let bits = 0
  let value = 0
  for (const byte of bytes) {
    value = (value << 8) | byte
    bits += 8
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31]
      bits -= 5
    }
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31]
  return out
}

/** The inverse of base32Encode (case and padding ignored); throws on another character. */
export function base32Decode (text: string): Buffer {
  const clean = text.toUpperCase().replace(/=+$/, '')
  const out: number[] = []
  let bits = 0
  let value = 0
  for (const char of clean) {
    const index = BASE32.indexOf(char)
    if (index < 0) throw new Error('not base32')
    value = ((value << 5) | index) & 0xffff
    bits += 5
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff)
      bits -= 8
    }
  }
  return Buffer.from(out)
}

export function newTotpSecret (): Buffer {
  return randomBytes(SECRET_BYTES)
}

/** The time step of an instant (ms since the epoch). */
export function totpStep (nowMs: number): number {
  return Math.floor(nowMs / 1000 / TOTP_PERIOD_S)
}

/** HOTP (RFC 4226 §5.3): the code of one counter value, `digits` long. */
export function hotp (secret: Buffer, counter: number, digits = TOTP_DIGITS): string {
  const message = Buffer.alloc(8)
  message.writeBigUInt64BE(BigInt(counter))
  const mac = createHmac('sha1', secret).update(message).digest()
  // Dynamic truncation: the low nibble of the last byte picks 4 bytes, top bit cleared.
  const offset = mac[mac.length - 1] & 0x0f
  const binary = mac.readUInt32BE(offset) & 0x7fffffff
  return String(binary % 10 ** digits).padStart(digits, '0')
}

/** The code of the step an instant falls in. */
export function totpCode (secret: Buffer, nowMs: number): string {
  return hotp(secret, totpStep(nowMs))
}

/**
 * The step a code matches: the current one, or one either side (TOTP_SKEW_STEPS), later
 * than `afterStep` (the last one accepted: a code is accepted once, and never one older
 * than a code already used). Null when none matches. Every candidate is compared, in
 * constant time, so the time taken says nothing about which one came close.
 */
export function matchTotp (secret: Buffer, code: string, nowMs: number, afterStep: number | null): number | null {
  if (!/^[0-9]{6}$/.test(code)) return null
  const presented = Buffer.from(code)
  const current = totpStep(nowMs)
  let matched: number | null = null
  for (let step = current - TOTP_SKEW_STEPS; step <= current + TOTP_SKEW_STEPS; step++) {
    const equal = timingSafeEqual(Buffer.from(hotp(secret, step)), presented)
    if (equal && matched === null && (afterStep === null || step > afterStep)) matched = step
  }
  return matched
}

/** The otpauth:// URI an authenticator app reads from a QR code (Key Uri Format). */
export function otpauthUri (secret: Buffer, issuer: string, account: string): string {
  const label = `${encodeURIComponent(issuer)}:${encodeURIComponent(account)}`
  const params = new URLSearchParams({
    secret: base32Encode(secret),
    issuer,
    algorithm: 'SHA1',
    digits: String(TOTP_DIGITS),
    period: String(TOTP_PERIOD_S)
  })
  return `otpauth://totp/${label}?${params.toString()}`
}
