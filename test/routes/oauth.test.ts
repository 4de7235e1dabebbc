// POST /oauth/introspect (RFC 7662) and POST /oauth/revoke (RFC 7009). Introspection: a
// registered client only (401 with a Basic challenge otherwise), the claims of a live
// access or refresh token, `{ active: false }` and nothing else for anything not live,
// never cached, and a warm access-token answer costs one Redis round trip and no
// PostgreSQL. Revocation: the token's session ends (audited as a logout), any other token
// changes nothing, 200 either way.
import t, { type Test } from 'tap'
import type { LightMyRequestResponse } from 'fastify'
import { bearer, build, context, costs, login, me, signUp, type Account } from '../helper.js'

const ctx = await context(t)
const app = await build(t, ctx, { ACCESS_TOKEN_TTL: 2 })
const client = await app.clients.create(`oauth-${ctx.tag}`)
t.teardown(() => app.clients.delete(client.id))

const FORM = { 'content-type': 'application/x-www-form-urlencoded' }
const INACTIVE = { active: false }

function basic (id: string, secret: string): string {
  return `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`
}
const asClient = { authorization: basic(client.clientId, client.clientSecret) }

function form (fields: Record<string, string>): string {
  return new URLSearchParams(fields).toString()
}

function introspect (token: string, headers: Record<string, string> = asClient, hint?: string): Promise<LightMyRequestResponse> {
  return app.inject({
    method: 'POST',
    url: '/oauth/introspect',
    headers: { ...FORM, ...headers },
    payload: form(hint === undefined ? { token } : { token, token_type_hint: hint })
  })
}

function revoke (token: string, hint?: string): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'POST', url: '/oauth/revoke', headers: FORM, payload: form(hint === undefined ? { token } : { token, token_type_hint: hint }) })
}

function claimsOf (access: string): Record<string, any> {
  return JSON.parse(Buffer.from(access.split('.')[1], 'base64url').toString())
}

async function inactive (t: Test, res: LightMyRequestResponse, what: string): Promise<void> {
  t.equal(res.statusCode, 200, what)
  t.equal(res.headers['cache-control'], 'no-store', `${what}: not cacheable`)
  t.strictSame(res.json(), INACTIVE, `${what}: { active: false } and nothing else`)
}

async function logoutEvents (user: Account): Promise<Array<{ actor_id: string, detail: Record<string, unknown> }>> {
  const { rows } = await app.db.query('SELECT actor_id, detail FROM audit_events WHERE subject_id = $1 AND type = $2 ORDER BY id', [user.id, 'logout'])
  return rows
}

t.test('a live access token: active, with its claims', async (t) => {
  const user = await signUp(app, ctx)
  const res = await introspect(user.access)
  t.equal(res.statusCode, 200)
  t.equal(res.headers['cache-control'], 'no-store')
  const claims = claimsOf(user.access)
  t.strictSame(res.json(), {
    active: true,
    sub: user.id,
    username: user.username,
    role: 'user',
    sid: claims.sid,
    token_type: 'access_token',
    exp: claims.exp,
    iat: claims.iat,
    iss: 'auth-service',
    aud: 'auth-service',
    jti: claims.jti,
    amr: ['pwd'],
    client_id: 'auth-service'
  })
  // The hint orders nothing: a wrong or unknown one finds the token all the same.
  for (const hint of ['refresh_token', 'access_token', 'something_else']) {
    t.match((await introspect(user.access, asClient, hint)).json(), { active: true, sub: user.id }, `hint ${hint}`)
  }
  const json = await app.inject({ method: 'POST', url: '/oauth/introspect', headers: asClient, payload: { token: user.access } })
  t.match(json.json(), { active: true, sub: user.id }, 'a JSON body works too')
})

t.test('a live refresh token: active until it is used, its session ends, or its user changes', async (t) => {
  const user = await signUp(app, ctx)
  const res = await introspect(user.refresh, asClient, 'refresh_token')
  t.equal(res.statusCode, 200)
  t.equal(res.headers['cache-control'], 'no-store')
  const body = res.json()
  const sid = claimsOf(user.access).sid
  t.match(body, { active: true, sub: user.id, username: user.username, role: 'user', sid, token_type: 'refresh_token', iss: 'auth-service', aud: 'auth-service', client_id: 'auth-service', jti: /^[A-Za-z0-9_-]{43}$/ })
  t.strictSame(body.amr, ['pwd'], 'the session\'s amr')
  t.ok(body.exp - body.iat >= 2592000 - 5 && body.exp - body.iat <= 2592000 + 5, 'exp is the refresh token\'s (30 days by default)')
  t.ok(Math.abs(body.iat - Date.now() / 1000) < 60)
  t.match((await introspect(user.refresh, asClient, 'access_token')).json(), { active: true }, 'a wrong hint finds it anyway')

  // Used (rotated): the old one is dead, the new one live.
  const rotated = await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: user.refresh } })
  t.equal(rotated.statusCode, 200)
  await inactive(t, await introspect(user.refresh), 'a used refresh token')
  const next = rotated.json().refresh_token
  t.match((await introspect(next)).json(), { active: true, sid })

  // The session ends (logout with the new pair's access token).
  t.equal((await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(rotated.json().access_token) })).statusCode, 204)
  await inactive(t, await introspect(next), 'the refresh token of a session that ended')

  // Every session of the user ends.
  const other = await login(app, user.username)
  t.match((await introspect(other.refresh)).json(), { active: true })
  t.equal((await app.inject({ method: 'POST', url: '/auth/logout-all', headers: bearer(other.access) })).statusCode, 204)
  await inactive(t, await introspect(other.refresh), 'after logout-all')
})

t.test('revoked, expired, malformed, unknown: { active: false } alone', async (t) => {
  const user = await signUp(app, ctx)
  const other = await login(app, user.username)
  t.equal((await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(user.access) })).statusCode, 204)
  await inactive(t, await introspect(user.access), 'an access token whose session ended, on the next call')
  await inactive(t, await introspect(user.refresh), 'its refresh token')
  t.match((await introspect(other.access)).json(), { active: true }, 'the user\'s other session is still live')

  const admin = await signUp(app, ctx, { role: 'admin' })
  const res = await app.inject({ method: 'PATCH', url: `/users/${user.id}`, headers: bearer(admin.access), payload: { disabled: true } })
  t.equal(res.statusCode, 200)
  await inactive(t, await introspect(other.access), 'a disabled user\'s access token')
  await inactive(t, await introspect(other.refresh), 'a disabled user\'s refresh token')

  const [h, p] = other.access.split('.')
  for (const [what, token] of [
    ['garbage', 'garbage'],
    ['a JWT with a bad signature', `${h}.${p}.c2lnbmF0dXJl`],
    ['an unknown refresh token', 'q0Xn6yJ3c1m5u9sVxWz2bT4rY8pK7eLdGhFjAiCoNvM'],
    ['a very long string', 'x'.repeat(8000)]
  ]) await inactive(t, await introspect(token), what)

  const fresh = await signUp(app, ctx)
  await new Promise((resolve) => setTimeout(resolve, 3100))
  t.equal((await me(app, fresh.access)).statusCode, 401, 'the 2 s access token has expired')
  await inactive(t, await introspect(fresh.access), 'an expired access token')
})

t.test('401 with a Basic challenge for a missing or wrong client; 400 without a token', async (t) => {
  const user = await signUp(app, ctx)
  for (const [what, headers] of [
    ['no Authorization', {}],
    ['a wrong secret', { authorization: basic(client.clientId, 'not-the-secret') }],
    ['an unknown client', { authorization: basic('AAAAAAAAAAAAAAAAAAAAAA', client.clientSecret) }],
    ['a bearer token instead of client credentials', bearer(user.access)],
    ['a malformed Basic header', { authorization: 'Basic !!!' }]
  ] as Array<[string, Record<string, string>]>) {
    const res = await introspect(user.access, headers)
    t.equal(res.statusCode, 401, what)
    t.equal(res.headers['www-authenticate'], 'Basic realm="auth", charset="UTF-8"', `${what}: a Basic challenge`)
    t.equal(res.headers['cache-control'], 'no-store')
    t.strictSame(res.json(), { statusCode: 401, error: 'Unauthorized', message: 'Client authentication failed', code: 'AUTH_INVALID_CLIENT' })
  }
  for (const payload of ['', 'token_type_hint=access_token', 'token=']) {
    const res = await app.inject({ method: 'POST', url: '/oauth/introspect', headers: { ...FORM, ...asClient }, payload })
    t.equal(res.statusCode, 400, `body "${payload}"`)
  }
  t.equal((await app.inject({ method: 'POST', url: '/oauth/introspect', headers: { ...asClient, 'content-type': 'text/plain' }, payload: 'x' })).statusCode, 415)
  t.equal((await me(app, user.access)).statusCode, 200, 'nothing was revoked by any of this')
})

t.test('a warm access-token introspection: one Redis round trip, no PostgreSQL', async (t) => {
  const user = await signUp(app, ctx)
  t.match((await introspect(user.access)).json(), { active: true }, 'first use fills both caches (client and token)')
  const { result: res, pgQueries, redisCommands: commands, redisWrites: writes } = await costs(app, async () => await introspect(user.access))
  t.match(res.json(), { active: true, sub: user.id })
  t.strictSame({ pgQueries, commands, writes }, { pgQueries: 0, commands: 2, writes: 1 },
    'the client\'s GET and the token\'s HMGET, sent in one write')
})

t.test('POST /oauth/revoke with an access token: its session ends, audited as a logout', async (t) => {
  const user = await signUp(app, ctx)
  const other = await login(app, user.username)
  const res = await revoke(user.access, 'access_token')
  t.equal(res.statusCode, 200)
  t.equal(res.headers['cache-control'], 'no-store')
  t.strictSame(res.json(), {})
  t.equal((await me(app, user.access)).statusCode, 401, 'the access token is refused on the next request')
  t.equal((await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: user.refresh } })).statusCode, 401, 'so is its refresh token')
  t.equal((await me(app, other.access)).statusCode, 200, 'the user\'s other session goes on')
  const events = await logoutEvents(user)
  t.equal(events.length, 1)
  t.strictSame(events[0].detail, { sessionId: claimsOf(user.access).sid, via: 'oauth_revoke', tokenType: 'access_token' })
  t.equal(events[0].actor_id, user.id)

  t.equal((await revoke(user.access)).statusCode, 200, 'again: 200')
  t.equal((await logoutEvents(user)).length, 1, 'and nothing more is recorded')
})

t.test('POST /oauth/revoke with a refresh token (form or JSON): its session ends', async (t) => {
  const user = await signUp(app, ctx)
  const other = await login(app, user.username)
  const res = await app.inject({ method: 'POST', url: '/oauth/revoke', payload: { token: user.refresh, token_type_hint: 'refresh_token' } })
  t.equal(res.statusCode, 200)
  t.strictSame(res.json(), {})
  t.equal((await me(app, user.access)).statusCode, 401, 'the session\'s access token is refused on the next request')
  t.equal((await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: user.refresh } })).statusCode, 401)
  t.equal((await me(app, other.access)).statusCode, 200)
  t.match(await logoutEvents(user), [{ actor_id: user.id, detail: { via: 'oauth_revoke', tokenType: 'refresh_token' } }])

  // With a wrong hint, over a form.
  t.equal((await revoke(other.refresh, 'access_token')).statusCode, 200)
  t.equal((await me(app, other.access)).statusCode, 401)
})

t.test('POST /oauth/revoke: 200 and nothing changes for anything not live; 400 without a token', async (t) => {
  const user = await signUp(app, ctx)
  const [h, p] = user.access.split('.')
  for (const token of ['garbage', `${h}.${p}.c2lnbmF0dXJl`, 'q0Xn6yJ3c1m5u9sVxWz2bT4rY8pK7eLdGhFjAiCoNvM']) {
    const res = await revoke(token)
    t.equal(res.statusCode, 200, token.slice(0, 20))
    t.strictSame(res.json(), {})
  }
  // A used refresh token: the session lives on through its successor.
  const rotated = await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: user.refresh } })
  t.equal((await revoke(user.refresh)).statusCode, 200)
  t.equal((await me(app, rotated.json().access_token)).statusCode, 200, 'a used refresh token revokes nothing')
  t.equal((await me(app, user.access)).statusCode, 200)
  t.equal((await logoutEvents(user)).length, 0)

  for (const payload of ['', 'token_type_hint=refresh_token', 'token=']) {
    t.equal((await app.inject({ method: 'POST', url: '/oauth/revoke', headers: FORM, payload })).statusCode, 400, `body "${payload}"`)
  }
  t.equal((await app.inject({ method: 'POST', url: '/oauth/revoke', payload: {} })).statusCode, 400, 'an empty JSON body')
  t.equal((await app.inject({ method: 'POST', url: '/oauth/revoke', payload: { token: 12345 } })).statusCode, 400, 'JSON is not coerced')
})
