// The ways of running the service in production agree: `npm start` and the Dockerfile's CMD
// pass node the same flags (the benchmark runs with those of `npm start`); the Dockerfile
// and docker-compose.yml check health the same way, bind as documented, and keep secrets
// and /metrics where they belong. No Docker engine runs the files here: they are read, and
// the health check's command is run against a listening instance.
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { EnvSchema } from '../../plugins/external/config.js'
import { build, context, privateRedis } from '../helper.js'

const root = new URL('../..', import.meta.url)
const start = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')).scripts.start as string
const cmd = /^CMD (\[.*\])$/m.exec(readFileSync(new URL('Dockerfile', root), 'utf8'))
/** The Dockerfile's exec-form HEALTHCHECK: its command as JSON. */
const HEALTHCHECK = /^HEALTHCHECK [^\n]*\\\n\s+CMD (\[.*\])$/m

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
  const image = HEALTHCHECK.exec(dockerfile)
  t.ok(image, 'the Dockerfile has an exec-form HEALTHCHECK')
  const app = /^ {2}app:\n(?: {4}.*\n| *\n)*? {4}healthcheck:\n {6}test: (\[.*\])$/m.exec(compose)
  t.ok(app, 'the app service of docker-compose.yml has a healthcheck')
  const fromImage = JSON.parse(image?.[1] ?? '[]') as string[]
  t.same(JSON.parse(app?.[1] ?? '[]'), ['CMD', ...fromImage], 'the same command')
  // 200 while the instance takes traffic, degraded included (CONTRACT.md): unlike /health,
  // it goes 503 while the instance drains.
  t.match(fromImage.join(' '), /\/ready'\)\.then\(r=>process\.exit\(r\.ok\?0:1\)/)
})

t.test('docker-compose.yml: no hard-coded password, the app bound as documented, /metrics off the public port', async (t) => {
  const compose = readFileSync(new URL('docker-compose.yml', root), 'utf8')
  t.notMatch(compose, /postgres:\/\/[^:\s]+:(?!\$\{)[^@\s]+@/, 'no literal password in a URL')
  t.notMatch(compose, /POSTGRES_PASSWORD: (?!\$\{)/, 'no literal POSTGRES_PASSWORD')
  const uses = compose.match(/\$\{POSTGRES_PASSWORD:-postgres\}/g) ?? []
  t.equal(uses.length, 2, 'one variable, with its documented local default, for PostgreSQL and for the app')
  t.match(compose, /^ {6}HOST: 0\.0\.0\.0$/m, 'HOST 0.0.0.0 in the container (CONTRACT.md)')
  const metricsPort = /^ {6}METRICS_PORT: (\d+)$/m.exec(compose)?.[1]
  t.ok(metricsPort, 'the app serves /metrics on a port of its own')
  const published = /^ {4}ports:\n((?: {6}- .*\n)+)/m.exec(compose)?.[1] ?? ''
  t.notMatch(published, new RegExp(`\\b${metricsPort}\\b`), 'which is not published')
  t.match(compose, new RegExp(`expose:\\n {6}- "${metricsPort}"`), 'only exposed to the compose network')

  // Every variable the app is given is one the service knows (a typo would be ignored).
  const app = /^ {2}app:\n((?: {4}.*\n| *\n)*)/m.exec(compose)?.[1] ?? ''
  const environment = /^ {4}environment:\n((?: {6}.*\n)+)/m.exec(app)?.[1] ?? ''
  const names = [...environment.matchAll(/^ {6}([A-Z_]+):/gm)].map((m) => m[1])
  t.ok(names.length > 5)
  for (const name of names) t.ok(name in EnvSchema.properties, `${name} is a variable of the service`)
})

t.test('a supported Node.js LTS: the image, and package.json engines', async (t) => {
  const dockerfile = readFileSync(new URL('Dockerfile', root), 'utf8')
  const images = [...dockerfile.matchAll(/^FROM node:(\d+)-bookworm-slim\b/gm)].map((m) => Number(m[1]))
  t.equal(images.length, 3, 'every stage is a node image')
  t.equal(new Set(images).size, 1, 'the same Node.js in every stage')
  // Even majors become LTS; 20 left support in April 2026.
  t.ok(images[0] >= 22 && images[0] % 2 === 0, `node:${images[0]} is an LTS line still supported`)
  const engines = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')).engines.node as string
  t.equal(engines, '>=22', 'engines asks for a supported LTS')
  t.ok(images[0] >= Number(/^>=(\d+)/.exec(engines)?.[1]), 'which the image satisfies')
  t.match(dockerfile, /^ENV NODE_ENV=production HOST=0\.0\.0\.0 /m, 'HOST 0.0.0.0 in the image')
})

t.test('the health check passes while the instance takes traffic, degraded included, and fails once it is gone', async (t) => {
  const dockerfile = readFileSync(new URL('Dockerfile', root), 'utf8')
  const [command, ...args] = JSON.parse(HEALTHCHECK.exec(dockerfile)?.[1] ?? '[]') as string[]
  const redis = await privateRedis(t)
  const app = await build(t, await context(t), { REDIS_URL: redis.url })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as AddressInfo
  const check = () => new Promise<number | null>((resolve) => {
    spawn(command, args, { env: { PATH: process.env.PATH, PORT: String(port) }, stdio: 'ignore' }).once('exit', resolve)
  })
  t.equal(await check(), 0, 'healthy')
  await redis.stop()
  t.match((await app.inject('/ready')).json(), { status: 'degraded' })
  t.equal(await check(), 0, 'still healthy with Redis down: an outage of a shared dependency marks no container unhealthy')
  await app.close()
  t.equal(await check(), 1, 'unhealthy once it no longer answers')
})

t.test('.env.example lists every variable of the service', async (t) => {
  const example = readFileSync(new URL('.env.example', root), 'utf8')
  const listed = new Set([...example.matchAll(/^#? ?([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1]))
  for (const name of Object.keys(EnvSchema.properties)) t.ok(listed.has(name), `${name} is in .env.example`)
})
