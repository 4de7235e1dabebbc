// Second factors (routes/auth/mfa.ts, plugins/app/mfa/): TOTP enrolment and removal,
// the login's second step with an injected clock (valid, skewed, expired, replayed, wrong,
// locked out), recovery codes, the sessions a factor change ends at every instance,
// authority at commit, the admin's view and reset, amr downstream, and what is kept.
import t from 'tap'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { base32Decode, base32Encode, hotp, totpStep } from '../../lib/totp.js'
import { bearer, build, context, costs, holdNext, login, me, PASSWORD, signUp, type Account } from '../helper.js'

const ctx = await context(t)
const app = await build(t, ctx)

// The clock codes are checked against: a step boundary, moved on by the tests.
let now = 1_800_000_000_000
const STEP = 30_000
/** Five minutes on: the last code a user used is well behind the window. */
const later = () => { now += 10 * STEP }
app.mfa.now = () => now

const code = (secret: Buffer, offsetSteps = 0) => hotp(secret, totpStep(now) + offsetSteps)

/** A code no step of the window (±1) has: a wrong one, for sure. */
function wrongCode (secret: Buffer): string {
  const window = [-1, 0, 1].map((o) => code(secret, o))
  for (let n = 0; ; n++) {
    const candidate = String(n).padStart(6, '0')
    if (!window.includes(candidate)) return candidate
  }
}

function claims (token: string): Record<string, any> {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString())
}

function post (server: FastifyInstance, url: string, payload?: unknown, access?: string): Promise<LightMyRequestResponse> {
  return server.inject({ method: 'POST', url, headers: access === undefined ? {} : bearer(access), ...(payload === undefined ? {} : { payload: payload as object }) })
}

/** Starts and confirms TOTP for the account; the clock then moves on (the confirming code is used up). */
async function enrol (server: FastifyInstance, account: Account): Promise<{ secret: Buffer, recoveryCodes: string[] }> {
  const started = await post(server, '/auth/mfa/totp', undefined, account.access)
  if (started.statusCode !== 200) throw new Error(`enrolment: ${started.statusCode} ${started.body}`)
  const secret = base32Decode(started.json().secret)
  const confirmed = await post(server, '/auth/mfa/totp/confirm', { code: code(secret) }, account.access)
  if (confirmed.statusCode !== 200) throw new Error(`confirm: ${confirmed.statusCode} ${confirmed.body}`)
  later()
  return { secret, recoveryCodes: confirmed.json().recoveryCodes }
}

function passwordStep (server: FastifyInstance, username: string, password = PASSWORD): Promise<LightMyRequestResponse> {
  return server.inject({ method: 'POST', url: '/auth/login', payload: { username, password } })
}

async function mfaToken (server: FastifyInstance, username: string): Promise<string> {
  const res = await passwordStep(server, username)
  if (res.statusCode !== 403) throw new Error(`expected 403 AUTH_MFA_REQUIRED: ${res.statusCode} ${res.body}`)
  return res.json().mfa_token
}

function verify (server: FastifyInstance, payload: unknown): Promise<LightMyRequestResponse> {
  return post(server, '/auth/mfa/verify', payload)
}

/** A full sign-in with the second factor: the token pair. */
async function signInWithCode (server: FastifyInstance, username: string, secret: Buffer): Promise<{ access: string, refresh: string }> {
  const res = await verify(server, { mfa_token: await mfaToken(server, username), code: code(secret) })
  if (res.statusCode !== 200) throw new Error(`verify: ${res.statusCode} ${res.body}`)
  return { access: res.json().access_token, refresh: res.json().refresh_token }
}

async function auditTypes (userId: string): Promise<string[]> {
  const { rows } = await app.db.query('SELECT type FROM audit_events WHERE subject_id = $1 ORDER BY id', [userId])
  return rows.map((r) => r.type)
}

async function factorRows (userId: string) {
  const { rows: [totp] } = await app.db.query('SELECT secret, confirmed_at, last_step FROM mfa_totp WHERE user_id = $1', [userId])
  const { rows: [{ codes }] } = await app.db.query('SELECT count(*)::int AS codes FROM mfa_recovery_codes WHERE user_id = $1', [userId])
  const { rows: [user] } = await app.db.query('SELECT mfa FROM users WHERE id = $1', [userId])
  return { totp, codes, mfa: user?.mfa }
}

t.test('enrolment: a secret, confirmed by a code; ten recovery codes shown once; 409 while active', async (t) => {
  const alice = await signUp(app, ctx)
  const started = await post(app, '/auth/mfa/totp', undefined, alice.access)
  t.equal(started.statusCode, 200)
  t.equal(started.headers['cache-control'], 'no-store')
  const first = started.json().secret
  t.match(first, /^[A-Z2-7]{32}$/, '160 bits, base32')
  t.equal(started.json().otpauthUri,
    `otpauth://totp/auth-service:${alice.username}?secret=${first}&issuer=auth-service&algorithm=SHA1&digits=6&period=30`)
  let rows = await factorRows(alice.id)
  t.notOk(rows.totp.secret.includes(base32Decode(first)), 'the secret is stored sealed, not as it is')
  t.equal(rows.totp.confirmed_at, null, 'pending')
  t.equal((await passwordStep(app, alice.username)).statusCode, 200, 'not a factor before it is confirmed')

  const again = await post(app, '/auth/mfa/totp', undefined, alice.access)
  const secret = base32Decode(again.json().secret)
  t.not(again.json().secret, first, 'starting again replaces the secret')
  const wrong = await post(app, '/auth/mfa/totp/confirm', { code: wrongCode(secret) }, alice.access)
  t.equal(wrong.statusCode, 400)
  t.equal(wrong.json().code, 'AUTH_INVALID_CODE')
  t.equal((await post(app, '/auth/mfa/totp/confirm', { code: 'abcdef' }, alice.access)).statusCode, 400, 'not six digits')
  t.equal((await factorRows(alice.id)).totp.confirmed_at, null, 'a wrong code confirms nothing')

  const confirmed = await post(app, '/auth/mfa/totp/confirm', { code: code(secret) }, alice.access)
  t.equal(confirmed.statusCode, 200)
  t.equal(confirmed.headers['cache-control'], 'no-store')
  const { recoveryCodes } = confirmed.json()
  t.equal(recoveryCodes.length, 10)
  t.equal(new Set(recoveryCodes).size, 10, 'all different')
  for (const c of recoveryCodes) t.match(c, /^[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}$/)
  rows = await factorRows(alice.id)
  t.not(rows.totp.confirmed_at, null)
  t.equal(rows.codes, 10, 'kept as ten hashes')
  t.equal(rows.mfa, true)
  const { rows: stored } = await app.db.query("SELECT encode(code_hash, 'escape') AS raw FROM mfa_recovery_codes WHERE user_id = $1", [alice.id])
  t.notOk(stored.some((r) => recoveryCodes.some((c: string) => r.raw.includes(c.replaceAll('-', '')))), 'no code is stored as it is')

  t.equal((await post(app, '/auth/mfa/totp', undefined, alice.access)).statusCode, 409, 'a second enrolment while active')
  t.equal((await post(app, '/auth/mfa/totp/confirm', { code: code(secret, 1) }, alice.access)).statusCode, 409)
  t.equal((await post(app, '/auth/mfa/totp')).statusCode, 401, 'signed in only')
  t.strictSame(await auditTypes(alice.id), ['register', 'login', 'login', 'mfa_enabled'])
  t.equal((await me(app, alice.access)).statusCode, 200, 'the session that enrolled goes on')
})

t.test('login with TOTP: 403 with an mfa_token; then a code, valid, skewed, expired, replayed, wrong', async (t) => {
  const bob = await signUp(app, ctx)
  const { secret } = await enrol(app, bob)

  const step1 = await passwordStep(app, bob.username)
  t.equal(step1.statusCode, 403)
  t.equal(step1.headers['cache-control'], 'no-store')
  t.match(step1.json(), { statusCode: 403, error: 'Forbidden', message: 'A second factor is required', code: 'AUTH_MFA_REQUIRED', mfa_token: /^[A-Za-z0-9_-]{43}$/ })
  t.strictSame(step1.json().methods, ['totp', 'recovery_code'])
  t.equal(step1.json().access_token, undefined, 'no token before the second factor')
  t.equal((await passwordStep(app, bob.username, 'wrong password')).statusCode, 401, 'a wrong password is still a plain 401')

  const form = await app.inject({
    method: 'POST',
    url: '/auth/login',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: `grant_type=password&username=${bob.username}&password=${encodeURIComponent(PASSWORD)}`
  })
  t.equal(form.statusCode, 403, 'the password grant')
  t.strictSame(Object.keys(form.json()).sort(), ['error', 'error_description', 'methods', 'mfa_token'], 'in OAuth 2.0 error form (RFC 6749 §5.2)')
  t.equal(form.json().error, 'mfa_required')

  const ok = await verify(app, { mfa_token: step1.json().mfa_token, code: code(secret) })
  t.equal(ok.statusCode, 200, 'the code of now')
  t.equal(ok.headers['cache-control'], 'no-store')
  t.strictSame(claims(ok.json().access_token).amr, ['pwd', 'otp'])
  t.equal((await me(app, ok.json().access_token)).statusCode, 200)
  const refreshed = await post(app, '/auth/refresh', { refresh_token: ok.json().refresh_token })
  t.strictSame(claims(refreshed.json().access_token).amr, ['pwd', 'otp'], 'a refreshed token keeps its amr')
  t.equal((await verify(app, { mfa_token: step1.json().mfa_token, code: code(secret, 1) })).statusCode, 401, 'an mfa_token serves one login')

  const replay = await verify(app, { mfa_token: await mfaToken(app, bob.username), code: code(secret) })
  t.equal(replay.statusCode, 401, 'the same code again, in the same window: refused')
  t.match(replay.json(), { code: 'AUTH_UNAUTHORIZED', message: 'Wrong or already used code' })

  later()
  t.equal((await verify(app, { mfa_token: await mfaToken(app, bob.username), code: code(secret, -1) })).statusCode, 200, 'one step behind')
  later()
  t.equal((await verify(app, { mfa_token: await mfaToken(app, bob.username), code: code(secret, 1) })).statusCode, 200, 'one step ahead')
  later()
  const token = await mfaToken(app, bob.username)
  t.equal((await verify(app, { mfa_token: token, code: code(secret, -2) })).statusCode, 401, 'two steps behind: expired')
  t.equal((await verify(app, { mfa_token: token, code: code(secret, 2) })).statusCode, 401, 'two steps ahead')
  t.equal((await verify(app, { mfa_token: token, code: wrongCode(secret) })).statusCode, 401, 'wrong')
  t.equal((await verify(app, { mfa_token: token, code: code(secret) })).statusCode, 200, 'a few wrong codes do not void the mfa_token')
  t.equal((await verify(app, { mfa_token: await mfaToken(app, bob.username), code: code(secret, -1) })).statusCode, 401,
    'a code older than one used is refused though inside the window')

  const failed = (await app.db.query("SELECT detail FROM audit_events WHERE subject_id = $1 AND type = 'mfa_failed'", [bob.id])).rows
  t.ok(failed.length >= 5, 'failures are audited')
  const logins = (await app.db.query("SELECT detail FROM audit_events WHERE subject_id = $1 AND type = 'login' ORDER BY id", [bob.id])).rows
  t.strictSame(logins[logins.length - 1].detail.amr, ['pwd', 'otp'])
})

t.test('an mfa_token dies after five wrong codes, after 5 minutes, and with a password change', async (t) => {
  const carol = await signUp(app, ctx)
  const { secret } = await enrol(app, carol)
  const guessed = await mfaToken(app, carol.username)
  for (let i = 0; i < 5; i++) t.equal((await verify(app, { mfa_token: guessed, code: wrongCode(secret) })).statusCode, 401)
  t.equal((await verify(app, { mfa_token: guessed, code: code(secret) })).statusCode, 401, 'void after five wrong codes')

  const expiring = await mfaToken(app, carol.username)
  const { rows: [{ ttl }] } = await app.db.query(
    'SELECT extract(epoch FROM max(expires_at) - max(created_at))::int AS ttl FROM mfa_challenges WHERE user_id = $1', [carol.id])
  t.equal(ttl, 300, 'it lives 5 minutes')
  await app.db.query("UPDATE mfa_challenges SET expires_at = clock_timestamp() - interval '1 second' WHERE user_id = $1", [carol.id])
  t.equal((await verify(app, { mfa_token: expiring, code: code(secret) })).statusCode, 401, 'expired')

  const stale = await mfaToken(app, carol.username)
  const change = await app.inject({ method: 'POST', url: '/auth/change-password', headers: bearer(carol.access), payload: { currentPassword: PASSWORD, newPassword: 'another passphrase' } })
  t.equal(change.statusCode, 204)
  t.equal((await verify(app, { mfa_token: stale, code: code(secret) })).statusCode, 401, 'bound to the password the login checked')

  t.equal((await verify(app, { mfa_token: 'x'.repeat(43), code: code(secret) })).statusCode, 401, 'an unknown mfa_token')
  t.equal((await verify(app, { mfa_token: stale })).statusCode, 400, 'neither code nor recovery_code')
  t.equal((await verify(app, { mfa_token: stale, code: code(secret), recovery_code: 'abcd-efgh-ijkl-mnop' })).statusCode, 400, 'both')
  t.equal((await verify(app, { mfa_token: stale, code: 123456 })).statusCode, 400, 'a number is not a code')
})

t.test('concurrent verifies: an mfa_token serves one login, a code one login', async (t) => {
  const lou = await signUp(app, ctx)
  const { secret } = await enrol(app, lou)
  const sessions = async () => (await app.db.query("SELECT count(*)::int AS n FROM sessions WHERE user_id = $1 AND 'otp' = ANY(amr)", [lou.id])).rows[0].n
  const token = await mfaToken(app, lou.username)
  const same = await Promise.all(Array.from({ length: 5 }, async () => await verify(app, { mfa_token: token, code: code(secret) })))
  t.strictSame(same.map((r) => r.statusCode).sort(), [200, 401, 401, 401, 401], 'one token, five at once: one login')
  t.equal(await sessions(), 1)

  later()
  const tokens = [await mfaToken(app, lou.username), await mfaToken(app, lou.username), await mfaToken(app, lou.username)]
  const shared = code(secret)
  const racing = await Promise.all(tokens.map(async (mfa) => await verify(app, { mfa_token: mfa, code: shared })))
  t.strictSame(racing.map((r) => r.statusCode).sort(), [200, 401, 401], 'one code on three logins at once: one')
  t.equal(await sessions(), 2)
})

t.test('waiting logins are kept five per user, and the expired ones are purged', async (t) => {
  const dan = await signUp(app, ctx)
  await enrol(app, dan)
  const tokens = []
  for (let i = 0; i < 7; i++) tokens.push(await mfaToken(app, dan.username))
  const count = async () => (await app.db.query('SELECT count(*)::int AS n FROM mfa_challenges WHERE user_id = $1', [dan.id])).rows[0].n
  t.equal(await count(), 5, 'at most five: the oldest go')
  t.equal((await verify(app, { mfa_token: tokens[0], code: '000000' })).statusCode, 401, 'the oldest is void')
  await app.db.query("UPDATE mfa_challenges SET expires_at = clock_timestamp() - interval '1 second' WHERE user_id = $1", [dan.id])
  t.ok(await app.mfa.purgeExpired() >= 5, 'the purge deletes expired ones')
  t.equal(await count(), 0)
})

t.test('wrong codes count toward the lockout; signing in again does not reset the count', async (t) => {
  const strict = await build(t, ctx, { LOCKOUT_THRESHOLD: 3 })
  strict.mfa.now = () => now
  const erin = await signUp(strict, ctx)
  const { secret } = await enrol(strict, erin)
  for (let i = 0; i < 4; i++) {
    later()
    t.equal((await verify(strict, { mfa_token: await mfaToken(strict, erin.username), code: code(secret) })).statusCode, 200,
      `a right code ends the run (sign-in ${i + 1})`)
  }
  later()
  const first = await mfaToken(strict, erin.username) // the run: 1 (the password step is not over)
  t.equal((await verify(strict, { mfa_token: first, code: wrongCode(secret) })).statusCode, 401) // 2
  const second = await mfaToken(strict, erin.username) // 3: the client is locked from the next attempt
  const locked = await verify(strict, { mfa_token: second, code: code(secret) })
  t.equal(locked.statusCode, 429, 'even the right code is refused while locked out')
  t.ok(Number(locked.headers['retry-after']) > 0)
  t.equal((await passwordStep(strict, erin.username)).statusCode, 429, 'and so is the password')
  t.ok((await auditTypes(erin.id)).includes('mfa_locked'))
})

t.test('recovery codes: each works once; a new set voids the old one', async (t) => {
  const fay = await signUp(app, ctx)
  const { recoveryCodes } = await enrol(app, fay)
  // Case and dashes do not matter.
  const typed = recoveryCodes[0].toUpperCase().replaceAll('-', ' ')
  const ok = await verify(app, { mfa_token: await mfaToken(app, fay.username), recovery_code: typed })
  t.equal(ok.statusCode, 200)
  t.strictSame(claims(ok.json().access_token).amr, ['pwd', 'otp'])
  t.equal((await verify(app, { mfa_token: await mfaToken(app, fay.username), recovery_code: recoveryCodes[0] })).statusCode, 401, 'used up')
  t.equal((await factorRows(fay.id)).codes, 9)
  const used = (await app.db.query("SELECT detail FROM audit_events WHERE subject_id = $1 AND type = 'mfa_recovery_used'", [fay.id])).rows
  t.strictSame(used.map((r) => r.detail), [{ remaining: 9 }])

  const wrong = await post(app, '/auth/mfa/recovery-codes', { password: 'wrong password' }, fay.access)
  t.equal(wrong.statusCode, 403)
  t.equal(wrong.json().code, 'AUTH_WRONG_PASSWORD')
  const fresh = await post(app, '/auth/mfa/recovery-codes', { password: PASSWORD }, fay.access)
  t.equal(fresh.statusCode, 200)
  t.equal(fresh.headers['cache-control'], 'no-store')
  t.equal(fresh.json().recoveryCodes.length, 10)
  t.equal((await verify(app, { mfa_token: await mfaToken(app, fay.username), recovery_code: recoveryCodes[1] })).statusCode, 401, 'the old set is void')
  t.equal((await verify(app, { mfa_token: await mfaToken(app, fay.username), recovery_code: fresh.json().recoveryCodes[1] })).statusCode, 200)
  t.ok((await auditTypes(fay.id)).includes('mfa_recovery_regenerated'))
})

t.test('enrolling and removing TOTP end the other sessions, at every instance', async (t) => {
  const other = await build(t, ctx)
  other.mfa.now = () => now
  const gus = await signUp(app, ctx)
  const elsewhere = await login(other, gus.username)
  const { secret } = await enrol(app, gus)
  t.equal((await me(other, elsewhere.access)).statusCode, 401, 'the other session is refused at the other instance')
  t.equal((await post(other, '/auth/refresh', { refresh_token: elsewhere.refresh })).statusCode, 401, 'its refresh token too')
  t.equal((await me(other, gus.access)).statusCode, 200, 'the session that enrolled goes on')

  later()
  const third = await signInWithCode(other, gus.username, secret)
  const wrong = await app.inject({ method: 'DELETE', url: '/auth/mfa/totp', headers: bearer(gus.access), payload: { password: 'wrong password' } })
  t.equal(wrong.statusCode, 403)
  t.equal((await me(other, third.access)).statusCode, 200, 'a wrong password changes nothing')
  const removed = await app.inject({ method: 'DELETE', url: '/auth/mfa/totp', headers: bearer(gus.access), payload: { password: PASSWORD } })
  t.equal(removed.statusCode, 204)
  t.equal((await me(other, third.access)).statusCode, 401, 'removing it ends the other sessions too')
  t.equal((await me(app, gus.access)).statusCode, 200)
  const plain = await passwordStep(app, gus.username)
  t.equal(plain.statusCode, 200, 'the password alone signs in again')
  t.strictSame(claims(plain.json().access_token).amr, ['pwd'])
  const rows = await factorRows(gus.id)
  t.equal(rows.totp, undefined, 'the secret is deleted')
  t.match(rows, { codes: 0, mfa: false }, 'and the recovery codes')
  t.equal((await app.inject({ method: 'DELETE', url: '/auth/mfa/totp', headers: bearer(gus.access), payload: { password: PASSWORD } })).statusCode, 404)
  t.equal((await post(app, '/auth/mfa/recovery-codes', { password: PASSWORD }, gus.access)).statusCode, 409, 'no recovery codes without a factor')
  t.ok((await auditTypes(gus.id)).includes('mfa_disabled'))
})

t.test('authority at commit: a confirm racing a logout or a disable does not enrol', async (t) => {
  const admin = await signUp(app, ctx, { role: 'admin', label: 'admin' })
  const ends = {
    logout: async (user: Account) => await post(app, '/auth/logout', undefined, user.access),
    disable: async (user: Account) => await app.inject({ method: 'PATCH', url: `/users/${user.id}`, headers: bearer(admin.access), payload: { disabled: true } })
  }
  for (const [what, end] of Object.entries(ends)) {
    const hal = await signUp(app, ctx)
    const secret = base32Decode((await post(app, '/auth/mfa/totp', undefined, hal.access)).json().secret)
    // Held before its transaction: the request is past its door (authenticate), not yet at commit.
    const held = holdNext(t, app.revocation, 'revoke')
    const confirming = post(app, '/auth/mfa/totp/confirm', { code: code(secret) }, hal.access)
    await held.reached
    t.ok((await end(hal)).statusCode < 300, `${what} while the confirm waits`)
    held.release()
    const res = await confirming
    t.equal(res.statusCode, 401, `${what} committed first: the confirm is refused`)
    t.match(await factorRows(hal.id), { totp: { confirmed_at: null }, codes: 0, mfa: false }, `${what}: nothing enrolled`)
  }
})

t.test('a login that checked the password while TOTP was being enrolled gets no password-only session', async (t) => {
  const max = await signUp(app, ctx)
  const secret = base32Decode((await post(app, '/auth/mfa/totp', undefined, max.access)).json().secret)
  // Hold the next session insert: the login has read the user (no factor yet) and checked the password.
  const { reached, release } = holdNext(t, app.sessions.repository, 'create')
  const signingIn = passwordStep(app, max.username)
  await reached
  t.equal((await post(app, '/auth/mfa/totp/confirm', { code: code(secret) }, max.access)).statusCode, 200, 'enrolled meanwhile')
  later()
  release()
  t.equal((await signingIn).statusCode, 401, 'the login in flight gets no session without the second factor')
  const { rows } = await app.db.query('SELECT count(*)::int AS n FROM sessions WHERE user_id = $1', [max.id])
  t.equal(rows[0].n, 1, 'only the session that enrolled')
})

t.test('admins see mfaEnabled, and remove a user\'s second factor: its sessions end, audited', async (t) => {
  const admin = await signUp(app, ctx, { role: 'admin', label: 'admin' })
  const ivy = await signUp(app, ctx)
  const get = async () => (await app.inject({ method: 'GET', url: `/users/${ivy.id}`, headers: bearer(admin.access) })).json()
  t.equal((await get()).mfaEnabled, false)
  const { secret } = await enrol(app, ivy)
  t.equal((await get()).mfaEnabled, true)

  const reset = (as: string, id = ivy.id) => app.inject({ method: 'DELETE', url: `/users/${id}/mfa`, headers: bearer(as) })
  t.equal((await reset(ivy.access)).statusCode, 403, 'admins only')
  const second = await signInWithCode(app, ivy.username, secret)
  t.equal((await reset(admin.access)).statusCode, 204)
  t.equal((await me(app, ivy.access)).statusCode, 401, 'every session of the user ends')
  t.equal((await me(app, second.access)).statusCode, 401)
  t.equal((await me(app, admin.access)).statusCode, 200)
  t.equal((await get()).mfaEnabled, false)
  t.equal((await passwordStep(app, ivy.username)).statusCode, 200, 'the password alone signs in')
  t.equal((await reset(admin.access)).statusCode, 404, 'nothing to remove')
  t.equal((await reset(admin.access, '00000000-0000-4000-8000-000000000000')).statusCode, 404)
  const { rows } = await app.db.query("SELECT actor_id FROM audit_events WHERE subject_id = $1 AND type = 'mfa_reset'", [ivy.id])
  t.strictSame(rows, [{ actor_id: admin.id }])
})

t.test('a temporary password is changed first, then the second factor is still asked', async (t) => {
  const admin = await signUp(app, ctx, { role: 'admin', label: 'admin' })
  const kai = await signUp(app, ctx)
  const { secret } = await enrol(app, kai)
  const set = await app.inject({ method: 'POST', url: `/users/${kai.id}/password`, headers: bearer(admin.access), payload: { password: 'temporary horse staple' } })
  t.equal(set.statusCode, 204)
  const refused = await passwordStep(app, kai.username, 'temporary horse staple')
  t.equal(refused.statusCode, 403)
  t.match(refused.json(), { code: 'AUTH_PASSWORD_CHANGE_REQUIRED', reset_token: String })
  t.notOk('mfa_token' in refused.json(), 'no second step is started with a temporary password')
  const reset = await post(app, '/auth/password/reset', { token: refused.json().reset_token, newPassword: 'kai chose this passphrase' })
  t.equal(reset.statusCode, 204)
  const next = await passwordStep(app, kai.username, 'kai chose this passphrase')
  t.equal(next.statusCode, 403)
  t.match(next.json(), { code: 'AUTH_MFA_REQUIRED', mfa_token: String }, 'the second factor stays')
  const signedIn = await verify(app, { mfa_token: next.json().mfa_token, code: code(secret) })
  t.equal(signedIn.statusCode, 200)
})

t.test('downstream checks: /auth/verify?amr=otp, and the hot path costs what it did', async (t) => {
  const jay = await signUp(app, ctx)
  const { secret } = await enrol(app, jay)
  const withCode = await signInWithCode(app, jay.username, secret)
  const check = (access: string, query: string) => app.inject({ method: 'GET', url: `/auth/verify${query}`, headers: bearer(access) })
  const plain = await check(jay.access, '?amr=otp')
  t.equal(plain.statusCode, 403, 'a password-only sign-in')
  t.match(plain.json(), { code: 'AUTH_MFA_REQUIRED' })
  t.equal(plain.headers['cache-control'], 'no-store')
  t.equal((await check(jay.access, '?amr=mfa')).statusCode, 403)
  t.equal((await check(withCode.access, '?amr=otp')).statusCode, 200)
  t.equal((await check(withCode.access, '?amr=mfa')).statusCode, 200)
  t.equal((await check(withCode.access, '?amr=hwk')).statusCode, 403, 'not a passkey')
  t.equal((await check(jay.access, '?amr=pwd')).statusCode, 200)
  t.equal((await check(jay.access, '?amr=sms')).statusCode, 400)
  t.equal((await check(jay.access, '')).statusCode, 200, 'no amr asked: any sign-in')

  // Introspection (RFC 7662) says it too, for services that ask rather than read tokens.
  const client = await app.clients.create(`mfa-${ctx.tag}`)
  t.teardown(() => app.clients.delete(client.id))
  const introspect = async (token: string) => (await app.inject({
    method: 'POST',
    url: '/oauth/introspect',
    headers: { authorization: `Basic ${Buffer.from(`${client.clientId}:${client.clientSecret}`).toString('base64')}` },
    payload: { token }
  })).json()
  t.match(await introspect(withCode.access), { active: true, amr: ['pwd', 'otp'] })
  t.match(await introspect(withCode.refresh), { active: true, token_type: 'refresh_token', amr: ['pwd', 'otp'] })
  t.match(await introspect(jay.access), { active: true, amr: ['pwd'] })

  await me(app, withCode.access)
  const cost = await costs(app, () => me(app, withCode.access))
  t.equal(cost.result.statusCode, 200)
  t.equal(cost.pgQueries, 0, 'no PostgreSQL on the hot path')
  t.equal(cost.redisCommands, 1, 'one Redis command')
})

t.test('no log line carries a secret, a code or an mfa_token', async (t) => {
  const lines: string[] = []
  const logged = await build(t, ctx, { LOG_LEVEL: 'trace' }, { logStream: { write: (line) => { lines.push(line) } } })
  logged.mfa.now = () => now
  const kim = await signUp(logged, ctx)
  const { secret, recoveryCodes } = await enrol(logged, kim)
  const token = await mfaToken(logged, kim.username)
  const used = code(secret)
  await verify(logged, { mfa_token: token, code: wrongCode(secret) })
  await verify(logged, { mfa_token: token, code: used })
  await verify(logged, { mfa_token: await mfaToken(logged, kim.username), recovery_code: recoveryCodes[0] })
  // Should a line ever carry a body, the second-factor fields come out redacted.
  logged.log.info({ body: { mfa_token: token, code: used, recovery_code: recoveryCodes[1], secret: 'JBSWY3DP' } }, 'probe')
  // The request line is written when the response has gone.
  await new Promise((resolve) => setTimeout(resolve, 100))
  const text = lines.join('\n')
  t.ok(text.includes('request completed'), 'the requests were logged')
  t.match(lines.find((l) => l.includes('"probe"')), /"mfa_token":"\[Redacted\]","code":"\[Redacted\]","recovery_code":"\[Redacted\]","secret":"\[Redacted\]"/)
  // A code is six digits, which a timestamp may hold too: looked for as a JSON string.
  for (const [what, value] of [['secret', secret.toString('hex')], ['base32 secret', base32Encode(secret)],
    ['code', `"${used}"`], ['mfa_token', token], ['recovery codes', recoveryCodes[0]], ['recovery codes', recoveryCodes[1]], ['password', PASSWORD], ['secret', 'JBSWY3DP']]) {
    t.notOk(text.includes(value), `no ${what}`)
  }
})
