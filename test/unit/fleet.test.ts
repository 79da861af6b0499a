import { strict as assert } from 'node:assert'
import { decodeJoinToken, encodeJoinToken, fleetTag, newEnrolSecret, newFleetKey, noisePrologue } from '../../src/node/fleet.js'
import { holdfastCode } from './helpers.js'

const KEY_A = 'a1'.repeat(32)
const KEY_B = 'b2'.repeat(32)
const PEER = '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'

function tokenOf (payload: string): string {
  return 'hfj2.' + Buffer.from(payload).toString('base64url')
}

describe('fleet', () => {
  describe('newFleetKey', () => {
    it('makes 64 lowercase hex characters, different every time', () => {
      const a = newFleetKey()
      const b = newFleetKey()
      assert.match(a, /^[0-9a-f]{64}$/)
      assert.match(b, /^[0-9a-f]{64}$/)
      assert.notEqual(a, b)
    })
  })

  describe('join tokens', () => {
    const ADDRS = ['/ip4/127.0.0.1/tcp/4011', '/ip6/::1/tcp/4011']
    it('round-trip the enrolment secret, manager peer id and addresses, and carry no fleet key', () => {
      const secret = newEnrolSecret()
      const token = encodeJoinToken({ secret, managerPeerId: PEER, addrs: ADDRS })
      assert.match(token, /^hfj2\.[A-Za-z0-9_-]+$/, 'the token is URL- and shell-safe')
      assert.deepEqual(decodeJoinToken(token), { secret, managerPeerId: PEER, addrs: ADDRS })
      assert.deepEqual(Object.keys(JSON.parse(Buffer.from(token.slice(5), 'base64url').toString('utf8')) as object).sort(), ['a', 'm', 's'])
    })

    it('reject a wrong or missing prefix, and say an old hfj1 token is to be replaced', () => {
      const good = encodeJoinToken({ secret: KEY_A, managerPeerId: PEER, addrs: ADDRS })
      for (const text of ['', good.slice(5), 'hfj3.' + good.slice(5), 'HFJ2.' + good.slice(5), ' ' + good]) {
        assert.throws(() => decodeJoinToken(text), holdfastCode('CONFIG_INVALID', 'hfj2.'), JSON.stringify(text.slice(0, 12)))
      }
      assert.throws(() => decodeJoinToken('hfj1.' + good.slice(5)), holdfastCode('CONFIG_INVALID', 'token create'))
    })

    it('reject a body that is not base64url JSON', () => {
      for (const text of ['hfj2.', 'hfj2.!!!!', 'hfj2.%%%', tokenOf('not json'), tokenOf('{"s":'), tokenOf('\u0000')]) {
        assert.throws(() => decodeJoinToken(text), holdfastCode('CONFIG_INVALID', 'damaged'), text)
      }
    })

    it('reject a truncated token', () => {
      const good = encodeJoinToken({ secret: KEY_A, managerPeerId: PEER, addrs: ADDRS })
      assert.throws(() => decodeJoinToken(good.slice(0, good.length - 10)), holdfastCode('CONFIG_INVALID'))
    })

    it('reject JSON of the wrong shape or a bad secret, peer id or address', () => {
      const a = ADDRS
      const bodies: unknown[] = [
        null, 42, 'text', [], {},
        { s: KEY_A }, { m: PEER }, { s: KEY_A, m: PEER },
        { s: KEY_A.slice(2), m: PEER, a },
        { s: KEY_A + 'ab', m: PEER, a },
        { s: KEY_A.toUpperCase(), m: PEER, a },
        { s: 'z'.repeat(64), m: PEER, a },
        { s: 123, m: PEER, a },
        { s: KEY_A, m: 'short', a },
        { s: KEY_A, m: 12345678901, a },
        { s: KEY_A, m: PEER, a: [] },
        { s: KEY_A, m: PEER, a: ['not an address'] },
        { s: KEY_A, m: PEER, a: [`/ip4/198.18.0.4/tcp/1/p2p/${PEER}`] },
        { s: KEY_A, m: PEER, a: Array(9).fill(a[0]) },
        { k: KEY_A, m: PEER }
      ]
      for (const body of bodies) {
        assert.throws(() => decodeJoinToken(tokenOf(JSON.stringify(body))), holdfastCode('CONFIG_INVALID', 'damaged'), JSON.stringify(body))
      }
    })
  })

  describe('derived values', () => {
    it('noisePrologue is 32 bytes, deterministic per key, different across keys', () => {
      const a1 = noisePrologue(KEY_A)
      const a2 = noisePrologue(KEY_A)
      const b = noisePrologue(KEY_B)
      assert.ok(a1 instanceof Uint8Array)
      assert.equal(a1.byteLength, 32)
      assert.deepEqual(a1, a2)
      assert.notDeepEqual(a1, b)
    })

    it('fleetTag is 16 hex characters, deterministic per key, different across keys', () => {
      const a = fleetTag(KEY_A)
      assert.match(a, /^[0-9a-f]{16}$/)
      assert.equal(fleetTag(KEY_A), a)
      assert.notEqual(fleetTag(KEY_B), a)
    })

    it('prologue and tag are independent derivations and reveal no part of the key', () => {
      for (const key of [KEY_A, KEY_B, newFleetKey()]) {
        const prologueHex = Buffer.from(noisePrologue(key)).toString('hex')
        const tag = fleetTag(key)
        assert.ok(!prologueHex.startsWith(tag), 'the tag must not be a prefix of the prologue')
        assert.ok(!prologueHex.includes(tag))
        assert.notEqual(prologueHex, key)
        assert.ok(!key.includes(tag), 'the tag must not be a piece of the key')
        assert.ok(!prologueHex.includes(key.slice(0, 16)))
      }
    })

    it('are stable across releases (pinned HKDF-SHA256 values)', () => {
      // a change here breaks every existing fleet: peers would no longer find or trust each other
      const key = '00'.repeat(32)
      assert.equal(Buffer.from(noisePrologue(key)).toString('hex'), 'e6340955e355f65ccbbc8fa79392ba16da38f1ea0d0b68d31441603d94fd1b73')
      assert.equal(fleetTag(key), '42f176aaca91f567')
    })
  })
})
