// The admin command line (scripts/admin.ts) as an operator runs it: a real process (through
// tsx, as `npm run admin` does) against this test's PostgreSQL and Redis, while an
// instance of the service runs on them. What it revokes, that instance refuses on the
// next request, its cache warm (so the refusal comes from the command's Redis write).
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { tmpdir } from 'node:os'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { BASE_REDIS_URL, bearer, build, context, freePort, login, me, PASSWORD, signUp } from '../helper.js'

const ADMIN_TS = fileURLToPath(new URL('../../scripts/admin.ts', import.meta.url))

// Every command is a process of its own that compiles (tsx), connects and checks the
// migrations: on a busy machine the file needs more than the default timeout.
t.setTimeout(300_000)

const ctx = await context(t)
const app = await build(t, ctx, { LOCKOUT_THRESHOLD: 2 })

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs the command line with `args`, `stdin` as its standard input (a pipe, not a terminal). */
async function admin (args: string[], opts: { stdin?: string, env?: Record<string, string> } = {}): Promise<Run> {
  const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), ADMIN_TS, ...args], {
    // A directory without a .env of a developer's.
    cwd: tmpdir(),
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      NODE_ENV: 'test',
      DATABASE_URL: ctx.databaseUrl,
      REDIS_URL: BASE_REDIS_URL,
      REDIS_KEY_PREFIX: ctx.redisKeyPrefix,
      STARTUP_TIMEOUT: '0',
      ARGON2_MEMORY_COST: '8192',
      ARGON2_TIME_COST: '1',
      ...opts.env
    },
    stdio: ['pipe', 'pipe', 'pipe']
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk) => { stdout += String(chunk) })
  child.stderr.on('data', (chunk) => { stderr += String(chunk) })
  child.stdin.end(opts.stdin ?? '')
  const [code] = await once(child, 'exit')
  return { code, stdout, stderr }
}

function loginAs (username: string, password: string, remoteAddress = '127.0.0.1') {
  return app.inject({ method: 'POST', url: '/auth/login', payload: { username, password }, remoteAddress })
}

async function events (type: string, subjectId: string) {
  const { rows } = await app.db.query('SELECT actor_id, ip FROM audit_events WHERE type = $1 AND subject_id = $2', [type, subjectId])
  return rows
}

t.test('create-admin: the password from standard input, never from the arguments', async (t) => {
  const username = ctx.username('operator')
  const password = 'operator horse battery'
  const run = await admin(['create-admin', username], { stdin: `${password}\n` })
  t.equal(run.code, 0, run.stderr)
  t.match(run.stdout, new RegExp(`^created admin ${username} \\([0-9a-f-]{36}\\)\\n$`))
  t.equal(run.stderr, '')
  t.notMatch(run.stdout + run.stderr, password, 'the password is not echoed')
  const tokens = await login(app, username, password)
  t.match((await me(app, tokens.access)).json(), { username, role: 'admin' })
  t.equal((await app.inject({ method: 'GET', url: '/users?limit=1', headers: bearer(tokens.access) })).statusCode, 200, 'an admin of the running service')
  const id = (await me(app, tokens.access)).json().id
  t.strictSame(await events('user_created', id), [{ actor_id: null, ip: null }], 'audited as the operator: no actor, no address')

  const again = await admin(['create-admin', username.toUpperCase()], { stdin: `${password}\n` })
  t.equal(again.code, 1)
  t.equal(again.stderr, 'admin: Username is already taken\n', 'one line')
  t.equal(again.stdout, '')

  const [weak, short] = await Promise.all([
    admin(['create-admin', ctx.username('weak')], { stdin: 'password123\n' }),
    admin(['create-admin', ctx.username('short')], { stdin: 'short\n' })
  ])
  t.equal(weak.code, 1)
  t.match(weak.stderr, /^admin: This password is on a list of common passwords[^\n]*\n$/)
  t.equal(short.code, 2, 'a usage error')
  t.match(short.stderr, /^admin: the password must be 8 to 128 characters\nusage: /)
})

t.test('reset-password: every session ends at the running instance; the next login must choose a new password', async (t) => {
  const user = await signUp(app, ctx)
  const phone = await login(app, user.username)
  for (const tokens of [user, phone]) t.equal((await me(app, tokens.access)).statusCode, 200, 'warm: cached live in Redis')
  const run = await admin(['reset-password', user.username])
  t.equal(run.code, 0, run.stderr)
  const temporary = /: ([A-Za-z0-9_-]{20})\n$/.exec(run.stdout)?.[1]
  t.ok(temporary, `the temporary password is printed (${run.stdout.trim().replace(/\S+$/, '…')})`)
  for (const tokens of [user, phone]) {
    t.equal((await me(app, tokens.access)).statusCode, 401, 'refused on the next request')
    t.equal((await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: tokens.refresh } })).statusCode, 401)
  }
  const res = await loginAs(user.username, temporary!)
  t.equal(res.statusCode, 403)
  t.match(res.json(), { code: 'AUTH_PASSWORD_CHANGE_REQUIRED', reset_token: String })
  t.equal((await loginAs(user.username, PASSWORD)).statusCode, 401, 'the old password is gone')
  t.strictSame(await events('password_set', user.id), [{ actor_id: null, ip: null }])

  // Or one of the operator's choosing, from standard input: then nothing is printed but the outcome.
  const chosen = 'chosen temporary words'
  const piped = await admin(['reset-password', user.username, '--password-stdin'], { stdin: `${chosen}\n` })
  t.equal(piped.code, 0, piped.stderr)
  t.notMatch(piped.stdout, chosen)
  t.equal((await loginAs(user.username, chosen)).statusCode, 403)
})

t.test('sessions lists the live sessions; revoke-sessions ends them at the running instance', async (t) => {
  const user = await signUp(app, ctx)
  const phone = await login(app, user.username)
  const bystander = await signUp(app, ctx)
  const listed = await admin(['sessions', user.username])
  t.equal(listed.code, 0, listed.stderr)
  const lines = listed.stdout.trim().split('\n')
  t.equal(lines[0], 'session\tcreated\tlast used\tip\tuser agent')
  const own = (await app.inject({ method: 'GET', url: '/auth/sessions', headers: bearer(user.access) })).json()
  t.strictSame(lines.slice(1).map((l) => l.split('\t')[0]).sort(), own.map((s: { id: string }) => s.id).sort(), 'the same sessions as GET /auth/sessions')
  t.equal(lines.length, 3)

  for (const tokens of [user, phone, bystander]) t.equal((await me(app, tokens.access)).statusCode, 200)
  const revoked = await admin(['revoke-sessions', user.username.toUpperCase()])
  t.equal(revoked.code, 0, revoked.stderr)
  t.equal(revoked.stdout, `${user.username}: every session ended\n`)
  t.equal((await me(app, user.access)).statusCode, 401)
  t.equal((await me(app, phone.access)).statusCode, 401)
  t.equal((await me(app, bystander.access)).statusCode, 200, 'another user keeps theirs')
  t.equal((await loginAs(user.username, PASSWORD)).statusCode, 200, 'the user may sign in again')
  t.strictSame(await events('logout_all', user.id), [{ actor_id: null, ip: null }])

  await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(bystander.access) })
  t.equal((await admin(['sessions', bystander.username])).stdout, `${bystander.username} has no live sessions\n`)
})

t.test('unlock clears a lockout the running instance holds', async (t) => {
  const user = await signUp(app, ctx)
  for (let i = 0; i < 2; i++) await loginAs(user.username, 'wrong password', '10.9.9.9')
  t.equal((await loginAs(user.username, PASSWORD, '10.9.9.9')).statusCode, 429, 'locked out')
  const run = await admin(['unlock', user.username])
  t.equal(run.code, 0, run.stderr)
  t.equal(run.stdout, `${user.username}: lockout cleared\n`)
  t.equal((await loginAs(user.username, PASSWORD, '10.9.9.9')).statusCode, 200, 'signs in at once')
  t.strictSame(await events('lockout_cleared', user.id), [{ actor_id: null, ip: null }])
})

t.test('failures: one line on stderr, exit 1 (2 for a usage error), nothing changed', async (t) => {
  const user = await signUp(app, ctx)
  const closed = await freePort()
  const [unknown, down, config, ...usage] = await Promise.all([
    admin(['unlock', ctx.username('nobody')]),
    admin(['revoke-sessions', user.username], { env: { REDIS_URL: `redis://127.0.0.1:${closed}` } }),
    admin(['unlock', user.username], { env: { DATABASE_URL: 'mysql://nowhere/auth' } }),
    admin([]),
    admin(['frobnicate', 'alice']),
    admin(['unlock']),
    admin(['unlock', 'a b'])
  ])
  t.equal(unknown.code, 1)
  t.equal(unknown.stderr, 'admin: User not found\n')
  t.equal(down.code, 1)
  t.equal(down.stderr, `admin: REDIS_URL: cannot connect to Redis at 127.0.0.1:${closed}: connection refused\n`)
  t.equal((await me(app, user.access)).statusCode, 200, 'nothing was revoked')
  t.equal(config.code, 1)
  t.match(config.stderr, /^admin: Invalid configuration: DATABASE_URL must start with postgres/)

  const expected = [/^usage: npm run admin -- <command>/, /^unknown command frobnicate\nusage: /, /^admin: a username is needed\nusage: /, /^admin: not a username/]
  for (const [i, run] of usage.entries()) {
    t.equal(run.code, 2, `usage error ${i}`)
    t.match(run.stderr, expected[i])
    t.match(run.stderr, /create-admin <username>/, 'with the usage')
    t.equal(run.stdout, '')
  }
})
