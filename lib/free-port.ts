// A TCP port nothing listens on at this moment (the embedded PostgreSQL's, a test's, the
// benchmark's servers): the kernel picks it, we give it back at once.
import { createServer, type AddressInfo } from 'node:net'

export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo
      srv.close(() => resolve(port))
    })
  })
}
