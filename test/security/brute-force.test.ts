// Rate limits per client IP (shared through Redis) and lockout per username.
import { isIP } from 'node:net'
import t from 'tap'
import { build, context, PASSWORD, signUp } from '../helper.js'

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

t.test('LOCKOUT_THRESHOLD failed logins in a row lock the username', async (t) => {
  const app = await build(t, ctx, { LOCKOUT_THRESHOLD: 3 })
  const victim = await signUp(app, ctx)
  const bystander = await signUp(app, ctx)
  for (let i = 0; i < 3; i++) {
    t.equal((await loginFrom(app, victim.username, 'wrong password')).statusCode, 401, `failure ${i + 1}`)
  }
  const locked = await loginFrom(app, victim.username.toUpperCase(), PASSWORD)
  t.equal(locked.statusCode, 429, 'even the right password is refused while locked, in any case of the username')
  t.ok(Number(locked.headers['retry-after']) >= 1, 'with Retry-After')
  t.equal((await loginFrom(app, bystander.username, PASSWORD)).statusCode, 200, 'other users are not affected')
  const { rows } = await app.db.query("SELECT type FROM audit_events WHERE type IN ('login_failed', 'login_locked') AND detail->>'username' ILIKE $1", [victim.username])
  t.equal(rows.filter((r) => r.type === 'login_failed').length, 3)
  t.equal(rows.filter((r) => r.type === 'login_locked').length, 1)
  await app.db.query("DELETE FROM audit_events WHERE detail->>'username' ILIKE $1", [victim.username])

  // The lock grows: one more failure after it lapses locks for longer.
  const lockKey = `{lock:${victim.username.toLowerCase()}}:locked`
  const first = await app.redis.pttl(lockKey)
  t.ok(first > 0 && first <= 30_000, `first lock ${first} ms`)
  await app.redis.del(lockKey)
  t.equal((await loginFrom(app, victim.username, 'wrong again')).statusCode, 401)
  const second = await app.redis.pttl(lockKey)
  t.ok(second > 30_000, `second lock ${second} ms is longer`)
  await app.db.query("DELETE FROM audit_events WHERE detail->>'username' ILIKE $1", [victim.username])
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
