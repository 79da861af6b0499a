import { strict as assert } from 'node:assert'
import { chunkIdsOf, CHUNK_ID_BYTES, displayPath, fromHex, isSafeRelativePath, pathKey, toHex, type StagedEntry } from '../../src/model/entry.js'

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)

describe('model/entry', () => {
  describe('isSafeRelativePath', () => {
    it('accepts plain relative paths', () => {
      for (const p of ['a', 'a/b', 'docs/reports/q3.csv', '.hidden', 'a/.b', '...', 'a/..b', '..a/b', 'a b/c', 'x'.repeat(300)]) {
        assert.equal(isSafeRelativePath(bytes(p)), true, p)
      }
    })

    it('accepts names that are not UTF-8', () => {
      assert.equal(isSafeRelativePath(new Uint8Array([0x6e, 0xe9, 0x2e, 0x74, 0x78, 0x74])), true)
      assert.equal(isSafeRelativePath(new Uint8Array([0xff, 0x2f, 0xfe, 0x80])), true)
    })

    it('rejects empty, absolute, dot and dot-dot components, empty components and NUL bytes', () => {
      const unsafe = ['', '/', '/abs', '/a/b', '..', '.', 'a/../b', 'a/..', '../a', 'a//b', './a', 'a/.', 'a/./b', 'a/', 'a/b/', '//a']
      for (const p of unsafe) {
        assert.equal(isSafeRelativePath(bytes(p)), false, JSON.stringify(p))
      }
      assert.equal(isSafeRelativePath(new Uint8Array([0x61, 0x00, 0x62])), false, 'NUL inside a name')
      assert.equal(isSafeRelativePath(new Uint8Array([0x00])), false, 'a lone NUL')
      assert.equal(isSafeRelativePath(new Uint8Array([0x61, 0x2f, 0x00])), false, 'NUL as a whole component')
      assert.equal(isSafeRelativePath(new Uint8Array([0x61, 0x00])), false, 'trailing NUL')
    })

    it('works on a view into a larger buffer', () => {
      const big = bytes('/../a/b/..')
      assert.equal(isSafeRelativePath(big.subarray(4, 7)), true) // 'a/b'
      assert.equal(isSafeRelativePath(big.subarray(0, 3)), false) // '/..'
    })
  })

  describe('displayPath', () => {
    it('shows UTF-8 paths as they are', () => {
      assert.equal(displayPath(bytes('docs/naïve ☃.txt')), 'docs/naïve ☃.txt')
      assert.equal(displayPath(bytes('a\\b')), 'a\\b')
    })

    it('escapes the bytes of a path that is not UTF-8', () => {
      assert.equal(displayPath(new Uint8Array([0x6e, 0xe9, 0x2e, 0x74, 0x78, 0x74])), 'n\\xe9.txt')
      assert.equal(displayPath(new Uint8Array([0x64, 0x2f, 0xff, 0x0a])), 'd/\\xff\\x0a')
      // a backslash is escaped too, so the output cannot be confused with an escape
      assert.equal(displayPath(new Uint8Array([0x5c, 0x80])), '\\x5c\\x80')
    })

    it('uses only the bytes of the view', () => {
      const big = new Uint8Array([0xff, 0x61, 0x62, 0xff])
      assert.equal(displayPath(big.subarray(1, 3)), 'ab')
    })
  })

  describe('helpers', () => {
    it('toHex/fromHex round-trip, also for views', () => {
      const raw = new Uint8Array([0, 1, 0xab, 0xff, 0x10])
      assert.equal(toHex(raw), '0001abff10')
      assert.equal(toHex(raw.subarray(2, 4)), 'abff')
      assert.deepEqual(fromHex('0001abff10'), raw)
    })

    it('pathKey is lossless for raw bytes and separates folders', () => {
      const a = pathKey('docs', new Uint8Array([0xe9]))
      const b = pathKey('docs', new Uint8Array([0xc3, 0xa9])) // 'é' in UTF-8
      assert.notEqual(a, b)
      assert.notEqual(pathKey('a', bytes('b')), pathKey('ab', new Uint8Array(0)))
      assert.equal(pathKey('f', bytes('x/y')), pathKey('f', bytes('x/y')))
    })

    it('chunkIdsOf splits the chunk list into 32-byte ids', () => {
      const chunks = new Uint8Array(3 * CHUNK_ID_BYTES).map((_, i) => i)
      const entry: StagedEntry = { folder: 'f', path: bytes('a'), type: 'file', mode: 0o644, mtimeNs: 0n, size: 1, chunks }
      const ids = chunkIdsOf(entry)
      assert.equal(ids.length, 3)
      ids.forEach((id, i) => {
        assert.equal(id.byteLength, CHUNK_ID_BYTES)
        assert.equal(id[0], i * CHUNK_ID_BYTES)
      })
      assert.deepEqual(chunkIdsOf({ ...entry, chunks: new Uint8Array(0) }), [])
    })
  })
})
