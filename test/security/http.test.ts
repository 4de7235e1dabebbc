// HTTP-level hardening: headers, CORS, body limits, and logs that never hold a secret.
import t from 'tap'
import { bearer, build, context, login, PASSWORD, signUp } from '../helper.js'

const ctx = await context(t)
const lines: string[] = []
const app = await build(t, ctx, { LOG_LEVEL: 'trace' }, { logStream: { write: (line: string) => { lines.push(line) } } })

t.test('security headers on every response', async (t) => {
  const user = await signUp(app, ctx)
  for (const res of [
    await app.inject('/health'),
    await app.inject({ url: '/auth/me', headers: bearer(user.access) }),
    await app.inject({ url: '/auth/me' }),
    await app.inject('/no/such/route')
  ]) {
    // The API set: nothing loaded, framed or sniffed from a JSON response; HTTPS sticky.
    t.equal(res.headers['content-security-policy'], "default-src 'none';frame-ancestors 'none'")
    t.equal(res.headers['x-frame-options'], 'DENY')
    t.equal(res.headers['x-content-type-options'], 'nosniff')
    t.equal(res.headers['cross-origin-resource-policy'], 'same-origin')
    t.match(res.headers['strict-transport-security'], /max-age=\d+/)
    t.notOk(res.headers['x-powered-by'])
    t.notOk(res.headers['referrer-policy'], 'document-only headers are for the docs page')
    t.match(res.headers['x-request-id'], /^[0-9a-f-]{36}$/)
  }
})

t.test('Swagger UI, the one HTML page, gets the document headers', async (t) => {
  for (const url of ['/docs/', '/docs/json']) {
    const res = await app.inject(url)
    t.equal(res.statusCode, 200, url)
    t.match(res.headers['content-security-policy'], /default-src 'self'/)
    t.match(res.headers['content-security-policy'], /frame-ancestors 'none'/)
    t.equal(res.headers['x-frame-options'], 'SAMEORIGIN')
    t.equal(res.headers['referrer-policy'], 'no-referrer')
    t.equal(res.headers['cross-origin-opener-policy'], 'same-origin')
    t.equal(res.headers['x-content-type-options'], 'nosniff')
  }
})

t.test('X-Request-Id is propagated when sane, replaced when not', async (t) => {
  t.equal((await app.inject({ url: '/health', headers: { 'x-request-id': 'abc-123' } })).headers['x-request-id'], 'abc-123')
  const hostile = await app.inject({ url: '/health', headers: { 'x-request-id': 'a\u0007b'.repeat(100) } })
  t.match(hostile.headers['x-request-id'], /^[0-9a-f-]{36}$/)
  t.ok(lines.some((l) => l.includes('"reqId":"abc-123"')), 'and appears in the logs')
})

t.test('CORS is off unless CORS_ORIGINS lists the origin', async (t) => {
  const off = await app.inject({ method: 'OPTIONS', url: '/auth/login', headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } })
  t.notOk(off.headers['access-control-allow-origin'])
  const on = await build(t, ctx, { CORS_ORIGINS: 'https://app.example' })
  const allowed = await on.inject({ method: 'OPTIONS', url: '/auth/login', headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' } })
  t.equal(allowed.headers['access-control-allow-origin'], 'https://app.example')
  const other = await on.inject({ method: 'GET', url: '/health', headers: { origin: 'https://evil.example' } })
  t.notOk(other.headers['access-control-allow-origin'])
})

t.test('a large body is refused early', async (t) => {
  const res = await app.inject({ method: 'POST', url: '/auth/login', payload: { username: 'a', password: 'b', pad: 'x'.repeat(20_000) } })
  t.equal(res.statusCode, 413)
})

t.test('prototype pollution payloads are dropped, never honoured', async (t) => {
  const username = ctx.username('proto')
  const res = await app.inject({
    method: 'POST',
    url: '/auth/register',
    headers: { 'content-type': 'application/json' },
    payload: `{"username":"${username}","password":"${PASSWORD}","__proto__":{"role":"admin","isAdmin":true},"constructor":{"prototype":{"role":"admin"}}}`
  })
  t.ok(res.statusCode === 201 || res.statusCode === 400, `status ${res.statusCode}`)
  t.equal(({} as Record<string, unknown>).role, undefined, 'Object.prototype untouched')
  if (res.statusCode === 201) t.equal(res.json().role, 'user')
})

t.test('logs never contain passwords or tokens', async (t) => {
  const user = await signUp(app, ctx)
  await app.inject({ method: 'POST', url: '/auth/login', payload: { username: user.username, password: 'a wrong password' } })
  await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: user.refresh } })
  await app.inject({ method: 'GET', url: '/auth/me', headers: bearer(user.access) })
  await app.inject({ method: 'GET', url: '/auth/me', headers: { authorization: 'Bearer not.a.token', cookie: 'session=secret-cookie' } })
  await app.inject({ method: 'POST', url: '/auth/change-password', headers: bearer(user.access), payload: { currentPassword: 'wrong one!', newPassword: 'another password' } })
  t.ok(lines.length > 5, 'logging happened')
  const all = lines.join('\n')
  for (const secret of [PASSWORD, 'a wrong password', 'wrong one!', 'another password', user.access, user.refresh, user.access.split('.')[2], 'secret-cookie']) {
    t.notOk(all.includes(secret), `no ${secret.slice(0, 12)}… in the logs`)
  }
})

t.test('every route that takes a body answers 400 to a request with none, never 500', async (t) => {
  const admin = await signUp(app, ctx, { role: 'admin' })
  // Every operation with a request body, from the OpenAPI document: routes added later are
  // covered without editing this list.
  const doc = app.swagger() as { paths: Record<string, Record<string, { requestBody?: unknown }>> }
  const withBody: Array<[string, string]> = []
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      if (op.requestBody !== undefined) withBody.push([method.toUpperCase(), path.replace(/\{[^}]+\}/g, admin.id)])
    }
  }
  t.ok(withBody.some(([m, p]) => m === 'POST' && p === '/auth/login'), 'login is among them')
  for (const [method, url] of withBody) {
    // No payload, no content type: what `curl -X POST` sends.
    const res = await app.inject({ method: method as 'POST', url, headers: bearer(admin.access) })
    // Without an event-signing key the /ssf routes answer 501 before reading any body.
    const expected = url.startsWith('/ssf/') && !app.events.enabled ? 501 : 400
    t.equal(res.statusCode, expected, `${method} ${url}`)
    t.equal(res.json().error, expected === 501 ? 'Not Implemented' : 'Bad Request')
  }
})

t.test('every response that carries user data is Cache-Control: no-store', async (t) => {
  const admin = await signUp(app, ctx, { role: 'admin' })
  const user = await signUp(app, ctx)
  const sid = JSON.parse(Buffer.from(user.access.split('.')[1], 'base64url').toString()).sid
  const other = await login(app, user.username)
  const asAdmin = bearer(admin.access)
  const responses: Array<[string, Awaited<ReturnType<typeof app.inject>>]> = [
    ['register', await app.inject({ method: 'POST', url: '/auth/register', payload: { username: ctx.username('cache'), password: PASSWORD } })],
    ['login', await app.inject({ method: 'POST', url: '/auth/login', payload: { username: user.username, password: PASSWORD } })],
    ['refresh', await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: other.refresh } })],
    ['me', await app.inject({ url: '/auth/me', headers: bearer(user.access) })],
    ['sessions', await app.inject({ url: '/auth/sessions', headers: bearer(user.access) })],
    ['users', await app.inject({ url: '/users', headers: asAdmin })],
    ['user', await app.inject({ url: `/users/${user.id}`, headers: asAdmin })],
    ['patch user', await app.inject({ method: 'PATCH', url: `/users/${user.id}`, headers: asAdmin, payload: { disabled: false } })],
    ['change-role', await app.inject({ method: 'POST', url: '/auth/change-role', headers: asAdmin, payload: { username: user.username, role: 'user' } })],
    ['audit', await app.inject({ url: `/audit?userId=${user.id}`, headers: asAdmin })],
    ['delete session', await app.inject({ method: 'DELETE', url: `/auth/sessions/${sid}`, headers: bearer(other.access) })],
    ['passkeys', await app.inject({ url: '/auth/webauthn/credentials', headers: bearer(other.access) })],
    ['passkey registration options', await app.inject({ method: 'POST', url: '/auth/webauthn/register/options', headers: bearer(other.access), payload: { password: PASSWORD } })],
    ['passkey sign-in options', await app.inject({ method: 'POST', url: '/auth/webauthn/login/options', payload: {} })]
  ]
  for (const [name, res] of responses) {
    t.ok(res.statusCode < 300, `${name}: ${res.statusCode}`)
    t.equal(res.headers['cache-control'], 'no-store', name)
  }
})
