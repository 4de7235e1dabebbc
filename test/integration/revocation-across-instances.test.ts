// Three instances on real sockets sharing PostgreSQL and Redis, under concurrent load:
// a revocation at any one is refused at the others (and at itself) on every request that
// *started* after the revoking call's response arrived (CONTRACT.md, revocation point 1),
// while tokens it did not revoke keep working (point 2).
import t, { type Test } from 'tap'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { build, context, httpCall as call, PASSWORD } from '../helper.js'

const ctx = await context(t)
const apps: FastifyInstance[] = []
for (let i = 0; i < 3; i++) {
  const app = await build(t, ctx)
  await app.listen({ port: 0, host: '127.0.0.1' })
  apps.push(app)
}
const bases = apps.map((a) => `http://127.0.0.1:${(a.server.address() as AddressInfo).port}`)
const [A, B, C] = bases

/** Workers per (instance, token) while a revocation happens. */
const WORKERS = 2
/** Bounds every load loop, whatever happens. */
const MAX_REQUESTS_PER_WORKER = 2000
/** How long the load goes on after the revoking response arrived. */
const AFTER_MS = 300

interface Session { username: string, id: string, access: string, refresh: string }

async function signIn (base: string, username: string): Promise<Session> {
  const res = await call(base, 'POST', '/auth/login', { body: { username, password: PASSWORD } })
  if (res.status !== 200) throw new Error(`login ${res.status}`)
  const who = await call(base, 'GET', '/auth/me', { token: res.body.access_token })
  return { username, id: who.body.id, access: res.body.access_token, refresh: res.body.refresh_token }
}

async function newUser (base: string, label: string, role?: 'admin'): Promise<Session> {
  const username = ctx.username(label)
  if (role === 'admin') await apps[0].users.register(username, PASSWORD, 'admin')
  else if ((await call(base, 'POST', '/auth/register', { body: { username, password: PASSWORD } })).status !== 201) throw new Error('register')
  return await signIn(base, username)
}

interface Sample { token: string, base: string, start: number, end: number, status: number }

/**
 * Fires GET /auth/me continuously at every (instance, token) pair, WORKERS at a time
 * each, while `revoke` runs; records when each request started and what it got.
 */
async function underLoad (targets: Array<{ base: string, token: string }>, revoke: () => Promise<number>) {
  const samples: Sample[] = []
  const state = { stop: false }
  const worker = async (base: string, token: string) => {
    for (let i = 0; i < MAX_REQUESTS_PER_WORKER && !state.stop; i++) {
      const start = performance.now()
      const res = await fetch(`${base}/auth/me`, { headers: { authorization: `Bearer ${token}` } })
      await res.arrayBuffer()
      samples.push({ token, base, start, end: performance.now(), status: res.status })
    }
  }
  const running = targets.flatMap(({ base, token }) => Array.from({ length: WORKERS }, () => worker(base, token)))
  // Let the load get going, so the revocation lands in the middle of it.
  await new Promise((resolve) => setTimeout(resolve, 150))
  const revokeStarted = performance.now()
  const status = await revoke()
  const responded = performance.now()
  await new Promise((resolve) => setTimeout(resolve, AFTER_MS))
  state.stop = true
  await Promise.all(running)
  return { samples, status, revokeStarted, responded }
}

/** The promise, checked on the samples of one revocation. */
function check (t: Test, run: Awaited<ReturnType<typeof underLoad>>, revoked: string[], kept: string[]) {
  const { samples, responded, revokeStarted } = run
  t.ok(samples.every((s) => s.status === 200 || s.status === 401), 'only 200 and 401, never an error')
  for (const token of revoked) {
    const mine = samples.filter((s) => s.token === token)
    const after = mine.filter((s) => s.start > responded)
    const before = mine.filter((s) => s.end < revokeStarted)
    t.ok(before.length > 0 && before.every((s) => s.status === 200), `served before the revoking call (${before.length} requests)`)
    t.ok(after.length > 0, `${after.length} requests started after the revoking response`)
    const accepted = after.filter((s) => s.status !== 401)
    t.equal(accepted.length, 0, 'every one of them refused')
    for (const base of bases.filter((b) => mine.some((s) => s.base === b))) {
      t.ok(after.some((s) => s.base === base), `load reached ${base} after the revocation`)
    }
  }
  for (const token of kept) {
    const mine = samples.filter((s) => s.token === token)
    t.ok(mine.length > 0 && mine.every((s) => s.status === 200), `a token that was not revoked kept working (${mine.length} requests)`)
  }
}

t.test('logout at A: refused at B and C from the next request on', async (t) => {
  const phone = await newUser(A, 'logout')
  const laptop = await signIn(C, phone.username)
  const run = await underLoad(
    [B, C].flatMap((base) => [{ base, token: phone.access }, { base, token: laptop.access }]),
    async () => (await call(A, 'POST', '/auth/logout', { token: phone.access })).status)
  t.equal(run.status, 204)
  check(t, run, [phone.access], [laptop.access])
  t.equal((await call(A, 'GET', '/auth/me', { token: phone.access })).status, 401, 'and at A, which revoked it')
  t.equal((await call(C, 'POST', '/auth/refresh', { body: { refresh_token: phone.refresh } })).status, 401, 'its refresh token too')
})

t.test('change-role at B: refused at A and C; the bystander is untouched', async (t) => {
  const admin = await newUser(B, 'admin', 'admin')
  const promoted = await newUser(A, 'promoted')
  const bystander = await newUser(C, 'bystand')
  const run = await underLoad(
    [A, C].flatMap((base) => [{ base, token: promoted.access }, { base, token: bystander.access }, { base, token: admin.access }]),
    async () => (await call(B, 'POST', '/auth/change-role', { token: admin.access, body: { username: promoted.username, role: 'admin' } })).status)
  t.equal(run.status, 200)
  check(t, run, [promoted.access], [bystander.access, admin.access])
  t.equal((await call(B, 'GET', '/auth/me', { token: promoted.access })).status, 401, 'and at B, which revoked it')
  const again = await signIn(C, promoted.username)
  t.equal((await call(A, 'GET', '/auth/me', { token: again.access })).body.role, 'admin', 'the new login carries the new role')
})

t.test('logout-all at C: every session refused at A and B', async (t) => {
  const one = await newUser(A, 'all')
  const two = await signIn(B, one.username)
  const other = await newUser(B, 'other')
  const run = await underLoad(
    [A, B].flatMap((base) => [{ base, token: one.access }, { base, token: two.access }, { base, token: other.access }]),
    async () => (await call(C, 'POST', '/auth/logout-all', { token: one.access })).status)
  t.equal(run.status, 204)
  check(t, run, [one.access, two.access], [other.access])
  t.equal((await call(A, 'POST', '/auth/refresh', { body: { refresh_token: two.refresh } })).status, 401, 'refresh tokens too')
})

t.test('refresh-token reuse at A ends the session at B and C', async (t) => {
  const user = await newUser(A, 'reuse')
  const rotated = await call(B, 'POST', '/auth/refresh', { body: { refresh_token: user.refresh } })
  t.equal(rotated.status, 200)
  const fresh = rotated.body.access_token as string
  const run = await underLoad(
    [B, C].flatMap((base) => [{ base, token: user.access }, { base, token: fresh }]),
    async () => (await call(A, 'POST', '/auth/refresh', { body: { refresh_token: user.refresh } })).status)
  t.equal(run.status, 401, 'the reused token is refused…')
  check(t, run, [user.access, fresh], [])
  t.equal((await call(C, 'POST', '/auth/refresh', { body: { refresh_token: rotated.body.refresh_token } })).status, 401, '…and the whole session ended')
})

t.test('disabling a user at B: refused at A and C', async (t) => {
  const admin = await newUser(B, 'admin2', 'admin')
  const user = await newUser(C, 'disabled')
  const run = await underLoad(
    [A, C].flatMap((base) => [{ base, token: user.access }, { base, token: admin.access }]),
    async () => (await call(B, 'PATCH', `/users/${user.id}`, { token: admin.access, body: { disabled: true } })).status)
  t.equal(run.status, 200)
  check(t, run, [user.access], [admin.access])
})
