/**
 * verify on a real catalog and real packs: a clean store passes; a flipped data byte (found
 * only by --read-data), a damaged record header, a truncated pack, a missing pack and a
 * catalog row naming a chunk the index lacks are each found and reported with the chunks,
 * the file versions and the snapshots they damage.
 */
import { strict as assert } from 'node:assert'
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync, truncateSync, unlinkSync, writeSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PackStore, PACK_RECORD_HEADER } from '../../src/store/core/packs.js'
import { Catalog, type NewChunk } from '../../src/store/core/catalog.js'
import { chunkId, compressChunk } from '../../src/codec/chunk-codec.js'
import { toHex, type EntryType, type StagedEntry } from '../../src/model/entry.js'
import { verifyStore, type VerifyProgress, type VerifyReport } from '../../src/store/maintenance/verify.js'
import { runCatalogTask } from '../../src/store/maintenance/catalog-tasks.js'

const CHUNK = 4096

interface Spec { path: string, type: EntryType, content?: Buffer, folder?: string }

class Store {
  readonly root = mkdtempSync(join(tmpdir(), 'holdfast-verify-'))
  readonly packs: PackStore
  readonly catalog = new Catalog(join(this.root, 'catalog.db'))
  private readonly sets = new Map<number, number>()

  constructor (packBytes: number) {
    this.packs = new PackStore(join(this.root, 'packs'), packBytes)
  }

  commit (endpointId: number, specs: Spec[], extraEntries: StagedEntry[] = []): number {
    const entries: StagedEntry[] = [...extraEntries]
    const plain = new Map<string, Buffer>()
    for (const s of specs) {
      const content = s.content ?? Buffer.alloc(0)
      const parts: Buffer[] = []
      if (s.type === 'file') for (let i = 0; i < content.length; i += CHUNK) parts.push(content.subarray(i, i + CHUNK))
      for (const p of parts) plain.set(toHex(chunkId(p)), p)
      entries.push({
        folder: s.folder ?? 'home',
        path: new Uint8Array(Buffer.from(s.path)),
        type: s.type,
        mode: s.type === 'deleted' ? 0 : s.type === 'dir' ? 0o040755 : 0o100644,
        mtimeNs: 1_700_000_000_000_000_000n,
        size: s.type === 'file' ? content.length : 0,
        chunks: new Uint8Array(Buffer.concat(parts.map(p => chunkId(p))))
      })
    }
    const ids = [...plain.keys()].map(h => new Uint8Array(Buffer.from(h, 'hex')))
    const chunks: NewChunk[] = []
    for (const id of this.catalog.missingChunks(ids)) {
      const p = plain.get(toHex(id)) as Buffer
      chunks.push({ id, rawlen: p.length, ...this.packs.append(id, p.length, compressChunk(p)) })
    }
    this.packs.sync()
    const setId = (this.sets.get(endpointId) ?? 0) + 1
    this.sets.set(endpointId, setId)
    return this.catalog.commitSnapshot({ endpointId, setId, sealedAt: setId, committedAt: Date.now(), entries, chunks, proven: [...ids, ...extraEntries.flatMap(e => Array.from({ length: e.chunks.byteLength / 32 }, (_, i) => e.chunks.subarray(i * 32, i * 32 + 32)))] })
  }

  location (content: Buffer, index: number): { pack: string, offset: number, clen: number, file: string, id: string } {
    const id = chunkId(content.subarray(index * CHUNK, (index + 1) * CHUNK))
    const loc = this.catalog.chunkLocation(id)
    assert.ok(loc !== undefined, 'chunk is in the index')
    return { ...loc, file: join(this.packs.dir, loc.pack), id: toHex(id) }
  }

  async verify (readData: boolean, progress?: VerifyProgress[]): Promise<VerifyReport> {
    return await verifyStore(this.catalog, this.packs.dir, { readData, workers: 2, onProgress: progress === undefined ? undefined : p => { progress.push(p) } })
  }

  dispose (): void {
    try { this.packs.close() } catch {}
    try { this.catalog.close() } catch {}
    rmSync(this.root, { recursive: true, force: true })
  }
}

function flipByte (file: string, at: number): void {
  const fd = openSync(file, 'r+')
  try {
    const b = Buffer.alloc(1)
    readSync(fd, b, 0, 1, at)
    b[0] ^= 0x20
    writeSync(fd, b, 0, 1, at)
  } finally {
    closeSync(fd)
  }
}

const damagedFiles = (r: VerifyReport): string[] => r.damaged.files.map(f => `${f.endpoint}:${f.path}@${f.snapshotId}[${f.inSnapshots.first}..${f.inSnapshots.last}/${f.inSnapshots.count}]`)

describe('integration: store verify', function () {
  this.timeout(120_000)
  let store: Store
  let alpha: number
  let bravo: number
  const s: Record<string, number> = {}
  // random data: one pack of 64 KiB holds about 15 chunks, so these span several packs
  const big = randomBytes(12 * CHUNK)
  const shared = randomBytes(3 * CHUNK)
  const small = Buffer.from('a small file\n')
  const edited = Buffer.concat([big.subarray(0, 11 * CHUNK), randomBytes(CHUNK)])

  beforeEach(() => {
    store = new Store(16 * 1024)
    alpha = store.catalog.touchEndpoint('12D3KooWVerifyAlpha', 'alpha', 1)
    bravo = store.catalog.touchEndpoint('12D3KooWVerifyBravo', 'bravo', 1)
    s.a1 = store.commit(alpha, [
      { path: 'docs', type: 'dir' },
      { path: 'docs/big.bin', type: 'file', content: big },
      { path: 'shared.bin', type: 'file', content: shared },
      { path: 'small.txt', type: 'file', content: small },
      { path: 'empty.txt', type: 'file' }
    ])
    s.b1 = store.commit(bravo, [{ path: 'copy.bin', type: 'file', content: shared, folder: 'stuff' }])
    s.a2 = store.commit(alpha, [{ path: 'new.txt', type: 'file', content: Buffer.from('new in a2') }])
    // a3 edits the last chunk of big.bin: the a1 version is held by a1 and a2 only
    s.a3 = store.commit(alpha, [{ path: 'docs/big.bin', type: 'file', content: edited }])
    s.a4 = store.commit(alpha, [{ path: 'small.txt', type: 'deleted' }])
    store.packs.close()
    assert.ok(store.packs.packNames().length >= 2, 'several packs')
  })
  afterEach(() => { store.dispose() })

  it('passes a clean store, with and without --read-data, and reports progress', async () => {
    const progress: VerifyProgress[] = []
    const r = await store.verify(false, progress)
    assert.equal(r.ok, true, JSON.stringify(r.problems))
    assert.equal(r.problemsTotal, 0)
    assert.equal(r.packs.total, store.packs.packNames().length)
    assert.equal(r.packs.missing, 0)
    const chunks = Number(store.catalog.db.prepare('SELECT count(*) AS n FROM chunks').get()?.n)
    assert.equal(r.chunks.total, chunks)
    assert.equal(r.chunks.checked, chunks)
    assert.equal(r.versions, 7, 'file versions checked (a1: 4, b1: 1, a2: 1, a3: 1)')
    assert.deepEqual(r.damaged, { chunksTotal: 0, chunks: [], filesTotal: 0, files: [], snapshotsTotal: 0, snapshots: [] })
    assert.deepEqual([...new Set(progress.map(p => p.phase))], ['packs', 'catalog', 'impact'])
    assert.equal(progress.at(-1)?.chunksDone, chunks)

    const full = await store.verify(true)
    assert.equal(full.ok, true, JSON.stringify(full.problems))
    const packBytes = store.packs.packNames().reduce((n, p) => n + statSync(join(store.packs.dir, p)).size, 0)
    assert.equal(full.chunks.bytesRead, packBytes, 'every pack read once, whole')
  })

  it('finds a flipped data byte with --read-data and names the chunk, the files and the snapshots', async () => {
    // the last chunk of the a1 version of big.bin (replaced in a3)
    const last = store.location(big, 11)
    flipByte(last.file, last.offset + Math.floor(last.clen / 2))
    const quick = await store.verify(false)
    assert.equal(quick.ok, true, 'the record structure is intact: only a re-hash sees it')

    const r = await store.verify(true)
    assert.equal(r.ok, false)
    assert.deepEqual(r.problemCounts, { 'hash-mismatch': 1 })
    assert.equal(r.problems[0].chunk, last.id)
    assert.equal(r.problems[0].pack, last.pack)
    assert.equal(r.problems[0].offset, last.offset)
    assert.deepEqual(r.damaged.chunks, [last.id])
    assert.deepEqual(damagedFiles(r), [`alpha:home/docs/big.bin@${s.a1}[${s.a1}..${s.a2}/2]`])
    assert.deepEqual(r.damaged.files[0].chunks, [last.id])
    assert.deepEqual(r.damaged.snapshots.map(x => x.id), [s.a1, s.a2])
    assert.equal(r.damaged.snapshotsTotal, 2)
  })

  it('finds a chunk two endpoints share in both, and in every snapshot still holding it', async () => {
    const loc = store.location(shared, 1)
    flipByte(loc.file, loc.offset + 3)
    const r = await store.verify(true)
    assert.deepEqual(r.problemCounts, { 'hash-mismatch': 1 })
    assert.deepEqual(damagedFiles(r), [
      `alpha:home/shared.bin@${s.a1}[${s.a1}..${s.a4}/4]`,
      `bravo:stuff/copy.bin@${s.b1}[${s.b1}..${s.b1}/1]`
    ])
    assert.deepEqual(r.damaged.snapshots.map(x => `${x.endpoint}:${x.id}`).sort(), [s.a1, s.a2, s.a3, s.a4].map(id => `alpha:${id}`).concat([`bravo:${s.b1}`]).sort())
  })

  it('finds a damaged record header without reading the data', async () => {
    const loc = store.location(big, 4)
    flipByte(loc.file, loc.offset - PACK_RECORD_HEADER + 5) // inside the id in the header
    const r = await store.verify(false)
    assert.equal(r.ok, false)
    assert.deepEqual(r.problemCounts, { 'header-mismatch': 1 })
    assert.equal(r.problems[0].chunk, loc.id)
    assert.match(r.problems[0].message, /names chunk/)
    // the chunk is in both versions of big.bin (a3 changed only the last chunk)
    assert.deepEqual(damagedFiles(r), [`alpha:home/docs/big.bin@${s.a1}[${s.a1}..${s.a2}/2]`, `alpha:home/docs/big.bin@${s.a3}[${s.a3}..${s.a4}/2]`])
  })

  it('finds a truncated pack: every chunk past the cut, and their files', async () => {
    // cut the pack that holds the first chunk of big.bin just inside that chunk's data
    const first = store.location(big, 0)
    const lost = Number(store.catalog.db.prepare('SELECT count(*) AS n FROM chunks WHERE pack = (SELECT id FROM packs WHERE name = ?) AND offset >= ?').get(first.pack, first.offset)?.n)
    truncateSync(first.file, first.offset + 10)
    const r = await store.verify(false)
    assert.equal(r.ok, false)
    assert.deepEqual(r.problemCounts, { 'pack-truncated': lost })
    assert.ok(r.problems.every(p => p.pack === first.pack))
    assert.ok(r.damaged.chunks.includes(first.id))
    assert.equal(r.damaged.chunksTotal, lost)
    assert.ok(damagedFiles(r).includes(`alpha:home/docs/big.bin@${s.a1}[${s.a1}..${s.a2}/2]`))
    assert.ok(damagedFiles(r).includes(`alpha:home/docs/big.bin@${s.a3}[${s.a3}..${s.a4}/2]`))
    assert.ok(!damagedFiles(r).some(f => f.includes('small.txt') || f.includes('new.txt')), 'files in other packs are fine')
  })

  it('finds a missing pack and everything that needs it', async () => {
    const loc = store.location(shared, 0)
    const inPack = Number(store.catalog.db.prepare('SELECT count(*) AS n FROM chunks WHERE pack = (SELECT id FROM packs WHERE name = ?)').get(loc.pack)?.n)
    unlinkSync(loc.file)
    const r = await store.verify(false)
    assert.equal(r.ok, false)
    assert.equal(r.packs.missing, 1)
    assert.deepEqual(r.problemCounts, { 'pack-missing': 1 })
    assert.equal(r.problems[0].pack, loc.pack)
    assert.equal(r.problems[0].chunks, inPack)
    assert.equal(r.damaged.chunksTotal, inPack)
    assert.ok(damagedFiles(r).includes(`bravo:stuff/copy.bin@${s.b1}[${s.b1}..${s.b1}/1]`))
    assert.ok(damagedFiles(r).includes(`alpha:home/shared.bin@${s.a1}[${s.a1}..${s.a4}/4]`))
    // every damaged file really has a chunk in that pack, and every file with one is listed
    const inMissing = new Set(store.catalog.db.prepare('SELECT id FROM chunks WHERE pack = (SELECT id FROM packs WHERE name = ?)').all(loc.pack).map(x => toHex(x.id as Uint8Array)))
    for (const f of r.damaged.files) assert.ok(f.chunks.length > 0 && f.chunks.every(c => inMissing.has(c)), f.path)
    const expected = new Set<string>()
    for (const v of store.catalog.db.prepare("SELECT rowid, chunks FROM file_versions WHERE type = 'file'").all()) {
      const ids = v.chunks as Uint8Array
      for (let i = 0; i < ids.length; i += 32) if (inMissing.has(toHex(ids.subarray(i, i + 32)))) expected.add(String(v.rowid))
    }
    assert.equal(r.damaged.filesTotal, expected.size)
  })

  it('finds a catalog row that names a chunk the index lacks, and (with the data) a size that does not add up', async () => {
    const ghost = randomBytes(300)
    const ghostEntry: StagedEntry = { folder: 'home', path: new Uint8Array(Buffer.from('ghost.bin')), type: 'file', mode: 0o100644, mtimeNs: 1n, size: 300, chunks: chunkId(ghost) }
    const liar: StagedEntry = { folder: 'home', path: new Uint8Array(Buffer.from('liar.txt')), type: 'file', mode: 0o100644, mtimeNs: 1n, size: 999, chunks: chunkId(small) }
    const snap = store.commit(bravo, [], [ghostEntry, liar])
    store.packs.close()
    const quick = await store.verify(false)
    assert.equal(quick.ok, false)
    assert.deepEqual(quick.problemCounts, { 'chunk-missing': 1 })
    assert.equal(quick.problems[0].chunk, toHex(chunkId(ghost)))
    assert.deepEqual(quick.damaged.chunks, [toHex(chunkId(ghost))])
    assert.deepEqual(quick.damaged.files.map(f => [f.path, f.reason, f.snapshotId]), [['home/ghost.bin', 'chunk-missing', snap]])
    assert.deepEqual(quick.damaged.snapshots.map(x => x.id), [snap])

    const r = await store.verify(true)
    assert.deepEqual(r.problemCounts, { 'chunk-missing': 1, 'size-mismatch': 1 })
    assert.deepEqual(r.damaged.files.map(f => [f.path, f.reason, f.snapshotId]).sort(), [['home/ghost.bin', 'chunk-missing', snap], ['home/liar.txt', 'size-mismatch', snap]])
  })

  it('reports every damage at once, and lists no more than the limit', async () => {
    for (let i = 0; i < 12; i++) {
      const loc = store.location(big, i)
      flipByte(loc.file, loc.offset + 1)
    }
    const r = await verifyStore(store.catalog, store.packs.dir, { readData: true, limit: 5 })
    assert.equal(r.problemCounts['hash-mismatch'], 12)
    assert.equal(r.problemsTotal, 12)
    assert.equal(r.problems.length, 5)
    assert.equal(r.damaged.chunksTotal, 12)
    assert.equal(r.damaged.chunks.length, 5)
    assert.equal(r.damaged.filesTotal, 2)
  })

  it('runs in a worker thread with its own connection (as the manager runs it), with progress, and stops on abort', async () => {
    const loc = store.location(big, 11)
    flipByte(loc.file, loc.offset + 7)
    const progress: VerifyProgress[] = []
    const r = await runCatalogTask({ kind: 'verify', catalogFile: store.catalog.file, packsDir: store.packs.dir, readData: true }, { onProgress: p => { progress.push(p) } })
    assert.deepEqual(r.problemCounts, { 'hash-mismatch': 1 })
    assert.deepEqual(damagedFiles(r), [`alpha:home/docs/big.bin@${s.a1}[${s.a1}..${s.a2}/2]`])
    assert.ok(progress.some(p => p.phase === 'impact'))
    const direct = await store.verify(true)
    assert.deepEqual({ ...r, ms: 0 }, { ...direct, ms: 0 })

    const controller = new AbortController()
    const aborted = runCatalogTask({ kind: 'verify', catalogFile: store.catalog.file, packsDir: store.packs.dir, readData: true }, { signal: controller.signal })
    controller.abort(new Error('stop'))
    await assert.rejects(aborted, /stop/)
  })

  it('a pack the catalog does not know is noted, not a problem', async () => {
    const stray = join(store.packs.dir, 'zzzzzzzzz-00000000.pack')
    const fd = openSync(stray, 'w')
    writeSync(fd, readFileSync(join(store.packs.dir, store.packs.packNames()[0])).subarray(0, 8))
    closeSync(fd)
    const r = await store.verify(false)
    assert.equal(r.ok, true)
    assert.deepEqual(r.packs.unreferenced, ['zzzzzzzzz-00000000.pack'])
  })
})
