// The in-process lockout store (a single instance without Redis) against the Redis scripts
// it stands in for: the same attempts give the same answers; and it stays within its caps.
import t from 'tap'
import fc, { type Arbitrary } from 'fast-check'
import { Redis } from 'ioredis'
import { BASE_REDIS_URL, context } from '../../helper.js'
import {
  MEMORY_CLIENTS_PER_USERNAME, MEMORY_USERNAMES, MemoryLockoutStore, RedisLockoutStore, type AttemptResult, type LockoutLimits
} from '../../../plugins/app/lockout/lockout-store.js'

const ctx = await context(t)
const redis = new Redis(BASE_REDIS_URL, { keyPrefix: ctx.redisKeyPrefix })
t.teardown(() => redis.disconnect())

// Locks long enough that none lapses while a sequence runs: the comparison is of the counting.
const limits: LockoutLimits = {
  threshold: 3,
  globalThreshold: 5,
  firstMs: 30_000,
  longestMs: 120_000,
  globalFirstMs: 10_000,
  globalLongestMs: 60_000,
  windowMs: 600_000
}

type Op =
  | { kind: 'attempt', user: number, client: number, exempt: boolean }
  | { kind: 'succeeded', user: number, client: number, partly: boolean }
  | { kind: 'clear', user: number }

const op: Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('attempt' as const), user: fc.nat(1), client: fc.nat(3), exempt: fc.boolean() }) },
  // partly: a right password with a second factor to come (the client's run goes on).
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('succeeded' as const), user: fc.nat(1), client: fc.nat(3), partly: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('clear' as const), user: fc.nat(1) }) }
)

/** A refusal's wait is measured on two clocks (Redis TIME, Date.now): equal within this. */
const CLOCK_TOLERANCE_MS = 250

function sameAnswer (memory: AttemptResult, scripted: AttemptResult): boolean {
  if (memory[0] !== scripted[0]) return false
  return memory[0] === 0 ? memory[1] === scripted[1] : Math.abs(memory[1] - scripted[1]) <= CLOCK_TOLERANCE_MS
}

let run = 0

t.test('the same attempts get the same answers from both stores', async (t) => {
  const scripted = new RedisLockoutStore(redis)
  await fc.assert(fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 40 }), async (ops) => {
    const memory = new MemoryLockoutStore()
    // Fresh keys per run: the Redis hashes of earlier runs are left to the teardown.
    const keys = [`{lock:a${++run}}`, `{lock:b${run}}`]
    const clients = ['10.0.0.1', '10.0.0.2', '2001:db8:1::/64', '10.0.0.4']
    for (const o of ops) {
      if (o.kind === 'attempt') {
        const [m, s] = [await memory.attempt(keys[o.user], clients[o.client], limits, o.exempt),
          await scripted.attempt(keys[o.user], clients[o.client], limits, o.exempt)]
        if (!sameAnswer(m, s)) throw new Error(`${JSON.stringify(o)}: memory ${JSON.stringify(m)}, Redis ${JSON.stringify(s)}`)
      } else if (o.kind === 'succeeded') {
        await memory.succeeded(keys[o.user], clients[o.client], limits.globalThreshold, o.partly)
        await scripted.succeeded(keys[o.user], clients[o.client], limits.globalThreshold, o.partly)
      } else {
        await memory.clear(keys[o.user])
        await scripted.clear(keys[o.user])
      }
    }
  }), { numRuns: 40 })
})

t.test('locks lapse, grow, and the across-clients count restarts with its window', async (t) => {
  let now = 1_000_000
  const memory = new MemoryLockoutStore({ clock: () => now })
  const key = '{lock:clock}'
  const quick: LockoutLimits = { ...limits, threshold: 2, globalThreshold: 100, firstMs: 1000, longestMs: 3000 }
  t.same(await memory.attempt(key, 'c', quick, false), [0, 1])
  t.same(await memory.attempt(key, 'c', quick, false), [0, 2], 'the failure that reaches the threshold goes on')
  t.same(await memory.attempt(key, 'c', quick, false), [1, 1000], 'then the client is locked for firstMs')
  now += 1000
  t.same(await memory.attempt(key, 'c', quick, false), [0, 3], 'the lock lapsed')
  t.same(await memory.attempt(key, 'c', quick, false), [1, 2000], 'and the next one is twice as long')
  now += 2000
  await memory.attempt(key, 'c', quick, false)
  t.same(await memory.attempt(key, 'c', quick, false), [1, 3000], 'at most longestMs')

  const throttled: LockoutLimits = { ...limits, threshold: 100, globalThreshold: 2, globalFirstMs: 500, windowMs: 10_000 }
  const user = '{lock:window}'
  await memory.attempt(user, 'x', throttled, false)
  await memory.attempt(user, 'y', throttled, false)
  t.same(await memory.attempt(user, 'z', throttled, false), [2, 500], 'the username is throttled for clients not exempt')
  t.same(await memory.attempt(user, 'z', throttled, true), [0, 1], 'an exempt client goes on')
  now += 10_001
  t.equal(memory.usernames.get(user, now), undefined, 'a username quiet for the window is forgotten')
  t.same(await memory.attempt(user, 'z', throttled, false), [0, 1], 'and counted afresh')
})

t.test('the in-process store is capped: usernames, and clients per username', async (t) => {
  const memory = new MemoryLockoutStore({ maxUsernames: 50, maxClients: 4 })
  for (let i = 0; i < 500; i++) await memory.attempt(`{lock:u${i}}`, '10.0.0.1', limits, false)
  t.equal(memory.usernames.size, 50, 'at most maxUsernames usernames')
  t.not(memory.usernames.get('{lock:u499}'), undefined, 'the newest are kept')
  t.equal(memory.usernames.get('{lock:u0}'), undefined, 'the oldest went')

  const key = '{lock:many-clients}'
  for (let i = 0; i < 100; i++) await memory.attempt(key, `10.1.0.${i}`, limits, true)
  t.equal(memory.clientsOf(key), 4, 'at most maxClients clients per username')
  t.same(await memory.attempt(key, '10.1.0.0', limits, true), [0, 1], 'a client counted longest ago starts again')
  t.same(await memory.attempt(key, '10.1.0.99', limits, true), [0, 2], 'a recent one keeps its count')
  t.equal(memory.usernames.get(key)?.failures, 102, 'while the count across clients keeps every failure')

  t.ok(MEMORY_USERNAMES >= 1000 && MEMORY_CLIENTS_PER_USERNAME >= 10, 'the defaults are caps, not unbounded')
})
