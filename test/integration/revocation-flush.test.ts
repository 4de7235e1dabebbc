// The revocation promise when Redis forgets: for every kind of revocation, the tokens it
// revoked were cached as live, Redis is emptied (a real FLUSHALL on a private
// redis-server) between the revoking call and the next request, and the revoked tokens
// are still refused at both instances, while the tokens it did not revoke keep working.
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { bearer, build, context, login, me, PASSWORD, privateRedis, signUp, type Account } from '../helper.js'

const redis = await privateRedis(t)
const ctx = await context(t)
// Two instances sharing PostgreSQL and the private Redis: one revokes, both must refuse.
const a = await build(t, ctx, { REDIS_URL: redis.url })
const b = await build(t, ctx, { REDIS_URL: redis.url })
const instances: Array<[string, FastifyInstance]> = [['A', a], ['B', b]]

interface Tokens { access: string, refresh: string }
/** What these helpers need of a test: its assertions. */
type Asserts = Pick<typeof t, 'equal' | 'ok'>

function sidOf (access: string): string {
  return JSON.parse(Buffer.from(access.split('.')[1], 'base64url').toString()).sid
}

function refresh (server: FastifyInstance, token: string) {
  return server.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: token } })
}

/** Every token is served at both instances, so each is cached as live ("ok") first. */
async function warm (t: Asserts, tokens: Record<string, Tokens>): Promise<void> {
  for (const [name, tk] of Object.entries(tokens)) {
    for (const [inst, server] of instances) t.equal((await me(server, tk.access)).statusCode, 200, `${name} works at ${inst} before`)
  }
  const keys = await redis.client.keys(`${ctx.redisKeyPrefix}*`)
  t.ok(keys.length > 0, 'the cache holds state')
}

async function flush (t: Asserts): Promise<void> {
  await redis.client.flushall()
  t.equal(await redis.client.dbsize(), 0, 'Redis is empty')
}

/** Refused at both instances, twice: once read from PostgreSQL, once from the refilled cache. */
async function refused (t: Asserts, tokens: Record<string, Tokens>, opts: { refreshToo?: boolean } = {}): Promise<void> {
  for (const [name, tk] of Object.entries(tokens)) {
    for (const round of ['after the flush', 'from the refilled cache']) {
      for (const [inst, server] of instances) {
        const res = await me(server, tk.access)
        t.equal(res.statusCode, 401, `${name}: access token refused at ${inst}, ${round}`)
      }
    }
    if (opts.refreshToo !== false) t.equal((await refresh(a, tk.refresh)).statusCode, 401, `${name}: refresh token refused`)
  }
}

async function works (t: Asserts, tokens: Record<string, Tokens>): Promise<void> {
  for (const [name, tk] of Object.entries(tokens)) {
    for (const [inst, server] of instances) {
      t.equal((await me(server, tk.access)).statusCode, 200, `${name} still works at ${inst}`)
    }
  }
}

/** A user with two sessions (the signUp one and a second device), and a bystander. */
async function people (): Promise<{ user: Account, other: Tokens, bystander: Account }> {
  const user = await signUp(a, ctx)
  return { user, other: await login(a, user.username), bystander: await signUp(a, ctx) }
}

t.test('logout', async (t) => {
  const { user, other, bystander } = await people()
  await warm(t, { user, other, bystander })
  t.equal((await a.inject({ method: 'POST', url: '/auth/logout', headers: bearer(user.access) })).statusCode, 204)
  await flush(t)
  await refused(t, { 'logged-out session': user })
  await works(t, { 'the other device': other, bystander })
})

t.test('logout-all', async (t) => {
  const { user, other, bystander } = await people()
  await warm(t, { user, other, bystander })
  t.equal((await a.inject({ method: 'POST', url: '/auth/logout-all', headers: bearer(user.access) })).statusCode, 204)
  await flush(t)
  await refused(t, { caller: user, 'the other device': other })
  await works(t, { bystander })
  const again = await login(a, user.username)
  await works(t, { 'a new login': again })
})

t.test('session delete', async (t) => {
  const { user, other, bystander } = await people()
  await warm(t, { user, other, bystander })
  const res = await a.inject({ method: 'DELETE', url: `/auth/sessions/${sidOf(other.access)}`, headers: bearer(user.access) })
  t.equal(res.statusCode, 204)
  await flush(t)
  await refused(t, { 'deleted session': other })
  await works(t, { caller: user, bystander })
})

t.test('refresh-token reuse', async (t) => {
  const { user, other, bystander } = await people()
  const rotated = await refresh(a, user.refresh)
  t.equal(rotated.statusCode, 200)
  const current = { access: rotated.json().access_token, refresh: rotated.json().refresh_token }
  await warm(t, { current, other, bystander })
  t.equal((await refresh(a, user.refresh)).statusCode, 401, 'the retired refresh token is presented again')
  await flush(t)
  await refused(t, { 'the session\'s live pair': current, 'the session\'s first pair': user })
  await works(t, { 'the other device': other, bystander })
})

t.test('password change', async (t) => {
  const { user, other, bystander } = await people()
  await warm(t, { user, other, bystander })
  const res = await a.inject({
    method: 'POST',
    url: '/auth/change-password',
    headers: bearer(user.access),
    payload: { currentPassword: PASSWORD, newPassword: 'a brand new passphrase' }
  })
  t.equal(res.statusCode, 204)
  await flush(t)
  await refused(t, { caller: user, 'the other device': other })
  await works(t, { bystander })
})

t.test('admin changes', async (t) => {
  const admin = await signUp(a, ctx, { role: 'admin' })

  t.test('role change via PATCH', async (t) => {
    const { user, other, bystander } = await people()
    await warm(t, { user, other, bystander, admin })
    const res = await a.inject({ method: 'PATCH', url: `/users/${user.id}`, headers: bearer(admin.access), payload: { role: 'admin' } })
    t.equal(res.statusCode, 200)
    t.equal(res.json().role, 'admin')
    await flush(t)
    await refused(t, { 'first session': user, 'the other device': other })
    await works(t, { bystander, admin })
    const again = await login(a, user.username)
    t.equal((await me(b, again.access)).json().role, 'admin', 'a new login carries the new role')
  })

  t.test('disable', async (t) => {
    const { user, other, bystander } = await people()
    await warm(t, { user, other, bystander, admin })
    const res = await a.inject({ method: 'PATCH', url: `/users/${user.id}`, headers: bearer(admin.access), payload: { disabled: true } })
    t.equal(res.statusCode, 200)
    t.equal(res.json().disabled, true)
    await flush(t)
    await refused(t, { 'first session': user, 'the other device': other })
    await works(t, { bystander, admin })
  })

  t.test('delete', async (t) => {
    const { user, other, bystander } = await people()
    await warm(t, { user, other, bystander, admin })
    const res = await a.inject({ method: 'DELETE', url: `/users/${user.id}`, headers: bearer(admin.access) })
    t.equal(res.statusCode, 204)
    ctx.forget(user.id)
    await flush(t)
    await refused(t, { 'first session': user, 'the other device': other })
    await works(t, { bystander, admin })
  })
})

t.test('a Redis restart without persistence brings nothing back either', async (t) => {
  const { user, other, bystander } = await people()
  await warm(t, { user, other, bystander })
  t.equal((await a.inject({ method: 'POST', url: '/auth/logout', headers: bearer(user.access) })).statusCode, 204)
  await redis.stop()
  await redis.start()
  t.equal(await redis.client.dbsize(), 0, 'the restarted Redis is empty')
  await refused(t, { 'logged-out session': user })
  await works(t, { 'the other device': other, bystander })
})
