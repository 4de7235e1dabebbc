// GET /audit: the security events of the contract, newest first, cursor-paginated,
// filtered by user (actor or subject), admins only. A database of this file's own, so
// that unfiltered pages hold only this file's events.
import t from 'tap'
import type { LightMyRequestResponse } from 'fastify'
import { bearer, build, context, login, me, PASSWORD, signUp } from '../helper.js'

const ctx = await context(t, { ownDatabase: true })
const app = await build(t, ctx)
const root = await signUp(app, ctx, { role: 'admin', label: 'root' })

const UNKNOWN_ID = '00000000-0000-4000-8000-000000000000'

interface Event { id: string, at: string, type: string, actorId: string | null, subjectId: string | null, ip: string | null, detail: Record<string, unknown> }

function auditPage (access: string | null, query = ''): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'GET', url: `/audit${query}`, headers: access === null ? {} : bearer(access) })
}

/** Every event the query selects, walking the cursor with the given page size. */
async function walk (query: string, limit: number, between?: () => Promise<void>): Promise<Event[]> {
  const events: Event[] = []
  let cursor: string | null = null
  for (let page = 0; page < 1000; page++) {
    const res = await auditPage(root.access, `?limit=${limit}${query}${cursor === null ? '' : `&cursor=${cursor}`}`)
    if (res.statusCode !== 200) throw new Error(`GET /audit: ${res.statusCode} ${res.body}`)
    const body = res.json()
    if (body.items.length > limit) throw new Error('page longer than limit')
    events.push(...body.items)
    cursor = body.nextCursor
    if (cursor === null) return events
    if (between) await between()
  }
  throw new Error('too many pages')
}

async function allIdsNewestFirst (): Promise<string[]> {
  const { rows } = await app.db.query('SELECT id::text FROM audit_events ORDER BY audit_events.id DESC')
  return rows.map((r) => r.id)
}

function cursorOf (parts: unknown): string {
  return Buffer.from(JSON.stringify(parts)).toString('base64url')
}

function post (url: string, access: string | null, payload?: unknown) {
  return app.inject({ method: 'POST', url, headers: access === null ? {} : bearer(access), payload: payload as any })
}

t.test('admins only: 401 without a valid token, 403 for a user', async (t) => {
  const anonymous = await auditPage(null)
  t.equal(anonymous.statusCode, 401)
  t.match(anonymous.headers['www-authenticate'], /^Bearer/)
  t.match(anonymous.json(), { statusCode: 401, error: 'Unauthorized' })
  t.equal((await app.inject({ method: 'GET', url: '/audit', headers: { authorization: 'Basic YTpi' } })).statusCode, 401)

  const user = await signUp(app, ctx)
  const forbidden = await auditPage(user.access)
  t.equal(forbidden.statusCode, 403)
  t.match(forbidden.json(), { statusCode: 403, error: 'Forbidden' })
  t.notOk('items' in forbidden.json())

  // An admin demoted after its token was issued: that token is revoked (401); a new
  // login carries the user role (403).
  const former = await signUp(app, ctx, { role: 'admin', label: 'former' })
  t.equal((await auditPage(former.access)).statusCode, 200)
  t.equal((await app.inject({ method: 'PATCH', url: `/users/${former.id}`, headers: bearer(root.access), payload: { role: 'user' } })).statusCode, 200)
  t.equal((await auditPage(former.access)).statusCode, 401)
  t.equal((await auditPage((await login(app, former.username)).access)).statusCode, 403)
})

t.test('records every event type of the contract, with actor and subject, newest first', async (t) => {
  const username = ctx.username('alice')
  const reg = await post('/auth/register', null, { username, password: PASSWORD })
  t.equal(reg.statusCode, 201)
  const alice = reg.json().id as string
  const bystander = await signUp(app, ctx)
  const s1 = await login(app, username)
  t.equal((await post('/auth/login', null, { username, password: 'wrong password' })).statusCode, 401)
  const s2 = await login(app, username)
  t.equal((await post('/auth/logout', s2.access)).statusCode, 204)
  const rotated = await post('/auth/refresh', null, { refresh_token: s1.refresh })
  t.equal(rotated.statusCode, 200)
  t.equal((await post('/auth/refresh', null, { refresh_token: s1.refresh })).statusCode, 401, 'reuse')
  const s3 = await login(app, username)
  const s4 = await login(app, username)
  t.equal((await app.inject({ method: 'DELETE', url: `/auth/sessions/${JSON.parse(Buffer.from(s4.access.split('.')[1], 'base64url').toString()).sid}`, headers: bearer(s3.access) })).statusCode, 204)
  t.equal((await post('/auth/change-password', s3.access, { currentPassword: PASSWORD, newPassword: 'another fine passphrase' })).statusCode, 204)
  const s5 = await login(app, username, 'another fine passphrase')
  t.equal((await post('/auth/logout-all', s5.access)).statusCode, 204)
  const patch = (body: unknown) => app.inject({ method: 'PATCH', url: `/users/${alice}`, headers: bearer(root.access), payload: body as any })
  t.equal((await patch({ role: 'admin' })).statusCode, 200)
  t.equal((await post('/auth/change-role', root.access, { username, role: 'user' })).statusCode, 200)
  t.equal((await patch({ disabled: true })).statusCode, 200)
  t.equal((await patch({ disabled: false })).statusCode, 200)
  t.equal((await app.inject({ method: 'DELETE', url: `/users/${alice}`, headers: bearer(root.access) })).statusCode, 204)

  const res = await auditPage(root.access, `?userId=${alice}&limit=100`)
  t.equal(res.statusCode, 200)
  const body = res.json()
  t.strictSame(Object.keys(body).sort(), ['items', 'nextCursor'])
  t.equal(body.nextCursor, null)
  const items = body.items as Event[]
  // actor undefined: not checked (who presented a stolen token is not known).
  const expected: Array<[string, string | null | undefined, Record<string, unknown>?]> = [
    ['register', alice],
    ['login', alice],
    ['login_failed', null, { username, reason: 'bad_password' }],
    ['login', alice],
    ['logout', alice],
    ['refresh_reuse', undefined],
    ['login', alice],
    ['login', alice],
    ['session_revoked', alice],
    ['password_changed', alice],
    ['login', alice],
    ['logout_all', alice],
    ['role_changed', root.id, { from: 'user', to: 'admin' }],
    ['role_changed', root.id, { from: 'admin', to: 'user' }],
    ['user_disabled', root.id],
    ['user_enabled', root.id],
    ['user_deleted', root.id]
  ].reverse() as Array<[string, string | null | undefined, Record<string, unknown>?]>
  t.strictSame(items.map((e) => e.type), expected.map(([type]) => type), 'every event, newest first')
  items.forEach((e, i) => {
    const [type, actorId, detail] = expected[i]
    t.strictSame(Object.keys(e).sort(), ['actorId', 'at', 'detail', 'id', 'ip', 'subjectId', 'type'])
    t.equal(e.subjectId, alice, `${type}: subject`)
    if (actorId !== undefined) t.equal(e.actorId, actorId, `${type}: actor`)
    t.equal(e.ip, '127.0.0.1')
    t.match(e.id, /^[0-9]+$/)
    t.equal(new Date(e.at).toISOString(), e.at, 'at is ISO 8601')
    if (detail !== undefined) t.match(e.detail, detail, `${type}: detail`)
  })
  for (let i = 1; i < items.length; i++) {
    t.ok(BigInt(items[i - 1].id) > BigInt(items[i].id), 'ids strictly decrease')
    t.ok(Date.parse(items[i - 1].at) >= Date.parse(items[i].at), 'times never increase')
  }
  const sessionIds = items.filter((e) => ['login', 'logout', 'refresh_reuse', 'session_revoked'].includes(e.type))
    .map((e) => e.detail.sessionId)
  t.ok(sessionIds.every((s) => typeof s === 'string'), 'session events name their session')

  const text = res.body
  for (const secret of [PASSWORD, 'wrong password', 'another fine passphrase', s1.refresh, s1.access, rotated.json().refresh_token]) {
    t.notOk(text.includes(secret), 'no password or token in the audit trail')
  }
  const others = (await auditPage(root.access, `?userId=${bystander.id}&limit=100`)).json().items as Event[]
  t.strictSame(others.map((e) => e.type), ['login', 'register'], 'another user\'s events are their own')
})

t.test('userId matches the actor or the subject, nothing else', async (t) => {
  const admin = await signUp(app, ctx, { role: 'admin', label: 'actor' })
  const target = await signUp(app, ctx)
  t.equal((await app.inject({ method: 'PATCH', url: `/users/${target.id}`, headers: bearer(admin.access), payload: { disabled: true } })).statusCode, 200)
  const disabledEvent = { type: 'user_disabled', actorId: admin.id, subjectId: target.id }

  const byActor = (await walk(`&userId=${admin.id}`, 100))
  t.ok(byActor.length > 0)
  t.ok(byActor.every((e) => e.actorId === admin.id || e.subjectId === admin.id))
  t.match(byActor[0], disabledEvent, 'the admin finds what it did to another user')
  const bySubject = (await walk(`&userId=${target.id}`, 100))
  t.ok(bySubject.every((e) => e.actorId === target.id || e.subjectId === target.id))
  t.match(bySubject[0], disabledEvent, 'the user finds what was done to it')

  const { rows } = await app.db.query(
    'SELECT id::text FROM audit_events WHERE actor_id = $1 OR subject_id = $1 ORDER BY audit_events.id DESC', [admin.id])
  t.strictSame(byActor.map((e) => e.id), rows.map((r) => r.id), 'exactly the events naming the user')

  const none = await auditPage(root.access, `?userId=${UNKNOWN_ID}`)
  t.equal(none.statusCode, 200)
  t.strictSame(none.json(), { items: [], nextCursor: null })
})

t.test('cursor pagination', async (t) => {
  // Enough events for more than one default page.
  for (let i = 0; i < 60; i++) await app.audit.record({ type: 'rate_limited', ip: '192.0.2.1', detail: { n: i } })

  t.test('every page size walks every event exactly once, newest first', async (t) => {
    const expected = await allIdsNewestFirst()
    t.ok(expected.length > 60)
    for (const limit of [1, 7, 50, 100]) {
      t.strictSame((await walk('', limit)).map((e) => e.id), expected, `limit ${limit}`)
    }
  })

  t.test('limit: 1 to 100, coerced from the query string, default 50', async (t) => {
    const total = (await allIdsNewestFirst()).length
    const byDefault = (await auditPage(root.access)).json()
    t.equal(byDefault.items.length, 50)
    t.type(byDefault.nextCursor, 'string')
    t.equal((await auditPage(root.access, '?limit=1')).json().items.length, 1)
    t.equal((await auditPage(root.access, '?limit=20')).json().items.length, 20)
    t.equal((await auditPage(root.access, '?limit=100')).json().items.length, Math.min(100, total))
    for (const limit of ['0', '101', '-1', '2.5', 'abc', '']) {
      const res = await auditPage(root.access, `?limit=${limit}`)
      t.equal(res.statusCode, 400, `limit=${limit}`)
      t.equal(res.json().error, 'Bad Request')
    }
  })

  t.test('events recorded while paging never shift a page: nothing repeats, nothing is skipped', async (t) => {
    const before = await allIdsNewestFirst()
    const user = await signUp(app, ctx)
    const snapshot = await allIdsNewestFirst()
    const seen = await walk('', 6, async () => {
      await Promise.all([login(app, user.username), app.audit.record({ type: 'rate_limited', ip: '192.0.2.2' })])
    })
    const ids = seen.map((e) => e.id)
    t.strictSame(ids, snapshot, 'exactly the events that existed when paging began')
    t.ok(snapshot.length > before.length)
    t.ok((await allIdsNewestFirst()).length > snapshot.length, 'new events were recorded meanwhile')
  })

  t.test('a malformed cursor or userId is 400, never a 500', async (t) => {
    const cursors = ['!!!', 'abc', 'x'.repeat(201), cursorOf({}), cursorOf([]), cursorOf([1]), cursorOf(['x']),
      cursorOf(['1', '2']), cursorOf(['-1']), cursorOf(['1.5']), cursorOf(['9'.repeat(19)]), cursorOf([null])]
    for (const cursor of cursors) {
      const res = await auditPage(root.access, `?cursor=${encodeURIComponent(cursor)}`)
      t.equal(res.statusCode, 400, `cursor ${cursor.slice(0, 30)}`)
      t.equal(res.json().error, 'Bad Request')
    }
    for (const userId of ['abc', '123', `urn:uuid:${root.id}`, '-'.repeat(36), `${root.id}0`]) {
      const res = await auditPage(root.access, `?userId=${encodeURIComponent(userId)}`)
      t.equal(res.statusCode, 400, `userId ${userId}`)
      t.equal(res.json().error, 'Bad Request')
    }
    t.equal((await auditPage(root.access, `?cursor=${cursorOf(['1'])}`)).statusCode, 200, 'a well-formed cursor')
    t.equal((await me(app, root.access)).statusCode, 200)
  })
})
