// The purge of ended sessions: batched, on an index, and for every way a session ends
// (expiry, logout, and the user's revoked_after: logout-all, password change, role change).
import t from 'tap'
import { bearer, build, context, login, me, signUp } from '../../helper.js'

// A database of this file's own: the purge deletes every due session in it.
const ctx = await context(t, { ownDatabase: true })
const app = await build(t, ctx)

async function count (sql: string, params: unknown[] = []): Promise<number> {
  const { rows } = await app.db.query(sql, params)
  return rows[0].n
}

const sidOf = (access: string): string => JSON.parse(Buffer.from(access.split('.')[1], 'base64url').toString()).sid

t.test('50k due sessions are purged in batches on the index; live ones stay', async (t) => {
  const owner = await signUp(app, ctx)
  const live = await login(app, owner.username)
  // Due: expired a day ago, revoked an hour ago, or (through the trigger) ended by a
  // revoked_after an hour ago; not due: live, or revoked too recently (a token of it may
  // still be presented).
  await app.db.query(
    `INSERT INTO sessions (user_id, created_at, expires_at, revoked_at)
     SELECT $1::uuid, now() - interval '2 days', now() - interval '1 day', NULL FROM generate_series(1, 30000)
     UNION ALL
     SELECT $1::uuid, now() - interval '2 days', now() + interval '1 day', now() - interval '1 hour' FROM generate_series(1, 20000)
     UNION ALL
     SELECT $1::uuid, now() - interval '2 days', now() + interval '1 day', now() - interval '1 second' FROM generate_series(1, 10)`, [owner.id])
  const victim = await signUp(app, ctx)
  const victimPhone = await login(app, victim.username)
  t.equal((await app.inject({ method: 'POST', url: '/auth/logout-all', headers: bearer(victim.access) })).statusCode, 204)
  t.equal(await count('SELECT count(*)::int AS n FROM sessions WHERE user_id = $1 AND revoked_at IS NOT NULL', [victim.id]), 2,
    'logout-all marks the sessions it ended')
  await app.db.query("UPDATE sessions SET revoked_at = revoked_at - interval '1 hour' WHERE user_id = $1", [victim.id])
  await app.db.query('ANALYZE sessions')

  // The batch query can use the index (not possible with clock_timestamp() in it).
  const client = await app.db.pool.connect()
  try {
    await client.query('BEGIN; SET LOCAL enable_seqscan = off')
    const { rows } = await client.query(
      'EXPLAIN SELECT id FROM sessions WHERE least(expires_at, revoked_at) < now() - make_interval(secs => 900) LIMIT 5000')
    t.match(rows.map((r) => r['QUERY PLAN']).join('\n'), /Index (Only )?Scan using sessions_ended_at_idx/)
  } finally {
    await client.query('ROLLBACK')
    client.release()
  }

  const repository = (app.sessions as any).repository
  const deleteEnded = repository.deleteEnded
  const batches: number[] = []
  repository.deleteEnded = async function (...args: [number, number]) {
    const n = await deleteEnded.apply(this, args)
    batches.push(n)
    return n
  }
  t.teardown(() => { repository.deleteEnded = deleteEnded })
  const purged = await app.sessions.purgeExpired(900)
  t.equal(purged, 50_002)
  t.ok(batches.length >= 11 && batches.every((n) => n <= 5000), `in batches of at most 5000: ${batches.join(', ')}`)
  t.equal(await count('SELECT count(*)::int AS n FROM sessions WHERE user_id = $1', [owner.id]), 12, 'the live sessions and the recently revoked ones stay')
  t.equal((await me(app, live.access)).statusCode, 200)
  t.equal((await me(app, victimPhone.access)).statusCode, 401)
  t.equal(await app.sessions.purgeExpired(900), 0, 'nothing left to do')
})

t.test('a role change marks the sessions it ends, and the purge takes them', async (t) => {
  const user = await signUp(app, ctx)
  const other = await login(app, user.username)
  const admin = await signUp(app, ctx, { role: 'admin' })
  t.equal((await app.inject({ method: 'POST', url: '/auth/change-role', headers: bearer(admin.access), payload: { username: user.username, role: 'admin' } })).statusCode, 200)
  t.equal(await count('SELECT count(*)::int AS n FROM sessions WHERE id = ANY($1) AND revoked_at IS NOT NULL', [[sidOf(user.access), sidOf(other.access)]]), 2,
    'a role change marks the sessions it ended')
  await app.db.query("UPDATE sessions SET revoked_at = revoked_at - interval '1 hour' WHERE user_id = $1", [user.id])
  t.equal(await app.sessions.purgeExpired(900), 2)
})
