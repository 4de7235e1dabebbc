// The admin API over accounts: listing with cursors, reading, PATCH (role, disabled) and
// DELETE, the revocations they cause, and the last-admin rule, under concurrency too.
// A database of this file's own: listing and the last-admin rule span all users.
import t from 'tap'
import pg from 'pg'
import { setTimeout as sleep } from 'node:timers/promises'
import type { LightMyRequestResponse } from 'fastify'
import { bearer, build, context, holdRows, login, me, PASSWORD, signUp, untilLockWaiters, type Account } from '../helper.js'

const ctx = await context(t, { ownDatabase: true })
const app = await build(t, ctx)
const root = await signUp(app, ctx, { role: 'admin', label: 'root' })

const UNKNOWN_ID = '00000000-0000-4000-8000-000000000000'

function get (access: string | null, url: string) {
  return app.inject({ method: 'GET', url, headers: access === null ? {} : bearer(access) })
}

function patch (access: string | null, id: string, body: unknown) {
  return app.inject({
    method: 'PATCH',
    url: `/users/${id}`,
    headers: { ...(access === null ? {} : bearer(access)), 'content-type': 'application/json' },
    payload: JSON.stringify(body)
  })
}

function del (access: string | null, id: string) {
  return app.inject({ method: 'DELETE', url: `/users/${id}`, headers: access === null ? {} : bearer(access) })
}

function refresh (token: string) {
  return app.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: token } })
}

async function loginStatus (username: string): Promise<number> {
  return (await app.inject({ method: 'POST', url: '/auth/login', payload: { username, password: PASSWORD } })).statusCode
}

async function userRow (id: string) {
  const { rows } = await app.db.query('SELECT role, disabled, revoked_after::text AS ra FROM users WHERE id = $1', [id])
  return rows[0] as { role: string, disabled: boolean, ra: string } | undefined
}

async function auditOf (subjectId: string) {
  const { rows } = await app.db.query(
    'SELECT type, actor_id, detail FROM audit_events WHERE subject_id = $1 AND type NOT IN (\'register\', \'login\', \'login_failed\') ORDER BY id', [subjectId])
  return rows.map((r) => ({ type: r.type, actorId: r.actor_id, detail: r.detail }))
}

async function activeAdmins (): Promise<string[]> {
  const { rows } = await app.db.query("SELECT id FROM users WHERE role = 'admin' AND NOT disabled ORDER BY id")
  return rows.map((r) => r.id)
}

/** Leaves `keep` as the only active admins (others demoted through the API by `actor`). */
async function onlyAdmins (actor: Account, keep: string[]): Promise<void> {
  for (const id of await activeAdmins()) {
    if (keep.includes(id)) continue
    const res = await patch(actor.access, id, { role: 'user' })
    if (res.statusCode !== 200) throw new Error(`demoting ${id}: ${res.statusCode} ${res.body}`)
  }
}

/** Walks every page of GET /users with the given limit; returns the ids in order. */
async function walk (access: string, limit: number, between?: () => Promise<void>): Promise<string[]> {
  const ids: string[] = []
  let cursor: string | null = null
  for (let page = 0; page < 1000; page++) {
    const url: string = `/users?limit=${limit}${cursor === null ? '' : `&cursor=${cursor}`}`
    const res = await get(access, url)
    if (res.statusCode !== 200) throw new Error(`${url}: ${res.statusCode} ${res.body}`)
    const body = res.json()
    if (body.items.length > limit) throw new Error('page longer than limit')
    ids.push(...body.items.map((u: { id: string }) => u.id))
    cursor = body.nextCursor
    if (cursor === null) return ids
    if (between) await between()
  }
  throw new Error('too many pages')
}

async function allIdsInOrder (): Promise<string[]> {
  const { rows } = await app.db.query('SELECT id FROM users ORDER BY created_at, id')
  return rows.map((r) => r.id)
}

function cursorOf (parts: unknown): string {
  return Buffer.from(JSON.stringify(parts)).toString('base64url')
}

t.test('every admin route needs a token (401) and the admin role (403), and changes nothing without them', async (t) => {
  const user = await signUp(app, ctx)
  const target = await signUp(app, ctx)
  const calls: Array<[string, (access: string | null) => Promise<LightMyRequestResponse>]> = [
    ['GET /users', (a) => get(a, '/users')],
    ['GET /users/:id', (a) => get(a, `/users/${target.id}`)],
    ['PATCH /users/:id', (a) => patch(a, target.id, { role: 'admin', disabled: true })],
    ['DELETE /users/:id', (a) => del(a, target.id)],
    ['DELETE /users/:id/lockout', (a) => app.inject({ method: 'DELETE', url: `/users/${target.id}/lockout`, headers: a === null ? {} : bearer(a) })]
  ]
  for (const [name, call] of calls) {
    const anonymous = await call(null)
    t.equal(anonymous.statusCode, 401, `${name} without a token`)
    t.match(anonymous.headers['www-authenticate'], /^Bearer/)
    t.equal((await call('garbage')).statusCode, 401, `${name} with a malformed token`)
    const forbidden = await call(user.access)
    t.equal(forbidden.statusCode, 403, `${name} as a user`)
    t.match(forbidden.json(), { statusCode: 403, error: 'Forbidden', message: String })
  }
  t.match(await userRow(target.id), { role: 'user', disabled: false })
  t.equal((await me(app, target.access)).statusCode, 200, 'the target was not revoked')
  t.strictSame(await auditOf(target.id), [])
})

t.test('GET /users', async (t) => {
  // Users with one and the same created_at: the order must still be total (created_at, id).
  await app.db.query(
    `INSERT INTO users (username, password_hash, created_at)
     SELECT 'tie_' || $1 || '_' || g, 'not-a-hash', timestamptz '2001-02-03 04:05:06.789012+00'
       FROM generate_series(1, 7) g`, [ctx.tag])
  // Enough users for more than one default page.
  await app.db.query(
    `INSERT INTO users (username, password_hash)
     SELECT 'bulk_' || $1 || '_' || g, 'not-a-hash' FROM generate_series(1, 60) g`, [ctx.tag])

  t.test('pages through every user exactly once, oldest first, whatever the page size', async (t) => {
    const expected = await allIdsInOrder()
    t.ok(expected.length > 60)
    for (const limit of [1, 3, 7, 50, 100]) {
      t.strictSame(await walk(root.access, limit), expected, `limit ${limit}`)
    }
  })

  t.test('items are users: id, username, role, disabled, createdAt, and nothing else', async (t) => {
    const res = await get(root.access, '/users?limit=100')
    t.equal(res.statusCode, 200)
    const body = res.json()
    t.strictSame(Object.keys(body).sort(), ['items', 'nextCursor'])
    for (const u of body.items) {
      t.strictSame(Object.keys(u).sort(), ['createdAt', 'disabled', 'email', 'emailVerified', 'id', 'mfaEnabled', 'role', 'username'])
    }
    t.match(body.items.find((u: { id: string }) => u.id === root.id),
      { id: root.id, username: root.username, role: 'admin', disabled: false, createdAt: String })
    const tied = body.items.find((u: { username: string }) => u.username === `tie_${ctx.tag}_1`)
    t.equal(tied.createdAt, '2001-02-03T04:05:06.789Z')
    t.notOk(res.body.includes('not-a-hash'), 'no password hash')
  })

  t.test('limit: 1 to 100, coerced from the query string, default 50', async (t) => {
    const total = (await allIdsInOrder()).length
    const byDefault = (await get(root.access, '/users')).json()
    t.equal(byDefault.items.length, 50)
    t.type(byDefault.nextCursor, 'string')
    t.equal((await get(root.access, '/users?limit=1')).json().items.length, 1)
    t.equal((await get(root.access, '/users?limit=20')).json().items.length, 20)
    const hundred = (await get(root.access, '/users?limit=100')).json()
    t.equal(hundred.items.length, Math.min(100, total))
    t.equal(hundred.nextCursor === null, total <= 100)
    for (const limit of ['0', '101', '-1', '2.5', 'abc', '', '1e3']) {
      const res = await get(root.access, `/users?limit=${limit}`)
      t.equal(res.statusCode, 400, `limit=${limit}`)
      t.equal(res.json().error, 'Bad Request')
    }
  })

  t.test('a malformed cursor is 400, never a 500', async (t) => {
    const cursors = [
      '!!!', 'abc', 'x'.repeat(201), '%20', 'eyJ', cursorOf({}), cursorOf('x'), cursorOf([]), cursorOf(['1']),
      cursorOf([1, UNKNOWN_ID]), cursorOf(['1', 'not-a-uuid']), cursorOf(['1', UNKNOWN_ID, 'x']),
      cursorOf(['1', '-'.repeat(36)]), cursorOf(['1', 'g'.repeat(8) + UNKNOWN_ID.slice(8)]),
      cursorOf(['1', '000000000000000000000000000000000000']), cursorOf(['-1', UNKNOWN_ID]),
      cursorOf(['9'.repeat(19), UNKNOWN_ID]), cursorOf(['1.5', UNKNOWN_ID])
    ]
    for (const cursor of cursors) {
      const res = await get(root.access, `/users?cursor=${encodeURIComponent(cursor)}`)
      t.equal(res.statusCode, 400, `cursor ${cursor.slice(0, 40)}`)
      t.equal(res.json().error, 'Bad Request')
    }
    const wellFormed = await get(root.access, `/users?cursor=${cursorOf(['0', UNKNOWN_ID])}`)
    t.equal(wellFormed.statusCode, 200, 'a well-formed cursor pointing anywhere is fine')
  })

  t.test('users registered while paging land after every page already read: nothing repeats, nothing is skipped', async (t) => {
    const before = await allIdsInOrder()
    const added: string[] = []
    const seen = await walk(root.access, 9, async () => {
      // One registration through the API and two concurrent ones between every two pages.
      const regs = await Promise.all([0, 1, 2].map(() => app.inject({
        method: 'POST', url: '/auth/register', payload: { username: ctx.username('paging'), password: PASSWORD }
      })))
      for (const r of regs) {
        if (r.statusCode !== 201) throw new Error(`register: ${r.statusCode}`)
        added.push(r.json().id)
      }
    })
    t.equal(new Set(seen).size, seen.length, 'no user twice')
    t.strictSame(seen.slice(0, before.length), before, 'every user that existed is there, in order, first')
    t.ok(seen.slice(before.length).every((id) => added.includes(id)), 'after them only newcomers')
    t.ok(added.length > 0)
    t.strictSame(await walk(root.access, 100), await allIdsInOrder(), 'a fresh walk sees everyone')
  })
})

t.test('GET /users/:id', async (t) => {
  const user = await signUp(app, ctx)
  const res = await get(root.access, `/users/${user.id}`)
  t.equal(res.statusCode, 200)
  t.strictSame(Object.keys(res.json()).sort(), ['createdAt', 'disabled', 'email', 'emailVerified', 'id', 'mfaEnabled', 'role', 'username'])
  t.match(res.json(), { id: user.id, username: user.username, role: 'user', disabled: false, mfaEnabled: false })
  t.equal(new Date(res.json().createdAt).toISOString(), res.json().createdAt)
  t.equal((await get(root.access, `/users/${user.id.toUpperCase()}`)).json().id, user.id, 'the id in any case')

  const missing = await get(root.access, `/users/${UNKNOWN_ID}`)
  t.equal(missing.statusCode, 404)
  t.match(missing.json(), { statusCode: 404, error: 'Not Found', message: String })
  for (const id of ['abc', '123', `urn%3Auuid%3A${user.id}`, `${user.id}0`, '-'.repeat(36)]) {
    const bad = await get(root.access, `/users/${id}`)
    t.equal(bad.statusCode, 400, id)
    t.equal(bad.json().error, 'Bad Request')
  }
})

t.test('PATCH /users/:id', async (t) => {
  t.test('a role change revokes every token of that user at once, and only those', async (t) => {
    const target = await signUp(app, ctx)
    const laptop = await login(app, target.username)
    const bystander = await signUp(app, ctx)
    for (const a of [target, laptop, bystander]) t.equal((await me(app, a.access)).statusCode, 200)

    const res = await patch(root.access, target.id, { role: 'admin' })
    t.equal(res.statusCode, 200)
    t.match(res.json(), { id: target.id, username: target.username, role: 'admin', disabled: false })
    t.strictSame(Object.keys(res.json()).sort(), ['createdAt', 'disabled', 'email', 'emailVerified', 'id', 'mfaEnabled', 'role', 'username'])
    for (const a of [target, laptop]) {
      t.equal((await me(app, a.access)).statusCode, 401, 'access token refused on the next request')
      t.equal((await refresh(a.refresh)).statusCode, 401, 'refresh token refused')
    }
    t.equal((await me(app, bystander.access)).statusCode, 200, 'another user keeps working')
    t.equal((await me(app, root.access)).statusCode, 200, 'the admin keeps working')
    const again = await login(app, target.username)
    t.match((await me(app, again.access)).json(), { id: target.id, role: 'admin' }, 'a new login carries the new role')
    t.equal((await get(again.access, `/users/${bystander.id}`)).statusCode, 200, 'and the new powers')

    const back = await patch(root.access, target.id, { role: 'user' })
    t.equal(back.json().role, 'user')
    t.equal((await me(app, again.access)).statusCode, 401, 'a demotion revokes too')
    t.equal((await get(again.access, '/users')).statusCode, 401)
    t.strictSame(await auditOf(target.id), [
      { type: 'role_changed', actorId: root.id, detail: { from: 'user', to: 'admin' } },
      { type: 'role_changed', actorId: root.id, detail: { from: 'admin', to: 'user' } }
    ])
  })

  t.test('disabling revokes every token and refuses login; enabling revokes nothing and allows it again', async (t) => {
    const target = await signUp(app, ctx)
    const bystander = await signUp(app, ctx)
    t.equal((await me(app, target.access)).statusCode, 200)

    const off = await patch(root.access, target.id, { disabled: true })
    t.equal(off.statusCode, 200)
    t.match(off.json(), { id: target.id, role: 'user', disabled: true })
    t.equal((await me(app, target.access)).statusCode, 401)
    t.equal((await refresh(target.refresh)).statusCode, 401)
    t.equal(await loginStatus(target.username), 401, 'a disabled user cannot sign in')
    t.equal((await me(app, bystander.access)).statusCode, 200)
    t.equal((await get(root.access, `/users/${target.id}`)).json().disabled, true)

    const raDisabled = (await userRow(target.id))!.ra
    const on = await patch(root.access, target.id, { disabled: false })
    t.equal(on.statusCode, 200)
    t.match(on.json(), { id: target.id, role: 'user', disabled: false })
    t.equal((await userRow(target.id))!.ra, raDisabled, 'enabling revokes nothing')
    const fresh = await login(app, target.username)
    t.equal((await me(app, fresh.access)).statusCode, 200, 'the user can sign in again')
    t.equal((await me(app, target.access)).statusCode, 401, 'tokens from before the disable stay dead')
    t.strictSame(await auditOf(target.id), [
      { type: 'user_disabled', actorId: root.id, detail: {} },
      { type: 'user_enabled', actorId: root.id, detail: {} }
    ])
  })

  t.test('role and disabled at once', async (t) => {
    const target = await signUp(app, ctx)
    const res = await patch(root.access, target.id, { role: 'admin', disabled: true })
    t.equal(res.statusCode, 200)
    t.match(res.json(), { role: 'admin', disabled: true })
    t.equal((await me(app, target.access)).statusCode, 401)
    t.equal(await loginStatus(target.username), 401)
    t.strictSame((await auditOf(target.id)).map((e) => e.type), ['role_changed', 'user_disabled'])
  })

  t.test('setting the values a user already has changes and revokes nothing', async (t) => {
    const target = await signUp(app, ctx)
    t.equal((await me(app, target.access)).statusCode, 200)
    const ra = (await userRow(target.id))!.ra
    for (const body of [{ role: 'user' }, { disabled: false }, { role: 'user', disabled: false }, {}]) {
      const res = await patch(root.access, target.id, body)
      t.equal(res.statusCode, 200, JSON.stringify(body))
      t.match(res.json(), { id: target.id, role: 'user', disabled: false })
    }
    t.equal((await me(app, target.access)).statusCode, 200, 'still signed in')
    t.equal((await refresh(target.refresh)).statusCode, 200)
    t.equal((await userRow(target.id))!.ra, ra)
    t.strictSame(await auditOf(target.id), [], 'nothing to audit')
  })

  t.test('404 for an unknown user; 400 for bad input; nothing changes', async (t) => {
    const target = await signUp(app, ctx)
    const missing = await patch(root.access, UNKNOWN_ID, { role: 'admin' })
    t.equal(missing.statusCode, 404)
    t.match(missing.json(), { statusCode: 404, error: 'Not Found' })
    const bodies: unknown[] = [{ role: 'root' }, { role: 'ADMIN' }, { role: null }, { role: 1 }, { disabled: 'true' },
      { disabled: 1 }, { disabled: null }, { role: ['admin'] }, ['admin'], 'admin', null]
    for (const body of bodies) {
      const res = await patch(root.access, target.id, body)
      t.equal(res.statusCode, 400, JSON.stringify(body))
      t.equal(res.json().error, 'Bad Request')
    }
    t.equal((await patch(root.access, 'not-a-uuid', { role: 'admin' })).statusCode, 400)
    t.match(await userRow(target.id), { role: 'user', disabled: false })
    t.equal((await me(app, target.access)).statusCode, 200)
  })
})

t.test('DELETE /users/:id', async (t) => {
  t.test('204; the user, its sessions and tokens are gone at once; others keep working', async (t) => {
    const target = await signUp(app, ctx)
    const phone = await login(app, target.username)
    const bystander = await signUp(app, ctx)
    for (const a of [target, phone]) t.equal((await me(app, a.access)).statusCode, 200)

    const res = await del(root.access, target.id)
    t.equal(res.statusCode, 204)
    t.equal(res.body, '')
    for (const a of [target, phone]) {
      t.equal((await me(app, a.access)).statusCode, 401, 'access token refused')
      t.equal((await refresh(a.refresh)).statusCode, 401, 'refresh token refused')
    }
    t.equal(await loginStatus(target.username), 401)
    t.equal((await get(root.access, `/users/${target.id}`)).statusCode, 404)
    t.equal(await userRow(target.id), undefined)
    const { rows } = await app.db.query('SELECT count(*)::int AS n FROM sessions WHERE user_id = $1', [target.id])
    t.equal(rows[0].n, 0, 'its sessions are gone')
    t.equal((await me(app, bystander.access)).statusCode, 200)
    t.equal((await me(app, root.access)).statusCode, 200)
    t.strictSame(await auditOf(target.id), [{ type: 'user_deleted', actorId: root.id, detail: {} }])

    const again = await del(root.access, target.id)
    t.equal(again.statusCode, 404, 'deleting twice is 404')
    t.match(again.json(), { statusCode: 404, error: 'Not Found' })
  })

  t.test('404 for an unknown id, 400 for a malformed one', async (t) => {
    t.equal((await del(root.access, UNKNOWN_ID)).statusCode, 404)
    t.equal((await del(root.access, 'nope')).statusCode, 400)
    t.equal((await del(root.access, `urn%3Auuid%3A${root.id}`)).statusCode, 400)
    t.equal((await me(app, root.access)).statusCode, 200)
  })

  t.test('an admin can be deleted while another active admin remains', async (t) => {
    const other = await signUp(app, ctx, { role: 'admin' })
    const res = await del(root.access, other.id)
    t.equal(res.statusCode, 204)
    t.equal((await me(app, other.access)).statusCode, 401)
  })
})

t.test('the last admin cannot be demoted, disabled or deleted', async (t) => {
  // A disabled admin does not count as an admin.
  const sleeping = await signUp(app, ctx, { role: 'admin', label: 'sleeping' })
  t.equal((await patch(root.access, sleeping.id, { disabled: true })).statusCode, 200)
  await onlyAdmins(root, [root.id])
  t.strictSame(await activeAdmins(), [root.id])
  const ra = (await userRow(root.id))!.ra

  const attempts: Array<[string, () => Promise<LightMyRequestResponse>]> = [
    ['PATCH role user', () => patch(root.access, root.id, { role: 'user' })],
    ['PATCH disabled', () => patch(root.access, root.id, { disabled: true })],
    ['PATCH both', () => patch(root.access, root.id, { role: 'user', disabled: true })],
    ['DELETE', () => del(root.access, root.id)],
    ['change-role', () => app.inject({ method: 'POST', url: '/auth/change-role', headers: bearer(root.access), payload: { username: root.username, role: 'user' } })]
  ]
  for (const [name, attempt] of attempts) {
    const res = await attempt()
    t.equal(res.statusCode, 409, name)
    t.match(res.json(), { statusCode: 409, error: 'Conflict', message: String })
    t.match(await userRow(root.id), { role: 'admin', disabled: false, ra }, `${name}: nothing changed`)
    t.equal((await me(app, root.access)).statusCode, 200, `${name}: nothing revoked`)
  }
  t.equal((await patch(root.access, root.id, { role: 'admin', disabled: false })).statusCode, 200, 'keeping the last admin as it is is fine')
  t.strictSame(await auditOf(root.id), [], 'nothing audited')

  // With a second active admin, the first one may step down.
  const second = await signUp(app, ctx)
  t.equal((await patch(root.access, second.id, { role: 'admin' })).statusCode, 200)
  const secondAgain = await login(app, second.username)
  const down = await patch(root.access, root.id, { role: 'user' })
  t.equal(down.statusCode, 200)
  t.equal(down.json().role, 'user')
  t.equal((await me(app, root.access)).statusCode, 401, 'the demoted admin\'s own token is revoked')
  t.equal((await del(secondAgain.access, second.id)).statusCode, 409, 'now the second one is the last')
  t.equal((await patch(secondAgain.access, second.id, { disabled: true })).statusCode, 409)
  t.strictSame(await activeAdmins(), [second.id])
  // Restore root as an admin for what follows.
  t.equal((await patch(secondAgain.access, root.id, { role: 'admin' })).statusCode, 200)
  Object.assign(root, await login(app, root.username))
})

t.test('the last-admin rule holds under concurrent requests', async (t) => {
  /** Two fresh admins, the only active ones. */
  async function pair (): Promise<[Account, Account]> {
    const a = await signUp(app, ctx, { role: 'admin', label: 'racer' })
    const b = await signUp(app, ctx, { role: 'admin', label: 'racer' })
    await onlyAdmins(a, [a.id, b.id])
    // Warm both tokens so that the requests below authenticate from the cache.
    t.equal((await me(app, a.access)).statusCode, 200)
    t.equal((await me(app, b.access)).statusCode, 200)
    return [a, b]
  }

  async function waitingOnLocks (): Promise<number> {
    const { rows } = await app.db.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE%'`)
    return rows[0].n
  }

  /**
   * Runs both requests while another transaction holds the admins' rows, and lets them go
   * only once both are inside their transactions waiting for those rows: a real race,
   * past authentication, every time.
   */
  async function race (calls: Array<() => Promise<LightMyRequestResponse>>): Promise<number[]> {
    const blocker = new pg.Client({ connectionString: ctx.databaseUrl })
    await blocker.connect()
    try {
      await blocker.query('BEGIN')
      await blocker.query("SELECT id FROM users WHERE role = 'admin' AND NOT disabled FOR UPDATE")
      const pending = Promise.all(calls.map((c) => c()))
      let waiting = 0
      for (let i = 0; i < 200 && waiting < calls.length; i++) {
        await sleep(10)
        waiting = await waitingOnLocks()
      }
      t.equal(waiting, calls.length, 'both requests reached the locks')
      await blocker.query('COMMIT')
      return (await pending).map((r) => r.statusCode)
    } finally {
      await blocker.end()
    }
  }

  const changeRole = (by: Account, username: string) => () => app.inject({
    method: 'POST', url: '/auth/change-role', headers: bearer(by.access), payload: { username, role: 'user' }
  })

  // Against each other, the loser is no longer an admin when its change would commit: 403.
  // Each stepping down, the second is then the last admin: 409.
  const cases: Array<[string, (a: Account, b: Account) => Array<() => Promise<LightMyRequestResponse>>, number, number]> = [
    ['two admins demote each other', (a, b) => [() => patch(a.access, b.id, { role: 'user' }), () => patch(b.access, a.id, { role: 'user' })], 200, 403],
    ['two admins disable each other', (a, b) => [() => patch(a.access, b.id, { disabled: true }), () => patch(b.access, a.id, { disabled: true })], 200, 403],
    ['two admins delete each other', (a, b) => [() => del(a.access, b.id), () => del(b.access, a.id)], 204, 403],
    ['two admins demote themselves', (a, b) => [() => patch(a.access, a.id, { role: 'user' }), () => patch(b.access, b.id, { role: 'user' })], 200, 409],
    ['PATCH and change-role against each other', (a, b) => [() => patch(a.access, b.id, { role: 'user' }), changeRole(b, a.username)], 200, 403]
  ]
  for (const [name, make, success, refused] of cases) {
    t.test(name, async (t) => {
      const [a, b] = await pair()
      const statuses = await race(make(a, b))
      t.strictSame([...statuses].sort(), [success, refused].sort(), `exactly one succeeds, the other is ${refused}`)
      const admins = await activeAdmins()
      t.equal(admins.length, 1, 'exactly one active admin is left')
      const survivor = admins[0] === a.id ? a : b
      t.ok([a.id, b.id].includes(admins[0]))
      t.equal((await me(app, survivor.access)).statusCode, 200, 'the survivor keeps working')
      t.equal((await get(survivor.access, '/users?limit=1')).statusCode, 200, 'as an admin')
      const loser = survivor === a ? b : a
      t.equal((await me(app, loser.access)).statusCode, 401, 'the other one\'s tokens are revoked')
    })
  }

  t.test('without any help: concurrent attempts still leave exactly one active admin', async (t) => {
    for (let round = 0; round < 3; round++) {
      const [a, b] = await pair()
      const statuses = (await Promise.all([patch(a.access, b.id, { role: 'user' }), patch(b.access, a.id, { role: 'user' })]))
        .map((r) => r.statusCode)
      t.equal(statuses.filter((s) => s === 200).length, 1, `round ${round}, demote each other: one success (${statuses})`)
      t.ok(statuses.every((s) => [200, 401, 403, 409].includes(s)), 'the other is refused')
      t.equal((await activeAdmins()).length, 1, 'exactly one active admin is left')
    }
    for (let round = 0; round < 3; round++) {
      const [a, b] = await pair()
      // Several at once: some may succeed one after the other (demote B, then delete B),
      // but never so that no active admin is left.
      const statuses = (await Promise.all([
        patch(a.access, b.id, { disabled: true }), patch(b.access, a.id, { role: 'user' }),
        del(a.access, b.id), del(b.access, a.id)
      ])).map((r) => r.statusCode)
      t.ok(statuses.some((s) => s === 200 || s === 204), `round ${round}, mixed: something succeeds (${statuses})`)
      t.ok(statuses.every((s) => [200, 204, 401, 403, 404, 409].includes(s)), `the rest are refused, never a 500 (${statuses})`)
      t.equal((await activeAdmins()).length, 1, 'exactly one active admin is left')
    }
  })
})

t.test('authority is checked at commit, not only at the door', async (t) => {
  // A pool large enough that every request below is inside its transaction at once.
  const wide = await build(t, ctx, { DATABASE_POOL_SIZE: 40 })

  async function untilWaiting (n: number): Promise<void> {
    t.equal(await untilLockWaiters(app, n), n, `${n} requests wait for the rows`)
  }
  const hold = (sql: string, params: unknown[]) => holdRows(t, ctx.databaseUrl, sql, params)

  t.test('an admin demoted while 30 of its changes wait commits none of them', async (t) => {
    const a = await signUp(wide, ctx, { role: 'admin', label: 'demoted' })
    const b = await signUp(wide, ctx, { role: 'admin', label: 'demoter' })
    const targets: Account[] = []
    for (let i = 0; i < 30; i++) targets.push(await signUp(wide, ctx, { label: 'target' }))
    t.equal((await me(wide, a.access)).statusCode, 200)
    t.equal((await me(wide, b.access)).statusCode, 200)

    // B's demotion of A queues first for the admins' rows, A's 30 promotions after it: when
    // the rows are let go, the demotion commits while A's changes are already past the door.
    const release = await hold("SELECT id FROM users WHERE role = 'admin' AND NOT disabled FOR UPDATE", [])
    const demotion = wide.inject({ method: 'PATCH', url: `/users/${a.id}`, headers: bearer(b.access), payload: { role: 'user' } })
    await untilWaiting(1)
    const promotions = targets.map((target) => wide.inject({
      method: 'POST', url: '/auth/change-role', headers: bearer(a.access), payload: { username: target.username, role: 'admin' }
    }))
    await untilWaiting(31)
    await release()
    t.equal((await demotion).statusCode, 200, 'A is demoted')
    const statuses = (await Promise.all(promotions)).map((r) => r.statusCode)
    t.strictSame([...new Set(statuses)], [403], 'every change A sent is refused: A is no longer an admin when it would commit')

    // Whatever the interleaving, no change of A's may commit after A's demotion.
    const demotedAt = (await userRow(a.id))!.ra
    const { rows } = await app.db.query(
      "SELECT count(*)::int AS n FROM users WHERE id = ANY($1) AND role = 'admin' AND revoked_after > $2::timestamptz",
      [targets.map((x) => x.id), demotedAt])
    t.equal(rows[0].n, 0, 'no admin created by A after its demotion')
    const promoted = await app.db.query("SELECT count(*)::int AS n FROM audit_events WHERE type = 'role_changed' AND actor_id = $1", [a.id])
    t.equal(promoted.rows[0].n, 0, 'nothing audited for A')
  })

  t.test('a change by an admin whose session ended while it waited is refused (401)', async (t) => {
    const a = await signUp(wide, ctx, { role: 'admin', label: 'loggedout' })
    const target = await signUp(wide, ctx, { label: 'target' })
    t.equal((await me(wide, a.access)).statusCode, 200)
    // A share of A's row: the change waits for it, a logout (which takes a lesser share) does not.
    const release = await hold('SELECT id FROM users WHERE id = $1 FOR SHARE', [a.id])
    const change = wide.inject({ method: 'PATCH', url: `/users/${target.id}`, headers: bearer(a.access), payload: { disabled: true } })
    await untilWaiting(1)
    // The session ends (a logout, from another tab) while the change waits.
    t.equal((await wide.inject({ method: 'POST', url: '/auth/logout', headers: bearer(a.access) })).statusCode, 204)
    await release()
    const res = await change
    t.equal(res.statusCode, 401)
    t.match(res.headers['www-authenticate'], /^Bearer/)
    t.match(await userRow(target.id), { disabled: false }, 'nothing changed')
  })

  t.test('checked at commit without deadlocks: an admin\'s change while its session refreshes, a deletion while the user logs out', async (t) => {
    const a = await signUp(wide, ctx, { role: 'admin', label: 'busy' })
    const target = await signUp(wide, ctx, { label: 'target' })
    let tokens = { access: a.access, refresh: a.refresh }
    const statuses: number[] = []
    for (let i = 0; i < 30; i++) {
      const [change, refreshed] = await Promise.all([
        wide.inject({ method: 'PATCH', url: `/users/${target.id}`, headers: bearer(tokens.access), payload: { disabled: i % 2 === 0 } }),
        wide.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: tokens.refresh } })
      ])
      statuses.push(change.statusCode, refreshed.statusCode)
      tokens = { access: refreshed.json().access_token, refresh: refreshed.json().refresh_token }
    }
    t.strictSame([...new Set(statuses)], [200], 'every change and every refresh went through')

    const root2 = await signUp(wide, ctx, { role: 'admin', label: 'deleter' })
    const outcomes: number[] = []
    for (let i = 0; i < 15; i++) {
      const leaving = await signUp(wide, ctx, { label: 'leaving' })
      const [deleted, loggedOut] = await Promise.all([
        wide.inject({ method: 'DELETE', url: `/users/${leaving.id}`, headers: bearer(root2.access) }),
        wide.inject({ method: 'POST', url: '/auth/logout', headers: bearer(leaving.access) })
      ])
      t.equal(deleted.statusCode, 204)
      outcomes.push(loggedOut.statusCode)
      ctx.forget(leaving.id)
    }
    t.ok(outcomes.every((s) => s === 204 || s === 401), `logouts: 204, or 401 once the user is gone, never 503 (${outcomes})`)
  })

  t.test('a user\'s own writes need the session live at commit: change-password after logout-all', async (t) => {
    const user = await signUp(wide, ctx, { label: 'self' })
    const phone = await login(wide, user.username)
    const release = await hold('SELECT id FROM users WHERE id = $1 FOR UPDATE', [user.id])
    // logout-all from the phone queues first; the change of password from the first device
    // (its password already checked) waits behind it.
    const logoutAll = wide.inject({ method: 'POST', url: '/auth/logout-all', headers: bearer(phone.access) })
    await untilWaiting(1)
    const change = wide.inject({
      method: 'POST', url: '/auth/change-password', headers: bearer(user.access), payload: { currentPassword: PASSWORD, newPassword: 'a new password 42' }
    })
    await untilWaiting(2)
    await release()
    t.equal((await logoutAll).statusCode, 204)
    const res = await change
    t.equal(res.statusCode, 401, 'the session that asked ended before the change could commit')
    t.equal(await loginStatus(user.username), 200, 'the password is unchanged')
  })
})
