/**
 * Fuzz: /holdfast/fetch/1. The manager's client reads mutated chunk, missing, end and error
 * frames (with rawLength anywhere in u32); the agent's service reads mutated requests. A
 * chunk that claims more plaintext than a chunk can have is refused before anyone
 * decompresses by its word.
 */
import { strict as assert } from 'node:assert'
import fc from 'fast-check'
import type { Multiaddr } from '@multiformats/multiaddr'
import { FetchClient, FetchService, FETCH_LIMITS, FETCH_PROTOCOL } from '../../src/protocols/fetch.js'
import { MAX_CHUNK_BYTES } from '../../src/codec/chunk-codec.js'
import { toHex } from '../../src/model/entry.js'
import type { Clock } from '../../src/util/clock.js'
import { silentLogger } from '../../src/util/log.js'
import { editBytes, fuzzAsync, mutatedJson, randomBytes } from './harness.js'
import { FakeHost, pieces } from './fake-stream.js'
import { assertTypedError, framed, json } from './wire.js'

const noAddrs: Multiaddr[] = []

/** Time that passes only when something sleeps (a rate limit costs no wall time). */
function fastForwardClock (): Clock {
  let now = 0
  return { now: () => now, sleep: async ms => { now += ms } }
}

const id = fc.uint8Array({ minLength: 32, maxLength: 32 })
const rawLength = fc.oneof(fc.integer({ min: 0, max: 0xffffffff }), fc.constantFrom(0, 1, MAX_CHUNK_BYTES, MAX_CHUNK_BYTES + 1, 0xffffffff))

function chunkFrame (kind: number, chunkId: Uint8Array, raw: number, data: Uint8Array): Uint8Array {
  const f = new Uint8Array(1 + 32 + 4 + data.byteLength)
  f[0] = kind
  f.set(chunkId, 1)
  new DataView(f.buffer).setUint32(33, raw, false)
  f.set(data, 37)
  return f
}

const edits = fc.array(fc.record({ kind: fc.constantFrom('flip' as const, 'insert' as const, 'delete' as const, 'truncate' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }), { maxLength: 2 })

/** A request for some ids and an answer to it: right, or with frames edited, dropped, repeated. */
const exchange = fc.array(id, { minLength: 1, maxLength: 3 }).chain(ids => fc.tuple(
  fc.constant(ids),
  fc.tuple(...ids.map(i => fc.tuple(fc.boolean(), rawLength, fc.uint8Array({ maxLength: 64 })).map(([missing, raw, data]) => missing ? chunkFrame(0x02, i, 0, new Uint8Array(0)).subarray(0, 33) : chunkFrame(0x01, i, raw, data)))),
  fc.oneof(fc.constant(new Uint8Array([0, 0, 0, 0, ids.length])), fc.uint8Array({ maxLength: 6 }), fc.constant(new Uint8Array([0xff, ...json({ v: 1, error: { code: { toString: 1 }, message: 'x' } })]))),
  fc.array(fc.tuple(fc.nat(), edits), { maxLength: 2 }),
  fc.array(fc.integer({ min: 1, max: 300 }), { maxLength: 3 })
))

describe('fuzz: fetch protocol', () => {
  fuzzAsync('fetch: client reads mutated chunk frames (rawLength never above the chunk maximum)', exchange, async ([ids, chunkFrames, end, frameEdits, sizes]) => {
    const frames = [...chunkFrames, end]
    for (const [which, e] of frameEdits) frames[which % frames.length] = editBytes(frames[which % frames.length], e)
    const host = new FakeHost()
    host.replies = pieces(framed(frames), sizes)
    let n = 0
    for await (const c of new FetchClient(host).fetch(noAddrs, { setId: 1, ids, rate: 0 }, { timeoutMs: 10_000 })) {
      assert.ok(c.rawLength <= MAX_CHUNK_BYTES, `a chunk claiming ${c.rawLength} plaintext bytes got through`)
      assert.ok(c.compressed.byteLength <= FETCH_LIMITS.maxChunkFrameBytes)
      assert.equal(toHex(c.id), toHex(ids[n]))
      n++
    }
  }, 3)

  fuzzAsync('fetch: client reads random bytes', fc.tuple(randomBytes, fc.array(fc.integer({ min: 1, max: 300 }), { maxLength: 3 })), async ([bytes, sizes]) => {
    const host = new FakeHost()
    host.replies = pieces(bytes, sizes)
    for await (const c of new FetchClient(host).fetch(noAddrs, { setId: 1, ids: [new Uint8Array(32)], rate: 0 }, { timeoutMs: 10_000 })) assert.ok(c.rawLength <= MAX_CHUNK_BYTES)
  })

  fuzzAsync('fetch: service reads mutated requests', fc.tuple(fc.oneof(
    mutatedJson(fc.record({ v: fc.constant(1), setId: fc.nat({ max: 3 }), ids: fc.array(id.map(toHex), { maxLength: 3 }), rate: fc.oneof(fc.constant(0), fc.nat()) })),
    randomBytes
  ), fc.array(fc.integer({ min: 1, max: 300 }), { maxLength: 3 })), async ([request, sizes]) => {
    const host = new FakeHost()
    const service = new FetchService(host, {
      allow: () => true,
      log: silentLogger,
      clock: fastForwardClock(),
      source: { readChunk: async chunkId => chunkId[0] % 2 === 0 ? null : { rawLength: 3, compressed: new Uint8Array([1, 2, 3]) } }
    })
    await service.start()
    const stream = await host.inbound(FETCH_PROTOCOL, pieces(framed([request]), sizes))
    assertTypedError(stream.output(), 0xff)
  }, 2)
})
