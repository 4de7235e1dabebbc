// Two instances on real sockets, sharing PostgreSQL and Redis: what one revokes, the
// other refuses on the very next request.
import t from 'tap'
import type { AddressInfo } from 'node:net'
import { build, context, httpCall as call, PASSWORD } from './helper.js'

const ctx = await context(t)
const a = await build(t, ctx)
const b = await build(t, ctx)
await a.listen({ port: 0, host: '127.0.0.1' })
await b.listen({ port: 0, host: '127.0.0.1' })
const A = `http://127.0.0.1:${(a.server.address() as AddressInfo).port}`
const B = `http://127.0.0.1:${(b.server.address() as AddressInfo).port}`

async function signUp (base: string, label: string) {
  const username = ctx.username(label)
  t.equal((await call(base, 'POST', '/auth/register', { body: { username, password: PASSWORD } })).status, 201)
  const res = await call(base, 'POST', '/auth/login', { body: { username, password: PASSWORD } })
  return { username, access: res.body.access_token as string }
}

t.test('logout at A is refused at B on the next request', async (t) => {
  const user = await signUp(A, 'multi')
  const phone = await call(B, 'POST', '/auth/login', { body: { username: user.username, password: PASSWORD } })
  t.equal((await call(B, 'GET', '/auth/me', { token: user.access })).status, 200, 'B has the session cached as live')
  t.equal((await call(A, 'POST', '/auth/logout', { token: user.access })).status, 204)
  t.equal((await call(B, 'GET', '/auth/me', { token: user.access })).status, 401)
  t.equal((await call(A, 'GET', '/auth/me', { token: user.access })).status, 401)
  t.equal((await call(B, 'GET', '/auth/me', { token: phone.body.access_token })).status, 200, 'the other session lives on')
})

t.test('change-role at A is refused at B on the next request; the new login carries the new role', async (t) => {
  const admin = await a.users.register(ctx.username('admin'), PASSWORD, 'admin')
  const adminToken = (await call(A, 'POST', '/auth/login', { body: { username: admin.username, password: PASSWORD } })).body.access_token
  const user = await signUp(B, 'promoted')
  const other = await signUp(B, 'other')
  t.equal((await call(B, 'GET', '/auth/me', { token: user.access })).status, 200)
  const res = await call(A, 'POST', '/auth/change-role', { token: adminToken, body: { username: user.username, role: 'admin' } })
  t.equal(res.status, 200)
  t.equal((await call(B, 'GET', '/auth/me', { token: user.access })).status, 401)
  t.equal((await call(B, 'GET', '/auth/me', { token: other.access })).status, 200)
  const again = await call(B, 'POST', '/auth/login', { body: { username: user.username, password: PASSWORD } })
  const who = await call(A, 'GET', '/auth/me', { token: again.body.access_token })
  t.equal(who.status, 200)
  t.equal(who.body.role, 'admin')
})
