import t from 'tap'
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
    LOG_LEVEL: 'info',
    jwtKeyGenerated: true
  })
  t.ok(Buffer.byteLength(c.jwtKey) >= 32, 'a generated key is strong')
  t.not(loadConfig({}).jwtKey, c.jwtKey, 'and random, never a well-known default')
})

t.test('strings from the environment are converted; empty means unset', async (t) => {
  const c = loadConfig({ PORT: '8080', ACCESS_TOKEN_TTL: '60', TRUST_PROXY: '2', JWT_SECRET: '' })
  t.equal(c.PORT, 8080)
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
    [{ LOG_LEVEL: 'loud' }, /LOG_LEVEL/],
    [{ LOGIN_RATE_LIMIT: 'many' }, /LOGIN_RATE_LIMIT/],
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
