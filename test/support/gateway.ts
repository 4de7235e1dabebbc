// Real gateways for the tests: Debian's nginx (auth_request) and Caddy (forward_auth),
// each started as a child process on a free loopback port with the configuration from
// examples/ (only its ports and addresses substituted: gateway-config.ts), in front of a
// small upstream that answers with the headers it received. Everything lives in a temporary directory and is
// stopped and removed at teardown.
import { spawn, type ChildProcess } from 'node:child_process'
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer, type IncomingHttpHeaders } from 'node:http'
import { connect, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort } from '../helper.js'
import { caddyConfig, findBinary, findNginx, nginxArgs, nginxConfig } from './gateway-config.js'

interface Teardown { teardown: (fn: () => unknown) => void }

export type GatewayKind = 'nginx' | 'caddy'

const START_TIMEOUT_MS = 15_000
const STOP_TIMEOUT_MS = 5_000

export interface Gateway {
  kind: GatewayKind
  /** http://127.0.0.1:<port> */
  url: string
  /** What the gateway logged so far (for failure messages). */
  log: () => Promise<string>
}

async function waitForPort (port: number, child: ChildProcess, log: () => Promise<string>, what: string): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${what} exited (${child.exitCode ?? child.signalCode}) at start-up:\n${await log()}`)
    }
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1')
      socket.once('connect', () => { socket.destroy(); resolve(true) })
      socket.once('error', () => { socket.destroy(); resolve(false) })
    })
    if (open) return
    await sleep(50)
  }
  throw new Error(`${what} did not listen on 127.0.0.1:${port} within ${START_TIMEOUT_MS} ms:\n${await log()}`)
}

async function stop (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  // nginx's master passes SIGTERM on to its workers (fast shutdown); Caddy shuts down gracefully.
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS)
  await exited
  clearTimeout(timer)
}

/** nginx or Caddy in front of `upstream`, checking every request at the auth service. */
export async function startGateway (t: Teardown, kind: GatewayKind, ports: { auth: number, upstream: number }): Promise<Gateway> {
  const binary = kind === 'nginx' ? findNginx() : findBinary('caddy')
  const dir = await mkdtemp(join(tmpdir(), `gateway-${kind}-`))
  let child: ChildProcess | undefined
  t.teardown(async () => {
    if (child !== undefined) await stop(child)
    await rm(dir, { recursive: true, force: true })
  })
  const listen = await freePort()
  let output = ''
  const log = async () => {
    const files = kind === 'nginx' ? ['error.log'] : []
    const parts = [output]
    for (const file of files) parts.push(await readFile(join(dir, file), 'utf8').catch(() => ''))
    return parts.join('\n').trim()
  }

  if (kind === 'nginx') {
    // nginx's workers drop root for nobody: they must be able to enter the directory.
    await chmod(dir, 0o755)
    const conf = join(dir, 'nginx.conf')
    await writeFile(conf, await nginxConfig(dir, { listen, ...ports }))
    child = spawn(binary, nginxArgs(dir, conf), { stdio: ['ignore', 'pipe', 'pipe'] })
  } else {
    const caddyfile = join(dir, 'Caddyfile')
    await writeFile(caddyfile, await caddyConfig({ listen, admin: await freePort(), ...ports }))
    child = spawn(binary, ['run', '--config', caddyfile, '--adapter', 'caddyfile'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      // Caddy keeps its data (certificates, autosaved config) under these: the temporary directory.
      env: { ...process.env, HOME: dir, XDG_CONFIG_HOME: join(dir, 'config'), XDG_DATA_HOME: join(dir, 'data') }
    })
  }
  const collect = (chunk: Buffer) => { output = (output + chunk.toString()).slice(-20_000) }
  child.stdout?.on('data', collect)
  child.stderr?.on('data', collect)
  await waitForPort(listen, child, log, kind)
  return { kind, url: `http://127.0.0.1:${listen}`, log }
}

export interface UpstreamRequest {
  method: string
  url: string
  headers: IncomingHttpHeaders
  /** Header names as sent, in order, duplicates included. */
  rawHeaderNames: string[]
}

export interface Upstream {
  port: number
  /** Every request that reached it, oldest first. */
  requests: UpstreamRequest[]
}

/** The API behind the gateway: records each request and answers with it as JSON. */
export async function startUpstream (t: Teardown): Promise<Upstream> {
  const requests: UpstreamRequest[] = []
  const server = createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      const seen: UpstreamRequest = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        rawHeaderNames: req.rawHeaders.filter((_, i) => i % 2 === 0)
      }
      requests.push(seen)
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify(seen))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => {
    server.closeAllConnections()
    server.close(() => resolve())
  }))
  return { port: (server.address() as AddressInfo).port, requests }
}
