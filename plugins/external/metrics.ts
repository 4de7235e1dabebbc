// Provides `fastify.metrics`: a Prometheus registry of this app instance (not prom-client's
// global one, so several instances in one process do not clash), request counts and
// latencies by route, login outcomes, and counters other plugins increment (revocations,
// Redis fallbacks). Served by GET /metrics (routes/health).
//
// Nothing sensitive goes in: labels are route templates (`/users/:id`, never the URL
// itself), methods, status codes and fixed reasons; no user, IP, token or error text.
import fp from 'fastify-plugin'
import { Counter, Gauge, Histogram, Registry } from 'prom-client'

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics
  }
}

export interface Metrics {
  registry: Registry
  /** Successful logins. */
  logins: Counter
  /** Refused logins: bad credentials (401) or throttled (429: rate limit or lockout). */
  loginFailures: Counter<'reason'>
  /** Committed revocations: sessions ended one by one, and users whose every token died. */
  revocations: Counter<'kind'>
  /** Revoking calls answered 503 because Redis could not be written (nothing changed). */
  revocationsRefused: Counter
  /** Times the Redis circuit breaker opened (a command failed or timed out). */
  breakerTrips: Counter
  /** Token checks answered from PostgreSQL: a cache miss, or Redis unavailable. */
  readThroughs: Counter<'reason'>
  /**
   * One answered request (app.ts calls it from its one onResponse hook): `route` is the
   * route template or 'unmatched', `ms` the time from request received to response sent.
   */
  observeRequest: (method: string, route: string, status: number, ms: number) => void
}

const LOGIN_ROUTE = '/auth/login'

/** Latency buckets (seconds): the hot path answers in about a millisecond; logins take an argon2 hash (~50-500 ms). */
const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]

/** One series of the request metrics: a method, a route template and a status code. */
export interface RequestSeries {
  labels: { method: string, route: string, status_code: number }
  count: number
  /** What http_requests_total has been given so far. */
  exported: number
  sum: number
  /** Observations per bucket (not cumulative); the last one is +Inf. */
  buckets: Float64Array
}

/**
 * `http_request_duration_seconds`: a Prometheus histogram by method, route template and
 * status code, with the exposition of prom-client's Histogram. prom-client's observe()
 * validates the labels and builds a string key from them on every call; here a series is
 * found by three map lookups on strings Fastify reuses, and an observation is a bucket
 * search and three additions: ~8 k fewer instructions per request (docs/benchmarks.md).
 */
export class RequestDurations {
  readonly name = 'http_request_duration_seconds'
  readonly help = 'Time from request received to response sent, by method, route template and status code'
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  private readonly byRoute = new Map<string, Map<string, Map<number, RequestSeries>>>()
  private readonly all: RequestSeries[] = []

  constructor (private readonly bounds: number[]) {}

  observe (method: string, route: string, status: number, seconds: number): void {
    let byMethod = this.byRoute.get(route)
    if (byMethod === undefined) this.byRoute.set(route, byMethod = new Map())
    let byStatus = byMethod.get(method)
    if (byStatus === undefined) byMethod.set(method, byStatus = new Map())
    let series = byStatus.get(status)
    if (series === undefined) {
      series = { labels: { method, route, status_code: status }, count: 0, exported: 0, sum: 0, buckets: new Float64Array(this.bounds.length + 1) }
      byStatus.set(status, series)
      this.all.push(series)
    }
    const { bounds } = this
    let b = 0
    while (b < bounds.length && seconds > bounds[b]) b++
    series.buckets[b]++
    series.count++
    series.sum += seconds
  }

  series (): readonly RequestSeries[] {
    return this.all
  }

  /** The values prom-client's registry renders: cumulative buckets, +Inf, _sum and _count. */
  async get (): Promise<{ name: string, help: string, type: string, aggregator: string, values: Array<{ metricName: string, labels: Record<string, string | number>, value: number }> }> {
    const values = []
    for (const series of this.all) {
      let cumulative = 0
      for (let b = 0; b <= this.bounds.length; b++) {
        cumulative += series.buckets[b]
        values.push({ metricName: `${this.name}_bucket`, labels: { le: b < this.bounds.length ? this.bounds[b] : '+Inf', ...series.labels }, value: cumulative })
      }
      values.push({ metricName: `${this.name}_sum`, labels: { ...series.labels }, value: series.sum })
      values.push({ metricName: `${this.name}_count`, labels: { ...series.labels }, value: series.count })
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values }
  }

  reset (): void {
    this.byRoute.clear()
    this.all.length = 0
  }
}

export default fp(async function metricsPlugin (fastify) {
  const registry = new Registry()
  // Counted per series in plain numbers (RequestDurations, above) and read when scraped.
  const durations = new RequestDurations(DURATION_BUCKETS)
  registry.registerMetric(new Counter({
    name: 'http_requests_total',
    help: 'HTTP requests answered, by method, route template and status code',
    labelNames: ['method', 'route', 'status_code'],
    registers: [],
    collect () {
      for (const series of durations.series()) {
        const delta = series.count - series.exported
        // Present from the first scrape, at 0, like the other series.
        this.inc(series.labels, delta)
        series.exported = series.count
      }
    }
  }))
  // A prom-client metric in all but name: the registry renders whatever get() returns.
  registry.registerMetric(durations as unknown as Histogram)

  const metrics: Metrics = {
    observeRequest (method, route, status, ms) {
      durations.observe(method, route, status, ms / 1000)
      if (route === LOGIN_ROUTE && method === 'POST') {
        if (status === 200) metrics.logins.inc()
        else if (status === 401) metrics.loginFailures.inc({ reason: 'bad_credentials' })
        else if (status === 429) metrics.loginFailures.inc({ reason: 'throttled' })
      }
    },
    registry,
    logins: new Counter({ name: 'auth_logins_total', help: 'Successful logins', registers: [registry] }),
    loginFailures: new Counter({
      name: 'auth_login_failures_total',
      help: 'Refused logins: bad_credentials (401) or throttled (429, rate limit or lockout)',
      labelNames: ['reason'],
      registers: [registry]
    }),
    revocations: new Counter({
      name: 'auth_revocations_total',
      help: 'Committed revocations: kind=session (one session ended) or kind=user (every token of a user)',
      labelNames: ['kind'],
      registers: [registry]
    }),
    revocationsRefused: new Counter({
      name: 'auth_revocations_refused_total',
      help: 'Revoking calls answered 503 because Redis could not be written (rolled back)',
      registers: [registry]
    }),
    breakerTrips: new Counter({
      name: 'auth_redis_breaker_trips_total',
      help: 'Times a failed or timed-out Redis command opened the circuit breaker',
      registers: [registry]
    }),
    readThroughs: new Counter({
      name: 'auth_pg_read_throughs_total',
      help: 'Token checks answered from PostgreSQL: reason=miss (cache filled) or reason=redis_unavailable (fallback)',
      labelNames: ['reason'],
      registers: [registry]
    })
  }
  // Every series present from the start, so that rate() works from the first scrape.
  metrics.loginFailures.inc({ reason: 'bad_credentials' }, 0)
  metrics.loginFailures.inc({ reason: 'throttled' }, 0)
  metrics.revocations.inc({ kind: 'session' }, 0)
  metrics.revocations.inc({ kind: 'user' }, 0)
  metrics.readThroughs.inc({ reason: 'miss' }, 0)
  metrics.readThroughs.inc({ reason: 'redis_unavailable' }, 0)

  // Read at scrape time only: nothing on the request path. The decorators they read are
  // added by plugins registered after this one.
  const gauge = (name: string, help: string, read: () => number | undefined) => new Gauge({
    name,
    help,
    registers: [registry],
    collect () {
      const value = read()
      if (value !== undefined) this.set(value)
    }
  })
  const pool = () => fastify.hasDecorator('db') ? fastify.db.pool : undefined
  gauge('pg_pool_total_connections', 'PostgreSQL connections open in the pool', () => pool()?.totalCount)
  gauge('pg_pool_idle_connections', 'PostgreSQL connections idle in the pool', () => pool()?.idleCount)
  gauge('pg_pool_waiting_clients', 'Queries waiting for a PostgreSQL connection', () => pool()?.waitingCount)
  gauge('auth_redis_up', '1 while the Redis client is connected and ready', () =>
    fastify.hasDecorator('redis') ? Number(fastify.redis.status === 'ready') : undefined)
  gauge('auth_redis_breaker_open', '1 while token checks skip Redis and read PostgreSQL', () =>
    fastify.hasDecorator('revocation') ? Number(!fastify.revocation.redisUsable()) : undefined)
  gauge('auth_revocation_retry_backlog', 'Committed revocations whose post-commit Redis write awaits a retry', () =>
    fastify.hasDecorator('revocation') ? fastify.revocation.backlogSize : undefined)

  fastify.decorate('metrics', metrics)
}, { name: 'metrics', dependencies: ['config'] })
