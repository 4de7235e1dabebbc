// Asymmetric signing (EdDSA, ES256), the JWKS endpoint, and key rotation without
// signing anyone out.
import t from 'tap'
import { createHmac, createPublicKey, generateKeyPairSync, randomBytes, verify as cryptoVerify } from 'node:crypto'
import { build, context, login, me, signUp } from '../helper.js'
import { loadConfig } from '../../plugins/external/config.js'

const ctx = await context(t)

function pair (type: 'ed25519' | 'ec') {
  const { privateKey, publicKey } = type === 'ed25519'
    ? generateKeyPairSync('ed25519')
    : generateKeyPairSync('ec', { namedCurve: 'P-256' })
  return {
    // One-line form with escaped newlines, as it would sit in a .env file.
    private: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString().replace(/\n/g, '\\n'),
    public: publicKey.export({ format: 'pem', type: 'spki' }).toString()
  }
}
const header = (token: string) => JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString())

t.test('EdDSA: tokens carry a kid, verify against the published JWK, and work', async (t) => {
  const key = pair('ed25519')
  const app = await build(t, ctx, { JWT_SECRET: undefined, JWT_PRIVATE_KEY: key.private })
  const user = await signUp(app, ctx)
  t.match(header(user.access), { alg: 'EdDSA', kid: String })
  t.equal((await me(app, user.access)).statusCode, 200)

  const res = await app.inject('/.well-known/jwks.json')
  t.equal(res.statusCode, 200)
  const { keys } = res.json()
  t.equal(keys.length, 1)
  t.match(keys[0], { kty: 'OKP', crv: 'Ed25519', kid: header(user.access).kid, alg: 'EdDSA', use: 'sig' })
  t.notOk('d' in keys[0], 'no private part')
  // Another service verifies with the JWK alone.
  const [h, p, s] = user.access.split('.')
  const jwk = createPublicKey({ key: keys[0], format: 'jwk' })
  t.ok(cryptoVerify(null, Buffer.from(`${h}.${p}`), jwk, Buffer.from(s, 'base64url')))

  // Algorithm confusion: HS256 with the public key as the HMAC secret.
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString())
  const input = `${Buffer.from(JSON.stringify({ alg: 'HS256', kid: keys[0].kid })).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`
  const forged = `${input}.${createHmac('sha256', key.public).update(input).digest('base64url')}`
  t.equal((await me(app, forged)).statusCode, 401, 'HS256 signed with the public key is refused')
  const noKid = `${Buffer.from(JSON.stringify({ alg: 'EdDSA' })).toString('base64url')}.${p}.${s}`
  t.equal((await me(app, noKid)).statusCode, 401, 'a token without kid is refused')
})

t.test('ES256 works the same way', async (t) => {
  const app = await build(t, ctx, { JWT_SECRET: undefined, JWT_PRIVATE_KEY: pair('ec').private })
  const user = await signUp(app, ctx)
  t.match(header(user.access), { alg: 'ES256', kid: String })
  t.equal((await me(app, user.access)).statusCode, 200)
  t.match((await app.inject('/.well-known/jwks.json')).json().keys[0], { kty: 'EC', crv: 'P-256', alg: 'ES256' })
})

t.test('rotation: a new key signs, the previous one still verifies until it is removed', async (t) => {
  const oldKey = pair('ed25519')
  const newKey = pair('ed25519')
  const before = await build(t, ctx, { JWT_SECRET: undefined, JWT_PRIVATE_KEY: oldKey.private })
  const user = await signUp(before, ctx)
  const oldKid = header(user.access).kid

  const during = await build(t, ctx, { JWT_SECRET: undefined, JWT_PRIVATE_KEY: newKey.private, JWT_PUBLIC_KEY: oldKey.public })
  t.equal((await me(during, user.access)).statusCode, 200, 'a token of the previous key still works')
  const fresh = await login(during, user.username)
  t.not(header(fresh.access).kid, oldKid, 'new tokens are signed with the new key')
  t.equal((await me(during, fresh.access)).statusCode, 200)
  const kids = (await during.inject('/.well-known/jwks.json')).json().keys.map((k: { kid: string }) => k.kid)
  t.strictSame(kids, [header(fresh.access).kid, oldKid], 'JWKS lists the current key first, then the previous one')

  const after = await build(t, ctx, { JWT_SECRET: undefined, JWT_PRIVATE_KEY: newKey.private })
  t.equal((await me(after, user.access)).statusCode, 401, 'once the previous key is removed its tokens stop verifying')
  t.equal((await me(after, fresh.access)).statusCode, 200)
})

t.test('HS256 mode publishes no JWKS', async (t) => {
  const app = await build(t, ctx)
  t.equal((await app.inject('/.well-known/jwks.json')).statusCode, 404)
})

t.test('bad key configuration stops start-up with one line', async (t) => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()
  t.throws(() => loadConfig({ JWT_PRIVATE_KEY: 'not a key' }), /JWT_PRIVATE_KEY is not a PEM private key/)
  t.throws(() => loadConfig({ JWT_PRIVATE_KEY: rsa }), /JWT_PRIVATE_KEY: only Ed25519/)
  t.throws(() => loadConfig({ JWT_PRIVATE_KEY: pair('ed25519').private, JWT_SECRET: 'x'.repeat(40) }), /not both/)
  t.throws(() => loadConfig({ JWT_PUBLIC_KEY: pair('ed25519').public }), /JWT_PUBLIC_KEY needs JWT_PRIVATE_KEY/)
  t.throws(() => loadConfig({ JWT_PRIVATE_KEY: pair('ed25519').private, JWT_PUBLIC_KEY: 'junk' }), /JWT_PUBLIC_KEY holds no PEM/)
  t.ok(loadConfig({ NODE_ENV: 'production', JWT_PRIVATE_KEY: pair('ed25519').private, MFA_ENCRYPTION_KEY: randomBytes(32).toString('base64') }).signingKeys, 'a private key is enough in production')
})
