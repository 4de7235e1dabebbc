import { generateKeyPairSync, randomBytes } from 'node:crypto'
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ConfigError, loadConfig, mfaEncryptionKey } from '../../../plugins/external/config.js'

// What `openssl rand -base64 48` prints.
const strong = 'q2n3W8k+f1Zc0yR7uD9pLx4bT6mH5sJvA2eG8iKoNw1QzXc3VbUy7tRe4WsPqLm0'
const ed25519 = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
// What `openssl rand -base64 32` prints: the key second-factor secrets are sealed with.
const mfaKey = 'm3Qb7Zp1xV9cR2tL8wN5yK4hJ6dF0sGaE1uI3oP7qT0='

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
  const c = loadConfig({ PORT: '8080', ACCESS_TOKEN_TTL: '60', TRUST_PROXY: '2', JWT_SECRET: '', REFRESH_REUSE_INTERVAL: '0' })
  t.equal(c.PORT, 8080)
  t.equal(c.REFRESH_REUSE_INTERVAL, 0, 'no refresh grace at all is allowed')
  t.equal(c.ACCESS_TOKEN_TTL, 60)
  t.equal(c.trustProxy, 2)
  t.equal(c.jwtKeyGenerated, true)
})

t.test('TRUST_PROXY: off, a hop count or proxy addresses; never "trust everything"', async (t) => {
  t.equal(loadConfig({}).trustProxy, false, 'off by default')
  t.equal(loadConfig({ TRUST_PROXY: 'false' }).trustProxy, false)
  t.equal(loadConfig({ TRUST_PROXY: '0' }).trustProxy, false)
  t.equal(loadConfig({ TRUST_PROXY: '1' }).trustProxy, 1)
  t.strictSame(loadConfig({ TRUST_PROXY: '10.0.0.1, 192.168.0.0/16,fd00::/8,loopback' }).trustProxy,
    ['10.0.0.1', '192.168.0.0/16', 'fd00::/8', 'loopback'])
  t.throws(() => loadConfig({ TRUST_PROXY: 'true' }), /^Invalid configuration: TRUST_PROXY=true would trust any X-Forwarded-For/)
  t.throws(() => loadConfig({ TRUST_PROXY: true }), /TRUST_PROXY=true/, 'the boolean too')
  for (const bad of ['10.0.0.1/33', 'fd00::/129', 'proxy.example.com', '10.0.0.1/8/8', '1.2.3', '10.0.0.1,,10.0.0.2', '-1']) {
    t.throws(() => loadConfig({ TRUST_PROXY: bad }), /^Invalid configuration: TRUST_PROXY entry /, bad)
  }
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
    [{ ADMIN_USERNAME: 'root', ADMIN_PASSWORD: 'password123' }, /^Invalid configuration: ADMIN_PASSWORD: This password is on a list of common passwords/],
    [{ ADMIN_USERNAME: 'root', ADMIN_PASSWORD: 'Root-of-all' }, /ADMIN_PASSWORD: The password must not contain the username/],
    [{ NODE_ENV: 'production' }, /JWT_SECRET is required when NODE_ENV=production/],
    [{ NODE_ENV: 'production', JWT_SECRET: 'a'.repeat(64) }, /JWT_SECRET does not look random/],
    [{ SSF_PRIVATE_KEY: 'not a key' }, /^Invalid configuration: SSF_PRIVATE_KEY is not a PEM private key$/],
    [{ SSF_PRIVATE_KEY: ed25519, JWT_PRIVATE_KEY: ed25519 }, /^Invalid configuration: SSF_PRIVATE_KEY is for HS256 deployments/],
    [{ PUBLIC_URL: 'auth.example.com' }, /^Invalid configuration: PUBLIC_URL /],
    [{ EVENTS_DISPATCH_INTERVAL_MS: '0' }, /^Invalid configuration: EVENTS_DISPATCH_INTERVAL_MS /],
    [{ EVENTS_DELIVERY_TIMEOUT_MS: 'soon' }, /^Invalid configuration: EVENTS_DELIVERY_TIMEOUT_MS /],
    [{ EVENTS_RETRY_MAX_DELAY: '-1' }, /^Invalid configuration: EVENTS_RETRY_MAX_DELAY /],
    [{ EVENTS_MAX_AGE: 'a week' }, /^Invalid configuration: EVENTS_MAX_AGE /],
    [{ EVENTS_RETENTION: '0' }, /^Invalid configuration: EVENTS_RETENTION /]
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

t.test('security events: signed with JWT_PRIVATE_KEY, or SSF_PRIVATE_KEY beside JWT_SECRET, or not at all', async (t) => {
  t.equal(loadConfig({}).eventKeys, undefined, 'no key: no events')
  const asymmetric = loadConfig({ JWT_PRIVATE_KEY: ed25519 })
  t.equal(asymmetric.eventKeys, asymmetric.signingKeys, 'the access tokens\' key')
  const hs = loadConfig({ JWT_SECRET: strong, SSF_PRIVATE_KEY: ed25519 })
  t.equal(hs.signingKeys, undefined, 'access tokens stay HS256')
  t.match(hs.eventKeys, { alg: 'EdDSA', kid: String })
  t.match(loadConfig({}), { EVENTS_DISPATCH_INTERVAL_MS: 1000, EVENTS_DELIVERY_TIMEOUT_MS: 5000, EVENTS_RETRY_MAX_DELAY: 300, EVENTS_MAX_AGE: 259200, EVENTS_RETENTION: 86400 })
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
  const c = loadConfig({ NODE_ENV: 'production', JWT_SECRET: strong, MFA_ENCRYPTION_KEY: mfaKey })
  t.equal(c.jwtKey, strong)
  t.equal(c.jwtKeyGenerated, false)
})

t.test('MFA_ENCRYPTION_KEY: 32 bytes of base64, required in production, derived outside it', async (t) => {
  const key = randomBytes(32)
  t.strictSame(loadConfig({ MFA_ENCRYPTION_KEY: key.toString('base64') }).mfaKey, key)
  t.strictSame(loadConfig({ MFA_ENCRYPTION_KEY: key.toString('base64url') }).mfaKey, key, 'base64url too')
  for (const bad of [randomBytes(31).toString('base64'), randomBytes(33).toString('base64'), 'not base64 at all!', key.toString('hex')]) {
    let message = ''
    try {
      loadConfig({ MFA_ENCRYPTION_KEY: bad })
    } catch (err) {
      message = (err as Error).message
    }
    t.equal(message, 'Invalid configuration: MFA_ENCRYPTION_KEY must be 32 bytes written as base64 (generate one with `openssl rand -base64 32`)', 'one line, without the value')
  }
  t.throws(() => loadConfig({ NODE_ENV: 'production', JWT_SECRET: strong }),
    /^Invalid configuration: MFA_ENCRYPTION_KEY is required when NODE_ENV=production/)
  const dev = loadConfig({ JWT_SECRET: strong })
  t.equal(dev.mfaKey, undefined, 'outside production it may be left out…')
  t.strictSame(mfaEncryptionKey(dev), mfaEncryptionKey(loadConfig({ JWT_SECRET: strong })), '…and is derived from the signing key, the same every time')
  t.notSame(mfaEncryptionKey(dev), Buffer.from(strong).subarray(0, 32), 'not the signing key itself')
  t.strictSame(mfaEncryptionKey(loadConfig({ MFA_ENCRYPTION_KEY: key.toString('base64') })), key, 'a given key is used as it is')
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

t.test('a production JWT_SECRET must be 256 bits of random material, written as hex or base64', async (t) => {
  const accepted = [
    strong,
    randomBytes(32).toString('hex'),
    randomBytes(32).toString('base64'),
    randomBytes(48).toString('base64url'),
    randomBytes(64).toString('hex').toUpperCase()
  ]
  for (const secret of accepted) t.equal(loadConfig({ NODE_ENV: 'production', JWT_SECRET: secret, MFA_ENCRYPTION_KEY: mfaKey }).jwtKey, secret, secret)
  const refused: Array<[string, RegExp]> = [
    ['passwordpasswordpassword12345678', /must hold at least 32 random bytes/],
    [randomBytes(31).toString('hex'), /must hold at least 32 random bytes/],
    [randomBytes(23).toString('base64'), /must hold at least 32 random bytes/],
    ['Zq8v!Lr2#Tm6@Wp1$Xk9%Bn4^Hc7&Js3*Zq8v!Lr2#Tm6@Wp1', /must be random bytes written as hex, base64 or base64url/],
    ['correct horse battery staple correct horse battery', /must be random bytes written as hex, base64 or base64url/],
    ['passwordpasswordpasswordpassword12345678abcd', /does not look random/],
    ['correcthorsebatterystaplecorrecthorsebatterystaple', /does not look random/],
    ['abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQR', /does not look random/],
    ['0123456789abcdef'.repeat(4), /does not look random/],
    [Buffer.from('secret'.repeat(8)).toString('base64'), /does not look random/]
  ]
  for (const [secret, message] of refused) {
    t.throws(() => loadConfig({ NODE_ENV: 'production', JWT_SECRET: secret }), message, secret)
    try {
      loadConfig({ NODE_ENV: 'production', JWT_SECRET: secret })
    } catch (err) {
      t.match((err as Error).message, /^Invalid configuration: JWT_SECRET .*openssl rand -base64 48/, 'names the variable and how to make one')
      t.notOk((err as Error).message.includes(secret), 'without echoing it')
    }
  }
  t.ok(loadConfig({ JWT_SECRET: 'test-secret-0123456789-abcdefghijklmnopqrstuvwxyz' }), 'outside production, 32 bytes of anything will do')
})

t.test('mail: SMTP_URL and MAIL_FROM together, an smtp(s) URL whose credentials are never echoed', async (t) => {
  t.match(loadConfig({}), { SMTP_URL: undefined, RECOVERY_RATE_LIMIT: 5, RECOVERY_ACCOUNT_LIMIT: 3 })
  t.match(loadConfig({ SMTP_URL: 'smtp://user:pw@mail.example.com:587', MAIL_FROM: 'Auth <auth@example.com>' }),
    { SMTP_URL: 'smtp://user:pw@mail.example.com:587', MAIL_FROM: 'Auth <auth@example.com>' })
  t.ok(loadConfig({ SMTP_URL: 'smtps://mail.example.com', MAIL_FROM: 'auth@example.com' }))
  const bad: Array<[Record<string, string>, RegExp]> = [
    [{ SMTP_URL: 'smtp://mail.example.com' }, /^Invalid configuration: SMTP_URL and MAIL_FROM must be set together$/],
    [{ MAIL_FROM: 'auth@example.com' }, /SMTP_URL and MAIL_FROM must be set together/],
    [{ SMTP_URL: 'http://user:hunter2-secret@mail.example.com', MAIL_FROM: 'a@b.c' }, /^Invalid configuration: SMTP_URL must be smtp:\/\/host:port or smtps:/],
    [{ SMTP_URL: 'not a url hunter2-secret', MAIL_FROM: 'a@b.c' }, /^Invalid configuration: SMTP_URL is not a valid URL$/],
    [{ SMTP_URL: 'smtp://mail.example.com', MAIL_FROM: 'a@b.c\r\nBcc: victim@example.com' }, /^Invalid configuration: MAIL_FROM /],
    [{ APP_URL: 'ftp://app.example.com' }, /^Invalid configuration: APP_URL /],
    [{ RECOVERY_ACCOUNT_LIMIT: '0' }, /^Invalid configuration: RECOVERY_ACCOUNT_LIMIT /]
  ]
  for (const [env, message] of bad) {
    const err = t.throws(() => loadConfig(env), ConfigError) as Error
    t.match(err.message, message, JSON.stringify(env))
    t.notMatch(err.message, /hunter2/, 'no credentials in the message')
  }
})

t.test('WEBAUTHN_RP_ID and WEBAUTHN_ORIGINS: a domain, and origins on it', async (t) => {
  t.match(loadConfig({}), { WEBAUTHN_RP_ID: 'localhost', webauthnOrigins: ['http://localhost:3000'] }, 'the service\'s own origin by default')
  t.strictSame(loadConfig({ PORT: '8080' }).webauthnOrigins, ['http://localhost:8080'])
  t.strictSame(loadConfig({ WEBAUTHN_RP_ID: 'example.com' }).webauthnOrigins, ['https://example.com'])
  t.strictSame(loadConfig({ WEBAUTHN_RP_ID: 'example.com', WEBAUTHN_ORIGINS: 'https://example.com, https://login.example.com:8443' }).webauthnOrigins,
    ['https://example.com', 'https://login.example.com:8443'])
  t.strictSame(loadConfig({ WEBAUTHN_ORIGINS: 'http://localhost:5173,http://app.localhost:5173' }).webauthnOrigins,
    ['http://localhost:5173', 'http://app.localhost:5173'], 'http on localhost, which browsers treat as secure')
  for (const rpId of ['https://example.com', 'example.com:443', 'Example.com', '127.0.0.1', 'example.com/login', '-example.com', 'a..b']) {
    t.throws(() => loadConfig({ WEBAUTHN_RP_ID: rpId }), /^Invalid configuration: WEBAUTHN_RP_ID must be a domain name such as example.com/, rpId)
  }
  for (const origin of ['http://example.com', 'https://evil.com', 'https://notexample.com', 'https://example.com/', 'https://example.com/login', 'example.com', 'https://example.com,nope']) {
    t.throws(() => loadConfig({ WEBAUTHN_RP_ID: 'example.com', WEBAUTHN_ORIGINS: origin }), /^Invalid configuration: WEBAUTHN_ORIGINS entry "[^"]+" is not an origin like https:\/\/example.com on WEBAUTHN_RP_ID \(example.com\)/, origin)
  }
})
