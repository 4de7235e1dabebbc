import t from 'tap'
import { spawnSync } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { ensureDatabase, migrate } from '../../../plugins/external/db.js'
import { BASE_DATABASE_URL, build, context } from '../../helper.js'

t.test('a missing database is created and migrated at start-up', async (t) => {
  const ctx = await context(t, { ownDatabase: true })
  const app = await build(t, ctx)
  const { rows } = await app.db.query("SELECT to_regclass('users') AS users, to_regclass('sessions') AS sessions")
  t.strictSame(rows[0], { users: 'users', sessions: 'sessions' })
  const versions = await app.db.query('SELECT version FROM schema_version ORDER BY version')
  t.ok(versions.rows.length >= 1)
})

t.test('two instances starting at once: the database is created and migrated once', async (t) => {
  const ctx = await context(t, { ownDatabase: true })
  await Promise.all([ensureDatabase(ctx.databaseUrl), ensureDatabase(ctx.databaseUrl), ensureDatabase(ctx.databaseUrl)])
  const results = await Promise.all([migrate(ctx.databaseUrl), migrate(ctx.databaseUrl), migrate(ctx.databaseUrl)])
  t.equal(results.filter((applied) => applied.length > 0).length, 1, 'one instance applied the migrations')
  t.equal(results.filter((applied) => applied.length === 0).length, 2, 'the others found nothing to do')
})

t.test('start-up fails with a clear error when PostgreSQL is unreachable', async (t) => {
  const ctx = await context(t)
  const url = new URL(BASE_DATABASE_URL)
  url.port = '1' // nothing listens there
  await t.rejects(build(t, { ...ctx, databaseUrl: url.toString() }), /ECONNREFUSED|connect/)
})

t.test('a failing migration rejects and leaves nothing of itself behind', async (t) => {
  const ctx = await context(t, { ownDatabase: true })
  const dir = await mkdtemp(join(tmpdir(), 'migrations-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  await writeFile(join(dir, '001.do.ok.sql'), 'CREATE TABLE probe_ok (id int);')
  await writeFile(join(dir, '002.do.broken.sql'), 'CREATE TABLE probe_half (id int); SELECT no_such_function();')
  await ensureDatabase(ctx.databaseUrl)
  await t.rejects(migrate(ctx.databaseUrl, dir), /no_such_function/)
  const client = new pg.Client({ connectionString: ctx.databaseUrl })
  await client.connect()
  t.teardown(() => client.end())
  const { rows } = await client.query("SELECT to_regclass('probe_ok') AS ok, to_regclass('probe_half') AS half")
  t.strictSame(rows[0], { ok: 'probe_ok', half: null })
})

t.test('npm run migrate exits non-zero with one line when it fails', async (t) => {
  const url = new URL(BASE_DATABASE_URL)
  url.port = '1'
  const result = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/migrate.ts'], {
    env: { ...process.env, DATABASE_URL: url.toString(), STARTUP_TIMEOUT: '0' }, encoding: 'utf8'
  })
  t.not(result.status, 0)
  t.match(result.stderr, /^migration failed: /)
})
