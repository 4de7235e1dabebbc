// The issuer's public keys, fetched from its JWKS endpoint and kept in the verifier:
// fetched at start, again when a token names a `kid` we do not know (the issuer rotated
// its key), at most once per `minRefreshMs`, and in the background once they are older
// than `maxAgeMs` (so that a key the issuer dropped stops verifying here too).
import { createPublicKey } from 'node:crypto'
import type { AccessTokenVerifier, VerificationKey } from './tokens.js'

export interface JwksOptions {
  url: string
  /** Least time between two fetches triggered by unknown `kid`s (default 10 s). */
  minRefreshMs?: number
  /** Keys older than this are fetched again in the background (default 5 min). */
  maxAgeMs?: number
  /** A fetch gives up after this long (default 2 s). */
  timeoutMs?: number
}

/** The usable keys of a JWK set: signing keys of the algorithms the issuer uses, as PEM. */
export function keysFromJwks (body: unknown): VerificationKey[] {
  const keys = (body as { keys?: unknown } | null)?.keys
  if (!Array.isArray(keys)) throw new Error('not a JWK set')
  const out: VerificationKey[] = []
  for (const jwk of keys) {
    if (typeof jwk !== 'object' || jwk === null) continue
    const { kid, alg, use, kty, crv } = jwk as Record<string, unknown>
    if (typeof kid !== 'string' || (use !== undefined && use !== 'sig')) continue
    // The algorithm is pinned by the key itself, never taken from a token's header.
    const pinned = alg === 'EdDSA' && kty === 'OKP' && crv === 'Ed25519'
      ? 'EdDSA'
      : alg === 'ES256' && kty === 'EC' && crv === 'P-256' ? 'ES256' : undefined
    if (pinned === undefined) continue
    try {
      const pem = createPublicKey({ key: jwk as import('node:crypto').JsonWebKey, format: 'jwk' }).export({ format: 'pem', type: 'spki' }).toString()
      out.push({ kid, alg: pinned, pem })
    } catch {
      // A malformed key is left out; the others still verify.
    }
  }
  return out
}

export class JwksKeys {
  private fetchedAt = 0
  private lastAttempt = 0
  private lastOk = false
  private inflight: Promise<boolean> | undefined
  private current = ''
  private readonly minRefreshMs: number
  private readonly maxAgeMs: number
  private readonly timeoutMs: number
  /** How many fetches were made (for tests and metrics). */
  fetches = 0

  constructor (
    private readonly opts: JwksOptions,
    private readonly verifier: AccessTokenVerifier,
    private readonly onError: (err: Error) => void
  ) {
    this.minRefreshMs = opts.minRefreshMs ?? 10_000
    this.maxAgeMs = opts.maxAgeMs ?? 300_000
    this.timeoutMs = opts.timeoutMs ?? 2000
  }

  /** Fetches the keys now (one fetch at a time); whether it succeeded. */
  refresh (): Promise<boolean> {
    this.inflight ??= this.fetchKeys().finally(() => { this.inflight = undefined })
    return this.inflight
  }

  /**
   * A token named an unknown `kid`: fetch again unless a fetch was made recently. Resolves
   * to whether the keys are known to be current (a fetch succeeded now or recently): if so,
   * a kid still unknown is a bad token; if not, nobody can tell.
   */
  async refreshForUnknownKid (): Promise<boolean> {
    if (this.inflight !== undefined) return await this.inflight
    if (Date.now() - this.lastAttempt < this.minRefreshMs) return this.lastOk
    return await this.refresh()
  }

  /** Starts a background fetch when the keys are older than maxAgeMs. */
  refreshIfStale (): void {
    const now = Date.now()
    if (now - this.fetchedAt > this.maxAgeMs && now - this.lastAttempt >= this.minRefreshMs && this.inflight === undefined) {
      this.refresh().catch(() => {})
    }
  }

  private async fetchKeys (): Promise<boolean> {
    this.lastAttempt = Date.now()
    this.fetches++
    try {
      const res = await fetch(this.opts.url, { signal: AbortSignal.timeout(this.timeoutMs), headers: { accept: 'application/json' } })
      if (res.status !== 200) throw new Error(`JWKS ${this.opts.url} answered ${res.status}`)
      const keys = keysFromJwks(await res.json())
      const fingerprint = JSON.stringify(keys)
      // Only a changed set replaces the keys (which forgets the tokens verified so far).
      if (fingerprint !== this.current) {
        this.verifier.setKeys(keys)
        this.current = fingerprint
      }
      this.fetchedAt = Date.now()
      this.lastOk = true
      return true
    } catch (err) {
      this.lastOk = false
      this.onError(err as Error)
      return false
    }
  }
}
