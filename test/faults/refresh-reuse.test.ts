// A refresh-token reuse while Redis cannot be written: answered 401 at once, recorded in
// PostgreSQL with its audit event in one transaction, and the session ends as soon as
// any instance can write Redis, by an ordinary revoking transaction (Redis before
// COMMIT), so Redis is never laxer than PostgreSQL at any moment (docs/revocation.md).
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { build, context, privateRedis, signUp, type Account } from '../helper.js'
import { call, sidOf, tcpProxy, waitFor } from './support.js'

const redis = await privateRedis(t)
const proxy = await tcpProxy(t, { port: redis.port })
// A database of its own: every instance replays the recorded reuses it finds, and one of
// another test file's instances (writing another Redis) must not end these sessions.
const ctx = await context(t, { ownDatabase: true })
const direct = await build(t, ctx, { REDIS_URL: redis.url })
const proxied = await build(t, ctx, { REDIS_URL: proxy.via(redis.url) })

const me = (app: FastifyInstance, token: string) => call(app, 'GET', '/auth/me', { token })
const refresh = (app: FastifyInstance, token: string) => call(app, 'POST', '/auth/refresh', { payload: { refresh_token: token } })

async function state (sid: string) {
  const { rows } = await direct.db.query(
    'SELECT reuse_detected_at IS NOT NULL AS recorded, revoked_at IS NOT NULL AS revoked FROM sessions WHERE id = $1', [sid])
  return rows[0]
}

async function reuseEvents (user: Account): Promise<number> {
  const { rows } = await direct.db.query(
    "SELECT count(*)::int AS n FROM audit_events WHERE subject_id = $1 AND type = 'refresh_reuse'", [user.id])
  return rows[0].n
}

t.test('Redis stopped during the reuse: 401 and audited at once; the session ends when Redis is back', async (t) => {
  const user = await signUp(direct, ctx)
  const sid = sidOf(user.access)
  const rotated = await refresh(direct, user.refresh)
  t.equal(rotated.status, 200)
  const current = { access: rotated.body.access_token as string, refresh: rotated.body.refresh_token as string }
  t.equal((await me(direct, current.access)).status, 200, 'cached as live')

  await redis.stop()
  const reuse = await refresh(direct, user.refresh)
  t.equal(reuse.status, 401, 'the reused token is refused, not 503')
  t.ok(reuse.ms < 1000, `answered in ${Math.round(reuse.ms)} ms`)
  t.equal(await reuseEvents(user), 1, 'the audit event is written')
  t.strictSame(await state(sid), { recorded: true, revoked: false }, 'the reuse is recorded; the end waits for Redis')
  t.equal((await refresh(direct, current.refresh)).status, 401, 'the session cannot be refreshed any more')
  // Not yet ended: PostgreSQL and Redis must agree at every moment, and an instance that
  // still reads a Redis holding "ok" would otherwise disagree with this answer.
  t.equal((await me(direct, current.access)).status, 200, 'its access token lives until the end is applied')

  await redis.start()
  const ms = await waitFor(async () => (await me(direct, current.access)).status === 401, 5000)
  t.ok(ms < 5000, `the session ended ${Math.round(ms)} ms after Redis returned`)
  t.strictSame(await state(sid), { recorded: true, revoked: true })
  await redis.client.flushall()
  t.equal((await me(direct, current.access)).status, 401, 'and stays ended after FLUSHALL')
  t.equal((await refresh(direct, current.refresh)).status, 401)
  t.equal(await reuseEvents(user), 1, 'one event, not one per attempt')
})

t.test('one instance partitioned from Redis sees the reuse: another instance ends the session, and it stays ended', async (t) => {
  const user = await signUp(direct, ctx)
  const sid = sidOf(user.access)
  const rotated = await refresh(proxied, user.refresh)
  t.equal(rotated.status, 200)
  const access = rotated.body.access_token as string
  for (const app of [direct, proxied]) t.equal((await me(app, access)).status, 200)

  proxy.blackhole()
  t.teardown(() => proxy.restore())
  const reuse = await refresh(proxied, user.refresh)
  t.equal(reuse.status, 401)
  t.ok(reuse.ms < 1000, `answered in ${Math.round(reuse.ms)} ms`)
  t.equal(await reuseEvents(user), 1)
  // The instance that can write Redis replays the recorded reuse: Redis first, then COMMIT.
  const ms = await waitFor(async () => (await me(direct, access)).status === 401, 5000)
  t.ok(ms < 5000, `ended by the other instance within ${Math.round(ms)} ms`)
  t.strictSame(await state(sid), { recorded: true, revoked: true })
  t.equal((await me(proxied, access)).status, 401, 'the partitioned instance, reading PostgreSQL, agrees')

  proxy.restore()
  await waitFor(async () => proxied.revocation.redisUsable(), 5000)
  for (let i = 0; i < 5; i++) t.equal((await me(proxied, access)).status, 401, 'and after the partition heals')
})
