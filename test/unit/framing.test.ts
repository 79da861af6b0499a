import { strict as assert } from 'node:assert'
import { Uint8ArrayList } from 'uint8arraylist'
import { encodeFrame, FRAME_HEADER_BYTES, FrameBatcher, FrameReader, writeFrame, type ByteStream } from '../../src/protocols/framing.js'
import { holdfastCode, makeRng, prngBytes } from './helpers.js'

type Piece = Uint8Array | Uint8ArrayList

/** An async source over fixed pieces that records how many pieces were pulled. */
function recordingSource (pieces: Piece[]): { source: AsyncIterable<Piece>, pulled: () => number } {
  let pulled = 0
  async function * gen (): AsyncGenerator<Piece> {
    for (const piece of pieces) {
      pulled++
      yield piece
    }
  }
  return { source: gen(), pulled: () => pulled }
}

function concat (parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts))
}

function framesBytes (payloads: Uint8Array[]): Uint8Array {
  return concat(payloads.flatMap(p => encodeFrame(p)))
}

/** Splits bytes into pieces at the given cut sizes (cycled), as plain Uint8Array views. */
function split (bytes: Uint8Array, sizes: () => number): Uint8Array[] {
  const out: Uint8Array[] = []
  for (let pos = 0; pos < bytes.length;) {
    const n = Math.max(1, Math.min(sizes(), bytes.length - pos))
    out.push(bytes.subarray(pos, pos + n))
    pos += n
  }
  return out
}

function header (length: number): Uint8Array {
  const h = new Uint8Array(FRAME_HEADER_BYTES)
  new DataView(h.buffer).setUint32(0, length, false)
  return h
}

async function readAll (reader: FrameReader, maxLength: number): Promise<Uint8Array[]> {
  const out: Uint8Array[] = []
  for (;;) {
    const frame = await reader.next(maxLength)
    if (frame === null) return out
    out.push(frame)
  }
}

const PAYLOADS: Uint8Array[] = [
  new TextEncoder().encode('{"v":1,"op":"list"}'),
  new Uint8Array(0),
  new Uint8Array([0, 0, 0, 0, 255]),
  prngBytes('frame-big', 70_000),
  new Uint8Array([42])
]

describe('framing', () => {
  describe('encodeFrame', () => {
    it('prefixes a 4-byte big-endian length', () => {
      const payload = prngBytes('enc', 1234)
      const [h, p] = encodeFrame(payload)
      assert.equal(h.byteLength, FRAME_HEADER_BYTES)
      assert.equal(new DataView(h.buffer, h.byteOffset).getUint32(0, false), payload.byteLength)
      assert.equal(p, payload)
      assert.deepEqual([...encodeFrame(new Uint8Array(258))[0]], [0, 0, 1, 2])
      assert.deepEqual([...encodeFrame(new Uint8Array(0))[0]], [0, 0, 0, 0])
    })
  })

  describe('FrameReader', () => {
    it('round-trips several frames delivered in one piece', async () => {
      const { source } = recordingSource([framesBytes(PAYLOADS)])
      const frames = await readAll(new FrameReader(source), 1_000_000)
      assert.equal(frames.length, PAYLOADS.length)
      frames.forEach((f, i) => assert.deepEqual(Buffer.from(f), Buffer.from(PAYLOADS[i])))
    })

    it('round-trips frames split across 1-byte pieces', async () => {
      const small = PAYLOADS.filter(p => p.byteLength < 1000)
      const { source } = recordingSource(split(framesBytes(small), () => 1))
      const frames = await readAll(new FrameReader(source), 1000)
      assert.deepEqual(frames.map(f => Buffer.from(f)), small.map(p => Buffer.from(p)))
    })

    it('round-trips frames split at arbitrary byte boundaries', async () => {
      const bytes = framesBytes(PAYLOADS)
      for (const seed of [1, 2, 3, 99]) {
        const rng = makeRng(seed)
        const { source } = recordingSource(split(bytes, () => 1 + rng(9000)))
        const frames = await readAll(new FrameReader(source), 1_000_000)
        assert.deepEqual(frames.map(f => Buffer.from(f)), PAYLOADS.map(p => Buffer.from(p)), `seed ${seed}`)
      }
    })

    it('accepts Uint8ArrayList pieces (mixed with Uint8Array pieces)', async () => {
      const bytes = framesBytes(PAYLOADS)
      const rng = makeRng(7)
      const parts = split(bytes, () => 1 + rng(3000))
      const pieces: Piece[] = []
      for (let i = 0; i < parts.length; i += 3) {
        // a list made of up to three parts, then a plain array
        pieces.push(new Uint8ArrayList(...parts.slice(i, i + 2)))
        if (i + 2 < parts.length) pieces.push(parts[i + 2])
      }
      const { source } = recordingSource(pieces)
      const frames = await readAll(new FrameReader(source), 1_000_000)
      assert.deepEqual(frames.map(f => Buffer.from(f)), PAYLOADS.map(p => Buffer.from(p)))
    })

    it('returns payloads that survive reading the next frame', async () => {
      const a = new Uint8Array([1, 2, 3])
      const b = new Uint8Array([4, 5, 6])
      const reader = new FrameReader(recordingSource([framesBytes([a, b])]).source)
      const first = await reader.next(10)
      const second = await reader.next(10)
      assert.deepEqual(first, a)
      assert.deepEqual(second, b)
    })

    it('returns null on a clean end between frames, and again when asked again', async () => {
      const reader = new FrameReader(recordingSource([framesBytes([new Uint8Array([9])])]).source)
      assert.deepEqual(await reader.next(10), new Uint8Array([9]))
      assert.equal(await reader.next(10), null)
      assert.equal(await reader.next(10), null)
    })

    it('returns null for an empty source', async () => {
      assert.equal(await new FrameReader(recordingSource([]).source).next(10), null)
      assert.equal(await new FrameReader(recordingSource([new Uint8Array(0)]).source).next(10), null)
    })

    it('throws FRAME_TRUNCATED when the stream ends inside a header', async () => {
      for (let n = 1; n < FRAME_HEADER_BYTES; n++) {
        const reader = new FrameReader(recordingSource(split(header(5).subarray(0, n), () => 1)).source)
        await assert.rejects(reader.next(100), holdfastCode('FRAME_TRUNCATED'))
      }
      // after a complete frame, too
      const bytes = concat([framesBytes([new Uint8Array([1])]), new Uint8Array([0, 0])])
      const reader = new FrameReader(recordingSource([bytes]).source)
      assert.deepEqual(await reader.next(100), new Uint8Array([1]))
      await assert.rejects(reader.next(100), holdfastCode('FRAME_TRUNCATED'))
    })

    it('throws FRAME_TRUNCATED when the stream ends inside a payload', async () => {
      const full = framesBytes([prngBytes('trunc', 100)])
      for (const cutAt of [FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + 1, full.length - 1]) {
        const reader = new FrameReader(recordingSource(split(full.subarray(0, cutAt), () => 7)).source)
        await assert.rejects(reader.next(1000), holdfastCode('FRAME_TRUNCATED'))
      }
    })

    it('expect() throws FRAME_TRUNCATED (not STREAM_ENDED_EARLY) for a partial frame', async () => {
      const reader = new FrameReader(recordingSource([header(10), new Uint8Array(3)]).source)
      await assert.rejects(reader.expect(100, 'the reply'), holdfastCode('FRAME_TRUNCATED'))
    })

    it('accepts a frame exactly at the limit and rejects one byte over with FRAME_TOO_LARGE', async () => {
      const payload = prngBytes('limit', 64)
      const ok = new FrameReader(recordingSource([framesBytes([payload])]).source)
      assert.deepEqual(Buffer.from((await ok.next(64))!), payload)
      const over = new FrameReader(recordingSource([framesBytes([payload])]).source)
      await assert.rejects(over.next(63), (err: unknown) => {
        holdfastCode('FRAME_TOO_LARGE')(err)
        assert.deepEqual((err as { details: unknown }).details, { length: 64, maxLength: 63 })
        return true
      })
    })

    it('rejects an oversized length from the header alone, without pulling the rest of the source', async () => {
      const rest = Array.from({ length: 1000 }, () => new Uint8Array(64 * 1024))
      const { source, pulled } = recordingSource([header(0xffffffff), ...rest])
      const reader = new FrameReader(source)
      await assert.rejects(reader.next(1024 * 1024), holdfastCode('FRAME_TOO_LARGE'))
      assert.equal(pulled(), 1, 'only the header piece may be consumed')
    })

    it('rejects an oversized length split over header pieces, pulling only those pieces', async () => {
      const h = header(2 * 1024 * 1024)
      const { source, pulled } = recordingSource([h.subarray(0, 1), h.subarray(1, 3), h.subarray(3), new Uint8Array(1024), new Uint8Array(1024)])
      await assert.rejects(new FrameReader(source).next(1024), holdfastCode('FRAME_TOO_LARGE'))
      assert.equal(pulled(), 3)
    })

    it('does not read ahead past a complete frame', async () => {
      const { source, pulled } = recordingSource([framesBytes([new Uint8Array([1, 2])]), framesBytes([new Uint8Array([3])])])
      const reader = new FrameReader(source)
      assert.deepEqual(await reader.next(10), new Uint8Array([1, 2]))
      assert.equal(pulled(), 1)
    })

    it('expect() returns the frame, and throws STREAM_ENDED_EARLY on a clean end', async () => {
      const reader = new FrameReader(recordingSource([framesBytes([new Uint8Array([5])])]).source)
      assert.deepEqual(await reader.expect(10, 'the first'), new Uint8Array([5]))
      await assert.rejects(reader.expect(10, 'the manifest'), holdfastCode('STREAM_ENDED_EARLY', 'the manifest'))
    })

    it('propagates an error thrown by the source', async () => {
      async function * failing (): AsyncGenerator<Uint8Array> {
        yield header(10)
        throw new Error('connection reset')
      }
      await assert.rejects(new FrameReader(failing()).next(100), /connection reset/)
    })
  })

  describe('writeFrame', () => {
    function fakeStream (acceptEvery: number): { stream: ByteStream, sent: Uint8Array[], drains: Array<AbortSignal | undefined> } {
      const sent: Uint8Array[] = []
      const drains: Array<AbortSignal | undefined> = []
      let calls = 0
      const stream = {
        send: (data: Uint8Array | Uint8ArrayList): boolean => {
          sent.push(data instanceof Uint8ArrayList ? data.subarray() : data)
          calls++
          return calls % acceptEvery !== 0
        },
        onDrain: async (options?: { signal?: AbortSignal }): Promise<void> => { drains.push(options?.signal) },
        [Symbol.asyncIterator]: async function * () {}
      } as unknown as ByteStream
      return { stream, sent, drains }
    }

    it('sends each frame as one message (header and payload together), and the bytes read back as the same frames', async () => {
      const { stream, sent, drains } = fakeStream(Number.MAX_SAFE_INTEGER)
      for (const p of PAYLOADS) await writeFrame(stream, p)
      assert.equal(drains.length, 0, 'no drain wait while send() accepts')
      assert.equal(sent.length, PAYLOADS.length, 'one send per frame: a lone 4-byte header would be its own muxer and Noise message')
      const frames = await readAll(new FrameReader(recordingSource([concat(sent)]).source), 1_000_000)
      assert.deepEqual(frames.map(f => Buffer.from(f)), PAYLOADS.map(p => Buffer.from(p)))
    })

    it('waits for drain whenever send() reports backpressure, passing the signal on', async () => {
      const { stream, sent, drains } = fakeStream(2) // every second send() is refused
      const signal = new AbortController().signal
      await writeFrame(stream, new Uint8Array([1, 2, 3]), signal)
      await writeFrame(stream, new Uint8Array([4]), signal)
      assert.equal(sent.length, 2)
      assert.equal(drains.length, 1)
      assert.ok(drains.every(s => s === signal))
      assert.deepEqual(concat(sent), framesBytes([new Uint8Array([1, 2, 3]), new Uint8Array([4])]))
    })
  })

  describe('FrameBatcher', () => {
    it('packs many small frames into few sends that read back as the same frames', async () => {
      const sent: Uint8Array[] = []
      const stream = {
        send: (data: Uint8Array | Uint8ArrayList): boolean => { sent.push(data instanceof Uint8ArrayList ? data.subarray() : data); return true },
        onDrain: async (): Promise<void> => {},
        [Symbol.asyncIterator]: async function * () {}
      } as unknown as ByteStream
      const batcher = new FrameBatcher(stream, 1000)
      const payloads = Array.from({ length: 100 }, (_, i) => new Uint8Array(50).fill(i))
      for (const p of payloads) await batcher.push(p)
      assert.ok(sent.length < 10, `${sent.length} sends for 100 frames`)
      await batcher.flush()
      await batcher.flush()
      const frames = await readAll(new FrameReader(recordingSource([concat(sent)]).source), 1_000_000)
      assert.deepEqual(frames.map(f => Buffer.from(f)), payloads.map(p => Buffer.from(p)))
    })
  })
})
