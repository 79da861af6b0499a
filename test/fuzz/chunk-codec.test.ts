/**
 * Fuzz: the chunk codec. Random bytes and zstd bombs (megabytes of zeros in a few hundred
 * bytes) with any declared rawLength: decompression returns at most the declared length and
 * never more than a chunk can hold, or throws a typed error. Round trip: compress → verify
 * gives the plaintext back.
 */
import { strict as assert } from 'node:assert'
import fc from 'fast-check'
import { chunkId, compressChunk, decompressChunk, MAX_CHUNK_BYTES, verifyChunk } from '../../src/codec/chunk-codec.js'
import { ChunkCompressor } from '../../src/codec/chunk-compressor.js'
import { fuzz, randomBytes } from './harness.js'

const MiB = 1024 * 1024
/** Zeros of 1, 8 and 64 MiB, compressed once: tiny inputs that expand enormously. */
const bombs = [1, 8, 64].map(n => compressChunk(new Uint8Array(n * MiB)))
const rawLength = fc.oneof(fc.integer({ min: 0, max: 0xffffffff }), fc.constantFrom(0, 1, MAX_CHUNK_BYTES, MAX_CHUNK_BYTES + 1, 2 ** 31, 0xffffffff))

describe('fuzz: chunk codec', () => {
  fuzz('chunk codec: random bytes, any rawLength', fc.tuple(randomBytes, rawLength), ([bytes, raw]) => {
    const out = decompressChunk(bytes, raw)
    assert.ok(out.byteLength <= Math.min(Math.max(raw, 1), MAX_CHUNK_BYTES))
  }, 3)

  fuzz('chunk codec: zstd bombs, any rawLength (output bounded by the chunk maximum)', fc.tuple(fc.nat({ max: bombs.length - 1 }), rawLength), ([which, raw]) => {
    const out = decompressChunk(bombs[which], raw)
    assert.ok(out.byteLength <= MAX_CHUNK_BYTES, `decompressed ${out.byteLength} bytes on the sender's word`)
  }, 0.05)

  fuzz('chunk codec: round trip (compress → verify)', fc.uint8Array({ maxLength: 4096 }), plain => {
    assert.deepEqual(verifyChunk(chunkId(plain), compressChunk(plain, 1), plain.byteLength), Buffer.from(plain))
  })

  // one context across the whole run, as a staging worker keeps it: whatever came before, each
  // chunk's frame decompresses alone to exactly that chunk
  const kept = new ChunkCompressor(3, 4096)
  fuzz('chunk codec: one kept zstd context, chunk after chunk (compress → verify alone)', fc.array(fc.oneof(fc.uint8Array({ maxLength: 4096 }), fc.string({ maxLength: 3000 }).map(s => new TextEncoder().encode(s.repeat(3)))), { minLength: 1, maxLength: 8 }), plains => {
    const frames = plains.map(p => kept.compress(p))
    plains.forEach((p, i) => { assert.deepEqual(verifyChunk(chunkId(p), frames[i], p.byteLength), Buffer.from(p)) })
    assert.ok(kept.reusable)
  })

  fuzz('chunk codec: verify with a flipped id, data byte or length fails typed', fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 512 }), fc.nat(), fc.constantFrom('id', 'data', 'length')), ([plain, at, what]) => {
    const id = chunkId(plain)
    const data = compressChunk(plain, 1)
    if (what === 'id') id[at % 32] ^= 1
    if (what === 'data') data[at % data.byteLength] ^= 1
    assert.throws(() => verifyChunk(id, data, what === 'length' ? plain.byteLength + 1 + (at % 100) : plain.byteLength), (err: unknown) => (err as { code?: string }).code === 'CHUNK_HASH_MISMATCH')
  })
})
