// The request histogram (plugins/metrics.ts): Prometheus semantics without prom-client's
// per-observation label hashing. The route-level view is test/metrics.test.ts.
import t from 'tap'
import { Registry, type Histogram } from 'prom-client'
import { RequestDurations } from '../../../plugins/external/metrics.js'

/** The exposition text of a registry holding only `durations`, as `name{labels}` → value. */
async function exposition (durations: RequestDurations): Promise<Map<string, number>> {
  const registry = new Registry()
  registry.registerMetric(durations as unknown as Histogram)
  const values = new Map<string, number>()
  for (const line of (await registry.metrics()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const at = line.lastIndexOf(' ')
    values.set(line.slice(0, at), Number(line.slice(at + 1)))
  }
  return values
}

t.test('cumulative buckets, +Inf, _sum and _count per method, route and status', async (t) => {
  const durations = new RequestDurations([0.001, 0.01, 0.1])
  durations.observe('GET', '/auth/me', 200, 0.0004)
  durations.observe('GET', '/auth/me', 200, 0.001) // on a bound: counted in that bucket (le)
  durations.observe('GET', '/auth/me', 200, 0.05)
  durations.observe('GET', '/auth/me', 200, 3)
  durations.observe('GET', '/auth/me', 401, 0.002)
  durations.observe('POST', '/auth/me', 200, 0.002)

  const values = await exposition(durations)
  const me = 'method="GET",route="/auth/me",status_code="200"'
  t.equal(values.get(`http_request_duration_seconds_bucket{le="0.001",${me}}`), 2)
  t.equal(values.get(`http_request_duration_seconds_bucket{le="0.01",${me}}`), 2)
  t.equal(values.get(`http_request_duration_seconds_bucket{le="0.1",${me}}`), 3)
  t.equal(values.get(`http_request_duration_seconds_bucket{le="+Inf",${me}}`), 4)
  t.equal(values.get(`http_request_duration_seconds_count{${me}}`), 4)
  t.ok(Math.abs(values.get(`http_request_duration_seconds_sum{${me}}`)! - 3.0514) < 1e-9)
  t.equal(values.get('http_request_duration_seconds_count{method="GET",route="/auth/me",status_code="401"}'), 1, 'status apart')
  t.equal(values.get('http_request_duration_seconds_bucket{le="0.001",method="POST",route="/auth/me",status_code="200"}'), 0, 'method apart')
  t.equal(values.get('http_request_duration_seconds_bucket{le="0.01",method="POST",route="/auth/me",status_code="200"}'), 1)
  t.equal(values.size, 3 * (3 + 1 + 2), 'three series, each with 3 bounds, +Inf, _sum and _count')
  t.equal(durations.series().length, 3)
})

t.test('the JSON view and reset()', async (t) => {
  const durations = new RequestDurations([0.5])
  durations.observe('GET', '/health', 200, 0.1)
  const registry = new Registry()
  registry.registerMetric(durations as unknown as Histogram)
  const [metric] = await registry.getMetricsAsJSON()
  t.match(metric, { name: 'http_request_duration_seconds', type: 'histogram' })
  t.same(metric.values.map((v: any) => [v.metricName, v.labels.le, v.value]), [
    ['http_request_duration_seconds_bucket', 0.5, 1],
    ['http_request_duration_seconds_bucket', '+Inf', 1],
    ['http_request_duration_seconds_sum', undefined, 0.1],
    ['http_request_duration_seconds_count', undefined, 1]
  ])
  registry.resetMetrics()
  t.equal((await exposition(durations)).size, 0, 'no series left')
  durations.observe('GET', '/health', 200, 0.1)
  t.equal((await exposition(durations)).get('http_request_duration_seconds_count{method="GET",route="/health",status_code="200"}'), 1, 'counting again')
})
