// The plugin in a downstream app, with an HS256 secret, against a stand-in for the auth
// service and a Redis written as the auth service writes it: the warm path decides from
// one Redis read and never introspects; a miss, or a Redis that does not speak protocol 1,
// introspects; neither possible is a 503; refusals carry a Bearer challenge.
import t from 'tap'
import { Redis } from 'ioredis'
import { active, CLIENT, downstream, fakeAuth, hs256, identity, redisPrefix, REDIS_URL, SECRET } from './support.js'

const auth = await fakeAuth(t)
const writer = await redisPrefix(t)
await writer.marker()
// A client of the test's own, so its commands can be counted.
const redis = new Redis(REDIS_URL)
t.teardown(() => redis.disconnect())
const app = await downstream(t, { authUrl: auth.url, secret: SECRET, redis, keyPrefix: writer.prefix })

function get (token: string | undefined, url = '/me') {
  return app.inject({ method: 'GET', url, headers: token === undefined ? {} : { authorization: `Bearer ${token}` } })
}

t.test('401 with a Bearer challenge: no token, a malformed header, a bad token', async (t) => {
  const missing = await get(undefined)
  t.equal(missing.statusCode, 401)
  t.equal(missing.headers['www-authenticate'], 'Bearer realm="api"')
  t.match(missing.json(), { statusCode: 401, code: 'AUTH_MISSING_TOKEN', message: 'Missing access token' })
  const who = identity()
  await writer.live(who)
  for (const [what, header] of [
    ['Basic', 'Basic dXNlcjpwYXNz'],
    ['Bearer alone', 'Bearer'],
    ['another secret', `Bearer ${hs256(who, { secret: 'another-secret-another-secret-another-secret' })}`],
    ['expired', `Bearer ${hs256(who, { expiresIn: -1000 })}`],
    ['garbage', 'Bearer a.b.c']
  ]) {
    const res = await app.inject({ method: 'GET', url: '/me', headers: { authorization: header } })
    t.equal(res.statusCode, 401, what)
    t.equal(res.headers['www-authenticate'], 'Bearer realm="api", error="invalid_token"', what)
    t.equal(res.json().code, 'AUTH_INVALID_TOKEN')
  }
  t.equal(auth.calls.introspect, 0, 'nothing of this reached the auth service')
})

t.test('warm: decided by one Redis command, no introspection', async (t) => {
  const who = identity()
  await writer.live(who)
  const token = hs256(who)
  const before = { ...auth.calls }
  let commands = 0
  const send = redis.sendCommand.bind(redis)
  redis.sendCommand = ((...args: Parameters<typeof send>) => { commands++; return send(...args) }) as typeof redis.sendCommand
  let res
  try {
    res = await get(token)
  } finally {
    redis.sendCommand = send
  }
  t.equal(res.statusCode, 200)
  t.strictSame(res.json(), { sub: who.sub, role: 'user', sid: who.sid }, 'request.user holds the claims')
  t.equal(commands, 1, 'one HMGET')
  t.strictSame(auth.calls, before, 'no introspection, no JWKS')
})

t.test('revoked in Redis: refused on the next request, without asking the auth service', async (t) => {
  const who = identity()
  const other = { ...identity(), sub: who.sub }
  await writer.live(who)
  await writer.live(other)
  const token = hs256(who)
  const otherToken = hs256(other)
  t.equal((await get(token)).statusCode, 200)
  await writer.dead(who)
  const res = await get(token)
  t.equal(res.statusCode, 401)
  t.equal(res.headers['www-authenticate'], 'Bearer realm="api", error="invalid_token"')
  t.equal(res.json().message, 'Access token has been revoked')
  t.equal((await get(otherToken)).statusCode, 200, 'the user\'s other session goes on')
  await writer.revokeAll(other)
  t.equal((await get(otherToken)).statusCode, 401, 'ra at or after the session: every session of the user')
  t.equal(auth.calls.introspect, 0)
})

t.test('a miss asks the auth service (RFC 7662, the client\'s Basic credentials)', async (t) => {
  const who = identity()
  const token = hs256(who)
  auth.answers.set(token, active(who))
  const before = auth.calls.introspect
  t.equal((await get(token)).statusCode, 200)
  t.equal(auth.calls.introspect, before + 1)
  t.equal(auth.last.authorization, `Basic ${Buffer.from(`${CLIENT.clientId}:s3cret+with+spaces+%26+symbols`).toString('base64')}`,
    'each half form-urlencoded, then Basic (RFC 6749 §2.3.1)')
  t.equal(auth.last.contentType, 'application/x-www-form-urlencoded')
  t.strictSame(auth.last.body, { token, token_type_hint: 'access_token' })

  auth.answers.set(token, { active: false })
  t.equal((await get(token)).statusCode, 401, 'inactive: refused')
  auth.answers.set(token, { ...active(who), sid: identity().sid })
  t.equal((await get(token)).statusCode, 401, 'active, but about another session: refused')
  auth.answers.set(token, { ...active(who), token_type: 'refresh_token' })
  t.equal((await get(token)).statusCode, 401, 'active, but not an access token: refused')
  auth.answers.set(token, active(who))

  // Once the service has filled Redis, the next request is warm again.
  await writer.live(who)
  const warm = auth.calls.introspect
  t.equal((await get(token)).statusCode, 200)
  t.equal(auth.calls.introspect, warm, 'no introspection once cached')
})

t.test('neither Redis nor introspection can decide: 503', async (t) => {
  const who = identity()
  const token = hs256(who)
  for (const status of [500, 503, 401]) {
    auth.failWith = status
    const res = await get(token)
    t.equal(res.statusCode, 503, `introspection answered ${status}`)
    t.equal(res.headers['retry-after'], '1')
    t.match(res.json(), { statusCode: 503, code: 'AUTH_UNAVAILABLE' })
  }
  auth.failWith = undefined
  const revoked = identity()
  await writer.dead(revoked)
  auth.failWith = 500
  t.equal((await get(hs256(revoked))).statusCode, 401, 'what Redis knows is still decided')
  auth.failWith = undefined
  t.equal(app.resourceServer.stats.unavailable, 3)
})

t.test('the protocol marker: Redis is trusted only while it says version 1', async (t) => {
  const who = identity()
  await writer.live(who)
  const token = hs256(who)
  auth.answers.set(token, { active: false })
  t.equal((await get(token)).statusCode, 200, 'version 1: Redis decides')

  for (const marker of ['2', null]) {
    await writer.marker(marker)
    await app.resourceServer.checkProtocol()
    t.equal(app.resourceServer.redisTrusted, false, `marker ${marker}: not trusted`)
    const before = auth.calls.introspect
    t.equal((await get(token)).statusCode, 401, `marker ${marker}: introspection decides (here: inactive)`)
    t.equal(auth.calls.introspect, before + 1)
  }

  // The marker comes back (the service restarts, or re-creates a hash after a flush): the
  // plugin reads it again on its own, at most once a second, and trusts Redis again.
  await writer.marker()
  const deadline = Date.now() + 5000
  while (!app.resourceServer.redisTrusted && Date.now() < deadline) {
    await get(token)
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  t.equal(app.resourceServer.redisTrusted, true, 'trusted again')
  t.equal((await get(token)).statusCode, 200, 'Redis decides again')
})

t.test('requireRole', async (t) => {
  const user = identity('user')
  const admin = identity('admin')
  await writer.live(user)
  await writer.live(admin)
  const res = await get(hs256(user), '/admin')
  t.equal(res.statusCode, 403)
  t.match(res.json(), { code: 'AUTH_FORBIDDEN', message: 'Requires role admin' })
  t.equal((await get(hs256(admin), '/admin')).statusCode, 200)
  t.equal((await get(undefined, '/admin')).statusCode, 401, 'authentication first')
})

t.test('requireMfa: the hook per route, and the option for every route', async (t) => {
  const who = identity()
  await writer.live(who)
  const password = hs256(who, { amr: ['pwd'] })
  const otp = hs256(who, { amr: ['pwd', 'otp'] })
  const legacy = hs256(who)
  const refused = await get(password, '/secure')
  t.equal(refused.statusCode, 403, 'a password-only sign-in is refused')
  t.match(refused.json(), { statusCode: 403, code: 'AUTH_MFA_REQUIRED', message: 'Requires a sign-in with a second factor' })
  t.equal((await get(legacy, '/secure')).statusCode, 403, 'a token without amr counts as password-only')
  t.equal((await get(otp, '/secure')).statusCode, 200, 'a TOTP sign-in passes')
  t.equal((await get(hs256(who, { amr: ['hwk'] }), '/secure')).statusCode, 200, 'a passkey sign-in passes')
  t.equal((await get(hs256(who, { amr: 'pwd otp' }), '/secure')).statusCode, 401, 'an amr that is not a list is no token at all')
  t.equal((await get(password, '/me')).statusCode, 200, 'routes without the hook take any sign-in')
  t.equal((await get(undefined, '/secure')).statusCode, 401, 'authentication first')

  const strict = await downstream(t, { authUrl: auth.url, secret: SECRET, redis, keyPrefix: writer.prefix, requireMfa: true })
  const viaOption = await strict.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${password}` } })
  t.equal(viaOption.statusCode, 403, 'with the option, every route asks for a second factor')
  t.equal(viaOption.json().code, 'AUTH_MFA_REQUIRED')
  t.equal((await strict.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${otp}` } })).statusCode, 200)
  await writer.dead(who)
  t.equal((await strict.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${password}` } })).statusCode, 401,
    'a revoked token is a 401 whatever its login was')
})

t.test('options are checked at registration', async (t) => {
  const Fastify = (await import('fastify')).default
  const plugin = (await import('@auth-service/fastify-resource-server')).default
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['no URL at all', { secret: SECRET, redis: REDIS_URL, ...CLIENT }, /authUrl or introspectionUrl/],
    ['no secret and no JWKS', { introspectionUrl: `${auth.url}/oauth/introspect`, redis: REDIS_URL, ...CLIENT }, /secret \(HS256\), or authUrl or jwksUrl/],
    ['no client', { authUrl: auth.url, secret: SECRET, redis: REDIS_URL }, /clientId and clientSecret/],
    ['a client with a keyPrefix', { authUrl: auth.url, secret: SECRET, redis: new Redis(REDIS_URL, { keyPrefix: 'auth:', lazyConnect: true }), ...CLIENT }, /keyPrefix/]
  ]
  for (const [what, opts, error] of cases) {
    const bad = Fastify()
    await t.rejects(async () => { await bad.register(plugin, opts as any).ready() }, error, what)
    await bad.close().catch(() => {})
  }
})
