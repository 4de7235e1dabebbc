// A first run with nothing configured and no PostgreSQL at the default address: the real
// entry point starts an embedded PostgreSQL with its data in ./.data/, and in development
// keeps its signing key there too. Register, log in, log out, restart: the data and the
// tokens are still there. Production never falls back.
import t from 'tap'
import { chmodSync, mkdtempSync, rmSync, statSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { BASE_REDIS_URL, freePort, httpCall, PASSWORD } from '../helper.js'
import { runService } from '../support/service.js'

// The working directory of the service: .data/ lands there. Run as root, PostgreSQL runs as
// the `postgres` user, which must be able to reach it.
const cwd = mkdtempSync(join(tmpdir(), 'auth-embedded-'))
chmodSync(cwd, 0o755)
t.teardown(() => rmSync(cwd, { recursive: true, force: true }))

const closed = await freePort()
const port = await freePort()
const base = `http://127.0.0.1:${port}`
const env = {
  PORT: String(port),
  HOST: '127.0.0.1',
  // No DATABASE_URL, no JWT_SECRET, NODE_ENV unset (development). The default address is
  // moved to a closed port, so that the machine's own PostgreSQL does not answer there.
  AUTH_SERVICE_TEST_DEFAULT_DATABASE_URL: `postgres://postgres:postgres@127.0.0.1:${closed}/auth`,
  REDIS_URL: BASE_REDIS_URL,
  REDIS_KEY_PREFIX: `test:embedded:${port}:`,
  LOG_LEVEL: 'info',
  ARGON2_MEMORY_COST: '8192',
  ARGON2_TIME_COST: '1'
}
const username = `embedded_${port}`

function portOpen (p: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(p, '127.0.0.1')
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => resolve(false))
  })
}

function modeLine (stdout: string): { msg: string } | undefined {
  return stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)).find((l) => l.msg?.startsWith('database: '))
}

/**
 * The start-up line that says which database mode runs. Logs reach stdout asynchronously
 * (pino's buffered destination, flushed at least every second), so it may trail "listening".
 */
async function awaitModeLine (stdout: () => string): Promise<{ msg: string } | undefined> {
  for (let i = 0; i < 50; i++) {
    const line = modeLine(stdout())
    if (line !== undefined) return line
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return undefined
}

let kept = ''

t.test('first run: an embedded PostgreSQL, created in ./.data/', async (t) => {
  const service = runService(t, env, { cwd })
  const ms = await service.listening(base, 120_000)
  t.comment(`first run: listening ${ms} ms after the start (initdb included)`)
  const line = await awaitModeLine(service.stdout)
  t.match(line?.msg, new RegExp(`^database: embedded PostgreSQL in \\./\\.data/postgres on 127\\.0\\.0\\.1:(\\d+), created now \\(DATABASE_URL is not set and nothing answers at 127\\.0\\.0\\.1:${closed}\\); set DATABASE_URL to use a PostgreSQL of your own$`))
  const pgPort = Number(/on 127\.0\.0\.1:(\d+)/.exec(line?.msg ?? '')?.[1])

  t.equal((await httpCall(base, 'POST', '/auth/register', { body: { username, password: PASSWORD } })).status, 201)
  const first = await httpCall(base, 'POST', '/auth/login', { body: { username, password: PASSWORD } })
  t.equal(first.status, 200)
  t.equal((await httpCall(base, 'GET', '/auth/me', { token: first.body.access_token })).status, 200)
  t.equal((await httpCall(base, 'POST', '/auth/logout', { token: first.body.access_token })).status, 204)
  t.equal((await httpCall(base, 'GET', '/auth/me', { token: first.body.access_token })).status, 401, 'revoked')
  const second = await httpCall(base, 'POST', '/auth/login', { body: { username, password: PASSWORD } })
  kept = second.body.access_token
  t.match(service.stdout(), /signing with the development key kept in \.\/\.data\/jwt-secret/)
  t.equal(statSync(join(cwd, '.data', 'jwt-secret')).mode & 0o777, 0o600, 'the key file is private')

  t.same(await service.stop(), { code: 0, signal: null })
  t.equal(service.stderr(), '')
  t.notOk(await portOpen(pgPort), 'the embedded PostgreSQL stopped with the service')
})

t.test('second run: the same data, and tokens that survive the restart', async (t) => {
  const service = runService(t, env, { cwd })
  const ms = await service.listening(base, 120_000)
  t.comment(`second run: listening ${ms} ms after the start`)
  t.match((await awaitModeLine(service.stdout))?.msg, /^database: embedded PostgreSQL in \.\/\.data\/postgres on 127\.0\.0\.1:\d+ \(DATABASE_URL is not set/)
  t.equal((await httpCall(base, 'GET', '/auth/me', { token: kept })).status, 200, 'a token of the first run still works')
  const again = await httpCall(base, 'POST', '/auth/login', { body: { username, password: PASSWORD } })
  t.equal(again.status, 200, 'the user of the first run logs in')
  t.equal((await httpCall(base, 'POST', '/auth/register', { body: { username, password: PASSWORD } })).status, 409, 'and is still there')
  t.same(await service.stop(), { code: 0, signal: null })
})

t.test('NODE_ENV=production never falls back: it needs DATABASE_URL and REDIS_URL', async (t) => {
  const service = runService(t, { ...env, NODE_ENV: 'production', JWT_SECRET: 'q2n3W8k+f1Zc0yR7uD9pLx4bT6mH5sJvA2eG8iKoNw1QzXc3VbUy7tRe4WsPqLm0', MFA_ENCRYPTION_KEY: 'm3Qb7Zp1xV9cR2tL8wN5yK4hJ6dF0sGaE1uI3oP7qT0=' }, { cwd })
  t.equal((await service.exited).code, 1)
  t.equal(service.stderr(), 'Invalid configuration: DATABASE_URL is required when NODE_ENV=production (no default, no embedded fallback)\n')

  const noRedis = runService(t, { ...env, NODE_ENV: 'production', JWT_SECRET: 'q2n3W8k+f1Zc0yR7uD9pLx4bT6mH5sJvA2eG8iKoNw1QzXc3VbUy7tRe4WsPqLm0', MFA_ENCRYPTION_KEY: 'm3Qb7Zp1xV9cR2tL8wN5yK4hJ6dF0sGaE1uI3oP7qT0=', DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/auth', REDIS_URL: '' }, { cwd })
  t.equal((await noRedis.exited).code, 1)
  t.equal(noRedis.stderr(), 'Invalid configuration: REDIS_URL is required when NODE_ENV=production (no default, no embedded fallback)\n')
})
