import { strict as assert } from 'node:assert'
import { DEFAULT_CHUNKER, FastCdc, GEAR, validateParams, type ChunkerParams } from '../../src/chunking/fastcdc.js'
import { makeRng, prngBytes, sha256Hex } from './helpers.js'

const KiB = 1024
const MiB = 1024 * 1024
const SMALL: ChunkerParams = { minSize: 2 * KiB, avgSize: 8 * KiB, maxSize: 32 * KiB }

function sum (xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0)
}

function chunkHashes (buf: Uint8Array, lengths: number[]): string[] {
  const out: string[] = []
  let pos = 0
  for (const len of lengths) {
    out.push(sha256Hex(buf.subarray(pos, pos + len)))
    pos += len
  }
  return out
}

/**
 * Chunks `data` the way a streaming reader does: bytes arrive in pieces of the given sizes
 * into a window of 2 * maxSize, and cut() is asked with final=false until the input ends.
 */
function streamingLengths (cdc: FastCdc, data: Uint8Array, pieceSize: () => number): { lengths: number[], needMore: number } {
  const window = new Uint8Array(cdc.params.maxSize * 2)
  const lengths: number[] = []
  let filled = 0
  let start = 0
  let fed = 0
  let needMore = 0
  for (;;) {
    const eof = fed >= data.length
    if (start >= filled && eof) break
    const len = cdc.cut(window, start, filled, eof)
    if (len < 0) {
      assert.equal(eof, false, 'cut() must not ask for more data once the input is final')
      assert.ok(filled - start < cdc.params.maxSize, `cut() asked for more with ${filled - start} bytes available (max ${cdc.params.maxSize})`)
      needMore++
      // compact, then feed one more piece
      if (start > 0) {
        window.copyWithin(0, start, filled)
        filled -= start
        start = 0
      }
      const n = Math.min(pieceSize(), data.length - fed, window.length - filled)
      window.set(data.subarray(fed, fed + n), filled)
      filled += n
      fed += n
      continue
    }
    assert.ok(len > 0, 'cut() returned an empty chunk')
    lengths.push(len)
    start += len
  }
  return { lengths, needMore }
}

describe('FastCdc', () => {
  describe('parameters', () => {
    it('rejects invalid sizes with RangeError', () => {
      const bad: ChunkerParams[] = [
        { minSize: 0, avgSize: 8, maxSize: 16 },
        { minSize: -1, avgSize: 8, maxSize: 16 },
        { minSize: 16, avgSize: 8, maxSize: 32 },
        { minSize: 2, avgSize: 64, maxSize: 32 },
        { minSize: Number.NaN, avgSize: 8, maxSize: 16 },
        { minSize: 2, avgSize: Number.NaN, maxSize: 16 },
        { minSize: 2, avgSize: 8, maxSize: Number.NaN }
      ]
      for (const p of bad) {
        assert.throws(() => new FastCdc(p), RangeError, JSON.stringify(p))
        assert.throws(() => validateParams(p), RangeError, JSON.stringify(p))
      }
    })

    it('accepts min == avg == max and then cuts fixed-size chunks', () => {
      const cdc = new FastCdc({ minSize: 1000, avgSize: 1000, maxSize: 1000 })
      assert.deepEqual(cdc.chunkLengths(prngBytes('fixed', 3500)), [1000, 1000, 1000, 500])
    })

    it('uses DEFAULT_CHUNKER when constructed without params, and DEFAULT_CHUNKER is frozen', () => {
      const cdc = new FastCdc()
      assert.deepEqual(cdc.params, { minSize: 256 * KiB, avgSize: 1 * MiB, maxSize: 4 * MiB })
      assert.ok(Object.isFrozen(DEFAULT_CHUNKER))
    })

    it('has a fixed 256-entry gear table (part of the on-disk format)', () => {
      assert.equal(GEAR.length, 256)
      assert.equal(new Set(GEAR).size, 256, 'gear entries should be distinct')
      // pin the table: a changed seed or generator would silently move every chunk boundary
      assert.equal(GEAR[0], 0x19946c35)
      assert.equal(GEAR[255], 0x5a0c2821)
      const be = Buffer.alloc(GEAR.length * 4)
      GEAR.forEach((v, i) => be.writeUInt32BE(v, i * 4))
      assert.equal(sha256Hex(be), 'd2838e204029f9520e9ee0c6a359e7c52d402e06fdc3415e01dfdaae02bafd34')
    })
  })

  describe('chunkLengths', () => {
    const cdc = new FastCdc(SMALL)

    it('gives no chunks for empty input', () => {
      assert.deepEqual(cdc.chunkLengths(new Uint8Array(0)), [])
    })

    it('gives one chunk for input shorter than minSize, and for exactly minSize', () => {
      assert.deepEqual(cdc.chunkLengths(prngBytes('tiny', 1)), [1])
      assert.deepEqual(cdc.chunkLengths(prngBytes('small', SMALL.minSize - 1)), [SMALL.minSize - 1])
      assert.deepEqual(cdc.chunkLengths(prngBytes('min', SMALL.minSize)), [SMALL.minSize])
    })

    it('lengths sum to the input and every chunk but the last is within [min, max]', () => {
      for (const size of [SMALL.minSize + 1, 40 * KiB, 1 * MiB + 17, 3 * MiB]) {
        const buf = prngBytes(`sum-${size}`, size)
        const lengths = cdc.chunkLengths(buf)
        assert.equal(sum(lengths), size)
        for (const len of lengths.slice(0, -1)) {
          assert.ok(len >= SMALL.minSize && len <= SMALL.maxSize, `chunk of ${len} out of range`)
        }
        const last = lengths[lengths.length - 1]
        assert.ok(last > 0 && last <= SMALL.maxSize)
      }
    })

    it('forces a cut at maxSize when content never matches (all-zero data)', () => {
      const lengths = cdc.chunkLengths(new Uint8Array(3 * SMALL.maxSize + 5))
      assert.deepEqual(lengths, [SMALL.maxSize, SMALL.maxSize, SMALL.maxSize, 5])
    })

    it('is deterministic, also across instances', () => {
      const buf = prngBytes('determinism', 2 * MiB)
      const a = cdc.chunkLengths(buf)
      const b = cdc.chunkLengths(buf)
      const c = new FastCdc({ ...SMALL }).chunkLengths(Buffer.from(buf))
      assert.deepEqual(a, b)
      assert.deepEqual(a, c)
      assert.ok(a.length > 10)
    })

    it('depends on content: different data gives different boundaries', () => {
      const a = cdc.chunkLengths(prngBytes('content-a', 1 * MiB))
      const b = cdc.chunkLengths(prngBytes('content-b', 1 * MiB))
      assert.notDeepEqual(a, b)
    })

    it('averages within 0.5x-2x of avgSize on random data', () => {
      const buf = prngBytes('average', 8 * MiB)
      const lengths = cdc.chunkLengths(buf)
      const avg = buf.length / lengths.length
      assert.ok(avg >= SMALL.avgSize / 2 && avg <= SMALL.avgSize * 2, `average chunk ${avg} vs avgSize ${SMALL.avgSize}`)
      // and the sizes actually vary (content-defined, not fixed-size)
      assert.ok(new Set(lengths).size > lengths.length / 2)
    })
  })

  describe('cut', () => {
    const cdc = new FastCdc(SMALL)

    it('returns -1 when not final and no cut point is found before the end', () => {
      const zeros = new Uint8Array(SMALL.maxSize * 2)
      assert.equal(cdc.cut(zeros, 0, 0, false), -1)
      assert.equal(cdc.cut(zeros, 0, SMALL.minSize - 1, false), -1)
      assert.equal(cdc.cut(zeros, 0, SMALL.minSize, false), -1)
      assert.equal(cdc.cut(zeros, 0, SMALL.maxSize - 1, false), -1)
      assert.equal(cdc.cut(zeros, 10, 10 + SMALL.maxSize - 1, false), -1)
    })

    it('returns maxSize once maxSize bytes are available, final or not', () => {
      const zeros = new Uint8Array(SMALL.maxSize * 2)
      assert.equal(cdc.cut(zeros, 0, SMALL.maxSize, false), SMALL.maxSize)
      assert.equal(cdc.cut(zeros, 0, SMALL.maxSize * 2, false), SMALL.maxSize)
      assert.equal(cdc.cut(zeros, 7, SMALL.maxSize * 2, true), SMALL.maxSize)
    })

    it('returns everything that is left when final and no cut point is found', () => {
      const zeros = new Uint8Array(SMALL.maxSize)
      assert.equal(cdc.cut(zeros, 0, SMALL.maxSize - 1, true), SMALL.maxSize - 1)
      assert.equal(cdc.cut(zeros, 100, 100 + SMALL.minSize - 1, true), SMALL.minSize - 1)
      assert.equal(cdc.cut(zeros, 0, 0, true), 0)
    })

    it('finds a content-defined cut without needing bytes past it', () => {
      const buf = prngBytes('cut-local', 1 * MiB)
      let pos = 0
      for (const len of cdc.chunkLengths(buf)) {
        if (pos + len === buf.length) break
        // given exactly the chunk's bytes, the cut is found even though more data may follow
        assert.equal(cdc.cut(buf, pos, pos + len, false), len)
        // the result does not depend on where the bytes sit in memory
        assert.equal(cdc.cut(buf.subarray(pos), 0, buf.length - pos, true), len)
        pos += len
      }
      assert.ok(pos > 0)
    })

    it('streaming over pieces gives the same boundaries as chunkLengths over the whole buffer', () => {
      const data = prngBytes('streaming', 3 * MiB + 12345)
      const expected = cdc.chunkLengths(data)
      const rng = makeRng(42)
      const shapes: Array<[string, () => number]> = [
        ['random 1..5000-byte pieces', () => 1 + rng(5000)],
        ['random pieces up to 3 * maxSize', () => 1 + rng(3 * SMALL.maxSize)],
        ['fixed 4 KiB pieces', () => 4 * KiB],
        ['pieces of exactly maxSize', () => SMALL.maxSize]
      ]
      for (const [name, pieceSize] of shapes) {
        const { lengths, needMore } = streamingLengths(cdc, data, pieceSize)
        assert.deepEqual(lengths, expected, name)
        assert.ok(needMore > 0, `${name}: the streaming path should have asked for more data`)
      }
    })

    it('streaming with 1-byte pieces gives the same boundaries (tiny params)', () => {
      const tiny = new FastCdc({ minSize: 256, avgSize: 1024, maxSize: 4096 })
      const data = prngBytes('streaming-bytes', 48 * KiB)
      const expected = tiny.chunkLengths(data)
      assert.ok(expected.length >= 20, 'the sample should hold many chunks')
      const { lengths } = streamingLengths(tiny, data, () => 1)
      assert.deepEqual(lengths, expected)
    })
  })

  describe('content-defined property', () => {
    function checkInsertion (params: ChunkerParams, data: Buffer, insertAt: number, inserted: Buffer, maxChanged: number): void {
      const cdc = new FastCdc(params)
      const edited = Buffer.concat([data.subarray(0, insertAt), inserted, data.subarray(insertAt)])
      const before = cdc.chunkLengths(data)
      const after = cdc.chunkLengths(edited)
      assert.equal(sum(after), edited.length)
      const hBefore = chunkHashes(data, before)
      const hAfter = chunkHashes(edited, after)
      const setBefore = new Set(hBefore)
      const setAfter = new Set(hAfter)
      const newChunks = hAfter.filter(h => !setBefore.has(h)).length
      const lostChunks = hBefore.filter(h => !setAfter.has(h)).length
      assert.ok(newChunks >= 1, 'the edited region must produce at least one new chunk')
      assert.ok(newChunks <= maxChanged, `${newChunks} of ${hAfter.length} chunks changed after a ${inserted.length}-byte insertion`)
      assert.ok(lostChunks <= maxChanged, `${lostChunks} of ${hBefore.length} original chunks lost`)
      // the chunks before the edit are the same sequence, and so are the chunks after it
      let prefix = 0
      while (prefix < hBefore.length && hBefore[prefix] === hAfter[prefix]) prefix++
      let suffix = 0
      while (suffix < hBefore.length && hBefore[hBefore.length - 1 - suffix] === hAfter[hAfter.length - 1 - suffix]) suffix++
      assert.ok(prefix + suffix >= hBefore.length - maxChanged, `prefix ${prefix} + suffix ${suffix} of ${hBefore.length}`)
      assert.ok(prefix + suffix >= hAfter.length - maxChanged)
    }

    it('inserting a few bytes in the middle of ~20 MiB changes only the chunks around the edit (small params)', function () {
      this.timeout(20_000)
      const data = prngBytes('cdc-20mib', 20 * MiB)
      checkInsertion(SMALL, data, 10 * MiB + 777, Buffer.from('hello'), 3)
    })

    it('deleting bytes in the middle also leaves the rest of the chunks unchanged', () => {
      const cdc = new FastCdc(SMALL)
      const data = prngBytes('cdc-delete', 4 * MiB)
      const edited = Buffer.concat([data.subarray(0, 2 * MiB), data.subarray(2 * MiB + 3)])
      const before = new Set(chunkHashes(data, cdc.chunkLengths(data)))
      const hAfter = chunkHashes(edited, cdc.chunkLengths(edited))
      const changed = hAfter.filter(h => !before.has(h)).length
      assert.ok(changed >= 1 && changed <= 3, `${changed} chunks changed of ${hAfter.length}`)
    })

    it('DEFAULT_CHUNKER: an insertion in the middle of ~20 MiB changes at most ~3 chunks', function () {
      this.timeout(20_000)
      const data = prngBytes('cdc-default', 20 * MiB)
      const cdc = new FastCdc(DEFAULT_CHUNKER)
      const lengths = cdc.chunkLengths(data)
      assert.equal(sum(lengths), data.length)
      for (const len of lengths.slice(0, -1)) {
        assert.ok(len >= DEFAULT_CHUNKER.minSize && len <= DEFAULT_CHUNKER.maxSize)
      }
      const avg = data.length / lengths.length
      assert.ok(avg >= DEFAULT_CHUNKER.avgSize / 2 && avg <= DEFAULT_CHUNKER.avgSize * 2, `average ${avg}`)
      checkInsertion(DEFAULT_CHUNKER, data, 10 * MiB + 12345, Buffer.from([1, 2, 3]), 3)
    })
  })
})
