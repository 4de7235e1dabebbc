// METRICS_PORT: /metrics on the API's port (unset, as before), on a listener of its own
// that serves nothing else, or nowhere.
import t from 'tap'
import { createServer } from 'node:net'
import { build, context, freePort } from '../helper.js'

const ctx = await context(t)

t.test('unset: /metrics on the API port', async (t) => {
  const app = await build(t, ctx)
  const res = await app.inject('/metrics')
  t.equal(res.statusCode, 200)
  t.match(res.body, /^# HELP /m)
})

t.test('off (or 0): no /metrics anywhere; the metrics are still counted', async (t) => {
  for (const value of ['off', '0']) {
    const app = await build(t, ctx, { METRICS_PORT: value })
    t.equal((await app.inject('/metrics')).statusCode, 404, `METRICS_PORT=${value}`)
    t.notOk((await app.inject('/docs/json')).json().paths['/metrics'], 'not in the document either')
    t.equal((await app.inject('/health')).statusCode, 200)
  }
})

t.test('a port: /metrics there and only there', async (t) => {
  const port = await freePort()
  const app = await build(t, ctx, { METRICS_PORT: port, HOST: '127.0.0.1' })
  t.equal((await app.inject('/metrics')).statusCode, 404, 'not on the API port')
  t.equal((await app.inject('/health')).statusCode, 200)
  const res = await fetch(`http://127.0.0.1:${port}/metrics`)
  t.equal(res.status, 200)
  t.match(res.headers.get('content-type'), /^text\/plain; version=0\.0\.4/)
  t.match(await res.text(), /^http_request_duration_seconds_bucket\{/m)
  for (const path of ['/health', '/auth/me', '/docs', '/metrics/x']) {
    t.equal((await fetch(`http://127.0.0.1:${port}${path}`)).status, 404, `${path}: nothing else`)
  }
  t.equal((await fetch(`http://127.0.0.1:${port}/metrics`, { method: 'POST' })).status, 404)
  await app.close()
  await t.rejects(fetch(`http://127.0.0.1:${port}/metrics`), 'closed with the app')
})

t.test('a taken port stops start-up with one line', async (t) => {
  const taken = createServer()
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
  t.teardown(() => taken.close())
  const { port } = taken.address() as { port: number }
  await t.rejects(build(t, ctx, { METRICS_PORT: port, HOST: '127.0.0.1' }), {
    name: 'StartupError',
    message: `METRICS_PORT: 127.0.0.1:${port} is already in use`
  })
})
