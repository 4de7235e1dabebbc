// A redis-server of the test's own on a free port (no persistence), so a test can FLUSHALL,
// stop and restart it without touching the machine's shared Redis. Shared by the service's
// tests (test/helper.ts privateRedis) and the resource-server package's.
import { spawn, type ChildProcess } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { freePort } from '../../lib/free-port.js'

interface Teardown { teardown: (fn: () => unknown) => void }

export interface RedisServer {
  url: string
  port: number
  /** Starts it (again) and waits until it answers PING. */
  start: () => Promise<void>
  /** SIGKILL: what a crash looks like to clients. */
  stop: () => Promise<void>
}

/** Not started yet: call start(). Stopped at the test's end whatever happens. */
export async function redisServer (t: Teardown): Promise<RedisServer> {
  const port = await freePort()
  const url = `redis://127.0.0.1:${port}`
  let child: ChildProcess | null = null

  async function start (): Promise<void> {
    const spawned = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
    child = spawned
    let missing = false
    spawned.once('error', (err: Error & { code?: string }) => { missing = err.code === 'ENOENT' })
    for (let i = 0; i < 100; i++) {
      if (missing) {
        throw new Error('redis-server is not installed: this test runs a private one (fault tests, /ready). ' +
          'Get it with `apt-get install redis-server` (Debian, Ubuntu), `brew install redis` (macOS), or put a redis-server on PATH')
      }
      const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
      probe.on('error', () => {})
      try {
        await probe.connect()
        await probe.ping()
        return
      } catch {
        await sleep(50)
      } finally {
        probe.disconnect()
      }
    }
    throw new Error('private redis-server did not start')
  }

  async function stop (): Promise<void> {
    const c = child
    child = null
    if (c === null || c.exitCode !== null) return
    const exited = new Promise((resolve) => c.once('exit', resolve))
    c.kill('SIGKILL')
    await exited
  }

  t.teardown(stop)
  return { url, port, start, stop }
}
