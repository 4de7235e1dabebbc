// One PostgreSQL for a whole `npm test` on a machine that has none: when TEST_DATABASE_URL
// is not set and nothing answers at 127.0.0.1:5432, tap's `before` script starts an embedded
// one (lib/embedded-postgres.ts) and writes where it is to a file that test/helper.ts reads;
// the `after` script stops it. With a PostgreSQL at hand (CI, the developers' machines)
// nothing happens.
import { existsSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createHash } from 'node:crypto'

const root = fileURLToPath(new URL('../..', import.meta.url))

/** Where the before script says which server it started. */
export const STATE_FILE = join(root, '.tap', 'embedded-postgres.json')

/** Its data: a fresh cluster per run, outside the working tree, one per checkout. */
export const DATA_DIR = join(tmpdir(), `auth-service-test-pg-${createHash('sha256').update(root).digest('hex').slice(0, 8)}`)

export interface State { url: string, pid: number }

/** The embedded server of this test run, if the before script started one and it still runs. */
export function runningServer (): State | undefined {
  if (!existsSync(STATE_FILE)) return undefined
  const state = JSON.parse(readFileSync(STATE_FILE, 'utf8')) as State
  try {
    process.kill(state.pid, 0)
    return state
  } catch {
    return undefined
  }
}

export function forget (): void {
  rmSync(STATE_FILE, { force: true })
}
