// fastify.clients.authenticateBasic: HTTP Basic client credentials (RFC 6749 §2.3.1) are
// checked against a SHA-256 of the secret, the record cached in Redis (a warm check: one
// Redis command, no PostgreSQL), rotation and deletion refused at once, also after a
// FLUSHALL, and with Redis gone the truth in PostgreSQL decides.
import { createHash } from 'node:crypto'
import t from 'tap'
import { build, context, costs, privateRedis } from '../../helper.js'
import { parseBasic, secretMatches } from '../../../plugins/app/clients/clients-service.js'

// A Redis of this file's own (FLUSHALL, stop and start), and a database of its own (the
// clients table is not cleaned per test).
const redis = await privateRedis(t)
const ctx = await context(t, { ownDatabase: true })
const app = await build(t, ctx, { REDIS_URL: redis.url })
const { clients } = app

let counter = 0
const newClient = () => clients.create(`client-${ctx.tag}-${++counter}`)

function basic (id: string, secret: string, scheme = 'Basic'): string {
  return `${scheme} ${Buffer.from(`${id}:${secret}`).toString('base64')}`
}

/** Percent-encodes every character, as a client may under form-urlencoding. */
function encodeAll (value: string): string {
  return [...Buffer.from(value)].map((b) => '%' + b.toString(16).padStart(2, '0').toUpperCase()).join('')
}

/** The status of the HTTP error a call throws (0: none). */
async function statusOf (work: Promise<unknown>): Promise<number> {
  try {
    await work
    return 0
  } catch (err) {
    return (err as { statusCode?: number }).statusCode ?? -1
  }
}

t.test('parseBasic: RFC 6749 §2.3.1 form-urlencoded halves inside RFC 7617 Basic', async (t) => {
  t.strictSame(parseBasic(basic('abc', 'secret')), { clientId: 'abc', clientSecret: 'secret' })
  t.strictSame(parseBasic(basic('abc', 'se:cr:et')), { clientId: 'abc', clientSecret: 'se:cr:et' }, 'split at the first colon')
  t.strictSame(parseBasic(basic('a%3Ab', 'x%2By+z')), { clientId: 'a:b', clientSecret: 'x+y z' }, 'form-urlencoding undone')
  t.strictSame(parseBasic(basic('abc', 'secret', 'basic')), { clientId: 'abc', clientSecret: 'secret' }, 'the scheme in any case')
  t.strictSame(parseBasic(basic('abc', '')), { clientId: 'abc', clientSecret: '' })
  for (const header of [
    undefined, '', 'Basic', 'Basic ', 'Bearer abc.def.ghi', `Basic ${Buffer.from('no colon').toString('base64')}`,
    'Basic !!!!', `Basic ${Buffer.from('a%zz:b').toString('base64')}`, `Basic ${Buffer.from('a:%E0%A4%A').toString('base64')}`,
    `Basic ${'A'.repeat(2000)}`
  ]) {
    t.equal(parseBasic(header), null, JSON.stringify(header)?.slice(0, 40) ?? 'undefined')
  }
})

t.test('secretMatches: the hash of the secret, compared in constant time; nothing matches no record', async (t) => {
  const secretHash = createHash('sha256').update('s3cret').digest()
  t.equal(secretMatches({ secretHash }, 's3cret'), true)
  t.equal(secretMatches({ secretHash }, 's3cret '), false)
  t.equal(secretMatches({ secretHash }, ''), false)
  t.equal(secretMatches(null, 's3cret'), false)
  t.equal(secretMatches(null, ''), false)
})

t.test('authenticateBasic: the right secret, and nothing else', async (t) => {
  const a = await newClient()
  const b = await newClient()
  const expected = { id: a.id, clientId: a.clientId, name: a.name, createdAt: a.createdAt }
  t.strictSame(await clients.authenticateBasic(basic(a.clientId, a.clientSecret)), expected)
  t.strictSame(await clients.authenticateBasic(basic(a.clientId, a.clientSecret)), expected, 'again, from the cache')
  t.strictSame(await clients.authenticateBasic(basic(a.clientId, a.clientSecret, 'BASIC')), expected)
  t.strictSame(await clients.authenticateBasic(basic(encodeAll(a.clientId), encodeAll(a.clientSecret))), expected, 'percent-encoded halves')

  t.equal(await clients.authenticateBasic(basic(a.clientId, b.clientSecret)), null, 'another client\'s secret')
  t.equal(await clients.authenticateBasic(basic(b.clientId, a.clientSecret)), null)
  t.equal(await clients.authenticateBasic(basic(a.clientId, a.clientSecret.slice(0, -1))), null, 'a prefix of the secret')
  t.equal(await clients.authenticateBasic(basic(a.clientId, a.clientSecret + 'x')), null)
  t.equal(await clients.authenticateBasic(basic(a.clientId, '')), null)
  t.equal(await clients.authenticateBasic(basic('A'.repeat(22), a.clientSecret)), null, 'an unknown client id')
  t.equal(await clients.authenticateBasic(basic(a.clientId.toLowerCase() === a.clientId ? a.clientId.toUpperCase() : a.clientId.toLowerCase(), a.clientSecret)), null, 'client ids are case-sensitive')
  t.equal(await clients.authenticateBasic(basic('not a client id', a.clientSecret)), null)
  t.equal(await clients.authenticateBasic(`Bearer ${a.clientSecret}`), null)
  t.equal(await clients.authenticateBasic(undefined), null)
})

t.test('a warm check: one Redis command, no PostgreSQL query; an unknown id is cached too', async (t) => {
  const a = await newClient()
  t.ok(await clients.authenticateBasic(basic(a.clientId, a.clientSecret)), 'first use fills the cache')
  const warm = await costs(app, () => clients.authenticateBasic(basic(a.clientId, a.clientSecret)))
  t.ok(warm.result)
  t.strictSame({ pgQueries: warm.pgQueries, redisCommands: warm.redisCommands }, { pgQueries: 0, redisCommands: 1 })
  const wrong = await costs(app, () => clients.authenticateBasic(basic(a.clientId, 'wrong')))
  t.equal(wrong.result, null)
  t.strictSame({ pgQueries: wrong.pgQueries, redisCommands: wrong.redisCommands }, { pgQueries: 0, redisCommands: 1 }, 'a wrong secret costs the same')

  const unknown = basic('B'.repeat(22), 'whatever')
  t.equal(await clients.authenticateBasic(unknown), null)
  const again = await costs(app, () => clients.authenticateBasic(unknown))
  t.strictSame({ pgQueries: again.pgQueries, redisCommands: again.redisCommands }, { pgQueries: 0, redisCommands: 1 })
})

t.test('rotation and deletion are refused at once, and stay refused after FLUSHALL', async (t) => {
  const a = await newClient()
  t.ok(await clients.authenticateBasic(basic(a.clientId, a.clientSecret)), 'cached')
  const rotated = await clients.rotateSecret(a.id)
  t.not(rotated.clientSecret, a.clientSecret)
  t.equal(rotated.clientId, a.clientId, 'the id stays')
  t.equal(await clients.authenticateBasic(basic(a.clientId, a.clientSecret)), null, 'the old secret is refused at once')
  t.ok(await clients.authenticateBasic(basic(a.clientId, rotated.clientSecret)), 'the new one works')
  await redis.client.flushall()
  t.equal(await clients.authenticateBasic(basic(a.clientId, a.clientSecret)), null, 'old secret refused after FLUSHALL')
  t.ok(await clients.authenticateBasic(basic(a.clientId, rotated.clientSecret)), 'new secret works after FLUSHALL')

  await clients.delete(a.id)
  t.equal(await clients.authenticateBasic(basic(a.clientId, rotated.clientSecret)), null, 'a deleted client is refused at once')
  await redis.client.flushall()
  t.equal(await clients.authenticateBasic(basic(a.clientId, rotated.clientSecret)), null, 'and after FLUSHALL')
  t.equal(await statusOf(clients.delete(a.id)), 404)
  t.equal(await statusOf(clients.rotateSecret(a.id)), 404)
})

t.test('Redis down: checks answer from PostgreSQL; rotation and deletion are 503 and change nothing', async (t) => {
  const a = await newClient()
  t.ok(await clients.authenticateBasic(basic(a.clientId, a.clientSecret)))
  await redis.stop()
  try {
    t.ok(await clients.authenticateBasic(basic(a.clientId, a.clientSecret)), 'the right secret still passes')
    t.equal(await clients.authenticateBasic(basic(a.clientId, 'wrong')), null, 'a wrong one is still refused')
    t.equal(await statusOf(clients.rotateSecret(a.id)), 503)
    t.equal(await statusOf(clients.delete(a.id)), 503)
    t.ok(await clients.authenticateBasic(basic(a.clientId, a.clientSecret)), 'nothing changed')
  } finally {
    await redis.start()
  }
  // Back to normal once Redis answers again (the client reconnects by itself).
  let rotated: Awaited<ReturnType<typeof clients.rotateSecret>> | undefined
  for (let i = 0; i < 50 && rotated === undefined; i++) {
    rotated = await clients.rotateSecret(a.id).catch(async () => { await new Promise((resolve) => setTimeout(resolve, 100)); return undefined })
  }
  t.ok(rotated, 'rotation works again')
  t.equal(await clients.authenticateBasic(basic(a.clientId, a.clientSecret)), null)
  t.ok(await clients.authenticateBasic(basic(a.clientId, rotated?.clientSecret ?? '')))
})

t.test('a rollback after the cache write leaves the old secret working', async (t) => {
  const a = await newClient()
  t.ok(await clients.authenticateBasic(basic(a.clientId, a.clientSecret)), 'cached')
  // Fail the transaction at COMMIT, after the pre-commit cache write.
  const transact = app.db.transact.bind(app.db)
  app.db.transact = (async (fn: (client: any) => Promise<unknown>) => {
    await transact(async (client) => {
      await fn(client)
      throw Object.assign(new Error('Connection terminated unexpectedly'), { code: '08006' })
    })
  }) as typeof app.db.transact
  try {
    await t.rejects(clients.rotateSecret(a.id))
  } finally {
    app.db.transact = transact
  }
  t.ok(await clients.authenticateBasic(basic(a.clientId, a.clientSecret)), 'the old secret still works')
})
