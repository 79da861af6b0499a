/**
 * Fuzz: join tokens. Random text, random base64url after the prefix and mutated valid token
 * JSON: a token decodes or throws CONFIG_INVALID. Round trip: encode → decode is identity. (hfj2: secret, manager id, addresses.)
 */
import { strict as assert } from 'node:assert'
import fc from 'fast-check'
import { decodeJoinToken, encodeJoinToken, MAX_JOIN_TOKEN_CHARS } from '../../src/node/fleet.js'
import { fuzz, mutatedJson } from './harness.js'

const PEERS = ['12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo', 'QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N', '12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA']
const key = fc.uint8Array({ minLength: 32, maxLength: 32 }).map(b => Buffer.from(b).toString('hex'))
const addr = fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 1, max: 65535 })).map(([o, p]) => `/ip4/10.0.0.${o}/tcp/${p}`)
const token = fc.record({ secret: key, managerPeerId: fc.constantFrom(...PEERS), addrs: fc.array(addr, { minLength: 1, maxLength: 8 }) })

function expectValid (text: string): void {
  const t = decodeJoinToken(text)
  assert.match(t.secret, /^[0-9a-f]{64}$/)
  assert.ok(t.addrs.length >= 1 && t.addrs.length <= 8)
  assert.ok(t.managerPeerId.length > 0 && t.managerPeerId.length <= 128)
  assert.ok(text.length <= MAX_JOIN_TOKEN_CHARS)
}

describe('fuzz: join tokens', () => {
  fuzz('join token: random text', fc.oneof(fc.string({ maxLength: 200 }), fc.string({ maxLength: 200 }).map(s => 'hfj2.' + s)), expectValid, 2)

  fuzz('join token: mutated token JSON', mutatedJson(token.map(t => ({ s: t.secret, m: t.managerPeerId, a: t.addrs }))).map(b => 'hfj2.' + Buffer.from(b).toString('base64url')), expectValid, 2)

  fuzz('join token: round trip', token, t => {
    assert.deepEqual(decodeJoinToken(encodeJoinToken(t)), { secret: t.secret, managerPeerId: t.managerPeerId, addrs: t.addrs })
  })
})
