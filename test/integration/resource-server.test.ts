// The promise downstream: a service protected by the resource-server plugin
// (packages/resource-server) refuses a token revoked at the auth service on its very next
// request. Two instances of the auth service on real sockets share PostgreSQL and a
// private redis-server; revocations are made at A, the plugin introspects at B and reads
// the Redis both write. For every kind of revocation; under concurrent load; after a
// FLUSHALL; with Redis stopped (introspection decides); with the auth service stopped
// while Redis is up (what Redis knows is still decided, a miss is a 503).
import t, { type Test } from 'tap'
import { generateKeyPairSync } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyInstance } from 'fastify'
import pg from 'pg'
import resourceServer from '@auth-service/fastify-resource-server'
import { build, context, httpCall as call, PASSWORD, privateRedis } from '../helper.js'

const ctx = await context(t)
const redis = await privateRedis(t)
// Asymmetric signing: the downstream service holds no secret, only the JWKS it fetched.
const { privateKey } = generateKeyPairSync('ed25519')
const overrides = {
  REDIS_URL: redis.url,
  JWT_SECRET: undefined,
  JWT_PRIVATE_KEY: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
  // Every reuse of a refresh token ends its session (no grace for a retry).
  REFRESH_REUSE_INTERVAL: 0
}
const a = await build(t, ctx, overrides)
const b = await build(t, ctx, overrides)
const urlOf = async (app: FastifyInstance) => {
  await app.listen({ port: 0, host: '127.0.0.1' })
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
}
const A = await urlOf(a)
const B = await urlOf(b)
const client = await a.clients.create(`downstream-${ctx.tag}`)
// The instances may be closed by then (the last test stops them): straight to PostgreSQL.
t.teardown(async () => {
  const db = new pg.Client({ connectionString: ctx.databaseUrl })
  await db.connect()
  await db.query('DELETE FROM clients WHERE id = $1', [client.id]).finally(() => db.end())
})

// The downstream service: its own Fastify app with the plugin, on a socket of its own.
const api = Fastify()
await api.register(resourceServer, {
  authUrl: B,
  clientId: client.clientId,
  clientSecret: client.clientSecret,
  redis: redis.url,
  keyPrefix: ctx.redisKeyPrefix,
  issuer: 'auth-service',
  audience: 'auth-service'
})
api.get('/orders', { onRequest: [api.authenticate] }, async (request) => ({ owner: request.user.sub, role: request.user.role }))
api.get('/admin/report', { onRequest: [api.authenticate, api.requireRole('admin')] }, async () => ({ ok: true }))
t.teardown(() => api.close())
const API = await urlOf(api)
const stats = api.resourceServer.stats

interface Session { id: string, username: string, access: string, refresh: string, sid: string }

function sidOf (access: string): string {
  return JSON.parse(Buffer.from(access.split('.')[1], 'base64url').toString()).sid
}

async function signIn (username: string): Promise<Session> {
  const res = await call(A, 'POST', '/auth/login', { body: { username, password: PASSWORD } })
  if (res.status !== 200) throw new Error(`login ${res.status}`)
  const access = res.body.access_token
  const id = JSON.parse(Buffer.from(access.split('.')[1], 'base64url').toString()).sub
  return { id, username, access, refresh: res.body.refresh_token, sid: sidOf(access) }
}

async function newUser (label: string, role?: 'admin'): Promise<Session> {
  const username = ctx.username(label)
  if (role === 'admin') await a.users.register(username, PASSWORD, 'admin')
  else if ((await call(A, 'POST', '/auth/register', { body: { username, password: PASSWORD } })).status !== 201) throw new Error('register')
  return await signIn(username)
}

async function downstream (token: string, path = '/orders'): Promise<number> {
  const res = await fetch(API + path, { headers: { authorization: `Bearer ${token}` } })
  await res.arrayBuffer()
  return res.status
}

/**
 * Served downstream, and the second time from Redis alone (the first may introspect: the
 * auth service fills Redis then).
 */
async function warm (t: Test, ...sessions: Session[]): Promise<void> {
  for (const s of sessions) {
    t.equal(await downstream(s.access), 200, `${s.username} is served downstream`)
    const before = { ...stats }
    t.equal(await downstream(s.access), 200)
    t.strictSame({ redis: stats.redisDecisions - before.redisDecisions, introspections: stats.introspections - before.introspections },
      { redis: 1, introspections: 0 }, `${s.username}: warm, decided by one Redis read`)
  }
}

const admin = await newUser('admin', 'admin')

t.test('every kind of revocation at the auth service is refused downstream on the next request', async (t) => {
  const bystander = await newUser('bystander')
  const kinds: Array<[string, (s: Session, other: Session) => Promise<number>]> = [
    ['logout', async (s) => (await call(A, 'POST', '/auth/logout', { token: s.access })).status],
    ['logout-all', async (_s, other) => (await call(A, 'POST', '/auth/logout-all', { token: other.access })).status],
    ['session deleted', async (s, other) => (await call(A, 'DELETE', `/auth/sessions/${s.sid}`, { token: other.access })).status],
    ['refresh-token reuse', async (s) => {
      t.equal((await call(A, 'POST', '/auth/refresh', { body: { refresh_token: s.refresh } })).status, 200)
      return (await call(B, 'POST', '/auth/refresh', { body: { refresh_token: s.refresh } })).status
    }],
    ['password change', async (s) => (await call(A, 'POST', '/auth/change-password', {
      token: s.access, body: { currentPassword: PASSWORD, newPassword: 'a brand new passphrase' }
    })).status],
    ['role change', async (s) => (await call(A, 'POST', '/auth/change-role', { token: admin.access, body: { username: s.username, role: 'admin' } })).status],
    ['disable', async (s) => (await call(A, 'PATCH', `/users/${s.id}`, { token: admin.access, body: { disabled: true } })).status],
    ['delete', async (s) => {
      ctx.forget(s.id)
      return (await call(A, 'DELETE', `/users/${s.id}`, { token: admin.access })).status
    }],
    ['POST /oauth/revoke', async (s) => (await call(A, 'POST', '/oauth/revoke', { body: { token: s.refresh } })).status]
  ]
  for (const [kind, revoke] of kinds) {
    await t.test(kind, async (t) => {
      const s = await newUser(kind.slice(0, 8).replace(/[^a-z]/g, ''))
      const other = await signIn(s.username)
      await warm(t, s, bystander)
      const status = await revoke(s, other)
      t.ok([200, 204, 401].includes(status), `the revoking call answered (${status})`)
      t.equal(await downstream(s.access), 401, 'the revoked token is refused downstream on the very next request')
      t.equal(await downstream(s.access), 401, 'and after')
      t.equal(await downstream(bystander.access), 200, 'another user\'s token goes on')
    })
  }
  // A role change takes effect through a new sign-in: the new token carries the new role.
  const promoted = await newUser('promoted')
  t.equal(await downstream(promoted.access, '/admin/report'), 403)
  t.equal((await call(A, 'POST', '/auth/change-role', { token: admin.access, body: { username: promoted.username, role: 'admin' } })).status, 200)
  t.equal(await downstream(promoted.access, '/admin/report'), 401, 'the old token is revoked, not promoted')
  t.equal(await downstream((await signIn(promoted.username)).access, '/admin/report'), 200, 'signed in again: admin')
})

t.test('under concurrent load: every request that starts after the revoking call returned is refused', async (t) => {
  const users = await Promise.all(['ld1', 'ld2', 'ld3', 'ld4'].map((label) => newUser(label)))
  const kept = await newUser('keep')
  await warm(t, ...users, kept)
  interface Sample { token: string, start: number, status: number }
  const samples: Sample[] = []
  const state = { stop: false }
  const targets = [...users, kept]
  // Bounded: each worker stops after this many requests whatever happens.
  const worker = async (i: number) => {
    for (let n = 0; n < 1500 && !state.stop; n++) {
      const s = targets[(i + n) % targets.length]
      const start = performance.now()
      samples.push({ token: s.access, start, status: await downstream(s.access) })
    }
  }
  const running = Array.from({ length: 6 }, (_, i) => worker(i))
  const windows = new Map<string, { from: number, to: number }>()
  const revokes: Array<(s: Session) => Promise<unknown>> = [
    (s) => call(A, 'POST', '/auth/logout', { token: s.access }),
    (s) => call(B, 'POST', '/auth/logout-all', { token: s.access }),
    (s) => call(A, 'POST', '/auth/change-role', { token: admin.access, body: { username: s.username, role: 'admin' } }),
    (s) => call(B, 'PATCH', `/users/${s.id}`, { token: admin.access, body: { disabled: true } })
  ]
  for (const [i, s] of users.entries()) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    const from = performance.now()
    await revokes[i](s)
    windows.set(s.access, { from, to: performance.now() })
  }
  await new Promise((resolve) => setTimeout(resolve, 200))
  state.stop = true
  await Promise.all(running)

  t.ok(samples.every((s) => s.status === 200 || s.status === 401), 'only 200 and 401')
  for (const s of users) {
    const { from, to } = windows.get(s.access) as { from: number, to: number }
    const mine = samples.filter((x) => x.token === s.access)
    const before = mine.filter((x) => x.start < from - 50)
    const after = mine.filter((x) => x.start > to)
    t.ok(before.length > 0 && before.every((x) => x.status === 200), `${s.username}: served before (${before.length})`)
    t.ok(after.length > 0, `${s.username}: requests after the revocation (${after.length})`)
    t.strictSame(after.filter((x) => x.status !== 401).length, 0, `${s.username}: every one of them refused`)
  }
  const mine = samples.filter((x) => x.token === kept.access)
  t.ok(mine.length > 0 && mine.every((x) => x.status === 200), `the untouched user is served throughout (${mine.length})`)
})

t.test('after a FLUSHALL the revoked stays refused, the live is served, and Redis is trusted again', async (t) => {
  const revoked = await newUser('flushrev')
  const live = await newUser('flushlive')
  await warm(t, revoked, live)
  t.equal((await call(A, 'POST', '/auth/logout', { token: revoked.access })).status, 204)
  await redis.client.flushall()
  t.equal(await downstream(revoked.access), 401, 'revoked: refused (Redis forgot, the auth service did not)')
  t.equal(await downstream(live.access), 200, 'live: served')
  // The auth service re-creates the marker with the first hash it re-creates; the plugin
  // reads it again after a miss, and goes back to deciding from Redis.
  const deadline = Date.now() + 5000
  let warmAgain = false
  while (!warmAgain && Date.now() < deadline) {
    const before = stats.introspections
    t.equal(await downstream(live.access), 200)
    t.equal(await downstream(revoked.access), 401)
    warmAgain = stats.introspections === before
    if (!warmAgain) await new Promise((resolve) => setTimeout(resolve, 200))
  }
  t.ok(warmAgain, 'warm again: no introspection')
  t.equal(await redis.client.get(`${ctx.redisKeyPrefix}revocation:protocol`), '1', 'the marker is back')
})

t.test('with Redis stopped: introspection refuses the revoked and serves the live', async (t) => {
  const revoked = await newUser('norevoked')
  const live = await newUser('nolive')
  await warm(t, revoked, live)
  t.equal((await call(A, 'POST', '/auth/logout', { token: revoked.access })).status, 204)
  await redis.stop()
  try {
    const before = stats.introspections
    for (let i = 0; i < 3; i++) {
      const began = Date.now()
      t.equal(await downstream(revoked.access), 401, 'revoked: refused')
      t.equal(await downstream(live.access), 200, 'live: served')
      t.ok(Date.now() - began < 2000, 'without waiting on Redis')
    }
    // A sign-in while Redis is down (it needs PostgreSQL only); revoking it is refused by
    // the auth service (503: nothing is revoked that Redis does not know), so it stays live.
    const fresh = await signIn(live.username)
    t.equal(await downstream(fresh.access), 200, 'a token issued while Redis is down is served')
    t.equal((await call(A, 'POST', '/auth/logout', { token: fresh.access })).status, 503)
    t.equal(await downstream(fresh.access), 200)
    t.ok(stats.introspections - before >= 8, 'each of these was decided by introspection')
  } finally {
    await redis.start()
  }
})

t.test('with the auth service stopped and Redis up: what Redis knows is decided, a miss is a 503', async (t) => {
  const live = await newUser('svclive')
  const revoked = await newUser('svcrevoked')
  const unseen = await newUser('svcunseen')
  // Redis came back empty: wait until the plugin trusts it again (the marker is written
  // back by the auth service with the first hash it re-creates).
  const deadline = Date.now() + 10_000
  while (Date.now() < deadline) {
    const before = stats.redisDecisions
    await downstream(live.access)
    await downstream(live.access)
    if (stats.redisDecisions > before) break
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  await warm(t, live, revoked)
  t.equal((await call(A, 'POST', '/auth/logout', { token: revoked.access })).status, 204)
  t.equal(await downstream(revoked.access), 401, 'cached as revoked')

  await a.close()
  await b.close()
  t.equal((await fetch(B + '/health').catch(() => null)), null, 'the auth service is gone')
  for (let i = 0; i < 3; i++) {
    t.equal(await downstream(live.access), 200, 'warm: still served from Redis')
    t.equal(await downstream(revoked.access), 401, 'revoked in Redis: still refused')
    t.equal(await downstream(unseen.access), 503, 'never seen: neither way can decide')
  }
})
