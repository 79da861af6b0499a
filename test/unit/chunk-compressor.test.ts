/**
 * The reusable zstd context (issue 12): one context for many chunks, each chunk still a zstd
 * frame that decompresses alone to exactly its bytes, whatever came before it.
 */
import { strict as assert } from 'node:assert'
import { zstdCompressSync, zstdDecompressSync } from 'node:zlib'
import { ChunkCompressor, zstdBound } from '../../src/codec/chunk-compressor.js'
import { decompressChunk, verifyChunk, chunkId, MAX_CHUNK_BYTES } from '../../src/codec/chunk-codec.js'
import { seededBytes } from '../support/trees.js'

describe('unit: chunk compressor', () => {
  it('keeps one zstd context on this Node (not zstdCompressSync per chunk)', () => {
    const c = new ChunkCompressor(3, 1024)
    assert.equal(c.reusable, true, 'the node:zlib internals it drives are missing: staging falls back to a new engine per chunk')
    c.compress(Buffer.from('x'.repeat(1000)))
    assert.equal(c.reusable, true, 'still the same context after a chunk')
    c.close()
  })

  it('gives every chunk a frame of its own that decompresses alone, in any order', () => {
    const c = new ChunkCompressor(3, 64 * 1024)
    // text, random, empty, a 4 MiB maximum chunk (larger than the buffer it started with),
    // views at odd offsets into a larger buffer, and the same text again (no cross-frame state)
    const text = Buffer.from('holdfast staging worker chunk '.repeat(3000))
    const random = seededBytes('random', 200_000)
    const big = Buffer.concat([seededBytes('big', MAX_CHUNK_BYTES / 2), Buffer.alloc(MAX_CHUNK_BYTES / 2, 7)])
    const host = Buffer.concat([seededBytes('host', 5000), text])
    const plains = [text, random, new Uint8Array(0), big, host.subarray(3, 4999), host.subarray(1234), text, new Uint8Array([1])]
    const frames = plains.map(p => c.compress(p))
    assert.equal(c.reusable, true)
    for (let i = plains.length - 1; i >= 0; i--) {
      const p = plains[i]
      assert.deepEqual(decompressChunk(frames[i], p.byteLength), Buffer.from(p), `chunk ${i} alone`)
      assert.deepEqual(verifyChunk(chunkId(p), frames[i], p.byteLength), Buffer.from(p))
      assert.ok(frames[i].byteLength <= zstdBound(p.byteLength))
    }
    assert.ok(frames[0].byteLength < text.byteLength / 20, 'text compresses')
    assert.deepEqual(frames[6], frames[0], 'the same chunk compresses to the same frame whatever came before')
    // the frame node's one-shot API makes decodes to the same bytes, and the sizes stay close
    const oneShot = zstdCompressSync(text)
    assert.deepEqual(zstdDecompressSync(oneShot), zstdDecompressSync(frames[0]))
    c.close()
  })

  it('compressView returns the frame in its own buffer until the next call', () => {
    const c = new ChunkCompressor(1, 1024)
    const a = c.compressView(Buffer.from('a'.repeat(5000)))
    const copy = Buffer.from(a)
    assert.deepEqual(zstdDecompressSync(copy), Buffer.from('a'.repeat(5000)))
    c.compressView(Buffer.from('b'.repeat(5000)))
    assert.deepEqual(zstdDecompressSync(c.compress(Buffer.from('a'.repeat(5000)))), Buffer.from('a'.repeat(5000)))
    c.close()
  })
})
