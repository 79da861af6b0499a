/**
 * The catalog's layout (issue 12 item 7): chunks name their pack by a small integer id, the
 * WAL is truncated once a set is committed, mtimes are integers, and a catalog written in the
 * version 0 layout (pack file names on every chunk row) or the version 1 layout (mtimes as
 * decimal text, clen and rawlen in chunks_by_pack) is migrated when opened and still
 * restores byte for byte (mtimes to the nanosecond), keeps its owners and passes verify.
 */
import { strict as assert } from 'node:assert'
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { PackStore } from '../../src/store/core/packs.js'
import { Catalog, CATALOG_VERSION, type NewChunk } from '../../src/store/core/catalog.js'
import { chunkId, compressChunk } from '../../src/codec/chunk-codec.js'
import { toHex, type StagedEntry } from '../../src/model/entry.js'
import { restoreSnapshot } from '../../src/store/restore.js'
import { verifyStore } from '../../src/store/maintenance/verify.js'
import { seededBytes } from '../support/trees.js'

const CHUNK = 4096

/** The version 0 layout, as the code before CATALOG_VERSION 1 made it (with every later ALTER). */
const V0_SCHEMA = `
CREATE TABLE endpoints (id INTEGER PRIMARY KEY, peer_id TEXT NOT NULL UNIQUE, name TEXT NOT NULL DEFAULT '', first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, last_backup INTEGER);
CREATE TABLE snapshots (id INTEGER PRIMARY KEY, endpoint_id INTEGER NOT NULL REFERENCES endpoints (id), set_id INTEGER NOT NULL, sealed_at INTEGER NOT NULL,
  committed_at INTEGER NOT NULL, entries INTEGER NOT NULL, raw_bytes INTEGER NOT NULL, new_bytes INTEGER NOT NULL, UNIQUE (endpoint_id, set_id));
CREATE TABLE file_versions (snapshot_id INTEGER NOT NULL REFERENCES snapshots (id), endpoint_id INTEGER NOT NULL, folder TEXT NOT NULL, path BLOB NOT NULL,
  type TEXT NOT NULL, mode INTEGER NOT NULL, mtime_ns TEXT NOT NULL, size INTEGER NOT NULL, chunks BLOB NOT NULL, target BLOB, link_key TEXT);
CREATE INDEX file_versions_by_path ON file_versions (endpoint_id, folder, path, snapshot_id);
CREATE INDEX file_versions_by_snapshot ON file_versions (snapshot_id);
CREATE TABLE chunks (id BLOB PRIMARY KEY, pack TEXT NOT NULL, offset INTEGER NOT NULL, clen INTEGER NOT NULL, rawlen INTEGER NOT NULL, sent_by INTEGER) WITHOUT ROWID;
CREATE INDEX snapshots_by_endpoint ON snapshots (endpoint_id, committed_at);
CREATE INDEX chunks_by_pack ON chunks (pack, offset, id, clen, rawlen);
CREATE TABLE retention_policies (endpoint_id INTEGER PRIMARY KEY, rules INTEGER NOT NULL DEFAULT 0, keep_last INTEGER, keep_hourly INTEGER, keep_daily INTEGER,
  keep_weekly INTEGER, keep_monthly INTEGER, keep_yearly INTEGER, min_age_ms INTEGER, hold INTEGER NOT NULL DEFAULT 0, updated_at INTEGER NOT NULL);
CREATE TABLE pruned_snapshots (id INTEGER PRIMARY KEY, endpoint_id INTEGER NOT NULL, set_id INTEGER NOT NULL, sealed_at INTEGER NOT NULL, committed_at INTEGER NOT NULL,
  entries INTEGER NOT NULL, raw_bytes INTEGER NOT NULL, new_bytes INTEGER NOT NULL, pruned_at INTEGER NOT NULL, merged_into INTEGER NOT NULL,
  versions_moved INTEGER NOT NULL, versions_dropped INTEGER NOT NULL);
CREATE INDEX pruned_snapshots_by_endpoint ON pruned_snapshots (endpoint_id, set_id);
CREATE TABLE chunk_owners (chunk BLOB NOT NULL, endpoint_id INTEGER NOT NULL, PRIMARY KEY (chunk, endpoint_id)) WITHOUT ROWID;
CREATE TRIGGER chunk_owners_follow_chunks AFTER DELETE ON chunks BEGIN DELETE FROM chunk_owners WHERE chunk = old.id; END;
`

/** The version 1 layout, as the code before CATALOG_VERSION 2 made it: version 0 with chunks naming packs.id. */
const V1_SCHEMA = V0_SCHEMA
  .replace('pack TEXT NOT NULL', 'pack INTEGER NOT NULL')
  .concat('CREATE TABLE packs (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE);\nPRAGMA user_version = 1;\n')

function fileEntry (path: string, content: Buffer): { entry: StagedEntry, parts: Buffer[] } {
  const parts: Buffer[] = []
  for (let i = 0; i < content.length; i += CHUNK) parts.push(content.subarray(i, i + CHUNK))
  return {
    parts,
    entry: { folder: 'home', path: new Uint8Array(Buffer.from(path)), type: 'file', mode: 0o100644, mtimeNs: 1_700_000_000_123_456_789n, size: content.length, chunks: new Uint8Array(Buffer.concat(parts.map(p => chunkId(p)))) }
  }
}

describe('integration: catalog layout', function () {
  this.timeout(60_000)
  let dir: string
  let packs: PackStore | undefined
  let catalog: Catalog | undefined

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'holdfast-catalog-layout-'))
    // small packs, so the chunks span several
    packs = new PackStore(join(dir, 'packs'), 64 * 1024)
  })
  afterEach(() => {
    try { catalog?.close() } catch {}
    try { packs?.close() } catch {}
    catalog = undefined
    packs = undefined
    rmSync(dir, { recursive: true, force: true })
  })

  it('a version 0 catalog is migrated when opened: restore byte-exact, owners kept, verify clean', async () => {
    await migratesAndRestores(0)
  })

  it('a version 1 catalog is migrated when opened: restore byte-exact, owners kept, verify clean', async () => {
    await migratesAndRestores(1)
  })

  async function migratesAndRestores (version: 0 | 1): Promise<void> {
    const p = packs as PackStore
    const files = { 'a.bin': seededBytes('layout-a', 200_000), 'b.bin': seededBytes('layout-b', 90_000), 'shared.bin': seededBytes('layout-shared', 30_000) }
    // endpoint 1 backs up all three, endpoint 2 only shared.bin (stored by 1, owned by both)
    const raw = new DatabaseSync(join(dir, 'catalog.db'))
    raw.exec('PRAGMA journal_mode = WAL')
    raw.exec(version === 0 ? V0_SCHEMA : V1_SCHEMA)
    const packRef = (name: string): string | number => {
      if (version === 0) return name
      raw.prepare('INSERT OR IGNORE INTO packs (name) VALUES (?)').run(name)
      return Number(raw.prepare('SELECT id FROM packs WHERE name = ?').get(name)?.id)
    }
    raw.exec("INSERT INTO endpoints (id, peer_id, name, first_seen, last_seen) VALUES (1, '12D3KooWEndpointOne', 'one', 1, 1), (2, '12D3KooWEndpointTwo', 'two', 1, 1)")
    raw.exec('INSERT INTO snapshots (id, endpoint_id, set_id, sealed_at, committed_at, entries, raw_bytes, new_bytes) VALUES (1, 1, 1, 1, 1000, 3, 0, 0), (2, 2, 1, 1, 2000, 1, 0, 0)')
    const insertChunk = raw.prepare('INSERT OR IGNORE INTO chunks (id, pack, offset, clen, rawlen, sent_by) VALUES (?, ?, ?, ?, ?, ?)')
    const insertVersion = raw.prepare('INSERT INTO file_versions (snapshot_id, endpoint_id, folder, path, type, mode, mtime_ns, size, chunks) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)')
    for (const [name, content] of Object.entries(files)) {
      const { entry, parts } = fileEntry(name, content)
      for (const part of parts) {
        const id = chunkId(part)
        const loc = p.append(id, part.length, compressChunk(part))
        insertChunk.run(id, packRef(loc.pack), loc.offset, loc.clen, part.length, 1)
      }
      insertVersion.run(1, 1, entry.folder, entry.path, entry.type, entry.mode, entry.mtimeNs.toString(), entry.size, entry.chunks)
      if (name === 'shared.bin') {
        insertVersion.run(2, 2, entry.folder, entry.path, entry.type, entry.mode, entry.mtimeNs.toString(), entry.size, entry.chunks)
        for (const part of parts) raw.prepare('INSERT INTO chunk_owners (chunk, endpoint_id) VALUES (?, 2)').run(chunkId(part))
      }
    }
    p.sync()
    const packNames = new Set(raw.prepare(version === 0 ? 'SELECT DISTINCT pack FROM chunks' : 'SELECT DISTINCT p.name AS pack FROM chunks c JOIN packs p ON p.id = c.pack').all().map(r => r.pack as string))
    assert.ok(packNames.size >= 3, `the chunks span several packs (${packNames.size})`)
    raw.close()

    catalog = new Catalog(join(dir, 'catalog.db'))
    const c = catalog
    const check = new DatabaseSync(join(dir, 'catalog.db'), { readOnly: true })
    try {
      assert.equal(Number(check.prepare('PRAGMA user_version').get()?.user_version), CATALOG_VERSION)
      assert.equal(check.prepare('PRAGMA table_info(chunks)').all().find(r => r.name === 'pack')?.type, 'INTEGER')
      assert.deepEqual(new Set(check.prepare('SELECT p.name FROM chunks c JOIN packs p ON p.id = c.pack').all().map(r => r.name as string)), packNames)
      assert.equal(check.prepare('PRAGMA table_info(file_versions)').all().find(r => r.name === 'mtime_ns')?.type, 'INTEGER')
      assert.deepEqual(check.prepare('SELECT DISTINCT typeof(mtime_ns) AS t FROM file_versions').all().map(r => r.t), ['integer'])
      assert.deepEqual(check.prepare('PRAGMA index_info(chunks_by_pack)').all().map(r => r.name), ['pack', 'offset', 'id'])
    } finally {
      check.close()
    }
    // where each chunk is, by name, as before
    for (const part of fileEntry('a.bin', files['a.bin']).parts) assert.ok(packNames.has(c.chunkLocation(chunkId(part))?.pack ?? ''))
    // ownership kept: 2 owns shared.bin's chunks (chunk_owners), not a.bin's; 1 owns both
    const sharedIds = fileEntry('shared.bin', files['shared.bin']).parts.map(x => chunkId(x))
    const aIds = fileEntry('a.bin', files['a.bin']).parts.map(x => chunkId(x))
    assert.deepEqual(c.unownedChunks(2, [...sharedIds, ...aIds]).map(toHex), aIds.map(toHex))
    assert.deepEqual(c.unownedChunks(1, [...sharedIds, ...aIds]), [])
    // the mtime kept to the nanosecond (beyond a double's 2^53)
    assert.deepEqual([...c.treeAt(1, 1)].map(v => v.mtimeNs), Object.keys(files).map(() => 1_700_000_000_123_456_789n))

    for (const [endpointId, snapshotId, names] of [[1, 1, Object.keys(files)], [2, 2, ['shared.bin']]] as const) {
      const out = join(dir, `out-${endpointId}`)
      const summary = await restoreSnapshot(c, p, { endpointId, snapshotId, target: out })
      assert.deepEqual(summary.errors, [])
      for (const name of names) assert.ok(readFileSync(join(out, 'home', name)).equals(files[name as keyof typeof files]), `${name} restored byte for byte`)
    }
    const report = await verifyStore(c, p.dir, { readData: true, workers: 1 })
    assert.equal(report.problemsTotal, 0, JSON.stringify(report.problems))
    assert.equal(report.chunks.checked, aIds.length + sharedIds.length + fileEntry('b.bin', files['b.bin']).parts.length)

    // a set committed after the migration goes to the new layout and restores too
    const more = seededBytes('layout-more', 70_000)
    const { entry, parts } = fileEntry('more.bin', more)
    const chunks: NewChunk[] = parts.map(part => ({ id: chunkId(part), rawlen: part.length, ...p.append(chunkId(part), part.length, compressChunk(part)) }))
    p.sync()
    const snap = c.commitSnapshot({ endpointId: 2, setId: 2, sealedAt: 2, committedAt: 3000, entries: [entry], chunks })
    c.close()
    catalog = new Catalog(join(dir, 'catalog.db')) // opening a migrated catalog again changes nothing
    const out = join(dir, 'out-more')
    const summary = await restoreSnapshot(catalog, p, { endpointId: 2, snapshotId: snap, target: out })
    assert.deepEqual(summary.errors, [])
    assert.ok(readFileSync(join(out, 'home', 'more.bin')).equals(more))
    assert.ok(readFileSync(join(out, 'home', 'shared.bin')).equals(files['shared.bin']))
  }

  it('a committed set leaves no WAL behind, and a chunk row is small', () => {
    catalog = new Catalog(join(dir, 'catalog.db'))
    const c = catalog
    const p = packs as PackStore
    const e = c.touchEndpoint('12D3KooWEndpointOne', 'one', 1)
    const entries: StagedEntry[] = []
    const chunks: NewChunk[] = []
    for (let i = 0; i < 20; i++) {
      const { entry, parts } = fileEntry(`f${i}.bin`, seededBytes(`wal-${i}`, 50 * CHUNK))
      entries.push(entry)
      for (const part of parts) chunks.push({ id: chunkId(part), rawlen: part.length, ...p.append(chunkId(part), part.length, compressChunk(part)) })
    }
    p.sync()
    c.commitSnapshot({ endpointId: e, setId: 1, sealedAt: 1, committedAt: 1, entries, chunks })
    const wal = join(dir, 'catalog.db-wal')
    // 1,000 chunk rows and 20 versions: about 200 KB went through the WAL
    assert.equal(existsSync(wal) ? statSync(wal).size : 0, 0, 'the WAL is truncated after the commit')
    // a pack file name (24 characters) on every row and index entry made this 138 B; clen
    // and rawlen in chunks_by_pack too made it 91 B
    const bytes = Number(c.db.prepare("SELECT sum(payload) AS n FROM dbstat WHERE name IN ('chunks', 'chunks_by_pack')").get()?.n)
    assert.ok(bytes / chunks.length < 88, `${(bytes / chunks.length).toFixed(1)} B of index per chunk`)
    // an mtime is an 8-byte integer, not 19 digits of text
    assert.deepEqual(c.db.prepare('SELECT DISTINCT typeof(mtime_ns) AS t FROM file_versions').all().map(r => r.t), ['integer'])
    assert.deepEqual([...c.treeAt(e, 1)].map(v => v.mtimeNs), entries.map(() => 1_700_000_000_123_456_789n))
  })
})
