/**
 * Start-up recovery of packs after a crash: bytes appended after the last committed record
 * are cut off, packs nothing committed points into are removed, and what was committed still
 * reads back.
 */
import { strict as assert } from 'node:assert'
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { Catalog, type NewChunk } from '../../src/store/core/catalog.js'
import { PackStore } from '../../src/store/core/packs.js'
import { chunkId, compressChunk, verifyChunk } from '../../src/codec/chunk-codec.js'

describe('integration: pack recovery at start', function () {
  let dir: string
  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'holdfast-recover-')) })
  afterEach(() => { rmSync(dir, { recursive: true, force: true }) })

  function append (packs: PackStore, n: number): NewChunk[] {
    const out: NewChunk[] = []
    for (let i = 0; i < n; i++) {
      const plain = randomBytes(20_000)
      const id = chunkId(plain)
      const loc = packs.append(id, plain.byteLength, compressChunk(plain))
      out.push({ ...loc, id, rawlen: plain.byteLength })
    }
    return out
  }

  it('cuts uncommitted tails, removes unreferenced packs, keeps every committed chunk readable', () => {
    const catalog = new Catalog(join(dir, 'catalog.db'))
    const small = 100_000 // packs roll often, so there are several
    let packs = new PackStore(join(dir, 'packs'), small)
    const committed = append(packs, 12)
    packs.sync()
    const ep = catalog.touchEndpoint('12D3KooWRecover', '', 1)
    catalog.commitSnapshot({ endpointId: ep, setId: 1, sealedAt: 1, committedAt: 2, entries: [], chunks: committed })
    // a pull that was killed: more appended and even fsynced, never committed
    const lost = append(packs, 8)
    packs.sync()
    packs.close()
    const lastCommittedPack = committed[committed.length - 1].pack
    const orphanPacks = [...new Set(lost.map(c => c.pack))].filter(p => !committed.some(c => c.pack === p))
    assert.ok(orphanPacks.length > 0, 'the lost chunks filled packs of their own too')
    const sizeBefore = statSync(join(dir, 'packs', lastCommittedPack)).size

    packs = new PackStore(join(dir, 'packs'), small)
    const r = packs.recover(catalog.packExtents())
    assert.deepEqual(r.removedPacks.sort(), orphanPacks.sort())
    for (const p of orphanPacks) assert.equal(existsSync(join(dir, 'packs', p)), false)
    const last = committed.filter(c => c.pack === lastCommittedPack).reduce((m, c) => Math.max(m, c.offset + c.clen), 0)
    assert.equal(statSync(join(dir, 'packs', lastCommittedPack)).size, last)
    assert.ok(r.truncatedBytes > 0 || sizeBefore === last)
    for (const c of committed) {
      const loc = catalog.chunkLocation(c.id)
      assert.ok(loc !== undefined)
      verifyChunk(c.id, packs.read(loc), loc.rawlen)
    }
    // a second recovery finds nothing to do, and appending goes on in a new pack
    assert.deepEqual(new PackStore(join(dir, 'packs'), small).recover(catalog.packExtents()), { removedPacks: [], truncatedBytes: 0 })
    const more = append(packs, 1)
    assert.ok(!committed.some(c => c.pack === more[0].pack), 'a restart never appends to an old pack')
    packs.close()
    catalog.close()
  })
})
