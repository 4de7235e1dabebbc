// The one decision of the Redis protocol (version 1), shared by the auth service and this
// plugin: given HMGET's `ra` and `s:<sid>` and the token's `sca`.
import t from 'tap'
import { checkFields, decide, PROTOCOL_KEY, PROTOCOL_VERSION, userKey } from '@auth-service/fastify-resource-server/protocol'

const SCA = 1_700_000_000_000_000

t.test('keys and fields', async (t) => {
  t.equal(userKey('2f1c5a3e-8b7d-4c6a-9e0f-1a2b3c4d5e6f'), '{2f1c5a3e-8b7d-4c6a-9e0f-1a2b3c4d5e6f}', 'the user id is a hash tag')
  t.strictSame(checkFields('7d3f0a4e-2b1c-4e5d-8f6a-9b0c1d2e3f4a'), ['ra', 's:7d3f0a4e-2b1c-4e5d-8f6a-9b0c1d2e3f4a'])
  t.equal(PROTOCOL_KEY, 'revocation:protocol')
  t.equal(PROTOCOL_VERSION, '1')
})

t.test('the decision table', async (t) => {
  const cases: Array<[string | null, string | null, string, string]> = [
    // ra, s, decision, why
    [null, null, 'unknown', 'nothing cached: first use, eviction, FLUSHALL'],
    [null, 'x', 'revoked', 'a dead session needs no ra'],
    [String(SCA - 1), 'x', 'revoked', 'dead, whatever ra says'],
    ['0', 'x:1700000900', 'revoked', 'dead, with the time the field is kept until'],
    [null, 'ok', 'unknown', 'live needs ra too: a revocation that raised ra removes the s: fields'],
    ['0', 'ok', 'live', 'live, never revoked'],
    [String(SCA - 1), 'ok', 'live', 'ra before the session: live'],
    ['0', 'ok:1700000900', 'live', 'live, with the time the field is kept until'],
    [String(SCA), 'ok', 'revoked', 'a tie is dead: the session was created at ra'],
    [String(SCA + 1), 'ok', 'revoked', 'every session created at or before ra is dead'],
    [String(SCA + 1), null, 'revoked', 'ra alone revokes'],
    [String(SCA - 1), null, 'unknown', 'ra alone does not say the session is live'],
    ['0', 'okay', 'unknown', 'not a value of the protocol'],
    ['0', 'xylophone', 'unknown', 'not a value of the protocol either'],
    ['garbage', 'ok', 'unknown', 'an ra that is not a number: PostgreSQL decides']
  ]
  for (const [ra, s, expected, why] of cases) t.equal(decide([ra, s], SCA), expected, `ra=${ra} s=${s}: ${why}`)
})
