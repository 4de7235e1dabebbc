// TOTP (lib/totp.ts) against the RFC 6238 and RFC 4648 test vectors, the ±1 step window,
// a code accepted once; and the sealing of secrets at rest (lib/secret-box.ts).
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { base32Decode, base32Encode, hotp, matchTotp, otpauthUri, totpCode, totpStep } from '../../lib/totp.js'
import { deriveKey, SecretBox } from '../../lib/secret-box.js'

// RFC 6238 Appendix B, SHA-1: the secret is the ASCII "12345678901234567890".
const RFC_SECRET = Buffer.from('12345678901234567890')
const RFC_VECTORS: Array<[number, string]> = [
  [59, '94287082'], [1111111109, '07081804'], [1111111111, '14050471'],
  [1234567890, '89005924'], [2000000000, '69279037'], [20000000000, '65353130']
]

t.test('RFC 6238 vectors: 8 digits as the RFC prints them, 6 as authenticator apps show them', async (t) => {
  for (const [seconds, code] of RFC_VECTORS) {
    t.equal(hotp(RFC_SECRET, totpStep(seconds * 1000), 8), code, `T=${seconds}`)
    t.equal(totpCode(RFC_SECRET, seconds * 1000), code.slice(2), `T=${seconds}, 6 digits`)
  }
})

t.test('base32 (RFC 4648 §10 vectors, unpadded) round-trips', async (t) => {
  const vectors: Array<[string, string]> = [['', ''], ['f', 'MY'], ['fo', 'MZXQ'], ['foo', 'MZXW6'], ['foob', 'MZXW6YQ'], ['fooba', 'MZXW6YTB'], ['foobar', 'MZXW6YTBOI']]
  for (const [plain, encoded] of vectors) {
    t.equal(base32Encode(Buffer.from(plain)), encoded, plain)
    t.equal(base32Decode(encoded).toString(), plain)
    t.equal(base32Decode(encoded.toLowerCase() + '===').toString(), plain, 'case and padding do not matter')
  }
  const secret = randomBytes(20)
  t.strictSame(base32Decode(base32Encode(secret)), secret)
  t.equal(base32Encode(secret).length, 32, '160 bits are 32 characters')
  t.throws(() => base32Decode('AB1C'), /not base32/)
})

t.test('matchTotp: the current step or one either side, once, never an older one', async (t) => {
  const secret = randomBytes(20)
  const now = 1_800_000_000_000 // a step boundary
  const step = totpStep(now)
  const code = (s: number) => hotp(secret, s)
  t.equal(matchTotp(secret, code(step), now, null), step, 'now')
  t.equal(matchTotp(secret, code(step - 1), now, null), step - 1, 'one step behind (a slow phone clock)')
  t.equal(matchTotp(secret, code(step + 1), now, null), step + 1, 'one step ahead')
  t.equal(matchTotp(secret, code(step - 2), now, null), null, 'two steps behind: expired')
  t.equal(matchTotp(secret, code(step + 2), now, null), null, 'two steps ahead')
  t.equal(matchTotp(secret, code(step), now + 29_999, null), step, 'the last millisecond of the step')
  t.equal(matchTotp(secret, code(step), now, step), null, 'the step already used: a replay')
  t.equal(matchTotp(secret, code(step - 1), now, step), null, 'an older step than the one used')
  t.equal(matchTotp(secret, code(step + 1), now, step), step + 1, 'a newer one is fine')
  t.equal(matchTotp(randomBytes(20), code(step), now, null), null, 'another secret')
  for (const bad of ['', '12345', '1234567', 'abcdef', ' 12345', '１２３４５６']) t.equal(matchTotp(secret, bad, now, null), null, `malformed ${JSON.stringify(bad)}`)
})

t.test('otpauth:// URI: Key Uri Format, with the issuer and the parameters spelled out', async (t) => {
  const uri = new URL(otpauthUri(Buffer.from('12345678901234567890'), 'auth service', 'alice'))
  t.equal(uri.protocol, 'otpauth:')
  t.equal(uri.host, 'totp')
  t.equal(decodeURIComponent(uri.pathname), '/auth service:alice')
  t.strictSame(Object.fromEntries(uri.searchParams), {
    secret: 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ', issuer: 'auth service', algorithm: 'SHA1', digits: '6', period: '30'
  })
})

t.test('SecretBox: AES-256-GCM bound to its owner; a wrong key, owner or byte does not open', async (t) => {
  const key = randomBytes(32)
  const box = new SecretBox(key)
  const secret = randomBytes(20)
  const sealed = box.seal(secret, 'user-a')
  t.strictSame(box.open(sealed, 'user-a'), secret)
  t.notOk(sealed.includes(secret), 'the plaintext is not in the sealed value')
  t.not(box.seal(secret, 'user-a').toString('hex'), sealed.toString('hex'), 'a fresh nonce each time')
  t.throws(() => box.open(sealed, 'user-b'), 'another owner (a value copied to another row)')
  t.throws(() => new SecretBox(randomBytes(32)).open(sealed, 'user-a'), 'another key')
  const tampered = Buffer.from(sealed)
  tampered[20] ^= 1
  t.throws(() => box.open(tampered, 'user-a'), 'a flipped bit')
  t.throws(() => box.open(Buffer.from([2, ...sealed.subarray(1)]), 'user-a'), /not a sealed value/, 'an unknown version')
  t.throws(() => new SecretBox(randomBytes(16)), /32 bytes/)
  t.strictSame(deriveKey('material', 'purpose'), deriveKey('material', 'purpose'), 'a derived key is stable')
  t.not(deriveKey('material', 'purpose').toString('hex'), deriveKey('material', 'other').toString('hex'), 'and bound to its purpose')
})
