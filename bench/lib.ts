// Shared by run.ts and profile.ts: building, child processes (pinned to a core, always
// stopped), /proc sampling, the service's production environment, nginx with the
// examples' configuration, and clean-up of the benchmark's own database and Redis keys.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, openSync, closeSync, readFileSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { availableParallelism } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import { Redis } from 'ioredis'
import type { LoadResult } from './stats.js'
import type { LoadSpec } from './load.js'
import { findNginx, nginxArgs, nginxConfig } from '../test/support/gateway-config.js'

export const ROOT = dirname(dirname(fileURLToPath(import.meta.url)))
/** Compiled benchmark children (bench/tsconfig.json), plain `node`, no loader. */
export const BENCH_DIST = join(ROOT, 'dist', 'bench')

export const DB_NAME = process.env.BENCH_DATABASE ?? 'auth_bench_load'
const PG_ADMIN_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
export const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379'
export const REDIS_PREFIX = process.env.BENCH_REDIS_PREFIX ?? 'bench:'
export const ARGON2 = {
  memoryCost: Number(process.env.ARGON2_MEMORY_COST ?? 19456),
  timeCost: Number(process.env.ARGON2_TIME_COST ?? 2),
  parallelism: Number(process.env.ARGON2_PARALLELISM ?? 1)
}

/**
 * The node flags production runs the service with: those of `npm start` (package.json),
 * which the Dockerfile's CMD repeats (test/integration/deploy.test.ts). The benchmark runs what
 * production runs.
 */
export const PRODUCTION_NODE_ARGS: string[] = productionNodeArgs()

function productionNodeArgs (): string[] {
  const start = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).scripts.start as string
  const m = /\bnode((?: --[\w-]+(?:=\S+)?)*) dist\/server\.js/.exec(start)
  if (m === null) throw new Error('package.json scripts.start does not run "node [flags] dist/server.js"')
  return m[1].split(' ').filter((a) => a !== '')
}

/** Extra node flags for the service only (experiments, e.g. "--max-semi-space-size=4"). */
export const SERVICE_NODE_ARGS = (process.env.BENCH_SERVICE_NODE_ARGS ?? '').split(' ').filter((a) => a !== '')

if (!/^bench[A-Za-z0-9:_.-]*$/.test(REDIS_PREFIX)) {
  // The clean-up deletes everything under this prefix: never let it be something shared.
  throw new Error(`BENCH_REDIS_PREFIX must start with "bench" (got ${JSON.stringify(REDIS_PREFIX)})`)
}

export function log (msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`)
}

// ---------------------------------------------------------------- CPU pinning

const TASKSET = ['/usr/bin/taskset', '/bin/taskset'].find((p) => existsSync(p))
/** Servers on core 0, the load generator on core 1: only when both exist and taskset does. */
export const PINNING = TASKSET !== undefined && availableParallelism() >= 2

export const SERVER_CORE = '0'
const LOADGEN_CORE = '1'

/** taskset execs the command, so the child's pid is the pinned process's own. */
function pinned (core: string, cmd: string, args: string[]): [string, string[]] {
  return PINNING ? [TASKSET as string, ['-c', core, cmd, ...args]] : [cmd, args]
}

// ---------------------------------------------------------------- child processes

const children = new Set<ChildProcess>()

export interface StartOptions {
  core?: string
  env?: NodeJS.ProcessEnv
  cwd?: string
  /** stdout and stderr go to this file (servers log here, never to the terminal). */
  logFile?: string
}

/** Starts a long-lived child (a server). stopAll() ends it whatever happens. */
export function start (cmd: string, args: string[], opts: StartOptions = {}): ChildProcess {
  const [c, a] = opts.core === undefined ? [cmd, args] : pinned(opts.core, cmd, args)
  const fd = opts.logFile === undefined ? 'ignore' : openSync(opts.logFile, 'a')
  const child = spawn(c, a, { cwd: opts.cwd ?? ROOT, env: opts.env ?? process.env, stdio: ['ignore', fd, fd] })
  if (typeof fd === 'number') closeSync(fd)
  children.add(child)
  child.once('exit', () => children.delete(child))
  return child
}

export interface RunResult { code: number | null, stdout: string, stderr: string }

/** Runs a child to completion, killed after timeoutMs. */
export async function run (cmd: string, args: string[],
  opts: StartOptions & { timeoutMs: number, onSpawn?: (child: ChildProcess) => void }): Promise<RunResult> {
  const [c, a] = opts.core === undefined ? [cmd, args] : pinned(opts.core, cmd, args)
  const child = spawn(c, a, { cwd: opts.cwd ?? ROOT, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] })
  children.add(child)
  opts.onSpawn?.(child)
  let stdout = ''
  let stderr = ''
  child.stdout?.setEncoding('utf8').on('data', (d: string) => { stdout += d })
  child.stderr?.setEncoding('utf8').on('data', (d: string) => { stderr += d })
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs)
  const code = await new Promise<number | null>((resolve) => {
    child.once('error', (err) => { stderr += String(err); resolve(null) })
    child.once('close', (c) => resolve(c))
  })
  clearTimeout(timer)
  children.delete(child)
  return { code, stdout, stderr }
}

/** SIGTERM, then SIGKILL after graceMs; resolves when the process has exited. */
export async function stop (child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
  await exited
  clearTimeout(timer)
}

export async function stopAll (): Promise<void> {
  await Promise.all([...children].map(async (c) => await stop(c)))
}

/** Last resort when the orchestrator itself is exiting: kill by pid, synchronously. */
process.on('exit', () => {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  }
})

// ---------------------------------------------------------------- build

export async function build (): Promise<void> {
  log('npm run build (the service, to dist/)')
  const b = await run('npm', ['run', 'build'], { timeoutMs: 240_000 })
  if (b.code !== 0) throw new Error(`npm run build failed:\n${b.stdout}${b.stderr}`)
  log('compiling bench/ children (bench/tsconfig.json, to dist/bench/)')
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')
  const c = await run(process.execPath, [tsc, '-p', join(ROOT, 'bench', 'tsconfig.json')], { timeoutMs: 240_000 })
  if (c.code !== 0) throw new Error(`compiling bench/ failed:\n${c.stdout}${c.stderr}`)
}

// ---------------------------------------------------------------- /proc

export function rssKiB (pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m === null ? null : Number(m[1])
  } catch {
    return null
  }
}

let clkTck = 100
try {
  clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
} catch {}

/** user + system CPU seconds of a process, all its threads included. */
function cpuSeconds (pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after "(comm)": state is the 3rd field, utime the 14th, stime the 15th.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(f[11]) + Number(f[12])) / clkTck
  } catch {
    return null
  }
}

/** Busy (non-idle, non-iowait) jiffies per CPU since boot, from /proc/stat. */
function coreBusy (): number[] {
  try {
    return readFileSync('/proc/stat', 'utf8').split('\n')
      .filter((l) => /^cpu\d+ /.test(l))
      .map((l) => {
        const f = l.trim().split(/\s+/).slice(1).map(Number)
        // user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
        return f.slice(0, 8).reduce((a, b) => a + b, 0) - f[3] - f[4]
      })
  } catch {
    return []
  }
}

export interface Sample {
  peakRssKiB: number
  lastRssKiB: number
  /** The sampled process's CPU, % of one core. */
  cpuPct: number
  /** How busy each core was, % (everything on it: ours, Redis, PostgreSQL, other work). */
  coreBusyPct: number[]
}

/** Samples VmRSS every intervalMs (bounded by stop()); CPU % of one core over the span. */
export function sampler (pid: number, intervalMs = 200): { stop: () => Sample } {
  let peak = rssKiB(pid) ?? 0
  let last = peak
  const cpu0 = cpuSeconds(pid) ?? 0
  const busy0 = coreBusy()
  const t0 = performance.now()
  const timer = setInterval(() => {
    const r = rssKiB(pid)
    if (r !== null) {
      last = r
      if (r > peak) peak = r
    }
  }, intervalMs)
  return {
    stop () {
      clearInterval(timer)
      const r = rssKiB(pid)
      if (r !== null) {
        last = r
        if (r > peak) peak = r
      }
      const cpu = (cpuSeconds(pid) ?? cpu0) - cpu0
      const seconds = (performance.now() - t0) / 1000
      const busy = coreBusy().map((b, i) => ((b - (busy0[i] ?? b)) / clkTck / seconds) * 100)
      return { peakRssKiB: peak, lastRssKiB: last, cpuPct: (cpu / seconds) * 100, coreBusyPct: busy }
    }
  }
}

// ---------------------------------------------------------------- network

export { freePort } from '../lib/free-port.js'

/** Polls until the server answers anything on `path` (bounded), or its process exits. */
export async function waitForHttp (child: ChildProcess, url: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${url}: the server exited (${child.exitCode ?? child.signalCode}) before answering`)
    }
    try {
      await fetch(url, { signal: AbortSignal.timeout(1000) })
      return
    } catch {}
    await sleep(100)
  }
  throw new Error(`${url}: no answer within ${timeoutMs} ms`)
}

// ---------------------------------------------------------------- the service

/** Production settings: what the issue asks for, plus rate limits a benchmark must lift. */
export function serviceEnv (port: number, jwtSecret: string): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    NODE_ENV: 'production',
    HOST: '127.0.0.1',
    PORT: String(port),
    DATABASE_URL: `postgres://postgres@127.0.0.1:5432/${DB_NAME}`,
    REDIS_URL,
    REDIS_KEY_PREFIX: REDIS_PREFIX,
    JWT_SECRET: jwtSecret,
    // Required in production; the same for both instances, as a deployment's would be.
    MFA_ENCRYPTION_KEY: createHash('sha256').update(`mfa ${jwtSecret}`).digest('base64'),
    LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'info',
    // One client IP logs in thousands of times a minute here: lift the per-IP limits.
    LOGIN_RATE_LIMIT: '100000000',
    REGISTER_RATE_LIMIT: '100000000',
    // Each connection chains refreshes of one session as fast as it can: lift the per-session limit.
    REFRESH_RATE_LIMIT: '100000000',
    ARGON2_MEMORY_COST: String(ARGON2.memoryCost),
    ARGON2_TIME_COST: String(ARGON2.timeCost),
    ARGON2_PARALLELISM: String(ARGON2.parallelism),
    // Allocator and thread-pool knobs pass through, for experiments on memory.
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => /^(MALLOC_|UV_THREADPOOL_SIZE$)/.test(k)))
  }
}

export function strongSecret (): string {
  return randomBytes(48).toString('base64')
}

export interface TokenPair { access_token: string, refresh_token: string }

async function postJson (url: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number, json: any }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { ...headers, 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000)
  })
  return { status: res.status, json: await res.json().catch(() => null) }
}

export async function register (base: string, username: string, password: string): Promise<void> {
  const r = await postJson(`${base}/auth/register`, { username, password })
  if (r.status !== 201) throw new Error(`register: ${r.status} ${JSON.stringify(r.json)}`)
}

export async function login (base: string, username: string, password: string): Promise<TokenPair> {
  const r = await postJson(`${base}/auth/login`, { username, password })
  if (r.status !== 200) throw new Error(`login: ${r.status} ${JSON.stringify(r.json)}`)
  return r.json as TokenPair
}

/**
 * A client registered by an admin (POST /clients): the credentials a downstream service
 * introspects with.
 */
export async function registerClient (base: string, adminAccess: string, name: string): Promise<{ clientId: string, clientSecret: string }> {
  const r = await postJson(`${base}/clients`, { name }, { authorization: `Bearer ${adminAccess}` })
  if (r.status !== 201) throw new Error(`register a client: ${r.status} ${JSON.stringify(r.json)}`)
  return r.json
}

/** n fresh refresh tokens (n logins, two at a time: not part of any measurement). */
export async function refreshPool (base: string, username: string, password: string, n: number): Promise<string[]> {
  const out: string[] = []
  for (let i = 0; i < n; i += 2) {
    const pairs = await Promise.all(Array.from({ length: Math.min(2, n - i) }, async () => await login(base, username, password)))
    out.push(...pairs.map((p) => p.refresh_token))
  }
  return out
}

/** A GET (a POST with `body`) that must answer `status`; the body it answered. */
export async function expectStatus (url: string, headers: Record<string, string>, status: number, body?: string): Promise<string> {
  const method = body === undefined ? 'GET' : 'POST'
  const res = await fetch(url, { method, headers, body, signal: AbortSignal.timeout(10_000) })
  const text = await res.text()
  if (res.status !== status) throw new Error(`${method} ${url}: expected ${status}, got ${res.status} ${text}`)
  return text
}

// ---------------------------------------------------------------- nginx

/**
 * Debian's nginx, from a directory of its own and pinned with the servers, running
 * examples/nginx/auth.conf as the gateway tests do (auth_request to the service's
 * /auth/verify) on `ports.gated`, and beside it a server on `ports.direct` that proxies
 * to the same upstream without asking anyone. One process (`master_process off`): the
 * pid that is sampled is the one that serves, and a SIGKILL leaves no worker behind.
 * Requests are not logged: the disk is not what is measured.
 */
export async function startNginx (dir: string, ports: { service: number, upstream: number, gated: number, direct: number }): Promise<ChildProcess> {
  await mkdir(dir, { recursive: true })
  const conf = join(dir, 'nginx.conf')
  // `api` is the upstream block of examples/nginx/auth.conf: the same keep-alive pool.
  const direct = `  server {
    listen 127.0.0.1:${ports.direct};
    location / {
      proxy_pass http://api;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
`
  await writeFile(conf, await nginxConfig(dir, { listen: ports.gated, auth: ports.service, upstream: ports.upstream }, { accessLog: false, extra: direct }))
  return start(findNginx(), nginxArgs(dir, conf, ' master_process off;'), { core: SERVER_CORE, logFile: join(dir, 'nginx.out') })
}

// ---------------------------------------------------------------- load

/** One autocannon run in its own process, on the load generator's core. */
export async function load (spec: LoadSpec): Promise<LoadResult> {
  const r = await run(process.execPath, [join(BENCH_DIST, 'load.js'), JSON.stringify(spec)],
    { core: LOADGEN_CORE, timeoutMs: (spec.durationSec + 60) * 1000 })
  if (r.code !== 0) throw new Error(`load generator failed (${r.code}): ${r.stderr.trim()}`)
  return JSON.parse(r.stdout.trim().split('\n').pop() as string) as LoadResult
}

// ---------------------------------------------------------------- clean-up

export async function dropDatabase (): Promise<void> {
  const client = new pg.Client({ connectionString: PG_ADMIN_URL, connectionTimeoutMillis: 5000 })
  await client.connect()
  try {
    await client.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(DB_NAME)} WITH (FORCE)`)
  } finally {
    await client.end()
  }
}

/** Deletes this benchmark's keys (SCAN + DEL on its prefix; never FLUSHALL: Redis is shared). */
export async function deleteRedisKeys (): Promise<number> {
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 3000, retryStrategy: () => null })
  // Failures surface through connect() and the commands; no unhandled 'error' events.
  redis.on('error', () => {})
  await redis.connect()
  let deleted = 0
  try {
    let cursor = '0'
    // Bounded: SCAN visits every key once, COUNT 1000 a step; 100 000 steps is 10^8 keys.
    for (let i = 0; i < 100_000; i++) {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${REDIS_PREFIX}*`, 'COUNT', 1000)
      if (keys.length > 0) deleted += await redis.del(...keys)
      cursor = next
      if (cursor === '0') break
    }
  } finally {
    redis.disconnect()
  }
  return deleted
}
