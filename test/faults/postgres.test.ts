// PostgreSQL faults, for real: the app reaches a database of this file's own through a
// TCP proxy that resets every connection (PostgreSQL down or refusing) or black-holes
// them (a partition). The promise (CONTRACT.md, revocation point 6): every call that
// must write answers 503 and changes nothing; GET /auth/me answers 200 where the token's
// state is cached in Redis, else 503; back to normal by itself within 5 s.
import t from 'tap'
import pg from 'pg'
import { BASE_DATABASE_URL, build, context, login, PASSWORD, signUp } from '../helper.js'
import { call as timedCall, sidOf, tcpProxy, waitFor, type Call, type CallOptions, type Method } from './support.js'

const ctx = await context(t, { ownDatabase: true })
const proxy = await tcpProxy(t, { port: Number(new URL(BASE_DATABASE_URL).port || 5432) })
// The app creates and migrates its database through the proxy at start-up, like any other.
const app = await build(t, ctx, { DATABASE_URL: proxy.via(ctx.databaseUrl), DATABASE_POOL_SIZE: 10 })

// The test's own view of the truth, never through the proxy.
const truth = new pg.Client({ connectionString: ctx.databaseUrl })
await truth.connect()
t.teardown(() => truth.end())

const ANSWER_MS = 1000
const RECOVER_MS = 5000

const call = (method: Method, url: string, opts: CallOptions = {}) => timedCall(app, method, url, opts)

const me = (token: string) => call('GET', '/auth/me', { token })

/** What the refused calls could have changed, read straight from PostgreSQL. */
async function snapshot (ids: string[]) {
  const users = await truth.query('SELECT id, username, role, disabled, password_hash, revoked_after FROM users WHERE id = ANY($1) ORDER BY id', [ids])
  const sessions = await truth.query('SELECT id, revoked_at, last_used_at FROM sessions WHERE user_id = ANY($1) ORDER BY id', [ids])
  return { users: users.rows, sessions: sessions.rows }
}

/** Back to normal: ready, and a write and a cache miss both work. */
async function backToNormal (cold: { access: string }): Promise<number> {
  return await waitFor(async () => {
    if ((await call('GET', '/ready')).body?.status !== 'ok') return false
    const reg = await call('POST', '/auth/register', { payload: { username: ctx.username('back'), password: PASSWORD } })
    return reg.status === 201 && (await me(cold.access)).status === 200
  }, RECOVER_MS + 3000)
}

async function accounts () {
  const admin = await signUp(app, ctx, { role: 'admin' })
  const user = await signUp(app, ctx)
  const target = await signUp(app, ctx)
  const spare = await login(app, user.username)
  // Warm: their state is in Redis. `cold` has logged in but never been checked.
  for (const a of [admin, user, target]) t.equal((await me(a.access)).status, 200)
  const cold = await signUp(app, ctx)
  return { admin, user, target, spare, cold }
}

t.test('PostgreSQL refusing connections: writes 503 and change nothing; /auth/me 200 where cached, else 503', async (t) => {
  const { admin, user, target, spare, cold } = await accounts()
  const before = await snapshot([admin.id, user.id, target.id, cold.id])

  proxy.drop()
  const calls: Array<[string, () => Promise<Call>, number]> = [
    ['GET /auth/me (cached)', () => me(user.access), 200],
    ['GET /auth/me (admin, cached)', () => me(admin.access), 200],
    ['GET /auth/me (not cached)', () => me(cold.access), 503],
    ['POST /auth/register', () => call('POST', '/auth/register', { payload: { username: ctx.username('nope'), password: PASSWORD } }), 503],
    ['POST /auth/login', () => call('POST', '/auth/login', { payload: { username: user.username, password: PASSWORD } }), 503],
    ['POST /auth/login (form)', () => app.inject({ method: 'POST', url: '/auth/login', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: `grant_type=password&username=${user.username}&password=${encodeURIComponent(PASSWORD)}` }).then((r) => ({ status: r.statusCode, ms: 0, body: r.json() })), 503],
    ['POST /auth/refresh', () => call('POST', '/auth/refresh', { payload: { refresh_token: spare.refresh } }), 503],
    ['POST /auth/logout', () => call('POST', '/auth/logout', { token: user.access }), 503],
    ['POST /auth/logout-all', () => call('POST', '/auth/logout-all', { token: user.access }), 503],
    ['DELETE /auth/sessions/:id', () => call('DELETE', `/auth/sessions/${sidOf(spare.access)}`, { token: user.access }), 503],
    ['POST /auth/change-password', () => call('POST', '/auth/change-password', { token: user.access, payload: { currentPassword: PASSWORD, newPassword: 'another long password' } }), 503],
    ['POST /auth/change-role', () => call('POST', '/auth/change-role', { token: admin.access, payload: { username: target.username, role: 'admin' } }), 503],
    ['PATCH /users/:id', () => call('PATCH', `/users/${target.id}`, { token: admin.access, payload: { disabled: true } }), 503],
    ['DELETE /users/:id', () => call('DELETE', `/users/${target.id}`, { token: admin.access }), 503],
    ['GET /users', () => call('GET', '/users', { token: admin.access }), 503],
    ['GET /auth/sessions', () => call('GET', '/auth/sessions', { token: user.access }), 503],
    ['GET /health', () => call('GET', '/health'), 200]
  ]
  for (const [label, fn, expected] of calls) {
    const res = await fn()
    t.equal(res.status, expected, label)
    t.ok(res.ms < ANSWER_MS, `${label}: answered in ${Math.round(res.ms)} ms`)
    if (expected === 503) {
      t.match(res.body, { statusCode: 503, error: 'Service Unavailable', message: 'Service temporarily unavailable, try again' }, `${label}: no driver text`)
    }
  }
  const ready = await call('GET', '/ready')
  t.equal(ready.status, 200, 'still ready: every instance shares PostgreSQL')
  t.strictSame(ready.body, { status: 'degraded', checks: { postgres: 'down', redis: 'ok' } })
  t.equal((await me(user.access)).status, 200, 'the cached token still works: none of the refused calls revoked it')
  t.equal((await me(target.access)).status, 200)

  proxy.restore()
  const ms = await backToNormal(cold)
  t.ok(ms < RECOVER_MS, `back to normal ${Math.round(ms)} ms after PostgreSQL returned`)

  const after = await snapshot([admin.id, user.id, target.id, cold.id])
  t.strictSame(after.users, before.users, 'no user row changed')
  t.strictSame(after.sessions, before.sessions, 'no session was created, used or revoked')
  const { rows } = await truth.query("SELECT count(*)::int AS n FROM users WHERE username LIKE 'nope%'")
  t.equal(rows[0].n, 0, 'the refused registration left nothing behind')
  for (const token of [user.access, admin.access, target.access, spare.access]) t.equal((await me(token)).status, 200)
})

t.test('PostgreSQL black-holed: the cached hot path is unaffected, a miss is 503 within 1 s, revoking calls change nothing', async (t) => {
  const { admin, user, target, cold } = await accounts()
  const before = await snapshot([admin.id, user.id, target.id, cold.id])

  proxy.blackhole()
  const cached = await me(user.access)
  t.equal(cached.status, 200, 'cached: 200 without PostgreSQL')
  t.ok(cached.ms < ANSWER_MS)
  const miss = await me(cold.access)
  t.equal(miss.status, 503, 'not cached: 503')
  // The contract bounds no wait here; the token check gives up after 800 ms (plugins/app/revocation/index.ts).
  t.ok(miss.ms < 10_000, `no hang: the miss answered in ${Math.round(miss.ms)} ms`)

  // Writes wait for the driver's query timeout, then 503; all at once, to wait only once.
  const writes = await Promise.all([
    call('POST', '/auth/logout', { token: user.access }),
    call('POST', '/auth/change-role', { token: admin.access, payload: { username: target.username, role: 'admin' } }),
    call('PATCH', `/users/${target.id}`, { token: admin.access, payload: { disabled: true } }),
    call('POST', '/auth/login', { payload: { username: user.username, password: PASSWORD } })
  ])
  t.strictSame(writes.map((w) => w.status), [503, 503, 503, 503], 'logout, change-role, disable and login: 503')
  const slowest = Math.max(...writes.map((w) => w.ms))
  t.ok(slowest < 10_000, `no hang: the slowest write answered in ${Math.round(slowest)} ms`)
  t.equal((await me(user.access)).status, 200, 'still served from Redis')

  proxy.restore()
  const ms = await backToNormal(cold)
  t.ok(ms < RECOVER_MS, `back to normal ${Math.round(ms)} ms after the path returned`)
  // Every revoking call runs in a transaction that sends COMMIT only after all its
  // statements answered: what was stuck in the partition is rolled back when it heals.
  const after = await snapshot([admin.id, user.id, target.id, cold.id])
  t.strictSame(after.users, before.users, 'no user row changed')
  t.strictSame(after.sessions.map((s: any) => s.revoked_at), before.sessions.map((s: any) => s.revoked_at), 'no session was revoked')
  t.equal((await me(user.access)).status, 200)
  t.equal((await me(target.access)).status, 200)
})
