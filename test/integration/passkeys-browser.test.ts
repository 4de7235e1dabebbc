// Passkeys end to end in a real browser: Debian's Chromium, driven by playwright-core, with
// Chrome's virtual authenticator (DevTools protocol, WebAuthn domain: a CTAP2 platform
// authenticator with resident keys and user verification). A small page served by this
// test at http://localhost:<port> (relying party `localhost`) registers a passkey and signs
// in with it through the WebAuthn Level 3 JSON forms (parseCreationOptionsFromJSON,
// toJSON()), calling the service through the page's own origin; the token it gets works
// at /auth/me. .ci/run installs the chromium package.
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { chromium } from 'playwright-core'
import { build, context, freePort, httpCall, PASSWORD } from '../helper.js'

const CHROMIUM = '/usr/bin/chromium'

// The page: one origin for the page and the API (requests under /auth are passed on to the
// service), as a web app in front of the service would have it.
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>Passkeys</title>
<script>
async function call (path, body, access) {
  const headers = { 'content-type': 'application/json' }
  if (access) headers.authorization = 'Bearer ' + access
  const res = await fetch(path, { method: body === undefined ? 'GET' : 'POST', headers, body: body === undefined ? undefined : JSON.stringify(body) })
  return { status: res.status, body: await res.json() }
}
async function registerPasskey (access, password, name) {
  const options = await call('/auth/webauthn/register/options', { password, name }, access)
  if (options.status !== 200) return options
  const credential = await navigator.credentials.create({ publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options.body) })
  return await call('/auth/webauthn/register/verify', credential.toJSON(), access)
}
async function signInWithPasskey (start) {
  const options = await call('/auth/webauthn/login/options', start ?? {})
  if (options.status !== 200) return options
  const credential = await navigator.credentials.get({ publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options.body) })
  const signedIn = await call('/auth/webauthn/login/verify', credential.toJSON())
  if (signedIn.status !== 200) return signedIn
  const me = await call('/auth/me', undefined, signedIn.body.access_token)
  return { ...signedIn, me }
}
</script>
`

const ctx = await context(t)
const pagePort = await freePort()
const origin = `http://localhost:${pagePort}`
const app = await build(t, ctx, { WEBAUTHN_RP_ID: 'localhost', WEBAUTHN_ORIGINS: origin })
await app.listen({ host: '127.0.0.1', port: 0 })
const api = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`

async function passOn (req: IncomingMessage, res: ServerResponse): Promise<void> {
  const chunks: Buffer[] = []
  for await (const chunk of req) chunks.push(chunk as Buffer)
  const headers: Record<string, string> = {}
  for (const name of ['authorization', 'content-type', 'user-agent']) {
    const value = req.headers[name]
    if (typeof value === 'string') headers[name] = value
  }
  const answer = await fetch(api + (req.url ?? '/'), { method: req.method, headers, body: chunks.length === 0 ? undefined : Buffer.concat(chunks) })
  res.writeHead(answer.status, { 'content-type': answer.headers.get('content-type') ?? 'application/json' })
  res.end(Buffer.from(await answer.arrayBuffer()))
}

const pages = createServer((req, res) => {
  if (req.url === '/') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
    res.end(PAGE)
    return
  }
  passOn(req, res).catch(() => { res.writeHead(502).end() })
})
await new Promise<void>((resolve) => pages.listen(pagePort, '127.0.0.1', resolve))
t.teardown(() => new Promise<void>((resolve) => pages.close(() => resolve())))

const profile = await mkdtemp(join(tmpdir(), 'passkeys-chromium-'))
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--host-resolver-rules=MAP localhost 127.0.0.1']
})
t.teardown(async () => {
  await browser.close()
  await rm(profile, { recursive: true, force: true })
})
const page = browser.pages()[0] ?? await browser.newPage()
await page.goto(`${origin}/`)
const devtools = await browser.newCDPSession(page)
await devtools.send('WebAuthn.enable', { enableUI: false })
const { authenticatorId } = await devtools.send('WebAuthn.addVirtualAuthenticator', {
  options: {
    protocol: 'ctap2',
    transport: 'internal',
    hasResidentKey: true,
    hasUserVerification: true,
    isUserVerified: true,
    automaticPresenceSimulation: true
  }
})

const claims = (token: string): Record<string, any> => JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString())

t.test('register a passkey in Chromium and sign in with it: the token works at /auth/me', async (t) => {
  const username = ctx.username('browser')
  t.equal((await httpCall(api, 'POST', '/auth/register', { body: { username, password: PASSWORD } })).status, 201)
  const login = await httpCall(api, 'POST', '/auth/login', { body: { username, password: PASSWORD } })
  const userId = claims(login.body.access_token).sub

  const registered = await page.evaluate(async ([access, password]) => await (window as any).registerPasskey(access, password, 'Virtual authenticator'), [login.body.access_token, PASSWORD])
  t.equal(registered.status, 201, `registered (${String(registered.body.message ?? 'ok')})`)
  t.match(registered.body, { id: String, name: 'Virtual authenticator', createdAt: String })
  const { credentials } = await devtools.send('WebAuthn.getCredentials', { authenticatorId })
  t.equal(credentials.length, 1, 'the authenticator holds the passkey')
  t.match(credentials[0], { isResidentCredential: true, rpId: 'localhost', userHandle: Buffer.from(userId.replaceAll('-', ''), 'hex').toString('base64') })

  const signedIn = await page.evaluate(async () => await (window as any).signInWithPasskey())
  t.equal(signedIn.status, 200, `signed in (${String(signedIn.body.message ?? 'ok')})`)
  t.match(signedIn.body, { access_token: String, token_type: 'Bearer', refresh_token: String })
  t.strictSame(signedIn.me, { status: 200, body: { id: userId, username, role: 'user' } }, 'the new token works at /auth/me')
  // A key of the virtual authenticator never leaves it (not backup eligible): hardware-bound.
  t.match(claims(signedIn.body.access_token), { sub: userId, sid: String, amr: ['hwk'] })
  const { credentials: after } = await devtools.send('WebAuthn.getCredentials', { authenticatorId })
  t.ok(after[0].signCount >= 1, 'the authenticator counted the signature')

  // The passkey is now the second factor of a password login.
  const password = await httpCall(api, 'POST', '/auth/login', { body: { username, password: PASSWORD } })
  t.equal(password.status, 403)
  t.match(password.body, { code: 'AUTH_MFA_REQUIRED', methods: ['webauthn'] })
  const second = await page.evaluate(async ([mfaToken]) => await (window as any).signInWithPasskey({ mfa_token: mfaToken }), [password.body.mfa_token])
  t.equal(second.status, 200, `second factor (${String(second.body.message ?? 'ok')})`)
  t.strictSame(claims(second.body.access_token).amr, ['pwd', 'hwk'])
  t.equal(second.me.status, 200)
})
