// Graceful shutdown of the real entry point: server.ts in a child process gets SIGTERM
// while a request is in flight (headers and half a body sent). The request completes,
// new connections are refused, idle keep-alive connections are closed, and the process
// exits with code 0.
import t from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { fileURLToPath } from 'node:url'
import { BASE_REDIS_URL, context, freePort, JWT_SECRET, PASSWORD } from '../helper.js'

const ctx = await context(t)
const port = await freePort()
const serverTs = fileURLToPath(new URL('../../server.ts', import.meta.url))

// Outside the repository, so that a developer's .env cannot change what is tested.
const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), serverTs], {
  cwd: tmpdir(),
  env: {
    PATH: process.env.PATH,
    NODE_ENV: 'test',
    HOST: '127.0.0.1',
    PORT: String(port),
    DATABASE_URL: ctx.databaseUrl,
    REDIS_URL: BASE_REDIS_URL,
    REDIS_KEY_PREFIX: ctx.redisKeyPrefix,
    JWT_SECRET,
    LOG_LEVEL: 'silent',
    ARGON2_MEMORY_COST: '8192',
    ARGON2_TIME_COST: '1'
  },
  stdio: ['ignore', 'ignore', 'pipe']
})
let stderr = ''
child.stderr.on('data', (chunk) => { stderr += String(chunk) })
const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })

function open (): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => resolve(socket))
    socket.once('error', reject)
  })
}

/** Reads one HTTP/1.1 response (Content-Length framed) from a socket. */
function response (socket: Socket): Promise<{ status: number, headers: string, body: string }> {
  return new Promise((resolve, reject) => {
    let data = ''
    const onData = (chunk: Buffer) => {
      data += String(chunk)
      const end = data.indexOf('\r\n\r\n')
      if (end === -1) return
      const headers = data.slice(0, end)
      const length = Number(/content-length: *(\d+)/i.exec(headers)?.[1] ?? 0)
      if (data.length - end - 4 < length) return
      socket.off('data', onData)
      resolve({ status: Number(headers.split(' ')[1]), headers, body: data.slice(end + 4, end + 4 + length) })
    }
    socket.on('data', onData)
    socket.once('error', reject)
    socket.once('close', () => reject(new Error(`connection closed after ${JSON.stringify(data)}`)))
  })
}

t.test('SIGTERM: the in-flight request completes, new connections are refused, exit code 0', async (t) => {
  // Start-up compiles TypeScript and migrates: give it time, boundedly.
  let up = false
  for (let i = 0; i < 150 && !up && child.exitCode === null; i++) {
    up = await fetch(`http://127.0.0.1:${port}/health`).then((r) => r.ok, () => false)
    if (!up) await new Promise((resolve) => setTimeout(resolve, 200))
  }
  t.ok(up, `the server started${up ? '' : `: ${stderr}`}`)

  // An idle keep-alive connection, and one with a request half sent.
  const idle = await open()
  idle.write('GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n')
  t.equal((await response(idle)).status, 200)
  const idleClosed = once(idle, 'close')

  const username = ctx.username('inflight')
  const body = JSON.stringify({ username, password: PASSWORD })
  const half = Math.floor(body.length / 2)
  const inflight = await open()
  inflight.write(`POST /auth/register HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n` + body.slice(0, half))
  const answer = response(inflight)
  // The server has the headers once the request is routed; give it a moment to get there.
  await new Promise((resolve) => setTimeout(resolve, 300))

  t.ok(child.kill('SIGTERM'), 'SIGTERM sent')
  let refused = false
  for (let i = 0; i < 100 && !refused; i++) {
    try {
      const probe = await open()
      probe.destroy()
      await new Promise((resolve) => setTimeout(resolve, 50))
    } catch (err) {
      refused = (err as { code?: string }).code === 'ECONNREFUSED'
    }
  }
  t.ok(refused, 'new connections are refused')
  await idleClosed
  t.pass('the idle keep-alive connection was closed')
  t.equal(child.exitCode, null, 'the process waits for the request in flight')

  inflight.write(body.slice(half))
  const res = await answer
  t.equal(res.status, 201, 'the in-flight request completed')
  t.match(JSON.parse(res.body), { username, role: 'user' })
  t.match(res.headers, /connection: close/i, 'and its connection is closed after it')

  const [code, signal] = await exited
  t.equal(code, 0, 'exit code 0')
  t.equal(signal, null)
  t.equal(stderr, '', 'nothing on stderr')
})
