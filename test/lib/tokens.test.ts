// Access tokens (lib/tokens.ts): what signAccess issues, and every way verifyBearer
// refuses a header, with HS256 and with asymmetric keys (EdDSA, ES256, rotation).
import t, { type Test } from 'tap'
import { createHmac, generateKeyPairSync, randomUUID, sign as cryptoSign, type KeyObject } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { loadSigningKeys } from '../../lib/keys.js'
import { createTokens, TokenError, type TokenOptions } from '../../lib/tokens.js'

const SECRET = 'unit-test-secret-0123456789-abcdefghijklmnopqrstuvwxyz'
const base: TokenOptions = { secret: SECRET, issuer: 'auth-test', audience: 'api-test', accessTtl: 900 }
const input = { sub: randomUUID(), username: 'alice', role: 'user' as const, sid: randomUUID(), sca: Date.now() * 1000, amr: ['pwd', 'otp'] }

const b64 = (v: object | string) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url')
const decode = (part: string) => JSON.parse(Buffer.from(part, 'base64url').toString())
const now = () => Math.floor(Date.now() / 1000)

/** A token signed by hand (not by the module under test) with HMAC. */
function hs (header: object, payload: object, secret = SECRET, hash = 'sha256'): string {
  const signed = `${b64(header)}.${b64(payload)}`
  return `${signed}.${createHmac(hash, secret).update(signed).digest('base64url')}`
}

/** A token signed by hand with an Ed25519 or P-256 private key. */
function asym (header: object, payload: object, key: KeyObject): string {
  const signed = `${b64(header)}.${b64(payload)}`
  const dsa = key.asymmetricKeyType === 'ec' ? { key, dsaEncoding: 'ieee-p1363' as const } : key
  return `${signed}.${cryptoSign(key.asymmetricKeyType === 'ec' ? 'sha256' : null, Buffer.from(signed), dsa).toString('base64url')}`
}

/** Claims a genuine token would carry, to alter one at a time. */
function claims (extra: Record<string, unknown> = {}): Record<string, unknown> {
  const iat = now()
  const genuine = { sub: input.sub, preferred_username: 'alice', role: 'user', sid: input.sid, sca: input.sca }
  return { ...genuine, jti: randomUUID(), iat, exp: iat + 900, iss: 'auth-test', aud: 'api-test', ...extra }
}

function pair (type: 'ed25519' | 'ec') {
  const { privateKey, publicKey } = type === 'ed25519'
    ? generateKeyPairSync('ed25519')
    : generateKeyPairSync('ec', { namedCurve: 'P-256' })
  return {
    privateKey,
    privatePem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    publicPem: publicKey.export({ format: 'pem', type: 'spki' }).toString()
  }
}

const INVALID = 'Invalid or expired access token'
const MALFORMED = 'Malformed Authorization header: expected "Bearer <token>"'

function refuses (t: Test, verify: (header: string) => unknown, header: string, label: string, message = INVALID) {
  t.throws(() => verify(header), new TokenError(message), label)
}

t.test('signAccess issues an HS256 JWT with the claims, iss, aud and lifetime', async (t) => {
  const tokens = createTokens(base)
  const token = tokens.signAccess(input)
  const [header, payload] = token.split('.').map((p, i) => i < 2 ? decode(p) : p)
  t.strictSame(header, { alg: 'HS256', typ: 'JWT' })
  t.match(payload, { sub: input.sub, preferred_username: 'alice', role: 'user', sid: input.sid, sca: input.sca, iss: 'auth-test', aud: 'api-test', jti: String })
  t.strictSame(payload.amr, ['pwd', 'otp'], 'amr (RFC 8176): how the session\'s login was authenticated')
  t.equal(payload.exp - payload.iat, 900)
  t.not(decode(tokens.signAccess(input).split('.')[1]).jti, payload.jti, 'a fresh jti per token')
  t.equal(tokens.accessTtl, 900)
  t.match(tokens.verifyBearer(`Bearer ${token}`), { sub: input.sub, sid: input.sid, role: 'user' })
  t.match(tokens.verifyBearer(`Bearer ${hs({ alg: 'HS256', typ: 'JWT' }, claims())}`), { sub: input.sub },
    'a token signed by hand with the secret verifies, so the refusals below have their own reason')
})

t.test('the Authorization header must be exactly "Bearer <JWT>", of a sane length', async (t) => {
  const tokens = createTokens(base)
  const token = tokens.signAccess(input)
  t.match(tokens.verifyBearer(`bearer ${token}`), { sub: input.sub }, 'the scheme is case-insensitive (RFC 7235)')
  for (const [label, header] of [
    ['empty', ''],
    ['Bearer alone', 'Bearer'],
    ['Bearer and a space', 'Bearer '],
    ['Basic credentials', `Basic ${b64('alice:secret')}`],
    ['the token without a scheme', token],
    ['two spaces', `Bearer  ${token}`],
    ['a trailing space', `Bearer ${token} `],
    ['two parts', `Bearer ${token.split('.').slice(0, 2).join('.')}`],
    ['four parts', `Bearer ${token}.x`],
    ['characters outside base64url', `Bearer ${token.replace('.', '+.')}`],
    ['two tokens', `Bearer ${token}, Bearer ${token}`],
    ['longer than 4096 characters', `Bearer ${hs({ alg: 'HS256' }, claims({ pad: 'x'.repeat(4096) }))}`]
  ]) refuses(t, tokens.verifyBearer, header, label, MALFORMED)
})

t.test('HS256 is pinned: no "none", no other algorithm, no bad signature', async (t) => {
  const { verifyBearer } = createTokens(base)
  const c = claims()
  const ed = pair('ed25519')
  // An unsigned token has an empty third part: the header syntax already refuses it.
  refuses(t, verifyBearer, `Bearer ${b64({ alg: 'none', typ: 'JWT' })}.${b64(c)}.`, 'alg none, no signature', MALFORMED)
  const cases: Array<[string, string]> = [
    ['alg none with a signature', `${b64({ alg: 'none', typ: 'JWT' })}.${b64(c)}.${b64('x')}`],
    ['HS512 with the real secret', hs({ alg: 'HS512', typ: 'JWT' }, c, SECRET, 'sha512')],
    ['HS384 with the real secret', hs({ alg: 'HS384', typ: 'JWT' }, c, SECRET, 'sha384')],
    ['EdDSA with an attacker key', asym({ alg: 'EdDSA', typ: 'JWT' }, c, ed.privateKey)],
    ['HS256 with another secret', hs({ alg: 'HS256', typ: 'JWT' }, c, 'another-secret-another-secret-another-secret')],
    ['a payload altered after signing', (() => {
      const [h, , s] = hs({ alg: 'HS256' }, c).split('.')
      return `${h}.${b64({ ...c, role: 'admin' })}.${s}`
    })()],
    ['a header that is not JSON', `${b64('not json')}.${b64(c)}.${b64('sig')}`]
  ]
  for (const [label, token] of cases) refuses(t, verifyBearer, `Bearer ${token}`, label)
})

t.test('iss, aud, exp and nbf are checked', async (t) => {
  const { verifyBearer } = createTokens(base)
  const cases: Array<[string, Record<string, unknown>]> = [
    ['wrong iss', claims({ iss: 'evil' })],
    ['wrong aud', claims({ aud: 'other-service' })],
    ['expired', claims({ iat: now() - 1000, exp: now() - 10 })],
    ['not yet valid (nbf an hour ahead)', claims({ nbf: now() + 3600 })]
  ]
  for (const [label, c] of cases) refuses(t, verifyBearer, `Bearer ${hs({ alg: 'HS256' }, c)}`, label)
})

t.test('the claims must have the shape the service relies on', async (t) => {
  const { verifyBearer } = createTokens(base)
  const cases: Array<[string, Record<string, unknown>]> = [
    ['no sub', claims({ sub: undefined })],
    ['no sid', claims({ sid: undefined })],
    ['no sca', claims({ sca: undefined })],
    ['no role', claims({ role: undefined })],
    ['no jti', claims({ jti: undefined })],
    ['no exp', claims({ exp: undefined })],
    ['no iat', claims({ iat: undefined })],
    ['sub not a UUID', claims({ sub: "x' OR 1=1 --" })],
    ['sub a UUID with a urn prefix', claims({ sub: `urn:uuid:${input.sub}` })],
    ['sid not a UUID', claims({ sid: 'session-1' })],
    ['sid a number', claims({ sid: 42 })],
    ['sca a string', claims({ sca: 'yesterday' })],
    ['sca a fraction', claims({ sca: 1.5 })],
    ['sca beyond a safe integer', claims({ sca: 2 ** 60 })],
    ['role root', claims({ role: 'root' })],
    ['role in capitals', claims({ role: 'ADMIN' })],
    // A string would pass amr.includes('otp') by its substrings.
    ['amr a string', claims({ amr: 'pwd otp' })],
    ['amr with a number', claims({ amr: ['pwd', 1] })],
    ['amr of absurd length', claims({ amr: Array.from({ length: 20 }, () => 'otp') })]
  ]
  for (const [label, c] of cases) refuses(t, verifyBearer, `Bearer ${hs({ alg: 'HS256' }, c)}`, label)
  t.match(verifyBearer(`Bearer ${hs({ alg: 'HS256' }, claims({ role: 'admin' }))}`), { role: 'admin' }, 'admin is a role')
  t.equal(verifyBearer(`Bearer ${hs({ alg: 'HS256' }, claims())}`).amr, undefined, 'a token without amr (issued before second factors) verifies')
})

for (const type of ['ed25519', 'ec'] as const) {
  const alg = type === 'ed25519' ? 'EdDSA' : 'ES256'
  t.test(`${alg}: the kid picks the key, the algorithm is pinned`, async (t) => {
    const key = pair(type)
    const keys = loadSigningKeys(key.privatePem)
    const { signAccess, verifyBearer } = createTokens({ ...base, keys })
    const token = signAccess(input)
    t.strictSame(decode(token.split('.')[0]), { alg, typ: 'JWT', kid: keys.kid })
    t.match(verifyBearer(`Bearer ${token}`), { sub: input.sub })
    t.match(verifyBearer(`Bearer ${asym({ alg, kid: keys.kid }, claims(), key.privateKey)}`), { sub: input.sub }, 'signed by hand (control)')

    const attacker = pair(type)
    const cases: Array<[string, string]> = [
      ['no kid', asym({ alg }, claims(), key.privateKey)],
      ['an unknown kid', asym({ alg, kid: 'not-a-key-we-have' }, claims(), key.privateKey)],
      ['a kid that is not a string', asym({ alg, kid: 1 }, claims(), key.privateKey)],
      ['the right kid, an attacker key', asym({ alg, kid: keys.kid }, claims(), attacker.privateKey)],
      ['HS256 with the public key as the secret (algorithm confusion)', hs({ alg: 'HS256', kid: keys.kid }, claims(), key.publicPem)],
      ['HS256 with the HS secret the service would otherwise use', hs({ alg: 'HS256', kid: keys.kid }, claims())],
      ['alg none with the right kid', `${b64({ alg: 'none', kid: keys.kid })}.${b64(claims())}.${b64('x')}`],
      ['expired', asym({ alg, kid: keys.kid }, claims({ iat: now() - 1000, exp: now() - 10 }), key.privateKey)],
      ['wrong aud', asym({ alg, kid: keys.kid }, claims({ aud: 'other-service' }), key.privateKey)],
      ['sub not a UUID', asym({ alg, kid: keys.kid }, claims({ sub: 'alice' }), key.privateKey)]
    ]
    for (const [label, tok] of cases) refuses(t, verifyBearer, `Bearer ${tok}`, label)
  })
}

t.test('rotation: the previous key still verifies its tokens, until it is removed', async (t) => {
  const oldKey = pair('ed25519')
  const newKey = pair('ec')
  const before = createTokens({ ...base, keys: loadSigningKeys(oldKey.privatePem) })
  const oldToken = before.signAccess(input)

  const during = createTokens({ ...base, keys: loadSigningKeys(newKey.privatePem, oldKey.publicPem) })
  const newToken = during.signAccess(input)
  t.equal(decode(newToken.split('.')[0]).alg, 'ES256', 'new tokens are signed with the new key')
  t.match(during.verifyBearer(`Bearer ${oldToken}`), { sub: input.sub }, 'a token of the previous key (another algorithm) still verifies')
  t.match(during.verifyBearer(`Bearer ${newToken}`), { sub: input.sub })

  const after = createTokens({ ...base, keys: loadSigningKeys(newKey.privatePem) })
  refuses(t, after.verifyBearer, `Bearer ${oldToken}`, 'once the previous key is removed, its tokens are refused')
  t.match(after.verifyBearer(`Bearer ${newToken}`), { sub: input.sub })
})

t.test('a verified header is remembered, but only until its token expires', async (t) => {
  const tokens = createTokens({ ...base, accessTtl: 1 })
  const header = `Bearer ${tokens.signAccess(input)}`
  const first = tokens.verifyBearer(header)
  t.equal(tokens.verifyBearer(header), first, 'the second verification is a cache hit: the same claims object')
  t.not(tokens.verifyBearer(`Bearer ${tokens.signAccess(input)}`), first, 'another token is its own entry')
  refuses(t, tokens.verifyBearer, 'Bearer a.b.c', 'a refused header…')
  refuses(t, tokens.verifyBearer, 'Bearer a.b.c', '…is refused again: refusals are never remembered')
  await sleep(first.exp * 1000 - Date.now() + 50)
  refuses(t, tokens.verifyBearer, header, 'past its exp, the remembered token is refused')
})

t.test('the cache is bounded: the oldest header is forgotten first', async (t) => {
  const tokens = createTokens(base)
  const headers = Array.from({ length: 1001 }, () => `Bearer ${tokens.signAccess(input)}`)
  const first = tokens.verifyBearer(headers[0])
  const second = tokens.verifyBearer(headers[1])
  for (const h of headers.slice(2)) tokens.verifyBearer(h)
  t.equal(tokens.verifyBearer(headers[1]), second, 'the 1000 newest are remembered')
  t.not(tokens.verifyBearer(headers[0]), first, 'the oldest was forgotten and is verified afresh')
})
