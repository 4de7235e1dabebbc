// Passkeys, server side, with a software authenticator (test/support/authenticator.ts):
// registration, passwordless sign-in, listing and deleting, and what must be refused: a
// wrong origin or relying party, a replayed challenge, a cloned key's counter, a
// challenge of someone else's, a write whose session ended while it ran.
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { bearer, build, context, holdNext, login, me, PASSWORD, signUp, type Account } from '../helper.js'
import { create, get, type SoftCredential } from '../support/authenticator.js'
import { CHALLENGE_TTL_S, MAX_CREDENTIALS } from '../../plugins/app/webauthn/webauthn-service.js'

const ORIGIN = 'https://app.example.test'
const ctx = await context(t)
const app = await build(t, ctx, { WEBAUTHN_RP_ID: 'example.test', WEBAUTHN_ORIGINS: `${ORIGIN},https://admin.example.test` })

const claims = (token: string): Record<string, any> => JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString())

function post (url: string, payload: unknown, access?: string) {
  return app.inject({ method: 'POST', url: `/auth/webauthn${url}`, headers: access === undefined ? {} : bearer(access), payload: payload as object })
}

async function registrationOptions (user: Account, name?: string) {
  const res = await post('/register/options', { password: PASSWORD, ...(name === undefined ? {} : { name }) }, user.access)
  if (res.statusCode !== 200) throw new Error(`register/options: ${res.statusCode} ${res.body}`)
  return res.json()
}

/** Registers a passkey for the user (201 checked); the software credential. */
async function register (user: Account, opts: { name?: string, backupEligible?: boolean, counter?: number } = {}): Promise<SoftCredential> {
  const { credential, json } = create(await registrationOptions(user, opts.name), { origin: ORIGIN, ...opts })
  const res = await post('/register/verify', json, user.access)
  if (res.statusCode !== 201) throw new Error(`register/verify: ${res.statusCode} ${res.body}`)
  return credential
}

async function signInOptions (payload: object = {}) {
  const res = await post('/login/options', payload)
  if (res.statusCode !== 200) throw new Error(`login/options: ${res.statusCode} ${res.body}`)
  return res.json()
}

async function passkeySignIn (credential: SoftCredential, opts: { counter?: number, origin?: string } = {}) {
  return await post('/login/verify', get(credential, await signInOptions(), { origin: ORIGIN, ...opts }))
}

async function auditTypes (userId: string): Promise<string[]> {
  const { rows } = await app.db.query('SELECT type FROM audit_events WHERE subject_id = $1 ORDER BY id', [userId])
  return rows.map((r) => r.type)
}

async function credentialCount (userId: string): Promise<number> {
  const { rows } = await app.db.query('SELECT count(*)::int AS n FROM webauthn_credentials WHERE user_id = $1', [userId])
  return rows[0].n
}

t.test('register a passkey, list it, sign in with it without a password', async (t) => {
  const user = await signUp(app, ctx)
  const options = await registrationOptions(user, 'My key')
  t.match(options, {
    rp: { id: 'example.test' },
    user: { id: Buffer.from(user.id.replaceAll('-', ''), 'hex').toString('base64url'), name: user.username },
    challenge: /^[A-Za-z0-9_-]{43}$/,
    authenticatorSelection: { residentKey: 'required' },
    timeout: CHALLENGE_TTL_S * 1000,
    attestation: 'none'
  })
  const { credential, json } = create(options, { origin: ORIGIN })
  const res = await post('/register/verify', json, user.access)
  t.equal(res.statusCode, 201)
  t.equal(res.headers['cache-control'], 'no-store')
  const passkey = res.json()
  t.match(passkey, { id: String, name: 'My key', createdAt: String, lastUsedAt: null })

  const list = await app.inject({ method: 'GET', url: '/auth/webauthn/credentials', headers: bearer(user.access) })
  t.equal(list.statusCode, 200)
  t.strictSame(list.json(), [passkey])
  t.equal(list.headers['cache-control'], 'no-store')
  // The authenticator is told not to make a second credential for the account.
  t.match((await registrationOptions(user)).excludeCredentials, [{ id: json.id, type: 'public-key', transports: ['internal'] }])

  const signInOpts = await signInOptions()
  t.match(signInOpts, { rpId: 'example.test', userVerification: 'required', challenge: /^[A-Za-z0-9_-]{43}$/ })
  t.same(signInOpts.allowCredentials ?? [], [], 'any discoverable credential: no username asked')
  const signIn = await post('/login/verify', get(credential, signInOpts, { origin: ORIGIN }))
  t.equal(signIn.statusCode, 200)
  t.equal(signIn.headers['cache-control'], 'no-store')
  const tokens = signIn.json()
  t.match(tokens, { access_token: String, token_type: 'Bearer', refresh_token: String })
  t.match(claims(tokens.access_token), { sub: user.id, preferred_username: user.username })
  t.match((await me(app, tokens.access_token)).json(), { id: user.id, username: user.username })
  // The refresh token works like any other.
  t.equal((await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: tokens.refresh_token } })).statusCode, 200)
  const { rows } = await app.db.query('SELECT credential_id FROM sessions WHERE id = $1', [claims(tokens.access_token).sid])
  t.equal(rows[0].credential_id, passkey.id, 'the session remembers the passkey that started it')
  const after = (await app.inject({ method: 'GET', url: '/auth/webauthn/credentials', headers: bearer(user.access) })).json()
  t.type(after[0].lastUsedAt, 'string', 'the sign-in is recorded on the passkey')
  t.strictSame(await auditTypes(user.id), ['register', 'login', 'passkey_added', 'login'])
})

t.test('a passkey works from every configured origin, and from no other', async (t) => {
  const user = await signUp(app, ctx)
  const credential = await register(user)
  t.equal((await passkeySignIn(credential, { origin: 'https://admin.example.test' })).statusCode, 200)
  for (const origin of ['https://evil.example', 'http://app.example.test', 'https://app.example.test:8443']) {
    const res = await passkeySignIn(credential, { origin })
    t.equal(res.statusCode, 401, `sign-in from ${origin}`)
    t.match(res.json(), { code: 'AUTH_UNAUTHORIZED', message: 'Passkey sign-in failed' })
  }
  // Registration from a wrong origin: refused, and its challenge is used up all the same.
  const options = await registrationOptions(user)
  const wrong = create(options, { origin: 'https://evil.example' })
  const res = await post('/register/verify', wrong.json, user.access)
  t.equal(res.statusCode, 400)
  t.match(res.json(), { code: 'AUTH_PASSKEY_REJECTED' })
  t.equal((await post('/register/verify', create(options, { origin: ORIGIN }).json, user.access)).statusCode, 400, 'the challenge was used up')
  // A key scoped to another relying party (a phishing site's) does not verify here.
  const foreign = create(await registrationOptions(user), { origin: ORIGIN, rpId: 'evil.example' })
  t.equal((await post('/register/verify', foreign.json, user.access)).statusCode, 400)
  t.equal(await credentialCount(user.id), 1)
})

t.test('a challenge works once: a replayed assertion, or two at once, sign in once', async (t) => {
  const user = await signUp(app, ctx)
  const credential = await register(user)
  const assertion = get(credential, await signInOptions(), { origin: ORIGIN })
  t.equal((await post('/login/verify', assertion)).statusCode, 200)
  const replay = await post('/login/verify', assertion)
  t.equal(replay.statusCode, 401, 'the same assertion again')
  // A fresh signature over the used challenge is refused too: the challenge is gone.
  const used = JSON.parse(Buffer.from(assertion.response.clientDataJSON, 'base64url').toString()).challenge
  t.equal((await post('/login/verify', get(credential, { challenge: used }, { origin: ORIGIN }))).statusCode, 401)

  // Real concurrency: the same assertion presented by ten requests at once.
  const racing = get(credential, await signInOptions(), { origin: ORIGIN })
  const results = await Promise.all(Array.from({ length: 10 }, async () => (await post('/login/verify', racing)).statusCode))
  t.strictSame(results.filter((s) => s === 200).length, 1, `one sign-in of ten (${results.join(' ')})`)
  t.ok(results.every((s) => s === 200 || s === 401))
})

t.test('an expired challenge is refused, and the purge deletes expired ones', async (t) => {
  const user = await signUp(app, ctx)
  const credential = await register(user)
  const options = await signInOptions()
  const challenge = Buffer.from(options.challenge, 'base64url')
  await app.db.query('UPDATE webauthn_challenges SET expires_at = clock_timestamp() - interval \'1 second\' WHERE challenge = $1', [challenge])
  t.equal((await post('/login/verify', get(credential, options, { origin: ORIGIN }))).statusCode, 401)

  // Challenges nobody answers (a login page left open, a bot) go by themselves.
  const unanswered = await Promise.all(Array.from({ length: 5 }, async () => Buffer.from((await signInOptions()).challenge, 'base64url')))
  await app.db.query('UPDATE webauthn_challenges SET expires_at = clock_timestamp() - interval \'1 second\' WHERE challenge = ANY($1)', [unanswered])
  const live = Buffer.from((await signInOptions()).challenge, 'base64url')
  t.ok(await app.webauthn.purgeChallenges() >= 5)
  const { rows } = await app.db.query('SELECT challenge FROM webauthn_challenges WHERE challenge = ANY($1)', [[...unanswered, live]])
  t.strictSame(rows.map((r) => r.challenge.toString('hex')), [live.toString('hex')], 'only the live one is left')
})

t.test('a cloned key: a counter that goes backwards is refused, the passkey deleted, its sessions ended', async (t) => {
  const user = await signUp(app, ctx)
  const credential = await register(user, { counter: 1 })
  const clone: SoftCredential = { ...credential }
  const first = await passkeySignIn(credential) // counter 2
  t.equal(first.statusCode, 200)
  const second = await passkeySignIn(credential) // counter 3
  t.equal(second.statusCode, 200)
  t.equal((await me(app, user.access)).statusCode, 200)
  // The copy signs with the counter it had: 2, behind the 3 already seen.
  const cloned = await passkeySignIn(clone)
  t.equal(cloned.statusCode, 401)
  t.match(cloned.json(), { message: 'Passkey sign-in failed' })
  t.equal(await credentialCount(user.id), 0, 'the passkey is deleted: which copy is genuine cannot be told')
  t.equal((await me(app, first.json().access_token)).statusCode, 401, 'sessions it started have ended')
  t.equal((await me(app, second.json().access_token)).statusCode, 401)
  t.equal((await me(app, user.access)).statusCode, 200, 'a password session goes on')
  t.equal((await passkeySignIn(credential)).statusCode, 401, 'neither copy signs in any more')
  const { rows } = await app.db.query('SELECT detail FROM audit_events WHERE subject_id = $1 AND type = \'passkey_cloned\'', [user.id])
  t.equal(rows.length, 1, 'audited')
  // The same counter twice is a copy too.
  const again = await register(user, { counter: 5 })
  t.equal((await passkeySignIn(again, { counter: 6 })).statusCode, 200)
  t.equal((await passkeySignIn({ ...again }, { counter: 6 })).statusCode, 401)
  t.equal(await credentialCount(user.id), 0)
})

t.test('an authenticator without a counter (always 0) signs in every time', async (t) => {
  const user = await signUp(app, ctx)
  const credential = await register(user, { counter: 0 })
  for (let i = 0; i < 3; i++) t.equal((await passkeySignIn(credential)).statusCode, 200)
})

t.test('sign-in needs user verification, a credential of this service, the right user handle', async (t) => {
  const user = await signUp(app, ctx)
  const credential = await register(user)
  const unverified = get(credential, await signInOptions(), { origin: ORIGIN, verified: false })
  t.equal((await post('/login/verify', unverified)).statusCode, 401, 'no user verification: not a passwordless sign-in')
  const other = await signUp(app, ctx)
  const wrongHandle = get({ ...credential, userHandle: Buffer.from(other.id.replaceAll('-', ''), 'hex').toString('base64url') }, await signInOptions(), { origin: ORIGIN })
  t.equal((await post('/login/verify', wrongHandle)).statusCode, 401)
  const stranger = create({ challenge: 'x', rp: { id: 'example.test' }, user: { id: 'AA' } }, { origin: ORIGIN }).credential
  t.equal((await passkeySignIn(stranger)).statusCode, 401, 'an unknown credential')
  const garbage = get(credential, { challenge: 'not-a-challenge' }, { origin: ORIGIN })
  t.equal((await post('/login/verify', garbage)).statusCode, 401)
  t.equal((await post('/login/verify', { id: 'x' })).statusCode, 400, 'not an assertion at all')
})

t.test('a disabled user cannot sign in with a passkey; a deleted one neither', async (t) => {
  const admin = await signUp(app, ctx, { role: 'admin' })
  const user = await signUp(app, ctx)
  const credential = await register(user)
  await app.inject({ method: 'PATCH', url: `/users/${user.id}`, headers: bearer(admin.access), payload: { disabled: true } })
  t.equal((await passkeySignIn(credential)).statusCode, 401)
  await app.inject({ method: 'DELETE', url: `/users/${user.id}`, headers: bearer(admin.access) })
  t.equal((await passkeySignIn(credential)).statusCode, 401)
  t.equal(await credentialCount(user.id), 0, 'the passkeys went with the user')
})

t.test('a temporary password an admin set holds for a passkey too: 403 and a reset token, no session, until the user chose one', async (t) => {
  const admin = await signUp(app, ctx, { role: 'admin' })
  const user = await signUp(app, ctx)
  const credential = await register(user)
  const set = await app.inject({ method: 'POST', url: `/users/${user.id}/password`, headers: bearer(admin.access), payload: { password: 'temporary horse staple' } })
  t.equal(set.statusCode, 204)
  const res = await passkeySignIn(credential)
  t.equal(res.statusCode, 403, 'no session')
  t.equal(res.headers['cache-control'], 'no-store')
  t.match(res.json(), { code: 'AUTH_PASSWORD_CHANGE_REQUIRED', reset_token: /^[A-Za-z0-9_-]{43,}$/ })
  t.notOk('access_token' in res.json())
  const { rows } = await app.db.query('SELECT count(*)::int AS n FROM sessions WHERE user_id = $1 AND revoked_at IS NULL', [user.id])
  t.equal(rows[0].n, 0, 'no live session')
  t.equal((await auditTypes(user.id)).at(-1), 'password_change_required')
  const reset = await app.inject({ method: 'POST', url: '/auth/password/reset', payload: { token: res.json().reset_token, newPassword: 'a passphrase of my own' } })
  t.equal(reset.statusCode, 204)
  const after = await passkeySignIn(credential)
  t.equal(after.statusCode, 200, 'the passkey signs in once the password is the user\'s own')
  t.equal((await me(app, after.json().access_token)).statusCode, 200)
})

t.test('registration: the challenge is the caller\'s session\'s; other sessions end; a cap', async (t) => {
  const alice = await signUp(app, ctx)
  const bob = await signUp(app, ctx)
  const aliceOther = await login(app, alice.username)
  // Bob cannot finish a ceremony Alice started, nor can another session of Alice.
  const options = await registrationOptions(alice)
  t.equal((await post('/register/verify', create(options, { origin: ORIGIN }).json, bob.access)).statusCode, 400)
  const options2 = await registrationOptions(alice)
  t.equal((await post('/register/verify', create(options2, { origin: ORIGIN }).json, aliceOther.access)).statusCode, 400)
  t.equal(await credentialCount(bob.id), 0)
  t.equal(await credentialCount(alice.id), 0)

  // Enrolling a second factor ends the sessions signed in without it; this one goes on.
  await register(alice)
  t.equal((await me(app, aliceOther.access)).statusCode, 401)
  t.equal((await me(app, alice.access)).statusCode, 200)

  // The same authenticator credential cannot be registered twice.
  const again = create(await registrationOptions(alice), { origin: ORIGIN })
  t.equal((await post('/register/verify', again.json, alice.access)).statusCode, 201)
  const dup = await registrationOptions(alice)
  const copy = { ...again.json, response: { ...again.json.response, clientDataJSON: Buffer.from(JSON.stringify({ type: 'webauthn.create', challenge: dup.challenge, origin: ORIGIN, crossOrigin: false })).toString('base64url') } }
  t.equal((await post('/register/verify', copy, alice.access)).statusCode, 409)

  // At most MAX_CREDENTIALS per user.
  for (let n = await credentialCount(alice.id); n < MAX_CREDENTIALS; n++) await register(alice)
  const full = await post('/register/options', { password: PASSWORD }, alice.access)
  t.equal(full.statusCode, 409)
  t.equal(await credentialCount(alice.id), MAX_CREDENTIALS)
})

t.test('registration needs the current password: a stolen access token cannot add a way in', async (t) => {
  const user = await signUp(app, ctx)
  const res = await post('/register/options', { password: 'not the password' }, user.access)
  t.equal(res.statusCode, 403)
  t.match(res.json(), { code: 'AUTH_WRONG_PASSWORD' })
  t.equal((await post('/register/options', {}, user.access)).statusCode, 400, 'no password: 400')
  const { rows } = await app.db.query('SELECT count(*)::int AS n FROM webauthn_challenges WHERE user_id = $1', [user.id])
  t.equal(rows[0].n, 0, 'no ceremony was started')
  const { rows: events } = await app.db.query('SELECT detail FROM audit_events WHERE subject_id = $1 AND type = \'mfa_change_failed\'', [user.id])
  t.match(events, [{ detail: { reason: 'bad_password' } }], 'audited')
})

t.test('registration checks the session at commit: a logout during the ceremony wins', async (t) => {
  const user = await signUp(app, ctx)
  const { json } = create(await registrationOptions(user), { origin: ORIGIN })
  // Hold the verify after its token was accepted, until the logout has committed.
  const { reached, release } = holdNext(t, app.webauthn.repository, 'takeChallenge', 'after')
  const verify = post('/register/verify', json, user.access)
  await reached
  t.equal((await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(user.access) })).statusCode, 204)
  release()
  t.equal((await verify).statusCode, 401, 'the session ended before the passkey was stored')
  t.equal(await credentialCount(user.id), 0)
})

t.test('delete: only one\'s own; its sessions and the user\'s other sessions end, the caller\'s goes on', async (t) => {
  const user = await signUp(app, ctx)
  const bob = await signUp(app, ctx)
  const credential = await register(user)
  const other = await register(user)
  const byPasskey = (await passkeySignIn(credential)).json().access_token as string
  const byOther = (await passkeySignIn(other)).json().access_token as string
  const list = (await app.inject({ method: 'GET', url: '/auth/webauthn/credentials', headers: bearer(user.access) })).json()
  t.equal(list.length, 2)
  const id = list[0].id
  const del = (access: string, which = id) => app.inject({ method: 'DELETE', url: `/auth/webauthn/credentials/${which}`, headers: bearer(access) })
  t.equal((await del(bob.access)).statusCode, 404, 'someone else\'s: not found')
  t.equal((await del(user.access, '00000000-0000-4000-8000-000000000000')).statusCode, 404)
  t.equal((await del(user.access, 'nope')).statusCode, 400)
  t.equal(await credentialCount(user.id), 2)
  t.equal((await del(user.access)).statusCode, 204)
  t.equal(await credentialCount(user.id), 1)
  t.equal((await me(app, byPasskey)).statusCode, 401, 'the session the passkey started ended')
  t.equal((await me(app, byOther)).statusCode, 401, 'the other sessions ended')
  t.equal((await me(app, user.access)).statusCode, 200, 'the caller\'s goes on')
  t.equal((await del(user.access)).statusCode, 404, 'gone')
  t.equal((await passkeySignIn(credential)).statusCode, 401)
  t.strictSame((await auditTypes(user.id)).filter((type) => type.startsWith('passkey_')), ['passkey_added', 'passkey_added', 'passkey_removed'])

  // Deleting the passkey that signed in the caller's own session ends it too.
  const own = (await passkeySignIn(other)).json().access_token as string
  const otherId = (await app.inject({ method: 'GET', url: '/auth/webauthn/credentials', headers: bearer(own) })).json()[0].id
  t.equal((await del(own, otherId)).statusCode, 204)
  t.equal((await me(app, own)).statusCode, 401)
  t.equal((await me(app, user.access)).statusCode, 401, 'and, from that session, the user\'s others')
})

t.test('a sign-in racing the deletion of its passkey: either it fails or its session ends', async (t) => {
  const user = await signUp(app, ctx)
  for (let round = 0; round < 5; round++) {
    const credential = await register(user)
    const id = (await app.inject({ method: 'GET', url: '/auth/webauthn/credentials', headers: bearer(user.access) })).json()[0].id
    const assertion = get(credential, await signInOptions(), { origin: ORIGIN })
    const [signIn, deleted] = await Promise.all([
      post('/login/verify', assertion),
      app.inject({ method: 'DELETE', url: `/auth/webauthn/credentials/${id}`, headers: bearer(user.access) })
    ])
    t.equal(deleted.statusCode, 204)
    if (signIn.statusCode === 200) {
      t.equal((await me(app, signIn.json().access_token)).statusCode, 401, `round ${round}: signed in first, and that session ended`)
    } else {
      t.equal(signIn.statusCode, 401, `round ${round}: refused`)
    }
  }
})

t.test('bodies are validated: 400, never 500', async (t) => {
  const user = await signUp(app, ctx)
  for (const payload of [null, [], { name: '' }, { name: 'x'.repeat(65) }, { name: 12 }]) {
    t.equal((await post('/register/options', payload, user.access)).statusCode, 400, JSON.stringify(payload))
  }
  for (const payload of [{}, { id: 'a', rawId: 'a', type: 'public-key', response: {} }, { id: '!!', rawId: 'a', type: 'public-key', clientExtensionResults: {}, response: { clientDataJSON: 'a', attestationObject: 'a' } }]) {
    t.equal((await post('/register/verify', payload, user.access)).statusCode, 400, JSON.stringify(payload))
  }
  const notJson = { id: 'AA', rawId: 'AA', type: 'public-key', clientExtensionResults: {}, response: { clientDataJSON: 'AAAA', attestationObject: 'AAAA' } }
  t.equal((await post('/register/verify', notJson, user.access)).statusCode, 400)
  t.equal((await post('/login/options', { mfa_token: 5 })).statusCode, 400)
  t.equal((await post('/login/options', { mfa_token: 'nope' })).statusCode, 401)
})

t.test('anonymous callers: sign-in only', async (t) => {
  for (const url of ['/register/options', '/register/verify']) t.equal((await post(url, {})).statusCode, 401)
  t.equal((await app.inject({ method: 'GET', url: '/auth/webauthn/credentials' })).statusCode, 401)
})

// A second app that only checks the configuration is passed through.
t.test('the relying party comes from the configuration', async (t) => {
  const local: FastifyInstance = await build(t, ctx, { PORT: 4321 })
  const user = await signUp(local, ctx)
  const res = await local.inject({ method: 'POST', url: '/auth/webauthn/register/options', headers: bearer(user.access), payload: { password: PASSWORD } })
  t.match(res.json(), { rp: { id: 'localhost' } })
  t.strictSame(local.config.webauthnOrigins, ['http://localhost:4321'])
})

function passwordLogin (username: string) {
  return app.inject({ method: 'POST', url: '/auth/login', payload: { username, password: PASSWORD } })
}

t.test('a passkey is a second factor: the password alone asks for it, and it completes the login', async (t) => {
  const user = await signUp(app, ctx)
  const credential = await register(user)
  const first = await passwordLogin(user.username)
  t.equal(first.statusCode, 403)
  t.match(first.json(), { code: 'AUTH_MFA_REQUIRED', mfa_token: String })
  t.strictSame(first.json().methods, ['webauthn'])
  const mfaToken = first.json().mfa_token
  const options = await signInOptions({ mfa_token: mfaToken })
  t.match(options, { allowCredentials: [{ id: credential.id.toString('base64url'), type: 'public-key' }], userVerification: 'preferred' })
  // Presence is enough after a password: a security key without a PIN serves as the second factor.
  const res = await post('/login/verify', get(credential, options, { origin: ORIGIN, verified: false }))
  t.equal(res.statusCode, 200)
  const tokens = res.json()
  t.strictSame(claims(tokens.access_token).amr, ['pwd', 'hwk'])
  t.match((await me(app, tokens.access_token)).json(), { id: user.id })
  const { rows } = await app.db.query('SELECT s.credential_id, c.user_id FROM sessions s JOIN webauthn_credentials c ON c.id = s.credential_id WHERE s.id = $1', [claims(tokens.access_token).sid])
  t.equal(rows[0].user_id, user.id, 'the session remembers the passkey')
  // The mfa_token served one login.
  t.equal((await post('/login/options', { mfa_token: mfaToken })).statusCode, 401)
  t.equal((await post('/login/verify', get(credential, options, { origin: ORIGIN }))).statusCode, 401)
  // A refreshed token keeps the login's amr.
  const refreshed = await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: tokens.refresh_token } })
  t.strictSame(claims(refreshed.json().access_token).amr, ['pwd', 'hwk'])
})

t.test('a synced passkey (backup eligible) is "swk"; a device-bound one "hwk"', async (t) => {
  const user = await signUp(app, ctx)
  const synced = await register(user, { backupEligible: true })
  const signedIn = await passkeySignIn(synced)
  t.strictSame(claims(signedIn.json().access_token).amr, ['swk'])
  const bound = await register(user)
  t.strictSame(claims((await passkeySignIn(bound)).json().access_token).amr, ['hwk'])
})

t.test('only the login\'s own user\'s passkey completes it; a user without one gets no options', async (t) => {
  const alice = await signUp(app, ctx)
  const bob = await signUp(app, ctx)
  const alices = await register(alice)
  await register(bob)
  const token = (await passwordLogin(bob.username)).json().mfa_token
  const options = await signInOptions({ mfa_token: token })
  t.equal((await post('/login/verify', get(alices, options, { origin: ORIGIN }))).statusCode, 401, 'Alice\'s passkey over Bob\'s login')
  t.equal(await credentialCount(alice.id), 1)
  const carol = await signUp(app, ctx)
  t.equal((await passwordLogin(carol.username)).statusCode, 200, 'no second factor: the password signs in')
})

t.test('deleting the last passkey: the password alone signs in again', async (t) => {
  const user = await signUp(app, ctx)
  await register(user)
  t.equal((await passwordLogin(user.username)).statusCode, 403)
  const id = (await app.inject({ method: 'GET', url: '/auth/webauthn/credentials', headers: bearer(user.access) })).json()[0].id
  t.equal((await app.inject({ method: 'DELETE', url: `/auth/webauthn/credentials/${id}`, headers: bearer(user.access) })).statusCode, 204)
  t.equal((await passwordLogin(user.username)).statusCode, 200)
})

t.test('a cloned key as a second factor: refused, deleted, its sessions ended', async (t) => {
  const user = await signUp(app, ctx)
  const credential = await register(user, { counter: 10 })
  const clone: SoftCredential = { ...credential }
  const token = () => passwordLogin(user.username).then((res) => res.json().mfa_token as string)
  const genuine = await post('/login/verify', get(credential, await signInOptions({ mfa_token: await token() }), { origin: ORIGIN }))
  t.equal(genuine.statusCode, 200)
  const copied = await post('/login/verify', get(clone, await signInOptions({ mfa_token: await token() }), { origin: ORIGIN }))
  t.equal(copied.statusCode, 401)
  t.equal(await credentialCount(user.id), 0)
  t.equal((await me(app, genuine.json().access_token)).statusCode, 401, 'the session it signed in ended')
  t.equal((await passwordLogin(user.username)).statusCode, 200, 'no second factor left')
})

t.test('an admin\'s reset of second factors removes the passkeys too', async (t) => {
  const admin = await signUp(app, ctx, { role: 'admin' })
  const user = await signUp(app, ctx)
  const credential = await register(user)
  const res = await app.inject({ method: 'DELETE', url: `/users/${user.id}/mfa`, headers: bearer(admin.access) })
  t.equal(res.statusCode, 204)
  t.equal(await credentialCount(user.id), 0)
  t.equal((await passkeySignIn(credential)).statusCode, 401)
  t.equal((await me(app, user.access)).statusCode, 401, 'every session of the user ended')
  t.equal((await passwordLogin(user.username)).statusCode, 200)
  const { rows } = await app.db.query('SELECT detail FROM audit_events WHERE subject_id = $1 AND type = \'mfa_reset\'', [user.id])
  t.match(rows[0].detail, { methods: ['webauthn'], passkeys: 1 })
})
