import t from 'tap'
import { build, context, freePort, me, privateRedis, signUp } from '../helper.js'

const redis = await privateRedis(t)
const ctx = await context(t)
const app = await build(t, ctx, { REDIS_URL: redis.url })

t.test('GET /health is 200 and touches no dependency', async (t) => {
  const res = await app.inject('/health')
  t.equal(res.statusCode, 200)
  t.strictSame(res.json(), { status: 'ok' })
})

t.test('GET /ready reports each dependency', async (t) => {
  const ok = await app.inject('/ready')
  t.equal(ok.statusCode, 200)
  t.strictSame(ok.json(), { status: 'ok', checks: { postgres: 'ok', redis: 'ok' } })

  const user = await signUp(app, ctx)
  await redis.stop()
  const started = Date.now()
  const down = await app.inject('/ready')
  t.ok(Date.now() - started < 3000, 'notices the outage within 3 s')
  t.equal(down.statusCode, 503)
  t.strictSame(down.json(), { status: 'down', checks: { postgres: 'ok', redis: 'down' } })
  t.equal((await app.inject('/health')).statusCode, 200, '/health stays 200')

  const fallback = await me(app, user.access)
  t.equal(fallback.statusCode, 200, 'authenticated reads are answered from PostgreSQL while Redis is down')
  const logout = await app.inject({ method: 'POST', url: '/auth/logout', headers: { authorization: `Bearer ${user.access}` } })
  t.equal(logout.statusCode, 503, 'a revocation that cannot reach Redis is refused')
  t.equal((await me(app, user.access)).statusCode, 200, 'and changed nothing')

  await redis.start()
  let back = 0
  for (let i = 0; i < 50 && back !== 200; i++) {
    back = (await app.inject('/ready')).statusCode
    if (back !== 200) await new Promise((resolve) => setTimeout(resolve, 100))
  }
  t.equal(back, 200, 'back to ready by itself within 5 s')
})

t.test('start-up refuses to run without Redis, with one clear line', async (t) => {
  const port = await freePort()
  const ctx2 = await context(t)
  await t.rejects(build(t, ctx2, { REDIS_URL: `redis://127.0.0.1:${port}` }), /^REDIS_URL: cannot connect to Redis at 127\.0\.0\.1:\d+: connection refused$/)
})

t.test('GET /docs/json lists every route of the contract', async (t) => {
  const res = await app.inject('/docs/json')
  t.equal(res.statusCode, 200)
  const doc = res.json()
  t.match(doc.openapi, /^3\./)
  const expected: Record<string, string[]> = {
    '/auth/register': ['post'],
    '/auth/login': ['post'],
    '/auth/refresh': ['post'],
    '/auth/me': ['get'],
    '/auth/change-role': ['post'],
    '/auth/logout': ['post'],
    '/auth/logout-all': ['post'],
    '/auth/sessions': ['get'],
    '/auth/sessions/{id}': ['delete'],
    '/auth/change-password': ['post'],
    '/users': ['get'],
    '/users/{id}': ['get', 'patch', 'delete'],
    '/audit': ['get'],
    '/health': ['get'],
    '/ready': ['get']
  }
  for (const [path, methods] of Object.entries(expected)) {
    for (const method of methods) t.ok(doc.paths[path]?.[method], `${method.toUpperCase()} ${path}`)
  }
  t.ok(doc.paths['/auth/login'].post.requestBody.content['application/json'])
  t.ok(doc.paths['/auth/login'].post.requestBody.content['application/x-www-form-urlencoded'])
  t.match(doc.components.securitySchemes, {
    bearerAuth: { type: 'http', scheme: 'bearer' },
    oauth2: { type: 'oauth2', flows: { password: { tokenUrl: '/auth/login' } } }
  })
  t.ok(doc.components.schemas.User && doc.components.schemas.TokenPair && doc.components.schemas.HttpError)
  const ui = await app.inject('/docs/')
  t.equal(ui.statusCode, 200)
  t.match(ui.headers['content-type'], /text\/html/)
})
