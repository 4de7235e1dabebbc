// Summarises a V8 .cpuprofile (node --cpu-prof): where the samples are, by function (self
// time) and by package (self time, and time with the package anywhere on the stack).

interface CallFrame { functionName: string, url: string, lineNumber: number }
interface ProfileNode { id: number, callFrame: CallFrame, children?: number[] }
export interface CpuProfile {
  nodes: ProfileNode[]
  startTime: number
  endTime: number
  samples: number[]
  timeDeltas: number[]
}

const META = new Set(['(root)', '(program)', '(idle)', '(garbage collector)'])

/** Which package or part of the program a frame belongs to. */
export function category (frame: CallFrame): string {
  const { url, functionName } = frame
  if (url === '') return META.has(functionName) ? functionName : '(V8 builtins / native)'
  const nm = url.lastIndexOf('/node_modules/')
  if (nm !== -1) {
    const parts = url.slice(nm + '/node_modules/'.length).split('/')
    return parts[0].startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]
  }
  if (url.startsWith('node:')) {
    const parts = url.slice(5).split('/')
    return 'node:' + (parts[0] === 'internal' ? parts.slice(0, 2).join('/') : parts[0])
  }
  const dist = url.indexOf('/dist/')
  if (dist !== -1) return 'service: ' + url.slice(dist + 1)
  return url
}

function frameKey (frame: CallFrame): string {
  const name = frame.functionName === '' ? '(anonymous)' : frame.functionName
  if (frame.url === '') return name
  const nm = frame.url.lastIndexOf('/node_modules/')
  const where = nm !== -1
    ? frame.url.slice(nm + '/node_modules/'.length)
    : frame.url.includes('/dist/') ? frame.url.slice(frame.url.indexOf('/dist/') + 1) : frame.url
  return `${name}  ${where}:${frame.lineNumber + 1}`
}

function top (m: Map<string, number>, n: number): Array<[string, number]> {
  return [...m].sort((a, b) => b[1] - a[1]).slice(0, n)
}

/**
 * `window`: only the samples taken in [from, to] (µs of CLOCK_MONOTONIC, the clock V8
 * stamps samples with on Linux: process.hrtime.bigint() / 1000n), e.g. the load itself
 * without start-up and shutdown.
 */
export function summarise (profile: CpuProfile, n = 25, window?: { from: number, to: number }): string {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const parent = new Map<number, number>()
  for (const node of profile.nodes) for (const c of node.children ?? []) parent.set(c, node.id)

  let samples = profile.samples
  let span = profile.endTime - profile.startTime
  let windowNote = ''
  if (window !== undefined) {
    const picked: number[] = []
    let t = profile.startTime
    for (let i = 0; i < profile.samples.length; i++) {
      t += profile.timeDeltas[i] ?? 0
      if (t >= window.from && t <= window.to) picked.push(profile.samples[i])
    }
    if (picked.length > 0) {
      samples = picked
      span = window.to - window.from
      windowNote = ` (the load window only: ${picked.length} of ${profile.samples.length} samples)`
    } else {
      windowNote = ' (no sample inside the load window: whole profile shown)'
    }
  }
  const total = samples.length
  const msPerSample = span / 1000 / Math.max(1, total)
  const selfFn = new Map<string, number>()
  const selfCat = new Map<string, number>()
  const inclCat = new Map<string, number>()
  const inclFn = new Map<string, number>()
  let idle = 0

  // Categories and functions on the path from the root to each node, computed once per node.
  const pathCache = new Map<number, { cats: Set<string>, fns: Set<string> }>()
  function path (id: number): { cats: Set<string>, fns: Set<string> } {
    const cached = pathCache.get(id)
    if (cached !== undefined) return cached
    const chain: number[] = []
    let cur: number | undefined = id
    // Bounded by the tree's depth: walk up to the first node already known.
    while (cur !== undefined && !pathCache.has(cur) && chain.length <= profile.nodes.length) {
      chain.push(cur)
      cur = parent.get(cur)
    }
    let acc = cur === undefined ? { cats: new Set<string>(), fns: new Set<string>() } : pathCache.get(cur) as { cats: Set<string>, fns: Set<string> }
    for (let i = chain.length - 1; i >= 0; i--) {
      const frame = (byId.get(chain[i]) as ProfileNode).callFrame
      const next = { cats: new Set(acc.cats), fns: new Set(acc.fns) }
      if (!META.has(frame.functionName)) {
        next.cats.add(category(frame))
        next.fns.add(frameKey(frame))
      }
      pathCache.set(chain[i], next)
      acc = next
    }
    return acc
  }

  for (const id of samples) {
    const frame = (byId.get(id) as ProfileNode).callFrame
    if (frame.functionName === '(idle)') {
      idle++
      continue
    }
    const key = frameKey(frame)
    selfFn.set(key, (selfFn.get(key) ?? 0) + 1)
    const cat = category(frame)
    selfCat.set(cat, (selfCat.get(cat) ?? 0) + 1)
    const p = path(id)
    for (const c of p.cats) inclCat.set(c, (inclCat.get(c) ?? 0) + 1)
    for (const f of p.fns) inclFn.set(f, (inclFn.get(f) ?? 0) + 1)
  }

  const busy = total - idle
  const pct = (count: number) => `${((100 * count) / Math.max(1, busy)).toFixed(1).padStart(5)} %`
  const lines: string[] = []
  lines.push(`${total} samples over ${(span / 1e6).toFixed(1)} s${windowNote} ` +
    `(${msPerSample.toFixed(2)} ms each); idle ${((100 * idle) / Math.max(1, total)).toFixed(1)} %; ` +
    'percentages below are of the busy (non-idle) samples')
  lines.push('', `Top ${n} functions by self time:`)
  for (const [k, c] of top(selfFn, n)) lines.push(`  ${pct(c)}  ${k}`)
  lines.push('', 'Self time by package / part:')
  for (const [k, c] of top(selfCat, n)) lines.push(`  ${pct(c)}  ${k}`)
  lines.push('', 'Time with the package on the stack (inclusive; overlaps):')
  for (const [k, c] of top(inclCat, n)) lines.push(`  ${pct(c)}  ${k}`)
  lines.push('', `Top ${n} functions by inclusive time:`)
  for (const [k, c] of top(inclFn, n)) lines.push(`  ${pct(c)}  ${k}`)
  return lines.join('\n')
}
