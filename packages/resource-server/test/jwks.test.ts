// Without a secret, the keys come from the auth service's JWKS: fetched at start, fetched
// again when a token names an unknown kid (a rotation), at most once per jwksMinRefreshMs,
// and in the background when older than jwksMaxAgeMs (a retired key stops verifying).
// An unknown kid when the JWKS cannot be fetched cannot be decided: 503.
import t from 'tap'
import { downstream, ed25519, eddsa, fakeAuth, freePort, hs256, identity, redisPrefix, REDIS_URL } from './support.js'

const writer = await redisPrefix(t)
await writer.marker()
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

function get (app: Awaited<ReturnType<typeof downstream>>, token: string) {
  return app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${token}` } })
}

t.test('fetched at start; a rotation is picked up by the first token of the new key', async (t) => {
  const a = ed25519()
  const auth = await fakeAuth(t, [a])
  const app = await downstream(t, { authUrl: auth.url, redis: REDIS_URL, keyPrefix: writer.prefix, jwksMinRefreshMs: 1000 })
  t.equal(auth.calls.jwks, 1, 'fetched once at start')
  const who = identity()
  await writer.live(who)
  t.equal((await get(app, eddsa(who, a))).statusCode, 200)
  t.equal((await get(app, eddsa(who, a))).statusCode, 200)
  t.equal(auth.calls.jwks, 1, 'known kid: no fetch')

  // Past jwksMinRefreshMs since the fetch at start, the auth service rotates its key.
  await sleep(1100)
  const b = ed25519()
  auth.keys = [b, a]
  t.equal((await get(app, eddsa(who, b))).statusCode, 200, 'the new key\'s token verifies after one fetch')
  t.equal(auth.calls.jwks, 2)
  t.equal((await get(app, eddsa(who, a))).statusCode, 200, 'the previous key still verifies')

  // A kid nobody publishes: refused, and within jwksMinRefreshMs of the last fetch it
  // costs no more fetches.
  const stranger = ed25519()
  for (let i = 0; i < 5; i++) {
    const res = await get(app, eddsa(who, stranger))
    t.equal(res.statusCode, 401)
    t.equal(res.headers['www-authenticate'], 'Bearer realm="api", error="invalid_token"')
  }
  t.equal(auth.calls.jwks, 2, 'unknown kids do not make the plugin hammer the JWKS endpoint')

  t.equal((await get(app, hs256(who))).statusCode, 401, 'an HS256 token (no kid) is refused')
  t.equal(auth.calls.introspect, 0)
})

t.test('a key the auth service retired stops verifying once the keys are refreshed', async (t) => {
  const a = ed25519()
  const b = ed25519()
  const auth = await fakeAuth(t, [b, a])
  const app = await downstream(t, { authUrl: auth.url, redis: REDIS_URL, keyPrefix: writer.prefix, jwksMinRefreshMs: 50, jwksMaxAgeMs: 200 })
  const who = identity()
  await writer.live(who)
  const old = eddsa(who, a)
  t.equal((await get(app, old)).statusCode, 200)
  auth.keys = [b]
  await sleep(300)
  await get(app, old) // starts the background refresh
  const deadline = Date.now() + 3000
  let status = 200
  while (status === 200 && Date.now() < deadline) {
    await sleep(50)
    status = (await get(app, old)).statusCode
  }
  t.equal(status, 401, 'the retired key\'s token is refused')
  t.equal((await get(app, eddsa(who, b))).statusCode, 200, 'the current key\'s still verifies')
})

t.test('the JWKS cannot be fetched: an unknown kid is a 503, not a 401', async (t) => {
  const port = await freePort()
  const auth = await fakeAuth(t)
  const app = await downstream(t, {
    jwksUrl: `http://127.0.0.1:${port}/.well-known/jwks.json`,
    introspectionUrl: `${auth.url}/oauth/introspect`,
    redis: REDIS_URL,
    keyPrefix: writer.prefix,
    jwksMinRefreshMs: 0
  })
  const who = identity()
  await writer.live(who)
  const res = await get(app, eddsa(who, ed25519()))
  t.equal(res.statusCode, 503)
  t.equal(res.headers['retry-after'], '1')
  t.match(res.json(), { code: 'AUTH_UNAVAILABLE' })
})
