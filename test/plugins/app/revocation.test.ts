import t from 'tap'
import { bearer, build, context, holdStateRead, login, me, privateRedis, signUp } from '../../helper.js'

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
  const client = app.redis
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
  t.equal(await redis.client.hget(`${ctx.redisKeyPrefix}{${user.id}}`, `s:${sid}`), 'x')
})

t.test('Redis keys carry the user id as a hash tag, with a TTL', async (t) => {
  const user = await signUp(app, ctx)
  t.equal((await me(app, user.access)).statusCode, 200)
  const key = `${ctx.redisKeyPrefix}{${user.id}}`
  t.equal(await redis.client.exists(key), 1)
  const ttl = await redis.client.ttl(key)
  t.ok(ttl > 0 && ttl <= app.config.REFRESH_TOKEN_TTL, `ttl ${ttl}`)
})
