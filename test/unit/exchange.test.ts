import { strict as assert } from 'node:assert'
import { arr, bool, decodeJson, encodeJson, errorMessage, field, int, protocolId, str, WIRE_VERSION } from '../../src/protocols/exchange.js'
import { HoldfastError } from '../../src/util/errors.js'
import { holdfastCode } from './helpers.js'

const enc = new TextEncoder()
const json = (value: unknown): Uint8Array => enc.encode(JSON.stringify(value))
const identity = (r: Record<string, unknown>): Record<string, unknown> => r

describe('exchange', () => {
  describe('protocolId', () => {
    it('builds /holdfast/<name>/<version>', () => {
      assert.equal(WIRE_VERSION, 1)
      assert.equal(protocolId('manifest'), '/holdfast/manifest/1')
      assert.equal(protocolId('fetch', 3), '/holdfast/fetch/3')
    })
  })

  describe('decodeJson', () => {
    it('returns what the validator returns for a well-formed message', () => {
      const out = decodeJson(json({ v: 1, op: 'list', n: 3 }), r => ({ op: str(r, 'op'), n: int(r, 'n') }))
      assert.deepEqual(out, { op: 'list', n: 3 })
    })

    it('rejects invalid UTF-8 even when a lenient decoder would give valid JSON', () => {
      // {"v":1,"s":"<0xff>"}: with replacement characters this would parse
      const bytes = new Uint8Array([...enc.encode('{"v":1,"s":"'), 0xff, ...enc.encode('"}')])
      assert.throws(() => decodeJson(bytes, identity), (err: unknown) => {
        holdfastCode('FRAME_MALFORMED')(err)
        assert.ok((err as Error).cause instanceof TypeError, 'the cause should be the UTF-8 decoding error')
        return true
      })
      // a truncated multi-byte sequence
      assert.throws(() => decodeJson(new Uint8Array([...enc.encode('{"v":1,"s":"'), 0xc3, ...enc.encode('"}')]), identity), holdfastCode('FRAME_MALFORMED'))
    })

    it('rejects bytes that are not JSON', () => {
      for (const text of ['', 'hello', '{"v":1', '{v:1}', '{"v":1,}']) {
        assert.throws(() => decodeJson(enc.encode(text), identity), (err: unknown) => {
          holdfastCode('FRAME_MALFORMED')(err)
          assert.ok((err as Error).cause instanceof SyntaxError)
          return true
        }, JSON.stringify(text))
      }
    })

    it('rejects JSON that is not an object', () => {
      for (const value of [[], [{ v: 1 }], null, 1, 'v', true]) {
        assert.throws(() => decodeJson(json(value), identity), holdfastCode('FRAME_MALFORMED', 'not a JSON object'), JSON.stringify(value))
      }
    })

    it('rejects a missing or different version with UNSUPPORTED_VERSION', () => {
      for (const value of [{}, { v: 2 }, { v: 0 }, { v: '1' }, { v: null }, { v: 1.5 }]) {
        assert.throws(() => decodeJson(json(value), identity), holdfastCode('UNSUPPORTED_VERSION'), JSON.stringify(value))
      }
    })

    it('turns an error object into REMOTE_ERROR carrying the remote code, without calling the validator', () => {
      let called = 0
      const validate = (r: Record<string, unknown>): Record<string, unknown> => { called++; return r }
      assert.throws(() => decodeJson(json({ v: 1, error: { code: 'SET_UNKNOWN', message: 'no set 7' } }), validate), (err: unknown) => {
        holdfastCode('REMOTE_ERROR')(err)
        assert.equal((err as HoldfastError).details.remoteCode, 'SET_UNKNOWN')
        assert.match((err as Error).message, /SET_UNKNOWN: no set 7/)
        return true
      })
      assert.equal(called, 0)
    })

    it('round-trips errorMessage() into REMOTE_ERROR', () => {
      const wire = errorMessage(new HoldfastError('PEER_NOT_ALLOWED', 'go away'))
      assert.deepEqual(wire, { v: 1, error: { code: 'PEER_NOT_ALLOWED', message: 'go away' } })
      assert.throws(() => decodeJson(encodeJson(wire, 1000), identity), (err: unknown) => {
        holdfastCode('REMOTE_ERROR')(err)
        assert.equal((err as HoldfastError).details.remoteCode, 'PEER_NOT_ALLOWED')
        return true
      })
      assert.deepEqual(errorMessage(new Error('boom')), { v: 1, error: { code: 'INTERNAL', message: 'boom' } })
      assert.deepEqual(errorMessage('text'), { v: 1, error: { code: 'INTERNAL', message: 'text' } })
    })

    it('ignores a non-object error field and lets the validator decide', () => {
      const out = decodeJson(json({ v: 1, error: 'just a string', n: 1 }), r => int(r, 'n'))
      assert.equal(out, 1)
    })

    it('passes validator FRAME_MALFORMED errors through, naming the field', () => {
      assert.throws(() => decodeJson(json({ v: 1 }), r => str(r, 'op')), holdfastCode('FRAME_MALFORMED', "'op'"))
    })
  })

  describe('field helpers', () => {
    it('int accepts integers in range and rejects missing, ill-typed or out-of-range values', () => {
      assert.equal(int({ n: 0 }, 'n'), 0)
      assert.equal(int({ n: 5 }, 'n', 5, 5), 5)
      assert.equal(int({ n: Number.MAX_SAFE_INTEGER }, 'n'), Number.MAX_SAFE_INTEGER)
      for (const r of [{}, { n: '5' }, { n: 1.5 }, { n: -1 }, { n: null }, { n: true }, { n: [1] }, { n: Number.MAX_SAFE_INTEGER + 1 }]) {
        assert.throws(() => int(r, 'n'), holdfastCode('FRAME_MALFORMED', "'n'"), JSON.stringify(r))
      }
      assert.throws(() => int({ n: 0 }, 'n', 1), holdfastCode('FRAME_MALFORMED'))
      assert.throws(() => int({ n: 11 }, 'n', 0, 10), holdfastCode('FRAME_MALFORMED'))
    })

    it('str accepts strings up to maxLength', () => {
      assert.equal(str({ s: '' }, 's'), '')
      assert.equal(str({ s: 'abc' }, 's', 3), 'abc')
      assert.equal(str({ s: 'x'.repeat(4096) }, 's'), 'x'.repeat(4096))
      for (const r of [{}, { s: 1 }, { s: null }, { s: ['a'] }, { s: { a: 1 } }, { s: 'x'.repeat(4097) }]) {
        assert.throws(() => str(r, 's'), holdfastCode('FRAME_MALFORMED', "'s'"))
      }
      assert.throws(() => str({ s: 'abcd' }, 's', 3), holdfastCode('FRAME_MALFORMED'))
    })

    it('arr accepts arrays up to maxItems', () => {
      assert.deepEqual(arr({ a: [] }, 'a', 0), [])
      assert.deepEqual(arr({ a: [1, 'x'] }, 'a', 2), [1, 'x'])
      for (const r of [{}, { a: 'abc' }, { a: { length: 1 } }, { a: null }, { a: [1, 2, 3] }]) {
        assert.throws(() => arr(r, 'a', 2), holdfastCode('FRAME_MALFORMED', "'a'"))
      }
    })

    it('bool accepts only booleans', () => {
      assert.equal(bool({ b: false }, 'b'), false)
      assert.equal(bool({ b: true }, 'b'), true)
      for (const r of [{}, { b: 0 }, { b: 'true' }, { b: null }]) {
        assert.throws(() => bool(r, 'b'), holdfastCode('FRAME_MALFORMED', "'b'"))
      }
    })

    it('field returns the value when ok and throws FRAME_MALFORMED otherwise', () => {
      assert.equal(field(true, 'x', 42), 42)
      assert.throws(() => field(false, 'x', 42), holdfastCode('FRAME_MALFORMED', "'x'"))
    })
  })

  describe('encodeJson', () => {
    it('encodes to UTF-8 JSON that decodeJson reads back', () => {
      const message = { v: 1, name: 'naïve ☃', n: [1, 2] }
      const bytes = encodeJson(message, 1000)
      assert.equal(new TextDecoder().decode(bytes), JSON.stringify(message))
      assert.deepEqual(decodeJson(bytes, identity), message)
    })

    it('allows exactly the limit and rejects one byte more with FRAME_TOO_LARGE', () => {
      const message = { v: 1, pad: 'x'.repeat(100) }
      const size = enc.encode(JSON.stringify(message)).byteLength
      assert.equal(encodeJson(message, size).byteLength, size)
      assert.throws(() => encodeJson(message, size - 1), holdfastCode('FRAME_TOO_LARGE'))
    })

    it('counts bytes, not characters, against the limit', () => {
      const message = { s: 'é'.repeat(400) } // 400 characters, 800 bytes
      assert.ok(JSON.stringify(message).length < 500)
      assert.throws(() => encodeJson(message, 500), holdfastCode('FRAME_TOO_LARGE'))
    })
  })
})
