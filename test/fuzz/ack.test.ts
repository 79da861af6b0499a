/**
 * Fuzz: /holdfast/ack/1. The agent's service reads mutated acks; the manager's client reads
 * mutated replies. Every outcome is a value or a typed error.
 */
import fc from 'fast-check'
import type { Multiaddr } from '@multiformats/multiaddr'
import { AckClient, AckService, ACK_PROTOCOL } from '../../src/protocols/ack.js'
import { silentLogger } from '../../src/util/log.js'
import { fuzzAsync, mutatedJson, randomBytes } from './harness.js'
import { FakeHost, pieces } from './fake-stream.js'
import { assertTypedError, framed } from './wire.js'

const noAddrs: Multiaddr[] = []
const cuts = fc.array(fc.integer({ min: 1, max: 64 }), { maxLength: 3 })

describe('fuzz: ack protocol', () => {
  fuzzAsync('ack: service reads mutated acks', fc.tuple(fc.oneof(mutatedJson(fc.record({ v: fc.constant(1), setId: fc.nat({ max: 5 }), snapshotId: fc.nat({ max: 5 }) })), randomBytes), cuts), async ([message, sizes]) => {
    const host = new FakeHost()
    await new AckService(host, { allow: () => true, log: silentLogger, sink: { acknowledge: async () => {} } }).start()
    const stream = await host.inbound(ACK_PROTOCOL, pieces(framed([message]), sizes))
    assertTypedError(stream.output())
  }, 2)

  fuzzAsync('ack: client reads mutated replies', fc.tuple(fc.oneof(mutatedJson(fc.constant({ v: 1, ok: true })), randomBytes), cuts), async ([reply, sizes]) => {
    const host = new FakeHost()
    host.replies = pieces(framed([reply]), sizes)
    await new AckClient(host).ack(noAddrs, 1, 1)
  }, 2)
})
