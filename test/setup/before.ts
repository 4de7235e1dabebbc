// tap `before` (package.json): the workspace packages built, then an embedded PostgreSQL for
// the run when the machine has none.
import './build-packages.js'
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { dirname } from 'node:path'
import { startEmbeddedPostgres } from '../../lib/embedded-postgres.js'
import { DATA_DIR, forget, STATE_FILE } from './embedded-postgres.js'

function answers (port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port, timeout: 1000 })
    const done = (ok: boolean) => { socket.destroy(); resolve(ok) }
    socket.once('connect', () => done(true))
    socket.once('timeout', () => done(false))
    socket.once('error', () => done(false))
  })
}

forget()
// TEST_EMBEDDED_POSTGRES=1 uses one even when the machine has a PostgreSQL (to try it).
const forced = process.env.TEST_EMBEDDED_POSTGRES === '1'
if (process.env.TEST_DATABASE_URL === undefined && (forced || !await answers(5432))) {
  rmSync(DATA_DIR, { recursive: true, force: true })
  const started = Date.now()
  const server = await startEmbeddedPostgres(DATA_DIR, 'auth_test', { outliveProcess: true })
  mkdirSync(dirname(STATE_FILE), { recursive: true })
  writeFileSync(STATE_FILE, JSON.stringify({ url: server.url, pid: server.pid }), { mode: 0o600 })
  const why = forced ? 'TEST_EMBEDDED_POSTGRES=1' : 'no PostgreSQL at 127.0.0.1:5432'
  process.stdout.write(`# ${why}: the tests use an embedded one on 127.0.0.1:${server.port} (started in ${Date.now() - started} ms)\n`)
}

// Redis has no embedded stand-in: say at once how to get one, rather than in every file's failure.
if (process.env.TEST_REDIS_URL === undefined && !await answers(6379)) {
  process.stdout.write('# no Redis at 127.0.0.1:6379: the tests need one (and redis-server on PATH for the fault tests): ' +
    '`apt-get install redis-server` (Debian, Ubuntu) or `brew install redis` (macOS), then `redis-server --daemonize yes`; or set TEST_REDIS_URL\n')
}
