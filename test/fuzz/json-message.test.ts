/**
 * Fuzz: the JSON control message every protocol shares (decodeJson): random bytes and
 * mutated messages, error messages included, give the record or a typed error.
 */
import { strict as assert } from 'node:assert'
import fc from 'fast-check'
import { decodeJson, encodeJson } from '../../src/protocols/exchange.js'
import { fuzz, mutatedJson, randomBytes } from './harness.js'

describe('fuzz: JSON control messages', () => {
  fuzz('json message: random bytes', randomBytes, bytes => { decodeJson(bytes, r => r) }, 2)
  fuzz('json message: mutated messages and error frames', mutatedJson(fc.oneof(fc.record({ v: fc.constant(1), x: fc.jsonValue({ maxDepth: 2 }) }), fc.record({ v: fc.constant(1), error: fc.record({ code: fc.string(), message: fc.string() }) }))), bytes => {
    decodeJson(bytes, r => r)
  }, 3)
  fuzz('json message: round trip', fc.dictionary(fc.string({ maxLength: 5 }).filter(k => k !== 'v' && k !== 'error' && k !== '__proto__'), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }), rec => {
    const msg = { ...rec, v: 1 }
    assert.deepEqual(decodeJson(encodeJson(msg, 1 << 20), r => r), JSON.parse(JSON.stringify(msg)))
  })
})
