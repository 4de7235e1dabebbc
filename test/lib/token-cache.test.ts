// The verified-token cache in front of the signature check (lib/token-cache.ts).
import t from 'tap'
import { cachedVerifier } from '../../lib/token-cache.js'

interface Claims { sub: string, exp: number }

/** A verifier that counts its calls, accepts "good:<sub>:<exp>" and throws otherwise. */
function counting (): { verify: (token: string) => Claims, calls: () => number } {
  let n = 0
  return {
    verify (token) {
      n++
      const [kind, sub, exp] = token.split(':')
      if (kind !== 'good' || Number(exp) * 1000 <= Date.now()) throw new Error('invalid')
      return { sub, exp: Number(exp) }
    },
    calls: () => n
  }
}

const inAnHour = () => Math.floor(Date.now() / 1000) + 3600

t.test('a token verified once is served from the cache, the same claims', async (t) => {
  const c = counting()
  const verify = cachedVerifier(c.verify)
  const token = `good:alice:${inAnHour()}`
  const first = verify(token)
  t.equal(verify(token), first)
  t.equal(verify(token).sub, 'alice')
  t.equal(c.calls(), 1)
  t.equal(verify(`good:bob:${inAnHour()}`).sub, 'bob', 'another token is its own entry')
  t.equal(c.calls(), 2)
})

t.test('a failed verification is never cached', async (t) => {
  const c = counting()
  const verify = cachedVerifier(c.verify)
  t.throws(() => verify('forged:mallory:0'))
  t.throws(() => verify('forged:mallory:0'))
  t.equal(c.calls(), 2)
})

t.test('a cached token stops working when it expires', async (t) => {
  const c = counting()
  const verify = cachedVerifier(c.verify)
  const exp = Math.floor(Date.now() / 1000) + 1
  const token = `good:alice:${exp}`
  t.equal(verify(token).sub, 'alice')
  // Past exp: the hit is dropped and the token verified afresh, which refuses it.
  await new Promise((resolve) => setTimeout(resolve, exp * 1000 - Date.now() + 20))
  t.throws(() => verify(token), { message: 'invalid' })
  t.equal(c.calls(), 2)
})

t.test('the cache is bounded: the oldest token is forgotten first', async (t) => {
  const c = counting()
  const verify = cachedVerifier(c.verify, 3)
  const exp = inAnHour()
  for (const sub of ['a', 'b', 'c', 'd']) verify(`good:${sub}:${exp}`)
  t.equal(c.calls(), 4)
  verify(`good:d:${exp}`)
  verify(`good:b:${exp}`)
  t.equal(c.calls(), 4, 'the three newest are still cached')
  verify(`good:a:${exp}`)
  t.equal(c.calls(), 5, 'the oldest was evicted and is verified again')
})
