// The app's start-up: the first admin from ADMIN_USERNAME/ADMIN_PASSWORD.
import t from 'tap'
import { build, context, login, PASSWORD, signUp } from './helper.js'

const ctx = await context(t)

/** Builds an app with these overrides and collects its log lines (JSON). */
async function start (t: Parameters<typeof build>[0], overrides: Record<string, string>) {
  const lines: Array<Record<string, any>> = []
  const app = await build(t, ctx, { LOG_LEVEL: 'info', ...overrides }, { logStream: { write: (line: string) => { lines.push(JSON.parse(line)) } } })
  return { app, lines }
}

t.test('ADMIN_USERNAME/ADMIN_PASSWORD create the first admin once', async (t) => {
  const username = ctx.username('root')
  const first = await start(t, { ADMIN_USERNAME: username, ADMIN_PASSWORD: PASSWORD })
  t.match(first.lines.filter((l) => l.msg === 'initial admin created'), [{ level: 30, username }])
  const { rows } = await first.app.db.query('SELECT role FROM users WHERE username = $1', [username])
  t.strictSame(rows, [{ role: 'admin' }])
  t.ok((await login(first.app, username)).access, 'signs in')

  const again = await start(t, { ADMIN_USERNAME: username, ADMIN_PASSWORD: 'another password 42' })
  t.equal(again.lines.filter((l) => l.msg === 'initial admin created').length, 0, 'not created twice')
  t.equal(again.lines.filter((l) => l.level >= 40).length, 0, 'and nothing to warn about')
  t.ok((await login(again.app, username)).access, 'the password stays the one it was created with')
})

t.test('an ADMIN_USERNAME that is a normal user is not promoted, and start-up says so loudly', async (t) => {
  const base = await build(t, ctx)
  const user = await signUp(base, ctx, { label: 'plain' })
  const { app, lines } = await start(t, { ADMIN_USERNAME: user.username.toUpperCase(), ADMIN_PASSWORD: PASSWORD })
  const warnings = lines.filter((l) => l.level === 40)
  t.match(warnings, [{ username: user.username, role: 'user', msg: /ADMIN_USERNAME names an existing user that is not an active admin: NO ADMIN WAS CREATED/ }])
  const { rows } = await app.db.query('SELECT role FROM users WHERE id = $1', [user.id])
  t.strictSame(rows, [{ role: 'user' }], 'left as it is')
})
