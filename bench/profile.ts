// `npx tsx bench/profile.ts`: CPU profile of the service under GET /auth/me load (50
// connections), the same set-up as `npm run bench` (production settings, pinned cores),
// then a summary of where the time goes. `npx tsx bench/profile.ts some.cpuprofile` only
// summarises an existing profile. BENCH_PROFILE_TARGET=floor profiles the floor yardstick.
import { randomBytes } from 'node:crypto'
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { summarise, type CpuProfile } from './cpuprofile.js'
import {
  BENCH_DIST, PRODUCTION_NODE_ARGS, ROOT, SERVER_CORE, build, deleteRedisKeys, dropDatabase, expectStatus, freePort, load,
  log, login, register, rssKiB, serviceEnv, start, stop, stopAll, strongSecret, waitForHttp
} from './lib.js'

const SECONDS = Number(process.env.BENCH_PROFILE_SECONDS ?? 10)
const TARGET = process.env.BENCH_PROFILE_TARGET === 'floor' ? 'floor' : 'service'

async function profile (workDir: string): Promise<{ file: string, window: { from: number, to: number } }> {
  await build()
  await deleteRedisKeys()
  await dropDatabase()
  const [servicePort, floorPort] = [await freePort(), await freePort()]
  const env = serviceEnv(servicePort, strongSecret())
  const svc = `http://127.0.0.1:${servicePort}`
  const floorUrl = `http://127.0.0.1:${floorPort}/me`
  const prof = ['--cpu-prof', `--cpu-prof-dir=${workDir}`]
  const service = start(process.execPath, [...(TARGET === 'service' ? prof : []), ...PRODUCTION_NODE_ARGS, join(ROOT, 'dist', 'server.js')],
    { core: SERVER_CORE, env, cwd: workDir, logFile: join(workDir, 'service.log') })
  const floor = start(process.execPath, [...(TARGET === 'floor' ? prof : []), join(BENCH_DIST, 'floor-server.js')],
    { core: SERVER_CORE, env: { ...env, PORT: String(floorPort) }, cwd: workDir })
  await Promise.all([waitForHttp(service, `${svc}/health`), waitForHttp(floor, floorUrl)])

  const username = `bench_${randomBytes(4).toString('hex')}`
  const password = randomBytes(15).toString('base64')
  await register(svc, username, password)
  const { access_token: token } = await login(svc, username, password)
  const headers = { authorization: `Bearer ${token}` }
  const url = TARGET === 'service' ? `${svc}/auth/me` : floorUrl
  await expectStatus(url, headers, 200)
  const pid = (TARGET === 'service' ? service : floor).pid as number
  log(`${TARGET} (pid ${pid}) idle RSS ${((rssKiB(pid) ?? 0) / 1024).toFixed(1)} MiB; warm-up 3 s, then ${SECONDS} s profiled`)
  await load({ url, method: 'GET', headers, connections: 50, durationSec: 3 })
  await sleep(300)
  const from = Number(process.hrtime.bigint() / 1000n)
  const r = await load({ url, method: 'GET', headers, connections: 50, durationSec: SECONDS })
  const to = Number(process.hrtime.bigint() / 1000n)
  log(`under profiling: ${r.rps.toFixed(0)} req/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, ` +
    `RSS after ${((rssKiB(pid) ?? 0) / 1024).toFixed(1)} MiB`)
  // The profile is written when the process exits normally (SIGTERM: graceful close).
  await stop(service, 20_000)
  await stop(floor, 20_000)
  const file = readdirSync(workDir).find((f) => f.endsWith('.cpuprofile'))
  if (file === undefined) throw new Error('no .cpuprofile written')
  const kept = join(tmpdir(), `auth-bench-${TARGET}-me.cpuprofile`)
  copyFileSync(join(workDir, file), kept)
  return { file: kept, window: { from, to } }
}

let failed = false
const given = process.argv[2]
const workDir = mkdtempSync(join(tmpdir(), 'auth-bench-prof-'))
let cleaning: Promise<void> | undefined

/** Once, however many times it is asked for (a signal and the main path both await it). */
async function cleanup (): Promise<void> {
  cleaning ??= (async () => {
    await stopAll()
    if (given === undefined) {
      await deleteRedisKeys().catch((err: Error) => log(`Redis clean-up failed: ${err.message}`))
      await dropDatabase().catch((err: Error) => log(`PostgreSQL clean-up failed: ${err.message}`))
    }
    rmSync(workDir, { recursive: true, force: true })
  })()
  await cleaning
}

// `on`, not `once`: Ctrl-C reaches this process twice (from the terminal, and relayed by
// tsx), and tsx exits at once on a signal nobody listens to, cutting the clean-up short.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    cleanup().finally(() => process.exit(130))
  })
}
try {
  const { file, window } = given !== undefined ? { file: given, window: undefined } : await profile(workDir)
  log(`profile: ${file}`)
  process.stdout.write(summarise(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, 25, window) + '\n')
} catch (err) {
  failed = true
  log(`FAILED: ${(err as Error).stack ?? String(err)}`)
} finally {
  await cleanup()
}
process.exit(failed ? 1 : 0)
