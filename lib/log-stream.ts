// The service's log destination: stdout, written asynchronously in blocks.
import { pino } from 'pino'

export interface LogStream {
  write: (line: string) => void
  /** Hands what is gathered to the writer, asynchronously (pino's logger.flush() calls it). */
  flush: (cb?: (err?: Error) => void) => void
  /** Writes everything out before returning: on close and on exit. */
  flushSync: () => void
}

/**
 * Log lines gathered in memory and handed to pino's destination (sonic-boom) a block of
 * at least `blockSize` characters at a time, or every `intervalMs`. sonic-boom's own
 * `minLength` does the same but measures the UTF-8 length of everything pending on every
 * line, which flattens and copies the pending text each time: at 4 KiB, that cost more per
 * request than the writes it saved (docs/benchmarks.md). Whatever is pending is written
 * synchronously when the process exits, as pino does for its own destination.
 */
export function blockLogStream (fd = 1, blockSize = 4096, intervalMs = 1000): LogStream {
  const destination = pino.destination({ dest: fd, sync: false })
  let lines: string[] = []
  let size = 0
  function handOver (): void {
    if (size === 0) return
    const block = lines.join('')
    lines = []
    size = 0
    destination.write(block)
  }
  const stream: LogStream = {
    write (line) {
      lines.push(line)
      size += line.length
      if (size >= blockSize) handOver()
    },
    flush (cb) {
      handOver()
      destination.flush(cb)
    },
    flushSync () {
      handOver()
      destination.flushSync()
    }
  }
  setInterval(handOver, intervalMs).unref()
  // A natural exit: pino's destination flushes and then ends itself on 'beforeExit', so
  // what is gathered here joins its queue first; process.exit() skips that, hence 'exit'.
  process.on('beforeExit', handOver)
  process.once('exit', () => {
    try { stream.flushSync() } catch {}
  })
  return stream
}
