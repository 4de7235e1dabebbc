import t from 'tap'
import { once } from 'node:events'
import { connect, type AddressInfo } from 'node:net'
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
  t.equal(down.statusCode, 200, 'still ready: every instance shares Redis, and the service answers from PostgreSQL')
  t.strictSame(down.json(), { status: 'degraded', checks: { postgres: 'ok', redis: 'down' } })
  t.equal((await app.inject('/health')).statusCode, 200, '/health stays 200')

  const fallback = await me(app, user.access)
  t.equal(fallback.statusCode, 200, 'authenticated reads are answered from PostgreSQL while Redis is down')
  const logout = await app.inject({ method: 'POST', url: '/auth/logout', headers: { authorization: `Bearer ${user.access}` } })
  t.equal(logout.statusCode, 503, 'a revocation that cannot reach Redis is refused')
  t.equal((await me(app, user.access)).statusCode, 200, 'and changed nothing')

  await redis.start()
  let back = ''
  for (let i = 0; i < 50 && back !== 'ok'; i++) {
    back = (await app.inject('/ready')).json().status
    if (back !== 'ok') await new Promise((resolve) => setTimeout(resolve, 100))
  }
  t.equal(back, 'ok', 'back to ok by itself within 5 s')
})

t.test('GET /ready is 503 draining while the instance shuts down', async (t) => {
  const ctx3 = await context(t)
  const server = await build(t, ctx3, { REDIS_URL: redis.url })
  await server.listen({ port: 0, host: '127.0.0.1' })
  const { port } = server.server.address() as AddressInfo
  t.equal((await fetch(`http://127.0.0.1:${port}/ready`)).status, 200)

  // A connection whose request has begun (headers half sent) is not idle: shutdown waits
  // for it, and its request is answered once it is complete.
  const socket = connect(port, '127.0.0.1')
  await once(socket, 'connect')
  socket.write('GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\n')
  await new Promise((resolve) => setTimeout(resolve, 200))
  let answer = ''
  socket.on('data', (chunk) => { answer += String(chunk) })
  const closed = server.close()
  await new Promise((resolve) => setTimeout(resolve, 200))
  socket.write('\r\n')
  await once(socket, 'close')
  await closed
  const [head, body] = answer.split('\r\n\r\n')
  t.match(head, /^HTTP\/1\.1 503 /, '503 while draining')
  t.match(head, /\r\nconnection: close\r\n/i, 'and the connection is closed after it')
  t.strictSame(JSON.parse(body), { status: 'draining', checks: { postgres: 'ok', redis: 'ok' } })
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
