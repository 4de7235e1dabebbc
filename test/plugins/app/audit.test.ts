// The audit service: an event that cannot be written never fails the request it records.
import t from 'tap'
import { bearer, build, context, login, signUp } from '../../helper.js'

const ctx = await context(t, { ownDatabase: true })
const lines: string[] = []
const app = await build(t, ctx, { LOG_LEVEL: 'warn' }, { logStream: { write: (line) => { lines.push(line) } } })

async function eventsOf (userId: string): Promise<string[]> {
  const { rows } = await app.db.query('SELECT type FROM audit_events WHERE subject_id = $1 ORDER BY id', [userId])
  return rows.map((r) => r.type)
}

t.test('with audit_events refusing every insert, requests still succeed and the loss is logged', async (t) => {
  const user = await signUp(app, ctx)
  const before = await eventsOf(user.id)
  t.strictSame(before, ['register', 'login'])
  // A real failure of the INSERT (a constraint no new row can meet), not a stub.
  await app.db.query('ALTER TABLE audit_events ADD CONSTRAINT refuse_all CHECK (false) NOT VALID')
  t.teardown(() => app.db.query('ALTER TABLE audit_events DROP CONSTRAINT IF EXISTS refuse_all'))

  const session = await login(app, user.username)
  t.equal((await app.inject({ method: 'POST', url: '/auth/login', payload: { username: user.username, password: 'wrong password' } })).statusCode, 401)
  t.equal((await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(session.access) })).statusCode, 204)
  t.equal((await app.inject({ method: 'POST', url: '/auth/logout-all', headers: bearer(user.access) })).statusCode, 204)

  t.strictSame(await eventsOf(user.id), before, 'nothing was written')
  const lost = lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'audit event not recorded').map((l) => l.auditType)
  t.strictSame(lost, ['login', 'login_failed', 'logout', 'logout_all'])
})
