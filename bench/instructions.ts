// `npm run bench:instructions`: CPU instructions per warm GET /auth/me, for the service and
// the floor, counted by valgrind's callgrind. Unlike timings, the counts repeat within ~3 %
// on a busy machine, so they tell small changes apart (docs/benchmarks.md).
//
// Each server runs under callgrind with instrumentation off (`node --single-threaded`, so
// compilation and GC happen on the counted thread, as they would on a one-core box), gets
// BENCH_INSTR_WARMUP requests, then instrumentation is switched on for BENCH_INSTR_REQUESTS
// requests, one connection, one request at a time. A second, uninstrumented instance of the
// service does the registration and login (argon2 under valgrind would take minutes).
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  BENCH_DIST, PRODUCTION_NODE_ARGS, ROOT, build, deleteRedisKeys, dropDatabase, freePort, log, login,
  register, serviceEnv, start, stop, stopAll, strongSecret, waitForHttp
} from './lib.js'

const REQUESTS = Number(process.env.BENCH_INSTR_REQUESTS ?? 5000)
const WARMUP = Number(process.env.BENCH_INSTR_WARMUP ?? 8000)
const AUTOCANNON = join(ROOT, 'node_modules', '.bin', 'autocannon')

/** `amount` requests, one connection; a few non-2xx (a Redis timeout under valgrind) are tolerated. */
function drive (url: string, headers: Record<string, string>, amount: number): void {
  const out = execFileSync(AUTOCANNON, ['-c', '1', '-a', String(amount), '-j',
    ...Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}=${v}`]), url],
  { encoding: 'utf8', maxBuffer: 1e8, stdio: ['ignore', 'pipe', 'ignore'], timeout: 600_000 })
  const result = JSON.parse(out) as { non2xx: number, '2xx': number }
  if (result.non2xx > amount / 500) throw new Error(`${url}: ${result['2xx']} ok, ${result.non2xx} non-2xx`)
}

async function main (workDir: string): Promise<void> {
  try {
    execFileSync('valgrind', ['--version'], { stdio: 'ignore' })
  } catch {
    throw new Error('valgrind is not installed (apt-get install valgrind)')
  }
  await build()
  await deleteRedisKeys()
  await dropDatabase()
  const secret = strongSecret()
  const server = join(ROOT, 'dist', 'server.js')
  const helperPort = await freePort()
  const helper = start(process.execPath, [...PRODUCTION_NODE_ARGS, server],
    { env: serviceEnv(helperPort, secret), cwd: workDir, logFile: join(workDir, 'helper.log') })
  const base = `http://127.0.0.1:${helperPort}`
  await waitForHttp(helper, `${base}/health`)
  const username = `bench_${randomBytes(4).toString('hex')}`
  const password = randomBytes(15).toString('base64')
  await register(base, username, password)
  const { access_token: token } = await login(base, username, password)
  const headers = { authorization: `Bearer ${token}` }

  const targets = [
    { name: 'floor (JWT verify + 1 HMGET)', script: join(BENCH_DIST, 'floor-server.js'), args: [], path: '/me' },
    { name: 'GET /auth/me', script: server, args: PRODUCTION_NODE_ARGS, path: '/auth/me' }
  ]
  const counts: number[] = []
  for (const target of targets) {
    const port = await freePort()
    const env = serviceEnv(port, secret)
    const out = join(workDir, `callgrind.${counts.length}.out`)
    const child = start('valgrind', ['--tool=callgrind', '--instr-atstart=no', `--callgrind-out-file=${out}`,
      process.execPath, '--single-threaded', ...target.args, target.script],
    { env, cwd: workDir, logFile: join(workDir, `target.${counts.length}.log`) })
    const url = `http://127.0.0.1:${port}${target.path}`
    await waitForHttp(child, url, 300_000)
    log(`${target.name}: ${WARMUP} requests of warm-up under callgrind`)
    drive(url, headers, WARMUP)
    // callgrind_control finds the process by a name that includes the HOST variable.
    const control = (state: string): void => {
      execFileSync('callgrind_control', ['-i', state, String(child.pid)], { env: { ...process.env, HOST: env.HOST }, stdio: 'ignore' })
    }
    control('on')
    drive(url, headers, REQUESTS)
    control('off')
    await stop(child, 120_000)
    const total = existsSync(out) ? /^totals: (\d+)/m.exec(readFileSync(out, 'utf8')) : null
    if (total === null) throw new Error(`${target.name}: no callgrind totals in ${out}`)
    counts.push(Number(total[1]) / REQUESTS)
    log(`${target.name}: ${Math.round(counts[counts.length - 1])} instructions per request`)
  }
  process.stdout.write(`\n| target | instructions per request (${REQUESTS} after ${WARMUP} of warm-up, 1 connection) |\n| --- | ---: |\n`)
  targets.forEach((t, i) => process.stdout.write(`| ${t.name} | ${Math.round(counts[i])} |\n`))
  process.stdout.write(`\nfloor / service: ${(counts[0] / counts[1]).toFixed(3)}\n`)
}

const workDir = mkdtempSync(join(tmpdir(), 'auth-bench-instr-'))
let failed = false
try {
  await main(workDir)
} catch (err) {
  failed = true
  log(`FAILED: ${(err as Error).stack ?? String(err)}`)
} finally {
  await stopAll()
  await deleteRedisKeys().catch((err: Error) => log(`Redis clean-up failed: ${err.message}`))
  await dropDatabase().catch((err: Error) => log(`PostgreSQL clean-up failed: ${err.message}`))
  // BENCH_KEEP_LOGS=1 keeps the callgrind files for callgrind_annotate.
  if (process.env.BENCH_KEEP_LOGS === '1') log(`kept ${workDir}`)
  else rmSync(workDir, { recursive: true, force: true })
}
process.exit(failed ? 1 : 0)
