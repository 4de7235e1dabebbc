// A Map with an expiry on every entry and a cap on how many it holds: what the service keeps
// in its own memory when it runs without Redis (lockouts, the once-per-window audit of rate
// limits) stays bounded whatever clients send. At the cap, the entry written longest ago
// goes; its users give every entry of a map the same lifetime, so that is also the one
// closest to expiring.

export class BoundedMap<K, V> {
  private readonly entries = new Map<K, { value: V, expiresAt: number }>()

  constructor (readonly maxEntries: number) {
    if (!Number.isInteger(maxEntries) || maxEntries < 1) throw new RangeError('maxEntries must be a positive integer')
  }

  /** Entries held, expired ones not yet dropped included. */
  get size (): number {
    return this.entries.size
  }

  /** The live value, or undefined (an expired entry is dropped on the way). */
  get (key: K, now = Date.now()): V | undefined {
    const entry = this.entries.get(key)
    if (entry === undefined) return undefined
    if (entry.expiresAt <= now) {
      this.entries.delete(key)
      return undefined
    }
    return entry.value
  }

  /** Writes the value, live for `ttlMs` from `now`, as the newest entry. */
  set (key: K, value: V, ttlMs: number, now = Date.now()): void {
    // Re-inserted, not updated in place: the Map's order stays the order of the last writes.
    this.entries.delete(key)
    this.makeRoom(now)
    this.entries.set(key, { value, expiresAt: now + ttlMs })
  }

  /** Like Redis `SET … NX PX`: true when there was no live entry and this one was written. */
  setIfAbsent (key: K, value: V, ttlMs: number, now = Date.now()): boolean {
    if (this.get(key, now) !== undefined) return false
    this.set(key, value, ttlMs, now)
    return true
  }

  delete (key: K): boolean {
    return this.entries.delete(key)
  }

  /** Drops expired entries from the oldest end, then the oldest live ones, until one more fits. */
  private makeRoom (now: number): void {
    for (const [key, entry] of this.entries) {
      if (this.entries.size < this.maxEntries && entry.expiresAt > now) return
      this.entries.delete(key)
    }
  }
}
