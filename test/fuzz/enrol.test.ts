/**
 * Fuzz: /holdfast/enrol/1. Anyone on the LAN can reach the enrolment listener (its prologue
 * is public), so its request decoder meets the most hostile input of all; the joiner's client
 * reads the grant from a peer it proved but should still not trust blindly. Every outcome is a
 * value that passes the decoder's checks or a typed error; a grant that decodes is well formed.
 */
import { strict as assert } from 'node:assert'
import fc from 'fast-check'
import type { Multiaddr } from '@multiformats/multiaddr'
import { enrol, EnrolService, ENROL_LIMITS, ENROL_PROTOCOL, type EnrolRequest } from '../../src/protocols/enrol.js'
import { isPeerId } from '../../src/node/fleet.js'
import { HoldfastError } from '../../src/util/errors.js'
import { silentLogger } from '../../src/util/log.js'
import { fuzzAsync, mutatedJson, randomBytes } from './harness.js'
import { FakeHost, pieces } from './fake-stream.js'
import { assertTypedError, framed } from './wire.js'

const noAddrs: Multiaddr[] = []
const cuts = fc.array(fc.integer({ min: 1, max: 64 }), { maxLength: 3 })
const hex64 = fc.uint8Array({ minLength: 32, maxLength: 32 }).map(b => Buffer.from(b).toString('hex'))
const PEERS = ['12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo', 'QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N']

describe('fuzz: enrol protocol', () => {
  fuzzAsync('enrol: service reads mutated requests', fc.tuple(fc.oneof(mutatedJson(fc.record({ v: fc.constant(1), secret: hex64, name: fc.string({ maxLength: 40 }) })), randomBytes), cuts), async ([message, sizes]) => {
    const host = new FakeHost()
    let seen: EnrolRequest | undefined
    await new EnrolService(host, {
      log: silentLogger,
      enrol: async request => {
        seen = request
        // what the manager's redeem does with a secret it does not know
        throw new HoldfastError('ENROL_REFUSED', 'enrolment refused')
      }
    }).start()
    const stream = await host.inbound(ENROL_PROTOCOL, pieces(framed([message]), sizes))
    assertTypedError(stream.output())
    if (seen !== undefined) {
      // what reaches the manager's check is two bounded strings, whatever was sent
      assert.equal(typeof seen.secret, 'string')
      assert.ok(seen.secret.length <= 64)
      assert.equal(typeof seen.name, 'string')
      assert.ok(seen.name.length <= ENROL_LIMITS.maxNameChars)
    }
  }, 2)

  fuzzAsync('enrol: joiner reads mutated grants', fc.tuple(fc.oneof(mutatedJson(fc.record({ v: fc.constant(1), fleetKey: hex64, managerPeerId: fc.constantFrom(...PEERS), state: fc.constantFrom('approved', 'pending') })), randomBytes), cuts), async ([reply, sizes]) => {
    const host = new FakeHost()
    host.replies = pieces(framed([reply]), sizes)
    const grant = await enrol(host, noAddrs, { secret: 'a'.repeat(64), name: 'desk' })
    assert.match(grant.fleetKey, /^[0-9a-f]{64}$/)
    assert.ok(isPeerId(grant.managerPeerId))
    assert.ok(grant.state === 'approved' || grant.state === 'pending')
  }, 2)
})
