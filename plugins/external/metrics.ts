// Provides `fastify.metrics`: a Prometheus registry of this app instance (not prom-client's
// global one, so several instances in one process do not clash), request counts and
// latencies by route, login outcomes, counters other plugins increment (revocations, Redis
// fallbacks) and gauges they register (pool, connection, breaker). Served by GET /metrics
// (routes/health).
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
   * One answered request (the request-logging plugin calls it once per response): `route`
   * is the route template or 'unmatched', `ms` the time from request received to response sent.
   */
  observeRequest: (method: string, route: string, status: number, ms: number) => void
  /**
   * A gauge read when /metrics is scraped, never on the request path: the plugin that owns
   * the state registers it (the PostgreSQL pool, the Redis client, the circuit breaker).
   * `read` returning undefined leaves the last value.
   */
  gauge: (name: string, help: string, read: () => number | undefined) => void
}

const LOGIN_ROUTE = '/auth/login'

/** Latency buckets (seconds), from the hot path's to a login's argon2 hash and beyond. */
const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]

export default fp(async function metricsPlugin (fastify) {
  const registry = new Registry()
  const requests = new Counter({
    name: 'http_requests_total',
    help: 'HTTP requests answered, by method, route template and status code',
    labelNames: ['method', 'route', 'status_code'],
    registers: [registry]
  })
  const durations = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'Time from request received to response sent, by method, route template and status code',
    labelNames: ['method', 'route', 'status_code'],
    buckets: DURATION_BUCKETS,
    registers: [registry]
  })

  const metrics: Metrics = {
    observeRequest (method, route, status, ms) {
      const labels = { method, route, status_code: status }
      requests.inc(labels)
      durations.observe(labels, ms / 1000)
      if (route === LOGIN_ROUTE && method === 'POST') {
        if (status === 200) metrics.logins.inc()
        else if (status === 401) metrics.loginFailures.inc({ reason: 'bad_credentials' })
        else if (status === 429) metrics.loginFailures.inc({ reason: 'throttled' })
      }
    },
    gauge (name, help, read) {
      registry.registerMetric(new Gauge({
        name,
        help,
        registers: [],
        collect () {
          const value = read()
          if (value !== undefined) this.set(value)
        }
      }))
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
      help: 'Token checks answered from PostgreSQL: reason=miss (cache filled), reason=redis_unavailable (fallback), reason=no_redis (running without Redis: every check)',
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

  fastify.decorate('metrics', metrics)
}, { name: 'metrics' })
