// Support for the fault tests (not itself a test: tap runs *.test.ts only).
//
// A TCP proxy on 127.0.0.1 that a fault test puts between the app and PostgreSQL or
// Redis, to cut the dependency for real without touching the machine's shared services:
//
// - blackhole(): bytes stop flowing both ways, connections stay open, new ones are
//   accepted and held (a partition, a dead host, a stuck load balancer). Nothing is
//   lost: as with TCP across a healed partition, what was sent is delivered on restore().
// - drop(): every connection is reset, and new ones are reset at once (a crash, a
//   restart, a firewall that rejects).
// - restore(): forwarding resumes.
import type { FastifyInstance } from 'fastify'
import { createServer, connect, type Socket, type AddressInfo } from 'node:net'

export type ProxyMode = 'forward' | 'blackhole' | 'drop'

export interface TcpProxy {
  port: number
  /** `url` with its port replaced by the proxy's. */
  via: (url: string) => string
  blackhole: () => void
  drop: () => void
  restore: () => void
  /** Connections currently open through the proxy. */
  connections: () => number
  close: () => Promise<void>
}

interface Pair { client: Socket, upstream: Socket }

export async function tcpProxy (t: { teardown: (fn: () => unknown) => void }, target: { host?: string, port: number }): Promise<TcpProxy> {
  let mode: ProxyMode = 'forward'
  const pairs = new Set<Pair>()

  const hold = (p: Pair) => { p.client.pause(); p.upstream.pause() }
  const flow = (p: Pair) => { p.client.resume(); p.upstream.resume() }
  const reset = (p: Pair) => {
    pairs.delete(p)
    // An RST, as a dead server would send. Not once the socket has begun its own orderly
    // shutdown (the app's end arrived first): resetting a socket with a shutdown pending
    // leaves libuv a request that never completes, and Node then spins at 100 % CPU on
    // exit instead of exiting (the file times out).
    if (p.client.writableEnded) p.client.destroy()
    else p.client.resetAndDestroy()
    p.upstream.destroy()
  }

  const server = createServer({ pauseOnConnect: true }, (client) => {
    client.on('error', () => {})
    if (mode === 'drop') {
      client.resetAndDestroy()
      return
    }
    const upstream = connect({ host: target.host ?? '127.0.0.1', port: target.port })
    upstream.on('error', () => {})
    // Paused before the 'data' listeners below, which would otherwise start the flow.
    client.pause()
    upstream.pause()
    const pair = { client, upstream }
    pairs.add(pair)
    // Written by hand rather than with pipe(): pause() must really stop the flow.
    client.on('data', (chunk) => upstream.write(chunk))
    upstream.on('data', (chunk) => client.write(chunk))
    client.on('close', () => { pairs.delete(pair); upstream.destroy() })
    upstream.on('close', () => { pairs.delete(pair); client.destroy() })
    if (mode === 'forward') flow(pair)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port

  const proxy: TcpProxy = {
    port,
    via (url: string) {
      const u = new URL(url)
      u.hostname = '127.0.0.1'
      u.port = String(port)
      return u.toString()
    },
    blackhole () {
      mode = 'blackhole'
      for (const p of pairs) hold(p)
    },
    drop () {
      mode = 'drop'
      for (const p of [...pairs]) reset(p)
    },
    restore () {
      mode = 'forward'
      for (const p of pairs) flow(p)
    },
    connections: () => pairs.size,
    async close () {
      for (const p of [...pairs]) reset(p)
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
  t.teardown(() => proxy.close())
  return proxy
}

/** Runs `fn` and says how long it took (ms). */
export async function timed<T> (fn: () => Promise<T>): Promise<{ value: T, ms: number }> {
  const started = performance.now()
  const value = await fn()
  return { value, ms: performance.now() - started }
}

/**
 * Polls `check` every 50 ms until it holds or `limitMs` passes; returns the time it took
 * (ms), or Infinity if it never held. A check that throws counts as not holding yet.
 */
export async function waitFor (check: () => Promise<boolean>, limitMs: number): Promise<number> {
  const started = performance.now()
  while (performance.now() - started < limitMs) {
    if (await check().catch(() => false)) return performance.now() - started
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return Infinity
}

/** The session id inside an access token. */
export function sidOf (access: string): string {
  return JSON.parse(Buffer.from(access.split('.')[1], 'base64url').toString()).sid
}

/** The current value of a counter of the app's registry (summed over the given labels). */
export async function counter (metric: { get: () => Promise<{ values: Array<{ value: number, labels: Record<string, unknown> }> }> }, labels: Record<string, string> = {}): Promise<number> {
  const { values } = await metric.get()
  return values
    .filter((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))
    .reduce((sum, v) => sum + v.value, 0)
}

export type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE'
export interface CallOptions { token?: string, payload?: unknown }
export interface Call { status: number, ms: number, body: any }

/** One request through inject, timed, with an optional bearer token. */
export async function call (app: FastifyInstance, method: Method, url: string, opts: CallOptions = {}): Promise<Call> {
  const { value: res, ms } = await timed(() => app.inject({
    method,
    url,
    headers: opts.token === undefined ? {} : { authorization: `Bearer ${opts.token}` },
    payload: opts.payload as any
  }))
  return { status: res.statusCode, ms, body: res.body === '' ? null : res.json() }
}
