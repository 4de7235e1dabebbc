// tap `after` (package.json): stops the embedded PostgreSQL of the run, if one was started.
import { rmSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { DATA_DIR, forget, runningServer } from './embedded-postgres.js'

const server = runningServer()
if (server !== undefined) {
  process.kill(server.pid, 'SIGINT') // fast shutdown
  for (let i = 0; i < 100; i++) {
    try {
      process.kill(server.pid, 0)
      await sleep(100)
    } catch {
      break
    }
  }
  rmSync(DATA_DIR, { recursive: true, force: true })
}
forget()
