// Property-based: generated bodies, headers and tokens thrown at every route never get
// a 5xx, and the service is healthy afterwards.
import t from 'tap'
import fc from 'fast-check'
import { bearer, build, context, signUp } from '../helper.js'
import { base32Decode, totpCode } from '../../lib/totp.js'

// A database of its own: generated registrations and failed logins carry no test tag
// ("admin", "__proto__", "' OR 1=1 --"), so everything goes with the database at the end.
const ctx = await context(t, { ownDatabase: true })
// Generous limits: the fuzzer must reach the handlers, not the rate limiter.
// With mail (to a port where nothing listens: the mails fail in the background), so that
// the mail flows are reached too.
const app = await build(t, ctx, { SMTP_URL: 'smtp://127.0.0.1:1', MAIL_FROM: 'auth@example.com' })
const user = await signUp(app, ctx)
const admin = await signUp(app, ctx, { role: 'admin' })

const routes: Array<[string, string]> = [
  ['POST', '/auth/register'], ['POST', '/auth/login'], ['POST', '/auth/refresh'], ['GET', '/auth/me'],
  ['POST', '/auth/change-role'], ['POST', '/auth/logout-all'], ['GET', '/auth/sessions'],
  ['DELETE', '/auth/sessions/:id'], ['POST', '/auth/change-password'], ['GET', '/users'],
  ['GET', '/users/:id'], ['PATCH', '/users/:id'], ['DELETE', '/users/:id'], ['GET', '/audit'],
  ['GET', '/health'], ['GET', '/ready'], ['POST', '/auth/password/forgot'], ['POST', '/auth/password/reset'],
  ['POST', '/auth/email/verify'], ['PATCH', '/auth/me'], ['POST', '/users'], ['POST', '/users/:id/password'],
  ['DELETE', '/auth/me'], ['POST', '/auth/mfa/totp'], ['POST', '/auth/mfa/totp/confirm'],
  ['DELETE', '/auth/mfa/totp'], ['POST', '/auth/mfa/recovery-codes'], ['POST', '/auth/mfa/verify'], ['DELETE', '/users/:id/mfa'],
  ['POST', '/auth/webauthn/register/options'], ['POST', '/auth/webauthn/register/verify'], ['POST', '/auth/webauthn/login/options'],
  ['POST', '/auth/webauthn/login/verify'], ['GET', '/auth/webauthn/credentials'], ['DELETE', '/auth/webauthn/credentials/:id']
]

const hostileString = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.constantFrom('', '\u0000', 'a\u0000b', '../../etc/passwd', "' OR 1=1 --", '$' + '{jndi:ldap://x}', '__proto__',
    'constructor', 'x'.repeat(300), '😀'.repeat(40), '\ud800', 'admin', 'user', '00000000-0000-4000-8000-000000000000'),
  fc.uuid()
)
const jsonValue = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small' }, hostileString, fc.integer(), fc.double(), fc.boolean(), fc.constant(null),
    fc.array(tie('value'), { maxLength: 3 }), tie('object')),
  object: fc.dictionary(fc.oneof(hostileString, fc.constantFrom('username', 'password', 'role', 'disabled', 'refresh_token',
    'currentPassword', 'newPassword', 'email', 'token', '__proto__', 'constructor', 'prototype', 'id', 'rawId', 'type', 'response',
    'clientDataJSON', 'attestationObject', 'authenticatorData', 'signature', 'userHandle', 'clientExtensionResults',
    'mfa_token', 'name')), tie('value'), { maxKeys: 5 })
})).value

const authorization = fc.oneof(
  fc.constant(undefined),
  fc.constant(`Bearer ${user.access}`),
  fc.constant(`Bearer ${admin.access}`),
  hostileString.map((s) => `Bearer ${s}`),
  fc.tuple(hostileString, hostileString, hostileString).map(([a, b, c]) => `Bearer ${Buffer.from(a).toString('base64url')}.${Buffer.from(b).toString('base64url')}.${c}`),
  hostileString
)
const contentType = fc.constantFrom('application/json', 'application/x-www-form-urlencoded', 'text/plain', 'application/xml', 'multipart/form-data; boundary=x', 'application/json; charset=utf-16')
const query = fc.dictionary(fc.constantFrom('limit', 'cursor', 'userId', 'access_token'), hostileString, { maxKeys: 3 })

t.test('no route answers 5xx to generated input', async (t) => {
  const failures: string[] = []
  await fc.assert(fc.asyncProperty(
    fc.constantFrom(...routes), jsonValue, authorization, contentType, query, fc.oneof(fc.uuid(), hostileString), fc.boolean(),
    async ([method, path], body, auth, type, q, id, rawString) => {
      const url = path.replace(':id', encodeURIComponent(id.replace(/[\ud800-\udfff]/g, ''))) + '?' + new URLSearchParams(q).toString()
      const headers: Record<string, string> = { 'content-type': type }
      // Only what HTTP can carry in a header: printable ASCII.
      if (auth !== undefined) headers.authorization = auth.replace(/[^\x20-\x7e]/g, '')
      const payload = method === 'GET' ? undefined : rawString ? String(JSON.stringify(body)).slice(0, 5000) : JSON.stringify(body)
      const res = await app.inject({ method: method as 'GET', url, headers, payload })
      if (res.statusCode >= 500 && !(path === '/ready' && res.statusCode === 503)) {
        failures.push(`${method} ${url} ${type} ${payload?.slice(0, 200)} -> ${res.statusCode} ${res.body}`)
        return false
      }
      if (res.statusCode >= 400 && res.body !== '') {
        const b = res.json()
        if (typeof b.message !== 'string' || /at .*\.(ts|js):\d+|SELECT|INSERT|ERR |stack/i.test(res.body)) {
          failures.push(`leaky error: ${res.body}`)
          return false
        }
      }
      return true
    }), { numRuns: 600, seed: Number(process.env.FUZZ_SEED ?? Date.now() % 2147483647) })
    .catch((err) => { failures.push(String(err).slice(0, 2000)) })
  t.strictSame(failures, [])
})

/** A login of a user with TOTP, waiting for its second factor: what /auth/mfa/verify takes. */
async function mfaToken (): Promise<string> {
  const holder = await signUp(app, ctx)
  const secret = base32Decode((await app.inject({ method: 'POST', url: '/auth/mfa/totp', headers: bearer(holder.access) })).json().secret)
  await app.inject({ method: 'POST', url: '/auth/mfa/totp/confirm', headers: bearer(holder.access), payload: { code: totpCode(secret, Date.now()) } })
  return (await app.inject({ method: 'POST', url: '/auth/login', payload: { username: holder.username, password: holder.password } })).json().mfa_token
}

t.test('valid bodies with one field replaced by hostile input never get a 5xx', async (t) => {
  // Mutation-based: starting from a body that passes validation, so the hostile value
  // reaches the handler and the database (a NUL byte in a login username once did).
  const victim = await signUp(app, ctx)
  const bodies: Array<[string, string, Record<string, unknown>, string | undefined]> = [
    ['POST', '/auth/register', { username: ctx.username('mut'), password: 'correct horse battery' }, undefined],
    ['POST', '/auth/login', { username: victim.username, password: 'correct horse battery' }, undefined],
    ['POST', '/auth/refresh', { refresh_token: victim.refresh }, undefined],
    ['POST', '/auth/change-role', { username: victim.username, role: 'user' }, admin.access],
    ['POST', '/auth/change-password', { currentPassword: 'wrong password!', newPassword: 'another password' }, victim.access],
    ['PATCH', `/users/${victim.id}`, { role: 'user', disabled: false }, admin.access],
    ['POST', '/auth/password/forgot', { username: victim.username }, undefined],
    ['POST', '/auth/password/forgot', { email: 'victim@example.com' }, undefined],
    ['POST', '/auth/password/reset', { token: 'x'.repeat(43), newPassword: 'another password' }, undefined],
    ['POST', '/auth/email/verify', { token: 'x'.repeat(43) }, undefined],
    ['PATCH', '/auth/me', { email: `${victim.username}@example.com` }, victim.access],
    ['POST', '/auth/mfa/verify', { mfa_token: await mfaToken(), code: '000000' }, undefined],
    ['POST', '/auth/mfa/verify', { mfa_token: await mfaToken(), recovery_code: 'abcd-efgh-ijkl-mnop' }, undefined],
    ['POST', '/auth/mfa/totp/confirm', { code: '123456' }, victim.access],
    ['DELETE', '/auth/mfa/totp', { password: 'wrong password!' }, victim.access],
    ['POST', '/auth/mfa/recovery-codes', { password: 'wrong password!' }, victim.access],
    ['POST', '/auth/webauthn/register/options', { password: 'correct horse battery', name: 'Laptop' }, victim.access],
    ['POST', '/auth/webauthn/login/options', { mfa_token: 'x' }, undefined],
    ['POST', '/auth/webauthn/login/verify', {
      id: 'AAAA',
      rawId: 'AAAA',
      type: 'public-key',
      clientExtensionResults: {},
      response: { clientDataJSON: Buffer.from('{"challenge":"AAAA"}').toString('base64url'), authenticatorData: 'AAAA', signature: 'AAAA' }
    }, undefined]
  ]
  const hostile = fc.oneof(hostileString, fc.string({ unit: 'binary', maxLength: 64 }), fc.integer(), fc.boolean(),
    fc.constant(null), fc.array(hostileString, { maxLength: 2 }), fc.dictionary(hostileString, hostileString, { maxKeys: 2 }))
  const failures: string[] = []
  async function attempt ([method, url, body, token]: typeof bodies[number], which: number, value: unknown, form: boolean): Promise<boolean> {
    const keys = Object.keys(body)
    const mutated = { ...body, [keys[which % keys.length]]: value }
    const asForm = form && url === '/auth/login'
    const res = await app.inject({
      method: method as 'POST',
      url,
      headers: {
        ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
        'content-type': asForm ? 'application/x-www-form-urlencoded' : 'application/json'
      },
      payload: asForm
        ? new URLSearchParams(Object.entries(mutated).map(([k, v]) => [k, typeof v === 'string' ? v : String(JSON.stringify(v))])).toString()
        : JSON.stringify(mutated)
    })
    if (res.statusCode >= 500) {
      failures.push(`${method} ${url} ${JSON.stringify(mutated).slice(0, 300)} -> ${res.statusCode} ${res.body}`)
      return false
    }
    return true
  }
  // Every field of every body with each of the classic offenders, deterministically…
  const offenders: unknown[] = ['', '\u0000', 'a\u0000b', '\ud800', 'x'.repeat(10_000), ' ', "' OR 1=1 --", -1, 1e308, true, null, [], {}, ['a'], { $gt: '' }]
  for (const entry of bodies) {
    for (let which = 0; which < Object.keys(entry[2]).length; which++) {
      for (const value of offenders) {
        await attempt(entry, which, value, false)
        if (entry[1] === '/auth/login') await attempt(entry, which, value, true)
      }
    }
  }
  // …then random ones.
  await fc.assert(fc.asyncProperty(fc.constantFrom(...bodies), fc.nat(), hostile, fc.boolean(), attempt),
    { numRuns: 400, seed: Number(process.env.FUZZ_SEED ?? Date.now() % 2147483647) })
    .catch((err) => { failures.push(String(err).slice(0, 2000)) })
  t.strictSame(failures, [])
})

t.test('the service is healthy afterwards', async (t) => {
  t.equal((await app.inject('/health')).statusCode, 200)
  t.equal((await app.inject('/ready')).statusCode, 200)
  // (The fuzzer may well have signed `user` out everywhere: sign up someone new.)
  const fresh = await signUp(app, ctx)
  t.equal((await app.inject({ method: 'GET', url: '/auth/me', headers: { authorization: `Bearer ${fresh.access}` } })).statusCode, 200)
})
