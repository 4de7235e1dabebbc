import t from 'tap'
import { bearer, build, context, holdNext, login, me, PASSWORD, signUp } from '../helper.js'

const ctx = await context(t)
const app = await build(t, ctx)

function decode (token: string): Record<string, any> {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString())
}

t.test('register', async (t) => {
  t.test('creates a user with role user, ignoring a role in the body', async (t) => {
    const username = ctx.username('Reg')
    const res = await app.inject({ method: 'POST', url: '/auth/register', payload: { username, password: PASSWORD, role: 'admin' } })
    t.equal(res.statusCode, 201)
    t.match(res.json(), { id: /^[0-9a-f-]{36}$/, username, role: 'user', disabled: false, createdAt: String })
    t.notOk('password' in res.json())
    const { rows } = await app.db.query('SELECT role, password_hash FROM users WHERE id = $1', [res.json().id])
    t.equal(rows[0].role, 'user')
    t.match(rows[0].password_hash, /^\$argon2id\$/)
  })

  t.test('409 for a username taken in any case, and nothing is written', async (t) => {
    const username = ctx.username('Dup')
    t.equal((await app.inject({ method: 'POST', url: '/auth/register', payload: { username, password: PASSWORD } })).statusCode, 201)
    const res = await app.inject({ method: 'POST', url: '/auth/register', payload: { username: username.toUpperCase(), password: PASSWORD } })
    t.equal(res.statusCode, 409)
    t.match(res.json(), { statusCode: 409, error: 'Conflict', message: String })
    const { rows } = await app.db.query('SELECT count(*)::int AS n FROM users WHERE lower(username) = lower($1)', [username])
    t.equal(rows[0].n, 1)
  })

  t.test('400 for invalid input, never 500', async (t) => {
    const good = ctx.username()
    const bad: unknown[] = [
      {},
      { username: good },
      { password: PASSWORD },
      { username: 'ab', password: PASSWORD },
      { username: 'x'.repeat(33), password: PASSWORD },
      { username: 'has space', password: PASSWORD },
      { username: 'ünïcode', password: PASSWORD },
      { username: good, password: 'short' },
      { username: good, password: 'x'.repeat(129) },
      { username: good, password: 'nul\u0000byte-password' },
      { username: 12345678, password: PASSWORD },
      { username: good, password: 12345678 },
      { username: true, password: PASSWORD },
      { username: null, password: PASSWORD },
      { username: [good], password: PASSWORD },
      [good, PASSWORD],
      'just a string',
      null
    ]
    for (const payload of bad) {
      const res = await app.inject({ method: 'POST', url: '/auth/register', headers: { 'content-type': 'application/json' }, payload: JSON.stringify(payload) })
      t.equal(res.statusCode, 400, JSON.stringify(payload))
      t.equal(res.json().error, 'Bad Request')
    }
    const badJson = await app.inject({ method: 'POST', url: '/auth/register', headers: { 'content-type': 'application/json' }, payload: '{"username":' })
    t.equal(badJson.statusCode, 400)
    const huge = await app.inject({ method: 'POST', url: '/auth/register', payload: { username: good, password: 'x'.repeat(100_000) } })
    t.equal(huge.statusCode, 413)
    t.notOk(huge.body.includes('at '), 'no stack trace')
  })

  t.test('a password of 128 characters is accepted and every character counts', async (t) => {
    const username = ctx.username()
    const long = 'p'.repeat(127) + 'A'
    t.equal((await app.inject({ method: 'POST', url: '/auth/register', payload: { username, password: long } })).statusCode, 201)
    const wrongLast = await app.inject({ method: 'POST', url: '/auth/login', payload: { username, password: 'p'.repeat(128) } })
    t.equal(wrongLast.statusCode, 401)
    t.equal((await app.inject({ method: 'POST', url: '/auth/login', payload: { username, password: long } })).statusCode, 200)
  })
})

t.test('login', async (t) => {
  const alice = await signUp(app, ctx)

  t.test('JSON credentials, username in any case: an OAuth 2.0 token pair', async (t) => {
    const res = await app.inject({ method: 'POST', url: '/auth/login', payload: { username: alice.username.toUpperCase(), password: PASSWORD } })
    t.equal(res.statusCode, 200)
    t.equal(res.headers['cache-control'], 'no-store')
    const body = res.json()
    t.match(body, { access_token: String, token_type: 'Bearer', expires_in: 900, refresh_token: String })
    t.ok(Buffer.from(body.refresh_token, 'base64url').length >= 32, 'refresh token carries at least 256 bits')
    const claims = decode(body.access_token)
    t.match(claims, { sub: alice.id, role: 'user', sid: /^[0-9a-f-]{36}$/, jti: String, iss: 'auth-service', aud: 'auth-service' })
    t.equal(claims.exp - claims.iat, 900)
    t.same(JSON.parse(Buffer.from(body.access_token.split('.')[0], 'base64url').toString()).alg, 'HS256')
  })

  t.test('form-urlencoded password grant (Swagger UI Authorize)', async (t) => {
    const res = await app.inject({
      method: 'POST',
      url: '/auth/login',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: `grant_type=password&username=${alice.username}&password=${encodeURIComponent(PASSWORD)}&scope=`
    })
    t.equal(res.statusCode, 200)
    t.equal(res.json().token_type, 'Bearer')
  })

  t.test('unknown user, wrong password and disabled user: the same 401', async (t) => {
    const disabled = await signUp(app, ctx)
    await app.db.query('UPDATE users SET disabled = true WHERE id = $1', [disabled.id])
    const answers = []
    for (const payload of [
      { username: ctx.username('nobody'), password: PASSWORD },
      { username: alice.username, password: 'wrong password' },
      { username: disabled.username, password: PASSWORD }
    ]) {
      const res = await app.inject({ method: 'POST', url: '/auth/login', payload })
      t.equal(res.statusCode, 401)
      t.match(res.headers['www-authenticate'], /^Bearer/)
      answers.push(res.body)
    }
    t.equal(new Set(answers).size, 1, 'one body for every failure')
    const { rows } = await app.db.query(
      "SELECT detail->>'reason' AS reason FROM audit_events WHERE type = 'login_failed' AND subject_id = $1", [alice.id])
    t.same(rows.map((r) => r.reason), ['bad_password'])
  })

  t.test('a NUL byte in a username is a 400, never a 500', async (t) => {
    const res = await app.inject({ method: 'POST', url: '/auth/login', payload: { username: 'a\u0000b', password: PASSWORD } })
    t.equal(res.statusCode, 400)
    const form = await app.inject({
      method: 'POST',
      url: '/auth/login',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: `grant_type=password&username=a%00b&password=${encodeURIComponent(PASSWORD)}`
    })
    t.equal(form.statusCode, 400)
  })

  t.test('400 for a bad body or grant type', async (t) => {
    t.equal((await app.inject({ method: 'POST', url: '/auth/login', payload: { username: alice.username } })).statusCode, 400)
    t.equal((await app.inject({ method: 'POST', url: '/auth/login', payload: { username: alice.username, password: 12345678 } })).statusCode, 400)
    const grant = await app.inject({
      method: 'POST',
      url: '/auth/login',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: `grant_type=client_credentials&username=${alice.username}&password=x`
    })
    t.equal(grant.statusCode, 400)
    const text = await app.inject({ method: 'POST', url: '/auth/login', headers: { 'content-type': 'text/plain' }, payload: 'hi' })
    t.equal(text.statusCode, 415)
  })
})

t.test('a login that checked the old password gets no session once the password has changed', async (t) => {
  const user = await signUp(app, ctx)
  // Hold the login between its password check and the statement that creates its session.
  const { reached: atCreate, release } = holdNext(t, app.sessions.repository, 'create')

  const inFlight = app.inject({ method: 'POST', url: '/auth/login', payload: { username: user.username, password: PASSWORD } })
  await atCreate
  const changed = await app.inject({
    method: 'POST', url: '/auth/change-password', headers: bearer(user.access), payload: { currentPassword: PASSWORD, newPassword: 'a new password 42' }
  })
  t.equal(changed.statusCode, 204, 'the password changed while the login was in flight')
  release()
  const res = await inFlight
  t.equal(res.statusCode, 401, 'the login with the old password gets no tokens')
  t.equal(res.json().code, 'AUTH_BAD_CREDENTIALS')
  const { rows } = await app.db.query(
    'SELECT count(*)::int AS n FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.user_id = $1 AND s.created_at > u.revoked_after', [user.id])
  t.equal(rows[0].n, 0, 'and no live session was created')
  t.equal((await app.inject({ method: 'POST', url: '/auth/login', payload: { username: user.username, password: 'a new password 42' } })).statusCode, 200, 'the new password works')
})

t.test('me', async (t) => {
  const bob = await signUp(app, ctx)

  t.test('200 with id, username and role', async (t) => {
    const res = await me(app, bob.access)
    t.equal(res.statusCode, 200)
    t.strictSame(res.json(), { id: bob.id, username: bob.username, role: 'user' })
  })

  t.test('401 with WWW-Authenticate for a missing or malformed Authorization header', async (t) => {
    const headers: Array<Record<string, string>> = [
      {},
      { authorization: 'Bearer' },
      { authorization: 'Bearer ' },
      { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` },
      { authorization: 'garbage' },
      { authorization: `Bearer ${bob.access} extra` },
      { authorization: `Bearer ${bob.access.slice(0, -2)}xx` },
      { authorization: `Bearer ${'a'.repeat(5000)}.b.c` },
      { authorization: `Bearer ${bob.refresh}` }
    ]
    for (const h of headers) {
      const res = await app.inject({ method: 'GET', url: '/auth/me', headers: h })
      t.equal(res.statusCode, 401, JSON.stringify(h).slice(0, 60))
      t.match(res.headers['www-authenticate'], /^Bearer realm="auth"/)
      t.equal(res.json().error, 'Unauthorized')
    }
  })

  t.test('a token in the query string is not accepted', async (t) => {
    const res = await app.inject({ method: 'GET', url: `/auth/me?access_token=${bob.access}` })
    t.equal(res.statusCode, 401)
  })
})

t.test('change-role', async (t) => {
  const admin = await signUp(app, ctx, { role: 'admin' })
  const target = await signUp(app, ctx)
  const bystander = await signUp(app, ctx)

  t.test('401 without a token, 403 for a non-admin, 404 for an unknown user, 400 for a bad role', async (t) => {
    const payload = { username: target.username, role: 'admin' }
    t.equal((await app.inject({ method: 'POST', url: '/auth/change-role', payload })).statusCode, 401)
    const forbidden = await app.inject({ method: 'POST', url: '/auth/change-role', headers: bearer(bystander.access), payload })
    t.equal(forbidden.statusCode, 403)
    t.equal(forbidden.json().error, 'Forbidden')
    const unknown = await app.inject({ method: 'POST', url: '/auth/change-role', headers: bearer(admin.access), payload: { username: ctx.username('ghost'), role: 'admin' } })
    t.equal(unknown.statusCode, 404)
    const badRole = await app.inject({ method: 'POST', url: '/auth/change-role', headers: bearer(admin.access), payload: { username: target.username, role: 'root' } })
    t.equal(badRole.statusCode, 400)
    const nul = await app.inject({ method: 'POST', url: '/auth/change-role', headers: bearer(admin.access), payload: { username: 'a\u0000b', role: 'user' } })
    t.equal(nul.statusCode, 400)
    t.equal((await me(app, target.access)).statusCode, 200, 'nothing was revoked')
  })

  t.test('the same role changes and revokes nothing', async (t) => {
    const res = await app.inject({ method: 'POST', url: '/auth/change-role', headers: bearer(admin.access), payload: { username: target.username, role: 'user' } })
    t.equal(res.statusCode, 200)
    t.equal(res.json().role, 'user')
    t.equal((await me(app, target.access)).statusCode, 200)
  })

  t.test('revokes every token of the target on the next request, and only those', async (t) => {
    const second = await login(app, target.username)
    const res = await app.inject({ method: 'POST', url: '/auth/change-role', headers: bearer(admin.access), payload: { username: target.username.toUpperCase(), role: 'admin' } })
    t.equal(res.statusCode, 200)
    t.match(res.json(), { id: target.id, username: target.username, role: 'admin' })
    t.equal((await me(app, target.access)).statusCode, 401, 'first session revoked')
    t.equal((await me(app, second.access)).statusCode, 401, 'second session revoked')
    const refresh = await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: target.refresh } })
    t.equal(refresh.statusCode, 401, 'refresh token revoked too')
    t.equal((await me(app, bystander.access)).statusCode, 200, 'another user keeps working')
    t.equal((await me(app, admin.access)).statusCode, 200, 'the admin keeps working')

    const again = await login(app, target.username)
    const who = await me(app, again.access)
    t.equal(who.statusCode, 200)
    t.equal(who.json().role, 'admin', 'a new login carries the new role')
    t.equal(decode(again.access).role, 'admin')
    const { rows } = await app.db.query("SELECT detail FROM audit_events WHERE type = 'role_changed' AND subject_id = $1", [target.id])
    t.strictSame(rows.map((r) => r.detail), [{ from: 'user', to: 'admin' }])
  })
})

t.test('logout ends the current session only', async (t) => {
  const carol = await signUp(app, ctx)
  const laptop = await login(app, carol.username)
  const res = await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(carol.access) })
  t.equal(res.statusCode, 204)
  t.equal(res.body, '')
  t.equal((await me(app, carol.access)).statusCode, 401, 'access token of the session refused')
  const refresh = await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: carol.refresh } })
  t.equal(refresh.statusCode, 401, 'refresh token of the session refused')
  t.equal((await me(app, laptop.access)).statusCode, 200, 'the other device stays signed in')
  t.equal((await app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(carol.access) })).statusCode, 401)
})
