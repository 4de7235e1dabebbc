// Rate limits per client IP (shared through Redis) and lockout per username.
import { isIP } from 'node:net'
import t from 'tap'
import argon2 from 'argon2'
import { bearer, build, context, login, me, PASSWORD, redisOf, signUp } from '../helper.js'

const ctx = await context(t)
// Sign-ups log in from 127.0.0.1: through an instance without tight limits.
const base = await build(t, ctx)

function loginFrom (app: Awaited<ReturnType<typeof build>>, username: string, password: string, ip?: string) {
  return app.inject({
    method: 'POST',
    url: '/auth/login',
    payload: { username, password },
    headers: ip === undefined ? {} : { 'x-forwarded-for': ip },
    remoteAddress: '10.9.9.9'
  })
}

t.test('LOGIN_RATE_LIMIT per client IP, shared by every instance', async (t) => {
  const a = await build(t, ctx, { LOGIN_RATE_LIMIT: 3, TRUST_PROXY: 1 })
  const b = await build(t, ctx, { LOGIN_RATE_LIMIT: 3, TRUST_PROXY: 1 })
  const user = await signUp(a, ctx)
  const ip = `203.0.113.${Math.floor(Math.random() * 200) + 1}`
  t.equal((await loginFrom(a, user.username, PASSWORD, ip)).statusCode, 200)
  t.equal((await loginFrom(b, user.username, PASSWORD, ip)).statusCode, 200)
  t.equal((await loginFrom(a, user.username, PASSWORD, ip)).statusCode, 200)
  const limited = await loginFrom(b, user.username, PASSWORD, ip)
  t.equal(limited.statusCode, 429, 'the fourth attempt in a minute, at another instance')
  t.ok(Number(limited.headers['retry-after']) > 0, 'with Retry-After')
  t.match(limited.json(), { statusCode: 429, error: 'Too Many Requests' })
  t.equal((await loginFrom(a, user.username, PASSWORD, '198.51.100.7')).statusCode, 200, 'another client IP is not limited')
  await new Promise((resolve) => setTimeout(resolve, 50))
  const { rows } = await a.db.query("SELECT count(*)::int AS n FROM audit_events WHERE type = 'rate_limited' AND ip = $1", [ip])
  t.ok(rows[0].n >= 1, 'audited')
  // Clean up this file's audit rows that carry no user id.
  await a.db.query("DELETE FROM audit_events WHERE type = 'rate_limited' AND ip = $1", [ip])
})

t.test('X-Forwarded-For is ignored unless TRUST_PROXY says so', async (t) => {
  const app = await build(t, ctx, { LOGIN_RATE_LIMIT: 2, TRUST_PROXY: false })
  const user = await signUp(app, ctx)
  const remote = `10.1.${Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250)}`
  const send = (xff: string) => app.inject({
    method: 'POST', url: '/auth/login', payload: { username: user.username, password: PASSWORD }, headers: { 'x-forwarded-for': xff }, remoteAddress: remote
  })
  t.equal((await send('1.1.1.1')).statusCode, 200)
  t.equal((await send('2.2.2.2')).statusCode, 200)
  t.equal((await send('3.3.3.3')).statusCode, 429, 'a spoofed X-Forwarded-For does not reset the limit')
  await app.db.query("DELETE FROM audit_events WHERE type = 'rate_limited' AND ip = $1", [remote])
})

const randomIp = () => `198.18.${Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250) + 1}`

t.test('behind a trusted proxy, rotating X-Forwarded-For does not reset the limit', async (t) => {
  // The proxy (10.9.9.9) appends the address it saw; whatever the client wrote before it
  // is not believed, by hop count or by the proxy's address.
  for (const trust of ['1', '10.9.9.9', '10.9.0.0/16']) {
    const app = await build(t, ctx, { LOGIN_RATE_LIMIT: 2, TRUST_PROXY: trust })
    const user = await signUp(base, ctx)
    const real = randomIp()
    const send = () => app.inject({
      method: 'POST',
      url: '/auth/login',
      payload: { username: user.username, password: PASSWORD },
      headers: { 'x-forwarded-for': `${randomIp()}, ${real}` },
      remoteAddress: '10.9.9.9'
    })
    t.equal((await send()).statusCode, 200, trust)
    t.equal((await send()).statusCode, 200, trust)
    t.equal((await send()).statusCode, 429, `${trust}: the third from the same client, whatever it claims`)
    const { rows } = await app.db.query("SELECT ip FROM audit_events WHERE type = 'login' AND subject_id = $1", [user.id])
    t.ok(rows.length >= 2 && rows.every((r) => r.ip === real || r.ip === '127.0.0.1'), `${trust}: the client recorded is the one the proxy saw`)
    await app.db.query("DELETE FROM audit_events WHERE type = 'rate_limited' AND ip = $1", [real])
  }
})

t.test('an X-Forwarded-For entry that is not an IP address is never stored or keyed on', async (t) => {
  const app = await build(t, ctx, { LOGIN_RATE_LIMIT: 2, TRUST_PROXY: 1 })
  const user = await signUp(base, ctx)
  const proxy = `10.7.${Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250) + 1}`
  const garbage = (i: number) => `<img src=x onerror=alert(${i})>${'x'.repeat(300)}`
  const send = (i: number, password = PASSWORD) => app.inject({
    method: 'POST',
    url: '/auth/login',
    payload: { username: user.username, password },
    headers: { 'x-forwarded-for': garbage(i), 'user-agent': 'garbage-test' },
    remoteAddress: proxy
  })
  t.equal((await send(1)).statusCode, 200)
  t.equal((await send(2, 'wrong password')).statusCode, 401)
  t.equal((await send(3)).statusCode, 429, 'rotating garbage does not reset the limit either')
  const sessions = await app.db.query('SELECT ip FROM sessions WHERE user_id = $1', [user.id])
  const audit = await app.db.query('SELECT ip FROM audit_events WHERE subject_id = $1 OR ip = $2', [user.id, proxy])
  const stored = [...sessions.rows, ...audit.rows].map((r) => r.ip as string)
  t.ok(stored.length >= 4)
  t.ok(stored.every((ip) => isIP(ip) !== 0), `only IP addresses stored: ${[...new Set(stored)].join(' ')}`)
  t.ok(stored.includes(proxy), 'the nearest hop that is an address stands in for the client')
  await app.db.query("DELETE FROM audit_events WHERE type = 'rate_limited' AND ip = $1", [proxy])
})

t.test('IPv6 clients are limited by their /64', async (t) => {
  const app = await build(t, ctx, { LOGIN_RATE_LIMIT: 2 })
  const user = await signUp(base, ctx)
  const net = `2001:db8:${Math.floor(Math.random() * 0xffff).toString(16)}:${Math.floor(Math.random() * 0xffff).toString(16)}`
  const send = (host: string) => app.inject({
    method: 'POST', url: '/auth/login', payload: { username: user.username, password: PASSWORD }, remoteAddress: `${net}:${host}`
  })
  t.equal((await send('0:0:0:1')).statusCode, 200)
  t.equal((await send('dead:beef:0:2')).statusCode, 200, 'another address of the same /64')
  t.equal((await send('1234:5678:9abc:def0')).statusCode, 429, 'a third address of that /64 is limited')
  const other = await app.inject({
    method: 'POST', url: '/auth/login', payload: { username: user.username, password: PASSWORD }, remoteAddress: `${net.slice(0, -1)}${(parseInt(net.slice(-1), 16) ^ 1).toString(16)}::1`
  })
  t.equal(other.statusCode, 200, 'the next /64 is another client')
  await app.db.query("DELETE FROM audit_events WHERE type = 'rate_limited' AND ip LIKE $1", [`${net}:%`])
})

t.test('a client that keeps hitting a limit is audited once per window, not once per request', async (t) => {
  const app = await build(t, ctx, { LOGIN_RATE_LIMIT: 2 })
  const user = await signUp(base, ctx)
  const remote = `10.4.${Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250) + 1}`
  const send = () => app.inject({ method: 'POST', url: '/auth/login', payload: { username: user.username, password: PASSWORD }, remoteAddress: remote })
  t.equal((await send()).statusCode, 200)
  t.equal((await send()).statusCode, 200)
  let limited = 0
  for (let batch = 0; batch < 10; batch++) {
    const answers = await Promise.all(Array.from({ length: 20 }, send))
    limited += answers.filter((r) => r.statusCode === 429).length
  }
  t.equal(limited, 200, '200 requests refused')
  await new Promise((resolve) => setTimeout(resolve, 100))
  const { rows } = await app.db.query("SELECT detail FROM audit_events WHERE type = 'rate_limited' AND ip = $1", [remote])
  t.strictSame(rows, [{ detail: { route: '/auth/login' } }], 'one audit row')
  await app.db.query("DELETE FROM audit_events WHERE type = 'rate_limited' AND ip = $1", [remote])
})

t.test('REGISTER_RATE_LIMIT per client IP', async (t) => {
  const app = await build(t, ctx, { REGISTER_RATE_LIMIT: 2 })
  const remote = `10.2.${Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250)}`
  const register = () => app.inject({ method: 'POST', url: '/auth/register', payload: { username: ctx.username('rl'), password: PASSWORD }, remoteAddress: remote })
  t.equal((await register()).statusCode, 201)
  t.equal((await register()).statusCode, 201)
  const limited = await register()
  t.equal(limited.statusCode, 429)
  t.ok(Number(limited.headers['retry-after']) > 0)
  await app.db.query("DELETE FROM audit_events WHERE type = 'rate_limited' AND ip = $1", [remote])
})

/** A login from the client at `remote` (no proxy in between). */
function loginAt (app: Awaited<ReturnType<typeof build>>, username: string, password: string, remote: string) {
  return app.inject({ method: 'POST', url: '/auth/login', payload: { username, password }, remoteAddress: remote })
}

/** Events about a username (failed and refused logins carry it). */
async function eventsOf (app: Awaited<ReturnType<typeof build>>, username: string) {
  const { rows } = await app.db.query("SELECT type, detail FROM audit_events WHERE detail->>'username' ILIKE $1 ORDER BY id", [username])
  return rows as Array<{ type: string, detail: Record<string, unknown> }>
}

t.test('LOCKOUT_THRESHOLD failed logins in a row lock the username for that client', async (t) => {
  const app = await build(t, ctx, { LOCKOUT_THRESHOLD: 3 })
  const victim = await signUp(base, ctx)
  const bystander = await signUp(base, ctx)
  for (let i = 0; i < 3; i++) {
    t.equal((await loginFrom(app, victim.username, 'wrong password')).statusCode, 401, `failure ${i + 1}`)
  }
  const locked = await loginFrom(app, victim.username.toUpperCase(), PASSWORD)
  t.equal(locked.statusCode, 429, 'even the right password is refused while locked, in any case of the username')
  t.ok(Number(locked.headers['retry-after']) >= 1, 'with Retry-After')
  t.equal((await loginFrom(app, bystander.username, PASSWORD)).statusCode, 200, 'other users are not affected')
  t.equal((await loginAt(app, victim.username, PASSWORD, '10.8.8.8')).statusCode, 200, 'nor is the user from another client')
  const events = await eventsOf(app, victim.username)
  t.equal(events.filter((r) => r.type === 'login_failed').length, 3)
  t.match(events.filter((r) => r.type === 'login_locked'), [{ detail: { lock: 'client' } }])
  await app.db.query("DELETE FROM audit_events WHERE detail->>'username' ILIKE $1", [victim.username])

  // The lock grows: one more failure after it lapses locks for longer.
  const key = `{lock:${victim.username.toLowerCase()}}`
  const lockedFor = async () => Number(await redisOf(app).hget(key, 'l:10.9.9.9')) - Date.now()
  const first = await lockedFor()
  t.ok(first > 25_000 && first <= 30_000, `first lock ${first} ms`)
  await redisOf(app).hset(key, 'l:10.9.9.9', '0')
  t.equal((await loginFrom(app, victim.username, 'wrong again')).statusCode, 401)
  const second = await lockedFor()
  t.ok(second > 30_000, `second lock ${second} ms is longer`)
  await app.db.query("DELETE FROM audit_events WHERE detail->>'username' ILIKE $1", [victim.username])
})

t.test('parallel wrong passwords: at most LOCKOUT_THRESHOLD reach argon2, the rest are 429', async (t) => {
  const app = await build(t, ctx, { LOCKOUT_THRESHOLD: 5 })
  const victim = await signUp(base, ctx)
  const answers = await Promise.all(Array.from({ length: 30 }, (_, i) => loginFrom(app, victim.username, `wrong password ${i}`)))
  const statuses = answers.map((r) => r.statusCode)
  // Every attempt that reached argon2 is audited as a failed login with its reason.
  const events = await eventsOf(app, victim.username)
  const verified = events.filter((e) => e.type === 'login_failed' && e.detail.reason === 'bad_password').length
  t.equal(verified, 5, 'exactly the threshold were checked')
  t.equal(statuses.filter((s) => s === 401).length, 5)
  t.equal(statuses.filter((s) => s === 429).length, 25, 'the others were refused before argon2')
  t.equal(events.filter((e) => e.type === 'login_locked').length, 25)
  t.ok(answers.filter((r) => r.statusCode === 429).every((r) => Number(r.headers['retry-after']) > 0), 'with Retry-After')
  await app.db.query("DELETE FROM audit_events WHERE detail->>'username' ILIKE $1", [victim.username])
})

t.test('nobody can lock a user out: across clients a throttle, known clients and live sessions unaffected, an admin clears it', async (t) => {
  const app = await build(t, ctx, { LOCKOUT_THRESHOLD: 2, LOCKOUT_GLOBAL_THRESHOLD: 4 })
  // Signed in before from 127.0.0.1 (signUp): a client the user is known from.
  const victim = await signUp(base, ctx, { role: 'admin' })
  const admin = await signUp(base, ctx, { role: 'admin' })
  // Ten addresses, a guess each: enough across clients to throttle the username (60 s).
  for (let i = 1; i <= 10; i++) {
    const res = await loginAt(app, victim.username, `guess ${i}`, `203.0.113.${i}`)
    t.ok([401, 429].includes(res.statusCode), `guess ${i}: ${res.statusCode}`)
  }
  const stranger = await loginAt(app, victim.username, PASSWORD, '198.51.100.77')
  t.equal(stranger.statusCode, 429, 'a new client waits, even with the right password')
  const wait = Number(stranger.headers['retry-after'])
  t.ok(wait > 0 && wait <= 60, `for at most a minute (${wait} s)`)
  t.match((await eventsOf(app, victim.username)).filter((e) => e.type === 'login_locked').at(-1), { detail: { lock: 'username' } })
  t.equal((await loginAt(app, victim.username, PASSWORD, '127.0.0.1')).statusCode, 200, 'a client the user signed in from is not held back')
  const refreshed = await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: victim.refresh } })
  t.equal(refreshed.statusCode, 200, 'a live session keeps refreshing')

  // An admin clears it.
  const clear = (by: string, id: string) => app.inject({ method: 'DELETE', url: `/users/${id}/lockout`, headers: bearer(by) })
  const user = await signUp(base, ctx)
  t.equal((await clear(user.access, victim.id)).statusCode, 403, 'admins only')
  t.equal((await clear(admin.access, '00000000-0000-4000-8000-000000000000')).statusCode, 404, 'unknown user')
  const cleared = await clear(admin.access, victim.id)
  t.equal(cleared.statusCode, 204)
  t.equal(cleared.body, '')
  t.equal((await loginAt(app, victim.username, PASSWORD, '198.51.100.77')).statusCode, 200, 'signs in from anywhere at once')
  const { rows } = await app.db.query("SELECT actor_id FROM audit_events WHERE type = 'lockout_cleared' AND subject_id = $1", [victim.id])
  t.strictSame(rows, [{ actor_id: admin.id }], 'audited')
  await app.db.query("DELETE FROM audit_events WHERE detail->>'username' ILIKE $1", [victim.username])
})

t.test('change-password: wrong current passwords count toward the lockout, and the threshold ends the session', async (t) => {
  const app = await build(t, ctx, { LOCKOUT_THRESHOLD: 3 })
  const user = await signUp(base, ctx)
  const laptop = await login(base, user.username)
  const change = (currentPassword: string) => app.inject({
    method: 'POST', url: '/auth/change-password', headers: bearer(user.access), payload: { currentPassword, newPassword: 'a new password 42' }, remoteAddress: '10.6.6.6'
  })
  for (let i = 1; i <= 2; i++) {
    const res = await change(`wrong ${i}`)
    t.equal(res.statusCode, 403, `failure ${i}`)
    t.equal(res.json().code, 'AUTH_WRONG_PASSWORD', 'a code of its own, not the missing-role one')
  }
  const last = await change('wrong 3')
  t.equal(last.statusCode, 401, 'the third in a row ends the session')
  t.match(last.headers['www-authenticate'], /^Bearer/)
  t.equal((await me(app, user.access)).statusCode, 401, 'its access token is refused')
  t.equal((await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: user.refresh } })).statusCode, 401, 'and its refresh token')
  t.equal((await me(app, laptop.access)).statusCode, 200, 'the user\'s other sessions live on')
  t.equal((await loginAt(app, user.username, PASSWORD, '10.6.6.6')).statusCode, 429, 'and that client is locked out of logging in too')
  const { rows } = await app.db.query("SELECT detail FROM audit_events WHERE type = 'password_change_failed' AND subject_id = $1 ORDER BY id", [user.id])
  t.match(rows.map((r) => r.detail), [
    { reason: 'bad_password', failures: 1, sessionEnded: false },
    { reason: 'bad_password', failures: 2, sessionEnded: false },
    { reason: 'bad_password', failures: 3, sessionEnded: true }
  ], 'audited')
  t.equal(await passwordUnchanged(app, user.id), true, 'nothing changed')
})

t.test('change-password: parallel wrong current passwords reach argon2 at most LOCKOUT_THRESHOLD times', async (t) => {
  const app = await build(t, ctx, { LOCKOUT_THRESHOLD: 5 })
  const user = await signUp(base, ctx)
  const answers = await Promise.all(Array.from({ length: 30 }, (_, i) => app.inject({
    method: 'POST', url: '/auth/change-password', headers: bearer(user.access), payload: { currentPassword: `wrong ${i}`, newPassword: 'a new password 42' }, remoteAddress: '10.6.6.7'
  })))
  const statuses = answers.map((r) => r.statusCode)
  const { rows } = await app.db.query("SELECT count(*)::int AS n FROM audit_events WHERE type = 'password_change_failed' AND subject_id = $1 AND detail->>'reason' = 'bad_password'", [user.id])
  t.equal(rows[0].n, 5, 'exactly the threshold were checked')
  t.ok(statuses.every((s) => [401, 403, 429].includes(s)), `refused, never changed: ${statuses}`)
  t.equal((await me(app, user.access)).statusCode, 401, 'the session has ended')
  t.equal(await passwordUnchanged(app, user.id), true)
})

t.test('an unknown username locks the same way (no enumeration), and success resets the count', async (t) => {
  const app = await build(t, ctx, { LOCKOUT_THRESHOLD: 2 })
  const ghost = ctx.username('ghost')
  t.equal((await loginFrom(app, ghost, 'whatever1')).statusCode, 401)
  t.equal((await loginFrom(app, ghost, 'whatever2')).statusCode, 401)
  t.equal((await loginFrom(app, ghost, 'whatever3')).statusCode, 429)

  const user = await signUp(app, ctx)
  t.equal((await loginFrom(app, user.username, 'wrong password')).statusCode, 401)
  t.equal((await loginFrom(app, user.username, PASSWORD)).statusCode, 200)
  t.equal((await loginFrom(app, user.username, 'wrong password')).statusCode, 401, 'the count restarted after the success')
  t.equal((await loginFrom(app, user.username, PASSWORD)).statusCode, 200)
  await app.db.query("DELETE FROM audit_events WHERE detail->>'username' = $1", [ghost])
})

t.test('a look-alike username (U+0130) is a 400 and never reaches the account or its counter', async (t) => {
  const app = await build(t, ctx, { LOCKOUT_THRESHOLD: 2 })
  const user = await signUp(app, ctx, { label: 'vi' })
  t.ok(user.username.startsWith('vi'))
  const lookAlike = 'v\u0130' + user.username.slice(2)
  for (const password of [PASSWORD, 'wrong password', 'wrong again', 'still wrong']) {
    t.equal((await loginFrom(app, lookAlike, password)).statusCode, 400, 'JSON')
    const form = await app.inject({
      method: 'POST',
      url: '/auth/login',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: `grant_type=password&username=${encodeURIComponent(lookAlike)}&password=${encodeURIComponent(password)}`
    })
    t.equal(form.statusCode, 400, 'form')
  }
  const { rows } = await app.db.query("SELECT 1 FROM audit_events WHERE type = 'login' AND subject_id = $1", [user.id])
  t.equal(rows.length, 1, 'no login but the sign-up\'s')
  t.equal((await loginFrom(app, user.username.toUpperCase(), PASSWORD)).statusCode, 200, 'the account itself is not locked')
})

async function passwordUnchanged (app: Awaited<ReturnType<typeof build>>, userId: string): Promise<boolean> {
  const { rows } = await app.db.query('SELECT password_hash FROM users WHERE id = $1', [userId])
  return await argon2.verify(rows[0].password_hash, PASSWORD)
}
