import { strict as assert } from 'node:assert'
import { decodeJoinToken, encodeJoinToken, fleetTag, newFleetKey, noisePrologue } from '../../src/node/fleet.js'
import { holdfastCode } from './helpers.js'

const KEY_A = 'a1'.repeat(32)
const KEY_B = 'b2'.repeat(32)
const PEER = '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'

function tokenOf (payload: string): string {
  return 'hfj1.' + Buffer.from(payload).toString('base64url')
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
    it('round-trip the fleet key and manager peer id', () => {
      const token = encodeJoinToken({ fleetKey: KEY_A, managerPeerId: PEER })
      assert.ok(token.startsWith('hfj1.'))
      assert.match(token, /^hfj1\.[A-Za-z0-9_-]+$/, 'the token is URL- and shell-safe')
      assert.deepEqual(decodeJoinToken(token), { fleetKey: KEY_A, managerPeerId: PEER })
      const fresh = newFleetKey()
      assert.deepEqual(decodeJoinToken(encodeJoinToken({ fleetKey: fresh, managerPeerId: PEER })), { fleetKey: fresh, managerPeerId: PEER })
    })

    it('reject a wrong or missing prefix', () => {
      const good = encodeJoinToken({ fleetKey: KEY_A, managerPeerId: PEER })
      for (const text of ['', good.slice(5), 'hfj2.' + good.slice(5), 'HFJ1.' + good.slice(5), ' ' + good]) {
        assert.throws(() => decodeJoinToken(text), holdfastCode('CONFIG_INVALID', 'hfj1.'), JSON.stringify(text.slice(0, 12)))
      }
    })

    it('reject a body that is not base64url JSON', () => {
      for (const text of ['hfj1.', 'hfj1.!!!!', 'hfj1.%%%', tokenOf('not json'), tokenOf('{"k":'), tokenOf('\u0000')]) {
        assert.throws(() => decodeJoinToken(text), holdfastCode('CONFIG_INVALID', 'damaged'), text)
      }
    })

    it('reject a truncated token', () => {
      const good = encodeJoinToken({ fleetKey: KEY_A, managerPeerId: PEER })
      assert.throws(() => decodeJoinToken(good.slice(0, good.length - 10)), holdfastCode('CONFIG_INVALID'))
    })

    it('reject JSON of the wrong shape or a bad key or peer id', () => {
      const bodies: unknown[] = [
        null, 42, 'text', [], {},
        { k: KEY_A }, { m: PEER },
        { k: KEY_A.slice(2), m: PEER },
        { k: KEY_A + 'ab', m: PEER },
        { k: KEY_A.toUpperCase(), m: PEER },
        { k: 'z'.repeat(64), m: PEER },
        { k: 123, m: PEER },
        { k: KEY_A, m: 'short' },
        { k: KEY_A, m: 12345678901 },
        { fleetKey: KEY_A, managerPeerId: PEER }
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
