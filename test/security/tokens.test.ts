// Every way an attacker bends a JWT is a 401 with WWW-Authenticate, never a 500.
import t, { type Test } from 'tap'
import { createHmac, generateKeyPairSync, sign as edSign } from 'node:crypto'
import { build, context, JWT_SECRET, signUp } from '../helper.js'

const ctx = await context(t)
const app = await build(t, ctx)
const user = await signUp(app, ctx)
const [, realPayload] = user.access.split('.')
const claims = JSON.parse(Buffer.from(realPayload, 'base64url').toString())

const b64 = (v: object | string) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url')
function hs (header: object, payload: object, secret = JWT_SECRET, alg = 'sha256'): string {
  const input = `${b64(header)}.${b64(payload)}`
  return `${input}.${createHmac(alg, secret).update(input).digest('base64url')}`
}
const now = Math.floor(Date.now() / 1000)

async function expect401 (t: Test, token: string, label: string, where: 'header' | 'query' | 'cookie' = 'header') {
  const res = await app.inject({
    method: 'GET',
    url: where === 'query' ? `/auth/me?access_token=${token}` : '/auth/me',
    headers: where === 'header' ? { authorization: `Bearer ${token}` } : where === 'cookie' ? { cookie: `token=${token}; access_token=${token}` } : {}
  })
  t.equal(res.statusCode, 401, label)
  t.match(res.headers['www-authenticate'], /^Bearer realm="auth"/, `${label}: WWW-Authenticate`)
  t.equal(res.json().statusCode, 401)
}

t.test('the genuine token works (control)', async (t) => {
  t.equal((await app.inject({ method: 'GET', url: '/auth/me', headers: { authorization: `Bearer ${user.access}` } })).statusCode, 200)
  t.equal((await app.inject({ method: 'GET', url: '/auth/me', headers: { authorization: `bearer ${user.access}` } })).statusCode, 200, 'scheme is case-insensitive (RFC 7235)')
  t.equal((await app.inject({ method: 'GET', url: '/auth/me', headers: { authorization: `Bearer ${hs({ alg: 'HS256', typ: 'JWT' }, claims)}` } })).statusCode, 200, 'a token re-signed with the real key works, so the cases below fail for their own reason')
})

t.test('refused tokens', async (t) => {
  const { privateKey } = generateKeyPairSync('ed25519')
  const edInput = `${b64({ alg: 'EdDSA', typ: 'JWT' })}.${b64(claims)}`
  const cases: Array<[string, string]> = [
    ['alg none', `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`],
    ['alg none, no signature part', `${b64({ alg: 'none' })}.${b64(claims)}`],
    ['HS512 with the real secret (algorithm swap)', hs({ alg: 'HS512', typ: 'JWT' }, claims, JWT_SECRET, 'sha512')],
    ['HS384 with the real secret', hs({ alg: 'HS384', typ: 'JWT' }, claims, JWT_SECRET, 'sha384')],
    ['EdDSA signed with an attacker key', `${edInput}.${edSign(null, Buffer.from(edInput), privateKey).toString('base64url')}`],
    ['bad signature', hs({ alg: 'HS256', typ: 'JWT' }, claims, 'another-secret-another-secret-another')],
    ['tampered payload (role admin)', `${user.access.split('.')[0]}.${b64({ ...claims, role: 'admin' })}.${user.access.split('.')[2]}`],
    ['wrong iss', hs({ alg: 'HS256' }, { ...claims, iss: 'evil' })],
    ['wrong aud', hs({ alg: 'HS256' }, { ...claims, aud: 'other-service' })],
    ['expired', hs({ alg: 'HS256' }, { ...claims, iat: now - 1000, exp: now - 10 })],
    ['not yet valid (nbf in the future)', hs({ alg: 'HS256' }, { ...claims, nbf: now + 3600 })],
    ['issued ten years ahead (iat in the future), exp after it', hs({ alg: 'HS256' }, { ...claims, iat: now + 10 * 365 * 86400, exp: now + 10 * 365 * 86400 + 900 })],
    ['issued a minute ahead', hs({ alg: 'HS256' }, { ...claims, iat: now + 60 })],
    ['older than the access-token lifetime, exp ten years ahead', hs({ alg: 'HS256' }, { ...claims, iat: now - 901, exp: now + 10 * 365 * 86400 })],
    ['no iat', hs({ alg: 'HS256' }, { ...claims, iat: undefined })],
    ['no sid', hs({ alg: 'HS256' }, { ...claims, sid: undefined })],
    ['no exp', hs({ alg: 'HS256' }, { ...claims, exp: undefined })],
    ['sca of the wrong type', hs({ alg: 'HS256' }, { ...claims, sca: 'yesterday' })],
    ['unknown role', hs({ alg: 'HS256' }, { ...claims, role: 'root' })],
    ['a session that does not exist', hs({ alg: 'HS256' }, { ...claims, sid: '00000000-0000-4000-8000-000000000000' })],
    ['a user that does not exist', hs({ alg: 'HS256' }, { ...claims, sub: '00000000-0000-4000-8000-000000000000' })],
    ['sub that is not a uuid', hs({ alg: 'HS256' }, { ...claims, sub: "x' OR 1=1 --" })],
    ['oversized', hs({ alg: 'HS256' }, { ...claims, pad: 'x'.repeat(6000) })],
    ['the refresh token as an access token', user.refresh],
    ['garbage in three parts', 'a.b.c'],
    ['header that is not JSON', `${b64('not json')}.${realPayload}.sig`]
  ]
  for (const [label, token] of cases) await expect401(t, token, label)
})

t.test('a token lives at most the access-token lifetime from its iat, within a small clock tolerance', async (t) => {
  const fresh = { ...claims, jti: 'tolerance-check' }
  const at = Math.floor(Date.now() / 1000)
  for (const [label, iat] of [['issued now', at], ['issued 5 s ahead (another instance\'s clock)', at + 5], ['issued 890 s ago', at - 890]] as const) {
    const token = hs({ alg: 'HS256', typ: 'JWT' }, { ...fresh, iat, exp: iat + 900 })
    t.equal((await app.inject({ method: 'GET', url: '/auth/me', headers: { authorization: `Bearer ${token}` } })).statusCode, 200, label)
  }
  // A token remembered by the verifier's cache dies at iat + lifetime too, whatever its exp.
  const shortLived = await build(t, ctx, { ACCESS_TOKEN_TTL: 2 })
  const owner = await signUp(shortLived, ctx)
  const longExp = hs({ alg: 'HS256', typ: 'JWT' }, { ...JSON.parse(Buffer.from(owner.access.split('.')[1], 'base64url').toString()), exp: at + 3600 })
  const ask = () => shortLived.inject({ method: 'GET', url: '/auth/me', headers: { authorization: `Bearer ${longExp}` } })
  t.equal((await ask()).statusCode, 200, 'young: verified and remembered')
  await new Promise((resolve) => setTimeout(resolve, 3100))
  t.equal((await ask()).statusCode, 401, 'refused once older than ACCESS_TOKEN_TTL, cached or not')
})

t.test('a token anywhere but the Authorization header is not read', async (t) => {
  await expect401(t, user.access, 'query string', 'query')
  await expect401(t, user.access, 'cookie', 'cookie')
})
