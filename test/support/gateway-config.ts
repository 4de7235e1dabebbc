// The gateways' configurations as the tests run them: the files of examples/ with only
// their ports and addresses substituted, and where to find the binaries. No test helper
// is imported here, so that `npm run bench` runs the very same nginx configuration
// (bench/lib.ts) without loading the app.
import { spawnSync } from 'node:child_process'
import { accessSync, constants } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { delimiter, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const EXAMPLES = fileURLToPath(new URL('../../examples/', import.meta.url))
const INSTALL = 'install them with `apt-get install nginx-light caddy` (.ci/run does this when they are missing)'

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

/** nginx, checked to have the auth_request module the example needs. */
export function findNginx (): string {
  const binary = findBinary('nginx')
  const built = spawnSync(binary, ['-V'], { encoding: 'utf8' })
  if (!`${built.stderr}${built.stdout}`.includes('--with-http_auth_request_module')) {
    throw new Error(`${binary} was built without the auth_request module: ${INSTALL}`)
  }
  return binary
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
    if (found !== times) throw new Error(`${file}: expected "${from}" ${times} time(s), found ${found}: update test/support/gateway-config.ts`)
    out = out.split(from).join(to)
  }
  return out
}

/**
 * examples/nginx/auth.conf on the given ports, inside an http block of the caller's own;
 * `extra` goes into that block too (the benchmark's second server). Without `accessLog`,
 * requests are not logged (a benchmark measures the proxying, not the disk).
 */
export async function nginxConfig (dir: string, ports: { listen: number, auth: number, upstream: number },
  opts: { accessLog?: boolean, extra?: string } = {}): Promise<string> {
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
  access_log ${opts.accessLog === false ? 'off' : join(dir, 'access.log')};
  client_body_temp_path ${join(dir, 'client_body')};
  proxy_temp_path ${join(dir, 'proxy')};
  fastcgi_temp_path ${join(dir, 'fastcgi')};
  uwsgi_temp_path ${join(dir, 'uwsgi')};
  scgi_temp_path ${join(dir, 'scgi')};
  include ${join(dir, 'auth.conf')};
${opts.extra ?? ''}}
`
}

/** The command line that runs nginx with `conf`, everything it writes under `dir`, in the foreground. */
export function nginxArgs (dir: string, conf: string, directives = ''): string[] {
  return ['-p', dir, '-c', conf, '-e', join(dir, 'error.log'), '-g', `daemon off; pid ${join(dir, 'nginx.pid')};${directives}`]
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
