// Refresh-token rotation and theft detection, logout-all, the session list and
// session deletion, change-password: what the caller sees and what is left afterwards.
import { createHash, randomBytes } from 'node:crypto'
import t from 'tap'
import { bearer, build, context, login, me, PASSWORD, signUp, type Account } from '../helper.js'

const ctx = await context(t)
const app = await build(t, ctx)

const NEW_PASSWORD = 'a brand new passphrase'

function claims (token: string): Record<string, any> {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString())
}

const sidOf = (access: string): string => claims(access).sid

function sha256 (token: string): string {
  return createHash('sha256').update(token).digest('hex')
}

function refresh (token: unknown, headers: Record<string, string> = {}) {
  return app.inject({ method: 'POST', url: '/auth/refresh', headers, payload: { refresh_token: token } })
}

function listSessions (access: string) {
  return app.inject({ method: 'GET', url: '/auth/sessions', headers: bearer(access) })
}

function deleteSession (access: string | null, id: string) {
  return app.inject({ method: 'DELETE', url: `/auth/sessions/${id}`, headers: access === null ? {} : bearer(access) })
}

function changePassword (access: string | null, payload: unknown) {
  return app.inject({
    method: 'POST',
    url: '/auth/change-password',
    headers: { ...(access === null ? {} : bearer(access)), 'content-type': 'application/json' },
    payload: JSON.stringify(payload)
  })
}

/** Logs in with a given User-Agent; returns the token pair. */
async function loginWith (username: string, userAgent: string) {
  const res = await app.inject({ method: 'POST', url: '/auth/login', headers: { 'user-agent': userAgent }, payload: { username, password: PASSWORD } })
  if (res.statusCode !== 200) throw new Error(`login failed: ${res.statusCode}`)
  return { access: res.json().access_token as string, refresh: res.json().refresh_token as string }
}

async function loginStatus (username: string, password: string): Promise<number> {
  return (await app.inject({ method: 'POST', url: '/auth/login', payload: { username, password } })).statusCode
}

async function auditRows (userId: string, type: string) {
  const { rows } = await app.db.query(
    'SELECT actor_id, subject_id, detail FROM audit_events WHERE subject_id = $1 AND type = $2 ORDER BY id', [userId, type])
  return rows
}

async function sessionRevoked (sid: string): Promise<boolean> {
  const { rows } = await app.db.query('SELECT revoked_at FROM sessions WHERE id = $1', [sid])
  return rows.length === 0 || rows[0].revoked_at !== null
}

async function revokedAfter (userId: string): Promise<string> {
  const { rows } = await app.db.query('SELECT revoked_after::text AS ra FROM users WHERE id = $1', [userId])
  return rows[0].ra
}

t.test('refresh', async (t) => {
  t.test('returns a new token pair for the same session; the refresh token is stored only as a hash', async (t) => {
    const user = await signUp(app, ctx)
    const sid = sidOf(user.access)
    const res = await refresh(user.refresh)
    t.equal(res.statusCode, 200)
    t.equal(res.headers['cache-control'], 'no-store')
    const body = res.json()
    t.strictSame(Object.keys(body).sort(), ['access_token', 'expires_in', 'refresh_token', 'token_type'])
    t.match(body, { access_token: String, token_type: 'Bearer', expires_in: 900, refresh_token: String })
    t.not(body.refresh_token, user.refresh, 'a new refresh token')
    t.not(body.access_token, user.access, 'a new access token')
    t.ok(Buffer.from(body.refresh_token, 'base64url').length >= 32, 'at least 256 bits')
    t.match(claims(body.access_token), { sub: user.id, role: 'user', sid })
    const who = await me(app, body.access_token)
    t.equal(who.statusCode, 200)
    t.strictSame(who.json(), { id: user.id, username: user.username, role: 'user' })

    const { rows } = await app.db.query(
      'SELECT encode(token_hash, \'hex\') AS hash, used_at FROM refresh_tokens WHERE session_id = $1 ORDER BY created_at', [sid])
    t.strictSame(rows.map((r) => r.hash), [sha256(user.refresh), sha256(body.refresh_token)], 'only SHA-256 hashes are stored')
    t.not(rows[0].used_at, null, 'the old token is retired')
    t.equal(rows[1].used_at, null, 'the new one is not')
    const raw = await app.db.query(
      `SELECT count(*)::int AS n FROM refresh_tokens
        WHERE session_id = $1 AND (token_hash = convert_to($2, 'UTF8') OR token_hash = decode($3, 'hex'))`,
      [sid, body.refresh_token, Buffer.from(body.refresh_token, 'base64url').toString('hex')])
    t.equal(raw.rows[0].n, 0, 'the token itself is nowhere in the table')
  })

  t.test('each new refresh token works once, down a chain of rotations', async (t) => {
    const user = await signUp(app, ctx)
    let current = user.refresh
    const seen = new Set([current])
    for (let i = 0; i < 3; i++) {
      const res = await refresh(current)
      t.equal(res.statusCode, 200, `rotation ${i + 1}`)
      current = res.json().refresh_token
      t.notOk(seen.has(current), 'never a token seen before')
      seen.add(current)
      t.equal((await me(app, res.json().access_token)).statusCode, 200)
    }
    const { rows } = await app.db.query(
      'SELECT count(*) FILTER (WHERE used_at IS NULL)::int AS live, count(*)::int AS total FROM refresh_tokens WHERE session_id = $1',
      [sidOf(user.access)])
    t.strictSame(rows[0], { live: 1, total: 4 }, 'one usable refresh token per session')
  })

  t.test('presenting a retired refresh token: 401, the whole session ends, refresh_reuse is audited', async (t) => {
    const user = await signUp(app, ctx)
    const phone = await login(app, user.username)
    const sid = sidOf(user.access)
    const rotated = (await refresh(user.refresh)).json()
    t.equal((await me(app, rotated.access_token)).statusCode, 200, 'the rotated pair works (and is cached as live)')

    const reuse = await refresh(user.refresh)
    t.equal(reuse.statusCode, 401)
    t.match(reuse.json(), { statusCode: 401, error: 'Unauthorized', message: String })
    t.match(reuse.headers['www-authenticate'], /^Bearer/)
    t.notOk('access_token' in reuse.json())

    t.equal((await me(app, rotated.access_token)).statusCode, 401, 'the live access token of the session is refused')
    t.equal((await me(app, user.access)).statusCode, 401, 'so is the first one')
    t.equal((await refresh(rotated.refresh_token)).statusCode, 401, 'the current refresh token of the session is dead too')
    t.ok(await sessionRevoked(sid), 'the session is revoked in the database')
    t.equal((await me(app, phone.access)).statusCode, 200, 'another session of the same user lives on')
    t.equal((await refresh(phone.refresh)).statusCode, 200)

    const events = await auditRows(user.id, 'refresh_reuse')
    t.equal(events.length, 1)
    t.strictSame(events[0].detail, { sessionId: sid })
    t.equal((await refresh(user.refresh)).statusCode, 401, 'presenting it yet again is still 401')
  })

  t.test('401 for an unknown or expired refresh token; the session is not ended for it', async (t) => {
    const user = await signUp(app, ctx)
    const unknown = await refresh(randomBytes(32).toString('base64url'))
    t.equal(unknown.statusCode, 401)
    t.match(unknown.headers['www-authenticate'], /^Bearer/)
    t.equal((await refresh(user.access)).statusCode, 401, 'an access token is not a refresh token')

    const other = await login(app, user.username)
    await app.db.query(
      'UPDATE refresh_tokens SET expires_at = clock_timestamp() - interval \'1 second\' WHERE token_hash = decode($1, \'hex\')',
      [sha256(other.refresh)])
    t.equal((await refresh(other.refresh)).statusCode, 401, 'an expired refresh token')
    t.equal((await me(app, other.access)).statusCode, 200, 'an expired token is not theft: its session was not ended')
    t.equal((await auditRows(user.id, 'refresh_reuse')).length, 0)
    t.equal((await refresh(user.refresh)).statusCode, 200, 'the user\'s good refresh token still works')
  })

  t.test('400 for a malformed body, and nothing is used up', async (t) => {
    const user = await signUp(app, ctx)
    const bodies: unknown[] = [{}, { refresh_token: 12345678 }, { refresh_token: '' }, { refresh_token: null },
      { refresh_token: [user.refresh] }, { refresh_token: 'x'.repeat(513) }, [user.refresh], null]
    for (const payload of bodies) {
      const res = await app.inject({ method: 'POST', url: '/auth/refresh', headers: { 'content-type': 'application/json' }, payload: JSON.stringify(payload) })
      t.equal(res.statusCode, 400, JSON.stringify(payload).slice(0, 40))
      t.equal(res.json().error, 'Bad Request')
    }
    t.equal((await refresh(user.refresh)).statusCode, 200)
  })

  t.test('concurrent refreshes with one token: exactly one succeeds, the others are reuse', async (t) => {
    const user = await signUp(app, ctx)
    for (let round = 0; round < 4; round++) {
      const pair = await login(app, user.username)
      const sid = sidOf(pair.access)
      const results = await Promise.all(Array.from({ length: 4 }, () => refresh(pair.refresh)))
      const statuses = results.map((r) => r.statusCode).sort()
      t.strictSame(statuses, [200, 401, 401, 401], `round ${round}: exactly one refresh succeeds`)
      const winner = results.find((r) => r.statusCode === 200)!.json()
      t.equal(claims(winner.access_token).sid, sid)
      // The losers presented a token that was used by then: theft, the session ends.
      t.equal((await refresh(winner.refresh_token)).statusCode, 401, 'the winner\'s refresh token died with the session')
      t.equal((await me(app, winner.access_token)).statusCode, 401, 'and so did its access token')
      t.ok(await sessionRevoked(sid))
      const { rows } = await app.db.query(
        'SELECT count(*) FILTER (WHERE used_at IS NULL)::int AS unused FROM refresh_tokens WHERE session_id = $1', [sid])
      t.ok(rows[0].unused <= 1, 'never two usable refresh tokens for one session')
    }
    t.ok((await auditRows(user.id, 'refresh_reuse')).length >= 4, 'every round audited a reuse')
    t.equal((await me(app, user.access)).statusCode, 200, 'the user\'s first session was never touched')
  })
})

t.test('logout-all', async (t) => {
  t.test('401 without a valid token', async (t) => {
    const res = await app.inject({ method: 'POST', url: '/auth/logout-all' })
    t.equal(res.statusCode, 401)
    t.match(res.headers['www-authenticate'], /^Bearer/)
    t.equal((await app.inject({ method: 'POST', url: '/auth/logout-all', headers: { authorization: 'Bearer x.y.z' } })).statusCode, 401)
  })

  t.test('ends every session of the user, access and refresh tokens, and nobody else\'s', async (t) => {
    const user = await signUp(app, ctx)
    const laptop = await login(app, user.username)
    const phone = await login(app, user.username)
    const bystander = await signUp(app, ctx)
    for (const s of [user, laptop, phone]) t.equal((await me(app, s.access)).statusCode, 200)

    const res = await app.inject({ method: 'POST', url: '/auth/logout-all', headers: bearer(laptop.access) })
    t.equal(res.statusCode, 204)
    t.equal(res.body, '')
    for (const [name, s] of Object.entries({ first: user, caller: laptop, phone })) {
      t.equal((await me(app, s.access)).statusCode, 401, `${name}: access token refused`)
      t.equal((await refresh(s.refresh)).statusCode, 401, `${name}: refresh token refused`)
    }
    t.equal((await me(app, bystander.access)).statusCode, 200, 'another user stays signed in')
    t.equal((await app.inject({ method: 'POST', url: '/auth/logout-all', headers: bearer(laptop.access) })).statusCode, 401, 'the call itself now needs a new token')

    const again = await login(app, user.username)
    t.equal((await me(app, again.access)).statusCode, 200, 'the user can sign in again')
    const list = await listSessions(again.access)
    t.equal(list.statusCode, 200)
    t.strictSame(list.json().map((s: { id: string }) => s.id), [sidOf(again.access)], 'only the new session is live')
    const events = await auditRows(user.id, 'logout_all')
    t.equal(events.length, 1)
    t.equal(events[0].actor_id, user.id)
  })
})

t.test('GET /auth/sessions', async (t) => {
  t.test('401 without a valid token', async (t) => {
    const res = await app.inject({ method: 'GET', url: '/auth/sessions' })
    t.equal(res.statusCode, 401)
    t.match(res.headers['www-authenticate'], /^Bearer/)
  })

  t.test('lists the caller\'s live sessions, `current` marking the caller\'s own', async (t) => {
    const user = await signUp(app, ctx)
    const laptop = await loginWith(user.username, 'laptop-browser/1.0')
    const phone = await loginWith(user.username, 'phone-app/2.0')
    const ended = await login(app, user.username)
    t.equal((await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(ended.access) })).statusCode, 204)
    const stranger = await signUp(app, ctx)

    const res = await listSessions(laptop.access)
    t.equal(res.statusCode, 200)
    const list = res.json() as Array<Record<string, unknown>>
    t.equal(list.length, 3, 'three live sessions: the ended one and the stranger\'s are not listed')
    for (const s of list) {
      t.strictSame(Object.keys(s).sort(), ['createdAt', 'current', 'id', 'ip', 'lastUsedAt', 'userAgent'])
      t.equal(new Date(s.createdAt as string).toISOString(), s.createdAt, 'createdAt is ISO 8601')
      t.equal(new Date(s.lastUsedAt as string).toISOString(), s.lastUsedAt, 'lastUsedAt is ISO 8601')
      t.equal(s.ip, '127.0.0.1')
    }
    const byId = new Map(list.map((s) => [s.id, s]))
    t.same([...byId.keys()].sort(), [sidOf(user.access), sidOf(laptop.access), sidOf(phone.access)].sort())
    t.match(byId.get(sidOf(laptop.access)), { current: true, userAgent: 'laptop-browser/1.0' })
    t.match(byId.get(sidOf(phone.access)), { current: false, userAgent: 'phone-app/2.0' })
    t.match(byId.get(sidOf(user.access)), { current: false })
    t.equal(list.filter((s) => s.current).length, 1, 'exactly one is current')

    const fromPhone = (await listSessions(phone.access)).json() as Array<Record<string, unknown>>
    t.strictSame(fromPhone.filter((s) => s.current).map((s) => s.id), [sidOf(phone.access)], 'current follows the caller')
    const strangers = (await listSessions(stranger.access)).json() as Array<Record<string, unknown>>
    t.strictSame(strangers.map((s) => s.id), [sidOf(stranger.access)], 'a user sees only their own sessions')
  })

  t.test('a refresh updates lastUsedAt, userAgent and ip of the session, and keeps its id', async (t) => {
    const user = await signUp(app, ctx)
    const pair = await loginWith(user.username, 'old-agent')
    const before = ((await listSessions(pair.access)).json() as Array<Record<string, string>>).find((s) => s.id === sidOf(pair.access))!
    const res = await refresh(pair.refresh, { 'user-agent': 'new-agent' })
    t.equal(res.statusCode, 200)
    const after = ((await listSessions(res.json().access_token)).json() as Array<Record<string, string | boolean>>)
      .find((s) => s.id === sidOf(pair.access))!
    t.match(after, { id: before.id, createdAt: before.createdAt, userAgent: 'new-agent', current: true })
    t.ok(Date.parse(after.lastUsedAt as string) >= Date.parse(before.lastUsedAt), 'lastUsedAt moved forward')
  })
})

t.test('DELETE /auth/sessions/:id', async (t) => {
  t.test('ends one of the caller\'s sessions: 204, its tokens refused, the others live on', async (t) => {
    const user = await signUp(app, ctx)
    const phone = await login(app, user.username)
    t.equal((await me(app, phone.access)).statusCode, 200, 'cached as live first')
    const res = await deleteSession(user.access, sidOf(phone.access))
    t.equal(res.statusCode, 204)
    t.equal(res.body, '')
    t.equal((await me(app, phone.access)).statusCode, 401, 'its access token is refused on the next request')
    t.equal((await refresh(phone.refresh)).statusCode, 401, 'its refresh token too')
    t.equal((await me(app, user.access)).statusCode, 200, 'the caller stays signed in')
    const list = (await listSessions(user.access)).json() as Array<{ id: string }>
    t.strictSame(list.map((s) => s.id), [sidOf(user.access)], 'no longer listed')
    const events = await auditRows(user.id, 'session_revoked')
    t.equal(events.length, 1)
    t.strictSame(events[0].detail, { sessionId: sidOf(phone.access) })
    t.equal(events[0].actor_id, user.id)
    t.equal((await deleteSession(user.access, sidOf(phone.access))).statusCode, 404, 'an ended session is not found')
  })

  t.test('deleting the caller\'s own current session signs the caller out', async (t) => {
    const user = await signUp(app, ctx)
    const other = await login(app, user.username)
    t.equal((await deleteSession(user.access, sidOf(user.access))).statusCode, 204)
    t.equal((await me(app, user.access)).statusCode, 401)
    t.equal((await me(app, other.access)).statusCode, 200)
  })

  t.test('another user\'s session is 404, not 403, and stays alive', async (t) => {
    const alice = await signUp(app, ctx)
    const mallory = await signUp(app, ctx)
    const res = await deleteSession(mallory.access, sidOf(alice.access))
    t.equal(res.statusCode, 404)
    t.match(res.json(), { statusCode: 404, error: 'Not Found', message: String })
    const unknown = await deleteSession(mallory.access, '00000000-0000-4000-8000-000000000000')
    t.equal(unknown.statusCode, 404)
    t.equal(unknown.body, res.body, 'indistinguishable from an unknown id')
    t.equal((await me(app, alice.access)).statusCode, 200, 'Alice\'s session lives on')
    t.equal((await refresh(alice.refresh)).statusCode, 200)
    t.notOk(await sessionRevoked(sidOf(alice.access)))
    t.equal((await me(app, mallory.access)).statusCode, 200)
  })

  t.test('401 without a token, 400 for an id that is not a UUID', async (t) => {
    const user = await signUp(app, ctx)
    const noToken = await deleteSession(null, sidOf(user.access))
    t.equal(noToken.statusCode, 401)
    t.match(noToken.headers['www-authenticate'], /^Bearer/)
    for (const id of ['not-a-uuid', '123', `urn:uuid:${sidOf(user.access)}`, `${sidOf(user.access)}x`]) {
      const res = await deleteSession(user.access, encodeURIComponent(id))
      t.equal(res.statusCode, 400, id)
      t.equal(res.json().error, 'Bad Request')
    }
    t.equal((await me(app, user.access)).statusCode, 200, 'nothing was ended')
  })
})

t.test('POST /auth/change-password', async (t) => {
  t.test('401 without a valid token, and nothing changes', async (t) => {
    const user = await signUp(app, ctx)
    const payload = { currentPassword: PASSWORD, newPassword: NEW_PASSWORD }
    const res = await changePassword(null, payload)
    t.equal(res.statusCode, 401)
    t.match(res.headers['www-authenticate'], /^Bearer/)
    const stale = await login(app, user.username)
    t.equal((await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(stale.access) })).statusCode, 204)
    t.equal((await changePassword(stale.access, payload)).statusCode, 401, 'a revoked token cannot change the password')
    t.equal(await loginStatus(user.username, PASSWORD), 200, 'the old password still works')
    t.equal(await loginStatus(user.username, NEW_PASSWORD), 401)
  })

  t.test('400 for a malformed body, and nothing changes', async (t) => {
    const user = await signUp(app, ctx)
    const ra = await revokedAfter(user.id)
    const bodies: unknown[] = [
      {},
      { currentPassword: PASSWORD },
      { newPassword: NEW_PASSWORD },
      { currentPassword: PASSWORD, newPassword: 'short' },
      { currentPassword: PASSWORD, newPassword: 'x'.repeat(129) },
      { currentPassword: PASSWORD, newPassword: 12345678 },
      { currentPassword: 12345678, newPassword: NEW_PASSWORD },
      { currentPassword: null, newPassword: NEW_PASSWORD },
      { currentPassword: '', newPassword: NEW_PASSWORD },
      [PASSWORD, NEW_PASSWORD]
    ]
    for (const payload of bodies) {
      const res = await changePassword(user.access, payload)
      t.equal(res.statusCode, 400, JSON.stringify(payload))
      t.equal(res.json().error, 'Bad Request')
    }
    t.equal((await me(app, user.access)).statusCode, 200, 'still signed in')
    t.equal(await revokedAfter(user.id), ra)
    t.equal(await loginStatus(user.username, PASSWORD), 200, 'the password is unchanged')
  })

  t.test('a wrong current password is 403 and changes nothing', async (t) => {
    const user = await signUp(app, ctx)
    const phone = await login(app, user.username)
    const ra = await revokedAfter(user.id)
    const { rows: [{ password_hash: hashBefore }] } = await app.db.query('SELECT password_hash FROM users WHERE id = $1', [user.id])
    const res = await changePassword(user.access, { currentPassword: 'not my password', newPassword: NEW_PASSWORD })
    t.equal(res.statusCode, 403)
    t.match(res.json(), { statusCode: 403, error: 'Forbidden', message: String })
    t.equal((await me(app, user.access)).statusCode, 200, 'the caller is still signed in')
    t.equal((await me(app, phone.access)).statusCode, 200, 'so is the other session')
    t.equal((await refresh(phone.refresh)).statusCode, 200)
    const { rows: [{ password_hash: hashAfter }] } = await app.db.query('SELECT password_hash FROM users WHERE id = $1', [user.id])
    t.equal(hashAfter, hashBefore, 'the stored hash is unchanged')
    t.equal(await revokedAfter(user.id), ra)
    t.equal(await loginStatus(user.username, NEW_PASSWORD), 401)
    t.equal(await loginStatus(user.username, PASSWORD), 200)
    t.equal((await auditRows(user.id, 'password_changed')).length, 0)
  })

  t.test('the right current password: 204, every session ends, the new password is the only one', async (t) => {
    const user = await signUp(app, ctx)
    const phone = await login(app, user.username)
    const bystander = await signUp(app, ctx)
    const sessions: Record<string, Account | { access: string, refresh: string }> = { caller: user, phone }
    for (const s of Object.values(sessions)) t.equal((await me(app, s.access)).statusCode, 200)

    const res = await changePassword(user.access, { currentPassword: PASSWORD, newPassword: NEW_PASSWORD })
    t.equal(res.statusCode, 204)
    t.equal(res.body, '')
    for (const [name, s] of Object.entries(sessions)) {
      t.equal((await me(app, s.access)).statusCode, 401, `${name}: access token refused`)
      t.equal((await refresh(s.refresh)).statusCode, 401, `${name}: refresh token refused`)
    }
    t.equal((await me(app, bystander.access)).statusCode, 200, 'another user is not affected')
    t.equal(await loginStatus(user.username, PASSWORD), 401, 'the old password no longer works')
    const fresh = await login(app, user.username, NEW_PASSWORD)
    t.equal((await me(app, fresh.access)).statusCode, 200, 'the new one does')
    t.strictSame(((await listSessions(fresh.access)).json() as Array<{ id: string }>).map((s) => s.id), [sidOf(fresh.access)])
    const events = await auditRows(user.id, 'password_changed')
    t.equal(events.length, 1)
    t.equal(events[0].actor_id, user.id)
    t.notOk(JSON.stringify(events[0].detail).includes(NEW_PASSWORD), 'no password in the audit trail')
  })
})
