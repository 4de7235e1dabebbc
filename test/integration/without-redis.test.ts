// The real entry point with REDIS_URL unset and nothing answering at the default Redis
// address: it runs as a single instance without Redis, says so in one start-up line, and
// keeps every promise a user sees: revocation at the next request, lockout, rate limits.
// (test/plugins/external/without-redis.test.ts covers the mode in depth, in-process.)
import t from 'tap'
import pg from 'pg'
import { BASE_DATABASE_URL, context, freePort, httpCall, JWT_SECRET, PASSWORD } from '../helper.js'
import { runService } from '../support/service.js'

const ctx = await context(t)
const started = new Date()
// The refusal of a rate-limited client is audited with its address only: this file's one.
t.teardown(async () => {
  const db = new pg.Client({ connectionString: BASE_DATABASE_URL })
  await db.connect()
  await db.query("DELETE FROM audit_events WHERE type = 'rate_limited' AND ip = '127.0.0.1' AND at >= $1", [started])
  await db.end()
})
const closed = await freePort()
const port = await freePort()
const base = `http://127.0.0.1:${port}`
const admin = ctx.username('admin')
const ADMIN_PASSWORD = 'an admin passphrase'

const service = runService(t, {
  PORT: String(port),
  HOST: '127.0.0.1',
  DATABASE_URL: BASE_DATABASE_URL,
  // No REDIS_URL, and the default address moved to a closed port: the machine's own Redis
  // must not answer there.
  AUTH_SERVICE_TEST_DEFAULT_REDIS_URL: `redis://127.0.0.1:${closed}`,
  JWT_SECRET,
  ADMIN_USERNAME: admin,
  ADMIN_PASSWORD,
  LOG_LEVEL: 'info',
  LOCKOUT_THRESHOLD: '2',
  REGISTER_RATE_LIMIT: '3',
  ARGON2_MEMORY_COST: '8192',
  ARGON2_TIME_COST: '1'
})
await service.listening(base)

const login = (username: string, password = PASSWORD) => httpCall(base, 'POST', '/auth/login', { body: { username, password } })
const register = (username: string) => httpCall(base, 'POST', '/auth/register', { body: { username, password: PASSWORD } })

t.test('start-up says it runs without Redis, why, and what to set', async (t) => {
  t.equal((await service.logLine('redis: '))?.msg, 'redis: none, a single instance: token checks read PostgreSQL on every request, ' +
    `rate limits and lockouts are counted in this process (REDIS_URL is not set and nothing answers at 127.0.0.1:${closed}); set REDIS_URL to run several instances`)
  t.match(await service.logLine('listening on '), { redis: 'none (a single instance)' })
  t.strictSame((await httpCall(base, 'GET', '/ready')).body, { status: 'ok', checks: { postgres: 'ok', redis: 'disabled' } })
})

t.test('register, log in, log out: the token is refused on the next request', async (t) => {
  const username = ctx.username()
  t.equal((await register(username)).status, 201)
  const session = await login(username)
  t.equal(session.status, 200)
  const other = await login(username)
  t.match(await httpCall(base, 'GET', '/auth/me', { token: session.body.access_token }), { status: 200, body: { username } })
  t.equal((await httpCall(base, 'POST', '/auth/logout', { token: session.body.access_token })).status, 204)
  t.equal((await httpCall(base, 'GET', '/auth/me', { token: session.body.access_token })).status, 401, 'logged out')
  t.equal((await httpCall(base, 'GET', '/auth/me', { token: other.body.access_token })).status, 200, 'the other session lives on')

  const boss = await login(admin, ADMIN_PASSWORD)
  t.equal((await httpCall(base, 'POST', '/auth/change-role', { token: boss.body.access_token, body: { username, role: 'admin' } })).status, 200)
  t.equal((await httpCall(base, 'GET', '/auth/me', { token: other.body.access_token })).status, 401, 'a role change revokes it too')
})

t.test('lockout: LOCKOUT_THRESHOLD wrong passwords, then even the right one waits', async (t) => {
  const username = ctx.username()
  t.equal((await register(username)).status, 201)
  t.equal((await login(username, 'wrong password 1')).status, 401)
  t.equal((await login(username, 'wrong password 2')).status, 401)
  const locked = await login(username)
  t.equal(locked.status, 429)
  t.match(locked.body, { code: 'AUTH_TOO_MANY_REQUESTS', message: /failed logins/ })
})

t.test('rate limit: REGISTER_RATE_LIMIT registrations a minute from one client', async (t) => {
  // Two registrations so far from this client (above); the third is the last allowed.
  t.equal((await register(ctx.username())).status, 201)
  const refused = await register(ctx.username())
  t.equal(refused.status, 429)
  t.match(refused.body, { code: 'AUTH_TOO_MANY_REQUESTS', message: /^Too many requests/ })
})

t.test('it stops cleanly', async (t) => {
  t.same(await service.stop(), { code: 0, signal: null })
  t.equal(service.stderr(), '')
})
