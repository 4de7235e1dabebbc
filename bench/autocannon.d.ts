// The slice of autocannon's programmatic API the load generator uses (the package ships
// no types, and @types/autocannon is not a dependency).
declare module 'autocannon' {
  import type { EventEmitter } from 'node:events'

  export interface Client extends EventEmitter {
    setBody: (body: string | Buffer | undefined) => void
  }

  export interface Request {
    method?: string
    path?: string
    headers?: Record<string, string>
    body?: string
    onResponse?: (status: number, body: string, context: Record<string, unknown>) => void
  }

  export interface Options {
    url: string
    connections?: number
    duration?: number
    pipelining?: number
    timeout?: number
    method?: string
    headers?: Record<string, string>
    body?: string
    requests?: Request[]
    setupClient?: (client: Client) => void
  }

  export interface Result {
    duration: number
    errors: number
    timeouts: number
    non2xx: number
    '2xx': number
    requests: { total: number, average: number }
  }

  export interface Instance extends EventEmitter {
    on: ((event: 'response', fn: (client: Client, status: number, bytes: number, ms: number) => void) => this) &
      ((event: string, fn: (...args: any[]) => void) => this)
  }

  function autocannon (opts: Options, cb: (err: Error | null, result: Result) => void): Instance
  export default autocannon
}
