// The ways of running the service in production agree: `npm start` and the Dockerfile's CMD
// pass node the same flags (the benchmark runs with those of `npm start`).
import { readFileSync } from 'node:fs'
import t from 'tap'

const root = new URL('../..', import.meta.url)
const start = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')).scripts.start as string
const cmd = /^CMD (\[.*\])$/m.exec(readFileSync(new URL('Dockerfile', root), 'utf8'))

t.test('npm start and the Dockerfile run node with the same flags', async (t) => {
  const fromStart = /\bnode((?: --[\w-]+(?:=\S+)?)*) dist\/server\.js/.exec(start)
  t.ok(fromStart, 'npm start runs node [flags] dist/server.js')
  t.ok(cmd, 'the Dockerfile has an exec-form CMD')
  const flags = (fromStart?.[1] ?? '').split(' ').filter((a) => a !== '')
  t.same(JSON.parse(cmd?.[1] ?? '[]'), ['node', ...flags, 'dist/server.js'])
  t.ok(flags.includes('--heap-growing-percent=100'), 'old-generation growth is bounded (docs/benchmarks.md)')
})
