// The real entry point (server.ts, through tsx) in a child process, for tests of what an
// operator sees: start-up messages, exit codes, the embedded database, restarts. Run in a
// directory of the test's choosing (a temporary one by default), so that a developer's
// .env or .data/ cannot change what is tested.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { tmpdir } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'

interface Teardown { teardown: (fn: () => unknown) => void }

const SERVER_TS = fileURLToPath(new URL('../../server.ts', import.meta.url))

export interface Service {
  /** What it wrote so far. */
  stdout: () => string
  stderr: () => string
  /** Its exit: code and signal. */
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  /** Resolves when `GET <url>/health` answers 200 (ms since the spawn), or rejects if it exits first. */
  listening: (url: string, timeoutMs?: number) => Promise<number>
  /**
   * The first JSON log line whose `msg` starts with `prefix`, waiting for it: logs reach
   * stdout asynchronously (pino's buffered destination, flushed at least every second), so
   * a start-up line may trail "listening". Undefined if none came within `timeoutMs`.
   */
  logLine: (prefix: string, timeoutMs?: number) => Promise<LogLine | undefined>
  /** SIGTERM, then the exit. */
  stop: () => Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  /** SIGKILL (a crash: nothing runs on the way out), then the exit. */
  kill: () => Promise<{ code: number | null, signal: NodeJS.Signals | null }>
}

export interface LogLine {
  msg: string
  [field: string]: unknown
}

/** Starts server.ts with exactly `env` (plus PATH and HOME). Killed at teardown if still running. */
export function runService (t: Teardown, env: Record<string, string>, opts: { cwd?: string } = {}): Service {
  const started = Date.now()
  const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), SERVER_TS], {
    cwd: opts.cwd ?? tmpdir(),
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk) => { stdout += String(chunk) })
  child.stderr.on('data', (chunk) => { stderr += String(chunk) })
  const exited = once(child, 'exit').then(([code, signal]) => ({ code, signal }))
  const running = () => child.exitCode === null && child.signalCode === null
  t.teardown(async () => {
    if (!running()) return
    child.kill('SIGKILL')
    await exited
  })
  return {
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    async listening (url, timeoutMs = 60_000) {
      const deadline = started + timeoutMs
      while (Date.now() < deadline) {
        if (!running()) throw new Error(`the service exited (${child.exitCode ?? child.signalCode}): ${stderr}${stdout.slice(-2000)}`)
        if (await fetch(`${url}/health`).then((r) => r.ok, () => false)) return Date.now() - started
        await sleep(100)
      }
      throw new Error(`the service did not listen within ${timeoutMs} ms: ${stderr}${stdout.slice(-2000)}`)
    },
    async logLine (prefix, timeoutMs = 5000) {
      for (const deadline = Date.now() + timeoutMs; ;) {
        const line = stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as LogLine)
          .find((l) => typeof l.msg === 'string' && l.msg.startsWith(prefix))
        if (line !== undefined || Date.now() >= deadline) return line
        await sleep(100)
      }
    },
    async stop () {
      if (running()) child.kill('SIGTERM')
      return await exited
    },
    async kill () {
      if (running()) child.kill('SIGKILL')
      return await exited
    }
  }
}
