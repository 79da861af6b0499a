/**
 * The snapshots listing after prune (real catalog and packs on real files): a kept snapshot
 * that prune moved versions into lists what it holds now, not what it was committed with.
 */
import { strict as assert } from 'node:assert'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PackStore } from '../../src/store/core/packs.js'
import { Catalog, type NewChunk } from '../../src/store/core/catalog.js'
import { prune } from '../../src/store/maintenance/prune.js'
import { chunkId, compressChunk } from '../../src/codec/chunk-codec.js'
import type { StagedEntry } from '../../src/model/entry.js'

const DAY = 24 * 3_600_000

describe('integration: the snapshots listing after prune', function () {
  let root: string
  let catalog: Catalog
  let packs: PackStore

  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'holdfast-prune-counts-'))
    catalog = new Catalog(join(root, 'catalog.db'))
    packs = new PackStore(join(root, 'packs'))
  })

  afterEach(() => {
    packs.close()
    catalog.close()
    rmSync(root, { recursive: true, force: true })
  })

  let setId = 0
  function commit (endpointId: number, files: Record<string, string | null>, committedAt: number): number {
    const entries: StagedEntry[] = []
    const chunks: NewChunk[] = []
    for (const [path, text] of Object.entries(files)) {
      if (text === null) {
        entries.push({ folder: 'home', path: Buffer.from(path), type: 'deleted', mode: 0, mtimeNs: 0n, size: 0, chunks: new Uint8Array(0) })
        continue
      }
      const plain = Buffer.from(text)
      const id = chunkId(plain)
      if (catalog.missingChunks([id]).length > 0 && !chunks.some(c => Buffer.from(c.id).equals(id))) chunks.push({ id, rawlen: plain.byteLength, ...packs.append(id, plain.byteLength, compressChunk(plain)) })
      entries.push({ folder: 'home', path: Buffer.from(path), type: 'file', mode: 0o100644, mtimeNs: 1_700_000_000_000_000_000n, size: plain.byteLength, chunks: id })
    }
    packs.sync()
    return catalog.commitSnapshot({ endpointId, setId: ++setId, sealedAt: committedAt, committedAt, entries, chunks })
  }

  it('a kept snapshot that prune folded versions into reports its new entry count and bytes', async () => {
    const ep = catalog.touchEndpoint('12D3KooWCountsPeer', 'laptop', 1)
    const t0 = Date.parse('2025-01-01T00:00:00Z')
    commit(ep, { a: 'aaaa', b: 'bbbbbbbb', c: 'cc' }, t0) // only a survives (b and c are superseded); 4 bytes
    commit(ep, { b: 'BBBBBBBBBB', d: 'ddd' }, t0 + DAY) // b and d survive; 13 bytes
    const kept = commit(ep, { e: 'e', c: null }, t0 + 2 * DAY) // its own: 2 entries (one a deletion), 1 byte
    const before = catalog.snapshots(ep).find(s => s.id === kept)
    assert.deepEqual([before?.entries, before?.rawBytes], [2, 1])

    catalog.setRetentionPolicy(0, { rules: { keepLast: 1 } }, t0 + 3 * DAY)
    const report = await prune(catalog, packs, { now: t0 + 3 * DAY })
    assert.equal(report.snapshots.removed, 2)

    const listed = catalog.snapshots(ep)
    assert.deepEqual(listed.map(s => s.id), [kept])
    // what the kept snapshot holds now, counted from the catalog's file versions
    const holds = catalog.db.prepare("SELECT count(*) AS n, total(CASE WHEN type = 'file' THEN size ELSE 0 END) AS bytes FROM file_versions WHERE snapshot_id = ?").get(kept)
    assert.equal(listed[0].entries, Number(holds?.n))
    assert.equal(listed[0].rawBytes, Number(holds?.bytes))
    // a (4) moved from the first, b (10) + d (3) from the second, e (1) and c's deletion its own
    assert.deepEqual([listed[0].entries, listed[0].rawBytes], [5, 18])
    assert.deepEqual([catalog.snapshot(kept).entries, catalog.snapshot(kept).rawBytes], [5, 18])
  })
})
