// Real gateways for the tests: Debian's nginx (auth_request) and Caddy (forward_auth),
// each started as a child process on a free loopback port with the configuration from
// examples/ (only its ports and addresses substituted), in front of a small upstream that
// answers with the headers it received. Everything lives in a temporary directory and is
// stopped and removed at teardown.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { accessSync, constants } from 'node:fs'
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer, type IncomingHttpHeaders } from 'node:http'
import { connect, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { freePort } from '../helper.js'

interface Teardown { teardown: (fn: () => unknown) => void }

export type GatewayKind = 'nginx' | 'caddy'

const EXAMPLES = fileURLToPath(new URL('../../examples/', import.meta.url))
const INSTALL = 'install them with `apt-get install nginx-light caddy` (.ci/run does this when they are missing)'
const START_TIMEOUT_MS = 15_000
const STOP_TIMEOUT_MS = 5_000

/** An executable on PATH or in the usual system directories (/usr/sbin is often off PATH). */
export function findBinary (name: string): string {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin']
  for (const dir of dirs) {
    if (dir === '') continue
    const candidate = join(dir, name)
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch {}
  }
  throw new Error(`${name} not found (PATH and /usr/sbin, /usr/bin, /usr/local/*): ${INSTALL}`)
}

/**
 * Replaces each marked value of an example configuration exactly as often as it is
 * expected, so that an edit of the example that this does not follow fails loudly instead
 * of testing something else.
 */
export function substitute (text: string, file: string, replacements: Array<[from: string, to: string, times: number]>): string {
  let out = text
  for (const [from, to, times] of replacements) {
    const found = out.split(from).length - 1
    if (found !== times) throw new Error(`${file}: expected "${from}" ${times} time(s), found ${found}: update test/support/gateway.ts`)
    out = out.split(from).join(to)
  }
  return out
}

/** examples/nginx/auth.conf on the given ports, inside an http block of the test's own. */
export async function nginxConfig (dir: string, ports: { listen: number, auth: number, upstream: number }): Promise<string> {
  const example = await readFile(join(EXAMPLES, 'nginx/auth.conf'), 'utf8')
  const site = substitute(example, 'examples/nginx/auth.conf', [
    ['server 127.0.0.1:3000;', `server 127.0.0.1:${ports.auth};`, 1],
    ['server 127.0.0.1:8080;', `server 127.0.0.1:${ports.upstream};`, 1],
    ['listen 80;', `listen 127.0.0.1:${ports.listen};`, 1]
  ])
  await writeFile(join(dir, 'auth.conf'), site)
  // Every path nginx writes to is in the temporary directory (-p); nothing of the
  // machine's nginx (its logs, pid file, modules, conf.d) is read or touched.
  return `worker_processes 1;
error_log ${join(dir, 'error.log')} notice;
events { worker_connections 256; }
http {
  access_log ${join(dir, 'access.log')};
  client_body_temp_path ${join(dir, 'client_body')};
  proxy_temp_path ${join(dir, 'proxy')};
  fastcgi_temp_path ${join(dir, 'fastcgi')};
  uwsgi_temp_path ${join(dir, 'uwsgi')};
  scgi_temp_path ${join(dir, 'scgi')};
  include ${join(dir, 'auth.conf')};
}
`
}

/** examples/caddy/Caddyfile on the given ports, bound to loopback, its admin API on a free port. */
export async function caddyConfig (ports: { listen: number, auth: number, upstream: number, admin: number }): Promise<string> {
  const example = await readFile(join(EXAMPLES, 'caddy/Caddyfile'), 'utf8')
  return substitute(example, 'examples/caddy/Caddyfile', [
    ['admin localhost:2019', `admin 127.0.0.1:${ports.admin}`, 1],
    [':8080 {', `:${ports.listen} {\n\tbind 127.0.0.1`, 1],
    ['forward_auth 127.0.0.1:3000', `forward_auth 127.0.0.1:${ports.auth}`, 2],
    ['reverse_proxy 127.0.0.1:9000', `reverse_proxy 127.0.0.1:${ports.upstream}`, 2]
  ])
}

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
  const binary = findBinary(kind)
  if (kind === 'nginx') {
    const built = spawnSync(binary, ['-V'], { encoding: 'utf8' })
    if (!`${built.stderr}${built.stdout}`.includes('--with-http_auth_request_module')) {
      throw new Error(`${binary} was built without the auth_request module: ${INSTALL}`)
    }
  }
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
    child = spawn(binary, ['-p', dir, '-c', conf, '-e', join(dir, 'error.log'),
      '-g', `daemon off; pid ${join(dir, 'nginx.pid')};`], { stdio: ['ignore', 'pipe', 'pipe'] })
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
