// Log lines an operator can use: every request line says who (the authenticated user id)
// and from where (the client IP), a refused request says why (its error `code`), and a 503
// says which dependency it was about. No password or token ever appears.
import t from 'tap'
import { Redis } from 'ioredis'
import pg from 'pg'
import { dependencyOf, isDependencyError, Unavailable } from '../../../lib/errors.js'
import { bearer, build, context, freePort, PASSWORD, privateRedis, signUp } from '../../helper.js'

const redis = await privateRedis(t)
const ctx = await context(t)
const lines: string[] = []
const app = await build(t, ctx, { REDIS_URL: redis.url, LOG_LEVEL: 'info' }, { logStream: { write: (line) => { lines.push(line) } } })

/** The parsed lines logged since `from`. */
const logged = (from: number) => lines.slice(from).map((line) => JSON.parse(line))
const requestLine = (from: number, url: string) => logged(from).find((l) => l.msg === 'request completed' && l.url === url)

t.test('a request line carries the user id and the client IP', async (t) => {
  const user = await signUp(app, ctx)
  const from = lines.length
  const res = await app.inject({ method: 'GET', url: '/auth/me', headers: bearer(user.access), remoteAddress: '203.0.113.7' })
  t.equal(res.statusCode, 200)
  const line = requestLine(from, '/auth/me')
  t.match(line, { level: 30, method: 'GET', url: '/auth/me', statusCode: 200, userId: user.id, ip: '203.0.113.7', reqId: res.headers['x-request-id'] })
  t.notOk('code' in line, 'no error code on a success')

  const anonymous = lines.length
  await app.inject({ method: 'GET', url: '/health', remoteAddress: '198.51.100.2' })
  const health = requestLine(anonymous, '/health')
  t.match(health, { statusCode: 200, ip: '198.51.100.2' })
  t.notOk('userId' in health, 'no user on an unauthenticated request')
})

t.test('a 4xx from auth says why: its code', async (t) => {
  const user = await signUp(app, ctx)
  const cases: Array<[string, () => Promise<unknown>, number, string]> = [
    ['/auth/me', () => app.inject({ method: 'GET', url: '/auth/me' }), 401, 'AUTH_MISSING_TOKEN'],
    ['/auth/me', () => app.inject({ method: 'GET', url: '/auth/me', headers: bearer('not.a.token') }), 401, 'AUTH_INVALID_TOKEN'],
    ['/auth/login', () => app.inject({ method: 'POST', url: '/auth/login', payload: { username: user.username, password: 'wrong password here' } }), 401, 'AUTH_BAD_CREDENTIALS'],
    ['/users', () => app.inject({ method: 'GET', url: '/users', headers: bearer(user.access) }), 403, 'AUTH_FORBIDDEN'],
    ['/auth/register', () => app.inject({ method: 'POST', url: '/auth/register', payload: { username: 'x' } }), 400, 'FST_ERR_VALIDATION']
  ]
  for (const [url, send, status, code] of cases) {
    const from = lines.length
    await send()
    t.match(requestLine(from, url), { statusCode: status, code }, `${url} ${status} ${code}`)
  }
})

t.test('a 503 names the dependency it was about', async (t) => {
  const user = await signUp(app, ctx)
  await redis.stop()
  t.teardown(() => redis.start())
  const from = lines.length
  const res = await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(user.access) })
  t.equal(res.statusCode, 503)
  t.notOk('dependency' in res.json(), 'the client is not told')
  const warn = logged(from).find((l) => l.level === 40 && l.dependency !== undefined)
  t.match(warn, { dependency: 'redis', msg: 'redis unavailable', reqId: res.headers['x-request-id'] })
  t.match(requestLine(from, '/auth/logout'), { statusCode: 503, code: 'AUTH_UNAVAILABLE', userId: user.id })
})

t.test('which dependency a driver failure came from', async (t) => {
  t.equal(dependencyOf(new Unavailable('postgres')), 'postgres')
  t.equal(dependencyOf(new Unavailable('redis')), 'redis')

  const port = await freePort()
  const client = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:${port}/x` })
  const pgError = await client.connect().then(() => null, (err: unknown) => err)
  t.ok(isDependencyError(pgError))
  t.equal(dependencyOf(pgError), 'postgres', 'PostgreSQL refusing')

  const offline = new Redis(`redis://127.0.0.1:${port}`, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0 })
  const redisError = await offline.get('x').then(() => null, (err: unknown) => err)
  offline.disconnect()
  t.ok(isDependencyError(redisError))
  t.equal(dependencyOf(redisError), 'redis', 'a command on a client with no connection')
})

t.test('no password or token in any line', async (t) => {
  const user = await signUp(app, ctx)
  await app.inject({ method: 'POST', url: '/auth/login', payload: { username: user.username, password: 'a wrong password' } })
  await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: user.refresh } })
  await app.inject({ method: 'GET', url: '/auth/me', headers: bearer(user.access) })
  const all = lines.join('\n')
  t.ok(all.includes(user.id), 'the lines were captured')
  for (const secret of [PASSWORD, 'a wrong password', user.access, user.refresh]) {
    t.notOk(all.includes(secret), 'a secret does not appear')
  }
})
