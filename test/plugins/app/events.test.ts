// Security events pushed to other services: every kind of revocation writes the right
// events in its own transaction, and they reach receivers (an SSF push stream and a
// back-channel logout URI, both in this process) signed with the key the JWKS publishes,
// in order per subject, again after an outage, and not again after a refusal. The outbox
// keeps delivered rows only for EVENTS_RETENTION, undeliverable ones only for EVENTS_MAX_AGE.
import { generateKeyPairSync } from 'node:crypto'
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import pg from 'pg'
import { bearer, build, context, login, PASSWORD, signUp, type Account } from '../../helper.js'
import { jwtVerifier, receiver, type Received } from '../../support/receiver.js'

const SESSION_REVOKED = 'https://schemas.openid.net/secevent/caep/event-type/session-revoked'
const CREDENTIAL_CHANGE = 'https://schemas.openid.net/secevent/caep/event-type/credential-change'
const CLAIMS_CHANGE = 'https://schemas.openid.net/secevent/caep/event-type/token-claims-change'
const DISABLED = 'https://schemas.openid.net/secevent/risc/event-type/account-disabled'
const PURGED = 'https://schemas.openid.net/secevent/risc/event-type/account-purged'
const LOGOUT = 'http://schemas.openid.net/event/backchannel-logout'

export const SSF_PRIVATE_KEY = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
const ISSUER = 'https://auth.test'

const ctx = await context(t, { ownDatabase: true })
const app = await build(t, ctx, {
  SSF_PRIVATE_KEY,
  JWT_ISSUER: ISSUER,
  EVENTS_DISPATCH_INTERVAL_MS: 50,
  EVENTS_DELIVERY_TIMEOUT_MS: 1000,
  EVENTS_RETRY_MAX_DELAY: 1
})
const db = new pg.Pool({ connectionString: ctx.databaseUrl, max: 2 })
t.teardown(() => db.end())

const jwks = (await app.inject('/.well-known/jwks.json')).json()
const verify = jwtVerifier(jwks, ISSUER)
const recv = await receiver(t, verify)

// A registered client with a back-channel logout URI, and an SSF push stream of its own.
const client = await app.clients.create(`events ${ctx.tag}`, undefined, `${recv.url}/bcl`)
const basic = 'Basic ' + Buffer.from(`${client.clientId}:${client.clientSecret}`).toString('base64')
const created = await app.inject({
  method: 'POST',
  url: '/ssf/streams',
  headers: { authorization: basic },
  payload: { delivery: { method: 'urn:ietf:rfc:8935', endpoint_url: `${recv.url}/ssf`, authorization_header: 'Bearer stream-secret' } }
})
t.equal(created.statusCode, 201, 'stream created')

const claimsOf = (access: string) => JSON.parse(Buffer.from(access.split('.')[1], 'base64url').toString())
const eventOf = (r: Received) => Object.keys(r.claims.events)[0]

/** What reached the receiver about `userId` since `from`: [stream events], [logout tokens]. */
function about (userId: string, from: number): { ssf: Received[], bcl: Received[] } {
  const mine = recv.unique().slice(from).filter((r) => (r.claims.sub_id?.sub ?? r.claims.sub_id?.user?.sub ?? r.claims.sub) === userId)
  return { ssf: mine.filter((r) => r.path === '/ssf'), bcl: mine.filter((r) => r.path === '/bcl') }
}

async function admin (): Promise<Account> {
  return await signUp(app, ctx, { role: 'admin' })
}

/**
 * Runs one revoking call and waits for the `ssf` stream events and one logout token it
 * should produce; returns them.
 */
async function revoke (t: Test, user: Account, ssfCount: number, action: () => Promise<number>, expectStatus: number) {
  const from = recv.unique().length
  t.equal(await action(), expectStatus, 'the revoking call answered')
  await recv.waitFor(from + ssfCount + 1)
  // Nothing more comes for this user.
  await new Promise((resolve) => setTimeout(resolve, 150))
  return about(user.id, from)
}

t.test('every revocation kind sends the right events about the right subject, signed with the published key', async (t) => {
  const cases: Array<{ name: string, run: (u: Account) => Promise<number>, status: number, events: string[], reason: string, session: boolean, extra?: (ssf: Received[]) => void }> = [
    {
      name: 'logout',
      run: async (u) => (await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(u.access) })).statusCode,
      status: 204,
      events: [SESSION_REVOKED],
      reason: 'logout',
      session: true
    },
    {
      name: 'session deleted',
      run: async (u) => {
        const other = await login(app, u.username)
        return (await app.inject({ method: 'DELETE', url: `/auth/sessions/${claimsOf(u.access).sid as string}`, headers: bearer(other.access) })).statusCode
      },
      status: 204,
      events: [SESSION_REVOKED],
      reason: 'session_deleted',
      session: true
    },
    {
      name: 'refresh-token reuse',
      run: async (u) => {
        await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: u.refresh } })
        return (await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: u.refresh } })).statusCode
      },
      status: 401,
      events: [SESSION_REVOKED],
      reason: 'refresh_reuse',
      session: true
    },
    {
      name: 'logout-all',
      run: async (u) => (await app.inject({ method: 'POST', url: '/auth/logout-all', headers: bearer(u.access) })).statusCode,
      status: 204,
      events: [SESSION_REVOKED],
      reason: 'logout_all',
      session: false
    },
    {
      name: 'password change',
      run: async (u) => (await app.inject({ method: 'POST', url: '/auth/change-password', headers: bearer(u.access), payload: { currentPassword: PASSWORD, newPassword: 'another long passphrase' } })).statusCode,
      status: 204,
      events: [CREDENTIAL_CHANGE, SESSION_REVOKED],
      reason: 'password_changed',
      session: false,
      extra: (ssf) => t.match(ssf[0].claims.events[CREDENTIAL_CHANGE], { credential_type: 'password', change_type: 'update', initiating_entity: 'user' })
    },
    {
      name: 'temporary password set by an admin',
      run: async (u) => (await app.inject({ method: 'POST', url: `/users/${u.id}/password`, headers: bearer((await admin()).access), payload: { password: 'temporary horse staple' } })).statusCode,
      status: 204,
      events: [CREDENTIAL_CHANGE, SESSION_REVOKED],
      reason: 'password_changed',
      session: false,
      extra: (ssf) => t.match(ssf[0].claims.events[CREDENTIAL_CHANGE], { credential_type: 'password', change_type: 'update', initiating_entity: 'admin' })
    },
    {
      name: 'password reset',
      run: async (u) => (await app.inject({ method: 'POST', url: '/auth/password/reset', payload: { token: await app.recovery.issueReset(u.id), newPassword: 'another long passphrase' } })).statusCode,
      status: 204,
      events: [CREDENTIAL_CHANGE, SESSION_REVOKED],
      reason: 'password_changed',
      session: false,
      extra: (ssf) => t.match(ssf[0].claims.events[CREDENTIAL_CHANGE], { credential_type: 'password', change_type: 'update', initiating_entity: 'user' })
    },
    {
      name: 'role change',
      run: async (u) => (await app.inject({ method: 'POST', url: '/auth/change-role', headers: bearer((await admin()).access), payload: { username: u.username, role: 'admin' } })).statusCode,
      status: 200,
      events: [CLAIMS_CHANGE, SESSION_REVOKED],
      reason: 'role_changed',
      session: false,
      extra: (ssf) => t.strictSame(ssf[0].claims.events[CLAIMS_CHANGE].claims, { role: 'admin' })
    },
    {
      name: 'disable',
      run: async (u) => (await app.inject({ method: 'PATCH', url: `/users/${u.id}`, headers: bearer((await admin()).access), payload: { disabled: true } })).statusCode,
      status: 200,
      events: [DISABLED, SESSION_REVOKED],
      reason: 'user_disabled',
      session: false
    },
    {
      name: 'delete',
      run: async (u) => (await app.inject({ method: 'DELETE', url: `/users/${u.id}`, headers: bearer((await admin()).access) })).statusCode,
      status: 204,
      events: [PURGED, SESSION_REVOKED],
      reason: 'user_deleted',
      session: false
    }
  ]
  for (const c of cases) {
    const user = await signUp(app, ctx)
    const sid = claimsOf(user.access).sid
    const { ssf, bcl } = await revoke(t, user, c.events.length, async () => await c.run(user), c.status)
    t.strictSame(ssf.map(eventOf), c.events, `${c.name}: ${c.events.map((e) => e.split('/').pop()).join(', ')}`)
    for (const r of ssf) {
      t.equal(r.typ, 'secevent+jwt', `${c.name}: typed as a SET`)
      t.equal(r.claims.aud, client.clientId, `${c.name}: for the stream's client`)
      t.equal(r.authorization, 'Bearer stream-secret', `${c.name}: with the stream's authorization header`)
      t.match(r.claims, { iss: ISSUER, jti: /^[0-9a-f-]{36}$/, iat: Number })
    }
    const revoked = ssf[ssf.length - 1].claims
    t.strictSame(revoked.sub_id, c.session
      ? { format: 'complex', user: { format: 'iss_sub', iss: ISSUER, sub: user.id }, session: { format: 'opaque', id: sid } }
      : { format: 'iss_sub', iss: ISSUER, sub: user.id }, `${c.name}: subject`)
    t.equal(revoked.events[SESSION_REVOKED].reason_admin.en, c.reason, `${c.name}: reason`)
    t.equal(bcl.length, 1, `${c.name}: one logout token`)
    t.equal(bcl[0].typ, 'logout+jwt')
    t.match(bcl[0].claims, { iss: ISSUER, aud: client.clientId, sub: user.id, events: { [LOGOUT]: {} }, jti: String, iat: Number, exp: Number })
    t.equal(bcl[0].claims.sid, c.session ? sid : undefined, `${c.name}: sid only when one session ended`)
    c.extra?.(ssf)
    if (c.name === 'delete') ctx.forget(user.id)
  }
})

t.test('a receiver down for a while gets everything once back: each jti once after dedupe, in order per subject', async (t) => {
  const users = await Promise.all(Array.from({ length: 4 }, async () => await signUp(app, ctx)))
  const from = recv.unique().length
  await recv.down()
  // Per user: one session ended, then all of them (two events in a known order).
  for (const u of users) {
    const second = await login(app, u.username)
    t.equal((await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(second.access) })).statusCode, 204)
    t.equal((await app.inject({ method: 'POST', url: '/auth/logout-all', headers: bearer(u.access) })).statusCode, 204)
  }
  // Retries fail meanwhile (connection refused), with backoff.
  await new Promise((resolve) => setTimeout(resolve, 1200))
  const { rows: [pending] } = await db.query("SELECT count(*)::int AS n, max(attempts) AS attempts FROM security_events WHERE status = 'pending'")
  t.equal(pending.n, users.length * 4, 'all pending while the receiver is down')
  t.ok(pending.attempts >= 2, `tried again meanwhile (${pending.attempts as number} attempts)`)
  // Back, but slow with each user's first event: a later one sent beside it would overtake it.
  recv.delay = (claims) => claims.sid !== undefined || claims.sub_id?.session !== undefined ? 150 : 0
  t.teardown(() => { recv.delay = () => 0 })
  await recv.up()
  await recv.waitFor(from + users.length * 4)
  for (const u of users) {
    const { ssf, bcl } = about(u.id, from)
    t.strictSame(ssf.map((r) => r.claims.events[SESSION_REVOKED].reason_admin.en), ['logout', 'logout_all'], 'stream: in order')
    t.strictSame(bcl.map((r) => r.claims.sid === undefined ? 'all' : 'one'), ['one', 'all'], 'logout tokens: in order')
  }
  const jtis = recv.received.slice(0).map((r) => r.claims.jti)
  t.equal(new Set(jtis).size, recv.unique().length, 'deduped by jti')
  // The receiver has the last event a moment before its sender records the delivery.
  let left = -1
  for (let i = 0; i < 50 && left !== 0; i++) {
    if (i > 0) await new Promise((resolve) => setTimeout(resolve, 100))
    left = (await db.query("SELECT count(*)::int AS n FROM security_events WHERE status = 'pending'")).rows[0].n
  }
  t.equal(left, 0, 'nothing left pending')
})

t.test('a receiver that refuses an event (400) is not sent it again; the next one goes on', async (t) => {
  const user = await signUp(app, ctx)
  recv.mode = 'reject'
  const before = recv.received.length
  t.equal((await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(user.access) })).statusCode, 204)
  const deadline = Date.now() + 5000
  let failed: any[] = []
  while (Date.now() < deadline) {
    failed = (await db.query("SELECT last_error, attempts FROM security_events WHERE subject = $1 AND status = 'failed'", [user.id])).rows
    if (failed.length === 2) break
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  t.strictSame(failed.map((r) => [r.last_error, r.attempts]), [['400 invalid_request', 1], ['400 invalid_request', 1]], 'failed after one attempt, with the receiver\'s err code')
  recv.mode = 'accept'
  const next = await login(app, user.username)
  const from = recv.unique().length
  t.equal((await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(next.access) })).statusCode, 204)
  await recv.waitFor(from + 2)
  t.equal(recv.received.length - before, 2, 'only the later events arrived, the refused ones never again')
})

t.test('retention: delivered rows go after EVENTS_RETENTION, undeliverable ones fail after EVENTS_MAX_AGE', async (t) => {
  const short = await build(t, ctx, { SSF_PRIVATE_KEY, JWT_ISSUER: ISSUER, EVENTS_DISPATCH_INTERVAL_MS: 60_000, EVENTS_RETENTION: 1, EVENTS_MAX_AGE: 1 })
  await short.eventDispatcher?.close() // only its housekeeping is under test
  const user = await signUp(short, ctx)
  await recv.down()
  t.teardown(async () => await recv.up())
  t.equal((await short.inject({ method: 'POST', url: '/auth/logout', headers: bearer(user.access) })).statusCode, 204)
  const count = async (status: string) => (await db.query('SELECT count(*)::int AS n FROM security_events WHERE subject = $1 AND status = $2', [user.id, status])).rows[0].n
  t.equal(await count('pending'), 2, 'written, undeliverable')
  await new Promise((resolve) => setTimeout(resolve, 1100))
  const housekeeper = short.eventDispatcher as NonNullable<FastifyInstance['eventDispatcher']>
  // The other instance's retries may hold a row for an instant (SKIP LOCKED passes it by).
  for (let i = 0; i < 50 && await count('pending') > 0; i++) await housekeeper.housekeeping()
  t.equal(await count('pending'), 0, 'given up after EVENTS_MAX_AGE')
  t.equal(await count('failed'), 2)
  await new Promise((resolve) => setTimeout(resolve, 1100))
  const second = await housekeeper.housekeeping()
  t.ok(second.purged >= 2, 'deleted after EVENTS_RETENTION')
  t.equal(await count('failed'), 0)
  const { rows: [delivered] } = await db.query("SELECT count(*)::int AS n FROM security_events WHERE status = 'delivered'")
  t.equal(delivered.n, 0, 'delivered rows older than the retention are gone too')
})

t.test('/metrics: pending, delivered, failed, oldest undelivered age', async (t) => {
  const text = (await app.inject('/metrics')).body
  for (const name of ['auth_security_events_pending', 'auth_security_events_oldest_pending_age_seconds',
    'auth_security_events_delivered_total{channel="ssf"}', 'auth_security_events_delivered_total{channel="backchannel"}',
    'auth_security_events_failed_total{reason="rejected"}', 'auth_security_events_failed_total{reason="expired"}']) {
    t.match(text, name, name)
  }
  t.match(text, /auth_security_events_failed_total\{reason="rejected"\} [1-9]/, 'the refusals above are counted')
})

t.test('without a key no event is written, and the SSF endpoints say why (501)', async (t) => {
  const plain = await build(t, ctx)
  const user = await signUp(plain, ctx)
  t.equal((await plain.inject({ method: 'POST', url: '/auth/logout', headers: bearer(user.access) })).statusCode, 204)
  const { rows: [n] } = await db.query('SELECT count(*)::int AS n FROM security_events WHERE subject = $1', [user.id])
  t.equal(n.n, 0, 'nothing in the outbox')
  t.equal(plain.eventDispatcher, null, 'no dispatcher')
  for (const url of ['/.well-known/ssf-configuration', '/ssf/streams']) {
    const res = await plain.inject({ method: 'GET', url, headers: { authorization: basic } })
    t.equal(res.statusCode, 501, url)
    t.match(res.json(), { code: 'AUTH_NOT_CONFIGURED', message: /JWT_PRIVATE_KEY or SSF_PRIVATE_KEY/ })
  }
  t.equal((await plain.inject('/.well-known/jwks.json')).statusCode, 404, 'no JWKS either')
})
