// A single instance without Redis (what server.ts runs when REDIS_URL is unset and nothing
// answers at the default address): every token check reads PostgreSQL, once; every
// revocation holds at the next request, also under concurrency; rate limits, lockouts and
// client credentials work from the process's own memory and PostgreSQL, within caps.
// test/integration/without-redis.test.ts runs the real entry point in this mode.
import t from 'tap'
import { bearer, build, context, costs, login, me, PASSWORD, signUp } from '../../helper.js'

const ctx = await context(t)
const app = await build(t, ctx, { LOCKOUT_THRESHOLD: 3 }, { withoutRedis: true })

const post = (url: string, access: string, payload?: object) =>
  app.inject({ method: 'POST', url, headers: bearer(access), ...(payload === undefined ? {} : { payload }) })

t.test('no Redis client at all, and /ready says so without calling it an outage', async (t) => {
  t.equal(app.redis, null)
  const ready = await app.inject('/ready')
  t.equal(ready.statusCode, 200)
  t.strictSame(ready.json(), { status: 'ok', checks: { postgres: 'ok', redis: 'disabled' } })
})

t.test('a token check costs one PostgreSQL query and no Redis command', async (t) => {
  const user = await signUp(app, ctx)
  for (let i = 0; i < 3; i++) {
    const { result, pgQueries, redisCommands } = await costs(app, () => me(app, user.access))
    t.equal(result.statusCode, 200)
    t.equal(pgQueries, 1, 'one read of the truth, every time: there is no cache to warm')
    t.equal(redisCommands, 0)
  }
  const metrics = await app.inject('/metrics')
  t.match(metrics.body, /auth_pg_read_throughs_total\{reason="no_redis"\} [1-9]/, 'counted as checks without Redis')
})

t.test('every kind of revocation holds at the next request, and spares what it did not revoke', async (t) => {
  const admin = await signUp(app, ctx, { role: 'admin' })

  const a = await signUp(app, ctx)
  const other = await login(app, a.username)
  t.equal((await post('/auth/logout', a.access)).statusCode, 204)
  t.equal((await me(app, a.access)).statusCode, 401, 'logout')
  t.equal((await me(app, other.access)).statusCode, 200, 'the other device stays signed in')

  const third = await login(app, a.username)
  const listed = (await app.inject({ url: '/auth/sessions', headers: bearer(third.access) })).json() as Array<{ id: string, current: boolean }>
  const thirdId = listed.find((s) => s.current)?.id
  t.equal((await app.inject({ method: 'DELETE', url: `/auth/sessions/${thirdId}`, headers: bearer(other.access) })).statusCode, 204)
  t.equal((await me(app, third.access)).statusCode, 401, 'a session deleted from another device')
  t.equal((await me(app, other.access)).statusCode, 200, 'the device that deleted it stays signed in')

  t.equal((await post('/auth/logout-all', other.access)).statusCode, 204)
  t.equal((await me(app, other.access)).statusCode, 401, 'logout-all')

  const b = await signUp(app, ctx)
  const bystander = await signUp(app, ctx)
  t.equal((await post('/auth/change-role', admin.access, { username: b.username, role: 'admin' })).statusCode, 200)
  t.equal((await me(app, b.access)).statusCode, 401, 'a role change')
  t.equal((await me(app, bystander.access)).statusCode, 200, 'another user is not signed out')
  t.match((await me(app, (await login(app, b.username)).access)).json(), { role: 'admin' }, 'a new login carries the new role')

  const c = await signUp(app, ctx)
  const refreshed = await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: c.refresh } })
  t.equal(refreshed.statusCode, 200)
  const reuse = await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: c.refresh } })
  t.equal(reuse.statusCode, 401, 'a used refresh token presented again')
  t.equal((await me(app, refreshed.json().access_token)).statusCode, 401, 'ends the session it belongs to')

  const d = await signUp(app, ctx)
  t.equal((await post('/auth/change-password', d.access, { currentPassword: PASSWORD, newPassword: 'another long passphrase' })).statusCode, 204)
  t.equal((await me(app, d.access)).statusCode, 401, 'a password change')
})

t.test('checks running while a logout commits: none that starts after it returned is served', async (t) => {
  const user = await signUp(app, ctx)
  const state = { returned: false, done: false }
  const seen: Array<{ after: boolean, status: number }> = []
  const hammer = async () => {
    while (!state.done) {
      const after = state.returned
      const res = await me(app, user.access)
      seen.push({ after, status: res.statusCode })
    }
  }
  const workers = Array.from({ length: 8 }, hammer)
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.equal((await post('/auth/logout', user.access)).statusCode, 204)
  state.returned = true
  await new Promise((resolve) => setTimeout(resolve, 100))
  state.done = true
  await Promise.all(workers)
  const before = seen.filter((s) => !s.after)
  const after = seen.filter((s) => s.after)
  t.ok(before.some((s) => s.status === 200), `served before the logout (${before.length} checks)`)
  t.ok(after.length > 0, `${after.length} checks started after it returned`)
  t.ok(after.every((s) => s.status === 401), 'every one of them refused')
})

t.test('lockout in the process: parallel wrong passwords, at most LOCKOUT_THRESHOLD reach argon2', async (t) => {
  const victim = await signUp(app, ctx)
  const admin = await signUp(app, ctx, { role: 'admin' })
  const attempt = (password: string) => app.inject({ method: 'POST', url: '/auth/login', payload: { username: victim.username, password }, remoteAddress: '10.20.0.1' })
  const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => attempt(`wrong password ${i}`)))
  t.equal(answers.filter((r) => r.statusCode === 401).length, 3)
  t.equal(answers.filter((r) => r.statusCode === 429).length, 17)
  t.equal((await attempt(PASSWORD)).statusCode, 429, 'the right password too, while locked')
  const cleared = await app.inject({ method: 'DELETE', url: `/users/${victim.id}/lockout`, headers: bearer(admin.access) })
  t.equal(cleared.statusCode, 204, 'an admin clears it')
  t.equal((await attempt(PASSWORD)).statusCode, 200)
})

t.test('rate limits in the process: the limit, one audit row per window, and a cap on the clients kept', async (t) => {
  const cap = 50
  const limited = await build(t, ctx, { LOGIN_RATE_LIMIT: 2, TRUST_PROXY: 1 }, { withoutRedis: true, rateLimitClients: cap })
  const user = await signUp(limited, ctx)
  const from = (ip: string) => limited.inject({
    method: 'POST', url: '/auth/login', payload: { username: user.username, password: PASSWORD }, headers: { 'x-forwarded-for': ip }
  })
  const ip = `10.30.${Math.floor(Math.random() * 250)}.1`
  t.equal((await from(ip)).statusCode, 200)
  t.equal((await from(ip)).statusCode, 200)
  const refused = await Promise.all(Array.from({ length: 20 }, () => from(ip)))
  t.ok(refused.every((r) => r.statusCode === 429 && Number(r.headers['retry-after']) > 0), '429 with Retry-After')
  await new Promise((resolve) => setTimeout(resolve, 100))
  const { rows } = await limited.db.query("SELECT count(*)::int AS n FROM audit_events WHERE type = 'rate_limited' AND ip = $1", [ip])
  t.equal(rows[0].n, 1, 'audited once per window')
  await limited.db.query("DELETE FROM audit_events WHERE type = 'rate_limited' AND ip = $1", [ip])

  // Other clients (an empty body: counted, then refused before any work). With them the
  // store holds `cap` clients: the limited one is still counted; `cap` more push it out.
  let n = 0
  const others = async (count: number) => {
    for (let i = 0; i < count; i++, n++) {
      await limited.inject({ method: 'POST', url: '/auth/login', headers: { 'x-forwarded-for': `10.40.${n >> 8}.${n & 255}` } })
    }
  }
  await others(cap - 2) // besides `ip` and 127.0.0.1 (signUp's login)
  t.equal((await from(ip)).statusCode, 429, 'still limited with the store full')
  await others(cap)
  t.equal((await from(ip)).statusCode, 200, 'forgotten once the store had to make room for it: the cap holds')
})

t.test('client credentials and introspection read PostgreSQL; a rotated secret is refused at once', async (t) => {
  const client = await app.clients.create(`noredis-${ctx.tag}`)
  t.teardown(() => app.clients.delete(client.id).catch(() => {}))
  const user = await signUp(app, ctx)
  const introspect = (secret: string) => app.inject({
    method: 'POST',
    url: '/oauth/introspect',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${client.clientId}:${secret}`).toString('base64')}` },
    payload: new URLSearchParams({ token: user.access }).toString()
  })
  const { result, redisCommands } = await costs(app, () => introspect(client.clientSecret))
  t.match(result.json(), { active: true, sub: user.id })
  t.equal(redisCommands, 0)
  const rotated = await app.clients.rotateSecret(client.id)
  t.equal((await introspect(client.clientSecret)).statusCode, 401, 'the old secret')
  t.equal((await introspect(rotated.clientSecret)).statusCode, 200, 'the new one')
})
