// What an operator sees when start-up cannot reach a dependency: the real entry point
// retries for STARTUP_TIMEOUT seconds, then prints one line naming the variable, the
// address (no credentials) and the cause, and exits 1. No stack trace.
import t, { type Test } from 'tap'
import { generateKeyPairSync } from 'node:crypto'
import { createServer, type Socket } from 'node:net'
import { BASE_DATABASE_URL, BASE_REDIS_URL, freePort, JWT_SECRET, privateRedis } from '../helper.js'
import { runService } from '../support/service.js'

const SECRET_PASSWORD = 'hunter2-never-printed'

// Every case starts the real entry point, which tsx compiles afresh: a dozen starts take
// longer than the suite's per-file timeout on a loaded machine.
t.setTimeout(300_000)

function env (overrides: Record<string, string>): Record<string, string> {
  return {
    NODE_ENV: 'test',
    HOST: '127.0.0.1',
    PORT: '0',
    DATABASE_URL: BASE_DATABASE_URL,
    REDIS_URL: BASE_REDIS_URL,
    REDIS_KEY_PREFIX: 'test:startup:',
    JWT_SECRET,
    LOG_LEVEL: 'warn',
    STARTUP_TIMEOUT: '0',
    ...overrides
  }
}

/** Runs the service to its exit: the exit code, stderr, stdout and how long it took. */
async function failedStart (t: Test, overrides: Record<string, string>) {
  const started = Date.now()
  const service = runService(t, env(overrides))
  const { code } = await service.exited
  return { code, stderr: service.stderr(), stdout: service.stdout(), ms: Date.now() - started }
}

function oneLine (t: Test, stderr: string, pattern: RegExp): void {
  t.match(stderr, /^[^\n]+\n$/, `one line on stderr: ${JSON.stringify(stderr)}`)
  t.match(stderr.trimEnd(), pattern)
  t.notMatch(stderr, /\bat .+:\d+:\d+\)?$/m, 'no stack trace')
  t.notOk(stderr.includes(SECRET_PASSWORD), 'no password')
}

t.test('PostgreSQL refusing: retried for STARTUP_TIMEOUT, then one line and exit 1', async (t) => {
  const port = await freePort()
  const r = await failedStart(t, {
    DATABASE_URL: `postgres://postgres:${SECRET_PASSWORD}@127.0.0.1:${port}/auth`,
    STARTUP_TIMEOUT: '2'
  })
  t.equal(r.code, 1)
  oneLine(t, r.stderr, new RegExp(`^DATABASE_URL: cannot connect to PostgreSQL at 127\\.0\\.0\\.1:${port}/auth: connection refused \\(tried for 2 s; STARTUP_TIMEOUT\\)$`))
  t.ok(r.ms >= 2000, `kept trying for the whole STARTUP_TIMEOUT (${r.ms} ms)`)
  t.match(r.stdout, /PostgreSQL at 127\.0\.0\.1:\d+\/auth is not answering \(connection refused\): trying again for up to 2 s/, 'the wait is logged')
  t.notOk(r.stdout.includes(SECRET_PASSWORD), 'no password in the logs')
})

t.test('PostgreSQL: an unknown host', async (t) => {
  const r = await failedStart(t, { DATABASE_URL: 'postgres://postgres@no-such-host.invalid:5432/auth' })
  t.equal(r.code, 1)
  oneLine(t, r.stderr, /^DATABASE_URL: cannot connect to PostgreSQL at no-such-host\.invalid:5432\/auth: unknown host$/)
})

t.test('PostgreSQL refusing the credentials: not retried', async (t) => {
  // The machine's PostgreSQL trusts local connections, so a wrong password cannot be
  // provoked there: a role that does not exist is refused at the same step (28000). The
  // embedded one of a machine without PostgreSQL asks for a password (28P01).
  const url = new URL(BASE_DATABASE_URL)
  url.username = 'no_such_role_h8'
  url.password = SECRET_PASSWORD
  const r = await failedStart(t, { DATABASE_URL: url.toString(), STARTUP_TIMEOUT: '30' })
  t.equal(r.code, 1)
  oneLine(t, r.stderr, /^DATABASE_URL: cannot connect to PostgreSQL at [^ ]+: authentication failed \((role "no_such_role_h8" does not exist|password authentication failed for user "no_such_role_h8")\)$/)
  t.ok(r.ms < 20_000, `failed at once, without waiting out STARTUP_TIMEOUT (${r.ms} ms)`)
})

t.test('a server that accepts and never answers: timed out', async (t) => {
  const sockets = new Set<Socket>()
  const hole = createServer((socket) => { sockets.add(socket) })
  await new Promise<void>((resolve) => hole.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const s of sockets) s.destroy()
    hole.close()
  })
  const { port } = hole.address() as { port: number }
  const r = await failedStart(t, { REDIS_URL: `redis://127.0.0.1:${port}` })
  t.equal(r.code, 1)
  oneLine(t, r.stderr, new RegExp(`^REDIS_URL: cannot connect to Redis at 127\\.0\\.0\\.1:${port}: timed out`))
})

t.test('Redis refusing, and an unknown host', async (t) => {
  const port = await freePort()
  const refused = await failedStart(t, { REDIS_URL: `redis://:${SECRET_PASSWORD}@127.0.0.1:${port}`, STARTUP_TIMEOUT: '1' })
  t.equal(refused.code, 1)
  oneLine(t, refused.stderr, new RegExp(`^REDIS_URL: cannot connect to Redis at 127\\.0\\.0\\.1:${port}: connection refused \\(tried for 1 s; STARTUP_TIMEOUT\\)$`))
  t.ok(refused.ms >= 1000, `kept trying (${refused.ms} ms)`)

  const unknown = await failedStart(t, { REDIS_URL: 'redis://no-such-host.invalid:6379' })
  t.equal(unknown.code, 1)
  oneLine(t, unknown.stderr, /^REDIS_URL: cannot connect to Redis at no-such-host\.invalid:6379: unknown host/)
})

t.test('Redis refusing the password: not retried', async (t) => {
  const redis = await privateRedis(t)
  await redis.client.config('SET', 'requirepass', 'the-right-one')
  const r = await failedStart(t, { REDIS_URL: `redis://:${SECRET_PASSWORD}@127.0.0.1:${redis.port}`, STARTUP_TIMEOUT: '30' })
  t.equal(r.code, 1)
  oneLine(t, r.stderr, new RegExp(`^REDIS_URL: cannot connect to Redis at 127\\.0\\.0\\.1:${redis.port}: authentication failed \\(WRONGPASS: wrong user or password\\)$`))
  t.ok(r.ms < 20_000, `failed at once (${r.ms} ms)`)

  const none = await failedStart(t, { REDIS_URL: `redis://127.0.0.1:${redis.port}` })
  oneLine(t, none.stderr, /: authentication failed \(NOAUTH: the server wants a password; the URL has none\)$/)
})

t.test('a dependency that comes up during the wait: start-up goes on', async (t) => {
  const redis = await privateRedis(t)
  await redis.stop()
  const port = await freePort()
  const service = runService(t, env({ REDIS_URL: redis.url, STARTUP_TIMEOUT: '30', PORT: String(port) }))
  const waiting = /Redis at 127\.0\.0\.1:\d+ is not answering \(connection refused\): trying again for up to 30 s/
  for (let i = 0; i < 300 && !waiting.test(service.stdout()); i++) await new Promise((resolve) => setTimeout(resolve, 100))
  t.match(service.stdout(), waiting, 'it says it is waiting')
  await redis.start()
  await service.listening(`http://127.0.0.1:${port}`)
  t.same(await service.stop(), { code: 0, signal: null })
  t.equal(service.stderr(), '')
})

t.test('NODE_ENV=production never falls back: it needs DATABASE_URL and REDIS_URL', async (t) => {
  // Nothing answers at the default addresses either: elsewhere that means an embedded
  // PostgreSQL, or no Redis.
  const closed = await freePort()
  const production = {
    NODE_ENV: 'production',
    JWT_SECRET: 'q2n3W8k+f1Zc0yR7uD9pLx4bT6mH5sJvA2eG8iKoNw1QzXc3VbUy7tRe4WsPqLm0',
    MFA_ENCRYPTION_KEY: 'm3Qb7Zp1xV9cR2tL8wN5yK4hJ6dF0sGaE1uI3oP7qT0=',
    AUTH_SERVICE_TEST_DEFAULT_DATABASE_URL: `postgres://postgres:postgres@127.0.0.1:${closed}/auth`,
    AUTH_SERVICE_TEST_DEFAULT_REDIS_URL: `redis://127.0.0.1:${closed}`
  }
  const noDatabase = await failedStart(t, { ...production, DATABASE_URL: '' })
  t.equal(noDatabase.code, 1)
  oneLine(t, noDatabase.stderr, /^Invalid configuration: DATABASE_URL is required when NODE_ENV=production \(no default, no embedded fallback\)$/)

  const noRedis = await failedStart(t, { ...production, REDIS_URL: '' })
  t.equal(noRedis.code, 1)
  oneLine(t, noRedis.stderr, /^Invalid configuration: REDIS_URL is required when NODE_ENV=production \(no default, no embedded fallback\)$/)
})

t.test('configuration errors: one line, the quoted value as given', async (t) => {
  const bad = await failedStart(t, { NODE_ENV: 'Prod' })
  t.equal(bad.code, 1)
  oneLine(t, bad.stderr, /^Invalid configuration: NODE_ENV must be one of development, production, test \(got "Prod"\)$/)

  const port = await failedStart(t, { PORT: 'Eighty' })
  oneLine(t, port.stderr, /^Invalid configuration: PORT expected integer \(got "Eighty"\)$/)
})

t.test('the port taken: one line naming PORT', async (t) => {
  const taken = createServer()
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
  t.teardown(() => taken.close())
  const { port } = taken.address() as { port: number }
  const r = await failedStart(t, { PORT: String(port) })
  t.equal(r.code, 1)
  oneLine(t, r.stderr, new RegExp(`^PORT: 127\\.0\\.0\\.1:${port} is already in use$`))
})

t.test('start-up says where it listens, where the docs are, how it signs and what it talks to', async (t) => {
  const port = await freePort()
  const url = new URL(BASE_DATABASE_URL)
  url.password = SECRET_PASSWORD // trust authentication ignores it; it must not be logged
  const { privateKey } = generateKeyPairSync('ed25519')
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
  const service = runService(t, env({
    PORT: String(port),
    LOG_LEVEL: 'info',
    DATABASE_URL: url.toString(),
    REDIS_URL: `${BASE_REDIS_URL}/0`,
    JWT_SECRET: '',
    JWT_PRIVATE_KEY: pem
  }))
  await service.listening(`http://127.0.0.1:${port}`)
  t.same(await service.stop(), { code: 0, signal: null })
  const lines = service.stdout().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l))
  const origin = `http://127.0.0.1:${port}`
  t.match(lines.find((l) => l.msg?.startsWith('listening on ')), {
    level: 30,
    msg: `listening on ${origin}, docs on ${origin}/docs`,
    url: origin,
    docs: `${origin}/docs`,
    signing: 'EdDSA',
    postgres: `${url.hostname}:${url.port || 5432}${url.pathname}`,
    redis: `${new URL(BASE_REDIS_URL).host}/0`,
    metrics: `${origin}/metrics`
  })
  const all = service.stdout() + service.stderr()
  t.notOk(all.includes(SECRET_PASSWORD), 'no password')
  t.notOk(all.includes(pem.split('\n')[1]), 'no key')
})
