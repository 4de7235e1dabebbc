// The audit service: events recorded in the transaction of the change they record,
// strings jsonb accepts, the subject of a refused login, and the retention purge.
import t from 'tap'
import { bearer, build, context, login, me, signUp } from '../../helper.js'

const ctx = await context(t, { ownDatabase: true })
const lines: string[] = []
const app = await build(t, ctx, { LOG_LEVEL: 'warn', AUDIT_RETENTION_DAYS: 30 }, { logStream: { write: (line) => { lines.push(line) } } })

async function eventsOf (userId: string): Promise<string[]> {
  const { rows } = await app.db.query('SELECT type FROM audit_events WHERE subject_id = $1 ORDER BY id', [userId])
  return rows.map((r) => r.type)
}

const sidOf = (access: string): string => JSON.parse(Buffer.from(access.split('.')[1], 'base64url').toString()).sid

t.test('with audit_events refusing every insert, a change fails and changes nothing; a failure that changes nothing is still answered', async (t) => {
  const admin = await signUp(app, ctx, { role: 'admin' })
  const user = await signUp(app, ctx)
  const before = await eventsOf(user.id)
  t.strictSame(before, ['register', 'login'])
  const session = await login(app, user.username)
  const rotated = (await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: session.refresh } })).json()
  t.equal((await me(app, rotated.access_token)).statusCode, 200)
  const { rows: [{ n: eventsBefore }] } = await app.db.query('SELECT count(*)::int AS n FROM audit_events')
  // A real failure of the INSERT (a constraint no new row can meet), not a stub.
  await app.db.query('ALTER TABLE audit_events ADD CONSTRAINT refuse_all CHECK (false) NOT VALID')
  t.teardown(() => app.db.query('ALTER TABLE audit_events DROP CONSTRAINT IF EXISTS refuse_all'))

  const changes: Array<[string, () => Promise<{ statusCode: number }>]> = [
    ['logout', () => app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(session.access) })],
    ['logout-all', () => app.inject({ method: 'POST', url: '/auth/logout-all', headers: bearer(user.access) })],
    ['session delete', () => app.inject({ method: 'DELETE', url: `/auth/sessions/${sidOf(session.access)}`, headers: bearer(user.access) })],
    ['change-password', () => app.inject({ method: 'POST', url: '/auth/change-password', headers: bearer(user.access), payload: { currentPassword: user.password, newPassword: 'a brand new passphrase' } })],
    ['change-role', () => app.inject({ method: 'POST', url: '/auth/change-role', headers: bearer(admin.access), payload: { username: user.username, role: 'admin' } })],
    ['disable', () => app.inject({ method: 'PATCH', url: `/users/${user.id}`, headers: bearer(admin.access), payload: { disabled: true } })],
    ['delete', () => app.inject({ method: 'DELETE', url: `/users/${user.id}`, headers: bearer(admin.access) })],
    ['refresh-token reuse', () => app.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: session.refresh } })]
  ]
  for (const [name, change] of changes) {
    const res = await change()
    t.ok(res.statusCode >= 500, `${name}: answered ${res.statusCode}`)
    t.equal((await me(app, session.access)).statusCode, 200, `${name}: changed nothing, the session lives`)
    t.equal((await me(app, user.access)).statusCode, 200)
  }
  const { rows: [state] } = await app.db.query(
    `SELECT u.role, u.disabled, s.revoked_at IS NULL AND s.reuse_detected_at IS NULL AS live
       FROM users u JOIN sessions s ON s.user_id = u.id WHERE s.id = $1`, [sidOf(session.access)])
  t.strictSame(state, { role: 'user', disabled: false, live: true }, 'nothing was changed without its event')
  t.equal((await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: rotated.refresh_token } })).statusCode, 200,
    'the reuse that could not be recorded did not end the session either')

  t.equal((await app.inject({ method: 'POST', url: '/auth/login', payload: { username: user.username, password: 'wrong password' } })).statusCode, 401,
    'a failed login changes nothing: answered as usual')
  const { rows: [{ n: eventsAfter }] } = await app.db.query('SELECT count(*)::int AS n FROM audit_events')
  t.equal(eventsAfter, eventsBefore, 'nothing was written')
  const lost = lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'audit event not recorded').map((l) => l.auditType)
  t.ok(lost.includes('login_failed'), 'the lost event of the failed login is logged')
})

t.test('a change and its event commit together', async (t) => {
  const user = await signUp(app, ctx)
  const phone = await login(app, user.username)
  t.equal((await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(phone.access) })).statusCode, 204)
  t.equal((await app.inject({ method: 'POST', url: '/auth/logout-all', headers: bearer(user.access) })).statusCode, 204)
  t.strictSame(await eventsOf(user.id), ['register', 'login', 'login', 'logout', 'logout_all'])
})

t.test('strings jsonb refuses (a lone surrogate, NUL) are recorded as U+FFFD instead of losing the event', async (t) => {
  const username = `lone\ud800surrogate\udc00${ctx.tag}`
  await app.audit.record({ type: 'login_failed', ip: '127.0.0.1', detail: { username, reason: 'unknown_user', 'k\ud83d': 'nul\u0000' } })
  const { rows } = await app.db.query("SELECT detail FROM audit_events WHERE type = 'login_failed' AND detail->>'username' LIKE $1", [`lone%${ctx.tag}`])
  t.equal(rows.length, 1, 'the event was written')
  t.strictSame(rows[0].detail, { username: `lone\uFFFDsurrogate\uFFFD${ctx.tag}`, reason: 'unknown_user', 'k\uFFFD': 'nul\uFFFD' })
  const pair = `pair\ud83d\ude00${ctx.tag}`
  await app.audit.record({ type: 'login_failed', detail: { username: pair } })
  const kept = await app.db.query("SELECT detail->>'username' AS u FROM audit_events WHERE detail->>'username' = $1", [pair])
  t.equal(kept.rows.length, 1, 'a well-formed pair (an emoji) is kept as it is')

  // Through the API, as the issue found it: a failed login for such a username is audited.
  const res = await app.inject({ method: 'POST', url: '/auth/login', headers: { 'content-type': 'application/json' }, payload: `{"username":"x\\ud800${ctx.tag}","password":"whatever1"}` })
  t.ok([400, 401].includes(res.statusCode), `answered ${res.statusCode}`)
  if (res.statusCode === 401) {
    const logged = await app.db.query("SELECT count(*)::int AS n FROM audit_events WHERE type = 'login_failed' AND detail->>'username' = $1", [`x\uFFFD${ctx.tag}`])
    t.equal(logged.rows[0].n, 1, 'the failed login is in the audit log')
  }
})

t.test('login_locked names its subject when the username exists; the answer does not', async (t) => {
  const locking = await build(t, ctx, { LOCKOUT_THRESHOLD: 2 })
  const user = await signUp(locking, ctx)
  const ghost = ctx.username('ghost')
  const answers: string[] = []
  for (const name of [user.username, ghost]) {
    for (let i = 0; i < 2; i++) {
      await locking.inject({ method: 'POST', url: '/auth/login', payload: { username: name, password: 'wrong password' } })
    }
    const locked = await locking.inject({ method: 'POST', url: '/auth/login', payload: { username: name.toUpperCase(), password: 'wrong password' } })
    t.equal(locked.statusCode, 429)
    answers.push(locked.body)
  }
  t.equal(answers[0], answers[1], 'the same 429 for a user and a name nobody has')
  const { rows } = await locking.db.query(
    "SELECT subject_id, detail->>'username' AS username FROM audit_events WHERE type = 'login_locked' AND lower(detail->>'username') = ANY($1) ORDER BY id",
    [[user.username.toLowerCase(), ghost.toLowerCase()]])
  t.strictSame(rows, [
    { subject_id: user.id, username: user.username.toUpperCase() },
    { subject_id: null, username: ghost.toUpperCase() }
  ])
})

t.test('AUDIT_RETENTION_DAYS: older events are deleted in batches, newer ones kept', async (t) => {
  const user = await signUp(app, ctx)
  await app.db.query(
    `INSERT INTO audit_events (at, type, subject_id, detail)
     SELECT now() - interval '31 days' - make_interval(secs => g), 'login', $1::uuid, '{}'::jsonb FROM generate_series(1, 12000) g
     UNION ALL
     SELECT now() - interval '29 days', 'login', $1::uuid, '{}'::jsonb FROM generate_series(1, 5)`, [user.id])
  const repository = (app.audit as any).repository
  const deleteOlderThan = repository.deleteOlderThan
  const batches: number[] = []
  repository.deleteOlderThan = async function (...args: [number, number]) {
    const n = await deleteOlderThan.apply(this, args)
    batches.push(n)
    return n
  }
  t.teardown(() => { repository.deleteOlderThan = deleteOlderThan })
  const purged = await app.audit.purgeOlderThan(app.config.AUDIT_RETENTION_DAYS)
  t.equal(purged, 12000)
  t.strictSame(batches, [5000, 5000, 2000], 'in batches')
  const { rows } = await app.db.query('SELECT count(*)::int AS n FROM audit_events WHERE subject_id = $1', [user.id])
  t.equal(rows[0].n, 5 + 2, 'the recent ones (and the user\'s own register and login) stay')
})
