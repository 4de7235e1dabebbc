// `npm run bench`: the service against its yardsticks, in one run, on this machine.
//
// Builds the service and starts two instances of it (production settings, their own
// database and Redis prefix, logs to files): one serves only GET /auth/me, so its memory
// is that of the hot path; the other serves login, refresh, introspection and the
// gateway's /auth/verify. Two yardstick servers run beside them, a downstream service
// protected by the resource-server plugin, and nginx with auth_request in front of the
// bare server (and, on another port, proxying to it straight), all pinned to core 0.
// autocannon, pinned to core 1, drives each target in short interleaved rounds; the
// medians are printed: requests/s, p50/p99 latency, server RSS and CPU, and the
// service/yardstick ratios. Targets are reported, not asserted.
// Everything it starts is stopped, and its Redis keys and database are removed, whatever
// happens. See docs/benchmarks.md.
import { execFileSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { availableParallelism, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  ARGON2, BENCH_DIST, DB_NAME, PINNING, PRODUCTION_NODE_ARGS, REDIS_PREFIX, ROOT, SERVER_CORE, SERVICE_NODE_ARGS, build, deleteRedisKeys,
  dropDatabase, expectStatus, freePort, load, log, login, refreshPool, register, registerClient, rssKiB, run, sampler,
  serviceEnv, start, startNginx, stop, stopAll, strongSecret, waitForHttp, type Sample
} from './lib.js'
import type { LoadSpec } from './load.js'
import { median, type LoadResult } from './stats.js'

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5)
const DURATION = Number(process.env.BENCH_DURATION ?? 4)
const WARMUP = Number(process.env.BENCH_WARMUP ?? 2)
const ME_CONNECTIONS = 50
const LOGIN_CONNECTIONS = 2
const REFRESH_CONNECTIONS = Number(process.env.BENCH_REFRESH_CONNECTIONS ?? 10)
/** Nothing here may run away: the whole benchmark is abandoned after this. */
const DEADLINE_MS = 10 * 60_000

type Key = 'bare' | 'floor' | 'me' | 'login' | 'refresh' | 'argon2' | 'introspect' | 'downstream' | 'nginxDirect' | 'nginxAuth'

interface Target {
  key: Key
  label: string
  /** The process whose RSS and CPU are reported. */
  proc: string
  connections: number
  /** One measurement of `seconds`, with the measured server's pid sampled throughout. */
  measure: (seconds: number) => Promise<{ load: LoadResult, server: Sample }>
}

interface Row { key: Key, label: string, proc: string, connections: number, rounds: Array<{ load: LoadResult, server: Sample }> }

const started = Date.now()
const workDir = mkdtempSync(join(tmpdir(), 'auth-bench-'))
let cleaning: Promise<void> | undefined

/** Once, however many times it is asked for (a signal and the main path both await it). */
async function cleanup (): Promise<void> {
  cleaning ??= stopEverything()
  await cleaning
}

async function stopEverything (): Promise<void> {
  await stopAll()
  try {
    log(`Redis: deleted ${await deleteRedisKeys()} keys under "${REDIS_PREFIX}"`)
  } catch (err) {
    log(`Redis clean-up failed: ${(err as Error).message}`)
  }
  try {
    await dropDatabase()
    log(`PostgreSQL: dropped database ${DB_NAME}`)
  } catch (err) {
    log(`PostgreSQL clean-up failed: ${(err as Error).message}`)
  }
  if (process.env.BENCH_KEEP_LOGS !== '1') rmSync(workDir, { recursive: true, force: true })
  else log(`kept ${workDir}`)
}

// `on`, not `once`: Ctrl-C reaches this process twice (from the terminal, and relayed by
// tsx), and tsx exits at once on a signal nobody listens to, cutting the clean-up short.
let stopping = false
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) return
    stopping = true
    log(`${signal}: stopping`)
    cleanup().finally(() => process.exit(130))
  })
}

function checkDeadline (): void {
  if (Date.now() - started > DEADLINE_MS) throw new Error('benchmark deadline exceeded')
}

async function measured (pid: number, work: () => Promise<LoadResult>): Promise<{ load: LoadResult, server: Sample }> {
  const s = sampler(pid)
  try {
    const result = await work()
    return { load: result, server: s.stop() }
  } catch (err) {
    s.stop()
    throw err
  }
}

/** Which code was measured: the service is edited while benchmarks run. */
function revision (): string {
  try {
    const git = (args: string[]) => execFileSync('git', args, { cwd: ROOT, encoding: 'utf8' }).trim()
    const dirty = git(['status', '--porcelain', '--untracked-files=no']).split('\n').filter((l) => l !== '').length
    return `${git(['rev-parse', '--short', 'HEAD'])}${dirty > 0 ? ` + ${dirty} modified files` : ''}`
  } catch {
    return 'unknown'
  }
}

function machine (): Record<string, string> {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8')
  const model = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? 'unknown'
  const mhz = /^cpu MHz\s*:\s*(.*)$/m.exec(cpuinfo)?.[1]
  return {
    nproc: String(availableParallelism()),
    cpu: mhz === undefined ? model : `${model} (${Math.round(Number(mhz))} MHz)`,
    memory: `${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
    node: process.version,
    loadavg: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
    revision: revision()
  }
}

function startServer (args: string[], env: NodeJS.ProcessEnv, logFile?: string): ChildProcess {
  return start(process.execPath, args, { core: SERVER_CORE, env, cwd: workDir, logFile })
}

/** A target that is one request under load, measured at the process that answers it. */
function httpTarget (key: Key, label: string, proc: string, pid: number, spec: Omit<LoadSpec, 'durationSec'>): Target {
  return {
    key,
    label,
    proc,
    connections: spec.connections,
    measure: async (s) => await measured(pid, async () => await load({ ...spec, durationSec: s }))
  }
}

interface Instance { name: string, child: ChildProcess, pid: number, url: string, logFile: string, idleRssKiB: number | null }

async function main (): Promise<void> {
  const m = machine()
  log(`machine: ${m.nproc} CPUs, ${m.cpu}, ${m.memory}, Node ${m.node}, load average ${m.loadavg}; code ${m.revision}`)
  log(PINNING ? `servers pinned to core ${SERVER_CORE}, load generator to core 1 (taskset)` : 'taskset or a 2nd core missing: NOT pinned')

  await build()
  await deleteRedisKeys()
  await dropDatabase()

  // ---- servers
  const secret = strongSecret()
  // The first admin, created at start-up: it registers the downstream service's client.
  const admin = { ADMIN_USERNAME: `bench_admin_${randomBytes(4).toString('hex')}`, ADMIN_PASSWORD: randomBytes(24).toString('base64') }
  async function service (name: string): Promise<Instance> {
    const port = await freePort()
    const logFile = join(workDir, `service-${name.slice(1, 2)}.log`)
    // cwd is the scratch directory: no stray .env is read, and the log lands there.
    const child = startServer([...PRODUCTION_NODE_ARGS, ...SERVICE_NODE_ARGS, join(ROOT, 'dist', 'server.js')],
      { ...serviceEnv(port, secret), ...admin }, logFile)
    const url = `http://127.0.0.1:${port}`
    await waitForHttp(child, `${url}/health`)
    return { name, child, pid: child.pid as number, url, logFile, idleRssKiB: rssKiB(child.pid as number) }
  }
  // The first one creates the database and migrates it; the second finds it ready.
  const auth = await service('#2 (login, refresh, introspection, /auth/verify)')
  const me = await service('#1 (/auth/me only)')
  const [barePort, floorPort] = [await freePort(), await freePort()]
  const bare = startServer([join(BENCH_DIST, 'bare-server.js')], { PATH: process.env.PATH, PORT: String(barePort) })
  const floor = startServer([join(BENCH_DIST, 'floor-server.js')], { ...serviceEnv(floorPort, secret) })
  const bareUrl = `http://127.0.0.1:${barePort}/`
  const floorUrl = `http://127.0.0.1:${floorPort}/me`
  await Promise.all([waitForHttp(bare, bareUrl), waitForHttp(floor, floorUrl)])
  for (const i of [auth, me]) {
    log(`service ${i.name} pid ${i.pid} on ${i.url}, RSS ${fmt((i.idleRssKiB ?? NaN) / 1024, 1)} MiB after start-up`)
  }
  log(`bare pid ${bare.pid}, floor pid ${floor.pid}`)
  const svc = auth.url

  // ---- one user, one access token for the hot path (also warms its Redis hash)
  const username = `bench_${randomBytes(4).toString('hex')}`
  const password = randomBytes(15).toString('base64')
  await register(svc, username, password)
  const { access_token: accessToken } = await login(svc, username, password)
  const authz = { authorization: `Bearer ${accessToken}` }
  // Issued by one instance, accepted by the other (shared secret, database and Redis).
  await expectStatus(`${me.url}/auth/me`, authz, 200)
  await expectStatus(floorUrl, authz, 200)
  const loginBody = JSON.stringify({ username, password })
  const json = { 'content-type': 'application/json' }

  // ---- a downstream service with its registered client, and nginx in front of the bare server
  const { access_token: adminAccess } = await login(svc, admin.ADMIN_USERNAME, admin.ADMIN_PASSWORD)
  const client = await registerClient(svc, adminAccess, 'bench downstream')
  const [downstreamPort, gatedPort, directPort] = [await freePort(), await freePort(), await freePort()]
  const downstream = startServer([join(BENCH_DIST, 'downstream-server.js')], {
    ...serviceEnv(downstreamPort, secret), AUTH_URL: svc, AUTH_CLIENT_ID: client.clientId, AUTH_CLIENT_SECRET: client.clientSecret
  }, join(workDir, 'downstream.log'))
  const downstreamUrl = `http://127.0.0.1:${downstreamPort}/me`
  const nginx = await startNginx(join(workDir, 'nginx'), { service: Number(new URL(svc).port), upstream: barePort, gated: gatedPort, direct: directPort })
  const [gatedUrl, directUrl] = [`http://127.0.0.1:${gatedPort}/`, `http://127.0.0.1:${directPort}/`]
  await Promise.all([waitForHttp(downstream, downstreamUrl), waitForHttp(nginx, gatedUrl)])
  log(`downstream pid ${downstream.pid}, nginx pid ${nginx.pid}`)
  await expectStatus(downstreamUrl, authz, 200)
  await expectStatus(gatedUrl, {}, 401)
  await expectStatus(gatedUrl, authz, 200)
  await expectStatus(directUrl, authz, 200)
  const introspection = {
    url: `${svc}/oauth/introspect`,
    headers: {
      authorization: `Basic ${Buffer.from(`${client.clientId}:${client.clientSecret}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded'
    },
    body: `token=${accessToken}`
  }
  // An inactive answer is a 200 too: make sure the measured one is the full answer.
  const answer = await expectStatus(introspection.url, introspection.headers, 200, introspection.body)
  if (JSON.parse(answer).active !== true) throw new Error(`introspection: the token is not active: ${answer}`)

  const get = { method: 'GET', connections: ME_CONNECTIONS } as const
  const targets: Target[] = [
    httpTarget('bare', 'bare Fastify `{ hello: world }`', 'bare server', bare.pid as number, { ...get, url: bareUrl }),
    httpTarget('floor', "floor: the service's token verifier + 1 HMGET", 'floor server', floor.pid as number, { ...get, url: floorUrl, headers: authz }),
    httpTarget('me', 'GET /auth/me', 'service #1', me.pid, { ...get, url: `${me.url}/auth/me`, headers: authz }),
    httpTarget('introspect', 'POST /oauth/introspect (a registered client, warm)', 'service #2', auth.pid,
      { ...introspection, method: 'POST', connections: ME_CONNECTIONS }),
    httpTarget('downstream', 'downstream Fastify route, resource-server plugin (HS256)', 'downstream server', downstream.pid as number,
      { ...get, url: downstreamUrl, headers: authz }),
    httpTarget('nginxDirect', 'nginx proxying straight to the bare server', 'nginx', nginx.pid as number, { ...get, url: directUrl, headers: authz }),
    httpTarget('nginxAuth', 'nginx auth_request /auth/verify, then the bare server', 'nginx', nginx.pid as number, { ...get, url: gatedUrl, headers: authz }),
    httpTarget('login', 'POST /auth/login', 'service #2', auth.pid,
      { url: `${svc}/auth/login`, method: 'POST', headers: json, body: loginBody, connections: LOGIN_CONNECTIONS }),
    {
      key: 'argon2',
      proc: 'argon2 process',
      label: `raw argon2.verify (m=${ARGON2.memoryCost}, t=${ARGON2.timeCost}, p=${ARGON2.parallelism})`,
      connections: LOGIN_CONNECTIONS,
      measure: async (s) => {
        let sample: { stop: () => Sample } | undefined
        const r = await run(process.execPath, [join(BENCH_DIST, 'argon2-rate.js'), JSON.stringify({
          durationSec: s, concurrency: LOGIN_CONNECTIONS, ...ARGON2
        })], { core: SERVER_CORE, timeoutMs: (s + 60) * 1000, onSpawn: (c) => { sample = sampler(c.pid as number) } })
        const server = sample?.stop() as Sample
        if (r.code !== 0) throw new Error(`argon2-rate failed: ${r.stderr}`)
        const result = JSON.parse(r.stdout.trim()) as LoadResult
        // The process has exited by now, so /proc no longer has its CPU time: it measured
        // its own. It is the "server" here, and there is no load generator.
        return { load: { ...result, genCpuPct: NaN }, server: { ...server, cpuPct: result.genCpuPct } }
      }
    },
    {
      key: 'refresh',
      proc: 'service #2',
      label: 'POST /auth/refresh (chained tokens)',
      connections: REFRESH_CONNECTIONS,
      measure: async (s) => {
        // Fresh tokens for every run: one left in flight when a run stops was used by the
        // server, and presenting it again would end its session.
        const pool = await refreshPool(svc, username, password, REFRESH_CONNECTIONS)
        await sleep(200)
        return await measured(auth.pid, async () => await load({
          url: `${svc}/auth/refresh`, method: 'POST', headers: json, connections: REFRESH_CONNECTIONS, durationSec: s, refreshTokens: pool
        }))
      }
    }
  ]

  // ---- warm-up (JIT, pools, caches), not recorded
  for (const t of targets) {
    if (t.key === 'argon2' || WARMUP <= 0) continue
    log(`warm-up ${t.label}, ${WARMUP} s`)
    await t.measure(WARMUP)
  }

  // ---- interleaved rounds; the order rotates so no target always follows the same one
  const rows = new Map<Key, Row>(targets.map((t) => [t.key, { key: t.key, label: t.label, proc: t.proc, connections: t.connections, rounds: [] }]))
  for (let r = 0; r < ROUNDS; r++) {
    const order = targets.map((_t, i) => targets[(i + r) % targets.length])
    for (const t of order) {
      checkDeadline()
      await sleep(500)
      const res = await t.measure(DURATION)
      rows.get(t.key)?.rounds.push(res)
      log(`round ${r + 1}/${ROUNDS} ${t.label}: ${res.load.rps.toFixed(0)} req/s, p50 ${res.load.p50.toFixed(2)} ms, ` +
        `p99 ${res.load.p99.toFixed(2)} ms, RSS ${(res.server.peakRssKiB / 1024).toFixed(0)} MiB, ` +
        `server CPU ${res.server.cpuPct.toFixed(0)} %, load gen CPU ${fmt(res.load.genCpuPct)} %, ` +
        `other CPU on core 0 ${fmt(otherOn(res, 0))} %, on core 1 ${fmt(otherOn(res, 1))} %` +
        (res.load.non2xx + res.load.errors > 0 ? `, non-2xx ${res.load.non2xx}, errors ${res.load.errors}` : ''))
    }
  }

  const instances = []
  for (const i of [me, auth]) {
    const afterRssKiB = rssKiB(i.pid)
    await stop(i.child, 15_000)
    const lines = readFileSync(i.logFile, 'utf8').split('\n').filter((l) => l.length > 0)
    const problems = lines.filter((l) => /"level":(40|50|60)/.test(l))
    instances.push({
      name: i.name,
      idleRssKiB: i.idleRssKiB,
      afterRssKiB,
      logLines: lines.length,
      logBytes: statSync(i.logFile).size,
      logProblems: problems.length,
      logSample: problems.slice(0, 3)
    })
  }
  report(m, [...rows.values()], instances)
}

interface InstanceReport {
  name: string
  idleRssKiB: number | null
  afterRssKiB: number | null
  logLines: number
  logBytes: number
  logProblems: number
  logSample: string[]
}

/**
 * CPU on a core that was neither the measured server (core 0) nor the load generator
 * (core 1): other processes' work, which makes the numbers noisy, and Redis or PostgreSQL
 * when the scheduler put them there.
 */
function otherOn (res: { load: LoadResult, server: Sample }, core: number): number {
  const busy = res.server.coreBusyPct[core] ?? NaN
  if (!PINNING) return NaN
  const ours = core === 0 ? res.server.cpuPct : (Number.isFinite(res.load.genCpuPct) ? res.load.genCpuPct : 0)
  return Math.max(0, busy - ours)
}

function fmt (n: number, digits = 0): string {
  return Number.isFinite(n) ? n.toFixed(digits) : 'n/a'
}

function report (m: Record<string, string>, rows: Row[], instances: InstanceReport[]): void {
  const summary = Object.fromEntries(rows.map((row) => {
    const loads = row.rounds.map((x) => x.load)
    const servers = row.rounds.map((x) => x.server)
    return [row.key, {
      label: row.label,
      proc: row.proc,
      connections: row.connections,
      rps: median(loads.map((l) => l.rps)),
      // Requests per CPU-second of the server: what it would do with its core to itself.
      // Much steadier than req/s when other work shares the cores.
      rpsPerCpu: median(row.rounds.map((r) => r.load.rps / (r.server.cpuPct / 100))),
      p50: median(loads.map((l) => l.p50)),
      p99: median(loads.map((l) => l.p99)),
      rssPeakMiB: Math.max(...servers.map((s) => s.peakRssKiB)) / 1024,
      serverCpuPct: median(servers.map((s) => s.cpuPct)),
      genCpuPct: median(loads.map((l) => l.genCpuPct)),
      other0: median(row.rounds.map((r) => otherOn(r, 0))),
      other1: median(row.rounds.map((r) => otherOn(r, 1))),
      failures: loads.reduce((a, l) => a + l.non2xx + l.errors, 0),
      perRoundRps: loads.map((l) => Math.round(l.rps))
    }]
  })) as Record<Key, { label: string, proc: string, connections: number, rps: number, rpsPerCpu: number, p50: number, p99: number, rssPeakMiB: number, serverCpuPct: number, genCpuPct: number, other0: number, other1: number, failures: number, perRoundRps: number[] }>

  const out: string[] = []
  out.push('')
  out.push(`Machine: ${m.nproc} CPUs, ${m.cpu}, ${m.memory} RAM, Node ${m.node}; load average at start ${m.loadavg}`)
  out.push(`Code: ${m.revision}${SERVICE_NODE_ARGS.length > 0 ? `; service node flags: ${SERVICE_NODE_ARGS.join(' ')}` : ''}`)
  out.push(`${ROUNDS} rounds x ${DURATION} s per target, interleaved; medians over rounds (RSS: peak over rounds). ` +
    `${PINNING ? 'Servers on core 0, load generator on core 1.' : 'Not pinned.'}`)
  out.push('')
  out.push('| target | conns | req/s | p50 ms | p99 ms | server process | RSS peak MiB | server CPU % | req per server CPU-s | load gen CPU % | other CPU % core 0 / 1 | non-2xx + errors | req/s per round |')
  out.push('| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |')
  for (const key of ['me', 'introspect', 'floor', 'downstream', 'bare', 'nginxDirect', 'nginxAuth', 'login', 'argon2', 'refresh'] as Key[]) {
    const s = summary[key]
    out.push(`| ${s.label} | ${s.connections} | ${fmt(s.rps)} | ${fmt(s.p50, 2)} | ${fmt(s.p99, 2)} | ${s.proc} | ${fmt(s.rssPeakMiB, 1)} | ` +
      `${fmt(s.serverCpuPct)} | ${fmt(s.rpsPerCpu)} | ${fmt(s.genCpuPct)} | ${fmt(s.other0)} / ${fmt(s.other1)} | ${s.failures} | ${s.perRoundRps.join(' / ')} |`)
  }
  const ratio = (a: Key, b: Key) => ({
    rps: summary[a].rps / summary[b].rps,
    perCpu: summary[a].rpsPerCpu / summary[b].rpsPerCpu
  })
  const meFloor = ratio('me', 'floor')
  const meBare = ratio('me', 'bare')
  const loginArgon = ratio('login', 'argon2')
  const introspectMe = ratio('introspect', 'me')
  const downstreamFloor = ratio('downstream', 'floor')
  const nginxAuthDirect = ratio('nginxAuth', 'nginxDirect')
  const verdict = (r: { rps: number, perCpu: number }, target: number) =>
    `>= ${target.toFixed(2)}: ${r.rps >= target ? 'met' : 'MISSED'} (req/s), ${r.perCpu >= target ? 'met' : 'MISSED'} (per CPU-s)`
  out.push('')
  out.push('| ratio | req/s | req per server CPU-s | target |')
  out.push('| --- | ---: | ---: | --- |')
  out.push(`| /auth/me / JWT+Redis floor | ${fmt(meFloor.rps, 3)} | ${fmt(meFloor.perCpu, 3)} | ${verdict(meFloor, 0.9)} |`)
  out.push(`| /auth/me / bare Fastify | ${fmt(meBare.rps, 3)} | ${fmt(meBare.perCpu, 3)} | (none) |`)
  out.push(`| login / raw argon2id rate | ${fmt(loginArgon.rps, 3)} | ${fmt(loginArgon.perCpu, 3)} | ${verdict(loginArgon, 0.9)} |`)
  out.push(`| introspection / /auth/me | ${fmt(introspectMe.rps, 3)} | ${fmt(introspectMe.perCpu, 3)} | ${verdict(introspectMe, 0.8)} |`)
  out.push(`| resource-server plugin route / JWT+Redis floor | ${fmt(downstreamFloor.rps, 3)} | ${fmt(downstreamFloor.perCpu, 3)} | ${verdict(downstreamFloor, 0.9)} |`)
  // Per CPU-s of nginx alone would leave out the check's own CPU, spent in service #2.
  out.push(`| nginx auth_request / nginx straight | ${fmt(nginxAuthDirect.rps, 3)} | n/a | (none) |`)
  out.push('')
  out.push('| target | measured | limit |')
  out.push('| --- | ---: | --- |')
  out.push(`| /auth/me RSS peak (service #1) | ${fmt(summary.me.rssPeakMiB, 1)} MiB | <= 150 MiB: ${summary.me.rssPeakMiB <= 150 ? 'met' : 'MISSED'} |`)
  out.push(`| /auth/me p99 at 50 connections | ${fmt(summary.me.p99, 2)} ms | <= 10 ms: ${summary.me.p99 <= 10 ? 'met' : 'MISSED'} |`)
  out.push('')
  for (const i of instances) {
    out.push(`Service ${i.name}: RSS ${fmt((i.idleRssKiB ?? NaN) / 1024, 1)} MiB after start-up, ` +
      `${fmt((i.afterRssKiB ?? NaN) / 1024, 1)} MiB after the run; ` +
      `log ${i.logLines} lines, ${fmt(i.logBytes / 2 ** 20, 1)} MiB, ${i.logProblems} at warn or above`)
    for (const l of i.logSample) out.push(`  ${l.slice(0, 300)}`)
  }
  out.push(`Load average at the end ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}; ` +
    `total time ${fmt((Date.now() - started) / 1000)} s`)
  process.stdout.write(out.join('\n') + '\n')

  const jsonOut = process.env.BENCH_JSON
  if (jsonOut !== undefined) {
    writeFileSync(jsonOut, JSON.stringify({ machine: m, rounds: ROUNDS, durationSec: DURATION, summary, ratios: { meFloor, meBare, loginArgon, introspectMe, downstreamFloor, nginxAuthDirect }, instances }, null, 2))
    log(`results written to ${jsonOut}`)
  }
}

let failed = false
try {
  await main()
} catch (err) {
  failed = true
  log(`FAILED: ${(err as Error).stack ?? String(err)}`)
} finally {
  await cleanup()
}
process.exit(failed ? 1 : 0)
