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

t.test('the Dockerfile and docker-compose.yml check the app\'s health the same way: /ready', async (t) => {
  const dockerfile = readFileSync(new URL('Dockerfile', root), 'utf8')
  const compose = readFileSync(new URL('docker-compose.yml', root), 'utf8')
  const image = /^HEALTHCHECK [^\n]*\\\n\s+CMD (\[.*\])$/m.exec(dockerfile)
  t.ok(image, 'the Dockerfile has an exec-form HEALTHCHECK')
  const app = /^ {2}app:\n(?: {4}.*\n| *\n)*? {4}healthcheck:\n {6}test: (\[.*\])$/m.exec(compose)
  t.ok(app, 'the app service of docker-compose.yml has a healthcheck')
  const fromImage = JSON.parse(image?.[1] ?? '[]') as string[]
  t.same(JSON.parse(app?.[1] ?? '[]'), ['CMD', ...fromImage], 'the same command')
  // 200 while the instance takes traffic, degraded included (CONTRACT.md): unlike /health,
  // it goes 503 while the instance drains.
  t.match(fromImage.join(' '), /\/ready'\)\.then\(r=>process\.exit\(r\.ok\?0:1\)/)
})
