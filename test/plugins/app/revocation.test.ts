import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { bearer, build, context, holdStateRead, login, me, privateRedis, redisOf, signUp } from '../../helper.js'

// A Redis of this file's own, so FLUSHALL is real and touches nothing shared.
const redis = await privateRedis(t)
const ctx = await context(t)
const app = await build(t, ctx, { REDIS_URL: redis.url })

/** Counts what GET /auth/me costs: PostgreSQL checkouts and Redis commands of the app. */
async function countCosts (access: string) {
  let pgQueries = 0
  let redisCommands = 0
  const pool = app.db.pool
  const onAcquire = () => { pgQueries++ }
  pool.on('acquire', onAcquire)
  const client = redisOf(app)
  const send = client.sendCommand.bind(client)
  client.sendCommand = ((...args: Parameters<typeof send>) => { redisCommands++; return send(...args) }) as typeof client.sendCommand
  try {
    const res = await me(app, access)
    return { status: res.statusCode, pgQueries, redisCommands }
  } finally {
    pool.off('acquire', onAcquire)
    client.sendCommand = send
  }
}

t.test('a warm GET /auth/me makes one Redis command and no PostgreSQL query', async (t) => {
  const user = await signUp(app, ctx)
  t.equal((await me(app, user.access)).statusCode, 200, 'first use fills the cache')
  const warm = await countCosts(user.access)
  t.strictSame(warm, { status: 200, pgQueries: 0, redisCommands: 1 })

  await redis.client.flushall()
  const cold = await countCosts(user.access)
  t.equal(cold.status, 200, 'after FLUSHALL the token still works')
  t.ok(cold.pgQueries >= 1, 'a cold cache reads PostgreSQL')
  const again = await countCosts(user.access)
  t.strictSame(again, { status: 200, pgQueries: 0, redisCommands: 1 }, 'and refills it')
})

t.test('FLUSHALL brings no revoked token back', async (t) => {
  t.test('logout', async (t) => {
    const user = await signUp(app, ctx)
    const other = await login(app, user.username)
    t.equal((await me(app, user.access)).statusCode, 200)
    t.equal((await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(user.access) })).statusCode, 204)
    await redis.client.flushall()
    t.equal((await me(app, user.access)).statusCode, 401, 'logged-out token refused after FLUSHALL')
    t.equal((await me(app, user.access)).statusCode, 401, 'and again, from the refilled cache')
    t.equal((await me(app, other.access)).statusCode, 200, 'the other session still works')
  })

  t.test('role change', async (t) => {
    const admin = await signUp(app, ctx, { role: 'admin' })
    const user = await signUp(app, ctx)
    const bystander = await signUp(app, ctx)
    t.equal((await me(app, user.access)).statusCode, 200)
    const res = await app.inject({ method: 'POST', url: '/auth/change-role', headers: bearer(admin.access), payload: { username: user.username, role: 'admin' } })
    t.equal(res.statusCode, 200)
    await redis.client.flushall()
    t.equal((await me(app, user.access)).statusCode, 401, 'token from before the role change refused after FLUSHALL')
    t.equal((await me(app, bystander.access)).statusCode, 200)
    t.equal((await me(app, admin.access)).statusCode, 200)
  })
})

t.test('a read-through that raced a revocation and a FLUSHALL cannot resurrect the token', async (t) => {
  // The one interleaving DESIGN.md leaves open, forced by hand: a cache miss reads
  // PostgreSQL ("live"), then logout commits and writes Redis, then Redis is emptied,
  // and only then does the stale fill land. The epoch check must refuse it.
  const user = await signUp(app, ctx)
  await redis.client.flushall()
  const held = holdStateRead(t, app)
  const racing = me(app, user.access)
  await held.read
  t.equal((await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(user.access) })).statusCode, 204)
  await redis.client.flushall()
  held.release()
  t.equal((await racing).statusCode, 401, 'the racing request is refused as well')
  t.equal((await me(app, user.access)).statusCode, 401, 'the stale fill did not bring the token back')
  const sid = JSON.parse(Buffer.from(user.access.split('.')[1], 'base64url').toString()).sid
  t.match(await redis.client.hget(`${ctx.redisKeyPrefix}{${user.id}}`, `s:${sid}`), /^x:[0-9]+$/)
})

t.test('Redis keys carry the user id as a hash tag, with a TTL', async (t) => {
  const user = await signUp(app, ctx)
  t.equal((await me(app, user.access)).statusCode, 200)
  const key = `${ctx.redisKeyPrefix}{${user.id}}`
  t.equal(await redis.client.exists(key), 1)
  const ttl = await redis.client.ttl(key)
  t.ok(ttl > 0 && ttl <= app.config.REFRESH_TOKEN_TTL, `ttl ${ttl}`)
})

t.test('a user\'s hash stays bounded: 300 login/logout cycles leave only the fields a token could still need', async (t) => {
  // Access tokens of two seconds: a field is needed about that long (plus a little slack
  // for clocks) after its session was last used or ended.
  const short = await build(t, ctx, { REDIS_URL: redis.url, ACCESS_TOKEN_TTL: 2 })
  const user = await signUp(short, ctx)
  const key = `${ctx.redisKeyPrefix}{${user.id}}`
  const CYCLES = 300
  const started: number[] = []
  let most = 0
  for (let i = 0; i < CYCLES; i++) {
    started.push(Date.now())
    const s = await login(short, user.username)
    t.equal((await me(short, s.access)).statusCode, 200)
    t.equal((await short.inject({ method: 'POST', url: '/auth/logout', headers: bearer(s.access) })).statusCode, 204)
    const hlen = await redis.client.hlen(key)
    most = Math.max(most, hlen)
    // Fields of sessions used in the last 2 s + slack (2 s) + rounding to whole seconds,
    // and `ra`, `e`, `c`: anything more is a dead field kept too long. (Before, every
    // cycle left its field until the key expired, and each write pushed that back.)
    const recent = started.filter((at) => at > Date.now() - 6000).length
    if (hlen > recent + 3) t.fail(`cycle ${i}: HLEN ${hlen}, sessions of the last 6 s ${recent}`)
  }
  t.pass(`HLEN at most ${most} during ${CYCLES} login/me/logout cycles in ${Math.round((Date.now() - started[0]) / 100) / 10} s`)

  await sleep(5000)
  const last = await login(short, user.username)
  t.equal((await me(short, last.access)).statusCode, 200)
  const fields = await redis.client.hkeys(key)
  t.ok(fields.length <= 4, `once idle, one request trims the rest: ${fields.join(' ')}`)
  const expires = await redis.client.expiretime(key)
  t.ok(expires <= Math.floor(Date.now() / 1000) + 2 + 3, 'the key lives as long as its longest-lived field, no longer')
})
