// `npm run migrate`: create the database if needed and apply pending migrations, then
// exit (non-zero, with one line on stderr, when anything fails).
import { existsSync } from 'node:fs'
import { loadConfig } from '../plugins/external/config.js'
import { ensureDatabase, migrate } from '../plugins/external/db.js'

if (existsSync('.env')) process.loadEnvFile('.env')
try {
  const config = loadConfig(process.env)
  await ensureDatabase(config.DATABASE_URL, { timeoutMs: config.STARTUP_TIMEOUT * 1000 })
  const applied = await migrate(config.DATABASE_URL)
  process.stdout.write(applied.length > 0 ? `applied: ${applied.join(', ')}\n` : 'database is up to date\n')
} catch (err) {
  process.stderr.write(`migration failed: ${(err as Error).message}\n`)
  process.exit(1)
}
