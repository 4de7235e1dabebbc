// Bounded waits on a dependency: the work's result, or `onTimeout()` thrown after `ms`.
// (The work itself is not cancelled; its driver's own timeouts end it.)
export async function withTimeout<T> (work: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      work,
      new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(onTimeout()), ms) })
    ])
  } finally {
    clearTimeout(timer)
  }
}
