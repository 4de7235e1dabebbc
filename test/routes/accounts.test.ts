// Account administration (issue 16): an admin creates a user (POST /users) and sets a
// temporary password (POST /users/:id/password) that must be changed at the next login; a
// user deletes their own account (DELETE /auth/me). Authority and the last-admin rule are
// checked at commit, under real concurrency.
// A database of this file's own: the last-admin rule spans all users.
import t, { type Test } from 'tap'
import type { LightMyRequestResponse } from 'fastify'
import { bearer, build, context, holdRows, login, me, PASSWORD, signUp, untilLockWaiters, type Account } from '../helper.js'

const ctx = await context(t, { ownDatabase: true })
const app = await build(t, ctx)
const root = await signUp(app, ctx, { role: 'admin', label: 'root' })

const UNKNOWN_ID = '00000000-0000-4000-8000-000000000000'
const TEMPORARY = 'temporary horse staple'

function createUser (access: string | null, body: unknown) {
  return app.inject({ method: 'POST', url: '/users', headers: access === null ? {} : bearer(access), payload: body as object })
}

function setPassword (access: string | null, id: string, body: unknown = { password: TEMPORARY }) {
  return app.inject({ method: 'POST', url: `/users/${id}/password`, headers: access === null ? {} : bearer(access), payload: body as object })
}

function deleteMe (access: string, body: unknown = { password: PASSWORD }, remoteAddress?: string) {
  return app.inject({ method: 'DELETE', url: '/auth/me', headers: bearer(access), payload: body as object, remoteAddress })
}

function loginAs (username: string, password: string) {
  return app.inject({ method: 'POST', url: '/auth/login', payload: { username, password } })
}

function refresh (token: string) {
  return app.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: token } })
}

async function userRow (id: string) {
  const { rows } = await app.db.query('SELECT username, role, password_hash FROM users WHERE id = $1', [id])
  return rows[0] as { username: string, role: string, password_hash: string } | undefined
}

async function events (type: string, subjectId: string) {
  const { rows } = await app.db.query('SELECT actor_id, ip, detail FROM audit_events WHERE type = $1 AND subject_id = $2 ORDER BY id', [type, subjectId])
  return rows
}

async function activeAdmins (): Promise<string[]> {
  const { rows } = await app.db.query("SELECT id FROM users WHERE role = 'admin' AND NOT disabled ORDER BY id")
  return rows.map((r) => r.id)
}

/**
 * A user signed in on two devices (both cached live) beside a bystander: `act` on the user
 * answers 204 and ends both sessions at once, access and refresh tokens alike, and
 * leaves the bystander's. The user.
 */
async function endsEverySession (t: Test, act: (user: Account) => Promise<LightMyRequestResponse>): Promise<Account> {
  const user = await signUp(app, ctx)
  const phone = await login(app, user.username)
  const bystander = await signUp(app, ctx)
  for (const tokens of [user, phone]) t.equal((await me(app, tokens.access)).statusCode, 200, 'warm: the refusal below is the revocation\'s')
  const res = await act(user)
  t.equal(res.statusCode, 204)
  t.equal(res.body, '')
  for (const tokens of [user, phone]) {
    t.equal((await me(app, tokens.access)).statusCode, 401, 'the access token is refused')
    t.equal((await refresh(tokens.refresh)).statusCode, 401, 'and the refresh token')
  }
  t.equal((await me(app, bystander.access)).statusCode, 200, 'another user keeps theirs')
  return user
}

/** Demotes every active admin but `keep` (through the service, as the operator). */
async function onlyAdmins (keep: string[]): Promise<void> {
  for (const id of await activeAdmins()) {
    if (!keep.includes(id)) await app.users.update({ id }, { role: 'user' }, { actorId: null, ip: null })
  }
}

t.test('POST /users and POST /users/:id/password: admins only; without the role nothing changes', async (t) => {
  const user = await signUp(app, ctx)
  const target = await signUp(app, ctx)
  const username = ctx.username('never')
  const calls: Array<[string, (access: string | null) => Promise<LightMyRequestResponse>]> = [
    ['POST /users', (a) => createUser(a, { username, password: PASSWORD })],
    ['POST /users/:id/password', (a) => setPassword(a, target.id)]
  ]
  for (const [name, call] of calls) {
    const anonymous = await call(null)
    t.equal(anonymous.statusCode, 401, `${name} without a token`)
    t.match(anonymous.headers['www-authenticate'], /^Bearer/)
    t.equal((await call(user.access)).statusCode, 403, `${name} as a user`)
  }
  t.equal((await loginAs(username, PASSWORD)).statusCode, 401, 'no user was created')
  t.equal((await me(app, target.access)).statusCode, 200, 'the target keeps its session')
  t.equal((await loginAs(target.username, PASSWORD)).statusCode, 200, 'and its password')
})

t.test('POST /users', async (t) => {
  t.test('201: a user with the role given (user by default), who signs in with that password', async (t) => {
    const username = ctx.username('Created')
    const res = await createUser(root.access, { username, password: PASSWORD })
    t.equal(res.statusCode, 201)
    t.equal(res.headers['cache-control'], 'no-store')
    const user = res.json()
    t.match(user, { id: String, username, role: 'user', disabled: false, createdAt: String })
    t.notOk('password' in user || 'passwordHash' in user, 'no password in the answer')
    const tokens = await login(app, username.toUpperCase())
    t.match((await me(app, tokens.access)).json(), { id: user.id, username, role: 'user' })

    const admin = (await createUser(root.access, { username: ctx.username('newadmin'), password: PASSWORD, role: 'admin' })).json()
    t.equal(admin.role, 'admin')
    t.equal((await app.inject({ method: 'GET', url: '/users?limit=1', headers: bearer((await login(app, admin.username)).access) })).statusCode, 200, 'and may act as one')
    t.match(await events('user_created', user.id), [{ actor_id: root.id, detail: { username, role: 'user' } }], 'audited, with the admin as actor')
    t.match(await events('user_created', admin.id), [{ actor_id: root.id, detail: { role: 'admin' } }])
  })

  t.test('409 when the username is taken in any case; 400 for what registration refuses', async (t) => {
    const taken = await signUp(app, ctx)
    const conflict = await createUser(root.access, { username: taken.username.toUpperCase(), password: PASSWORD })
    t.equal(conflict.statusCode, 409)
    t.match(conflict.json(), { statusCode: 409, error: 'Conflict', code: 'AUTH_CONFLICT', message: 'Username is already taken' })
    const username = ctx.username('bad')
    const bad: Array<[string, unknown]> = [
      ['a common password', { username, password: 'password123' }],
      ['a password containing the username', { username, password: `x${username}x` }],
      ['a short password', { username, password: 'short' }],
      ['a bad username', { username: 'a b', password: PASSWORD }],
      ['an unknown role', { username, password: PASSWORD, role: 'root' }],
      ['a password that is not a string', { username, password: 12345678 }],
      ['no password', { username }]
    ]
    for (const [what, body] of bad) {
      const res = await createUser(root.access, body)
      t.equal(res.statusCode, 400, what)
    }
    t.equal((await createUser(root.access, { username, password: 'password123' })).json().code, 'AUTH_WEAK_PASSWORD')
    t.equal((await loginAs(username, PASSWORD)).statusCode, 401, 'nothing was created')
  })

  t.test('the same username created by many requests at once: one 201, the rest 409', async (t) => {
    const username = ctx.username('racer')
    const statuses = (await Promise.all(Array.from({ length: 8 }, (_, i) =>
      createUser(root.access, { username: i % 2 === 0 ? username : username.toUpperCase(), password: PASSWORD }))))
      .map((r) => r.statusCode)
    t.strictSame([...statuses].sort(), [201, 409, 409, 409, 409, 409, 409, 409])
    const { rows } = await app.db.query('SELECT count(*)::int AS n FROM users WHERE lower(username) = lower($1)', [username])
    t.equal(rows[0].n, 1)
  })
})

t.test('POST /users/:id/password', async (t) => {
  t.test('204: every session of the user ends, at once; others keep theirs', async (t) => {
    const user = await endsEverySession(t, async (u) => await setPassword(root.access, u.id))
    t.equal((await me(app, root.access)).statusCode, 200, 'and so does the admin')
    t.equal((await loginAs(user.username, PASSWORD)).statusCode, 401, 'the old password no longer works')
    t.match(await events('password_set', user.id), [{ actor_id: root.id }], 'audited, with the admin as actor')
  })

  t.test('the next login with it: 403 AUTH_PASSWORD_CHANGE_REQUIRED and a reset token, no session', async (t) => {
    const user = await signUp(app, ctx)
    t.equal((await setPassword(root.access, user.id)).statusCode, 204)
    const sessionsBefore = (await app.db.query('SELECT count(*)::int AS n FROM sessions WHERE user_id = $1', [user.id])).rows[0].n
    const res = await loginAs(user.username, TEMPORARY)
    t.equal(res.statusCode, 403)
    t.equal(res.headers['cache-control'], 'no-store', 'it carries a token')
    const body = res.json()
    t.strictSame(Object.keys(body).sort(), ['code', 'error', 'message', 'reset_token', 'statusCode'])
    t.match(body, { statusCode: 403, error: 'Forbidden', code: 'AUTH_PASSWORD_CHANGE_REQUIRED', reset_token: /^[A-Za-z0-9_-]{43,}$/ })
    t.equal((await app.db.query('SELECT count(*)::int AS n FROM sessions WHERE user_id = $1', [user.id])).rows[0].n, sessionsBefore, 'no session started')
    t.match(await events('password_change_required', user.id), [{ actor_id: null }], 'audited')
    // The password form of login (OAuth 2.0 password grant) answers the same.
    const form = await app.inject({
      method: 'POST',
      url: '/auth/login',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: `grant_type=password&username=${user.username}&password=${encodeURIComponent(TEMPORARY)}`
    })
    t.equal(form.statusCode, 403)
    t.equal(form.json().code, 'AUTH_PASSWORD_CHANGE_REQUIRED')
    // Wrong passwords learn nothing: the usual 401, no token.
    const wrong = await loginAs(user.username, 'not the temporary one')
    t.equal(wrong.statusCode, 401)
    t.notOk('reset_token' in wrong.json())
  })

  t.test('the reset token sets a password of the user\'s own: sessions start again, the temporary one is gone', async (t) => {
    const user = await signUp(app, ctx)
    const reset = (token: string, newPassword: string) => app.inject({ method: 'POST', url: '/auth/password/reset', payload: { token, newPassword } })
    t.equal((await setPassword(root.access, user.id)).statusCode, 204)
    const stale = (await loginAs(user.username, TEMPORARY)).json().reset_token
    // The admin sets another one: a token handed out for the first is dead with it.
    t.equal((await setPassword(root.access, user.id, { password: `${TEMPORARY} 2` })).statusCode, 204)
    t.equal((await reset(stale, 'my very own words')).statusCode, 400, 'a token older than the password is refused')
    const token = (await loginAs(user.username, `${TEMPORARY} 2`)).json().reset_token
    t.equal((await reset(token, 'password123')).statusCode, 400, 'the password rules apply')
    t.equal((await reset(token, 'my very own words')).statusCode, 204)
    const tokens = await login(app, user.username, 'my very own words')
    t.equal((await me(app, tokens.access)).statusCode, 200, 'signs in with it, and the session works')
    t.equal((await loginAs(user.username, `${TEMPORARY} 2`)).statusCode, 401, 'the temporary password is gone')
    t.equal((await reset(token, 'other words again')).statusCode, 400, 'the token is used up')
    const { rows } = await app.db.query('SELECT temporary_password_hash = password_hash AS temporary FROM users WHERE id = $1', [user.id])
    t.strictSame(rows, [{ temporary: false }], 'no longer temporary')
  })

  t.test('a disabled user with a temporary password gets the usual 401', async (t) => {
    const user = await signUp(app, ctx)
    t.equal((await setPassword(root.access, user.id)).statusCode, 204)
    t.equal((await app.inject({ method: 'PATCH', url: `/users/${user.id}`, headers: bearer(root.access), payload: { disabled: true } })).statusCode, 200)
    const res = await loginAs(user.username, TEMPORARY)
    t.equal(res.statusCode, 401)
    t.equal(res.json().code, 'AUTH_BAD_CREDENTIALS')
  })

  t.test('404 for an unknown user, 400 for a password registration refuses; nothing changes', async (t) => {
    const user = await signUp(app, ctx)
    t.equal((await setPassword(root.access, UNKNOWN_ID)).statusCode, 404)
    t.equal((await setPassword(root.access, 'not-a-uuid')).statusCode, 400)
    for (const password of ['short', 'password123', `my ${user.username} pw`]) {
      t.equal((await setPassword(root.access, user.id, { password })).statusCode, 400, password)
    }
    t.equal((await setPassword(root.access, user.id, {})).statusCode, 400)
    t.equal((await me(app, user.access)).statusCode, 200, 'the user keeps its session')
    t.equal((await loginAs(user.username, PASSWORD)).statusCode, 200, 'and its password')
  })
})

t.test('DELETE /users/:id/lockout: 404 for an unknown id, 400 for a malformed one', async (t) => {
  const res = await app.inject({ method: 'DELETE', url: `/users/${UNKNOWN_ID}/lockout`, headers: bearer(root.access) })
  t.equal(res.statusCode, 404)
  t.match(res.json(), { code: 'AUTH_NOT_FOUND', message: 'User not found' })
  t.equal((await app.inject({ method: 'DELETE', url: '/users/nope/lockout', headers: bearer(root.access) })).statusCode, 400)
})

t.test('DELETE /auth/me', async (t) => {
  t.test('204: the account and every session end at once; other users keep theirs', async (t) => {
    const user = await endsEverySession(t, async (u) => await deleteMe(u.access))
    ctx.forget(user.id)
    t.equal(await userRow(user.id), undefined, 'the user is gone')
    t.equal((await loginAs(user.username, PASSWORD)).statusCode, 401)
    t.match(await events('user_deleted', user.id), [{ actor_id: user.id }], 'audited, the user as actor and subject')
  })

  t.test('403 for a wrong password, counted like change-password\'s: the threshold ends the session', async (t) => {
    const strict = await build(t, ctx, { LOCKOUT_THRESHOLD: 3 })
    const user = await signUp(strict, ctx)
    const laptop = await login(strict, user.username)
    const attempt = (password: string) => strict.inject({ method: 'DELETE', url: '/auth/me', headers: bearer(user.access), payload: { password }, remoteAddress: '10.7.7.7' })
    for (let i = 1; i <= 2; i++) {
      const res = await attempt(`wrong ${i}`)
      t.equal(res.statusCode, 403, `failure ${i}`)
      t.match(res.json(), { code: 'AUTH_WRONG_PASSWORD' })
    }
    const last = await attempt('wrong 3')
    t.equal(last.statusCode, 401, 'the third in a row ends the session')
    t.equal((await me(strict, user.access)).statusCode, 401)
    t.equal((await me(strict, laptop.access)).statusCode, 200, 'the user\'s other sessions live on')
    t.ok(await userRow(user.id), 'the account is still there')
    t.match((await events('account_delete_failed', user.id)).map((e) => e.detail), [
      { reason: 'bad_password', failures: 1, sessionEnded: false },
      { reason: 'bad_password', failures: 2, sessionEnded: false },
      { reason: 'bad_password', failures: 3, sessionEnded: true }
    ], 'audited')
    t.equal((await deleteMe(laptop.access, { password: PASSWORD }, '10.7.7.7')).statusCode, 429, 'that client is locked out of it now')
    t.equal((await deleteMe(laptop.access, {})).statusCode, 400, 'no password: 400')
    t.ok(await userRow(user.id), 'still there')
  })

  t.test('409 for the last active admin; another admin may leave', async (t) => {
    const a = await signUp(app, ctx, { role: 'admin', label: 'leaving' })
    const b = await signUp(app, ctx, { role: 'admin', label: 'staying' })
    t.equal((await deleteMe(a.access)).statusCode, 204, 'one of several admins leaves')
    ctx.forget(a.id)
    await onlyAdmins([b.id])
    Object.assign(b, await login(app, b.username))
    const res = await deleteMe(b.access)
    t.equal(res.statusCode, 409)
    t.match(res.json(), { code: 'AUTH_CONFLICT', message: 'The last admin cannot be demoted, disabled or deleted' })
    t.ok(await userRow(b.id), 'the last admin is still there')
    t.equal((await me(app, b.access)).statusCode, 200, 'and signed in')
    // Root is an admin again for what follows.
    t.equal((await app.inject({ method: 'PATCH', url: `/users/${root.id}`, headers: bearer(b.access), payload: { role: 'admin' } })).statusCode, 200)
    Object.assign(root, await login(app, root.username))
  })

  t.test('two last admins deleting themselves at once: one leaves, the other is refused (409)', async (t) => {
    const a = await signUp(app, ctx, { role: 'admin', label: 'twin' })
    const b = await signUp(app, ctx, { role: 'admin', label: 'twin' })
    await onlyAdmins([a.id, b.id])
    for (const x of [a, b]) Object.assign(x, await login(app, x.username))
    // Both past their password checks and waiting for the admins' rows before either commits.
    const release = await holdRows(t, ctx.databaseUrl, "SELECT id FROM users WHERE role = 'admin' AND NOT disabled FOR UPDATE")
    const both = Promise.all([deleteMe(a.access), deleteMe(b.access)])
    t.equal(await untilLockWaiters(app, 2), 2, 'both wait for the rows')
    await release()
    const statuses = (await both).map((r) => r.statusCode)
    t.strictSame([...statuses].sort(), [204, 409])
    t.equal((await activeAdmins()).length, 1, 'one active admin is left')
    const left = statuses[0] === 204 ? a : b
    ctx.forget(left.id)
    const stayed = left === a ? b : a
    t.equal((await app.inject({ method: 'PATCH', url: `/users/${root.id}`, headers: bearer(stayed.access), payload: { role: 'admin' } })).statusCode, 200)
    Object.assign(root, await login(app, root.username))
  })

  t.test('the session must be live at commit: a logout while it waits leaves the account (401)', async (t) => {
    const user = await signUp(app, ctx)
    const release = await holdRows(t, ctx.databaseUrl, 'SELECT id FROM users WHERE id = $1 FOR SHARE', [user.id])
    const deletion = deleteMe(user.access)
    t.equal(await untilLockWaiters(app, 1), 1, 'the deletion waits for the user\'s row')
    t.equal((await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(user.access) })).statusCode, 204)
    await release()
    t.equal((await deletion).statusCode, 401)
    t.ok(await userRow(user.id), 'nothing was deleted')
  })
})

t.test('authority is checked at commit: an admin demoted while its changes wait commits none of them', async (t) => {
  // A pool large enough that every request below is inside its transaction at once.
  const wide = await build(t, ctx, { DATABASE_POOL_SIZE: 40 })
  const a = await signUp(wide, ctx, { role: 'admin', label: 'demoted' })
  const b = await signUp(wide, ctx, { role: 'admin', label: 'demoter' })
  const targets: Account[] = []
  for (let i = 0; i < 10; i++) targets.push(await signUp(wide, ctx, { label: 'target' }))
  t.equal((await me(wide, a.access)).statusCode, 200)
  const hashes = await Promise.all(targets.map(async (x) => (await userRow(x.id))!.password_hash))

  // B's demotion of A queues first for the admins' rows; A's 10 creations and 10 password
  // changes queue after it, past the door (A was an admin when they came in).
  const release = await holdRows(t, ctx.databaseUrl, "SELECT id FROM users WHERE role = 'admin' AND NOT disabled FOR UPDATE")
  const demotion = wide.inject({ method: 'PATCH', url: `/users/${a.id}`, headers: bearer(b.access), payload: { role: 'user' } })
  t.equal(await untilLockWaiters(wide, 1), 1)
  const names = targets.map(() => ctx.username('late'))
  const changes = [
    ...names.map((username) => wide.inject({ method: 'POST', url: '/users', headers: bearer(a.access), payload: { username, password: PASSWORD } })),
    ...targets.map((x) => wide.inject({ method: 'POST', url: `/users/${x.id}/password`, headers: bearer(a.access), payload: { password: TEMPORARY } }))
  ]
  t.equal(await untilLockWaiters(wide, 21), 21, 'all of them wait for the rows')
  await release()
  t.equal((await demotion).statusCode, 200, 'A is demoted')
  const statuses = (await Promise.all(changes)).map((r) => r.statusCode)
  t.strictSame([...new Set(statuses)], [403], 'every change A sent is refused: A is no longer an admin when it would commit')
  const { rows } = await app.db.query('SELECT count(*)::int AS n FROM users WHERE username = ANY($1)', [names])
  t.equal(rows[0].n, 0, 'no user was created')
  t.strictSame(await Promise.all(targets.map(async (x) => (await userRow(x.id))!.password_hash)), hashes, 'no password changed')
  for (const x of targets) t.equal((await me(wide, x.access)).statusCode, 200, 'no session ended')
  const audited = await app.db.query("SELECT count(*)::int AS n FROM audit_events WHERE actor_id = $1 AND type IN ('user_created', 'password_set')", [a.id])
  t.equal(audited.rows[0].n, 0, 'nothing audited for A')
})
