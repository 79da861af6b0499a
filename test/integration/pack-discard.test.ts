/**
 * PackStore.discard on real files: what a failed pull appended since the last sync is cut at
 * once (not at the next restart), across a pack roll-over, and the append pack is reused; a
 * failed pull cuts back only its own writer's appends, never a concurrent pull's.
 */
import { strict as assert } from 'node:assert'
import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PackStore, PACK_MAGIC } from '../../src/store/core/packs.js'
import { chunkId, compressChunk } from '../../src/codec/chunk-codec.js'
import { seededBytes } from '../support/trees.js'

describe('integration: pack store discards what was not synced', function () {
  let dir: string
  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'holdfast-pack-discard-')) })
  afterEach(() => { rmSync(dir, { recursive: true, force: true }) })

  it('cuts the append pack back to its synced length and reuses it; a pack finished since the sync is cut back', () => {
    const packs = new PackStore(dir, 64 * 1024)
    const chunk = (seed: string): { id: Uint8Array, raw: number, z: Uint8Array } => {
      const plain = seededBytes(seed, 20_000) // incompressible: ~20 KB a record
      return { id: chunkId(plain), raw: plain.byteLength, z: compressChunk(plain) }
    }
    const put = (seed: string): { pack: string, offset: number, clen: number } => { const c = chunk(seed); return packs.append(c.id, c.raw, c.z) }
    const committed = put('a')
    packs.sync()
    const syncedLength = committed.offset + committed.clen
    const first = committed.pack
    assert.equal(statSync(join(dir, first)).size, syncedLength)

    // a pull that fails after appending: within the pack, then past a roll-over into a new one
    for (let i = 0; i < 5; i++) put(`dead-${i}`)
    const names = packs.packNames()
    assert.ok(names.length >= 2, 'the appends rolled over into a new pack')
    const appendPack = [...packs.appendPacks()][0] as string
    assert.equal(packs.appendPacks().size, 1)
    assert.notEqual(appendPack, first)
    packs.discard()
    assert.equal(statSync(join(dir, first)).size, syncedLength, 'the finished pack is cut back to what was synced')
    assert.equal(statSync(join(dir, appendPack)).size, PACK_MAGIC.byteLength, 'the pack started since holds its magic alone, to be reused')
    for (const n of names.filter(n => n !== first && n !== appendPack)) assert.ok(!packs.packNames().includes(n), `pack ${n} started and finished since the sync is deleted`)

    // a failure within one pack: the append pack is cut back and appended to again
    const packs2 = new PackStore(join(dir, 'second'), 1024 * 1024)
    const c0 = chunk('b')
    const kept = packs2.append(c0.id, c0.raw, c0.z)
    packs2.sync()
    const c1 = chunk('c')
    packs2.append(c1.id, c1.raw, c1.z)
    packs2.discard()
    assert.equal(statSync(join(dir, 'second', kept.pack)).size, kept.offset + kept.clen)
    const c2 = chunk('d')
    const next = packs2.append(c2.id, c2.raw, c2.z)
    packs2.sync()
    assert.equal(next.pack, kept.pack, 'the append pack is reused')
    assert.equal(next.offset, kept.offset + kept.clen + 40, 'right after the last synced record')
    assert.ok(Buffer.from(packs2.read(next)).equals(Buffer.from(c2.z)))
    assert.ok(Buffer.from(packs2.read(kept)).equals(Buffer.from(c0.z)))
    assert.ok(statSync(join(dir, 'second', kept.pack)).size > PACK_MAGIC.byteLength)
    packs2.close()
    packs.close()
  })
  it('one pull\'s failure cuts back only its own writer: a concurrent pull\'s unsynced chunks survive and read back exact', () => {
    // Pulls of two endpoints run at once. Before PackWriter they appended to one shared pack,
    // and the failed pull's discard() cut away the other's appended chunks (whose locations
    // that pull went on to commit), and its next appends overwrote them.
    const packs = new PackStore(dir, 1024 * 1024)
    const chunk = (seed: string): { id: Uint8Array, raw: number, z: Uint8Array } => {
      const plain = seededBytes(seed, 20_000)
      return { id: chunkId(plain), raw: plain.byteLength, z: compressChunk(plain) }
    }
    const good = packs.acquireWriter()
    const failing = packs.acquireWriter()
    assert.notEqual(good, failing, 'each pull has its own writer')
    const kept: Array<{ z: Uint8Array, loc: { pack: string, offset: number, clen: number } }> = []
    for (let i = 0; i < 6; i++) {
      const a = chunk(`good-${i}`)
      kept.push({ z: a.z, loc: good.append(a.id, a.raw, a.z) })
      const b = chunk(`failing-${i}`)
      failing.append(b.id, b.raw, b.z)
    }
    failing.discard() // the failing pull gives up before its commit
    packs.releaseWriter(failing)
    for (let i = 6; i < 9; i++) {
      const a = chunk(`good-${i}`)
      kept.push({ z: a.z, loc: good.append(a.id, a.raw, a.z) })
    }
    good.sync() // the good pull commits
    packs.releaseWriter(good)
    for (const k of kept) assert.ok(Buffer.from(packs.read(k.loc)).equals(Buffer.from(k.z)), `chunk at ${k.loc.pack}:${k.loc.offset} reads back as appended`)
    assert.equal(packs.appendPacks().size, 2, 'two append packs, one per writer')
    assert.equal(packs.acquireWriter(), good, 'a released writer is reused, so its pack fills before another starts')
    packs.close()
  })
})
