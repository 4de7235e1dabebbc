// The metrics plugin on its own: what one answered request adds to the exposition, and
// gauges that other plugins register. The app-level view is test/metrics.test.ts.
import t from 'tap'
import Fastify from 'fastify'
import metricsPlugin from '../../../plugins/external/metrics.js'

/** The exposition text as `name{labels}` → value. */
async function exposition (app: ReturnType<typeof Fastify>): Promise<Map<string, number>> {
  const values = new Map<string, number>()
  for (const line of (await app.metrics.registry.metrics()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const at = line.lastIndexOf(' ')
    values.set(line.slice(0, at), Number(line.slice(at + 1)))
  }
  return values
}

async function build (t: { teardown: (fn: () => unknown) => void }): Promise<ReturnType<typeof Fastify>> {
  const app = Fastify()
  await app.register(metricsPlugin)
  t.teardown(() => app.close())
  return app
}

t.test('a request is counted and timed by method, route template and status', async (t) => {
  const app = await build(t)
  const { metrics } = app
  metrics.observeRequest('GET', '/auth/me', 200, 0.4)
  metrics.observeRequest('GET', '/auth/me', 200, 1) // on a bound: counted in that bucket (le)
  metrics.observeRequest('GET', '/auth/me', 200, 3000)
  metrics.observeRequest('GET', '/auth/me', 401, 2)

  const values = await exposition(app)
  const me = 'method="GET",route="/auth/me",status_code="200"'
  t.equal(values.get(`http_requests_total{${me}}`), 3)
  t.equal(values.get(`http_request_duration_seconds_bucket{le="0.001",${me}}`), 2)
  t.equal(values.get(`http_request_duration_seconds_bucket{le="2.5",${me}}`), 2)
  t.equal(values.get(`http_request_duration_seconds_bucket{le="5",${me}}`), 3)
  t.equal(values.get(`http_request_duration_seconds_bucket{le="+Inf",${me}}`), 3)
  t.equal(values.get(`http_request_duration_seconds_count{${me}}`), 3)
  t.ok(Math.abs(values.get(`http_request_duration_seconds_sum{${me}}`)! - 3.0014) < 1e-9, 'seconds')
  t.equal(values.get('http_requests_total{method="GET",route="/auth/me",status_code="401"}'), 1, 'status apart')
})

t.test('login outcomes are read from the login route\'s status', async (t) => {
  const app = await build(t)
  const { metrics } = app
  metrics.observeRequest('POST', '/auth/login', 200, 50)
  metrics.observeRequest('POST', '/auth/login', 401, 50)
  metrics.observeRequest('POST', '/auth/login', 429, 1)
  metrics.observeRequest('POST', '/auth/login', 400, 1)
  metrics.observeRequest('GET', '/auth/login', 200, 1)
  const values = await exposition(app)
  t.equal(values.get('auth_logins_total'), 1)
  t.equal(values.get('auth_login_failures_total{reason="bad_credentials"}'), 1)
  t.equal(values.get('auth_login_failures_total{reason="throttled"}'), 1)
})

t.test('a registered gauge is read at each scrape; undefined keeps the last value', async (t) => {
  const app = await build(t)
  let value: number | undefined = 3
  let reads = 0
  app.metrics.gauge('test_gauge', 'A test gauge', () => { reads++; return value })
  t.equal(reads, 0, 'not read until scraped')
  t.equal((await exposition(app)).get('test_gauge'), 3)
  value = 5
  t.equal((await exposition(app)).get('test_gauge'), 5)
  value = undefined
  t.equal((await exposition(app)).get('test_gauge'), 5)
  t.equal(reads, 3)
})

t.test('each instance has its own registry', async (t) => {
  const a = await build(t)
  const b = await build(t)
  a.metrics.observeRequest('GET', '/health', 200, 1)
  t.equal((await exposition(a)).get('http_requests_total{method="GET",route="/health",status_code="200"}'), 1)
  t.notOk((await exposition(b)).has('http_requests_total{method="GET",route="/health",status_code="200"}'))
})
