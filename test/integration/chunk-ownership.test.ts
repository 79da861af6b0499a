/**
 * Ownership before dedup (issue 10 item 2), at the store: a REAL catalog (node:sqlite) and
 * REAL packs. An endpoint may reference only chunks it has sent; a restore of its data reads
 * only those; an older catalog gains ownership from its committed versions.
 */
import { strict as assert } from 'node:assert'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { chunkId, compressChunk } from '../../src/codec/chunk-codec.js'
import { toHex, type StagedEntry } from '../../src/model/entry.js'
import { HoldfastError } from '../../src/util/errors.js'
import { PackStore } from '../../src/store/core/packs.js'
import { Catalog, type NewChunk } from '../../src/store/core/catalog.js'
import { restoreSnapshot } from '../../src/store/restore.js'
import { seededBytes } from '../support/trees.js'

function entryOf (name: string, content: Uint8Array): StagedEntry {
  return { folder: 'home', path: Buffer.from(name), type: 'file', mode: 0o100644, mtimeNs: 1n, size: content.byteLength, chunks: chunkId(content) }
}

async function thrown (fn: () => Promise<unknown>): Promise<unknown> {
  try { await fn() } catch (err) { return err }
  return undefined
}

describe('integration: chunk ownership in the store', function () {
  this.timeout(60_000)
  let dir = ''
  let catalog: Catalog | undefined
  let packs: PackStore | undefined

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'holdfast-ownership-'))
    catalog = new Catalog(join(dir, 'catalog.db'))
    packs = new PackStore(join(dir, 'packs'))
  })
  afterEach(() => {
    packs?.close()
    catalog?.close()
    packs = undefined; catalog = undefined
    rmSync(dir, { recursive: true, force: true })
  })

  /** Stores one single-chunk file for an endpoint as the puller would, and commits it. */
  function commitFile (endpointId: number, setId: number, name: string, content: Buffer): number {
    const id = chunkId(content)
    const chunks: NewChunk[] = [{ id, rawlen: content.byteLength, ...(packs as PackStore).append(id, content.byteLength, compressChunk(content)) }]
    packs?.sync()
    return (catalog as Catalog).commitSnapshot({ endpointId, setId, sealedAt: setId, committedAt: setId, entries: [entryOf(name, content)], chunks })
  }

  it('refuses to commit a set that references a chunk its endpoint has not sent (CHUNK_NOT_OWNED), and commits nothing of it', () => {
    const c = catalog as Catalog
    const a = c.touchEndpoint('12D3KooWEndpointA', 'a', 1)
    const b = c.touchEndpoint('12D3KooWEndpointB', 'b', 1)
    const secret = seededBytes('secret', 50_000)
    commitFile(a, 1, 'secret.bin', secret)
    // B lists A's chunk id without sending it: what a tampered agent's set looks like
    let err: unknown
    try {
      c.commitSnapshot({ endpointId: b, setId: 1, sealedAt: 1, committedAt: 2, entries: [entryOf('stolen.bin', secret)], chunks: [] })
    } catch (e) { err = e }
    assert.ok(err instanceof HoldfastError && err.code === 'CHUNK_NOT_OWNED', `refused: ${String(err)}`)
    assert.deepEqual(c.snapshots(b), [], 'no snapshot for B')
    // once B has sent the chunk itself (verified by the puller), it may reference it; the store keeps one copy
    const stored = c.storedBytes()
    const snap = c.commitSnapshot({ endpointId: b, setId: 1, sealedAt: 1, committedAt: 2, entries: [entryOf('same.bin', secret)], chunks: [], proven: [chunkId(secret)] })
    assert.equal(c.snapshots(b).length, 1)
    assert.equal(c.snapshot(snap).newBytes, 0)
    assert.equal(c.storedBytes(), stored, 'not stored twice')
  })

  it('asks an endpoint for every chunk it has not sent, whether the store holds it or not', () => {
    const c = catalog as Catalog
    const a = c.touchEndpoint('12D3KooWEndpointA', 'a', 1)
    const b = c.touchEndpoint('12D3KooWEndpointB', 'b', 1)
    const secret = seededBytes('secret', 50_000)
    const own = seededBytes('own', 50_000)
    commitFile(a, 1, 'secret.bin', secret)
    commitFile(b, 1, 'own.bin', own)
    const nowhere = chunkId(seededBytes('nowhere', 1000))
    const asked = c.unownedChunks(b, [chunkId(secret), chunkId(own), nowhere]).map(toHex)
    // A's stored chunk and a chunk stored nowhere are answered alike: nothing tells B which exists
    assert.deepEqual(asked, [toHex(chunkId(secret)), toHex(nowhere)])
    assert.deepEqual(c.unownedChunks(a, [chunkId(secret), chunkId(own)]).map(toHex), [toHex(chunkId(own))])
  })

  it('a restore of an endpoint never reads a chunk it does not own, even when a version names one', async () => {
    const c = catalog as Catalog
    const a = c.touchEndpoint('12D3KooWEndpointA', 'a', 1)
    const b = c.touchEndpoint('12D3KooWEndpointB', 'b', 1)
    const secret = seededBytes('secret', 50_000)
    const own = seededBytes('own', 50_000)
    commitFile(a, 1, 'secret.bin', secret)
    const snapB = commitFile(b, 1, 'own.bin', own)
    // a version naming A's chunk that got into B's history anyway (an edited catalog): the
    // restore is the last line of defence
    const e = entryOf('stolen.bin', secret)
    c.db.prepare('INSERT INTO file_versions (snapshot_id, endpoint_id, folder, path, type, mode, mtime_ns, size, chunks) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)')
      .run(snapB, b, e.folder, e.path, e.type, e.mode, '1', e.size, e.chunks)
    const out = join(dir, 'out')
    let summary: Awaited<ReturnType<typeof restoreSnapshot>> | undefined
    const err = await thrown(async () => { summary = await restoreSnapshot(c, packs as PackStore, { endpointId: b, snapshotId: snapB, target: out }) })
    const refused = (err instanceof HoldfastError && err.code === 'CHUNK_NOT_OWNED') || (summary?.errors.some(x => x.code === 'CHUNK_NOT_OWNED') ?? false)
    assert.ok(refused, `refused with CHUNK_NOT_OWNED: ${String(err)} ${JSON.stringify(summary?.errors)}`)
    const stolen = join(out, 'home', 'stolen.bin')
    assert.ok(!existsSync(stolen) || !readFileSync(stolen).equals(secret), 'A\'s bytes are not handed over')
    if (err === undefined) assert.ok(readFileSync(join(out, 'home', 'own.bin')).equals(own), 'B\'s own file restored byte for byte')
    // A's own restore still works
    const outA = join(dir, 'outA')
    const okA = await restoreSnapshot(c, packs as PackStore, { endpointId: a, snapshotId: c.latestSnapshot(a) as number, target: outA })
    assert.deepEqual(okA.errors, [])
    assert.ok(readFileSync(join(outA, 'home', 'secret.bin')).equals(secret))
  })

  it('a catalog made before ownership gains it from its committed versions when opened', () => {
    const c = catalog as Catalog
    const a = c.touchEndpoint('12D3KooWEndpointA', 'a', 1)
    const b = c.touchEndpoint('12D3KooWEndpointB', 'b', 1)
    const fileA = seededBytes('a-file', 50_000)
    const fileB = seededBytes('b-file', 50_000)
    commitFile(a, 1, 'a.bin', fileA)
    commitFile(b, 1, 'b.bin', fileB)
    c.close()
    catalog = undefined
    // back to the old schema: no ownership table, no trigger, no sent_by
    const raw = new DatabaseSync(join(dir, 'catalog.db'))
    raw.exec('DROP TRIGGER chunk_owners_follow_chunks; DROP TABLE chunk_owners; ALTER TABLE chunks DROP COLUMN sent_by')
    raw.close()
    catalog = new Catalog(join(dir, 'catalog.db'))
    assert.deepEqual(catalog.unownedChunks(a, [chunkId(fileA), chunkId(fileB)]).map(toHex), [toHex(chunkId(fileB))])
    assert.deepEqual(catalog.unownedChunks(b, [chunkId(fileA), chunkId(fileB)]).map(toHex), [toHex(chunkId(fileA))])
  })

  it('a chunk prune removes is owned by no one after: storing it again needs it sent again', () => {
    const c = catalog as Catalog
    const a = c.touchEndpoint('12D3KooWEndpointA', 'a', 1)
    const file = seededBytes('gone', 50_000)
    commitFile(a, 1, 'gone.bin', file)
    assert.deepEqual(c.unownedChunks(a, [chunkId(file)]), [])
    c.db.prepare('DELETE FROM chunks WHERE id = ?').run(chunkId(file)) // what prune does to an unreferenced chunk
    assert.equal(Number(c.db.prepare('SELECT count(*) AS n FROM chunk_owners').get()?.n), 0)
    assert.deepEqual(c.unownedChunks(a, [chunkId(file)]).map(toHex), [toHex(chunkId(file))])
  })
})
