/**
 * Fuzz: length-prefixed frames. Random bytes in random pieces and mutated valid frame
 * streams: FrameReader yields frames no longer than the limit, or throws a typed error, and
 * never waits for the payload of a frame it will refuse. Round trips through encodeFrame and
 * FrameBatcher give back the same payloads.
 */
import { strict as assert } from 'node:assert'
import fc from 'fast-check'
import { Uint8ArrayList } from 'uint8arraylist'
import { encodeFrame, FrameBatcher, FrameReader, type ByteStream } from '../../src/protocols/framing.js'
import { editBytes, fuzzAsync, randomBytes } from './harness.js'
import { pieces, FakeStream } from './fake-stream.js'
import { framed } from './wire.js'

async function * source (parts: readonly Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const p of parts) yield p
}

/** Reads every frame; a bounded loop (each frame consumes at least its 4-byte header). */
async function readAll (parts: readonly Uint8Array[], maxLength: number): Promise<Uint8Array[]> {
  const reader = new FrameReader(source(parts))
  const out: Uint8Array[] = []
  const total = parts.reduce((a, p) => a + p.byteLength, 0)
  for (let i = 0; i <= total; i++) {
    const frame = await reader.next(maxLength)
    if (frame === null) return out
    assert.ok(frame.byteLength <= maxLength, `a frame of ${frame.byteLength} bytes passed a limit of ${maxLength}`)
    out.push(frame)
  }
  throw new Error('more frames than the input has headers')
}

const payloads = fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 8 })
const cuts = fc.array(fc.integer({ min: 1, max: 64 }), { maxLength: 6 })

describe('fuzz: frames', () => {
  fuzzAsync('frames: random bytes in random pieces', fc.tuple(randomBytes, cuts, fc.nat({ max: 5000 })), async ([bytes, sizes, max]) => {
    await readAll(pieces(bytes, sizes), max)
  }, 3)

  fuzzAsync('frames: mutated frame streams', fc.tuple(payloads, fc.array(fc.record({ kind: fc.constantFrom('flip' as const, 'insert' as const, 'delete' as const, 'truncate' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }), { maxLength: 3 }), cuts, fc.nat({ max: 400 })), async ([ps, edits, sizes, max]) => {
    await readAll(pieces(editBytes(framed(ps), edits), sizes), max)
  }, 3)

  fuzzAsync('frames: a header that claims more than the limit is refused without waiting for its payload', fc.tuple(fc.integer({ min: 1, max: 0xffffffff }), fc.uint8Array({ maxLength: 16 })), async ([claimed, tail]) => {
    const header = new Uint8Array(4)
    new DataView(header.buffer).setUint32(0, claimed, false)
    // the source never ends after the header: a reader that waited for the payload would hang
    async function * endless (): AsyncGenerator<Uint8Array> {
      yield header
      yield tail
      await new Promise<never>(() => {})
    }
    const max = claimed - 1
    await assert.rejects(new FrameReader(endless()).next(max), (err: unknown) => (err as { code?: string }).code === 'FRAME_TOO_LARGE')
  })

  fuzzAsync('frames: round trip through encodeFrame in any split', fc.tuple(payloads, cuts), async ([ps, sizes]) => {
    const back = await readAll(pieces(framed(ps), sizes), 300)
    assert.deepEqual(back.map(b => Buffer.from(b)), ps.map(p => Buffer.from(p)))
  })

  fuzzAsync('frames: round trip through FrameBatcher', fc.tuple(payloads, fc.integer({ min: 1, max: 2048 })), async ([ps, flushBytes]) => {
    const out = new FakeStream([])
    const batcher = new FrameBatcher(out as unknown as ByteStream, flushBytes)
    for (const p of ps) await batcher.push(p)
    await batcher.flush()
    const back = await readAll([out.output()], 300)
    assert.deepEqual(back.map(b => Buffer.from(b)), ps.map(p => Buffer.from(p)))
    // encodeFrame's header is the payload's length
    for (const p of ps) assert.equal(Buffer.from(new Uint8ArrayList(...encodeFrame(p)).subarray(0, 4)).readUInt32BE(0), p.byteLength)
  })
})
