// /.well-known/ssf-configuration and /ssf: stream management for registered clients (SSF
// 1.0), and poll delivery with acknowledgements (RFC 8936), SETs verified against the JWKS.
import { generateKeyPairSync } from 'node:crypto'
import t from 'tap'
import pg from 'pg'
import { bearer, build, context, signUp } from '../helper.js'
import { jwtVerifier } from '../support/receiver.js'

const SSF_PRIVATE_KEY = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
const SESSION_REVOKED = 'https://schemas.openid.net/secevent/caep/event-type/session-revoked'
const VERIFICATION = 'https://schemas.openid.net/secevent/ssf/event-type/verification'
const PUSH = 'urn:ietf:rfc:8935'
const POLL = 'urn:ietf:rfc:8936'

const ctx = await context(t, { ownDatabase: true })
const app = await build(t, ctx, { SSF_PRIVATE_KEY, PUBLIC_URL: 'https://auth.example.com', EVENTS_DISPATCH_INTERVAL_MS: 50 })
const db = new pg.Pool({ connectionString: ctx.databaseUrl, max: 2 })
t.teardown(() => db.end())
const verify = jwtVerifier((await app.inject('/.well-known/jwks.json')).json(), 'auth-service')

async function newClient (label: string) {
  const c = await app.clients.create(`${label} ${ctx.tag}`)
  return { ...c, authorization: 'Basic ' + Buffer.from(`${c.clientId}:${c.clientSecret}`).toString('base64') }
}
const alice = await newClient('alice')
const bob = await newClient('bob')

function call (client: { authorization: string } | null, method: string, url: string, payload?: unknown) {
  return app.inject({ method: method as 'GET', url, headers: client === null ? {} : { authorization: client.authorization }, ...(payload === undefined ? {} : { payload: payload as object }) })
}

t.test('GET /.well-known/ssf-configuration describes the transmitter', async (t) => {
  const res = await app.inject('/.well-known/ssf-configuration')
  t.equal(res.statusCode, 200)
  t.strictSame(res.json(), {
    spec_version: '1_0',
    issuer: 'auth-service',
    jwks_uri: 'https://auth.example.com/.well-known/jwks.json',
    delivery_methods_supported: [PUSH, POLL],
    configuration_endpoint: 'https://auth.example.com/ssf/streams',
    status_endpoint: 'https://auth.example.com/ssf/streams/status',
    verification_endpoint: 'https://auth.example.com/ssf/streams/verify',
    authorization_schemes: [{ spec_urn: 'urn:ietf:rfc:7617' }],
    default_subjects: 'ALL'
  })
  const jwks = (await app.inject('/.well-known/jwks.json')).json()
  t.equal(jwks.keys.length, 1, 'the JWKS publishes SSF_PRIVATE_KEY\'s public half')
  t.match(jwks.keys[0], { kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig', kid: String })
})

t.test('streams: create, read, update, replace, status, delete; each client sees only its own', async (t) => {
  t.equal((await call(null, 'GET', '/ssf/streams')).statusCode, 401, 'no client: 401')
  const wrong = await call({ authorization: 'Basic ' + Buffer.from(`${alice.clientId}:nope`).toString('base64') }, 'GET', '/ssf/streams')
  t.equal(wrong.statusCode, 401)
  t.match(wrong.headers['www-authenticate'], /^Basic /)

  const created = await call(alice, 'POST', '/ssf/streams', {
    delivery: { method: PUSH, endpoint_url: 'https://receiver.example.com/events', authorization_header: 'Bearer s3cret' },
    events_requested: [SESSION_REVOKED, 'https://example.com/unknown-event'],
    description: 'prod'
  })
  t.equal(created.statusCode, 201)
  t.equal(created.headers['cache-control'], 'no-store')
  const stream = created.json()
  t.match(stream, {
    stream_id: /^[0-9a-f-]{36}$/,
    iss: 'auth-service',
    aud: alice.clientId,
    events_requested: [SESSION_REVOKED, 'https://example.com/unknown-event'],
    events_delivered: [SESSION_REVOKED],
    delivery: { method: PUSH, endpoint_url: 'https://receiver.example.com/events' },
    description: 'prod'
  })
  t.equal(stream.events_supported.length, 5)
  t.notOk('authorization_header' in stream.delivery, 'the receiver\'s secret is never shown back')

  t.strictSame((await call(alice, 'GET', `/ssf/streams?stream_id=${stream.stream_id as string}`)).json(), stream, 'read one')
  t.strictSame((await call(alice, 'GET', '/ssf/streams')).json(), [stream], 'read all of the client\'s')
  t.strictSame((await call(bob, 'GET', '/ssf/streams')).json(), [], 'another client sees none of them')
  for (const [method, url, body] of [
    ['GET', `/ssf/streams?stream_id=${stream.stream_id as string}`, undefined],
    ['PATCH', '/ssf/streams', { stream_id: stream.stream_id, description: 'mine now' }],
    ['DELETE', `/ssf/streams?stream_id=${stream.stream_id as string}`, undefined],
    ['GET', `/ssf/streams/status?stream_id=${stream.stream_id as string}`, undefined],
    ['POST', '/ssf/streams/verify', { stream_id: stream.stream_id }]
  ] as const) {
    t.equal((await call(bob, method, url, body)).statusCode, 404, `${method} ${url.split('?')[0]} of another client's stream: 404`)
  }

  const patched = await call(alice, 'PATCH', '/ssf/streams', { stream_id: stream.stream_id, description: 'renamed' })
  t.equal(patched.statusCode, 200)
  t.match(patched.json(), { description: 'renamed', events_delivered: [SESSION_REVOKED], delivery: { method: PUSH } }, 'PATCH keeps what it does not name')
  const replaced = await call(alice, 'PUT', '/ssf/streams', { stream_id: stream.stream_id, delivery: { method: POLL } })
  t.equal(replaced.statusCode, 200)
  t.match(replaced.json(), { delivery: { method: POLL, endpoint_url: `https://auth.example.com/ssf/poll/${stream.stream_id as string}` } })
  t.equal(replaced.json().events_delivered.length, 5, 'PUT: what is left out takes its default (every event)')
  t.notOk('description' in replaced.json())

  const status = () => call(alice, 'GET', `/ssf/streams/status?stream_id=${stream.stream_id as string}`)
  t.strictSame((await status()).json(), { stream_id: stream.stream_id, status: 'enabled' })
  const paused = await call(alice, 'POST', '/ssf/streams/status', { stream_id: stream.stream_id, status: 'paused', reason: 'maintenance' })
  t.strictSame(paused.json(), { stream_id: stream.stream_id, status: 'paused', reason: 'maintenance' })
  t.strictSame((await status()).json(), paused.json())
  t.equal((await call(alice, 'POST', '/ssf/streams/verify', { stream_id: stream.stream_id })).statusCode, 409, 'no verification on a paused stream')

  for (const bad of [
    { delivery: { method: PUSH } },
    { delivery: { method: PUSH, endpoint_url: 'ftp://x.example.com/' } },
    { delivery: { method: 'urn:example:carrier-pigeon' } },
    { events_requested: 'all' }
  ]) {
    t.equal((await call(alice, 'POST', '/ssf/streams', bad)).statusCode, 400, JSON.stringify(bad))
  }
  t.equal((await call(alice, 'DELETE', `/ssf/streams?stream_id=${stream.stream_id as string}`)).statusCode, 204)
  t.equal((await status()).statusCode, 404, 'gone')

  // At most 10 streams a client.
  const made = []
  for (let i = 0; i < 11; i++) made.push((await call(bob, 'POST', '/ssf/streams', { delivery: { method: POLL } })).statusCode)
  t.strictSame(made, [...Array(10).fill(201), 409])
  for (const s of (await call(bob, 'GET', '/ssf/streams')).json()) await call(bob, 'DELETE', `/ssf/streams?stream_id=${s.stream_id as string}`)
})

t.test('poll delivery (RFC 8936): SETs signed as pushed ones, acknowledged ones never again, in order', async (t) => {
  const stream = (await call(alice, 'POST', '/ssf/streams', { delivery: { method: POLL }, events_requested: [SESSION_REVOKED] })).json()
  const url = `/ssf/poll/${stream.stream_id as string}`
  t.strictSame((await call(alice, 'POST', url, { returnImmediately: true })).json(), { sets: {} }, 'nothing yet')

  const user = await signUp(app, ctx)
  const sessions = [user.access]
  for (let i = 0; i < 2; i++) sessions.push((await app.inject({ method: 'POST', url: '/auth/login', payload: { username: user.username, password: user.password } })).json().access_token)
  for (const access of sessions) t.equal((await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(access) })).statusCode, 204)

  const first = await call(alice, 'POST', url, { maxEvents: 2, returnImmediately: true })
  t.equal(first.statusCode, 200)
  t.equal(first.headers['cache-control'], 'no-store')
  const page = first.json()
  t.equal(Object.keys(page.sets).length, 2)
  t.equal(page.moreAvailable, true)
  const decoded = Object.entries(page.sets as Record<string, string>).map(([jti, set]) => ({ jti, ...verify(set) }))
  for (const d of decoded) {
    t.equal(d.typ, 'secevent+jwt')
    t.equal(d.claims.jti, d.jti, 'keyed by jti')
    t.equal(d.claims.aud, alice.clientId)
  }
  const sidOf = (access: string) => JSON.parse(Buffer.from(access.split('.')[1], 'base64url').toString()).sid
  t.strictSame(decoded.map((d) => d.claims.sub_id.session.id), sessions.slice(0, 2).map(sidOf), 'oldest first')

  // Acknowledge the first, report an error for the second: the third comes next.
  const second = (await call(alice, 'POST', url, {
    ack: [decoded[0].jti], setErrs: { [decoded[1].jti]: { err: 'invalid_request', description: 'not for us' } }, returnImmediately: true
  })).json()
  const rest = Object.values(second.sets as Record<string, string>).map((set) => verify(set).claims)
  t.strictSame(rest.map((c) => c.sub_id.session.id), [sidOf(sessions[2])], 'only the third: neither the acknowledged nor the refused one again')
  t.notOk(second.moreAvailable)
  t.strictSame((await call(alice, 'POST', url, { ack: [rest[0].jti], returnImmediately: true })).json(), { sets: {} }, 'all acknowledged')

  // A long poll answers as soon as an event is committed.
  const waiting = call(alice, 'POST', url, {})
  await new Promise((resolve) => setTimeout(resolve, 200))
  const started = Date.now()
  const other = await signUp(app, ctx)
  await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(other.access) })
  const woken = (await waiting).json()
  t.equal(Object.keys(woken.sets).length, 1, 'the long poll got the event')
  t.ok(Date.now() - started < 5000, 'without waiting out its 30 s')

  t.equal((await call(bob, 'POST', url, { returnImmediately: true })).statusCode, 404, 'another client cannot poll it')
  const push = (await call(alice, 'POST', '/ssf/streams', { delivery: { method: PUSH, endpoint_url: 'http://127.0.0.1:9/x' } })).json()
  t.equal((await call(alice, 'POST', `/ssf/poll/${push.stream_id as string}`, { returnImmediately: true })).statusCode, 400, 'a push stream is not polled')
  t.equal((await call(alice, 'POST', url, { ack: ['not-a-jti'] })).statusCode, 400)
})

t.test('verification: the event reaches the stream with the state given', async (t) => {
  const stream = (await call(alice, 'POST', '/ssf/streams', { delivery: { method: POLL } })).json()
  t.equal((await call(alice, 'POST', '/ssf/streams/verify', { stream_id: stream.stream_id, state: 'abc123' })).statusCode, 204)
  const sets = (await call(alice, 'POST', `/ssf/poll/${stream.stream_id as string}`, { returnImmediately: true })).json().sets
  const [claims] = Object.values(sets as Record<string, string>).map((set) => verify(set).claims)
  t.strictSame(claims.events, { [VERIFICATION]: { state: 'abc123' } })
  t.strictSame(claims.sub_id, { format: 'opaque', id: stream.stream_id })
})

t.test('a disabled stream keeps nothing; a paused one keeps its events until enabled', async (t) => {
  const stream = (await call(alice, 'POST', '/ssf/streams', { delivery: { method: POLL } })).json()
  const url = `/ssf/poll/${stream.stream_id as string}`
  const setStatus = (status: string) => call(alice, 'POST', '/ssf/streams/status', { stream_id: stream.stream_id, status })
  const logout = async () => {
    const u = await signUp(app, ctx)
    await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(u.access) })
  }
  await setStatus('paused')
  await logout()
  t.strictSame((await call(alice, 'POST', url, { returnImmediately: true })).json(), { sets: {} }, 'paused: held back')
  await setStatus('enabled')
  t.equal(Object.keys((await call(alice, 'POST', url, { returnImmediately: true })).json().sets).length, 1, 'enabled: delivered')
  await setStatus('disabled')
  await logout()
  await setStatus('enabled')
  t.strictSame((await call(alice, 'POST', url, { returnImmediately: true })).json(), { sets: {} }, 'disabled: never kept')
})

t.test('PATCH /clients/:id sets and clears the back-channel logout URI (admin)', async (t) => {
  const admin = await signUp(app, ctx, { role: 'admin' })
  const set = await app.inject({ method: 'PATCH', url: `/clients/${bob.id}`, headers: bearer(admin.access), payload: { backchannelLogoutUri: 'https://bob.example.com/logout' } })
  t.equal(set.statusCode, 200)
  t.match(set.json(), { id: bob.id, backchannelLogoutUri: 'https://bob.example.com/logout' })
  t.notOk('clientSecret' in set.json())
  t.equal((await app.inject({ method: 'PATCH', url: `/clients/${bob.id}`, headers: bearer(admin.access), payload: { backchannelLogoutUri: 'https://x.example.com/#frag' } })).statusCode, 400, 'no fragment')
  const user = await signUp(app, ctx)
  t.equal((await app.inject({ method: 'PATCH', url: `/clients/${bob.id}`, headers: bearer(user.access), payload: { backchannelLogoutUri: null } })).statusCode, 403)
  const cleared = await app.inject({ method: 'PATCH', url: `/clients/${bob.id}`, headers: bearer(admin.access), payload: { backchannelLogoutUri: null } })
  t.equal(cleared.json().backchannelLogoutUri, null)
  const listed = (await app.inject({ method: 'GET', url: '/clients', headers: bearer(admin.access) })).json()
  t.equal(listed.find((c: { id: string }) => c.id === bob.id).backchannelLogoutUri, null)
  const audit = (await app.inject({ method: 'GET', url: '/audit?limit=5', headers: bearer(admin.access) })).json()
  t.ok(audit.items.some((e: { type: string }) => e.type === 'client_updated'), 'audited')
})

t.test('races: creations at once respect the cap; a client deleted meanwhile creates nothing (never a 500)', async (t) => {
  const carol = await newClient('carol')
  const statuses = await Promise.all(Array.from({ length: 20 }, async () => (await call(carol, 'POST', '/ssf/streams', { delivery: { method: POLL } })).statusCode))
  t.strictSame(statuses.sort(), [...Array(10).fill(201), ...Array(10).fill(409)], 'exactly 10 created')

  // A creation authenticated before the deletion, held inside its transaction while the
  // client is deleted: the deletion waits for it (then takes its stream along), never a 500.
  const dave = await newClient('dave')
  const repo = (app.events as unknown as { repository: { streams: (...args: unknown[]) => Promise<unknown> } }).repository
  const streams = repo.streams
  let release!: () => void
  const gate = new Promise<void>((resolve) => { release = resolve })
  let reached!: () => void
  const atGate = new Promise<void>((resolve) => { reached = resolve })
  repo.streams = async function (...args: unknown[]) {
    repo.streams = streams
    reached()
    await gate
    return await streams.apply(this, args)
  }
  const creating = app.events.createStream(dave, { delivery: { method: POLL } }, 'https://x')
    .then(() => 201, (err: { statusCode?: number }) => err.statusCode ?? 500)
  await atGate
  const deleting = app.clients.delete(dave.id)
  await new Promise((resolve) => setTimeout(resolve, 200))
  release()
  const [outcome] = await Promise.all([creating, deleting])
  t.ok(outcome === 201 || outcome === 401, `the creation answered ${outcome}`)
  const { rows } = await db.query('SELECT count(*)::int AS n FROM ssf_streams WHERE client_id = $1', [dave.id])
  t.equal(rows[0].n, 0, 'nothing left of the deleted client')
})
