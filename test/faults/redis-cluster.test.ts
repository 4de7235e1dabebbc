// The service on a Redis Cluster (REDIS_MODE=cluster): three redis-server masters of the
// test's own on free ports, joined with `redis-cli --cluster create`. The key layout is
// cluster-safe (a user's keys share the `{userId}` hash tag; every script touches one
// key), the promise holds, and a master that dies and comes back empty is survived.
import t from 'tap'
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import { bearer, build, context, freePort, PASSWORD, signUp, type Account } from '../helper.js'
import { counter, timed, waitFor } from './support.js'

const ANSWER_MS = 1000
const RECOVER_MS = 5000

interface Node { port: number, busPort: number, child: ChildProcess | null, client: Redis }

const dir = await mkdtemp(join(tmpdir(), 'auth-cluster-'))
const nodes: Node[] = []
t.teardown(async () => {
  for (const node of nodes) {
    node.client.disconnect()
    await stop(node)
  }
  await rm(dir, { recursive: true, force: true })
})

async function start (node: Node): Promise<void> {
  const child = spawn('redis-server', [
    '--port', String(node.port), '--bind', '127.0.0.1',
    '--cluster-enabled', 'yes', '--cluster-port', String(node.busPort),
    '--cluster-config-file', join(dir, `nodes-${node.port}.conf`),
    '--cluster-node-timeout', '1000',
    // The surviving masters keep serving their slots while one is down.
    '--cluster-require-full-coverage', 'no',
    '--save', '', '--appendonly', 'no', '--dir', dir
  ], { stdio: 'ignore' })
  node.child = child
  const ok = await waitFor(async () => child.exitCode === null && await node.client.ping().then(() => true, () => false), 10_000)
  if (ok === Infinity) throw new Error(`redis-server on ${node.port} did not start (exit code ${child.exitCode})`)
}

async function stop (node: Node): Promise<void> {
  const child = node.child
  node.child = null
  if (child === null || child.exitCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGKILL')
  await exited
}

async function clusterOk (): Promise<boolean> {
  for (const node of nodes) {
    const info = await node.client.cluster('INFO').then(String, () => '')
    if (!info.includes('cluster_state:ok')) return false
  }
  return true
}

/** Three masters on free ports, joined; a port taken meanwhile by someone else means a retry. */
async function startCluster (): Promise<void> {
  let lastError: unknown
  for (let attempt = 0; attempt < 3; attempt++) {
    for (const node of nodes.splice(0)) {
      node.client.disconnect()
      await stop(node)
    }
    try {
      for (let i = 0; i < 3; i++) {
        const port = await freePort()
        const client = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => 100 })
        client.on('error', () => {})
        client.connect().catch(() => {})
        nodes.push({ port, busPort: await freePort(), child: null, client })
      }
      for (const node of nodes) await start(node)
      await promisify(execFile)('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`),
        '--cluster-replicas', '0', '--cluster-yes'], { timeout: 30_000 })
      if (await waitFor(clusterOk, 15_000) === Infinity) throw new Error('the cluster did not reach cluster_state:ok')
      return
    } catch (err) {
      lastError = err
    }
  }
  // Leave nothing running if the file cannot even start.
  for (const node of nodes) {
    node.client.disconnect()
    await stop(node)
  }
  throw lastError
}

await startCluster()

const ctx = await context(t)
const app = await build(t, ctx, {
  REDIS_MODE: 'cluster',
  REDIS_URL: `redis://127.0.0.1:${nodes[0].port}`,
  REDIS_NODES: nodes.slice(1).map((n) => `127.0.0.1:${n.port}`).join(',')
})

async function me (token: string) {
  const { value, ms } = await timed(() => app.inject({ method: 'GET', url: '/auth/me', headers: bearer(token) }))
  return { status: value.statusCode, ms }
}

/** The node that holds a user's hash. */
async function nodeOf (user: Account): Promise<Node | undefined> {
  const key = `${ctx.redisKeyPrefix}{${user.id}}`
  for (const node of nodes) {
    if (node.child !== null && await node.client.exists(key).catch(() => 0) === 1) return node
  }
  return undefined
}

async function backToNormal (server: FastifyInstance, warm: Account): Promise<number> {
  return await waitFor(async () => {
    if ((await server.inject('/ready')).json().status !== 'ok' || !server.revocation.redisUsable()) return false
    await me(warm.access)
    const before = await counter(server.metrics.readThroughs)
    return (await me(warm.access)).status === 200 && await counter(server.metrics.readThroughs) === before
  }, RECOVER_MS + 3000)
}

const users: Account[] = []
for (let i = 0; i < 9; i++) users.push(await signUp(app, ctx))
const admin = await signUp(app, ctx, { role: 'admin' })

t.test('on a Redis Cluster: one slot per user, spread over the masters; revocations hold; FLUSHALL of every node changes nothing', async (t) => {
  for (const u of [...users, admin]) t.equal((await me(u.access)).status, 200)
  const holders = new Set<number>()
  for (const u of users) {
    const node = await nodeOf(u)
    t.ok(node, 'the user\'s hash is in the cluster')
    if (node) holders.add(node.port)
  }
  t.ok(holders.size >= 2, `users' hashes are spread over ${holders.size} masters`)

  const [loggedOut, promoted, kept] = users
  t.equal((await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(loggedOut.access) })).statusCode, 204)
  t.equal((await app.inject({ method: 'POST', url: '/auth/change-role', headers: bearer(admin.access), payload: { username: promoted.username, role: 'admin' } })).statusCode, 200)
  const failed = await app.inject({ method: 'POST', url: '/auth/login', payload: { username: kept.username, password: 'not the password' } })
  t.equal(failed.statusCode, 401, 'a failed login (lockout and rate-limit keys in the cluster) is a plain 401')
  const relogin = await app.inject({ method: 'POST', url: '/auth/login', payload: { username: kept.username, password: PASSWORD } })
  t.equal(relogin.statusCode, 200)

  const expect = async (label: string) => {
    const res = await Promise.all([me(loggedOut.access), me(promoted.access), me(kept.access), me(admin.access)])
    t.strictSame(res.map((r) => r.status), [401, 401, 200, 200], label)
  }
  await expect('revoked refused, others served')
  for (const node of nodes) await node.client.flushall()
  await expect('after FLUSHALL on every master')
  await expect('from the refilled cache')
  t.ok(await nodeOf(loggedOut), 'the revocation is back in the cluster')
})

t.test('a master dies: its users are answered from PostgreSQL within 1 s; back to normal within 5 s of its return', async (t) => {
  for (const u of users) await me(u.access)
  const victimNode = await nodeOf(users[3])
  t.ok(victimNode, 'found the master of a user')
  if (!victimNode) return
  const onVictim: Account[] = []
  for (const u of users.slice(3)) if ((await nodeOf(u))?.port === victimNode.port) onVictim.push(u)
  const revoked = users[1] // promoted in the previous test: its tokens were revoked

  await stop(victimNode)
  let worst = 0
  for (let i = 0; i < 10; i++) {
    const res = await Promise.all([...onVictim.map((u) => me(u.access)), me(revoked.access)])
    t.strictSame(res.map((r) => r.status), [...onVictim.map(() => 200), 401], 'answered correctly')
    worst = Math.max(worst, ...res.map((r) => r.ms))
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  t.ok(worst < ANSWER_MS, `worst answer with a master down: ${Math.round(worst)} ms`)
  const logout = await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(onVictim[0].access) })
  t.ok([204, 503].includes(logout.statusCode), `a revocation is done or refused (${logout.statusCode}), never a 500`)
  const expected = logout.statusCode === 204 ? 401 : 200

  await start(victimNode)
  const ms = await backToNormal(app, onVictim[onVictim.length - 1] === onVictim[0] ? admin : onVictim[onVictim.length - 1])
  t.ok(ms < RECOVER_MS, `back to normal ${Math.round(ms)} ms after the master returned (empty)`)
  t.equal((await me(onVictim[0].access)).status, expected, 'the revocation outcome holds after the return')
  t.equal((await me(revoked.access)).status, 401)
})
