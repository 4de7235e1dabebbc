// Raw argon2id rate: argon2.verify of one hash made at the service's parameters, with a
// fixed number in flight (login's connection count), for a fixed time. Run pinned to the
// server's core, it is the ceiling for POST /auth/login. Prints one JSON line.
import { randomBytes } from 'node:crypto'
import argon2 from 'argon2'
import { percentile, type LoadResult } from './stats.js'

const spec = JSON.parse(process.argv[2] ?? '{}') as {
  durationSec: number
  concurrency: number
  memoryCost: number
  timeCost: number
  parallelism: number
}

const password = randomBytes(12).toString('base64')
const hash = await argon2.hash(password, {
  type: argon2.argon2id,
  memoryCost: spec.memoryCost,
  timeCost: spec.timeCost,
  parallelism: spec.parallelism
})
// Warm up the thread pool and the code paths once per worker.
await Promise.all(Array.from({ length: spec.concurrency }, () => argon2.verify(hash, password)))

const latencies: number[] = []
let failures = 0
const cpu0 = process.cpuUsage()
const start = performance.now()
const deadline = start + spec.durationSec * 1000

async function worker (): Promise<void> {
  while (performance.now() < deadline) {
    const t = performance.now()
    if (await argon2.verify(hash, password)) latencies.push(performance.now() - t)
    else failures++
  }
}

await Promise.all(Array.from({ length: spec.concurrency }, worker))
const seconds = (performance.now() - start) / 1000
const cpu = process.cpuUsage(cpu0)
latencies.sort((a, b) => a - b)
const result: LoadResult = {
  ok: latencies.length,
  non2xx: failures,
  errors: 0,
  timeouts: 0,
  durationSec: seconds,
  rps: latencies.length / seconds,
  p50: percentile(latencies, 50),
  p99: percentile(latencies, 99),
  // This process is the "server" here: its CPU is on the pinned core.
  genCpuPct: (cpu.user + cpu.system) / 1e4 / seconds
}
process.stdout.write(JSON.stringify(result) + '\n')
