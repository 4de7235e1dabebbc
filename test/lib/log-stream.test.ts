// The block-buffered log destination (lib/log-stream.ts): lines reach the fd in order,
// in blocks, within the interval, and all of them by the time the process exits.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { blockLogStream } from '../../lib/log-stream.js'

const dir = mkdtempSync(join(tmpdir(), 'log-stream-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

function tempFile (name: string): { path: string, fd: number } {
  const path = join(dir, name)
  const fd = openSync(path, 'w')
  t.teardown(() => closeSync(fd))
  return { path, fd }
}

async function until (read: () => string, predicate: (s: string) => boolean): Promise<string> {
  for (let i = 0; i < 100; i++) {
    const s = read()
    if (predicate(s)) return s
    await sleep(20)
  }
  return read()
}

t.test('lines are held until a block is full, then written in order', async (t) => {
  const { path, fd } = tempFile('blocks.log')
  const stream = blockLogStream(fd, 100, 60_000)
  const read = () => readFileSync(path, 'utf8')
  stream.write('a'.repeat(40) + '\n')
  stream.write('b'.repeat(40) + '\n')
  await sleep(50)
  t.equal(read(), '', 'under a block: nothing written yet')
  stream.write('c'.repeat(40) + '\n')
  const written = await until(read, (s) => s.length === 123)
  t.equal(written, 'a'.repeat(40) + '\n' + 'b'.repeat(40) + '\n' + 'c'.repeat(40) + '\n', 'the block, in order')
  stream.write('d\n')
  stream.flushSync()
  t.equal(read().slice(123), 'd\n', 'flushSync() writes what is pending')
})

t.test('a partial block is written within the interval', async (t) => {
  const { path, fd } = tempFile('interval.log')
  const stream = blockLogStream(fd, 4096, 50)
  stream.write('one line\n')
  t.equal(await until(() => readFileSync(path, 'utf8'), (s) => s !== ''), 'one line\n')
  await new Promise<void>((resolve, reject) => stream.flush((err) => err ? reject(err) : resolve()))
})

/** Runs `body` in a child process whose fd 3 is a fresh file; returns its exit status and the file. */
function inChild (name: string, body: string): { status: number | null, written: string } {
  const { path, fd } = tempFile(`${name}.log`)
  const script = join(dir, `${name}.ts`)
  const module = fileURLToPath(new URL('../../lib/log-stream.ts', import.meta.url))
  writeFileSync(script, `import { blockLogStream } from ${JSON.stringify(module)}
const stream = blockLogStream(3, 4096, 60_000)
${body}
`)
  const child = spawnSync(process.execPath, ['--import', import.meta.resolve('tsx'), script], { stdio: ['ignore', 'inherit', 'inherit', fd] as any })
  return { status: child.status, written: readFileSync(path, 'utf8') }
}

t.test('pending lines are written when the event loop runs dry', async (t) => {
  const { status, written } = inChild('natural', "stream.write('first\\n')\nsetTimeout(() => stream.write('second\\n'), 20)")
  t.equal(status, 0)
  t.equal(written, 'first\nsecond\n')
})

t.test('pending lines are written when the process exits', async (t) => {
  const { status, written } = inChild('exit', "stream.write('last words\\n')\nprocess.exit(3)")
  t.equal(status, 3)
  t.equal(written, 'last words\n')
})
