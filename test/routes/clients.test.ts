// /clients: registered clients, admins only, every change audited. A secret is shown once
// (201 on creation, 200 on rotation, never cached) and kept only as a SHA-256; the list
// never shows one; a rotated or deleted client's old credentials are refused at once.
// A database of this file's own: the list is asserted over every client there is.
import { createHash } from 'node:crypto'
import t from 'tap'
import type { LightMyRequestResponse } from 'fastify'
import { bearer, build, context, signUp } from '../helper.js'

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
