// A receiver of security events inside the test process: an HTTP server on a real port
// that takes pushed SETs (RFC 8935) and logout tokens (Back-Channel Logout 1.0), verifies
// each signature against the service's JWKS, and records what came, when, and in which
// order. It can be taken down (connections refused), made to hang, or to refuse (400).
import { createPublicKey } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createVerifier } from 'fast-jwt'

interface Teardown { teardown: (fn: () => unknown) => void }

export interface Jwk { kid: string, alg: string, [k: string]: unknown }

export interface Received {
  /** When it arrived (performance.now()). */
  at: number
  path: string
  typ: string
  claims: Record<string, any>
  authorization: string | undefined
}

/** Verifies a token against a JWK set: signature by `kid`, the pinned algorithm, `typ`, `iss`. */
export function jwtVerifier (jwks: { keys: Jwk[] }, issuer: string): (token: string) => { typ: string, claims: Record<string, any> } {
  const verifiers = new Map(jwks.keys.map((jwk) => {
    const pem = createPublicKey({ key: jwk as any, format: 'jwk' }).export({ type: 'spki', format: 'pem' }).toString()
    return [jwk.kid, createVerifier({ key: pem, algorithms: [jwk.alg as 'EdDSA'], allowedIss: issuer, complete: true })]
  }))
  return (token) => {
    const header = JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString())
    const verify = verifiers.get(header.kid)
    if (verify === undefined) throw new Error(`no key ${String(header.kid)} in the JWKS`)
    const { payload } = verify(token) as unknown as { payload: Record<string, any> }
    return { typ: header.typ, claims: payload }
  }
}

export interface Receiver {
  url: string
  received: Received[]
  /** Every distinct jti, in the order first received. */
  unique: () => Received[]
  /** Answers every request so: 202, or 400 with an RFC 8935 error, or never (hangs). */
  mode: 'accept' | 'reject' | 'hang'
  /** Requests that arrived while hanging (unanswered). */
  held: number
  /** How long to take over an event before taking it (0: at once): a slow receiver. */
  delay: (claims: Record<string, any>) => number
  /** Closes the port (connections refused) / opens it again on the same port. */
  down: () => Promise<void>
  up: () => Promise<void>
  /** Resolves when `n` distinct jtis have arrived (or rejects after `ms`). */
  waitFor: (n: number, ms?: number) => Promise<Received[]>
}

export async function receiver (t: Teardown, verify: (token: string) => { typ: string, claims: Record<string, any> }, port = 0): Promise<Receiver> {
  const state: Receiver = {
    url: '',
    received: [],
    mode: 'accept',
    held: 0,
    delay: () => 0,
    unique () {
      const seen = new Set<string>()
      return state.received.filter((r) => {
        if (seen.has(r.claims.jti)) return false
        seen.add(r.claims.jti)
        return true
      })
    },
    down: async () => await close(),
    up: async () => await listen(),
    async waitFor (n, ms = 15_000) {
      const deadline = Date.now() + ms
      while (state.unique().length < n) {
        if (Date.now() > deadline) throw new Error(`receiver: ${state.unique().length} of ${n} events after ${ms} ms`)
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
      return state.unique()
    }
  }

  function handle (req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      if (state.mode === 'hang') {
        state.held++
        return
      }
      if (state.mode === 'reject') {
        res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ err: 'invalid_request', description: 'refused by the test' }))
        return
      }
      const body = Buffer.concat(chunks).toString()
      const form = req.headers['content-type'] === 'application/x-www-form-urlencoded'
      const token = form ? new URLSearchParams(body).get('logout_token') ?? '' : body
      try {
        const { typ, claims } = verify(token)
        setTimeout(() => {
          state.received.push({ at: performance.now(), path: req.url ?? '', typ, claims, authorization: req.headers.authorization })
          res.writeHead(form ? 200 : 202).end()
        }, state.delay(claims))
      } catch (err) {
        res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ err: 'invalid_key', description: (err as Error).message }))
      }
    })
  }

  let server = createServer(handle)
  async function listen (): Promise<void> {
    server = createServer(handle)
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, '127.0.0.1', () => resolve())
    })
    port = (server.address() as AddressInfo).port
    state.url = `http://127.0.0.1:${port}`
  }
  async function close (): Promise<void> {
    if (!server.listening) return
    const closed = new Promise((resolve) => server.close(resolve))
    server.closeAllConnections()
    await closed
  }
  await listen()
  t.teardown(close)
  return state
}
