// The promise at a gateway: real nginx (auth_request) and Caddy (forward_auth), running
// the configurations of examples/, in front of an upstream, with the service listening on
// a real socket. A live token reaches the upstream with X-Auth-* identity headers; no
// token or a bad one is a 401 at the gateway; a token revoked at the service is refused
// on the very next request through the gateway; a client cannot forge the identity
// headers; an admin-only location refuses a user's token with 403.
// nginx and Caddy must be installed (`apt-get install nginx-light caddy`, as .ci/run does):
// without them this file fails, it does not skip.
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { build, context, PASSWORD, signUp, type Account } from '../helper.js'
import { startGateway, startUpstream, type Gateway, type Upstream, type UpstreamRequest } from '../support/gateway.js'

const ctx = await context(t)
const app = await build(t, ctx)
await app.listen({ port: 0, host: '127.0.0.1' })
const service = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
const upstream = await startUpstream(t)

const IDENTITY = ['x-auth-user-id', 'x-auth-username', 'x-auth-role', 'x-auth-session-id']

interface Answer { status: number, headers: Headers, body: string }

async function call (base: string, path: string, opts: { token?: string, method?: string, headers?: Record<string, string>, body?: string } = {}): Promise<Answer> {
  const headers: Record<string, string> = { ...opts.headers }
  if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`
  const res = await fetch(base + path, { method: opts.method ?? 'GET', headers, body: opts.body })
  return { status: res.status, headers: res.headers, body: await res.text() }
}

/** A request through the gateway, and what of it reached the upstream (null: nothing did). */
async function through (gateway: Gateway, up: Upstream, path: string, opts: Parameters<typeof call>[2] = {}): Promise<{ res: Answer, reached: UpstreamRequest | null }> {
  const before = up.requests.length
  const res = await call(gateway.url, path, opts)
  const after = up.requests.slice(before)
  if (after.length > 1) throw new Error(`one request reached the upstream ${after.length} times`)
  return { res, reached: after[0] ?? null }
}

function sidOf (access: string): string {
  return JSON.parse(Buffer.from(access.split('.')[1], 'base64url').toString()).sid
}

async function freshLogin (account: Account): Promise<string> {
  const res = await call(service, '/auth/login', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: account.username, password: PASSWORD })
  })
  if (res.status !== 200) throw new Error(`login: ${res.status} ${res.body}`)
  return JSON.parse(res.body).access_token
}

/** Every header that reached the upstream under an identity name, however spelled. */
function identitySpellings (reached: UpstreamRequest): string[] {
  return reached.rawHeaderNames.filter((name) => IDENTITY.includes(name.toLowerCase().replaceAll('_', '-')))
}

for (const kind of ['nginx', 'caddy'] as const) {
  t.test(kind, async (t) => {
    const gateway = await startGateway(t, kind, { auth: Number(new URL(service).port), upstream: upstream.port })
    t.teardown(async () => {
      if (t.passing()) return
      t.comment(`${kind} log:\n${await gateway.log()}`)
    })

    t.test('a live token reaches the upstream, with the identity in X-Auth-* headers', async (t) => {
      const user = await signUp(app, ctx, { label: kind })
      const { res, reached } = await through(gateway, upstream, '/api/orders?page=2', { token: user.access })
      t.equal(res.status, 200)
      t.ok(reached, 'the upstream was reached')
      t.match(reached, { method: 'GET', url: '/api/orders?page=2' }, 'path and query unchanged')
      t.equal(reached?.headers['x-auth-user-id'], user.id)
      t.equal(reached?.headers['x-auth-username'], user.username)
      t.equal(reached?.headers['x-auth-role'], 'user')
      t.equal(reached?.headers['x-auth-session-id'], sidOf(user.access))

      // The check is a GET whatever the client's method, and the body still reaches the API.
      const post = await through(gateway, upstream, '/api/orders', {
        token: user.access, method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"item":7}'
      })
      t.equal(post.res.status, 200, 'a POST passes the check')
      t.match(post.reached, { method: 'POST', url: '/api/orders', headers: { 'x-auth-user-id': user.id, 'content-length': '10' } })
    })

    t.test('no token or a bad one: 401 at the gateway, with a Bearer challenge', async (t) => {
      const cases: Array<[string, Record<string, string>]> = [
        ['missing', {}],
        ['garbage', { authorization: 'Bearer garbage' }],
        ['Basic', { authorization: 'Basic dXNlcjpwYXNz' }],
        ['badly signed', { authorization: 'Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl' }]
      ]
      for (const [what, headers] of cases) {
        const { res, reached } = await through(gateway, upstream, '/api/orders', { headers })
        t.equal(res.status, 401, what)
        t.match(res.headers.get('www-authenticate'), /^Bearer realm="auth"/, `${what}: the service's challenge`)
        t.equal(reached, null, `${what}: the upstream was not reached`)
      }
    })

    t.test('a token revoked at the service is refused on the very next request', async (t) => {
      const user = await signUp(app, ctx, { label: kind })
      const other = await freshLogin(user)
      t.equal((await through(gateway, upstream, '/api/a', { token: user.access })).res.status, 200)
      t.equal((await call(service, '/auth/logout', { method: 'POST', token: user.access })).status, 204)
      const after = await through(gateway, upstream, '/api/a', { token: user.access })
      t.equal(after.res.status, 401, 'logout: refused at once')
      t.equal(after.reached, null)
      t.equal((await through(gateway, upstream, '/api/a', { token: other })).res.status, 200, 'the user\'s other session still passes')

      t.equal((await call(service, '/auth/logout-all', { method: 'POST', token: other })).status, 204)
      t.equal((await through(gateway, upstream, '/api/a', { token: other })).res.status, 401, 'logout-all: refused at once')

      // Demoted at the service: the admin token stops working at the admin location.
      const root = await signUp(app, ctx, { role: 'admin', label: 'root' })
      const admin = await signUp(app, ctx, { role: 'admin', label: kind })
      t.equal((await through(gateway, upstream, '/admin/report', { token: admin.access })).res.status, 200)
      const demoted = await call(service, '/auth/change-role', {
        method: 'POST',
        token: root.access,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: admin.username, role: 'user' })
      })
      t.equal(demoted.status, 200)
      t.equal((await through(gateway, upstream, '/admin/report', { token: admin.access })).res.status, 401, 'role change: refused at once')
    })

    t.test('identity headers a client sends never reach the upstream', async (t) => {
      const user = await signUp(app, ctx, { label: kind })
      const forged = {
        'X-Auth-User-Id': '00000000-0000-4000-8000-000000000000',
        'x-auth-username': 'root',
        'X-AUTH-ROLE': 'admin',
        'X-Auth-Session-Id': '00000000-0000-4000-8000-000000000001',
        X_Auth_Role: 'admin',
        x_auth_user_id: '00000000-0000-4000-8000-000000000000'
      }
      const { res, reached } = await through(gateway, upstream, '/api/me', { token: user.access, headers: forged })
      t.equal(res.status, 200)
      t.ok(reached)
      if (reached === null) return
      t.equal(reached.headers['x-auth-user-id'], user.id, 'the real user id, alone')
      t.equal(reached.headers['x-auth-username'], user.username)
      t.equal(reached.headers['x-auth-role'], 'user')
      t.equal(reached.headers['x-auth-session-id'], sidOf(user.access))
      t.strictSame(identitySpellings(reached).map((n) => n.toLowerCase()).sort(), [...IDENTITY].sort(),
        'each identity header once, and no underscore spelling of one')

      // Without a token, forged headers get nowhere.
      const anonymous = await through(gateway, upstream, '/api/me', { headers: forged })
      t.equal(anonymous.res.status, 401)
      t.equal(anonymous.reached, null)
      // And they do not open the admin location.
      const admin = await through(gateway, upstream, '/admin/report', { token: user.access, headers: forged })
      t.equal(admin.res.status, 403)
      t.equal(admin.reached, null)
    })

    t.test('the admin location: 403 for a user\'s token, an admin passes', async (t) => {
      const user = await signUp(app, ctx, { label: kind })
      for (const path of ['/admin/report', '/admin/report?role=user']) {
        const { res, reached } = await through(gateway, upstream, path, { token: user.access })
        t.equal(res.status, 403, `${path}: the client's query does not lower what the gateway asks`)
        t.equal(reached, null)
      }
      const admin = await signUp(app, ctx, { role: 'admin', label: kind })
      const { res, reached } = await through(gateway, upstream, '/admin/report', { token: admin.access })
      t.equal(res.status, 200)
      t.match(reached, { url: '/admin/report', headers: { 'x-auth-user-id': admin.id, 'x-auth-role': 'admin' } })
      t.equal((await through(gateway, upstream, '/api/orders', { token: admin.access })).res.status, 200, 'and everywhere else')
    })
  })
}
