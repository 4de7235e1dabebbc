import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ConfigError, loadConfig } from '../../../plugins/external/config.js'

const strong = 'Zq8v!Lr2#Tm6@Wp1$Xk9%Bn4^Hc7&Js3*'

t.test('defaults match the contract', async (t) => {
  const c = loadConfig({})
  t.match(c, {
    PORT: 3000,
    HOST: '127.0.0.1',
    DATABASE_URL: 'postgres://postgres:postgres@127.0.0.1:5432/auth',
    REDIS_URL: 'redis://127.0.0.1:6379',
    ACCESS_TOKEN_TTL: 900,
    REFRESH_TOKEN_TTL: 2592000,
    LOGIN_RATE_LIMIT: 10,
    REGISTER_RATE_LIMIT: 5,
    LOCKOUT_THRESHOLD: 5,
    REFRESH_REUSE_INTERVAL: 10,
    SESSION_MAX_LIFETIME: 7776000,
    REFRESH_RATE_LIMIT: 30,
    AUDIT_RETENTION_DAYS: 365,
    LOG_LEVEL: 'info',
    jwtKeyGenerated: true
  })
  t.ok(Buffer.byteLength(c.jwtKey) >= 32, 'a generated key is strong')
  t.not(loadConfig({}).jwtKey, c.jwtKey, 'and random, never a well-known default')
})

t.test('strings from the environment are converted; empty means unset', async (t) => {
  const c = loadConfig({ PORT: '8080', ACCESS_TOKEN_TTL: '60', TRUST_PROXY: 'true', JWT_SECRET: '', REFRESH_REUSE_INTERVAL: '0' })
  t.equal(c.PORT, 8080)
  t.equal(c.REFRESH_REUSE_INTERVAL, 0, 'no refresh grace at all is allowed')
  t.equal(c.ACCESS_TOKEN_TTL, 60)
  t.equal(c.TRUST_PROXY, true)
  t.equal(c.jwtKeyGenerated, true)
})

t.test('a bad value stops start-up with one line naming the variable', async (t) => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ PORT: 'eighty' }, /^Invalid configuration: PORT /],
    [{ PORT: '70000' }, /^Invalid configuration: PORT /],
    [{ ACCESS_TOKEN_TTL: '0' }, /ACCESS_TOKEN_TTL/],
    [{ ACCESS_TOKEN_TTL: '-5' }, /ACCESS_TOKEN_TTL/],
    [{ REFRESH_TOKEN_TTL: '1.5' }, /REFRESH_TOKEN_TTL/],
    [{ ACCESS_TOKEN_TTL: '1000', REFRESH_TOKEN_TTL: '100' }, /REFRESH_TOKEN_TTL must not be shorter/],
    [{ DATABASE_URL: 'not a url' }, /DATABASE_URL is not a valid URL/],
    [{ DATABASE_URL: 'mysql://localhost/auth' }, /DATABASE_URL must start with postgres/],
    [{ DATABASE_URL: 'postgres://localhost' }, /DATABASE_URL must name a database/],
    [{ REDIS_URL: 'http://localhost:6379' }, /REDIS_URL must start with redis/],
    [{ LOG_LEVEL: 'loud' }, /^Invalid configuration: LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent \(got "loud"\)$/],
    [{ NODE_ENV: 'prod' }, /^Invalid configuration: NODE_ENV must be one of development, production, test \(got "prod"\)$/],
    [{ STARTUP_TIMEOUT: '-1' }, /^Invalid configuration: STARTUP_TIMEOUT /],
    // What a message quotes keeps its case (a pattern's A-Z stays A-Z).
    [{ ADMIN_USERNAME: 'no spaces', ADMIN_PASSWORD: 'long enough' }, /^Invalid configuration: ADMIN_USERNAME expected string to match '\^\[A-Za-z0-9_\.-\]\{3,32\}\$'/],
    [{ LOGIN_RATE_LIMIT: 'many' }, /LOGIN_RATE_LIMIT/],
    [{ REFRESH_REUSE_INTERVAL: '-1' }, /REFRESH_REUSE_INTERVAL/],
    [{ SESSION_MAX_LIFETIME: '0' }, /SESSION_MAX_LIFETIME/],
    [{ REFRESH_RATE_LIMIT: '0' }, /REFRESH_RATE_LIMIT/],
    [{ AUDIT_RETENTION_DAYS: 'forever' }, /AUDIT_RETENTION_DAYS/],
    [{ JWT_SECRET: 'short' }, /JWT_SECRET must be at least 32 bytes/],
    [{ ADMIN_USERNAME: 'root' }, /ADMIN_USERNAME and ADMIN_PASSWORD must be set together/],
    [{ ADMIN_USERNAME: 'root', ADMIN_PASSWORD: 'short' }, /ADMIN_PASSWORD/],
    [{ NODE_ENV: 'production' }, /JWT_SECRET is required when NODE_ENV=production/],
    [{ NODE_ENV: 'production', JWT_SECRET: 'a'.repeat(40) }, /JWT_SECRET is too weak/]
  ]
  for (const [env, message] of cases) {
    t.throws(() => loadConfig(env), message, JSON.stringify(env))
    try {
      loadConfig(env)
    } catch (err) {
      t.ok(err instanceof ConfigError)
      t.notOk((err as Error).message.includes('\n'), 'one line')
    }
  }
})

t.test('secrets are never echoed in the error', async (t) => {
  let message = ''
  try {
    loadConfig({ JWT_SECRET: 'hunter2hunter2' })
  } catch (err) {
    message = (err as Error).message
  }
  t.match(message, /JWT_SECRET/)
  t.notOk(message.includes('hunter2'))
})

t.test('production with a strong secret starts', async (t) => {
  const c = loadConfig({ NODE_ENV: 'production', JWT_SECRET: strong })
  t.equal(c.jwtKey, strong)
  t.equal(c.jwtKeyGenerated, false)
})

t.test('X_FILE: a secret read from a file (Docker and Kubernetes secrets)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'config-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = (name: string, content: string) => {
    const path = join(dir, name)
    writeFileSync(path, content)
    return path
  }
  const c = loadConfig({
    JWT_SECRET_FILE: file('jwt', `${strong}\n`),
    DATABASE_URL_FILE: file('db', 'postgres://app:s3cret@db.internal:5432/auth\r\n'),
    ADMIN_USERNAME: 'root',
    ADMIN_PASSWORD_FILE: file('admin', 'an admin passphrase')
  })
  t.equal(c.JWT_SECRET, strong, 'the trailing line end is not part of the secret')
  t.equal(c.jwtKey, strong)
  t.equal(c.DATABASE_URL, 'postgres://app:s3cret@db.internal:5432/auth')
  t.equal(c.ADMIN_PASSWORD, 'an admin passphrase')
  t.equal(loadConfig({ JWT_SECRET: '', JWT_SECRET_FILE: file('jwt2', strong) }).jwtKey, strong, 'an empty X counts as unset')

  t.throws(() => loadConfig({ JWT_SECRET: strong, JWT_SECRET_FILE: file('jwt3', strong) }),
    /^Invalid configuration: set JWT_SECRET or JWT_SECRET_FILE, not both$/)
  t.throws(() => loadConfig({ JWT_SECRET_FILE: join(dir, 'missing') }),
    /^Invalid configuration: JWT_SECRET_FILE: cannot read .*missing \(ENOENT\)$/)
  t.throws(() => loadConfig({ JWT_SECRET_FILE: file('short', 'hunter2') }), /^Invalid configuration: JWT_SECRET must be at least 32 bytes$/,
    'what is read is validated like the variable')
})

t.test('METRICS_PORT: unset (the API port), off or 0, or a port of its own', async (t) => {
  t.equal(loadConfig({}).metrics, 'api')
  t.equal(loadConfig({ METRICS_PORT: 'off' }).metrics, 'off')
  t.equal(loadConfig({ METRICS_PORT: '0' }).metrics, 'off')
  t.equal(loadConfig({ METRICS_PORT: '9464' }).metrics, 9464)
  t.throws(() => loadConfig({ METRICS_PORT: 'yes' }), /^Invalid configuration: METRICS_PORT /)
  t.throws(() => loadConfig({ METRICS_PORT: '99999' }), /^Invalid configuration: METRICS_PORT must be a port/)
  t.throws(() => loadConfig({ METRICS_PORT: '3000' }), /^Invalid configuration: METRICS_PORT must differ from PORT/)
})

t.test('whether DATABASE_URL and REDIS_URL were given, or are the defaults', async (t) => {
  t.match(loadConfig({}), { databaseUrlGiven: false, redisUrlGiven: false })
  t.match(loadConfig({ DATABASE_URL: '' }), { databaseUrlGiven: false }, 'empty is unset')
  t.match(loadConfig({ DATABASE_URL: 'postgres://db/auth', REDIS_URL: 'redis://cache' }), { databaseUrlGiven: true, redisUrlGiven: true })
})
