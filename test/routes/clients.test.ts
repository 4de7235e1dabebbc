// /clients: registered clients, admins only, every change audited. A secret is shown once
// (201 on creation, 200 on rotation, never cached) and kept only as a SHA-256; the list
// never shows one; a rotated or deleted client's old credentials are refused at once.
// A database of this file's own: the list is asserted over every client there is.
import { createHash } from 'node:crypto'
import t, { type Test } from 'tap'
import type { LightMyRequestResponse } from 'fastify'
import { bearer, build, context, holdRows, me, signUp, untilLockWaiters, type Account } from '../helper.js'

const ctx = await context(t, { ownDatabase: true })
const app = await build(t, ctx)
const root = await signUp(app, ctx, { role: 'admin', label: 'root' })
const asRoot = bearer(root.access)

const UNKNOWN_ID = '00000000-0000-4000-8000-000000000000'
let counter = 0
const uniqueName = (label = 'svc') => `${label}-${ctx.tag}-${++counter}`

function send (method: 'GET' | 'POST' | 'DELETE', url: string, headers: Record<string, string> = asRoot, payload?: unknown): Promise<LightMyRequestResponse> {
  return app.inject({ method, url, headers, payload: payload as any })
}

function basic (id: string, secret: string): string {
  return `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`
}

async function eventsOf (type: string, id: string): Promise<Array<{ actorId: string, detail: Record<string, unknown> }>> {
  const { rows } = await app.db.query('SELECT actor_id, detail FROM audit_events WHERE type = $1 AND detail->>\'id\' = $2', [type, id])
  return rows.map((r) => ({ actorId: r.actor_id, detail: r.detail }))
}

t.test('admins only: 401 without a valid token, 403 for a user, on every route', async (t) => {
  const user = await signUp(app, ctx)
  const routes: Array<['GET' | 'POST' | 'DELETE', string, unknown?]> = [
    ['POST', '/clients', { name: uniqueName() }],
    ['GET', '/clients'],
    ['DELETE', `/clients/${UNKNOWN_ID}`],
    ['POST', `/clients/${UNKNOWN_ID}/secret`]
  ]
  for (const [method, url, payload] of routes) {
    const anonymous = await send(method, url, {}, payload)
    t.equal(anonymous.statusCode, 401, `${method} ${url} anonymous`)
    t.match(anonymous.headers['www-authenticate'], /^Bearer/)
    const forbidden = await send(method, url, bearer(user.access), payload)
    t.equal(forbidden.statusCode, 403, `${method} ${url} as a user`)
    t.match(forbidden.json(), { error: 'Forbidden' })
  }
  t.strictSame((await send('GET', '/clients')).json(), [], 'nothing was created')
})

t.test('POST /clients: 201, the secret shown once and stored only as a hash', async (t) => {
  const name = uniqueName('Billing API')
  const res = await send('POST', '/clients', asRoot, { name })
  t.equal(res.statusCode, 201)
  t.equal(res.headers['cache-control'], 'no-store')
  const body = res.json()
  t.strictSame(Object.keys(body).sort(), ['backchannelLogoutUri', 'clientId', 'clientSecret', 'createdAt', 'id', 'name'])
  t.match(body, { id: /^[0-9a-f-]{36}$/, clientId: /^[A-Za-z0-9_-]{22}$/, clientSecret: /^[A-Za-z0-9_-]{43}$/, name })
  t.ok(Math.abs(Date.parse(body.createdAt) - Date.now()) < 60_000)

  const { rows } = await app.db.query('SELECT * FROM clients WHERE id = $1', [body.id])
  t.equal(rows.length, 1)
  t.strictSame(rows[0].secret_hash, createHash('sha256').update(body.clientSecret).digest(), 'only the SHA-256 is stored')
  t.notMatch(JSON.stringify(rows[0]), body.clientSecret, 'not the secret itself')
  t.ok(await app.clients.authenticateBasic(basic(body.clientId, body.clientSecret)), 'the credentials authenticate')

  const events = await eventsOf('client_created', body.id)
  t.equal(events.length, 1, 'audited')
  t.strictSame(events[0], { actorId: root.id, detail: { id: body.id, clientId: body.clientId, name } })

  const other = (await send('POST', '/clients', asRoot, { name: uniqueName() })).json()
  t.not(other.clientId, body.clientId)
  t.not(other.clientSecret, body.clientSecret)
})

t.test('POST /clients: 409 for a name taken in any case, 400 for a bad one, 415 for a non-JSON body', async (t) => {
  const name = uniqueName('Taken')
  t.equal((await send('POST', '/clients', asRoot, { name })).statusCode, 201)
  const taken = await send('POST', '/clients', asRoot, { name: name.toUpperCase() })
  t.equal(taken.statusCode, 409)
  t.match(taken.json(), { statusCode: 409, error: 'Conflict', message: 'Client name is already taken' })

  const before = (await send('GET', '/clients')).json().length
  for (const payload of [{}, { name: 'ab' }, { name: 'x'.repeat(65) }, { name: 'two  spaces' }, { name: ' leading' },
    { name: 'semi;colon' }, { name: 'nul\u0000' }, { name: 12345678 }, { name: null }, { name: ['svc-a'] }]) {
    const res = await send('POST', '/clients', asRoot, payload)
    t.equal(res.statusCode, 400, JSON.stringify(payload))
  }
  const text = await app.inject({ method: 'POST', url: '/clients', headers: { ...asRoot, 'content-type': 'text/plain' }, payload: 'svc' })
  t.equal(text.statusCode, 415)
  t.equal((await send('GET', '/clients')).json().length, before, 'nothing was created')
})

t.test('GET /clients: every client, oldest first, never a secret', async (t) => {
  const created = []
  for (let i = 0; i < 3; i++) created.push((await send('POST', '/clients', asRoot, { name: uniqueName('list') })).json())
  const res = await send('GET', '/clients')
  t.equal(res.statusCode, 200)
  t.equal(res.headers['cache-control'], 'no-store')
  const list = res.json()
  const { rows } = await app.db.query('SELECT id FROM clients ORDER BY created_at, id')
  t.strictSame(list.map((c: { id: string }) => c.id), rows.map((r) => r.id), 'all of them, oldest first')
  for (const c of created) {
    t.strictSame(list.find((x: { id: string }) => x.id === c.id), { id: c.id, clientId: c.clientId, name: c.name, createdAt: c.createdAt, backchannelLogoutUri: null })
  }
  for (const c of created) t.notMatch(res.body, c.clientSecret)
  for (const item of list) t.strictSame(Object.keys(item).sort(), ['backchannelLogoutUri', 'clientId', 'createdAt', 'id', 'name'])
})

t.test('POST /clients/:id/secret: a new secret, the old one refused at once', async (t) => {
  const client = (await send('POST', '/clients', asRoot, { name: uniqueName('rotate') })).json()
  t.ok(await app.clients.authenticateBasic(basic(client.clientId, client.clientSecret)))
  const res = await send('POST', `/clients/${client.id}/secret`)
  t.equal(res.statusCode, 200)
  t.equal(res.headers['cache-control'], 'no-store')
  const rotated = res.json()
  t.strictSame({ ...rotated, clientSecret: undefined }, { ...client, clientSecret: undefined }, 'the same client')
  t.match(rotated.clientSecret, /^[A-Za-z0-9_-]{43}$/)
  t.not(rotated.clientSecret, client.clientSecret)
  t.equal(await app.clients.authenticateBasic(basic(client.clientId, client.clientSecret)), null, 'the old secret is refused')
  t.ok(await app.clients.authenticateBasic(basic(client.clientId, rotated.clientSecret)), 'the new one works')
  t.strictSame(await eventsOf('client_secret_rotated', client.id), [{ actorId: root.id, detail: { id: client.id, clientId: client.clientId, name: client.name } }])

  t.equal((await send('POST', `/clients/${UNKNOWN_ID}/secret`)).statusCode, 404)
  t.match((await send('POST', `/clients/${UNKNOWN_ID}/secret`)).json(), { message: 'Client not found' })
  t.equal((await send('POST', '/clients/not-a-uuid/secret')).statusCode, 400)
})

t.test('DELETE /clients/:id: 204, its credentials refused at once, then 404', async (t) => {
  const client = (await send('POST', '/clients', asRoot, { name: uniqueName('delete') })).json()
  t.ok(await app.clients.authenticateBasic(basic(client.clientId, client.clientSecret)))
  const res = await send('DELETE', `/clients/${client.id}`)
  t.equal(res.statusCode, 204)
  t.equal(res.body, '')
  t.equal(await app.clients.authenticateBasic(basic(client.clientId, client.clientSecret)), null, 'refused at once')
  t.notOk((await send('GET', '/clients')).json().some((c: { id: string }) => c.id === client.id), 'gone from the list')
  t.strictSame(await eventsOf('client_deleted', client.id), [{ actorId: root.id, detail: { id: client.id, clientId: client.clientId, name: client.name } }])
  t.equal((await send('DELETE', `/clients/${client.id}`)).statusCode, 404)
  t.equal((await send('DELETE', '/clients/not-a-uuid')).statusCode, 400)
  t.equal((await send('POST', '/clients', asRoot, { name: client.name })).statusCode, 201, 'its name is free again')
})

t.test('the audit log shows client events to admins, without secrets', async (t) => {
  const client = (await send('POST', '/clients', asRoot, { name: uniqueName('audit') })).json()
  const rotated = (await send('POST', `/clients/${client.id}/secret`)).json()
  t.equal((await send('DELETE', `/clients/${client.id}`)).statusCode, 204)
  const res = await send('GET', `/audit?userId=${root.id}&limit=3`)
  t.equal(res.statusCode, 200)
  t.match(res.json().items, [
    { type: 'client_deleted', actorId: root.id, subjectId: null, detail: { id: client.id } },
    { type: 'client_secret_rotated', actorId: root.id, detail: { id: client.id } },
    { type: 'client_created', actorId: root.id, detail: { id: client.id } }
  ])
  t.notMatch(res.body, client.clientSecret)
  t.notMatch(res.body, rotated.clientSecret)
})

t.test('authority is checked where each change commits, not only at the door', async (t) => {
  // A pool large enough that every request below is inside its transaction at once.
  const wide = await build(t, ctx, { DATABASE_POOL_SIZE: 40 })
  const CREATIONS = 8
  const ROTATIONS = 6
  const DELETIONS = 6

  /**
   * Admin A, and A's 20 writes ready to fire at `wide`: creations, and rotations and
   * deletions of clients root registered. committed() says what of them is in the database.
   */
  async function writer (t: Test) {
    const a = await signUp(app, ctx, { role: 'admin', label: 'writer' })
    t.equal((await me(wide, a.access)).statusCode, 200, 'A\'s token is warm')
    const names = Array.from({ length: CREATIONS }, () => uniqueName('race'))
    const existing: Array<{ id: string, clientSecret: string }> = []
    for (let i = 0; i < ROTATIONS + DELETIONS; i++) existing.push((await send('POST', '/clients', asRoot, { name: uniqueName('target') })).json())
    const rotated = existing.slice(0, ROTATIONS)
    const deleted = existing.slice(ROTATIONS)
    const as = bearer(a.access)
    const fire = () => [
      ...names.map((name) => wide.inject({ method: 'POST', url: '/clients', headers: as, payload: { name } })),
      ...rotated.map((c) => wide.inject({ method: 'POST', url: `/clients/${c.id}/secret`, headers: as })),
      ...deleted.map((c) => wide.inject({ method: 'DELETE', url: `/clients/${c.id}`, headers: as }))
    ]
    /** A's writes found in the database, and A's client events (after `since`, an SQL instant, when given). */
    async function committed (since = '\'-infinity\'::timestamptz') {
      const { rows } = await app.db.query('SELECT id, name, secret_hash FROM clients WHERE name = ANY($1) OR id = ANY($2)',
        [names, existing.map((c) => c.id)])
      const byId = new Map(rows.map((r) => [r.id, r]))
      const events = await app.db.query(
        `SELECT count(*)::int AS n FROM audit_events WHERE actor_id = $1 AND type LIKE 'client\\_%' AND at >= ${since}`, [a.id])
      return {
        created: rows.filter((r) => names.includes(r.name)).length,
        rotated: rotated.filter((c) => !byId.get(c.id)?.secret_hash.equals(createHash('sha256').update(c.clientSecret).digest())).length,
        deleted: deleted.filter((c) => !byId.has(c.id)).length,
        audited: events.rows[0].n as number
      }
    }
    return { a, fire, committed }
  }

  const NOTHING = { created: 0, rotated: 0, deleted: 0, audited: 0 }

  t.test('an admin demoted while its 20 writes wait commits none of them (403)', async (t) => {
    const { a, fire, committed } = await writer(t)
    const b = await signUp(app, ctx, { role: 'admin', label: 'demoter' })
    // B's demotion of A queues first for the admins' rows, A's writes after it: when the rows
    // are let go, the demotion commits while A's writes are already past the door.
    const release = await holdRows(t, ctx.databaseUrl, "SELECT id FROM users WHERE role = 'admin' AND NOT disabled FOR UPDATE")
    const demotion = wide.inject({ method: 'PATCH', url: `/users/${a.id}`, headers: bearer(b.access), payload: { role: 'user' } })
    t.equal(await untilLockWaiters(app, 1), 1, 'the demotion waits')
    const writes = fire()
    t.equal(await untilLockWaiters(app, 21), 21, 'and A\'s 20 writes behind it')
    await release()
    t.equal((await demotion).statusCode, 200, 'A is demoted')
    const statuses = (await Promise.all(writes)).map((r) => r.statusCode)
    t.strictSame([...new Set(statuses)], [403], 'every write A sent is refused: A is no longer an admin when it would commit')
    t.strictSame(await committed(), NOTHING, 'nothing created, rotated, deleted or audited')
  })

  t.test('an admin whose session ends while its 20 writes wait commits none of them (401)', async (t) => {
    const { a, fire, committed } = await writer(t)
    // A share of A's row: the writes wait for it, a logout (which takes a lesser share) does not.
    const release = await holdRows(t, ctx.databaseUrl, 'SELECT id FROM users WHERE id = $1 FOR SHARE', [a.id])
    const writes = fire()
    t.equal(await untilLockWaiters(app, 20), 20, 'A\'s 20 writes wait')
    t.equal((await wide.inject({ method: 'POST', url: '/auth/logout', headers: bearer(a.access) })).statusCode, 204, 'A logs out from another tab')
    await release()
    const answers = await Promise.all(writes)
    t.strictSame([...new Set(answers.map((r) => r.statusCode))], [401], 'every write is refused: the session ended before it could commit')
    t.ok(answers.every((r) => /^Bearer/.test(String(r.headers['www-authenticate']))), 'with a Bearer challenge')
    t.strictSame(await committed(), NOTHING, 'nothing created, rotated, deleted or audited')
  })

  // Left to run free, the writes and the revocation interleave any way they like: each
  // write either committed before the revocation (and answered as a success) or changed nothing.
  const SUCCESS = [200, 201, 204]
  /** `revokedAt`: the instant the revocation committed, an SQL expression of A's id ($1). */
  async function freeRace (t: Test, revoke: (a: Account) => Promise<LightMyRequestResponse>, revokedAt: string) {
    const { a, fire, committed } = await writer(t)
    const writes = fire()
    // Once the first write is through: the revocation lands among the others.
    await Promise.race(writes)
    const revocation = revoke(a)
    const statuses = (await Promise.all(writes)).map((r) => r.statusCode)
    t.ok(SUCCESS.includes((await revocation).statusCode), 'the revocation went through')
    t.ok(statuses.every((s) => [...SUCCESS, 401, 403].includes(s)), `a success or a refusal, never anything else (${statuses})`)
    const done = await committed()
    const successes = statuses.filter((s) => SUCCESS.includes(s)).length
    t.equal(done.created + done.rotated + done.deleted, successes, 'exactly the writes answered as a success committed')
    t.equal(done.audited, successes, 'each audited once')
    t.equal((await committed(revokedAt)).audited, 0, 'none committed after the revocation')
  }

  t.test('free-running: 20 writes against a demotion', async (t) => {
    const b = await signUp(app, ctx, { role: 'admin', label: 'demoter' })
    await freeRace(t,
      (a) => wide.inject({ method: 'PATCH', url: `/users/${a.id}`, headers: bearer(b.access), payload: { role: 'user' } }),
      '(SELECT revoked_after FROM users WHERE id = $1)')
  })

  t.test('free-running: 20 writes against a logout', async (t) => {
    await freeRace(t,
      (a) => wide.inject({ method: 'POST', url: '/auth/logout', headers: bearer(a.access) }),
      '(SELECT max(revoked_at) FROM sessions WHERE user_id = $1)')
  })
})
