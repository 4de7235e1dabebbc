import t from 'tap'
import { BoundedMap } from '../../lib/bounded-map.js'

t.test('never holds more than its cap: the entry written longest ago goes first', async (t) => {
  const map = new BoundedMap<string, number>(3)
  for (let i = 0; i < 1000; i++) map.set(`k${i}`, i, 60_000, 0)
  t.equal(map.size, 3)
  t.same([map.get('k997', 0), map.get('k998', 0), map.get('k999', 0)], [997, 998, 999])
  t.equal(map.get('k996', 0), undefined)

  // A write makes an entry the newest: k997 outlives k998 now.
  map.set('k997', 1, 60_000, 0)
  map.set('new', 2, 60_000, 0)
  t.equal(map.size, 3)
  t.equal(map.get('k998', 0), undefined)
  t.equal(map.get('k997', 0), 1)
})

t.test('entries expire, and expired ones make room before live ones are dropped', async (t) => {
  const map = new BoundedMap<string, string>(2)
  map.set('short', 'a', 100, 0)
  map.set('long', 'b', 10_000, 0)
  t.equal(map.get('short', 99), 'a')
  t.equal(map.get('short', 100), undefined, 'gone at its expiry')
  t.equal(map.size, 1, 'and dropped when read')

  map.set('short', 'a', 100, 200)
  map.set('long', 'b', 10_000, 200)
  map.set('third', 'c', 10_000, 500)
  t.equal(map.get('long', 500), 'b', 'the expired entry made room, not the live one')
  t.equal(map.get('third', 500), 'c')
  t.equal(map.size, 2)
})

t.test('setIfAbsent is SET NX PX: true once per live entry', async (t) => {
  const map = new BoundedMap<string, true>(10)
  t.equal(map.setIfAbsent('k', true, 1000, 0), true)
  t.equal(map.setIfAbsent('k', true, 1000, 999), false)
  t.equal(map.setIfAbsent('k', true, 1000, 1000), true, 'again once it expired')
  t.equal(map.delete('k'), true)
  t.equal(map.setIfAbsent('k', true, 1000, 1000), true, 'and once deleted')
})

t.test('a cap must be a positive integer', async (t) => {
  t.throws(() => new BoundedMap(0), RangeError)
  t.throws(() => new BoundedMap(1.5), RangeError)
})
