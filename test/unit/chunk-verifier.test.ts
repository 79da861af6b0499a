/**
 * How the restore writers verify stored chunks (issue 12 item 6): one kept zstd context
 * (ChunkDecompressor), and every chunk gives the plaintext or the error verifyChunk gives,
 * whatever chunk (good or bad) came before it (verifyStoredChunkWith).
 */
import { strict as assert } from 'node:assert'
import { zstdCompressSync } from 'node:zlib'
import { ChunkDecompressor, verifyStoredChunkWith } from '../../src/codec/chunk-decompressor.js'
import { chunkId, compressChunk, MAX_CHUNK_BYTES, verifyChunk } from '../../src/codec/chunk-codec.js'
import { HoldfastError } from '../../src/util/errors.js'
import { seededBytes } from '../support/trees.js'

function codeOf (fn: () => unknown): string | undefined {
  try { fn() } catch (err) { return err instanceof HoldfastError ? err.code : `not a HoldfastError: ${String(err)}` }
  return undefined
}

/** The restore writer's call, on one kept context. */
class StoredChunkVerifier {
  readonly decompressor = new ChunkDecompressor()
  get reusable (): boolean { return this.decompressor.reusable }
  verifyView (id: Uint8Array, compressed: Uint8Array, rawLength: number): Buffer { return verifyStoredChunkWith(this.decompressor, id, compressed, rawLength) }
  close (): void { this.decompressor.close() }
}

describe('unit: chunk verifier (restore writers)', () => {
  it('keeps one zstd context on this Node (not zstdDecompressSync per chunk)', () => {
    const v = new StoredChunkVerifier()
    const plain = seededBytes(`v${1}`, 10_000)
    v.verifyView(chunkId(plain), compressChunk(plain), plain.byteLength)
    assert.equal(v.reusable, true, 'the node:zlib internals it drives are missing: restores fall back to a new engine per chunk')
    v.close()
  })

  it('verifies chunks of every size exactly, in any order, through one context', () => {
    const v = new StoredChunkVerifier()
    const sizes = [0, 1, 100, 70_000, 1_000_000, 5, MAX_CHUNK_BYTES, 3000]
    for (const [i, size] of sizes.entries()) {
      // half the chunks compressible, half not
      const plain = i % 2 === 0 ? Buffer.alloc(size, i) : seededBytes(`v${i + 10}`, size)
      const got = v.verifyView(chunkId(plain), compressChunk(plain), size)
      assert.equal(got.byteLength, size)
      assert.ok(got.equals(plain), `chunk of ${size} bytes comes out as it went in`)
    }
    v.close()
  })

  it('gives verifyChunk\'s errors for bad chunks, and the next good chunk still verifies', () => {
    const v = new StoredChunkVerifier()
    const plain = seededBytes(`v${7}`, 50_000)
    const id = chunkId(plain)
    const z = compressChunk(plain)
    const good = (): void => { assert.ok(v.verifyView(id, z, plain.byteLength).equals(plain)) }
    const flipped = Buffer.from(z)
    flipped[Math.floor(z.byteLength / 2)] ^= 0xff
    const bad: Array<[string, () => unknown, string]> = [
      ['truncated frame', () => v.verifyView(id, z.subarray(0, z.byteLength - 10), plain.byteLength), 'CHUNK_HASH_MISMATCH'],
      ['flipped byte', () => v.verifyView(id, flipped, plain.byteLength), 'CHUNK_HASH_MISMATCH'],
      ['declared length too short (a bomb)', () => v.verifyView(id, z, plain.byteLength - 1), 'CHUNK_HASH_MISMATCH'],
      ['declared length too long', () => v.verifyView(id, z, plain.byteLength + 1), 'CHUNK_HASH_MISMATCH'],
      ['wrong id', () => v.verifyView(chunkId(Buffer.from('other')), z, plain.byteLength), 'CHUNK_HASH_MISMATCH'],
      ['not zstd', () => v.verifyView(id, Buffer.from('plain text, not a frame'), plain.byteLength), 'CHUNK_HASH_MISMATCH'],
      ['length above the chunk maximum', () => v.verifyView(id, z, MAX_CHUNK_BYTES + 1), 'CHUNK_TOO_LARGE']
    ]
    for (const [name, fn, code] of bad) {
      assert.equal(codeOf(fn), code, name)
      good()
    }
    // bytes after the frame: what verifyChunk (zstdDecompressSync) gives, the first frame
    const twice = Buffer.concat([z, z])
    assert.ok(verifyChunk(id, twice, plain.byteLength).equals(plain))
    assert.ok(v.verifyView(id, twice, plain.byteLength).equals(plain))
    good()
    // a frame cut part way leaves no state behind: the same prefix, then the whole frame
    const big = seededBytes(`v${8}`, 2_000_000)
    const bz = zstdCompressSync(big)
    assert.equal(codeOf(() => v.verifyView(chunkId(big), bz.subarray(0, bz.byteLength >> 1), big.byteLength)), 'CHUNK_HASH_MISMATCH')
    assert.ok(v.verifyView(chunkId(big), bz, big.byteLength).equals(big))
    assert.equal(v.reusable, true, 'a new context replaces one that reported an error')
    v.close()
  })
})
