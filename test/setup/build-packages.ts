// Run by tap before the test files (package.json, tap.before): the service imports the
// workspace packages (packages/*) from their build, as it does in production, so they are
// brought up to date first. `tsc -b` is incremental: with nothing changed it only checks.
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../..', import.meta.url))
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
const projects = readdirSync(join(root, 'packages'))
  .map((name) => join(root, 'packages', name))
  .filter((dir) => existsSync(join(dir, 'tsconfig.json')))
const built = spawnSync(process.execPath, [tsc, '-b', ...projects], { stdio: 'inherit' })
if (built.status !== 0) {
  process.stderr.write('building packages/* failed: the tests would run against a stale or missing build\n')
  process.exit(1)
}
