// POST /auth/refresh beyond a single rotation: the grace for a just-used token
// (REFRESH_REUSE_INTERVAL), the absolute session lifetime (SESSION_MAX_LIFETIME), the
// per-session rate limit (REFRESH_RATE_LIMIT), and how many used tokens are kept.
import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { build, context, login, me, signUp } from '../helper.js'

const ctx = await context(t)
// The default grace (10 s), as a deployment runs it.
const app = await build(t, ctx, { REFRESH_REUSE_INTERVAL: 10 })

function claims (token: string): Record<string, any> {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString())
}

const sidOf = (access: string): string => claims(access).sid

function refresh (server: FastifyInstance, token: string) {
  return server.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: token } })
}

async function sessionState (server: FastifyInstance, sid: string) {
  const { rows } = await server.db.query(
    `SELECT revoked_at IS NOT NULL AS revoked, reuse_detected_at IS NOT NULL AS reuse,
            extract(epoch FROM expires_at - created_at)::float AS lifetime
       FROM sessions WHERE id = $1`, [sid])
  return rows[0]
}

async function reuseEvents (server: FastifyInstance, userId: string): Promise<number> {
  const { rows } = await server.db.query("SELECT count(*)::int AS n FROM audit_events WHERE subject_id = $1 AND type = 'refresh_reuse'", [userId])
  return rows[0].n
}

t.test('the grace: a just-used refresh token presented again within the interval', async (t) => {
  t.test('concurrent refreshes with one token all get working pairs, and the session goes on', async (t) => {
    const user = await signUp(app, ctx)
    for (let round = 0; round < 3; round++) {
      const pair = await login(app, user.username)
      const sid = sidOf(pair.access)
      const results = await Promise.all(Array.from({ length: 4 }, () => refresh(app, pair.refresh)))
      t.strictSame(results.map((r) => r.statusCode), [200, 200, 200, 200], `round ${round}: every concurrent refresh succeeds`)
      const bodies = results.map((r) => r.json())
      t.equal(new Set(bodies.map((b) => b.refresh_token)).size, 1, 'all of them hand out the one successor')
      t.equal(new Set(bodies.map((b) => b.access_token)).size, 4, 'each its own access token')
      for (const b of bodies) {
        t.equal(claims(b.access_token).sid, sid)
        t.equal((await me(app, b.access_token)).statusCode, 200, 'every access token works')
      }
      const next = await refresh(app, bodies[0].refresh_token)
      t.equal(next.statusCode, 200, 'the successor rotates as usual: the session survived')
      t.equal((await me(app, next.json().access_token)).statusCode, 200)
      t.match(await sessionState(app, sid), { revoked: false, reuse: false })
      const { rows } = await app.db.query('SELECT count(*)::int AS n FROM refresh_tokens WHERE session_id = $1 AND used_at IS NULL', [sid])
      t.equal(rows[0].n, 1, 'still one usable refresh token per session')
    }
    t.equal(await reuseEvents(app, user.id), 0, 'no reuse was recorded')
  })

  t.test('a retry a second later gets the same successor, which still works once', async (t) => {
    const user = await signUp(app, ctx)
    const first = await refresh(app, user.refresh)
    t.equal(first.statusCode, 200)
    await sleep(1000)
    const retry = await refresh(app, user.refresh)
    t.equal(retry.statusCode, 200, 'the retry succeeds')
    t.equal(retry.json().refresh_token, first.json().refresh_token, 'with the same new refresh token')
    t.equal((await me(app, retry.json().access_token)).statusCode, 200)
    t.equal((await me(app, first.json().access_token)).statusCode, 200, 'the first answer\'s access token works too')
    t.equal((await refresh(app, first.json().refresh_token)).statusCode, 200)
    t.notOk((await sessionState(app, sidOf(user.access))).revoked)
  })

  t.test('a client that went on: the old token leads to the current one down the chain', async (t) => {
    const user = await signUp(app, ctx)
    const a = (await refresh(app, user.refresh)).json()
    const b = (await refresh(app, a.refresh_token)).json()
    const again = await refresh(app, user.refresh)
    t.equal(again.statusCode, 200)
    t.equal(again.json().refresh_token, b.refresh_token, 'the current refresh token, not a used one')
    t.equal((await refresh(app, b.refresh_token)).statusCode, 200)
  })

  t.test('no refresh token is stored: a database dump without the presented one cannot derive the successor', async (t) => {
    const user = await signUp(app, ctx)
    const next = (await refresh(app, user.refresh)).json().refresh_token as string
    const { rows } = await app.db.query('SELECT token_hash, next_salt FROM refresh_tokens WHERE session_id = $1', [sidOf(user.access)])
    const stored = Buffer.concat(rows.flatMap((r) => [r.token_hash, r.next_salt ?? Buffer.alloc(0)]))
    for (const token of [user.refresh, next]) {
      t.equal(stored.indexOf(Buffer.from(token)), -1, 'the token is not in the table')
      t.equal(stored.indexOf(Buffer.from(token, 'base64url')), -1, 'nor its bytes')
    }
    t.ok(rows.some((r) => r.token_hash.equals(createHash('sha256').update(next).digest())), 'the successor by its hash only')
  })

  t.test('past the interval a reuse still ends the session, and is audited', async (t) => {
    const short = await build(t, ctx, { REFRESH_REUSE_INTERVAL: 1 })
    const user = await signUp(short, ctx)
    const rotated = (await refresh(short, user.refresh)).json()
    t.equal((await me(short, rotated.access_token)).statusCode, 200)
    await sleep(1500)
    const reuse = await refresh(short, user.refresh)
    t.equal(reuse.statusCode, 401)
    t.notOk('refresh_token' in reuse.json())
    t.equal((await me(short, rotated.access_token)).statusCode, 401, 'the session\'s access token is refused')
    t.equal((await refresh(short, rotated.refresh_token)).statusCode, 401, 'and its current refresh token')
    t.match(await sessionState(short, sidOf(user.access)), { revoked: true, reuse: true })
    t.equal(await reuseEvents(short, user.id), 1)
  })

  t.test('the grace never revives an ended session', async (t) => {
    const user = await signUp(app, ctx)
    const rotated = (await refresh(app, user.refresh)).json()
    t.equal((await app.inject({ method: 'POST', url: '/auth/logout', headers: { authorization: `Bearer ${rotated.access_token}` } })).statusCode, 204)
    t.equal((await refresh(app, user.refresh)).statusCode, 401)
    t.equal((await refresh(app, rotated.refresh_token)).statusCode, 401)
  })
})

t.test('SESSION_MAX_LIFETIME: a session ends that long after its login, however often refreshed', async (t) => {
  const LIFETIME = 4
  const short = await build(t, ctx, { SESSION_MAX_LIFETIME: LIFETIME })
  const user = await signUp(short, ctx)
  const loginClaims = claims(user.access)
  t.ok(loginClaims.exp <= loginClaims.iat + LIFETIME, 'the first access token ends with the session')
  const { rows: [{ ends }] } = await short.db.query('SELECT floor(extract(epoch FROM created_at))::int + $2 AS ends FROM sessions WHERE id = $1', [sidOf(user.access), LIFETIME])

  let current = user.refresh
  let access = user.access
  for (let i = 0; i < 2; i++) {
    await sleep(1000)
    const res = await refresh(short, current)
    t.equal(res.statusCode, 200, `refresh ${i + 1} within the lifetime`)
    current = res.json().refresh_token
    access = res.json().access_token
    const c = claims(access)
    t.ok(c.exp <= ends, `its access token expires with the session (exp ${c.exp}, end ${ends})`)
    t.equal(res.json().expires_in, c.exp - c.iat, 'expires_in says so')
    t.ok(res.json().expires_in < 900)
  }
  const { rows } = await short.db.query(
    `SELECT s.expires_at <= s.created_at + make_interval(secs => $2) AS capped,
            t.expires_at <= s.created_at + make_interval(secs => $2) AS token_capped
       FROM sessions s JOIN refresh_tokens t ON t.session_id = s.id AND t.used_at IS NULL WHERE s.id = $1`, [sidOf(user.access), LIFETIME])
  t.strictSame(rows[0], { capped: true, token_capped: true }, 'the session and its refresh token end at the cap')
  t.equal((await me(short, access)).statusCode, 200)

  await sleep(Math.max(0, ends * 1000 - Date.now()) + 300)
  t.equal((await refresh(short, current)).statusCode, 401, 'past the lifetime the refresh is refused')
  t.equal((await me(short, access)).statusCode, 401, 'and the last access token no longer works')
  t.equal((await me(short, (await login(short, user.username)).access)).statusCode, 200, 'a new login starts a new session')
})

t.test('REFRESH_RATE_LIMIT: refreshes per session per minute', async (t) => {
  const limited = await build(t, ctx, { REFRESH_RATE_LIMIT: 3 })
  const user = await signUp(limited, ctx)
  const other = await login(limited, user.username)
  let current = user.refresh
  for (let i = 0; i < 3; i++) {
    const res = await refresh(limited, current)
    t.equal(res.statusCode, 200, `refresh ${i + 1}`)
    current = res.json().refresh_token
  }
  const refused = await refresh(limited, current)
  t.equal(refused.statusCode, 429)
  t.match(refused.json(), { statusCode: 429, error: 'Too Many Requests', message: String })
  const retryAfter = Number(refused.headers['retry-after'])
  t.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After: ${retryAfter}`)
  const { rows } = await limited.db.query('SELECT used_at FROM refresh_tokens WHERE token_hash = $1', [createHash('sha256').update(current).digest()])
  t.equal(rows[0].used_at, null, 'the refused token is not used up')
  t.equal((await refresh(limited, other.refresh)).statusCode, 200, 'another session of the same user is not limited')
  t.equal((await me(limited, user.access)).statusCode, 200, 'nor is the limited session ended')

  // The window is a minute: moved back by hand, the session may refresh again.
  await limited.db.query("UPDATE sessions SET refresh_window_at = refresh_window_at - interval '1 minute' WHERE id = $1", [sidOf(user.access)])
  t.equal((await refresh(limited, current)).statusCode, 200, 'a new minute, a new allowance')
})

t.test('used refresh tokens: 100 rotations of one session keep a bounded number of rows', async (t) => {
  const user = await signUp(app, ctx)
  const sid = sidOf(user.access)
  const fast = await build(t, ctx, { REFRESH_RATE_LIMIT: 1000 })
  let current = user.refresh
  const used: string[] = []
  for (let i = 0; i < 100; i++) {
    const res = await refresh(fast, current)
    t.equal(res.statusCode, 200)
    used.push(current)
    current = res.json().refresh_token
  }
  const { rows } = await fast.db.query(
    'SELECT count(*)::int AS total, count(*) FILTER (WHERE used_at IS NULL)::int AS unused FROM refresh_tokens WHERE session_id = $1', [sid])
  t.strictSame(rows[0], { total: 11, unused: 1 }, 'the current token and the 10 most recent used ones')
  t.comment(`rows for one session after 100 rotations: ${rows[0].total}`)

  // Past the grace (none here): a token too old to be kept is refused as unknown, and
  // the session goes on; a recent one is recognised as reuse and ends it.
  const noGrace = await build(t, ctx)
  t.equal((await refresh(noGrace, used[0])).statusCode, 401)
  t.match(await sessionState(noGrace, sid), { revoked: false, reuse: false }, 'an old token no longer kept: only refused')
  t.equal((await refresh(noGrace, used[95])).statusCode, 401)
  t.match(await sessionState(noGrace, sid), { revoked: true, reuse: true }, 'the session ended')
})
