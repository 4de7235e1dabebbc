import t from 'tap'
import { clientKey } from '../../lib/client-ip.js'

t.test('IPv4 addresses are keyed as they are', async (t) => {
  t.equal(clientKey('203.0.113.7'), '203.0.113.7')
})

t.test('IPv6 addresses are keyed by their /64, however written', async (t) => {
  const key = '2001:db8:1:2::/64'
  for (const ip of ['2001:db8:1:2::1', '2001:0db8:0001:0002:ffff:ffff:ffff:ffff', '2001:DB8:1:2:a:b:c:d', '2001:db8:1:2::9%eth0', '2001:db8:1:2:0:0:1.2.3.4']) {
    t.equal(clientKey(ip), key, ip)
  }
  t.not(clientKey('2001:db8:1:3::1'), key, 'the next /64 is another client')
  t.equal(clientKey('::1'), '0:0:0:0::/64')
  t.equal(clientKey('fe80::1'), 'fe80:0:0:0::/64')
})

t.test('an IPv4-mapped IPv6 address is its IPv4 address', async (t) => {
  t.equal(clientKey('::ffff:203.0.113.7'), '203.0.113.7')
  t.equal(clientKey('::ffff:cb00:7107'), '203.0.113.7')
})
