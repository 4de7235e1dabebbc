// A bounded cache of verified access tokens, keyed by the token (or the header holding it).
//
// Why not fast-jwt's own cache: by default it keys entries by a SHA-256 of the token, a
// native Hash object per request whose allocation survived young-generation GCs and grew
// the old generation under load (docs/benchmarks.md); given a key builder, it warns on
// every start (GHSA-rp9m-7r4c-75qg, about builders that could collide). The token itself
// (or its header) cannot collide with another token.

/**
 * `verify`, remembered for up to `size` tokens (oldest forgotten first). A hit is served
 * only until the token's `exp`; errors are never cached. The cache holds the last `size`
 * bearers' tokens, which a heap dump would show; that dump would also hold the signing
 * key, so it is as secret as the key already is.
 */
export function cachedVerifier<T extends { exp: number }> (verify: (token: string) => T, size = 1000): (token: string) => T {
  const cache = new Map<string, T>()
  return function cachedVerify (token: string): T {
    const hit = cache.get(token)
    if (hit !== undefined) {
      if (hit.exp * 1000 > Date.now()) return hit
      cache.delete(token)
    }
    const claims = verify(token)
    if (cache.size >= size) cache.delete(cache.keys().next().value as string)
    cache.set(token, claims)
    return claims
  }
}
