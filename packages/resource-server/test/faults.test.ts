// Redis unreachable, at start or later, refusing or black-holed: the plugin asks the auth
// service (introspection) instead, never waits on Redis for long (a circuit breaker), and
// goes back to the one Redis read by itself when Redis returns with protocol 1.
import t from 'tap'
import { Redis } from 'ioredis'
import { PROTOCOL_KEY, PROTOCOL_VERSION, userKey } from '@auth-service/fastify-resource-server/protocol'
import { active, downstream, fakeAuth, hs256, identity, privateRedis, proxy, SECRET } from './support.js'

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const PREFIX = 'auth:'

async function write (url: string, fn: (redis: Redis) => Promise<unknown>): Promise<void> {
  const redis = new Redis(url, { maxRetriesPerRequest: 1 })
  try {
    await fn(redis)
  } finally {
    redis.disconnect()
  }
}

t.test('Redis down at start: introspection until it comes, then Redis decides', async (t) => {
  const redis = await privateRedis(t)
  const auth = await fakeAuth(t)
  const started = Date.now()
  const app = await downstream(t, { authUrl: auth.url, secret: SECRET, redis: redis.url, keyPrefix: PREFIX })
  t.ok(Date.now() - started < 3000, 'registration does not hang on a missing Redis')
  const who = identity()
  const token = hs256(who)
  auth.answers.set(token, active(who))
  const get = () => app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${token}` } })
  t.equal((await get()).statusCode, 200, 'decided by introspection')
  t.equal(auth.calls.introspect, 1)

  await redis.start()
  await write(redis.url, async (r) => {
    await r.set(PREFIX + PROTOCOL_KEY, PROTOCOL_VERSION)
    await r.hset(PREFIX + userKey(who.sub), 'ra', '0', 's:' + who.sid, 'ok')
  })
  const deadline = Date.now() + 5000
  while (app.resourceServer.stats.redisDecisions === 0 && Date.now() < deadline) {
    t.equal((await get()).statusCode, 200)
    await sleep(100)
  }
  t.ok(app.resourceServer.stats.redisDecisions > 0, 'back to Redis by itself')
  const before = auth.calls.introspect
  t.equal((await get()).statusCode, 200)
  t.equal(auth.calls.introspect, before, 'no introspection once Redis is back')
})

t.test('Redis killed, then black-holed: correct answers, never a long wait', async (t) => {
  const redis = await privateRedis(t)
  await redis.start()
  const hole = await proxy(t, Number(new URL(redis.url).port))
  const auth = await fakeAuth(t)
  const live = identity()
  const revoked = identity()
  await write(redis.url, async (r) => {
    await r.set(PREFIX + PROTOCOL_KEY, PROTOCOL_VERSION)
    await r.hset(PREFIX + userKey(live.sub), 'ra', '0', 's:' + live.sid, 'ok')
    await r.hset(PREFIX + userKey(revoked.sub), 'ra', '0', 's:' + revoked.sid, 'x')
  })
  const app = await downstream(t, { authUrl: auth.url, secret: SECRET, redis: hole.url, keyPrefix: PREFIX })
  const liveToken = hs256(live)
  const revokedToken = hs256(revoked)
  auth.answers.set(liveToken, active(live))
  const get = (token: string) => app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${token}` } })
  t.equal((await get(liveToken)).statusCode, 200)
  t.equal((await get(revokedToken)).statusCode, 401)
  t.equal(auth.calls.introspect, 0, 'warm: Redis decides')

  // Black-holed: packets vanish, the connection looks open.
  hole.blackhole(true)
  const times: number[] = []
  for (let i = 0; i < 10; i++) {
    const began = Date.now()
    t.equal((await get(i % 2 === 0 ? liveToken : revokedToken)).statusCode, i % 2 === 0 ? 200 : 401)
    times.push(Date.now() - began)
  }
  t.ok(times[0] < 1000, `the first request waits at most the command timeout (${times[0]} ms)`)
  t.ok(Math.max(...times.slice(1)) < 200, `then the breaker keeps Redis out of the path (${times.slice(1).join(', ')} ms)`)
  t.ok(auth.calls.introspect >= 10, 'every one decided by introspection')

  // Killed: connections refused.
  hole.blackhole(false)
  await redis.stop()
  for (let i = 0; i < 4; i++) {
    const began = Date.now()
    t.equal((await get(i % 2 === 0 ? liveToken : revokedToken)).statusCode, i % 2 === 0 ? 200 : 401)
    t.ok(Date.now() - began < 1000)
  }
})
