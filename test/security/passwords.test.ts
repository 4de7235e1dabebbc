import t from 'tap'
import { bearer, build, context, PASSWORD, signUp } from '../helper.js'

const ctx = await context(t)

t.test('argon2id at OWASP parameters by default', async (t) => {
  // The service's real defaults, not the cheap test parameters.
  const app = await build(t, ctx, { ARGON2_MEMORY_COST: undefined, ARGON2_TIME_COST: undefined })
  const username = ctx.username('owasp')
  t.equal((await app.inject({ method: 'POST', url: '/auth/register', payload: { username, password: PASSWORD } })).statusCode, 201)
  const { rows } = await app.db.query('SELECT password_hash FROM users WHERE username = $1', [username])
  t.match(rows[0].password_hash, /^\$argon2id\$v=19\$m=19456,p=1,t=2\$/)
})

t.test('a hash made with older parameters is upgraded at the next successful login', async (t) => {
  const weak = await build(t, ctx, { ARGON2_MEMORY_COST: 8192, ARGON2_TIME_COST: 1 })
  const username = ctx.username('upgrade')
  t.equal((await weak.inject({ method: 'POST', url: '/auth/register', payload: { username, password: PASSWORD } })).statusCode, 201)
  const hashOf = async () => (await weak.db.query('SELECT password_hash FROM users WHERE username = $1', [username])).rows[0].password_hash as string
  t.match(await hashOf(), /m=8192,p=1,t=1/)

  const strong = await build(t, ctx, { ARGON2_MEMORY_COST: 19456, ARGON2_TIME_COST: 2 })
  t.equal((await strong.inject({ method: 'POST', url: '/auth/login', payload: { username, password: 'wrong password' } })).statusCode, 401)
  t.match(await hashOf(), /m=8192,p=1,t=1/, 'a failed login changes nothing')
  t.equal((await strong.inject({ method: 'POST', url: '/auth/login', payload: { username, password: PASSWORD } })).statusCode, 200)
  t.match(await hashOf(), /m=19456,p=1,t=2/, 'upgraded')
  t.equal((await strong.inject({ method: 'POST', url: '/auth/login', payload: { username, password: PASSWORD } })).statusCode, 200, 'and still logs in')
})

t.test('passwords over 128 characters are a 400, never hashed', async (t) => {
  const app = await build(t, ctx)
  const username = ctx.username('long')
  for (const url of ['/auth/register', '/auth/login']) {
    const res = await app.inject({ method: 'POST', url, payload: { username, password: 'x'.repeat(129) } })
    t.equal(res.statusCode, 400, url)
  }
  const { rows } = await app.db.query('SELECT 1 FROM users WHERE username = $1', [username])
  t.equal(rows.length, 0)
})

t.test('common passwords and passwords containing the username are refused, saying why', async (t) => {
  const app = await build(t, ctx)
  const register = (username: string, password: string) => app.inject({ method: 'POST', url: '/auth/register', payload: { username, password } })
  for (const password of ['password1', 'iloveyou2', 'P@ssw0rd', 'Qwertyuiop', 'trustno1']) {
    const username = ctx.username('common')
    const res = await register(username, password)
    t.equal(res.statusCode, 400, password)
    t.match(res.json(), { code: 'AUTH_WEAK_PASSWORD', message: /list of common passwords/ })
    const { rows } = await app.db.query('SELECT 1 FROM users WHERE username = $1', [username])
    t.equal(rows.length, 0, 'no account')
  }
  const username = ctx.username('Alice')
  for (const password of [username, `my ${username.toUpperCase()} pass`, `${username.toLowerCase()}!`]) {
    const res = await register(username, password)
    t.equal(res.statusCode, 400, password)
    t.match(res.json(), { code: 'AUTH_WEAK_PASSWORD', message: 'The password must not contain the username' })
  }
  t.equal((await register(username, PASSWORD)).statusCode, 201, 'anything else of 8 characters or more will do')

  // change-password: the same rules for the new password; nothing changes, nothing counts.
  const user = await signUp(app, ctx)
  for (const newPassword of ['password123', `x${user.username}x`]) {
    const res = await app.inject({ method: 'POST', url: '/auth/change-password', headers: bearer(user.access), payload: { currentPassword: PASSWORD, newPassword } })
    t.equal(res.statusCode, 400, newPassword)
    t.equal(res.json().code, 'AUTH_WEAK_PASSWORD')
  }
  t.equal((await app.inject({ method: 'POST', url: '/auth/login', payload: { username: user.username, password: PASSWORD } })).statusCode, 200, 'the password is unchanged')
})
