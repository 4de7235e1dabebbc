// GET /auth/verify: what a gateway sees. 200 with the identity in X-Auth-* headers and no
// body, 401 with a Bearer challenge for anything not live (revoked on the very next call),
// 403 when ?role=admin asks more than the token has, 400 for an unknown role; never cached.
import t, { type Test } from 'tap'
import type { LightMyRequestResponse } from 'fastify'
import { bearer, build, context, costs, login, signUp } from '../helper.js'

const ctx = await context(t)
const app = await build(t, ctx)

function verify (headers: Record<string, string> = {}, query = '', method: 'GET' | 'HEAD' = 'GET'): Promise<LightMyRequestResponse> {
  return app.inject({ method, url: `/auth/verify${query}`, headers })
}

function sidOf (access: string): string {
  return JSON.parse(Buffer.from(access.split('.')[1], 'base64url').toString()).sid
}

const IDENTITY = ['x-auth-user-id', 'x-auth-username', 'x-auth-role', 'x-auth-session-id']

/** A refusal: the status, no identity header, not cacheable. */
function refused (t: Test, res: LightMyRequestResponse, status: number): void {
  t.equal(res.statusCode, status)
  t.equal(res.headers['cache-control'], 'no-store', `${status} is not cacheable`)
  for (const name of IDENTITY) t.equal(res.headers[name], undefined, `no ${name} on a ${status}`)
  t.match(res.json(), { statusCode: status })
}

t.test('a live token: 200, no body, the identity in headers, not cacheable', async (t) => {
  const user = await signUp(app, ctx)
  for (const query of ['', '?role=user']) {
    const res = await verify(bearer(user.access), query)
    t.equal(res.statusCode, 200, `GET /auth/verify${query}`)
    t.equal(res.body, '')
    t.equal(res.headers['cache-control'], 'no-store')
    t.equal(res.headers['x-auth-user-id'], user.id)
    t.equal(res.headers['x-auth-username'], user.username)
    t.equal(res.headers['x-auth-role'], 'user')
    t.equal(res.headers['x-auth-session-id'], sidOf(user.access))
  }
  const head = await verify(bearer(user.access), '', 'HEAD')
  t.equal(head.statusCode, 200, 'HEAD answers the same')
  t.equal(head.headers['x-auth-user-id'], user.id)
})

t.test('an admin passes ?role=admin and ?role=user', async (t) => {
  const admin = await signUp(app, ctx, { role: 'admin' })
  for (const query of ['?role=admin', '?role=user', '']) {
    const res = await verify(bearer(admin.access), query)
    t.equal(res.statusCode, 200, query)
    t.equal(res.headers['x-auth-role'], 'admin')
    t.equal(res.headers['x-auth-user-id'], admin.id)
  }
})

t.test('401 with a Bearer challenge: missing, malformed, garbage', async (t) => {
  const cases: Array<[string, Record<string, string>, string]> = [
    ['missing', {}, 'Bearer realm="auth"'],
    ['Basic', { authorization: 'Basic dXNlcjpwYXNz' }, 'Bearer realm="auth", error="invalid_token"'],
    ['Bearer alone', { authorization: 'Bearer' }, 'Bearer realm="auth", error="invalid_token"'],
    ['garbage', { authorization: 'Bearer not.a.token' }, 'Bearer realm="auth", error="invalid_token"'],
    ['badly signed', { authorization: 'Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl' }, 'Bearer realm="auth", error="invalid_token"']
  ]
  for (const [what, headers, challenge] of cases) {
    const res = await verify(headers)
    t.test(what, async (t) => {
      refused(t, res, 401)
      t.equal(res.headers['www-authenticate'], challenge)
    })
  }
})

t.test('a token is refused on the very next check after its session ends', async (t) => {
  const user = await signUp(app, ctx)
  const other = await login(app, user.username)
  t.equal((await verify(bearer(user.access))).statusCode, 200)
  t.equal((await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(user.access) })).statusCode, 204)
  const res = await verify(bearer(user.access))
  refused(t, res, 401)
  t.equal(res.headers['www-authenticate'], 'Bearer realm="auth", error="invalid_token"')
  t.equal(res.json().message, 'Access token has been revoked')
  t.equal((await verify(bearer(other.access))).statusCode, 200, 'the user\'s other session still passes')

  t.equal((await app.inject({ method: 'POST', url: '/auth/logout-all', headers: bearer(other.access) })).statusCode, 204)
  refused(t, await verify(bearer(other.access)), 401)
})

t.test('a role change: the old admin token is refused, not demoted', async (t) => {
  const root = await signUp(app, ctx, { role: 'admin', label: 'root' })
  const admin = await signUp(app, ctx, { role: 'admin' })
  t.equal((await verify(bearer(admin.access), '?role=admin')).statusCode, 200)
  const res = await app.inject({ method: 'POST', url: '/auth/change-role', headers: bearer(root.access), payload: { username: admin.username, role: 'user' } })
  t.equal(res.statusCode, 200)
  refused(t, await verify(bearer(admin.access), '?role=admin'), 401)
  refused(t, await verify(bearer(admin.access)), 401)
})

t.test('403 when ?role=admin asks more than the token has', async (t) => {
  const user = await signUp(app, ctx)
  const res = await verify(bearer(user.access), '?role=admin')
  refused(t, res, 403)
  t.match(res.json(), { error: 'Forbidden', message: 'Requires role admin' })
  // What a client adds to its own request changes nothing: only the token counts.
  refused(t, await verify({ ...bearer(user.access), 'x-auth-role': 'admin', 'x-auth-user-id': user.id }, '?role=admin'), 403)
})

t.test('400 for a role that does not exist; authentication comes first', async (t) => {
  const user = await signUp(app, ctx)
  const admin = await signUp(app, ctx, { role: 'admin' })
  for (const query of ['?role=root', '?role=ADMIN', '?role=', '?role=user&role=admin']) {
    refused(t, await verify(bearer(user.access), query), 400)
    refused(t, await verify(bearer(admin.access), query), 400)
  }
  refused(t, await verify({}, '?role=root'), 401)
})

t.test('a warm check costs what GET /auth/me costs: one Redis command, no PostgreSQL', async (t) => {
  const user = await signUp(app, ctx)
  t.equal((await verify(bearer(user.access))).statusCode, 200, 'first use fills the cache')
  const { result: res, pgQueries, redisCommands } = await costs(app, async () => await verify(bearer(user.access)))
  t.equal(res.statusCode, 200)
  t.strictSame({ pgQueries, redisCommands }, { pgQueries: 0, redisCommands: 1 })
})

t.test('Envoy ext_authz form: any method, the original path appended, its query ignored', async (t) => {
  const user = await signUp(app, ctx)
  for (const method of ['GET', 'POST', 'DELETE', 'HEAD'] as const) {
    const res = await app.inject({ method, url: '/auth/verify/api/orders/7?role=admin', headers: bearer(user.access) })
    t.equal(res.statusCode, 200, `${method}: the client's ?role is not the gateway's`)
    t.equal(res.headers['x-auth-user-id'], user.id)
    t.equal(res.headers['x-auth-session-id'], sidOf(user.access))
    t.equal(res.headers['cache-control'], 'no-store')
  }
  const missing = await app.inject({ method: 'POST', url: '/auth/verify/api/orders' })
  refused(t, missing, 401)
  t.match(missing.headers['www-authenticate'], /^Bearer /)
  t.equal((await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(user.access) })).statusCode, 204)
  refused(t, await app.inject({ method: 'GET', url: '/auth/verify/', headers: bearer(user.access) }), 401)
})
