// The outbox across instances: an instance killed (SIGKILL, a real process) while it was
// pushing a committed event loses nothing, another instance delivers it; three instances
// dispatching at once deliver every event, none twice, in order per subject; and the delay
// from a revoking call to the receiver under a bounded load, measured and reported.
import { generateKeyPairSync } from 'node:crypto'
import t from 'tap'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { BASE_REDIS_URL, build, context, freePort, httpCall, JWT_SECRET, PASSWORD, signUp, type Account } from '../helper.js'
import { jwtVerifier, receiver, type Received } from '../support/receiver.js'
import { runService } from '../support/service.js'

const SSF_PRIVATE_KEY = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
const SESSION_REVOKED = 'https://schemas.openid.net/secevent/caep/event-type/session-revoked'
const FAST = { EVENTS_DISPATCH_INTERVAL_MS: 100, EVENTS_DELIVERY_TIMEOUT_MS: 1000, EVENTS_RETRY_MAX_DELAY: 1 }

const ctx = await context(t, { ownDatabase: true })
// Sets up the database, users and receivers; it does not dispatch.
const setup = await build(t, ctx, { SSF_PRIVATE_KEY, ...FAST })
await setup.eventDispatcher?.close()
const recv = await receiver(t, jwtVerifier((await setup.inject('/.well-known/jwks.json')).json(), 'auth-service'))
const client = await setup.clients.create(`delivery ${ctx.tag}`, undefined, `${recv.url}/bcl`)
const basic = 'Basic ' + Buffer.from(`${client.clientId}:${client.clientSecret}`).toString('base64')
const stream = await setup.inject({
  method: 'POST', url: '/ssf/streams', headers: { authorization: basic }, payload: { delivery: { method: 'urn:ietf:rfc:8935', endpoint_url: `${recv.url}/ssf` } }
})
t.equal(stream.statusCode, 201)

const subjectOf = (r: Received): string => r.claims.sub_id?.sub ?? r.claims.sub_id?.user?.sub ?? r.claims.sub
/** 'logout' or 'logout_all', from a SET or a logout token. */
const kindOf = (r: Received): string => r.path === '/ssf' ? r.claims.events[SESSION_REVOKED].reason_admin.en : r.claims.sid === undefined ? 'logout_all' : 'logout'

t.test('an instance killed while pushing a committed event: another instance delivers it', async (t) => {
  const port = await freePort()
  const env = {
    NODE_ENV: 'test',
    HOST: '127.0.0.1',
    DATABASE_URL: ctx.databaseUrl,
    REDIS_URL: BASE_REDIS_URL,
    REDIS_KEY_PREFIX: ctx.redisKeyPrefix,
    JWT_SECRET,
    SSF_PRIVATE_KEY,
    LOG_LEVEL: 'warn',
    ARGON2_MEMORY_COST: '8192',
    ARGON2_TIME_COST: '1',
    ...Object.fromEntries(Object.entries(FAST).map(([k, v]) => [k, String(v)]))
  }
  const user = await signUp(setup, ctx)
  const first = runService(t, { ...env, PORT: String(port) })
  const base = `http://127.0.0.1:${port}`
  await first.listening(base)

  const from = recv.unique().length
  recv.mode = 'hang'
  const res = await httpCall(base, 'POST', '/auth/logout', { token: user.access })
  t.equal(res.status, 204, 'committed')
  for (let i = 0; i < 100 && recv.held < 1; i++) await new Promise((resolve) => setTimeout(resolve, 50))
  t.ok(recv.held >= 1, 'the instance is pushing it, and the receiver has not answered')
  const { signal } = await first.kill()
  t.equal(signal, 'SIGKILL', 'killed mid-delivery')
  recv.mode = 'accept'

  const port2 = await freePort()
  const second = runService(t, { ...env, PORT: String(port2) })
  await second.listening(`http://127.0.0.1:${port2}`)
  const got = (await recv.waitFor(from + 2, 20_000)).slice(from)
  t.strictSame(got.map((r) => [r.path, subjectOf(r), kindOf(r)]).sort(), [['/bcl', user.id, 'logout'], ['/ssf', user.id, 'logout']], 'both events, once the lease ran out')
  await second.stop()
})

t.test('three instances dispatching: every event delivered, none twice, in order per subject; the delay measured', async (t) => {
  const apps: FastifyInstance[] = []
  for (let i = 0; i < 3; i++) {
    const app = await build(t, ctx, { SSF_PRIVATE_KEY, ...FAST })
    await app.listen({ port: 0, host: '127.0.0.1' })
    apps.push(app)
  }
  const bases = apps.map((a) => `http://127.0.0.1:${(a.server.address() as AddressInfo).port}`)
  const USERS = 40
  const CONCURRENCY = 8
  const users: Array<Account & { second: string }> = []
  for (let i = 0; i < USERS; i++) {
    const u = await signUp(setup, ctx)
    const second = await httpCall(bases[i % 3], 'POST', '/auth/login', { body: { username: u.username, password: PASSWORD } })
    users.push({ ...u, second: second.body.access_token as string })
  }
  const from = recv.received.length
  const startedAt = new Map<string, number>()
  const answeredAt = new Map<string, number>()
  const revoked = new Set<string>()
  // A revoking call is 204, or 503 when Redis did not answer in time (a loaded machine):
  // then nothing was committed, and no event is due for it.
  const revoke = async (base: string, path: string, token: string, key: string) => {
    startedAt.set(key, performance.now())
    const { status } = await httpCall(base, 'POST', path, { token })
    answeredAt.set(key, performance.now())
    t.ok(status === 204 || status === 503, `${path}: ${status}`)
    if (status === 204) revoked.add(key)
  }
  let next = 0
  // Each user: one session ended at one instance, then all of them at another.
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < users.length) {
      const i = next++
      const u = users[i]
      await revoke(bases[i % 3], '/auth/logout', u.second, `${u.id} logout`)
      await revoke(bases[(i + 1) % 3], '/auth/logout-all', u.access, `${u.id} logout_all`)
    }
  }))
  t.ok(revoked.size >= USERS, `${revoked.size} of ${USERS * 2} revoking calls committed`)
  const expected = revoked.size * 2
  const deadline = Date.now() + 20_000
  while (recv.received.length - from < expected && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
  // A little longer: a duplicate would arrive now.
  await new Promise((resolve) => setTimeout(resolve, 500))
  const got = recv.received.slice(from)
  const jtis = got.map((r) => r.claims.jti)
  t.equal(new Set(jtis).size, expected, 'every event arrived')
  t.equal(jtis.length, expected, 'none twice')
  t.strictSame(new Set(got.map((r) => `${subjectOf(r)} ${kindOf(r)}`)), revoked, 'for exactly the committed calls')
  for (const u of users.filter((u) => revoked.has(`${u.id} logout`) && revoked.has(`${u.id} logout_all`))) {
    for (const path of ['/ssf', '/bcl']) {
      t.strictSame(got.filter((r) => r.path === path && subjectOf(r) === u.id).map(kindOf), ['logout', 'logout_all'], `${path}: in order`)
    }
  }
  const since = (times: Map<string, number>) => got.map((r) => r.at - (times.get(`${subjectOf(r)} ${kindOf(r)}`) as number)).sort((a, b) => a - b)
  const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]
  const fromCall = since(startedAt)
  const fromAnswer = since(answeredAt)
  const calls = [...revoked].map((key) => (answeredAt.get(key) as number) - (startedAt.get(key) as number)).sort((a, b) => a - b)
  t.comment(`${fromCall.length} events, ${CONCURRENCY} revoking calls at a time over 3 instances: ` +
    `from the call to the receiver median ${pct(fromCall, 0.5).toFixed(1)} ms, p99 ${pct(fromCall, 0.99).toFixed(1)} ms; ` +
    `from its answer median ${pct(fromAnswer, 0.5).toFixed(1)} ms, p99 ${pct(fromAnswer, 0.99).toFixed(1)} ms; ` +
    `the calls themselves median ${pct(calls, 0.5).toFixed(1)} ms, p99 ${pct(calls, 0.99).toFixed(1)} ms`)
  t.ok(pct(fromCall, 0.99) < 3000, 'p99 within 3 s, even on a loaded machine')
})
