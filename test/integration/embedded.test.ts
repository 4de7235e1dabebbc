// A first run with nothing configured and neither PostgreSQL nor Redis at the default
// addresses: the real entry point starts an embedded PostgreSQL with its data in ./.data/,
// runs without Redis, and in development keeps its signing key in ./.data/ too. Register,
// log in, log out, restart: the data and the tokens are still there, the revoked one still
// refused. (Production never falls back: test/integration/startup.test.ts.)
import t from 'tap'
import { chmodSync, mkdtempSync, rmSync, statSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort, httpCall, PASSWORD } from '../helper.js'
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
  // No DATABASE_URL, no REDIS_URL, no JWT_SECRET, NODE_ENV unset (development). The default
  // addresses are moved to a closed port, so that the machine's own servers do not answer there.
  AUTH_SERVICE_TEST_DEFAULT_DATABASE_URL: `postgres://postgres:postgres@127.0.0.1:${closed}/auth`,
  AUTH_SERVICE_TEST_DEFAULT_REDIS_URL: `redis://127.0.0.1:${closed}`,
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

let kept = ''
let revoked = ''

t.test('first run: an embedded PostgreSQL, created in ./.data/, and no Redis', async (t) => {
  const service = runService(t, env, { cwd })
  const ms = await service.listening(base, 120_000)
  t.comment(`first run: listening ${ms} ms after the start (initdb included)`)
  const line = await service.logLine('database: ')
  t.match(line?.msg, new RegExp(`^database: embedded PostgreSQL in \\./\\.data/postgres on 127\\.0\\.0\\.1:(\\d+), created now \\(DATABASE_URL is not set and nothing answers at 127\\.0\\.0\\.1:${closed}\\); set DATABASE_URL to use a PostgreSQL of your own$`))
  const pgPort = Number(/on 127\.0\.0\.1:(\d+)/.exec(line?.msg ?? '')?.[1])
  t.equal((await service.logLine('redis: '))?.msg, 'redis: none, a single instance: token checks read PostgreSQL on every request, ' +
    `rate limits and lockouts are counted in this process (REDIS_URL is not set and nothing answers at 127.0.0.1:${closed}); set REDIS_URL to run several instances`)

  t.equal((await httpCall(base, 'POST', '/auth/register', { body: { username, password: PASSWORD } })).status, 201)
  const first = await httpCall(base, 'POST', '/auth/login', { body: { username, password: PASSWORD } })
  t.equal(first.status, 200)
  t.equal((await httpCall(base, 'GET', '/auth/me', { token: first.body.access_token })).status, 200)
  t.equal((await httpCall(base, 'POST', '/auth/logout', { token: first.body.access_token })).status, 204)
  t.equal((await httpCall(base, 'GET', '/auth/me', { token: first.body.access_token })).status, 401, 'revoked')
  revoked = first.body.access_token
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
  t.match((await service.logLine('database: '))?.msg, /^database: embedded PostgreSQL in \.\/\.data\/postgres on 127\.0\.0\.1:\d+ \(DATABASE_URL is not set/)
  t.equal((await httpCall(base, 'GET', '/auth/me', { token: kept })).status, 200, 'a token of the first run still works')
  t.equal((await httpCall(base, 'GET', '/auth/me', { token: revoked })).status, 401, 'the one revoked in the first run is still refused')
  const again = await httpCall(base, 'POST', '/auth/login', { body: { username, password: PASSWORD } })
  t.equal(again.status, 200, 'the user of the first run logs in')
  t.equal((await httpCall(base, 'POST', '/auth/register', { body: { username, password: PASSWORD } })).status, 409, 'and is still there')
  t.same(await service.stop(), { code: 0, signal: null })
})
