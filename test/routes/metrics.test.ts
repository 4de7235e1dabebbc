// Operations: GET /metrics (Prometheus, one registry per app instance, nothing sensitive)
// and structured request logs that carry the caller's X-Request-Id.
import t from 'tap'
import { Writable } from 'node:stream'
import Fastify from 'fastify'
import app from '../../app.js'
import { serverOptions } from '../../lib/server-options.js'
import { loadConfig } from '../../plugins/external/config.js'
import { BASE_REDIS_URL, bearer, build, context, JWT_SECRET, PASSWORD, signUp } from '../helper.js'

const ctx = await context(t)
const server = await build(t, ctx)

/** Parses the text exposition format into `name{labels}` → value. */
function parse (text: string): Map<string, number> {
  const values = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const at = line.lastIndexOf(' ')
    values.set(line.slice(0, at), Number(line.slice(at + 1)))
  }
  return values
}

async function scrape (instance = server) {
  const res = await instance.inject('/metrics')
  return { res, values: parse(res.body) }
}

t.test('GET /metrics counts requests by route, logins, revocations and read-throughs', async (t) => {
  const admin = await signUp(server, ctx, { role: 'admin' })
  const user = await signUp(server, ctx)
  const { values: before } = await scrape()

  t.equal((await server.inject({ method: 'GET', url: '/auth/me', headers: bearer(user.access) })).statusCode, 200)
  t.equal((await server.inject({ method: 'GET', url: '/auth/me', headers: bearer(user.access) })).statusCode, 200)
  t.equal((await server.inject({ method: 'POST', url: '/auth/login', payload: { username: user.username, password: 'wrong password' } })).statusCode, 401)
  t.equal((await server.inject({ method: 'POST', url: '/auth/login', payload: { username: user.username, password: PASSWORD } })).statusCode, 200)
  t.equal((await server.inject({ method: 'GET', url: `/users/${user.id}`, headers: bearer(admin.access) })).statusCode, 200)
  t.equal((await server.inject({ method: 'POST', url: '/auth/logout', headers: bearer(user.access) })).statusCode, 204)
  t.equal((await server.inject({ method: 'POST', url: '/auth/logout-all', headers: bearer(admin.access) })).statusCode, 204)
  t.equal((await server.inject(`/no-such-route/${user.id}`)).statusCode, 404)

  const { res, values } = await scrape()
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/)
  const delta = (key: string) => (values.get(key) ?? 0) - (before.get(key) ?? 0)

  t.equal(delta('http_requests_total{method="GET",route="/auth/me",status_code="200"}'), 2)
  t.equal(delta('http_request_duration_seconds_count{method="GET",route="/auth/me",status_code="200"}'), 2)
  t.ok(values.has('http_request_duration_seconds_bucket{le="0.005",method="GET",route="/auth/me",status_code="200"}'), 'latency buckets')
  t.equal(delta('http_requests_total{method="GET",route="/users/:id",status_code="200"}'), 1, 'routes are labelled by template')
  t.equal(delta('http_requests_total{method="GET",route="unmatched",status_code="404"}'), 1, 'unknown URLs share one label')
  t.equal(delta('auth_logins_total'), 1)
  t.equal(delta('auth_login_failures_total{reason="bad_credentials"}'), 1)
  t.equal(delta('auth_revocations_total{kind="session"}'), 1, 'logout')
  t.equal(delta('auth_revocations_total{kind="user"}'), 1, 'logout-all')
  t.ok(delta('auth_pg_read_throughs_total{reason="miss"}') >= 1, 'the first check of a session reads PostgreSQL')
  for (const key of ['auth_pg_read_throughs_total{reason="redis_unavailable"}', 'auth_redis_breaker_trips_total',
    'auth_revocations_refused_total', 'auth_login_failures_total{reason="throttled"}']) {
    t.ok(values.has(key), `${key} is exported`)
  }
  t.equal(values.get('auth_redis_up'), 1)
  t.equal(values.get('auth_redis_breaker_open'), 0)
  t.equal(values.get('auth_revocation_retry_backlog'), 0)
  t.ok((values.get('pg_pool_total_connections') ?? 0) >= 1, 'pool: connections')
  t.ok(values.has('pg_pool_idle_connections'), 'pool: idle')
  t.equal(values.get('pg_pool_waiting_clients'), 0, 'pool: waiting')

  // Nothing about who: no usernames, ids, tokens or addresses.
  for (const secret of [user.username, admin.username, user.id, admin.id, user.access.split('.')[2], user.refresh, '127.0.0.1']) {
    t.notOk(res.body.includes(secret), 'leaks nothing identifying')
  }
})

t.test('each app instance has its own registry', async (t) => {
  const other = await build(t, ctx)
  const { res, values } = await scrape(other)
  t.equal(res.statusCode, 200, 'a second instance in the same process registers its metrics without a clash')
  t.equal(values.get('auth_logins_total'), 0, 'and counts only its own traffic')
  const user = await signUp(other, ctx)
  t.equal((await scrape(other)).values.get('auth_logins_total'), 1)
  t.ok((await scrape()).values.get('auth_logins_total')! >= 3, 'the first instance kept its own count')
  t.ok(user.access)
})

t.test('structured logs carry the caller\'s X-Request-Id, or a fresh one, and no secrets', async (t) => {
  const lines: Array<Record<string, any>> = []
  const stream = new Writable({
    write (chunk, _encoding, done) {
      for (const line of String(chunk).split('\n')) if (line !== '') lines.push(JSON.parse(line))
      done()
    }
  })
  const config = loadConfig({
    DATABASE_URL: ctx.databaseUrl,
    REDIS_URL: BASE_REDIS_URL,
    REDIS_KEY_PREFIX: ctx.redisKeyPrefix,
    JWT_SECRET,
    LOG_LEVEL: 'info',
    ARGON2_MEMORY_COST: 8192,
    ARGON2_TIME_COST: 1
  })
  const logged = Fastify(serverOptions(config, stream))
  await logged.register(app, { config, purgeIntervalMs: 0 })
  t.teardown(() => logged.close())
  await logged.ready()

  const given = await logged.inject({ url: '/health', headers: { 'x-request-id': 'edge-7f3a.42' } })
  t.equal(given.headers['x-request-id'], 'edge-7f3a.42', 'echoed to the caller')
  const line = lines.find((l) => l.msg === 'request completed' && l.reqId === 'edge-7f3a.42')
  t.match(line, { level: 30, time: Number, reqId: 'edge-7f3a.42', method: 'GET', url: '/health', statusCode: 200, ms: Number }, 'one JSON line per request, with the id')

  const odd = await logged.inject({ url: '/health', headers: { 'x-request-id': 'not ok\u0000' + 'x'.repeat(300) } })
  const fresh = odd.headers['x-request-id'] as string
  t.match(fresh, /^[0-9a-f-]{36}$/, 'an unusable id is replaced by a fresh one')
  t.ok(lines.some((l) => l.msg === 'request completed' && l.reqId === fresh), 'and logged as such')

  const token = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2VjcmV0LXNpZ25hdHVyZQ'
  await logged.inject({ url: '/auth/me', headers: { authorization: `Bearer ${token}`, 'x-request-id': 'with-token' } })
  t.ok(lines.some((l) => l.reqId === 'with-token' && l.statusCode === 401))
  t.notOk(JSON.stringify(lines).includes('c2VjcmV0LXNpZ25hdHVyZQ'), 'no token in any log line')
})
