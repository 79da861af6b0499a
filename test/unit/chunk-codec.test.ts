import { strict as assert } from 'node:assert'
import { createHash } from 'node:crypto'
import { chunkId, compressChunk, decompressChunk, verifyChunk } from '../../src/codec/chunk-codec.js'
import { holdfastCode, prngBytes } from './helpers.js'

const text = Buffer.from('All work and no play makes Jack a dull boy.\n'.repeat(2000))
const random = prngBytes('codec', 100_000)

describe('chunk codec', () => {
  it('chunkId is the SHA-256 of the plaintext', () => {
    for (const plain of [new Uint8Array(0), text, random]) {
      const id = chunkId(plain)
      assert.ok(id instanceof Uint8Array)
      assert.equal(id.byteLength, 32)
      assert.deepEqual(Buffer.from(id), createHash('sha256').update(plain).digest())
    }
  })

  it('compresses and verifies back to the same bytes', () => {
    for (const plain of [text, random, new Uint8Array([7]), new Uint8Array(0)]) {
      const compressed = compressChunk(plain)
      const back = verifyChunk(chunkId(plain), compressed, plain.byteLength)
      assert.deepEqual(back, Buffer.from(plain))
      assert.deepEqual(decompressChunk(compressed, plain.byteLength), Buffer.from(plain))
    }
  })

  it('actually compresses compressible data, at any level', () => {
    assert.ok(compressChunk(text).byteLength < text.byteLength / 10)
    for (const level of [1, 19]) {
      const c = compressChunk(text, level)
      assert.ok(c.byteLength < text.byteLength / 10)
      assert.deepEqual(verifyChunk(chunkId(text), c, text.byteLength), text)
    }
  })

  it('rejects the wrong id with CHUNK_HASH_MISMATCH', () => {
    const compressed = compressChunk(text)
    const wrong = chunkId(random)
    assert.throws(() => verifyChunk(wrong, compressed, text.byteLength), holdfastCode('CHUNK_HASH_MISMATCH', 'hashes to'))
    const flipped = chunkId(text)
    flipped[31] ^= 1
    assert.throws(() => verifyChunk(flipped, compressed, text.byteLength), holdfastCode('CHUNK_HASH_MISMATCH'))
  })

  it('rejects a wrong raw length (shorter or longer) with CHUNK_HASH_MISMATCH', () => {
    const compressed = compressChunk(random)
    const id = chunkId(random)
    for (const rawLength of [random.byteLength - 1, random.byteLength + 1, 0, 1, random.byteLength * 2]) {
      assert.throws(() => verifyChunk(id, compressed, rawLength), holdfastCode('CHUNK_HASH_MISMATCH'), `rawLength ${rawLength}`)
    }
  })

  it('bounds decompression by the declared length (a zstd bomb is refused)', () => {
    const bomb = compressChunk(new Uint8Array(8 * 1024 * 1024))
    assert.ok(bomb.byteLength < 4096)
    assert.throws(() => decompressChunk(bomb, 1024), holdfastCode('CHUNK_HASH_MISMATCH', 'does not decompress'))
  })

  it('rejects garbage and damaged compressed bytes with CHUNK_HASH_MISMATCH', () => {
    const id = chunkId(text)
    const good = compressChunk(text)
    const truncated = good.subarray(0, good.byteLength - 8)
    const corrupted = Buffer.from(good)
    corrupted[Math.floor(corrupted.byteLength / 2)] ^= 0xff
    for (const [name, bytes] of [['garbage', prngBytes('garbage', 500)], ['empty', new Uint8Array(0)], ['truncated', truncated], ['corrupted', corrupted]] as const) {
      assert.throws(() => verifyChunk(id, bytes, text.byteLength), holdfastCode('CHUNK_HASH_MISMATCH'), name)
    }
  })

  it('rejects a valid compressed chunk presented as another chunk of the same length', () => {
    const a = prngBytes('same-length-a', 4096)
    const b = prngBytes('same-length-b', 4096)
    assert.throws(() => verifyChunk(chunkId(a), compressChunk(b), 4096), holdfastCode('CHUNK_HASH_MISMATCH'))
  })
})
