import { strict as assert } from 'node:assert'
import { entryFromWire, entryToWire } from '../../src/protocols/manifest.js'
import type { StagedEntry } from '../../src/model/entry.js'
import { holdfastCode, prngBytes } from './helpers.js'

function fileEntry (overrides: Partial<StagedEntry> = {}): StagedEntry {
  return {
    folder: 'docs',
    path: new TextEncoder().encode('reports/q3.csv'),
    type: 'file',
    mode: 0o100644,
    mtimeNs: 1_700_000_000_123_456_789n,
    size: 12345,
    chunks: new Uint8Array(prngBytes('chunks', 3 * 32)),
    ...overrides
  }
}

/** What travels: JSON text, so test the round trip through JSON too. */
function viaJson (e: StagedEntry): StagedEntry {
  return entryFromWire(JSON.parse(JSON.stringify(entryToWire(e))))
}

function assertSameEntry (actual: StagedEntry, expected: StagedEntry): void {
  assert.equal(actual.folder, expected.folder)
  assert.deepEqual(Buffer.from(actual.path), Buffer.from(expected.path))
  assert.equal(actual.type, expected.type)
  assert.equal(actual.mode, expected.mode)
  assert.equal(typeof actual.mtimeNs, 'bigint')
  assert.equal(actual.mtimeNs, expected.mtimeNs)
  assert.equal(actual.size, expected.size)
  assert.deepEqual(Buffer.from(actual.chunks), Buffer.from(expected.chunks))
  if (expected.target === undefined) {
    assert.equal(actual.target, undefined)
  } else {
    assert.ok(actual.target !== undefined)
    assert.deepEqual(Buffer.from(actual.target), Buffer.from(expected.target))
  }
}

describe('manifest wire entries', () => {
  it('round-trips a file entry, keeping nanoseconds in a bigint mtime', () => {
    const e = fileEntry()
    const wire = entryToWire(e)
    assert.equal(wire.mt, '1700000000123456789', 'mtime travels as a decimal string, not a lossy number')
    assertSameEntry(entryFromWire(wire), e)
    assertSameEntry(viaJson(e), e)
  })

  it('round-trips a path that is not UTF-8', () => {
    const path = new Uint8Array([0x64, 0x6f, 0x63, 0x73, 0x2f, 0x6e, 0xe9, 0x2e, 0x74, 0x78, 0x74, 0xff, 0xfe, 0x80])
    const back = viaJson(fileEntry({ path }))
    assert.deepEqual(Buffer.from(back.path), Buffer.from(path))
  })

  it('round-trips a symlink with a raw-byte target and no chunks', () => {
    const e = fileEntry({
      type: 'symlink',
      mode: 0o120777,
      size: 20,
      chunks: new Uint8Array(0),
      target: new Uint8Array([0x2e, 0x2e, 0x2f, 0xc3, 0x28, 0x2f, 0x74])
    })
    const wire = entryToWire(e)
    assert.equal(typeof wire.l, 'string')
    assertSameEntry(viaJson(e), e)
  })

  it('omits the target for non-symlinks', () => {
    const wire = entryToWire(fileEntry())
    assert.equal('l' in wire, false)
    assert.equal(viaJson(fileEntry()).target, undefined)
  })

  it('round-trips every entry type, pre-epoch and zero mtimes, and large sizes', () => {
    const cases: StagedEntry[] = [
      fileEntry({ type: 'dir', mode: 0o40755, size: 0, chunks: new Uint8Array(0) }),
      fileEntry({ type: 'special', mode: 0o10644, size: 0, chunks: new Uint8Array(0) }),
      fileEntry({ type: 'deleted', mode: 0, mtimeNs: 0n, size: 0, chunks: new Uint8Array(0) }),
      fileEntry({ mtimeNs: -1_000_000_001n }),
      fileEntry({ mtimeNs: 253_402_300_799_999_999_999n }), // beyond 2^64 ns: still exact
      fileEntry({ size: 64 * 1024 * 1024 * 1024, mode: 0xffffffff })
    ]
    for (const e of cases) assertSameEntry(viaJson(e), e)
  })

  it('keeps the bytes of a path that is a view into a larger buffer', () => {
    const big = new TextEncoder().encode('XXXXa/b/cYYYY')
    const e = fileEntry({ path: big.subarray(4, 9) })
    assert.deepEqual(Buffer.from(viaJson(e).path).toString(), 'a/b/c')
  })

  describe('malformed entries are FRAME_MALFORMED', () => {
    const good = (): Record<string, unknown> => JSON.parse(JSON.stringify(entryToWire(fileEntry()))) as Record<string, unknown>
    const withField = (name: string, value: unknown): Record<string, unknown> => ({ ...good(), [name]: value })
    const without = (name: string): Record<string, unknown> => { const r = good(); delete r[name]; return r }

    it('the sample is well-formed', () => {
      assert.doesNotThrow(() => entryFromWire(good()))
    })

    it('rejects a value that is not an object', () => {
      for (const value of [null, undefined, 'entry', 42]) {
        assert.throws(() => entryFromWire(value), holdfastCode('FRAME_MALFORMED'), String(value))
      }
    })

    it('rejects an unknown or ill-typed entry type', () => {
      for (const t of ['bogus', 'File', '', 1, null]) {
        assert.throws(() => entryFromWire(withField('t', t)), holdfastCode('FRAME_MALFORMED', "'t'"), String(t))
      }
      assert.throws(() => entryFromWire(without('t')), holdfastCode('FRAME_MALFORMED', "'t'"))
    })

    it('rejects a chunk list that is not a multiple of 32 bytes', () => {
      for (const n of [1, 31, 33, 63]) {
        const c = Buffer.from(prngBytes(`c${n}`, n)).toString('base64')
        assert.throws(() => entryFromWire(withField('c', c)), holdfastCode('FRAME_MALFORMED', "'c'"), `${n} bytes`)
      }
      assert.throws(() => entryFromWire(withField('c', 7)), holdfastCode('FRAME_MALFORMED', "'c'"))
      assert.throws(() => entryFromWire(without('c')), holdfastCode('FRAME_MALFORMED', "'c'"))
    })

    it('rejects an empty path', () => {
      assert.throws(() => entryFromWire(withField('p', '')), holdfastCode('FRAME_MALFORMED', "'p'"))
      assert.throws(() => entryFromWire(without('p')), holdfastCode('FRAME_MALFORMED', "'p'"))
      assert.throws(() => entryFromWire(withField('p', 5)), holdfastCode('FRAME_MALFORMED', "'p'"))
    })

    it('rejects an mtime that is not a decimal integer string', () => {
      for (const mt of ['', '1.5', '1e9', 'abc', ' 1', '1 ', '+1', '0x10', '1'.repeat(26), 1700000000]) {
        assert.throws(() => entryFromWire(withField('mt', mt)), holdfastCode('FRAME_MALFORMED', "'mt'"), JSON.stringify(mt))
      }
      assert.throws(() => entryFromWire(without('mt')), holdfastCode('FRAME_MALFORMED', "'mt'"))
    })

    it('rejects an ill-typed mode, size, folder or target', () => {
      const cases: Array<[string, unknown]> = [
        ['m', -1], ['m', 0x100000000], ['m', '644'], ['m', 1.5],
        ['s', -1], ['s', 1.5], ['s', '10'], ['s', null],
        ['f', 3], ['f', null], ['f', 'x'.repeat(256)],
        ['l', 5], ['l', null]
      ]
      for (const [name, value] of cases) {
        assert.throws(() => entryFromWire(withField(name, value)), holdfastCode('FRAME_MALFORMED', `'${name}'`), `${name}=${JSON.stringify(value)}`)
      }
      for (const name of ['m', 's', 'f']) {
        assert.throws(() => entryFromWire(without(name)), holdfastCode('FRAME_MALFORMED', `'${name}'`), `missing ${name}`)
      }
    })
  })

  describe('unsafe names are ENTRY_PATH_UNSAFE at decode', () => {
    const bytes = (t: string): Uint8Array => new TextEncoder().encode(t)
    it('refuses .., absolute paths, NUL, empty and dot components', () => {
      for (const p of ['..', '../x', 'a/../b', 'a/..', '/etc/passwd', '/', 'a\0b', 'a//b', './a', 'a/.', 'a/']) {
        assert.throws(() => viaJson(fileEntry({ path: bytes(p) })), holdfastCode('ENTRY_PATH_UNSAFE'), JSON.stringify(p))
      }
    })
    it('refuses a folder that is not one component', () => {
      for (const f of ['', '.', '..', 'a/b', '/abs', 'a\0b', '../up']) {
        assert.throws(() => viaJson(fileEntry({ folder: f })), holdfastCode('ENTRY_PATH_UNSAFE'), JSON.stringify(f))
      }
    })
    it('keeps names that only look like dots', () => {
      for (const p of ['...', '.hidden', 'a/..b', '..a/b']) assert.equal(Buffer.from(viaJson(fileEntry({ path: bytes(p) })).path).toString(), p)
    })
  })
})
