// Load generator: one autocannon run (programmatic API, so per-response latencies are
// kept at µs resolution and refresh tokens can be chained), printed as one JSON line.
// run.ts starts it pinned to the load generator's core.
import { randomBytes } from 'node:crypto'
import autocannon, { type Client, type Options } from 'autocannon'
import { percentile, type LoadResult } from './stats.js'

export interface LoadSpec {
  url: string
  method: 'GET' | 'POST'
  headers?: Record<string, string>
  body?: string
  connections: number
  durationSec: number
  /**
   * Chain mode for POST /auth/refresh: one fresh refresh token per connection; every
   * response's refresh_token becomes that connection's next request. A token is never
   * presented twice (that would end the session as a theft).
   */
  refreshTokens?: string[]
}

const spec = JSON.parse(process.argv[2] ?? '{}') as LoadSpec

const opts: Options = {
  url: spec.url,
  connections: spec.connections,
  duration: spec.durationSec,
  pipelining: 1,
  // Longer than a run: autocannon resends the current request after a timeout, which in
  // chain mode would present a refresh token a second time.
  timeout: spec.durationSec + 30,
  method: spec.method,
  headers: spec.headers,
  body: spec.body
}

const tokens = spec.refreshTokens
if (tokens !== undefined) {
  if (tokens.length < spec.connections) throw new Error('chain mode needs one refresh token per connection')
  // onResponse (it sees the body) runs synchronously just before the same client's
  // 'response' event (it knows the client): the body is handed over in between.
  let lastBody: string | undefined
  let next = 0
  opts.requests = [{
    onResponse (status, body) {
      lastBody = status === 200 ? body : undefined
    }
  }]
  opts.setupClient = (client: Client) => {
    const body = (token: string) => JSON.stringify({ refresh_token: token })
    client.setBody(body(tokens[next++]))
    client.on('response', () => {
      let token: string | undefined
      try {
        token = lastBody === undefined ? undefined : JSON.parse(lastBody).refresh_token
      } catch {}
      lastBody = undefined
      // After a failure, a token that was never issued (a 401, never a reuse).
      client.setBody(body(typeof token === 'string' ? token : randomBytes(32).toString('base64url')))
    })
  }
}

const latencies: number[] = []
const cpu0 = process.cpuUsage()
const started = performance.now()
const instance = autocannon(opts, (err, result) => {
  if (err !== null) {
    process.stderr.write(`autocannon: ${err.message}\n`)
    process.exit(1)
  }
  const seconds = (performance.now() - started) / 1000
  const cpu = process.cpuUsage(cpu0)
  latencies.sort((a, b) => a - b)
  const out: LoadResult = {
    ok: result['2xx'],
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    durationSec: result.duration,
    rps: result['2xx'] / result.duration,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    genCpuPct: (cpu.user + cpu.system) / 1e4 / seconds
  }
  process.stdout.write(JSON.stringify(out) + '\n')
})
instance.on('response', (_client: Client, status: number, _bytes: number, ms: number) => {
  if (status >= 200 && status < 300) latencies.push(ms)
})
