// The service behind Redis Sentinel (REDIS_MODE=sentinel): a master, a replica and one
// Sentinel of the test's own on free ports. The master is killed; while Sentinel fails
// over, requests are answered from PostgreSQL; once the replica is promoted the service
// follows it by itself, and what was revoked stays revoked.
import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { bearer, build, context, freePort, login, redisOf, signUp } from '../helper.js'
import { counter, timed, waitFor } from './support.js'

const ANSWER_MS = 1000
const RECOVER_MS = 5000

const dir = await mkdtemp(join(tmpdir(), 'auth-sentinel-'))
const children: ChildProcess[] = []
const clients: Redis[] = []
async function cleanUp (): Promise<void> {
  for (const c of clients) c.disconnect()
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGKILL')
      await exited
    }
  }
  await rm(dir, { recursive: true, force: true })
}
t.teardown(cleanUp)

async function server (args: string[], port: number): Promise<{ child: ChildProcess, client: Redis }> {
  const child = spawn('redis-server', args, { stdio: 'ignore' })
  children.push(child)
  const client = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => 100 })
  client.on('error', () => {})
  clients.push(client)
  client.connect().catch(() => {})
  if (await waitFor(async () => child.exitCode === null && await client.ping().then(() => true, () => false), 10_000) === Infinity) {
    throw new Error(`redis-server ${args.join(' ')} did not start`)
  }
  return { child, client }
}

const [masterPort, replicaPort, sentinelPort] = [await freePort(), await freePort(), await freePort()]
type Server = Awaited<ReturnType<typeof server>>
let master: Server, replica: Server, sentinel: Server
try {
  const plain = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']
  master = await server(['--port', String(masterPort), ...plain], masterPort)
  replica = await server(['--port', String(replicaPort), ...plain, '--replicaof', '127.0.0.1', String(masterPort)], replicaPort)
  const conf = join(dir, 'sentinel.conf')
  await writeFile(conf, [
    `port ${sentinelPort}`, 'bind 127.0.0.1', `dir ${dir}`,
    `sentinel monitor mymaster 127.0.0.1 ${masterPort} 1`,
    'sentinel down-after-milliseconds mymaster 1000',
    'sentinel failover-timeout mymaster 5000', ''
  ].join('\n'))
  sentinel = await server([conf, '--sentinel'], sentinelPort)
  const replicaKnown = await waitFor(async () => {
    const link = (await replica.client.info('replication')).includes('master_link_status:up')
    const replicas = await sentinel.client.call('SENTINEL', 'REPLICAS', 'mymaster') as unknown[]
    return link && replicas.length === 1
  }, 15_000)
  if (replicaKnown === Infinity) throw new Error('Sentinel did not discover the replica')
} catch (err) {
  // Leave nothing running if the file cannot even start.
  await cleanUp()
  throw err
}

const ctx = await context(t)
const app = await build(t, ctx, { REDIS_MODE: 'sentinel', REDIS_URL: `redis://127.0.0.1:${sentinelPort}`, REDIS_SENTINEL_MASTER: 'mymaster' })

async function me (token: string) {
  const { value, ms } = await timed(() => app.inject({ method: 'GET', url: '/auth/me', headers: bearer(token) }))
  return { status: value.statusCode, ms }
}

t.test('found through Sentinel; the master dies; the promoted replica is followed and every revocation holds', async (t) => {
  const user = await signUp(app, ctx)
  const phone = await login(app, user.username)
  const other = await signUp(app, ctx)
  for (const token of [user.access, phone.access, other.access]) t.equal((await me(token)).status, 200)
  t.equal((await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(user.access) })).statusCode, 204)
  const key = `${ctx.redisKeyPrefix}{${user.id}}`
  t.ok(await master.client.exists(key), 'the state is on the master Sentinel named')
  t.ok(await waitFor(async () => await replica.client.exists(key) === 1, 2000) < Infinity, 'and replicated')

  master.child.kill('SIGKILL')
  const killed = performance.now()
  let worst = 0
  let promoted = Infinity
  for (let i = 0; i < 60 && promoted === Infinity; i++) {
    const res = await Promise.all([me(user.access), me(phone.access), me(other.access)])
    t.strictSame(res.map((r) => r.status), [401, 200, 200], 'answered correctly during the failover')
    worst = Math.max(worst, ...res.map((r) => r.ms))
    const role = await replica.client.info('replication').catch(() => '')
    if (role.includes('role:master')) promoted = performance.now()
    else await new Promise((resolve) => setTimeout(resolve, 100))
  }
  t.ok(promoted < Infinity, `Sentinel promoted the replica ${Math.round(promoted - killed)} ms after the master died`)
  t.ok(worst < ANSWER_MS, `worst answer during the failover: ${Math.round(worst)} ms`)

  const ms = await waitFor(async () => {
    if ((await app.inject('/ready')).json().status !== 'ok' || !app.revocation.redisUsable()) return false
    await me(other.access)
    const before = await counter(app.metrics.readThroughs)
    return (await me(other.access)).status === 200 && await counter(app.metrics.readThroughs) === before
  }, RECOVER_MS + 3000)
  t.ok(ms < RECOVER_MS, `back to normal ${Math.round(ms)} ms after the promotion`)

  t.equal((await me(user.access)).status, 401, 'the revocation made before the failover holds')
  const out = await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(phone.access) })
  t.equal(out.statusCode, 204, 'revocations work on the new master')
  if (out.statusCode !== 204) t.comment(out.body, redisOf(app).status, JSON.stringify((redisOf(app) as any).options?.port), await replica.client.info('replication'))
  t.equal((await me(phone.access)).status, 401)
  t.match(await replica.client.hget(key, `s:${JSON.parse(Buffer.from(phone.access.split('.')[1], 'base64url').toString()).sid}`), /^x:[0-9]+$/)
  t.equal((await me(other.access)).status, 200)
})
