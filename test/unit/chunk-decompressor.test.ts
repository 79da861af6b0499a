/**
 * The reusable zstd decompression context (issue 12 item 5): exact frames decode to their
 * bytes through one context; a frame that decodes to more or fewer bytes than its declared
 * length, a truncated frame and garbage are refused, and none of them spoils the context for
 * the good chunks after it.
 */
import { strict as assert } from 'node:assert'
import { zstdCompressSync } from 'node:zlib'
import { ChunkDecompressor, verifyChunkWith } from '../../src/codec/chunk-decompressor.js'
import { chunkId, compressChunk, MAX_CHUNK_BYTES } from '../../src/codec/chunk-codec.js'
import { HoldfastError } from '../../src/util/errors.js'
import { seededBytes } from '../support/trees.js'

function refused (fn: () => unknown, code: string, what: string): void {
  assert.throws(fn, (err: unknown) => err instanceof HoldfastError && err.code === code, what)
}

describe('unit: chunk decompressor', () => {
  const text = Buffer.from('holdfast verify worker chunk '.repeat(3000))
  const random = seededBytes('random', 200_000)
  const big = Buffer.concat([seededBytes('big', MAX_CHUNK_BYTES / 2), Buffer.alloc(MAX_CHUNK_BYTES / 2, 7)])
  const plains = [text, random, new Uint8Array(0), big, new Uint8Array([1]), text]

  it('keeps one zstd context on this Node and decodes every exact frame to its bytes', () => {
    const d = new ChunkDecompressor(64 * 1024)
    assert.equal(d.reusable, true, 'the node:zlib internals it drives are missing: verification falls back to a new engine per chunk')
    for (const p of plains) {
      assert.deepEqual(d.decompress(compressChunk(p), p.byteLength), Buffer.from(p))
      assert.deepEqual(Buffer.from(verifyChunkWith(d, chunkId(p), compressChunk(p), p.byteLength)), Buffer.from(p))
    }
    assert.equal(d.reusable, true, 'still the same context after many chunks')
    d.close()
  })

  it('refuses too long, too short, truncated, concatenated and garbage frames, and decodes good frames after each', () => {
    const d = new ChunkDecompressor()
    const good = (): void => {
      assert.deepEqual(d.decompress(compressChunk(text), text.byteLength), text, 'a good frame after a refused one')
    }
    const frame = compressChunk(text)
    const cases: Array<[string, Uint8Array, number]> = [
      ['too long: decodes to one byte more than declared', frame, text.byteLength - 1],
      ['too long: a zstd bomb against a small declared length', zstdCompressSync(Buffer.alloc(MAX_CHUNK_BYTES)), 100],
      ['too short: decodes to one byte fewer than declared', frame, text.byteLength + 1],
      ['too short: an empty frame declared as 1 byte', compressChunk(new Uint8Array(0)), 1],
      ['truncated frame', frame.subarray(0, frame.byteLength - 3), text.byteLength],
      ['two frames where one was declared', Buffer.concat([frame, frame]), text.byteLength],
      ['garbage', seededBytes('garbage', 5000), text.byteLength],
      ['garbage after a valid magic', Buffer.concat([frame.subarray(0, 4), seededBytes('junk', 300)]), text.byteLength],
      ['no bytes at all', new Uint8Array(0), text.byteLength]
    ]
    for (const [what, data, rawLength] of cases) {
      refused(() => d.decompress(data, rawLength), 'CHUNK_HASH_MISMATCH', what)
      good()
    }
    // a declared length no chunk may have is refused before zstd runs
    refused(() => d.decompress(frame, MAX_CHUNK_BYTES + 1), 'CHUNK_TOO_LARGE', 'above the chunk maximum')
    refused(() => d.decompress(frame, -1), 'CHUNK_TOO_LARGE', 'negative')
    good()
    // right length, wrong bytes: the hash check
    refused(() => verifyChunkWith(d, chunkId(random), frame, text.byteLength), 'CHUNK_HASH_MISMATCH', 'another chunk\'s bytes')
    good()
    d.close()
  })
})
