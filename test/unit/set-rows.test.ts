/**
 * A staging set's rows held as bytes until the seal (set-rows.ts): every field comes back as
 * it went in, in order, and what is held stays near the rows' own size.
 */
import { strict as assert } from 'node:assert'
import { SetRows } from '../../src/staging/set-rows.js'
import type { NewSpoolChunk, StagedChange } from '../../src/staging/state-db.js'

function id (n: number): Uint8Array { return new Uint8Array(32).fill(n & 0xff) }

describe('staging set rows (issue 12 item 8)', () => {
  it('gives back every change and chunk as added, in order: deletions, symlinks, hard links, huge and negative fields', () => {
    const changes: StagedChange[] = [
      { entry: { folder: 'docs', path: Buffer.from('a/b.txt'), type: 'file', mode: 0o100644, mtimeNs: 1_700_000_000_123_456_789n, size: 2 ** 40 + 3, chunks: Buffer.concat([id(1), id(2)]), linkKey: '12:34' }, tracked: { type: 'file', mode: 0o100644, size: 2 ** 40 + 3, mtimeNs: '1700000000123456789', ctimeNs: '-5', ino: '18446744073709551615' } },
      { entry: { folder: 'docs', path: Buffer.from('gone'), type: 'deleted', mode: 0, mtimeNs: 13_569_465_600_000_000_000n, size: 0, chunks: new Uint8Array(0) } },
      { entry: { folder: 'photos', path: Buffer.from([0xff, 0x2f, 0x80]), type: 'symlink', mode: 0o120777, mtimeNs: -1n, size: 0, chunks: new Uint8Array(0), target: Buffer.from('../x') }, tracked: { type: 'symlink', mode: 0o120777, size: 0, mtimeNs: '0', ctimeNs: '0', ino: '7' } },
      // larger than a block: gets a block of its own
      { entry: { folder: 'docs', path: Buffer.alloc(4000, 0x61), type: 'file', mode: 0o100600, mtimeNs: 9n, size: 1, chunks: Buffer.concat(Array.from({ length: 20_000 }, (_, i) => id(i))) }, tracked: { type: 'file', mode: 0o100600, size: 1, mtimeNs: '9', ctimeNs: '9', ino: '1' } }
    ]
    const chunks: NewSpoolChunk[] = Array.from({ length: 5000 }, (_, i) => ({ id: id(i), segment: `set-1-w${i % 2}-0.seg`, offset: i * 1e6, clen: i, rawlen: 4 * 1024 * 1024 }))
    const rows = new SetRows()
    for (const c of changes) rows.addChange(c)
    for (const c of chunks) rows.addChunk(c)
    assert.equal(rows.changes, 4)
    assert.equal(rows.present, 3)
    const back = rows.finish()
    const norm = (c: StagedChange): unknown => ({ ...c, entry: { ...c.entry, path: Buffer.from(c.entry.path), chunks: Buffer.from(c.entry.chunks), target: c.entry.target === undefined ? undefined : Buffer.from(c.entry.target) } })
    assert.deepEqual([...back.changes].map(norm), changes.map(norm))
    assert.deepEqual([...back.chunks].map(c => ({ ...c, id: Buffer.from(c.id) })), chunks.map(c => ({ ...c, id: Buffer.from(c.id) })))
    // read twice (a seal that is retried reads them again)
    assert.equal([...back.changes].length, 4)
  })

  it('holds about the rows\' own bytes: 20k small-file rows in under 6 MiB, not an object graph per row', () => {
    const rows = new SetRows()
    let own = 0
    for (let i = 0; i < 20_000; i++) {
      const path = Buffer.from(`dir${i % 100}/file-${i}.txt`)
      rows.addChange({ entry: { folder: 'docs', path, type: 'file', mode: 0o100644, mtimeNs: 1_700_000_000_000_000_000n + BigInt(i), size: 3000, chunks: id(i) }, tracked: { type: 'file', mode: 0o100644, size: 3000, mtimeNs: String(1_700_000_000_000_000_000n + BigInt(i)), ctimeNs: '1700000000000000000', ino: String(1_000_000 + i) } })
      rows.addChunk({ id: id(i), segment: 'set-1-w0-0.seg', offset: i * 3000, clen: 2000, rawlen: 3000 })
      own += path.byteLength + 32 + 3 * 19 + 32
    }
    assert.ok(rows.heldBytes >= own, `${rows.heldBytes} < ${own}`)
    assert.ok(rows.heldBytes < 6 * 1024 * 1024, `${rows.heldBytes} bytes held for 20k rows`)
  })
})
