// Account recovery end to end, with a real SMTP server in the test process: email
// verification, forgot → mail → reset → every old session refused (at two instances),
// tokens used twice, expired, superseded or outlived by a password change, the same answer
// and time for unknown accounts, limits, an SMTP server that is down, and no mail at all.
import { createServer, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { bearer, build, context, freePort, login, me, PASSWORD, type Overrides } from '../helper.js'
import { smtpServer, tokenOf } from '../support/smtp.js'
import { MEMORY_ACCOUNTS } from '../../plugins/app/recovery/recovery-service.js'

const ctx = await context(t)
const smtp = await smtpServer(t)
const MAIL = { SMTP_URL: smtp.url, MAIL_FROM: 'Auth <auth@example.com>', APP_URL: 'https://app.example.com' }
// Two instances on one database and Redis (the helper keeps the limits out of the way
// unless a test sets them).
const loose: Overrides = MAIL
const app = await build(t, ctx, loose)
const other = await build(t, ctx, loose)

interface Member {
  id: string
  username: string
  email: string
  access: string
  refresh: string
}

const emailOf = (username: string) => `${username}@Example.com`

function post (server: FastifyInstance, url: string, payload: unknown, headers: Record<string, string> = {}) {
  return server.inject({ method: 'POST', url, payload: payload as object, headers })
}

/** Registers with an email, proves it with the mailed token, signs in. */
async function member (label = 'm'): Promise<Member> {
  const username = ctx.username(label)
  const email = emailOf(username)
  const res = await post(app, '/auth/register', { username, password: PASSWORD, email })
  if (res.statusCode !== 201) throw new Error(`register: ${res.statusCode} ${res.body}`)
  const verified = await post(app, '/auth/email/verify', { token: tokenOf(await smtp.next(email)) })
  if (verified.statusCode !== 204) throw new Error(`verify: ${verified.statusCode} ${verified.body}`)
  return { id: res.json().id, username, email, ...await login(app, username) }
}

async function forgot (server: FastifyInstance, body: Record<string, string>) {
  const res = await post(server, '/auth/password/forgot', body)
  await server.mail.idle()
  return res
}

async function resetToken (server: FastifyInstance, m: Member): Promise<string> {
  const res = await forgot(server, { username: m.username })
  if (res.statusCode !== 202) throw new Error(`forgot: ${res.statusCode} ${res.body}`)
  return tokenOf(await smtp.next(m.email))
}

t.test('register with an email: unverified, a verification mail, then verified and a login name', async (t) => {
  const username = ctx.username('reg')
  const email = emailOf(username)
  const res = await post(app, '/auth/register', { username, password: PASSWORD, email })
  t.equal(res.statusCode, 201)
  t.match(res.json(), { username, email, emailVerified: false })
  t.equal(res.headers['cache-control'], 'no-store')
  t.equal((await post(app, '/auth/login', { username: email, password: PASSWORD })).statusCode, 401, 'an unverified email does not sign in')

  const mail = await smtp.next(email)
  t.equal(mail.subject, 'Confirm your email address')
  t.match(mail.from?.text, 'auth@example.com')
  const token = tokenOf(mail)
  t.match(mail.text, `https://app.example.com/verify-email?token=${token}`)
  t.match(mail.html, `href="https://app.example.com/verify-email?token=${token}"`)
  t.match(mail.text, username, 'the template got its variables')

  t.equal((await post(app, '/auth/email/verify', { token })).statusCode, 204)
  const again = await post(app, '/auth/email/verify', { token })
  t.equal(again.statusCode, 400, 'a verification token works once')
  t.equal(again.json().code, 'AUTH_INVALID_RECOVERY_TOKEN')

  const byEmail = await post(app, '/auth/login', { username: email.toUpperCase(), password: PASSWORD })
  t.equal(byEmail.statusCode, 200, 'the verified email signs in, in any case')
  const self = await app.inject({ method: 'PATCH', url: '/auth/me', headers: bearer(byEmail.json().access_token), payload: {} })
  t.match(self.json(), { username, email, emailVerified: true })
  const { rows } = await app.db.query("SELECT type FROM audit_events WHERE subject_id = $1 AND type = 'email_verified'", [res.json().id])
  t.equal(rows.length, 1, 'audited')

  const taken = await post(app, '/auth/register', { username: ctx.username('reg'), password: PASSWORD, email: email.toLowerCase() })
  t.equal(taken.statusCode, 409, 'an email is unique without regard to case')
  t.equal(taken.json().message, 'Email is already in use')
  for (const bad of ['no-at-sign', 'two@@example.com', 'ünï@example.com', 'a@b', `${'x'.repeat(250)}@example.com`, 12345678]) {
    const res = await post(app, '/auth/register', { username: ctx.username('reg'), password: PASSWORD, email: bad })
    t.equal(res.statusCode, 400, `email ${String(bad).slice(0, 20)}`)
  }
})

t.test('a login by email counts toward the lockout of the account\'s username', async (t) => {
  const locked = await build(t, ctx, { ...loose, LOCKOUT_THRESHOLD: 2 })
  const m = await member('lock')
  await post(locked, '/auth/login', { username: m.email, password: 'wrong password' })
  await post(locked, '/auth/login', { username: m.username, password: 'wrong password' })
  const res = await post(locked, '/auth/login', { username: m.username, password: PASSWORD })
  t.equal(res.statusCode, 429, 'two failures, by email then by username, lock the one account')
})

t.test('forgot → mail → reset at another instance → every old session refused at both', async (t) => {
  const m = await member('flow')
  const elsewhere = await login(other, m.username)
  t.equal((await me(other, m.access)).statusCode, 200)

  const res = await forgot(other, { email: m.email.toLowerCase() })
  t.equal(res.statusCode, 202)
  t.strictSame(res.json(), { message: 'If the account exists and has a verified email, a mail with a reset token is on its way' })
  const mail = await smtp.next(m.email)
  t.equal(mail.subject, 'Reset your password')
  const token = tokenOf(mail)
  t.match(mail.text, `https://app.example.com/reset-password?token=${token}`)
  t.match(mail.text, '30 minutes')

  const reset = await post(app, '/auth/password/reset', { token, newPassword: 'a brand new passphrase' })
  t.equal(reset.statusCode, 204)
  for (const [server, name] of [[app, 'this'], [other, 'the other']] as const) {
    for (const access of [m.access, elsewhere.access]) t.equal((await me(server, access)).statusCode, 401, `old access token refused at ${name} instance`)
    for (const refresh of [m.refresh, elsewhere.refresh]) {
      t.equal((await post(server, '/auth/refresh', { refresh_token: refresh })).statusCode, 401, `old refresh token refused at ${name} instance`)
    }
  }
  t.equal((await post(other, '/auth/login', { username: m.username, password: PASSWORD })).statusCode, 401, 'the old password is gone')
  t.equal((await post(other, '/auth/login', { username: m.email, password: 'a brand new passphrase' })).statusCode, 200, 'the new one works')
  t.equal((await post(app, '/auth/password/reset', { token, newPassword: 'yet another passphrase' })).statusCode, 400, 'the token is used up')

  const { rows } = await app.db.query(
    "SELECT type, detail FROM audit_events WHERE subject_id = $1 AND type IN ('password_reset_requested', 'password_reset') ORDER BY id", [m.id])
  t.match(rows, [{ type: 'password_reset_requested', detail: { mailed: true } }, { type: 'password_reset' }])
  t.notOk(JSON.stringify(rows).includes(token), 'no token in the audit log')
})

t.test('tokens: used twice, expired, from a previous request, outlived by a password change, malformed', async (t) => {
  const m = await member('tok')

  const expired = await resetToken(app, m)
  await app.db.query("UPDATE recovery_tokens SET expires_at = clock_timestamp() - interval '1 second' WHERE user_id = $1", [m.id])
  t.equal((await post(app, '/auth/password/reset', { token: expired, newPassword: 'another passphrase' })).statusCode, 400, 'expired')

  const first = await resetToken(app, m)
  const second = await resetToken(other, m)
  t.not(first, second)
  t.equal((await post(app, '/auth/password/reset', { token: first, newPassword: 'another passphrase' })).statusCode, 400, 'a newer request replaces the token')

  await post(app, '/auth/change-password', { currentPassword: PASSWORD, newPassword: 'changed passphrase' }, bearer(m.access))
  t.equal((await post(app, '/auth/password/reset', { token: second, newPassword: 'another passphrase' })).statusCode, 400, 'a password change kills it')

  const weak = await resetToken(app, m)
  const res = await post(app, '/auth/password/reset', { token: weak, newPassword: 'password123' })
  t.equal(res.statusCode, 400)
  t.equal(res.json().code, 'AUTH_WEAK_PASSWORD', 'the password rules apply')
  t.equal((await post(app, '/auth/password/reset', { token: weak, newPassword: 'a fine passphrase' })).statusCode, 204, 'and a refused password leaves the token usable')
  t.equal((await post(app, '/auth/password/reset', { token: weak, newPassword: 'a fine passphrase' })).statusCode, 400, 'used twice')

  const verify = await post(app, '/auth/email/verify', { token: second })
  t.equal(verify.statusCode, 400, 'a reset token is no verification token')
  for (const token of ['', 'x'.repeat(129), 'has space', 12345678, null]) {
    t.equal((await post(app, '/auth/password/reset', { token, newPassword: 'a fine passphrase' })).statusCode, 400, `token ${String(token)}`)
  }
  const { rows } = await app.db.query('SELECT token_hash FROM recovery_tokens WHERE user_id = $1', [m.id])
  t.ok(rows.every((r: { token_hash: Buffer }) => r.token_hash.length === 32), 'only SHA-256 hashes are stored')
})

t.test('two resets with one token at once: one succeeds', async (t) => {
  const m = await member('race')
  const token = await resetToken(app, m)
  const results = await Promise.all([app, other, app, other].map(async (server, i) =>
    (await post(server, '/auth/password/reset', { token, newPassword: `racing passphrase ${i}` })).statusCode))
  t.strictSame(results.filter((s) => s === 204).length, 1, `exactly one wins (${results.join(', ')})`)
  t.ok(results.every((s) => s === 204 || s === 400))
})

t.test('no mail for an unknown account, an unverified email, or a disabled user: the same 202', async (t) => {
  const username = ctx.username('unver')
  const unverified = emailOf(username)
  await post(app, '/auth/register', { username, password: PASSWORD, email: unverified })
  await smtp.next(unverified) // the verification mail, left unused
  const disabled = await member('dis')
  await app.db.query('UPDATE users SET disabled = true WHERE id = $1', [disabled.id])
  const before = smtp.mails.length
  const answers: Array<{ status: number, body: string }> = []
  const bodies: Array<Record<string, string>> = [{ username: ctx.username('nobody') }, { email: emailOf(ctx.username('nobody')) }, { username },
    { email: unverified }, { username: disabled.username }]
  for (const body of bodies) {
    const res = await forgot(app, body)
    answers.push({ status: res.statusCode, body: res.body })
  }
  t.ok(answers.every((a) => a.status === 202 && a.body === answers[0].body), 'one answer for all')
  t.equal(smtp.mails.length, before, 'no mail went out')
  for (const bad of [{}, { username: 'ab' }, { username, email: unverified }, { email: 'nope' }, { username: 12345678 }]) {
    t.equal((await post(app, '/auth/password/forgot', bad)).statusCode, 400, JSON.stringify(bad))
  }
})

t.test('rate limits: per account name (whether or not it exists) and per client', async (t) => {
  const limited = await build(t, ctx, { ...MAIL, RECOVERY_ACCOUNT_LIMIT: 2 })
  const m = await member('lim')
  for (const name of [m.username, ctx.username('ghost')]) {
    const statuses = []
    for (let i = 0; i < 3; i++) statuses.push((await forgot(limited, { username: name })).statusCode)
    t.strictSame(statuses, [202, 202, 429], 'the third in an hour is refused')
  }
  const refused = await post(limited, '/auth/password/forgot', { username: m.username })
  t.ok(Number(refused.headers['retry-after']) > 3000, 'Retry-After says when the hour is up')
  t.equal(smtp.to(m.email).filter((mail) => mail.subject === 'Reset your password').length, 2, 'two mails went out')

  // (Per-client counters are shared by every instance: this client's address is its own.)
  const perClient = await build(t, ctx, { ...MAIL, RECOVERY_RATE_LIMIT: 2 })
  const statuses = []
  for (let i = 0; i < 3; i++) {
    const res = await perClient.inject({ method: 'POST', url: '/auth/password/forgot', payload: { username: ctx.username('ghost') }, remoteAddress: '10.7.7.7' })
    statuses.push(res.statusCode)
  }
  t.strictSame(statuses, [202, 202, 429])
  await perClient.mail.idle()
})

t.test('forgot takes about the same time for an existing account and an unknown one', async (t) => {
  const members = [await member('time'), await member('time')]
  const unknown = (i: number) => ctx.username(`ghost${i}`)
  // Each measured request follows the same thing, an unmeasured request for an unknown
  // name, once its job is done: what is compared is the request itself, not the aftermath
  // of the previous one's mail (here the SMTP server runs in this process and parses it).
  let spare = 0
  const timed = async (body: Record<string, string>) => {
    await post(app, '/auth/password/forgot', { username: ctx.username(`spare${spare++ % 10}`) })
    await app.mail.idle()
    await sleep(10)
    const started = process.hrtime.bigint()
    const res = await post(app, '/auth/password/forgot', body)
    const ms = Number(process.hrtime.bigint() - started) / 1e6
    await app.mail.idle()
    if (res.statusCode !== 202) throw new Error(`forgot: ${res.statusCode}`)
    return ms
  }
  // Warm up, then interleave, so that drift hits both sides alike.
  for (let i = 0; i < 5; i++) {
    await timed({ username: unknown(i) })
    await timed({ email: members[i % 2].email })
  }
  const known: number[] = []
  const ghosts: number[] = []
  for (let i = 0; i < 30; i++) {
    known.push(await timed({ email: members[i % 2].email }))
    ghosts.push(await timed({ email: emailOf(unknown(i)) }))
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
  const [a, b] = [median(known), median(ghosts)]
  t.comment(`forgot median: existing ${a.toFixed(2)} ms, unknown ${b.toFixed(2)} ms`)
  t.ok(Math.abs(a - b) / Math.max(a, b) < 0.4, `medians within 40 % (${a.toFixed(2)} vs ${b.toFixed(2)} ms)`)
  // (The mails went out all the same.)
  t.ok(smtp.to(members[0].email).length >= 15)
})

t.test('SMTP down: forgot still answers 202 at once; the failure is logged without the token, and counted', async (t) => {
  const port = await freePort() // nothing listens there
  const lines: string[] = []
  const down = await build(t, ctx, { ...loose, SMTP_URL: `smtp://mailer:s3cret-pass@127.0.0.1:${port}`, LOG_LEVEL: 'info' },
    { logStream: { write: (line: string) => { lines.push(line) } } })
  const m = await member('down')
  const started = Date.now()
  const res = await post(down, '/auth/password/forgot', { username: m.username })
  t.equal(res.statusCode, 202)
  t.ok(Date.now() - started < 1000, 'answered without waiting for the mail')
  await down.mail.idle()
  const metrics = (await down.inject('/metrics')).body
  t.match(metrics, /auth_mail_failures_total\{template="password-reset",reason="smtp"\} 1/)
  t.match(metrics, /auth_mails_sent_total\{template="password-reset"\} 0/)
  const log = lines.join('')
  t.match(log, /mail not sent/)
  t.notMatch(log, /s3cret-pass/, 'the SMTP password is never logged')
  const { rows } = await down.db.query("SELECT count(*)::int AS n FROM recovery_tokens WHERE user_id = $1 AND purpose = 'password_reset'", [m.id])
  t.equal(rows[0].n, 1, 'the token was issued (a retry of forgot replaces it)')
  t.match(log, /mail: SMTP at 127\.0\.0\.1:\d+/, 'start-up says where mail goes, without credentials')
})

t.test('an SMTP server that never answers does not hold the request', async (t) => {
  const sockets: Socket[] = []
  const silent = createServer((socket) => { sockets.push(socket) })
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { for (const s of sockets) s.destroy(); silent.close() })
  const port = (silent.address() as { port: number }).port
  const hung = await build(t, ctx, { ...loose, SMTP_URL: `smtp://127.0.0.1:${port}` })
  const m = await member('hang')
  const started = Date.now()
  t.equal((await post(hung, '/auth/password/forgot', { username: m.username })).statusCode, 202)
  t.ok(Date.now() - started < 1000, 'answered while the SMTP server stays silent')
  for (let i = 0; i < 200 && sockets.length === 0; i++) await sleep(10)
  t.equal(sockets.length, 1, 'the mail is being sent meanwhile')
  for (const s of sockets) s.destroy()
  await hung.mail.idle()
  t.match((await hung.inject('/metrics')).body, /auth_mail_failures_total\{template="password-reset",reason="smtp"\} 1/)
})

t.test('without SMTP_URL: the flows that send mail answer 501; tokens already issued still work', async (t) => {
  const plain = await build(t, ctx)
  const m = await member('plain')
  const res = await post(plain, '/auth/password/forgot', { username: m.username })
  t.equal(res.statusCode, 501)
  t.match(res.json(), { statusCode: 501, error: 'Not Implemented', code: 'AUTH_NOT_CONFIGURED' })
  const patch = await plain.inject({ method: 'PATCH', url: '/auth/me', headers: bearer(m.access), payload: { email: emailOf(ctx.username('new')) } })
  t.equal(patch.statusCode, 501)
  const removed = await plain.inject({ method: 'PATCH', url: '/auth/me', headers: bearer(m.access), payload: { email: null } })
  t.equal(removed.statusCode, 200, 'removing an email sends nothing')
  t.match(removed.json(), { email: null, emailVerified: false })
  const registered = await post(plain, '/auth/register', { username: ctx.username('plain'), password: PASSWORD, email: emailOf(ctx.username('plain')) })
  t.equal(registered.statusCode, 201, 'registering with an email still works (it stays unverified)')
  const token = await app.recovery.issueReset(m.id)
  t.equal((await post(plain, '/auth/password/reset', { token, newPassword: 'a plain passphrase' })).statusCode, 204, 'a reset token (an admin\'s) works without mail')
})

t.test('PATCH /auth/me: a new email starts unverified with a mail; 409 taken; the old token dies', async (t) => {
  const m = await member('patch')
  const taker = await member('taker')
  const next = emailOf(ctx.username('next'))
  const res = await app.inject({ method: 'PATCH', url: '/auth/me', headers: bearer(m.access), payload: { email: next } })
  t.equal(res.statusCode, 200)
  t.match(res.json(), { id: m.id, email: next, emailVerified: false })
  t.equal(res.headers['cache-control'], 'no-store')
  const first = tokenOf(await smtp.next(next))
  t.equal((await forgot(app, { email: m.email })).statusCode, 202)
  t.equal(smtp.to(m.email).filter((mail) => mail.subject === 'Reset your password').length, 0, 'the old address gets no reset mail')

  const again = await app.inject({ method: 'PATCH', url: '/auth/me', headers: bearer(m.access), payload: { email: next } })
  t.equal(again.statusCode, 200, 'the same unverified address: the mail again')
  const second = tokenOf(await smtp.next(next))
  t.equal((await post(app, '/auth/email/verify', { token: first })).statusCode, 400, 'the newer mail replaces the older')

  const conflict = await app.inject({ method: 'PATCH', url: '/auth/me', headers: bearer(m.access), payload: { email: taker.email.toUpperCase() } })
  t.equal(conflict.statusCode, 409)
  t.equal(conflict.json().message, 'Email is already in use')

  const removed = await app.inject({ method: 'PATCH', url: '/auth/me', headers: bearer(m.access), payload: { email: null } })
  t.match(removed.json(), { email: null, emailVerified: false })
  t.equal((await post(app, '/auth/email/verify', { token: second })).statusCode, 400, 'a token for an address the user no longer has is refused')
  const moved = emailOf(ctx.username('moved'))
  await app.inject({ method: 'PATCH', url: '/auth/me', headers: bearer(m.access), payload: { email: moved } })
  t.equal((await post(app, '/auth/email/verify', { token: tokenOf(await smtp.next(moved)) })).statusCode, 204)
  const unchanged = await app.inject({ method: 'PATCH', url: '/auth/me', headers: bearer(m.access), payload: { email: moved } })
  t.match(unchanged.json(), { email: moved, emailVerified: true }, 'setting the verified address again changes nothing')
  t.equal((await app.inject({ method: 'PATCH', url: '/auth/me', payload: { email: moved } })).statusCode, 401)

  const { rows } = await app.db.query("SELECT count(*)::int AS n FROM audit_events WHERE subject_id = $1 AND type = 'email_changed'", [m.id])
  t.equal(rows[0].n, 3, 'each change audited (a new address, its removal, another one)')
})

t.test('PATCH /auth/me refuses a session that ended while it waited', async (t) => {
  const m = await member('ended')
  // The user's row is held by another transaction; the session ends meanwhile.
  const client = await app.db.connect()
  try {
    await client.query('BEGIN')
    await client.query('SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [m.id])
    const patch = app.inject({ method: 'PATCH', url: '/auth/me', headers: bearer(m.access), payload: { email: emailOf(ctx.username('late')) } })
    await sleep(100)
    await client.query('UPDATE users SET revoked_after = clock_timestamp() WHERE id = $1', [m.id])
    await client.query('COMMIT')
    t.equal((await patch).statusCode, 401)
  } finally {
    client.release()
  }
  const { rows } = await app.db.query('SELECT email FROM users WHERE id = $1', [m.id])
  t.equal(rows[0].email, m.email, 'nothing changed')
})

t.test('expired tokens are purged', async (t) => {
  const m = await member('purge')
  await resetToken(app, m)
  const { rows: before } = await app.db.query('SELECT count(*)::int AS n FROM recovery_tokens WHERE user_id = $1', [m.id])
  t.equal(before[0].n, 1, 'one live token per user and purpose (the used verification token is gone)')
  t.equal(await app.recovery.purgeExpired() >= 0, true)
  const { rows: kept } = await app.db.query('SELECT count(*)::int AS n FROM recovery_tokens WHERE user_id = $1', [m.id])
  t.equal(kept[0].n, 1, 'a live token is kept')
  await app.db.query("UPDATE recovery_tokens SET expires_at = clock_timestamp() - interval '1 second' WHERE user_id = $1", [m.id])
  t.ok(await app.recovery.purgeExpired() >= 1)
  const { rows: after } = await app.db.query('SELECT count(*)::int AS n FROM recovery_tokens WHERE user_id = $1', [m.id])
  t.equal(after[0].n, 0, 'an expired one is deleted')
})

t.test('without Redis (one instance): the per-account limit is counted in the process, its window ends, its map is capped', async (t) => {
  const local = await build(t, ctx, { ...MAIL, RECOVERY_ACCOUNT_LIMIT: 2 }, { withoutRedis: true })
  t.equal(local.redis, null)
  const name = ctx.username('local')
  const statuses = []
  for (let i = 0; i < 3; i++) statuses.push((await forgot(local, { username: name.toUpperCase() })).statusCode)
  t.strictSame(statuses, [202, 202, 429], 'the third in an hour is refused, the name in any case')
  const counts = local.recovery.memoryCounts
  t.equal(counts.maxEntries, MEMORY_ACCOUNTS, 'a cap')
  const later = Date.now() + 60 * 60_000 + 1
  t.equal(counts.get(name.toLowerCase(), later), undefined, 'the count ends with its hour')
  await local.mail.idle()
})

t.test('the account limit\'s Redis key expires with its window', async (t) => {
  const name = ctx.username('ttl')
  await forgot(app, { username: name })
  const ttl = await (app.redis as NonNullable<typeof app.redis>).pttl(`{recovery:${name.toLowerCase()}}`)
  t.ok(ttl > 0 && ttl <= 60 * 60_000, `expires (${ttl} ms)`)
})
