// The test suite's own set-up: what it says when redis-server is missing. (The embedded
// PostgreSQL of a run on a machine without one: TEST_EMBEDDED_POSTGRES=1 npm test.)
import t from 'tap'
import { privateRedis } from '../helper.js'

t.test('without redis-server on PATH, a test that needs one says how to get it', async (t) => {
  const path = process.env.PATH
  process.env.PATH = '/nonexistent'
  t.teardown(() => { process.env.PATH = path })
  await t.rejects(privateRedis(t), /^redis-server is not installed: .*`apt-get install redis-server`/)
})
