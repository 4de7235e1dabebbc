// The error codes the OpenAPI document lists are exactly the ones the service can send:
// every code an error class of the service produces (found in the sources, so a new class
// cannot be forgotten), and every Fastify code that reaches a client, each provoked here.
import t from 'tap'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ERROR_CODES } from '../../lib/errors.js'
import { build, context } from '../helper.js'

const root = fileURLToPath(new URL('../..', import.meta.url))

function sources (dir: string): string[] {
  return readdirSync(join(root, dir)).flatMap((name) => {
    const path = join(dir, name)
    if (statSync(join(root, path)).isDirectory()) return sources(path)
    return name.endsWith('.ts') ? [path] : []
  })
}

const ctx = await context(t)
const app = await build(t, ctx)

t.test('the service\'s own codes: every createError of the sources, and only those', async (t) => {
  const defined = new Set<string>()
  for (const file of [...sources('lib'), ...sources('plugins'), ...sources('routes'), 'app.ts', 'server.ts']) {
    const text = readFileSync(join(root, file), 'utf8')
    for (const match of text.matchAll(/createError\(\s*'([A-Z0-9_]+)'/g)) defined.add(match[1])
  }
  t.ok(defined.size >= 9, `found the error classes (${defined.size})`)
  // A class may reuse a Fastify code on purpose (a 400 that is a validation failure).
  t.strictSame([...defined].filter((c) => !c.startsWith('FST_')).sort(), ERROR_CODES.filter((c) => !c.startsWith('FST_')).sort())
  t.strictSame([...defined].filter((c) => !(ERROR_CODES as readonly string[]).includes(c)), [], 'and each is listed')
})

t.test('Fastify\'s codes: each one listed is sent, for the input that causes it', async (t) => {
  const json = { 'content-type': 'application/json' }
  const sent = new Set<string>()
  const requests = [
    { method: 'POST', url: '/auth/register', payload: { username: 'ab' } },
    { method: 'POST', url: '/auth/register', headers: json, payload: '{"username":' },
    { method: 'POST', url: '/auth/register', headers: json, payload: '' },
    { method: 'POST', url: '/auth/register', headers: { 'content-type': 'text/plain' }, payload: 'hello' },
    { method: 'POST', url: '/auth/register', headers: json, payload: JSON.stringify({ username: 'x'.repeat(20_000) }) },
    { method: 'GET', url: '/users/%zz' }
  ] as const
  for (const request of requests) {
    const res = await app.inject(request)
    const { code } = res.json()
    t.ok(res.statusCode >= 400 && res.statusCode < 500, `${request.method} ${request.url}: ${res.statusCode} ${code}`)
    if (typeof code === 'string') sent.add(code)
  }
  t.strictSame([...sent].sort(), ERROR_CODES.filter((c) => c.startsWith('FST_')).sort())
})

t.test('the OpenAPI document lists them as the enum of HttpError.code', async (t) => {
  const doc = (await app.inject('/docs/json')).json()
  const code = doc.components.schemas.HttpError.properties.code
  t.equal(code.type, 'string')
  t.strictSame([...code.enum].sort(), [...ERROR_CODES].sort())
})
