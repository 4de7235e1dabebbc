// The OpenAPI document (GET /docs/json) is complete and true: a valid OpenAPI 3 document
// (checked by swagger-parser), every route and outcome of the contract declared with
// named component schemas, and every response the service gives while every route is
// driven through its successes and failures matches the schema declared for it.
import { generateKeyPairSync, randomUUID } from 'node:crypto'
import t from 'tap'
import SwaggerParser from '@apidevtools/swagger-parser'
import { Ajv, type ValidateFunction } from 'ajv'
import addFormatsModule from 'ajv-formats'
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify'
import { ERROR_CODES } from '../../lib/errors.js'
import { base32Decode, hotp, totpStep } from '../../lib/totp.js'
import { bearer, build, context, login, PASSWORD, privateRedis, signUp } from '../helper.js'
import { smtpServer, tokenOf } from '../support/smtp.js'
import { create, get } from '../support/authenticator.js'
import { MAX_CREDENTIALS } from '../../plugins/app/webauthn/webauthn-service.js'

const addFormats = addFormatsModule.default

// Every operation the contract (CONTRACT.md) lists (JWKS is absent: the tests sign with
// HS256). The document may list more (GET /metrics): they must exist and are driven too.
const CONTRACT = [
  'POST /auth/register', 'POST /auth/login', 'POST /auth/refresh', 'GET /auth/me',
  'POST /auth/change-role', 'POST /auth/logout', 'POST /auth/logout-all', 'GET /auth/sessions',
  'DELETE /auth/sessions/{id}', 'POST /auth/change-password', 'GET /users', 'GET /users/{id}',
  'PATCH /users/{id}', 'DELETE /users/{id}', 'DELETE /users/{id}/lockout', 'GET /audit', 'GET /health', 'GET /ready',
  'GET /auth/verify', 'POST /clients', 'GET /clients', 'DELETE /clients/{id}', 'POST /clients/{id}/secret',
  'POST /oauth/introspect', 'POST /oauth/revoke', 'POST /auth/password/forgot', 'POST /auth/password/reset',
  'POST /auth/email/verify', 'PATCH /auth/me', 'POST /users', 'POST /users/{id}/password', 'DELETE /auth/me',
  'POST /auth/mfa/totp', 'POST /auth/mfa/totp/confirm', 'DELETE /auth/mfa/totp', 'POST /auth/mfa/recovery-codes',
  'POST /auth/mfa/verify', 'DELETE /users/{id}/mfa',
  'POST /auth/webauthn/register/options', 'POST /auth/webauthn/register/verify', 'POST /auth/webauthn/login/options',
  'POST /auth/webauthn/login/verify', 'GET /auth/webauthn/credentials', 'DELETE /auth/webauthn/credentials/{id}'
]
// Responses whose meaning is their status and headers, without a body: the gateway check.
const HEADERS_ONLY = ['GET /auth/verify 200']
const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace']
const COMPONENT = '#/components/schemas/'
// Components registered always whose route exists only with some configuration.
const CONDITIONAL_COMPONENTS = ['Jwks']

type Json = any

interface Operation {
  key: string
  method: string
  path: string
  op: Json
}

interface Seen {
  method: string
  url: string
  res: LightMyRequestResponse
}

// A database of its own: the last-admin conflicts (409) need to know every admin there is.
const ctx = await context(t, { ownDatabase: true })
const redis = await privateRedis(t)
const app = await build(t, ctx, { REDIS_URL: redis.url, LOCKOUT_THRESHOLD: 3 })
// A second instance on the same database and Redis, with tight rate limits (429).
const limited = await build(t, ctx, { REDIS_URL: redis.url, REGISTER_RATE_LIMIT: 1, LOGIN_RATE_LIMIT: 1, REFRESH_RATE_LIMIT: 1, RECOVERY_RATE_LIMIT: 1 })
// A third, with mail (the first has none: the mail flows answer 501 there).
const smtp = await smtpServer(t)
const mailing = await build(t, ctx, { REDIS_URL: redis.url, SMTP_URL: smtp.url, MAIL_FROM: 'auth@example.com', RECOVERY_RATE_LIMIT: 1000 })

const seen: Seen[] = []

// Every response of both instances is recorded as the client received it (status,
// headers, bytes), then checked against the document.
function record (server: FastifyInstance): void {
  const inject = server.inject.bind(server) as (opts: InjectOptions) => Promise<LightMyRequestResponse>
  Object.assign(server, {
    inject: async (opts: InjectOptions | string) => {
      const o: InjectOptions = typeof opts === 'string' ? { method: 'GET', url: opts } : opts
      const res = await inject(o)
      seen.push({ method: String(o.method ?? 'GET').toUpperCase(), url: String(o.url), res })
      return res
    }
  })
}
record(app)
record(limited)
record(mailing)

const docResponse = await app.inject({ method: 'GET', url: '/docs/json' })
const doc: Json = docResponse.json()

function operationsOf (document: Json): Operation[] {
  const out: Operation[] = []
  for (const [path, item] of Object.entries<Json>(document.paths)) {
    for (const method of METHODS) {
      if (item[method] !== undefined) {
        out.push({ key: `${method.toUpperCase()} ${path}`, method: method.toUpperCase(), path, op: item[method] })
      }
    }
  }
  return out
}
const operations = operationsOf(doc)

/** OpenAPI 3.0 schema → JSON Schema for ajv: refs into one registered document, and strict
 * objects, so a field the document does not declare is a mismatch too. */
function toJsonSchema (node: Json): Json {
  if (Array.isArray(node)) return node.map(toJsonSchema)
  if (node === null || typeof node !== 'object') return node
  const out: Json = {}
  for (const [key, value] of Object.entries(node)) {
    if (key === '$ref' && typeof value === 'string' && value.startsWith(COMPONENT)) {
      out.$ref = `openapi#/$defs/${value.slice(COMPONENT.length)}`
    } else if (key === 'properties' || key === '$defs') {
      out[key] = Object.fromEntries(Object.entries<Json>(value as Json).map(([k, v]) => [k, toJsonSchema(v)]))
    } else if (key === 'example' || key === 'default' || key === 'enum') {
      out[key] = value
    } else {
      out[key] = toJsonSchema(value)
    }
  }
  if (out.properties !== undefined && out.additionalProperties === undefined) out.additionalProperties = false
  return out
}

const ajv = new Ajv({ strict: true, allErrors: true, keywords: ['example'] })
addFormats(ajv)
ajv.addSchema(toJsonSchema({ $id: 'openapi', $defs: doc.components?.schemas ?? {} }))
const validators = new Map<string, ValidateFunction>()
function validator (schema: Json): ValidateFunction {
  const key = JSON.stringify(schema)
  let fn = validators.get(key)
  if (fn === undefined) {
    fn = ajv.compile(toJsonSchema(schema))
    validators.set(key, fn)
  }
  return fn
}

function findOperation (method: string, url: string, ops = operations): Operation | undefined {
  const path = url.split('?', 1)[0]
  return ops.find((o) => o.method === method && o.path === path) ??
    ops.find((o) => o.method === method &&
      new RegExp(`^${o.path.replace(/\{[^}]+\}/g, '[^/]+')}$`).test(path))
}

/** What is wrong with one response according to the document, or [] when it matches. */
function mismatches ({ method, url, res }: Seen, ops = operations): string[] {
  if (url.startsWith('/docs')) return []
  const where = `${method} ${url} → ${res.statusCode}`
  const found = findOperation(method, url, ops)
  if (found === undefined) return [`${where}: no such operation in the document`]
  const declared = found.op.responses[String(res.statusCode)]
  if (declared === undefined) return [`${where}: status not declared (declared: ${Object.keys(found.op.responses).join(', ')}); body ${res.body}`]
  const problems: string[] = []
  for (const [name, header] of Object.entries<Json>(declared.headers ?? {})) {
    const value = res.headers[name.toLowerCase()]
    if (value === undefined) {
      problems.push(`${where}: declared header ${name} missing`)
    } else if (header.schema?.type === 'integer' && !/^\d+$/.test(String(value))) {
      problems.push(`${where}: header ${name} is ${String(value)}, declared an integer`)
    }
  }
  if (declared.content === undefined) {
    if (res.body !== '') problems.push(`${where}: declared without a body, got ${res.body}`)
    return problems
  }
  const type = String(res.headers['content-type'] ?? '').split(';', 1)[0]
  const media = declared.content[type]
  if (media === undefined) return [...problems, `${where}: content-type ${type} not declared`]
  let body: unknown = res.body
  if (type === 'application/json') {
    try {
      body = JSON.parse(res.body)
    } catch {
      return [...problems, `${where}: body is not JSON: ${res.body}`]
    }
  }
  const validate = validator(media.schema)
  if (!validate(body)) {
    problems.push(`${where}: body ${res.body.slice(0, 1000)} does not match ${JSON.stringify(media.schema)}: ${ajv.errorsText(validate.errors)}`)
  }
  return problems
}

function schemaRefs (node: Json, out: Set<string> = new Set()): Set<string> {
  if (Array.isArray(node)) {
    for (const item of node) schemaRefs(item, out)
  } else if (node !== null && typeof node === 'object') {
    for (const [key, value] of Object.entries(node)) {
      if (key === '$ref' && typeof value === 'string') out.add(value)
      else schemaRefs(value, out)
    }
  }
  return out
}

/** A request or response schema is a named component, or an array of one. */
function isNamed (schema: Json): boolean {
  const target = schema?.type === 'array' ? schema.items : schema
  return typeof target?.$ref === 'string' && target.$ref.startsWith(COMPONENT) && Object.keys(target).length === 1
}

t.test('GET /docs/json is a valid OpenAPI 3 document', async (t) => {
  t.equal(docResponse.statusCode, 200)
  t.match(docResponse.headers['content-type'], /^application\/json/)
  t.match(doc.openapi, /^3\.0\.\d+$/)
  t.match(doc.info, { title: String, version: String, description: String })
  // swagger-parser dereferences in place: it gets a copy.
  const api = await SwaggerParser.validate(structuredClone(doc))
  t.ok(api.paths, 'swagger-parser validates it')
})

t.test('every route of the contract is documented, and every documented route exists', async (t) => {
  const documented = operations.map((o) => o.key)
  t.strictSame(CONTRACT.filter((key) => !documented.includes(key)), [], 'nothing of the contract is missing')
  for (const { method, path } of operations) {
    const url = path.replace(/\{(\w+)\}/g, ':$1')
    t.ok(app.hasRoute({ method: method as 'GET', url }), `${method} ${url} is a route of the app`)
  }
})

t.test('security schemes: bearer JWT, the OAuth 2.0 password grant at /auth/login, Basic for clients', async (t) => {
  t.strictSame(doc.components.securitySchemes.bearerAuth, { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' })
  t.match(doc.components.securitySchemes.basicAuth, { type: 'http', scheme: 'basic', description: String })
  t.match(doc.components.securitySchemes.oauth2, { type: 'oauth2', flows: { password: { tokenUrl: '/auth/login', scopes: {} } } })
  t.strictSame(Object.keys(doc.components.securitySchemes.oauth2.flows), ['password'])
  const login = doc.paths['/auth/login'].post
  t.strictSame(Object.keys(login.requestBody.content).sort(), ['application/json', 'application/x-www-form-urlencoded'])
  t.equal(login.requestBody.content['application/x-www-form-urlencoded'].schema.$ref, `${COMPONENT}PasswordGrant`)
  t.equal(login.requestBody.content['application/json'].schema.$ref, `${COMPONENT}LoginBody`)
  const grant = doc.components.schemas.PasswordGrant
  t.match(grant.properties, { grant_type: { enum: ['password'] }, username: {}, password: {} })

  const signedIn = ['GET /auth/me', 'PATCH /auth/me', 'POST /auth/change-role', 'POST /auth/logout', 'POST /auth/logout-all',
    'GET /auth/sessions', 'DELETE /auth/sessions/{id}', 'POST /auth/change-password', 'GET /users',
    'GET /users/{id}', 'PATCH /users/{id}', 'DELETE /users/{id}', 'DELETE /users/{id}/lockout', 'GET /audit', 'GET /auth/verify',
    'POST /clients', 'GET /clients', 'PATCH /clients/{id}', 'DELETE /clients/{id}', 'POST /clients/{id}/secret',
    'POST /users', 'POST /users/{id}/password', 'DELETE /auth/me',
    'POST /auth/mfa/totp', 'POST /auth/mfa/totp/confirm', 'DELETE /auth/mfa/totp', 'POST /auth/mfa/recovery-codes', 'DELETE /users/{id}/mfa',
    'POST /auth/webauthn/register/options', 'POST /auth/webauthn/register/verify', 'GET /auth/webauthn/credentials',
    'DELETE /auth/webauthn/credentials/{id}']
  // Registered clients (other services) authenticate with HTTP Basic.
  const byClient = ['POST /oauth/introspect', 'POST /ssf/streams', 'GET /ssf/streams', 'PATCH /ssf/streams', 'PUT /ssf/streams',
    'DELETE /ssf/streams', 'GET /ssf/streams/status', 'POST /ssf/streams/status', 'POST /ssf/streams/verify', 'POST /ssf/poll/{streamId}']
  for (const { key, op } of operations) {
    if (byClient.includes(key)) {
      t.strictSame(op.security, [{ basicAuth: [] }], `${key} takes client credentials`)
      t.match(op.responses['401'].headers, { 'www-authenticate': { schema: { type: 'string' } } }, `${key} declares WWW-Authenticate`)
    } else if (signedIn.includes(key)) {
      t.strictSame(op.security, [{ bearerAuth: [] }, { oauth2: [] }], `${key} takes a bearer token from either scheme`)
      t.ok(op.responses['401'], `${key} declares 401`)
      t.match(op.responses['401'].headers, { 'www-authenticate': { schema: { type: 'string' } } }, `${key} declares WWW-Authenticate`)
    } else {
      t.equal(op.security, undefined, `${key} is public`)
    }
    if (op.tags.includes('admin')) t.ok(op.responses['403'], `${key} (admin) declares 403`)
  }
})

t.test('Swagger UI renders and its Authorize request signs in', async (t) => {
  const page = await app.inject('/docs/')
  t.equal(page.statusCode, 200)
  t.match(page.headers['content-type'], /^text\/html/)
  // The CSP allows scripts from 'self' only: Swagger UI must not need inline scripts.
  t.match(page.headers['content-security-policy'], /script-src 'self'/)
  const scripts = [...page.body.matchAll(/<script([^>]*)>([\s\S]*?)<\/script>/g)]
  t.ok(scripts.length >= 3)
  for (const [, attrs, inline] of scripts) {
    t.match(attrs, /src="\.\/static\/[\w.-]+\.js"/, 'every script is a same-origin file')
    t.equal(inline.trim(), '', 'no inline script')
    const src = /src="\.\/(static\/[\w.-]+\.js)"/.exec(attrs)?.[1]
    const file = await app.inject(`/docs/${src}`)
    t.equal(file.statusCode, 200, `${src} is served`)
  }
  const init = await app.inject('/docs/static/swagger-initializer.js')
  t.match(init.body, /url: resolveUrl\('\.\/json'\)/, 'the UI loads this document')
  t.equal((await app.inject('/docs/static/swagger-ui-bundle.js')).statusCode, 200)

  // What Swagger UI's password flow POSTs to the tokenUrl: a form, with the (empty) client
  // credentials in a Basic header by default, or in the body.
  const user = await signUp(app, ctx)
  const form = `grant_type=password&scope=&username=${user.username}&password=${encodeURIComponent(PASSWORD)}`
  for (const [headers, body] of [
    [{ authorization: `Basic ${Buffer.from(':').toString('base64')}` }, form],
    [{}, `${form}&client_id=swagger-ui&client_secret=`]
  ] as const) {
    const res = await app.inject({
      method: 'POST',
      url: doc.components.securitySchemes.oauth2.flows.password.tokenUrl,
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
      payload: body
    })
    t.equal(res.statusCode, 200)
    t.match(res.json(), { access_token: String, token_type: 'Bearer', expires_in: Number, refresh_token: String })
  }
})

t.test('operations are fit for code generators', async (t) => {
  const ids = operations.map((o) => o.op.operationId)
  t.equal(new Set(ids).size, ids.length, 'operationIds are unique')
  const tags = new Set<string>(doc.tags.map((tag: Json) => tag.name))
  for (const { key, op } of operations) {
    t.match(op.operationId, /^[a-z][A-Za-z0-9]*$/, `${key} has a camelCase operationId`)
    t.ok(typeof op.summary === 'string' && op.summary.length > 0, `${key} has a summary`)
    t.ok(op.tags.length > 0 && op.tags.every((tag: string) => tags.has(tag)), `${key} has declared tags`)
    if (op.requestBody !== undefined) {
      for (const [type, media] of Object.entries<Json>(op.requestBody.content)) {
        t.ok(isNamed(media.schema), `${key} ${type} body is a named component`)
      }
      for (const status of ['400', '413', '415']) t.ok(op.responses[status], `${key} (has a body) declares ${status}`)
    }
    for (const [status, response] of Object.entries<Json>(op.responses)) {
      t.not(response.description, 'Default Response', `${key} ${status} says what it means`)
      if (response.content?.['application/json'] !== undefined) {
        t.strictSame(Object.keys(response.content), ['application/json'], `${key} ${status} is JSON only`)
        t.ok(isNamed(response.content['application/json'].schema), `${key} ${status} is a named component`)
      } else if (response.content !== undefined) {
        t.notOk(CONTRACT.includes(key), `${key} ${status}: every route of the contract answers JSON`)
      } else if (HEADERS_ONLY.includes(`${key} ${status}`)) {
        t.ok(Object.keys(response.headers ?? {}).length > 0, `${key} ${status} answers in headers`)
      } else {
        t.equal(status, '204', `${key} ${status} has a body`)
      }
    }
  }
  const used = schemaRefs(doc.paths)
  for (const name of [...used]) schemaRefs(doc.components.schemas[name.slice(COMPONENT.length)], used)
  for (const name of Object.keys(doc.components.schemas)) {
    t.notMatch(name, /^def-/, `${name} is a named schema`)
    t.ok(used.has(`${COMPONENT}${name}`) || CONDITIONAL_COMPONENTS.includes(name), `component ${name} is used`)
  }
  for (const ref of used) t.ok(doc.components.schemas[ref.slice(COMPONENT.length)], `${ref} exists`)
})

t.test('every example in the document matches its schema', async (t) => {
  let count = 0
  for (const [name, schema] of Object.entries<Json>(doc.components.schemas)) {
    if (schema.example === undefined) continue
    count++
    const validate = validator({ $ref: `${COMPONENT}${name}` })
    t.ok(validate(schema.example), `example of ${name}: ${ajv.errorsText(validate.errors)}`)
  }
  for (const { key, op } of operations) {
    for (const [status, response] of Object.entries<Json>(op.responses)) {
      const media = response.content?.['application/json']
      if (media?.example === undefined) continue
      count++
      const validate = validator(media.schema)
      t.ok(validate(media.example), `example of ${key} ${status}: ${ajv.errorsText(validate.errors)}`)
      t.equal(media.example.statusCode, Number(status), `example of ${key} ${status} has its status`)
    }
  }
  t.ok(count > 20, `${count} examples`)
})

t.test('the response checker catches what does not match', async (t) => {
  const fake = (statusCode: number, body: unknown, headers: Record<string, string> = {}): LightMyRequestResponse =>
    ({ statusCode, headers: { 'content-type': 'application/json; charset=utf-8', ...headers }, body: body === '' ? '' : JSON.stringify(body) }) as unknown as LightMyRequestResponse
  const cases: Array<[string, Seen]> = [
    ['an undocumented route', { method: 'GET', url: '/nowhere', res: fake(200, {}) }],
    ['an undeclared status', { method: 'GET', url: '/auth/me', res: fake(418, { statusCode: 418, error: 'I\'m a Teapot', message: 'no' }) }],
    ['a wrong enum value and a bad uuid', { method: 'GET', url: '/auth/me', res: fake(200, { id: 'x', username: 'a', role: 'root' }) }],
    ['a missing property', { method: 'GET', url: '/users/00000000-0000-4000-8000-000000000000', res: fake(200, { id: '00000000-0000-4000-8000-000000000000', username: 'a', role: 'user', disabled: false }) }],
    ['an undeclared property', { method: 'GET', url: '/health', res: fake(200, { status: 'ok', extra: 1 }) }],
    ['a 401 without WWW-Authenticate', { method: 'GET', url: '/auth/me', res: fake(401, { statusCode: 401, error: 'Unauthorized', message: 'no' }) }],
    ['a body where none is declared', { method: 'POST', url: '/auth/logout', res: fake(204, { ok: true }) }],
    ['a null where a string is declared', { method: 'GET', url: '/users?limit=1', res: fake(200, { items: [], nextCursor: 12 }) }]
  ]
  for (const [what, seen] of cases) t.not(mismatches(seen).length, 0, what)
  t.strictSame(mismatches({ method: 'GET', url: '/users?limit=1', res: fake(200, { items: [], nextCursor: null }) }), [], 'a null cursor is fine')
})

t.test('with asymmetric keys, GET /.well-known/jwks.json is documented and true', async (t) => {
  const { privateKey } = generateKeyPairSync('ed25519')
  const signed = await build(t, ctx, {
    REDIS_URL: redis.url,
    JWT_SECRET: undefined,
    JWT_PRIVATE_KEY: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()
  })
  const signedDoc = (await signed.inject('/docs/json')).json()
  await SwaggerParser.validate(structuredClone(signedDoc))
  const signedOps = operationsOf(signedDoc)
  t.strictSame(signedOps.map((o) => o.key).sort(), [...operations.map((o) => o.key), 'GET /.well-known/jwks.json'].sort())
  const jwks = signedDoc.paths['/.well-known/jwks.json'].get
  t.match(jwks, { operationId: /^[a-z][A-Za-z0-9]*$/, summary: String, tags: [String] })
  t.equal(jwks.security, undefined, 'public')
  t.ok(isNamed(jwks.responses['200'].content['application/json'].schema))
  t.not(jwks.responses['200'].description, 'Default Response')
  const res = await signed.inject('/.well-known/jwks.json')
  t.equal(res.statusCode, 200)
  t.match(res.json(), { keys: [{ kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig', kid: String, x: String }] })
  t.strictSame(mismatches({ method: 'GET', url: '/.well-known/jwks.json', res }, signedOps), [])
})

t.test('every response of every route matches the document', async (t) => {
  const admin = await signUp(app, ctx, { role: 'admin', label: 'admin' })
  const alice = await signUp(app, ctx, { label: 'alice' })
  const bob = await signUp(app, ctx, { label: 'bob' })
  const asAdmin = bearer(admin.access)
  const asAlice = bearer(alice.access)
  const nobody = randomUUID()
  const json = { 'content-type': 'application/json' }
  const text = { 'content-type': 'text/plain' }
  const huge = { username: 'x'.repeat(20_000), password: PASSWORD }
  const send = (method: InjectOptions['method'], url: string, opts: Omit<InjectOptions, 'method' | 'url'> = {}) =>
    app.inject({ method, url, ...opts })

  // ops
  await send('GET', '/health')
  await send('GET', '/ready')

  // register: 201, 400, 409, 413, 415; 429 on the rate-limited instance
  await send('POST', '/auth/register', { payload: { username: ctx.username('reg'), password: PASSWORD, role: 'admin' } })
  await send('POST', '/auth/register', { payload: { username: 'ab', password: PASSWORD } })
  await send('POST', '/auth/register', { payload: { username: ctx.username('weak'), password: 'password123' } }) // AUTH_WEAK_PASSWORD
  await send('POST', '/auth/register', { headers: json, payload: '{"username":' })
  await send('POST', '/auth/register', { payload: { username: alice.username.toUpperCase(), password: PASSWORD } })
  await send('POST', '/auth/register', { payload: huge })
  await send('POST', '/auth/register', { headers: text, payload: 'hello' })
  for (let i = 0; i < 2; i++) {
    await limited.inject({ method: 'POST', url: '/auth/register', payload: { username: ctx.username('lim'), password: PASSWORD } })
  }

  // login: 200 (JSON and form), 400, 401, 413, 415; 429 by lockout and by rate limit
  await send('POST', '/auth/login', { payload: { username: bob.username, password: PASSWORD } })
  await send('POST', '/auth/login', {
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: `grant_type=password&username=${bob.username}&password=${encodeURIComponent(PASSWORD)}`
  })
  await send('POST', '/auth/login', {
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: `grant_type=client_credentials&username=${bob.username}&password=x`
  })
  await send('POST', '/auth/login', { payload: { username: bob.username, password: 12345678 } })
  await send('POST', '/auth/login', { payload: { username: ctx.username('nobody'), password: PASSWORD } })
  await send('POST', '/auth/login', { payload: huge })
  await send('POST', '/auth/login', { headers: text, payload: 'hello' })
  const locked = ctx.username('locked')
  for (let i = 0; i < 4; i++) await send('POST', '/auth/login', { payload: { username: locked, password: 'wrong password' } })
  for (let i = 0; i < 2; i++) {
    await limited.inject({ method: 'POST', url: '/auth/login', payload: { username: bob.username, password: 'wrong password' } })
  }

  // refresh: 200, 400, 401, 413, 415; 429 by the per-session limit
  let chain = (await login(app, bob.username)).refresh
  for (let i = 0; i < 2; i++) {
    const res = await limited.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: chain } })
    if (res.statusCode === 200) chain = res.json().refresh_token
  }
  const bobTokens = await login(app, bob.username)
  const refreshed = await send('POST', '/auth/refresh', { payload: { refresh_token: bobTokens.refresh } })
  await send('POST', '/auth/refresh', { payload: { refresh_token: bobTokens.refresh } })
  await send('POST', '/auth/refresh', { payload: { refresh_token: 12345678 } })
  await send('POST', '/auth/refresh', { payload: {} })
  await send('POST', '/auth/refresh', { payload: { refresh_token: 'x'.repeat(20_000) } })
  await send('POST', '/auth/refresh', { headers: text, payload: 'hello' })
  t.equal(refreshed.statusCode, 200)

  // me: 200, 401 (missing, malformed, garbage, revoked)
  await send('GET', '/auth/me', { headers: asAlice })
  await send('GET', '/auth/me')
  await send('GET', '/auth/me', { headers: { authorization: 'Basic Zm9vOmJhcg==' } })
  await send('GET', '/auth/me', { headers: { authorization: 'Bearer not.a.token' } })
  await send('GET', '/auth/me', { headers: bearer(bobTokens.access) })

  // sessions: 200, 401; delete 204, 400, 401, 404
  const second = await login(app, alice.username)
  const spare = await login(app, alice.username)
  await send('GET', '/auth/sessions', { headers: asAlice })
  await send('GET', '/auth/sessions')
  const sid = JSON.parse(Buffer.from(spare.access.split('.')[1], 'base64url').toString()).sid
  await send('DELETE', `/auth/sessions/${sid}`, { headers: bearer(second.access) })
  await send('DELETE', '/auth/sessions/not-a-uuid', { headers: bearer(second.access) })
  await send('DELETE', `/auth/sessions/${nobody}`, { headers: bearer(second.access) })
  await send('DELETE', `/auth/sessions/${nobody}`)

  // change-password: 429 (too many wrong passwords from one client), 401 (the one that
  // reaches the threshold ends the session)
  const erin = await signUp(app, ctx, { label: 'erin' })
  const erinSpare = await login(app, erin.username)
  for (let i = 0; i < 3; i++) {
    await send('POST', '/auth/change-password', { headers: bearer(erin.access), payload: { currentPassword: `wrong ${i}`, newPassword: 'another passphrase' }, remoteAddress: '10.5.5.5' })
  }
  await send('POST', '/auth/change-password', { headers: bearer(erinSpare.access), payload: { currentPassword: PASSWORD, newPassword: 'another passphrase' }, remoteAddress: '10.5.5.5' })
  // change-password: 204, 400, 401, 403, 413, 415
  const carol = await signUp(app, ctx, { label: 'carol' })
  const asCarol = bearer(carol.access)
  await send('POST', '/auth/change-password', { headers: asCarol, payload: { currentPassword: 'wrong password', newPassword: 'another passphrase' } })
  await send('POST', '/auth/change-password', { headers: asCarol, payload: { currentPassword: PASSWORD, newPassword: 'short' } })
  await send('POST', '/auth/change-password', { headers: asCarol, payload: { currentPassword: PASSWORD, newPassword: 'x'.repeat(20_000) } })
  await send('POST', '/auth/change-password', { headers: { ...asCarol, ...text }, payload: 'hello' })
  await send('POST', '/auth/change-password', { payload: { currentPassword: PASSWORD, newPassword: 'another passphrase' } })
  await send('POST', '/auth/change-password', { headers: asCarol, payload: { currentPassword: PASSWORD, newPassword: 'another passphrase' } })

  // users (admin): list 200 (two pages), 400, 401, 403
  const page = (await send('GET', '/users?limit=1', { headers: asAdmin })).json()
  t.type(page.nextCursor, 'string', 'a next page')
  await send('GET', `/users?limit=100&cursor=${page.nextCursor}`, { headers: asAdmin })
  await send('GET', '/users', { headers: asAdmin })
  await send('GET', '/users?limit=0', { headers: asAdmin })
  await send('GET', '/users?cursor=%21%21', { headers: asAdmin })
  await send('GET', '/users?cursor=bm90LWpzb24', { headers: asAdmin }) // well-formed, but not a cursor
  await send('GET', '/users')
  await send('GET', '/users', { headers: asAlice })
  // one user: 200, 400, 401, 403, 404
  await send('GET', `/users/${bob.id}`, { headers: asAdmin })
  await send('GET', '/users/not-a-uuid', { headers: asAdmin })
  await send('GET', `/users/${nobody}`, { headers: asAdmin })
  await send('GET', `/users/${bob.id}`)
  await send('GET', `/users/${bob.id}`, { headers: asAlice })
  // patch: 200, 400, 401, 403, 404, 409 (the last admin), 413, 415
  await send('PATCH', `/users/${carol.id}`, { headers: asAdmin, payload: { disabled: true } })
  await send('PATCH', `/users/${carol.id}`, { headers: asAdmin, payload: { role: 'superuser' } })
  await send('PATCH', `/users/${carol.id}`, { headers: asAdmin, payload: { disabled: 'yes' } })
  await send('PATCH', `/users/${nobody}`, { headers: asAdmin, payload: { disabled: true } })
  await send('PATCH', `/users/${admin.id}`, { headers: asAdmin, payload: { disabled: true } })
  await send('PATCH', `/users/${admin.id}`, { headers: asAdmin, payload: { role: 'user' } })
  await send('PATCH', `/users/${carol.id}`, { headers: asAdmin, payload: { role: 'x'.repeat(20_000) } })
  await send('PATCH', `/users/${carol.id}`, { headers: { ...asAdmin, ...text }, payload: 'hello' })
  await send('PATCH', `/users/${carol.id}`, { payload: { disabled: true } })
  await send('PATCH', `/users/${carol.id}`, { headers: asAlice, payload: { disabled: true } })
  // lockout: 204, 400, 401, 403, 404
  await send('DELETE', `/users/${erin.id}/lockout`, { headers: asAdmin })
  await send('DELETE', '/users/not-a-uuid/lockout', { headers: asAdmin })
  await send('DELETE', `/users/${nobody}/lockout`, { headers: asAdmin })
  await send('DELETE', `/users/${erin.id}/lockout`)
  await send('DELETE', `/users/${erin.id}/lockout`, { headers: asAlice })
  // delete: 204, 400, 401, 403, 404, 409 (the last admin)
  await send('DELETE', `/users/${carol.id}`, { headers: asAdmin })
  await send('DELETE', '/users/not-a-uuid', { headers: asAdmin })
  await send('DELETE', `/users/${carol.id}`, { headers: asAdmin })
  await send('DELETE', `/users/${admin.id}`, { headers: asAdmin })
  await send('DELETE', `/users/${bob.id}`)
  await send('DELETE', `/users/${bob.id}`, { headers: asAlice })

  // create a user (admin): 201, 400, 401, 403, 409, 413, 415
  const dora = (await send('POST', '/users', { headers: asAdmin, payload: { username: ctx.username('dora'), password: PASSWORD, role: 'user' } })).json()
  await send('POST', '/users', { headers: asAdmin, payload: { username: dora.username.toUpperCase(), password: PASSWORD } })
  await send('POST', '/users', { headers: asAdmin, payload: { username: ctx.username('weak'), password: 'password123' } })
  await send('POST', '/users', { headers: asAdmin, payload: huge })
  await send('POST', '/users', { headers: { ...asAdmin, ...text }, payload: 'hello' })
  await send('POST', '/users', { payload: { username: ctx.username('anon'), password: PASSWORD } })
  await send('POST', '/users', { headers: asAlice, payload: { username: ctx.username('anon'), password: PASSWORD } })
  // a temporary password (admin): 204, 400, 401, 403, 404, 413, 415; then login's 403
  await send('POST', `/users/${dora.id}/password`, { headers: asAdmin, payload: { password: 'temporary horse staple' } })
  await send('POST', `/users/${dora.id}/password`, { headers: asAdmin, payload: { password: 'short' } })
  await send('POST', `/users/${nobody}/password`, { headers: asAdmin, payload: { password: 'temporary horse staple' } })
  await send('POST', `/users/${dora.id}/password`, { headers: asAdmin, payload: { password: 'x'.repeat(20_000) } })
  await send('POST', `/users/${dora.id}/password`, { headers: { ...asAdmin, ...text }, payload: 'hello' })
  await send('POST', `/users/${dora.id}/password`, { payload: { password: 'temporary horse staple' } })
  await send('POST', `/users/${dora.id}/password`, { headers: asAlice, payload: { password: 'temporary horse staple' } })
  const changeRequired = await send('POST', '/auth/login', { payload: { username: dora.username, password: 'temporary horse staple' } })
  t.equal(changeRequired.statusCode, 403)
  // delete oneself: 204, 400, 401, 403, 409 (the last admin), 413, 415; 429 on the rate-limited instance
  const gina = await signUp(app, ctx, { label: 'gina' })
  const asGina = bearer(gina.access)
  await send('DELETE', '/auth/me', { headers: asGina, payload: { password: 'wrong password' } })
  await send('DELETE', '/auth/me', { headers: asGina, payload: {} })
  await send('DELETE', '/auth/me', { headers: asGina, payload: { password: 'x'.repeat(20_000) } })
  await send('DELETE', '/auth/me', { headers: { ...asGina, ...text }, payload: 'hello' })
  await send('DELETE', '/auth/me', { payload: { password: PASSWORD } })
  await send('DELETE', '/auth/me', { headers: asAdmin, payload: { password: PASSWORD } })
  for (let i = 0; i < 2; i++) await limited.inject({ method: 'DELETE', url: '/auth/me', headers: asGina, payload: { password: 'wrong password' } })
  await send('DELETE', '/auth/me', { headers: asGina, payload: { password: PASSWORD } })
  ctx.forget(gina.id)

  // audit (admin): 200 (two pages), 400, 401, 403
  const events = (await send('GET', `/audit?limit=2&userId=${carol.id}`, { headers: asAdmin })).json()
  t.type(events.nextCursor, 'string', 'a next page')
  await send('GET', `/audit?cursor=${events.nextCursor}`, { headers: asAdmin })
  await send('GET', '/audit', { headers: asAdmin })
  await send('GET', '/audit?userId=not-a-uuid', { headers: asAdmin })
  await send('GET', '/audit?limit=101', { headers: asAdmin })
  await send('GET', '/audit')
  await send('GET', '/audit', { headers: asAlice })

  // change-role (admin): 200, 400, 401, 403, 404, 409 (the last admin), 413, 415
  await send('POST', '/auth/change-role', { headers: asAdmin, payload: { username: bob.username, role: 'admin' } })
  const bobAdmin = await login(app, bob.username)
  await send('POST', '/auth/change-role', { headers: bearer(bobAdmin.access), payload: { username: bob.username, role: 'user' } })
  await send('POST', '/auth/change-role', { headers: asAdmin, payload: { username: admin.username, role: 'user' } })
  await send('POST', '/auth/change-role', { headers: asAdmin, payload: { username: bob.username, role: 'root' } })
  await send('POST', '/auth/change-role', { headers: asAdmin, payload: { username: ctx.username('nobody'), role: 'user' } })
  await send('POST', '/auth/change-role', { headers: asAdmin, payload: { username: 'x'.repeat(20_000), role: 'user' } })
  await send('POST', '/auth/change-role', { headers: { ...asAdmin, ...text }, payload: 'hello' })
  await send('POST', '/auth/change-role', { headers: asAlice, payload: { username: bob.username, role: 'user' } })
  await send('POST', '/auth/change-role', { payload: { username: bob.username, role: 'user' } })

  // logout and logout-all: 204, 401
  await send('POST', '/auth/logout', { headers: bearer(second.access) })
  await send('POST', '/auth/logout', { headers: bearer(second.access) })
  await send('POST', '/auth/logout-all', { headers: asAlice })
  await send('POST', '/auth/logout-all', { headers: asAlice })

  // verify (the gateway check): 200, 400, 401, 403
  const asErin = bearer((await signUp(app, ctx, { label: 'erin' })).access)
  await send('GET', '/auth/verify', { headers: asErin })
  await send('GET', '/auth/verify?role=admin', { headers: asAdmin })
  await send('GET', '/auth/verify?role=root', { headers: asErin })
  await send('GET', '/auth/verify')
  await send('GET', '/auth/verify?role=admin', { headers: asErin })

  // clients (admin): create 201, 400, 401, 403, 409, 413, 415; list 200, 401, 403;
  // rotate 200, 400, 401, 403, 404; delete 204, 400, 401, 403, 404
  const client = (await send('POST', '/clients', { headers: asAdmin, payload: { name: ctx.username('client') } })).json()
  await send('POST', '/clients', { headers: asAdmin, payload: { name: client.name } })
  await send('POST', '/clients', { headers: asAdmin, payload: { name: 12345678 } })
  await send('POST', '/clients', { headers: asAdmin, payload: { name: 'x'.repeat(20_000) } })
  await send('POST', '/clients', { headers: { ...asAdmin, ...text }, payload: 'hello' })
  await send('POST', '/clients', { payload: { name: ctx.username('client') } })
  await send('POST', '/clients', { headers: asErin, payload: { name: ctx.username('client') } })
  await send('GET', '/clients', { headers: asAdmin })
  await send('GET', '/clients')
  await send('GET', '/clients', { headers: asErin })
  await send('POST', `/clients/${client.id}/secret`, { headers: asAdmin })
  await send('POST', '/clients/not-a-uuid/secret', { headers: asAdmin })
  await send('POST', `/clients/${nobody}/secret`, { headers: asAdmin })
  await send('POST', `/clients/${client.id}/secret`)
  await send('POST', `/clients/${client.id}/secret`, { headers: asErin })
  await send('DELETE', `/clients/${client.id}`, { headers: asErin })
  await send('DELETE', `/clients/${client.id}`)
  await send('DELETE', `/clients/${client.id}`, { headers: asAdmin })
  await send('DELETE', '/clients/not-a-uuid', { headers: asAdmin })
  await send('DELETE', `/clients/${nobody}`, { headers: asAdmin })

  // introspection (a registered client): 200 (active, inactive), 400, 401, 413, 415;
  // revocation: 200, 400, 413, 415
  const form = { 'content-type': 'application/x-www-form-urlencoded' }
  const registered = await app.clients.create(ctx.username('introspector'))
  const asClient = { authorization: `Basic ${Buffer.from(`${registered.clientId}:${registered.clientSecret}`).toString('base64')}` }
  const frank = await signUp(app, ctx, { label: 'frank' })
  await send('POST', '/oauth/introspect', { headers: { ...asClient, ...form }, payload: `token=${frank.access}` })
  await send('POST', '/oauth/introspect', { headers: asClient, payload: { token: frank.refresh, token_type_hint: 'refresh_token' } })
  await send('POST', '/oauth/introspect', { headers: { ...asClient, ...form }, payload: 'token=garbage' })
  await send('POST', '/oauth/introspect', { headers: { ...asClient, ...form }, payload: 'token_type_hint=access_token' })
  await send('POST', '/oauth/introspect', { headers: form, payload: `token=${frank.access}` })
  await send('POST', '/oauth/introspect', { headers: asClient, payload: { token: 'x'.repeat(20_000) } })
  await send('POST', '/oauth/introspect', { headers: { ...asClient, ...text }, payload: 'hello' })
  await send('POST', '/oauth/revoke', { headers: form, payload: `token=${frank.refresh}` })
  await send('POST', '/oauth/revoke', { payload: { token: frank.access } })
  await send('POST', '/oauth/revoke', { payload: {} })
  await send('POST', '/oauth/revoke', { payload: { token: 'x'.repeat(20_000) } })
  await send('POST', '/oauth/revoke', { headers: text, payload: 'hello' })

  // Beyond the contract: a client's back-channel logout URI (200, 404); the security-event
  // routes answer 501 without an asymmetric key (test/routes/ssf.test.ts drives them with one).
  await send('PATCH', `/clients/${registered.id}`, { headers: asAdmin, payload: { backchannelLogoutUri: 'https://frank.example.com/logout' } })
  await send('PATCH', `/clients/${nobody}`, { headers: asAdmin, payload: { backchannelLogoutUri: null } })
  await send('POST', `/ssf/poll/${nobody}`, { headers: asClient, payload: {} })

  // account recovery: forgot 202, 400, 413, 415, 429 (per client), 501 (no mail);
  // reset and verify 204, 400, 413, 415, 429; PATCH /auth/me 200, 400, 401, 409, 413, 415, 429, 501
  const grace = await signUp(mailing, ctx, { label: 'grace' })
  const heidi = await signUp(mailing, ctx, { label: 'heidi' })
  const graceEmail = `${grace.username}@example.com`
  const mailAt = (server: FastifyInstance, method: InjectOptions['method'], url: string, opts: Omit<InjectOptions, 'method' | 'url'> = {}) =>
    server.inject({ method, url, ...opts })
  await mailAt(mailing, 'POST', '/auth/password/forgot', { payload: { username: grace.username } })
  await mailAt(mailing, 'POST', '/auth/password/forgot', { payload: {} })
  await mailAt(mailing, 'POST', '/auth/password/forgot', { payload: { email: 'x'.repeat(20_000) } })
  await mailAt(mailing, 'POST', '/auth/password/forgot', { headers: text, payload: 'hello' })
  await send('POST', '/auth/password/forgot', { payload: { email: graceEmail } })
  await mailAt(mailing, 'PATCH', '/auth/me', { headers: bearer(grace.access), payload: { email: graceEmail } })
  await mailAt(mailing, 'PATCH', '/auth/me', { headers: bearer(grace.access), payload: { email: 'not an email' } })
  await mailAt(mailing, 'PATCH', '/auth/me', { payload: { email: graceEmail } })
  await mailAt(mailing, 'PATCH', '/auth/me', { headers: bearer(heidi.access), payload: { email: graceEmail.toUpperCase() } })
  await mailAt(mailing, 'PATCH', '/auth/me', { headers: bearer(grace.access), payload: { email: 'x'.repeat(20_000) } })
  await mailAt(mailing, 'PATCH', '/auth/me', { headers: { ...bearer(grace.access), ...text }, payload: 'hello' })
  await send('PATCH', '/auth/me', { headers: bearer(grace.access), payload: { email: `${ctx.username('new')}@example.com` } })
  await mailing.mail.idle()
  await mailAt(mailing, 'POST', '/auth/email/verify', { payload: { token: tokenOf(await smtp.next(graceEmail)) } })
  await mailAt(mailing, 'POST', '/auth/password/reset', { payload: { token: await mailing.recovery.issueReset(grace.id), newPassword: 'a recovered passphrase' } })
  for (const url of ['/auth/password/reset', '/auth/email/verify']) {
    await mailAt(mailing, 'POST', url, { payload: { token: 'not-a-token', newPassword: 'a recovered passphrase' } })
    await mailAt(mailing, 'POST', url, { payload: { token: 'x'.repeat(20_000), newPassword: 'a recovered passphrase' } })
    await mailAt(mailing, 'POST', url, { headers: text, payload: 'hello' })
  }
  for (let i = 0; i < 2; i++) {
    await limited.inject({ method: 'POST', url: '/auth/password/forgot', payload: { username: grace.username } })
    await limited.inject({ method: 'POST', url: '/auth/password/reset', payload: { token: 'not-a-token', newPassword: 'a recovered passphrase' } })
    await limited.inject({ method: 'POST', url: '/auth/email/verify', payload: { token: 'not-a-token' } })
    await limited.inject({ method: 'PATCH', url: '/auth/me', headers: bearer(heidi.access), payload: {} })
  }

  // Second factors, on a clock of the test's own (a code is accepted once: each step is
  // used once). Enrol: 200, 401, 409; confirm: 200, 400 (a wrong code too), 401, 404, 409,
  // 413, 415; login: 403 (JSON and the form); verify: 200, 400, 401, 413, 415, 429;
  // /auth/verify?amr=otp: 403
  let clock = 1_800_000_000_000
  app.mfa.now = () => clock
  limited.mfa.now = () => clock
  const totp = (secret: Buffer) => { clock += 30_000; return hotp(secret, totpStep(clock)) }
  const kim = await signUp(app, ctx, { label: 'kim' })
  const asKim = bearer(kim.access)
  await send('POST', '/auth/mfa/totp/confirm', { headers: asKim, payload: { code: '123456' } })
  const kimSecret = base32Decode((await send('POST', '/auth/mfa/totp', { headers: asKim })).json().secret)
  await send('POST', '/auth/mfa/totp')
  await send('POST', '/auth/mfa/totp/confirm', { headers: asKim, payload: { code: 'abc' } })
  await send('POST', '/auth/mfa/totp/confirm', { headers: asKim, payload: { code: hotp(kimSecret, totpStep(clock) + 5) } })
  await send('POST', '/auth/mfa/totp/confirm', { headers: asKim, payload: { code: 'x'.repeat(20_000) } })
  await send('POST', '/auth/mfa/totp/confirm', { headers: { ...asKim, ...text }, payload: 'hello' })
  await send('POST', '/auth/mfa/totp/confirm', { payload: { code: '123456' } })
  await send('POST', '/auth/mfa/totp/confirm', { headers: asKim, payload: { code: totp(kimSecret) } })
  await send('POST', '/auth/mfa/totp/confirm', { headers: asKim, payload: { code: totp(kimSecret) } })
  await send('POST', '/auth/mfa/totp', { headers: asKim })
  // (This app locks a client out after 3 failures: the password step, a wrong code and the
  // right one make 3, and the right one ends the run.)
  const kimLogin = await send('POST', '/auth/login', { payload: { username: kim.username, password: PASSWORD } })
  const kimToken = kimLogin.json().mfa_token
  await send('POST', '/auth/mfa/verify', { payload: { mfa_token: kimToken, code: '12345x' } })
  await send('POST', '/auth/mfa/verify', { payload: { mfa_token: kimToken } })
  await send('POST', '/auth/mfa/verify', { payload: { mfa_token: 'x'.repeat(20_000), code: '123456' } })
  await send('POST', '/auth/mfa/verify', { headers: text, payload: 'hello' })
  await send('POST', '/auth/mfa/verify', { payload: { mfa_token: kimToken, code: hotp(kimSecret, totpStep(clock) + 5) } })
  const kimSignedIn = (await send('POST', '/auth/mfa/verify', { payload: { mfa_token: kimToken, code: totp(kimSecret) } })).json()
  for (let i = 0; i < 2; i++) {
    await limited.inject({ method: 'POST', url: '/auth/mfa/verify', payload: { mfa_token: kimToken, code: '123456' } })
  }
  await send('POST', '/auth/login', {
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: `grant_type=password&username=${kim.username}&password=${encodeURIComponent(PASSWORD)}`
  })
  await send('GET', '/auth/verify?amr=otp', { headers: asKim })
  await send('GET', '/auth/verify?amr=otp', { headers: bearer(kimSignedIn.access_token) })
  // recovery codes: 200, 400, 401, 403, 409, 413, 415, 429; remove: 204, 400, 401, 403, 404, 413, 415, 429
  const asKimMfa = bearer(kimSignedIn.access_token)
  await send('POST', '/auth/mfa/recovery-codes', { headers: asKimMfa, payload: { password: PASSWORD } })
  await send('POST', '/auth/mfa/recovery-codes', { headers: asKimMfa, payload: { password: 'wrong password' } })
  await send('POST', '/auth/mfa/recovery-codes', { headers: asKimMfa, payload: { password: 12345678 } })
  await send('POST', '/auth/mfa/recovery-codes', { headers: asKimMfa, payload: { password: 'x'.repeat(20_000) } })
  await send('POST', '/auth/mfa/recovery-codes', { headers: { ...asKimMfa, ...text }, payload: 'hello' })
  await send('POST', '/auth/mfa/recovery-codes', { payload: { password: PASSWORD } })
  await send('DELETE', '/auth/mfa/totp', { headers: asKimMfa, payload: { password: 'wrong password' } })
  await send('DELETE', '/auth/mfa/totp', { headers: asKimMfa, payload: {} })
  await send('DELETE', '/auth/mfa/totp', { headers: asKimMfa, payload: { password: 'x'.repeat(20_000) } })
  await send('DELETE', '/auth/mfa/totp', { headers: { ...asKimMfa, ...text }, payload: 'hello' })
  await send('DELETE', '/auth/mfa/totp', { payload: { password: PASSWORD } })
  for (let i = 0; i < 2; i++) {
    await limited.inject({ method: 'POST', url: '/auth/mfa/recovery-codes', headers: asKimMfa, payload: { password: 'wrong password' } })
    await limited.inject({ method: 'DELETE', url: '/auth/mfa/totp', headers: asKimMfa, payload: { password: 'wrong password' } })
  }
  await send('DELETE', '/auth/mfa/totp', { headers: asKimMfa, payload: { password: PASSWORD } })
  await send('DELETE', '/auth/mfa/totp', { headers: asKimMfa, payload: { password: PASSWORD } })
  await send('POST', '/auth/mfa/recovery-codes', { headers: asKimMfa, payload: { password: PASSWORD } })
  // admin removal: 204, 400, 401, 403, 404
  const lee = await signUp(app, ctx, { label: 'lee' })
  const leeSecret = base32Decode((await send('POST', '/auth/mfa/totp', { headers: bearer(lee.access) })).json().secret)
  await send('POST', '/auth/mfa/totp/confirm', { headers: bearer(lee.access), payload: { code: totp(leeSecret) } })
  await send('DELETE', `/users/${lee.id}/mfa`, { headers: asKimMfa })
  await send('DELETE', `/users/${lee.id}/mfa`)
  await send('DELETE', '/users/not-a-uuid/mfa', { headers: asAdmin })
  await send('DELETE', `/users/${lee.id}/mfa`, { headers: asAdmin })
  await send('DELETE', `/users/${lee.id}/mfa`, { headers: asAdmin })

  // passkeys: register options 200, 400, 401, 403 (wrong password), 409 (as many as allowed), 413, 415, 429;
  // verify 201, 400 (AUTH_PASSKEY_REJECTED), 401, 409 (registered already), 413, 415, 429;
  // sign-in options 200, 400, 401, 413, 415, 429; verify 200, 400, 401, 413, 415, 429;
  // list 200, 401; delete 204, 400, 401, 404
  const origin = 'http://localhost:3000'
  const ivy = await signUp(app, ctx, { label: 'ivy' })
  const asIvy = bearer(ivy.access)
  const webauthn = (path: string) => `/auth/webauthn${path}`
  const options = (await send('POST', webauthn('/register/options'), { headers: asIvy, payload: { password: PASSWORD, name: 'Laptop' } })).json()
  const passkey = create(options, { origin })
  await send('POST', webauthn('/register/options'), { headers: asIvy, payload: { password: PASSWORD, name: 12 } })
  await send('POST', webauthn('/register/options'), { headers: asIvy, payload: { password: 'wrong password' } })
  await send('POST', webauthn('/register/options'), { payload: { password: PASSWORD } })
  await send('POST', webauthn('/register/options'), { headers: asIvy, payload: { name: 'x'.repeat(20_000) } })
  await send('POST', webauthn('/register/options'), { headers: { ...asIvy, ...text }, payload: 'hello' })
  await send('POST', webauthn('/register/verify'), { headers: asIvy, payload: passkey.json })
  await send('POST', webauthn('/register/verify'), { headers: asIvy, payload: create((await send('POST', webauthn('/register/options'), { headers: asIvy, payload: { password: PASSWORD } })).json(), { origin: 'https://evil.example' }).json })
  const again = (await send('POST', webauthn('/register/options'), { headers: asIvy, payload: { password: PASSWORD } })).json()
  const copy = { ...passkey.json, response: { ...passkey.json.response, clientDataJSON: Buffer.from(JSON.stringify({ type: 'webauthn.create', challenge: again.challenge, origin, crossOrigin: false })).toString('base64url') } }
  await send('POST', webauthn('/register/verify'), { headers: asIvy, payload: copy })
  await send('POST', webauthn('/register/verify'), { headers: asIvy, payload: { id: 12 } })
  await send('POST', webauthn('/register/verify'), { payload: passkey.json })
  await send('POST', webauthn('/register/verify'), { headers: asIvy, payload: { ...passkey.json, id: 'x'.repeat(20_000) } })
  await send('POST', webauthn('/register/verify'), { headers: { ...asIvy, ...text }, payload: 'hello' })
  const full = await signUp(app, ctx, { label: 'full' })
  await app.db.query(`INSERT INTO webauthn_credentials (user_id, credential_id, public_key, backup_eligible, name)
    SELECT $1, decode(md5(random()::text || g::text), 'hex'), '\\x00', false, 'Key' FROM generate_series(1, $2) g`, [full.id, MAX_CREDENTIALS])
  await send('POST', webauthn('/register/options'), { headers: bearer(full.access), payload: { password: PASSWORD } })
  const request = (await send('POST', webauthn('/login/options'), { payload: {} })).json()
  await send('POST', webauthn('/login/options'), { payload: { mfa_token: 12 } })
  await send('POST', webauthn('/login/options'), { payload: { mfa_token: 'not a token' } })
  await send('POST', webauthn('/login/options'), { payload: { mfa_token: 'x'.repeat(20_000) } })
  await send('POST', webauthn('/login/options'), { headers: text, payload: 'hello' })
  const assertion = get(passkey.credential, request, { origin })
  await send('POST', webauthn('/login/verify'), { payload: assertion })
  await send('POST', webauthn('/login/verify'), { payload: assertion })
  await send('POST', webauthn('/login/verify'), { payload: { ...assertion, type: 'password' } })
  await send('POST', webauthn('/login/verify'), { payload: { ...assertion, id: 'x'.repeat(20_000) } })
  await send('POST', webauthn('/login/verify'), { headers: text, payload: 'hello' })
  // 403: a temporary password an admin set holds for a passkey too
  const jo = await signUp(app, ctx, { label: 'jo' })
  const joKey = create((await send('POST', webauthn('/register/options'), { headers: bearer(jo.access), payload: { password: PASSWORD } })).json(), { origin })
  await send('POST', webauthn('/register/verify'), { headers: bearer(jo.access), payload: joKey.json })
  await send('POST', `/users/${jo.id}/password`, { headers: asAdmin, payload: { password: 'temporary horse staple' } })
  await send('POST', webauthn('/login/verify'), { payload: get(joKey.credential, (await send('POST', webauthn('/login/options'), { payload: {} })).json(), { origin }) })
  const passkeys = (await send('GET', webauthn('/credentials'), { headers: asIvy })).json()
  await send('GET', webauthn('/credentials'))
  await send('DELETE', webauthn(`/credentials/${nobody}`), { headers: asIvy })
  await send('DELETE', webauthn('/credentials/not-a-uuid'), { headers: asIvy })
  await send('DELETE', webauthn(`/credentials/${passkeys[0].id}`))
  await send('DELETE', webauthn(`/credentials/${passkeys[0].id}`), { headers: asIvy })
  for (const path of ['/register/options', '/register/verify', '/login/options', '/login/verify']) {
    for (let i = 0; i < 2; i++) await limited.inject({ method: 'POST', url: webauthn(path), headers: asIvy, payload: {} })
  }

  // Whatever else the document lists (GET /metrics, the rest of /ssf): once, signed in as admin.
  for (const { key, method, path } of operations) {
    if (!CONTRACT.includes(key) && !path.includes('{')) await send(method as 'GET', path, { headers: asAdmin })
  }

  // Redis gone: degraded (200, Readiness), and a revocation is refused (503, HttpError).
  const dave = await signUp(app, ctx, { label: 'dave' })
  await redis.stop()
  try {
    await send('GET', '/ready')
    await send('POST', '/auth/logout', { headers: bearer(dave.access) })
  } finally {
    await redis.start()
  }

  const problems = seen.flatMap((s) => mismatches(s))
  t.strictSame(problems, [], 'every response matches the document')

  // HttpError.code is an enum (so a code the document does not list fails the check above);
  // each code of the service it lists was sent (Fastify's: test/lib/errors.test.ts).
  const codes = new Set(seen.map((s) => /"code":"([A-Z_]+)"/.exec(s.res.body)?.[1]))
  t.strictSame(ERROR_CODES.filter((c) => c.startsWith('AUTH_') && !codes.has(c)), [], 'every AUTH_ code of the document was sent')

  // The drive reached every operation and every status each one declares (503 only
  // where an outage was staged): the document promises nothing the service never does.
  const observed = new Map<string, Set<string>>()
  for (const s of seen) {
    const found = findOperation(s.method, s.url)
    if (found === undefined) continue
    const statuses = observed.get(found.key) ?? new Set<string>()
    statuses.add(String(s.res.statusCode))
    observed.set(found.key, statuses)
  }
  // (GET /ready's 503, shutting down, is driven in test/routes/health.test.ts.)
  const staged503 = ['POST /auth/logout']
  for (const { key, op } of operations) {
    if (!CONTRACT.includes(key)) {
      t.ok(observed.has(key), `${key} was called`)
      continue
    }
    const missing = Object.keys(op.responses).filter((status) => !(observed.get(key)?.has(status) ?? false))
    t.strictSame(missing, staged503.includes(key) || !('503' in op.responses) ? [] : ['503'],
      `${key}: every declared status was seen (${[...(observed.get(key) ?? [])].sort().join(', ')})`)
  }
})
