/**
 * The agent's local state (node:sqlite): what each tracked path looked like when it was last
 * staged, the staging sets and their entries, and where each spooled chunk lives.
 *
 * A set is 'staging' while its chunks are being written, 'sealed' once its entries and chunks
 * are committed here (it is then immutable and served to the manager), and 'acked' when the
 * manager said it is durable. A crash while 'staging' leaves a set that is thrown away on start.
 */
import { ensureColumn, openDatabase, statementCache, transaction, type DatabaseSync } from '../util/sqlite.js'
import type { EntryType, SetSummary, StagedEntry } from '../model/entry.js'
import { HoldfastError, type ProblemCode } from '../util/errors.js'

const SCHEMA = `
CREATE TABLE IF NOT EXISTS files (
  folder TEXT NOT NULL,
  path BLOB NOT NULL,
  parent BLOB NOT NULL,
  type TEXT NOT NULL,
  mode INTEGER NOT NULL,
  size INTEGER NOT NULL,
  mtime_ns TEXT NOT NULL,
  ctime_ns TEXT NOT NULL,
  ino TEXT NOT NULL,
  chunks BLOB NOT NULL,
  target BLOB,
  set_id INTEGER NOT NULL,
  acked INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (folder, path)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS files_by_parent ON files (folder, parent);
CREATE TABLE IF NOT EXISTS sets (
  -- AUTOINCREMENT: an abandoned set's id is never handed out again, so a set id names one
  -- set forever (the manager keys snapshots by it)
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  state TEXT NOT NULL CHECK (state IN ('staging', 'sealed', 'acked')),
  created_at INTEGER NOT NULL,
  sealed_at INTEGER,
  acked_at INTEGER,
  snapshot_id INTEGER,
  entries INTEGER NOT NULL DEFAULT 0,
  chunks INTEGER NOT NULL DEFAULT 0,
  raw_bytes INTEGER NOT NULL DEFAULT 0,
  stored_bytes INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS set_entries (
  set_id INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  folder TEXT NOT NULL,
  path BLOB NOT NULL,
  type TEXT NOT NULL,
  mode INTEGER NOT NULL,
  mtime_ns TEXT NOT NULL,
  size INTEGER NOT NULL,
  chunks BLOB NOT NULL,
  target BLOB,
  link_key TEXT,
  PRIMARY KEY (set_id, seq)
) WITHOUT ROWID;
-- One row per (chunk, set): every set keeps its own copy (its workers wrote one into its own
-- segments), so acknowledging one set never takes a chunk from another unacked set. A chunk
-- is served while any unacked set holds it.
CREATE TABLE IF NOT EXISTS spool_chunks (
  id BLOB NOT NULL,
  set_id INTEGER NOT NULL,
  segment TEXT NOT NULL,
  offset INTEGER NOT NULL,
  clen INTEGER NOT NULL,
  rawlen INTEGER NOT NULL,
  PRIMARY KEY (id, set_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS spool_chunks_by_set ON spool_chunks (set_id);
CREATE TABLE IF NOT EXISTS path_errors (
  folder TEXT NOT NULL,
  path BLOB NOT NULL,
  code TEXT NOT NULL,
  message TEXT NOT NULL,
  at INTEGER NOT NULL,
  PRIMARY KEY (folder, path)
) WITHOUT ROWID;
`

export interface TrackedFile {
  type: EntryType
  mode: number
  size: number
  mtimeNs: string
  ctimeNs: string
  ino: string
}

export interface SpoolLocation {
  segment: string
  offset: number
  clen: number
  rawlen: number
}

export interface NewSpoolChunk extends SpoolLocation {
  id: Uint8Array
}

/** A staged change: the entry that goes into the set, and the state to track for the path. */
export interface StagedChange {
  entry: StagedEntry
  /** Absent for deletions. */
  tracked?: TrackedFile
}

export class AgentStateDb {
  readonly db: DatabaseSync
  private readonly sql: ReturnType<typeof statementCache>

  constructor (file: string) {
    this.db = openDatabase(file)
    migrateSpoolChunks(this.db)
    this.db.exec(SCHEMA)
    ensureColumn(this.db, 'set_entries', 'link_key', 'TEXT') // added in 0.1.0 after the first schema
    this.sql = statementCache(this.db)
  }

  close (): void { this.db.close() }

  /**
   * Tracked children of one directory of a folder, keyed by name (latin1: one char per byte).
   * INDEXED BY: without statistics SQLite prefers the primary key's (folder) prefix, which
   * reads the whole folder for every directory (90 s instead of 0.9 s on corpus A).
   */
  trackedChildren (folder: string, dir: Uint8Array): Map<string, TrackedFile> {
    const stmt = this.sql('SELECT path, type, mode, size, mtime_ns, ctime_ns, ino FROM files INDEXED BY files_by_parent WHERE folder = ? AND parent = ?')
    // rows as arrays, not objects keyed by column name: one row per tracked path on every scan
    // (83,730 on corpus A), and the no-change scan is mostly this and lstat
    stmt.setReturnArrays(true)
    const rows = stmt.all(folder, dir) as unknown as unknown[][]
    const map = new Map<string, TrackedFile>()
    const skip = dir.byteLength === 0 ? 0 : dir.byteLength + 1
    for (const r of rows) {
      const path = r[0] as Uint8Array
      map.set(Buffer.from(path.buffer, path.byteOffset + skip, path.byteLength - skip).toString('latin1'), {
        type: r[1] as EntryType,
        mode: Number(r[2]),
        size: Number(r[3]),
        mtimeNs: r[4] as string,
        ctimeNs: r[5] as string,
        ino: r[6] as string
      })
    }
    return map
  }

  /** Every tracked path strictly below a directory (paths compare bytewise: '/' < '0'). */
  trackedDescendants (folder: string, dir: Uint8Array): Buffer[] {
    const lo = Buffer.concat([dir, Buffer.from('/')])
    const hi = Buffer.concat([dir, Buffer.from('0')])
    return this.sql('SELECT path FROM files WHERE folder = ? AND path > ? AND path < ?').all(folder, lo, hi).map(r => Buffer.from(r.path as Uint8Array))
  }

  trackedCountByFolder (): Map<string, number> {
    return new Map(this.sql('SELECT folder, count(*) AS n FROM files GROUP BY folder').all().map(r => [r.folder as string, Number(r.n)]))
  }

  trackedCount (): number {
    return Number(this.sql('SELECT count(*) AS n FROM files').get()?.n ?? 0)
  }

  /** Sets left 'staging' by a crash: their segments are garbage. Returns their ids. */
  abandonUnsealedSets (): number[] {
    const ids = this.sql("SELECT id FROM sets WHERE state = 'staging'").all().map(r => Number(r.id))
    transaction(this.db, () => {
      for (const id of ids) {
        this.sql('DELETE FROM spool_chunks WHERE set_id = ?').run(id)
        this.sql('DELETE FROM set_entries WHERE set_id = ?').run(id)
        this.sql('DELETE FROM sets WHERE id = ?').run(id)
      }
    })
    return ids
  }

  beginSet (now: number): number {
    const r = this.sql("INSERT INTO sets (state, created_at) VALUES ('staging', ?)").run(now)
    return Number(r.lastInsertRowid)
  }

  /** Drops an unsealed set that turned out empty. */
  discardSet (setId: number): void {
    transaction(this.db, () => {
      this.sql('DELETE FROM spool_chunks WHERE set_id = ?').run(setId)
      this.sql("DELETE FROM sets WHERE id = ? AND state = 'staging'").run(setId)
    })
  }

  /**
   * Seals a set in one transaction: its entries, the spool locations of its new chunks, and
   * the tracked state of every path it covers. Called only after the spool segments are fsynced.
   */
  sealSet (setId: number, changes: Iterable<StagedChange>, chunks: Iterable<NewSpoolChunk>, now: number): SetSummary {
    return transaction(this.db, () => {
      const insertEntry = this.sql('INSERT INTO set_entries (set_id, seq, folder, path, type, mode, mtime_ns, size, chunks, target, link_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)')
      const upsertFile = this.sql(`INSERT INTO files (folder, path, parent, type, mode, size, mtime_ns, ctime_ns, ino, chunks, target, set_id, acked)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)
        ON CONFLICT (folder, path) DO UPDATE SET type = excluded.type, mode = excluded.mode, size = excluded.size,
          mtime_ns = excluded.mtime_ns, ctime_ns = excluded.ctime_ns, ino = excluded.ino, chunks = excluded.chunks,
          target = excluded.target, set_id = excluded.set_id, acked = 0`)
      const deleteFile = this.sql('DELETE FROM files WHERE folder = ? AND path = ?')
      const clearError = this.sql('DELETE FROM path_errors WHERE folder = ? AND path = ?')
      const insertChunk = this.sql('INSERT OR IGNORE INTO spool_chunks (id, set_id, segment, offset, clen, rawlen) VALUES (?, ?, ?, ?, ?, ?)')
      let seq = 0
      let rawBytes = 0
      const distinct = new Set<string>()
      for (const { entry, tracked } of changes) {
        insertEntry.run(setId, seq++, entry.folder, entry.path, entry.type, entry.mode, entry.mtimeNs.toString(), entry.size, entry.chunks, entry.target ?? null, entry.linkKey ?? null)
        if (entry.type === 'file') rawBytes += entry.size
        for (let i = 0; i < entry.chunks.byteLength; i += 32) distinct.add(Buffer.from(entry.chunks.subarray(i, i + 32)).toString('latin1'))
        if (tracked === undefined) {
          deleteFile.run(entry.folder, entry.path)
        } else {
          upsertFile.run(entry.folder, entry.path, parentOf(entry.path), tracked.type, tracked.mode, tracked.size, tracked.mtimeNs, tracked.ctimeNs, tracked.ino, entry.chunks, entry.target ?? null, setId)
        }
        clearError.run(entry.folder, entry.path)
      }
      let storedBytes = 0
      for (const c of chunks) {
        const r = insertChunk.run(c.id, setId, c.segment, c.offset, c.clen, c.rawlen)
        if (Number(r.changes) > 0) storedBytes += c.clen
      }
      this.sql("UPDATE sets SET state = 'sealed', sealed_at = ?, entries = ?, chunks = ?, raw_bytes = ?, stored_bytes = ? WHERE id = ?")
        .run(now, seq, distinct.size, rawBytes, storedBytes, setId)
      return { id: setId, sealedAt: now, entries: seq, chunks: distinct.size, rawBytes, storedBytes }
    })
  }

  sealedSets (): SetSummary[] {
    return this.sql("SELECT id, sealed_at, entries, chunks, raw_bytes, stored_bytes FROM sets WHERE state = 'sealed' ORDER BY id").all().map(r => ({
      id: Number(r.id),
      sealedAt: Number(r.sealed_at),
      entries: Number(r.entries),
      chunks: Number(r.chunks),
      rawBytes: Number(r.raw_bytes),
      storedBytes: Number(r.stored_bytes)
    }))
  }

  setState (setId: number): 'staging' | 'sealed' | 'acked' | undefined {
    return this.sql('SELECT state FROM sets WHERE id = ?').get(setId)?.state as 'staging' | 'sealed' | 'acked' | undefined
  }

  * setEntries (setId: number): Generator<StagedEntry> {
    const stmt = this.db.prepare('SELECT folder, path, type, mode, mtime_ns, size, chunks, target, link_key FROM set_entries WHERE set_id = ? ORDER BY seq')
    // rows as arrays: every entry of every set is read once to serve the manifest
    stmt.setReturnArrays(true)
    for (const r of stmt.iterate(setId) as unknown as Iterable<unknown[]>) {
      const entry: StagedEntry = {
        folder: r[0] as string,
        path: r[1] as Uint8Array,
        type: r[2] as EntryType,
        mode: Number(r[3]),
        mtimeNs: BigInt(r[4] as string),
        size: Number(r[5]),
        chunks: r[6] as Uint8Array
      }
      if (r[7] !== null) entry.target = r[7] as Uint8Array
      if (r[8] !== null) entry.linkKey = r[8] as string
      yield entry
    }
  }

  spoolLocation (id: Uint8Array): SpoolLocation | undefined {
    const r = this.sql('SELECT segment, offset, clen, rawlen FROM spool_chunks WHERE id = ?').get(id)
    if (r === undefined) return undefined
    return { segment: r.segment as string, offset: Number(r.offset), clen: Number(r.clen), rawlen: Number(r.rawlen) }
  }

  /**
   * Spool locations of a batch of chunk ids (a fetch request: up to FETCH_LIMITS.maxIdsPerRequest),
   * by position in `ids` (undefined: no row). One statement, so one WAL read transaction for
   * the batch: a `.get()` per id outside a transaction opened one each (1.7 s of a pull of
   * corpus A). Where a chunk has rows in several unacked sets the lowest set id wins, as with
   * spoolLocation (the primary key's order).
   */
  spoolLocations (ids: Uint8Array[]): Array<SpoolLocation | undefined> {
    const out = new Array<SpoolLocation | undefined>(ids.length).fill(undefined)
    if (ids.length === 0) return out
    const stmt = this.sql('SELECT k.key, s.segment, s.offset, s.clen, s.rawlen FROM json_each(?) AS k JOIN spool_chunks AS s ON s.id = unhex(k.value) ORDER BY k.key, s.set_id')
    // arrays, not objects: this runs for every chunk of a pull
    stmt.setReturnArrays(true)
    const rows = stmt.all(JSON.stringify(ids.map(id => Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString('hex')))) as unknown as unknown[][]
    for (const r of rows) {
      const i = Number(r[0])
      if (out[i] !== undefined) continue
      out[i] = { segment: r[1] as string, offset: Number(r[2]), clen: Number(r[3]), rawlen: Number(r[4]) }
    }
    return out
  }

  /** Marks a sealed set acknowledged; returns the segments no unacked set needs any more. */
  acknowledge (setId: number, snapshotId: number, now: number): string[] {
    return transaction(this.db, () => {
      // checked in the transaction too: a set being staged must never lose its spool rows
      const state = this.setState(setId)
      if (state !== 'sealed') throw new HoldfastError('ACK_REFUSED', `set ${setId} is ${state ?? 'unknown'}, not sealed`, { setId, snapshotId })
      const segments = this.segmentsOnlyOf(setId)
      this.sql('UPDATE files SET acked = 1 WHERE set_id = ?').run(setId)
      this.sql('DELETE FROM spool_chunks WHERE set_id = ?').run(setId)
      this.sql('DELETE FROM set_entries WHERE set_id = ?').run(setId)
      this.sql("UPDATE sets SET state = 'acked', acked_at = ?, snapshot_id = ? WHERE id = ?").run(now, snapshotId, setId)
      return segments
    })
  }

  /** Segments a set's rows point at that no other set's rows point at. */
  private segmentsOnlyOf (setId: number): string[] {
    return this.sql('SELECT DISTINCT segment FROM spool_chunks WHERE set_id = ? AND segment NOT IN (SELECT segment FROM spool_chunks WHERE set_id <> ?)')
      .all(setId, setId).map(r => r.segment as string)
  }

  /**
   * Sealed sets that cannot be served whole: an entry names a chunk no row of that set holds,
   * or the row's segment is not among `segmentsPresent` (lost from the spool: deleted by
   * hand, or by a version that freed a chunk another set still needed). Reads every sealed
   * entry, so it runs at start and when a fetch found a chunk missing, not per chunk.
   */
  setsMissingChunks (segmentsPresent: Set<string>): number[] {
    const broken: number[] = []
    const entries = this.db.prepare('SELECT chunks FROM set_entries WHERE set_id = ?')
    const held = this.sql('SELECT segment FROM spool_chunks WHERE id = ? AND set_id = ?')
    for (const set of this.sealedSets()) {
      let ok = true
      for (const r of entries.iterate(set.id)) {
        const chunks = r.chunks as Uint8Array
        for (let i = 0; ok && i < chunks.byteLength; i += 32) {
          const row = held.get(chunks.subarray(i, i + 32), set.id)
          ok = row !== undefined && segmentsPresent.has(row.segment as string)
        }
        if (!ok) break
      }
      if (!ok) broken.push(set.id)
    }
    return broken
  }

  /**
   * Drops a sealed set that can never be served whole and makes the next scan stage its paths
   * again from the source: a path whose newest staged state is in this set is marked changed
   * (mtime '-1' never matches a stat), and a deletion gets a placeholder row (a 'dir', so
   * that anything recorded under it goes too) that the scan, not finding the path, records as
   * deleted again. Each path is reported until it is staged again. Returns the paths marked
   * and the segments nothing else needs.
   */
  restageSet (setId: number, reason: string, now: number): { paths: number, segments: string[] } {
    return transaction(this.db, () => {
      if (this.setState(setId) !== 'sealed') return { paths: 0, segments: [] }
      const segments = this.segmentsOnlyOf(setId)
      const owned = this.sql('SELECT 1 FROM files WHERE folder = ? AND path = ? AND set_id = ?')
      const present = this.sql('SELECT 1 FROM files WHERE folder = ? AND path = ?')
      const markChanged = this.sql("UPDATE files SET mtime_ns = '-1', acked = 0 WHERE folder = ? AND path = ?")
      const placeholder = this.sql(`INSERT INTO files (folder, path, parent, type, mode, size, mtime_ns, ctime_ns, ino, chunks, target, set_id, acked)
        VALUES (?, ?, ?, 'dir', 0, 0, '-1', '-1', '-1', X'', NULL, ?, 0)`)
      const report = this.sql('INSERT OR REPLACE INTO path_errors (folder, path, code, message, at) VALUES (?, ?, ?, ?, ?)')
      let paths = 0
      for (const e of this.setEntries(setId)) {
        if (e.type === 'deleted') {
          if (present.get(e.folder, e.path) !== undefined) continue // a later set staged it again
          placeholder.run(e.folder, e.path, parentOf(e.path), setId)
        } else {
          if (owned.get(e.folder, e.path, setId) === undefined) continue // a later set holds a newer state
          markChanged.run(e.folder, e.path)
        }
        report.run(e.folder, e.path, 'SET_RESTAGED', `staged set ${setId} lost a chunk from the spool (${reason}); staging this path again from the source`, now)
        paths++
      }
      this.sql('DELETE FROM spool_chunks WHERE set_id = ?').run(setId)
      this.sql('DELETE FROM set_entries WHERE set_id = ?').run(setId)
      this.sql('DELETE FROM sets WHERE id = ?').run(setId)
      return { paths, segments }
    })
  }

  /** Segment names some spooled chunk still points at (everything else in the spool is garbage). */
  liveSegments (): Set<string> {
    return new Set(this.sql('SELECT DISTINCT segment FROM spool_chunks').all().map(r => r.segment as string))
  }

  recordPathError (folder: string, path: Uint8Array, code: ProblemCode, message: string, now: number): void {
    this.sql('INSERT OR REPLACE INTO path_errors (folder, path, code, message, at) VALUES (?, ?, ?, ?, ?)').run(folder, path, code, message, now)
  }

  pathErrors (limit = 100): Array<{ folder: string, path: Uint8Array, code: string, message: string, at: number }> {
    return this.sql('SELECT folder, path, code, message, at FROM path_errors ORDER BY at DESC LIMIT ?').all(limit).map(r => ({
      folder: r.folder as string, path: r.path as Uint8Array, code: r.code as string, message: r.message as string, at: Number(r.at)
    }))
  }

  lastAck (): { setId: number, snapshotId: number, at: number } | undefined {
    const r = this.sql("SELECT id, snapshot_id, acked_at FROM sets WHERE state = 'acked' ORDER BY acked_at DESC LIMIT 1").get()
    return r === undefined ? undefined : { setId: Number(r.id), snapshotId: Number(r.snapshot_id), at: Number(r.acked_at) }
  }

  spoolBytes (): number {
    return Number(this.sql('SELECT coalesce(sum(clen), 0) AS n FROM spool_chunks').get()?.n ?? 0)
  }

  unackedFiles (): number {
    return Number(this.sql('SELECT count(*) AS n FROM files WHERE acked = 0').get()?.n ?? 0)
  }
}

/**
 * Before 0.1.1 spool_chunks held one row per chunk id (INSERT OR IGNORE), so a chunk staged
 * again by a later set belonged to the earlier set and went with that set's ack. Rebuilds
 * the table keyed by (id, set_id); sets already missing a chunk are found at start
 * (setsMissingChunks) and staged again.
 */
function migrateSpoolChunks (db: DatabaseSync): void {
  const columns = db.prepare('PRAGMA table_info(spool_chunks)').all()
  const keyed = columns.filter(c => Number(c.pk) > 0).map(c => c.name as string)
  if (columns.length === 0 || keyed.includes('set_id')) return
  transaction(db, () => {
    db.exec(`CREATE TABLE spool_chunks_v2 (
      id BLOB NOT NULL, set_id INTEGER NOT NULL, segment TEXT NOT NULL, offset INTEGER NOT NULL,
      clen INTEGER NOT NULL, rawlen INTEGER NOT NULL, PRIMARY KEY (id, set_id)) WITHOUT ROWID`)
    db.exec('INSERT INTO spool_chunks_v2 SELECT id, set_id, segment, offset, clen, rawlen FROM spool_chunks')
    db.exec('DROP TABLE spool_chunks')
    db.exec('ALTER TABLE spool_chunks_v2 RENAME TO spool_chunks')
  })
}

/** The directory part of a folder-relative path ('' for a top-level name). */
export function parentOf (path: Uint8Array): Uint8Array {
  const i = path.lastIndexOf(0x2f)
  return i < 0 ? new Uint8Array(0) : path.subarray(0, i)
}
