/**
 * The manager's catalog (node:sqlite): endpoints, snapshots, file versions and the chunk
 * index. A snapshot is a committed staging set; an endpoint's tree at snapshot S is the fold
 * of its file versions up to S (for each path, the newest version at or before S, unless that
 * version is a deletion). The store never imports the network.
 */
import { BUSY_TIMEOUT_MS, ensureColumn, openDatabase, statementCache, transaction, type DatabaseSync } from '../../util/sqlite.js'
import { CHUNK_ID_BYTES, toHex, type EntryType, type StagedEntry } from '../../model/entry.js'
import type { PackLocation } from './packs.js'
import { HoldfastError } from '../../util/errors.js'
import { RULE_KEYS, type RetentionPolicyRow, type RetentionRules } from '../maintenance/retention.js'
import { CHUNK_REF, ensureSeq, maxChunksPerVersion } from './chunk-refs.js'
import { packIdFor } from './pack-ids.js'

const RULE_COLUMNS: Record<typeof RULE_KEYS[number], string> = {
  keepLast: 'keep_last', keepHourly: 'keep_hourly', keepDaily: 'keep_daily', keepWeekly: 'keep_weekly', keepMonthly: 'keep_monthly', keepYearly: 'keep_yearly'
}

/** chunks' columns as of catalog version 1 (pack by packs.id): the schema and the migration's rebuild share them. */
const CHUNKS_COLUMNS = `(
  id BLOB PRIMARY KEY,
  pack INTEGER NOT NULL,
  offset INTEGER NOT NULL,
  clen INTEGER NOT NULL,
  rawlen INTEGER NOT NULL,
  sent_by INTEGER
) WITHOUT ROWID`

/** file_versions' columns as of catalog version 2: the schema and the migration's rebuild share them. */
const FILE_VERSIONS_COLUMNS = `(
  snapshot_id INTEGER NOT NULL REFERENCES snapshots (id),
  endpoint_id INTEGER NOT NULL,
  folder TEXT NOT NULL,
  path BLOB NOT NULL,
  type TEXT NOT NULL,
  mode INTEGER NOT NULL,
  mtime_ns INTEGER NOT NULL,
  size INTEGER NOT NULL,
  chunks BLOB NOT NULL,
  target BLOB,
  link_key TEXT
)`

const SCHEMA = `
CREATE TABLE IF NOT EXISTS endpoints (
  id INTEGER PRIMARY KEY,
  peer_id TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL DEFAULT '',
  first_seen INTEGER NOT NULL,
  last_seen INTEGER NOT NULL,
  last_backup INTEGER
);
CREATE TABLE IF NOT EXISTS snapshots (
  id INTEGER PRIMARY KEY,
  endpoint_id INTEGER NOT NULL REFERENCES endpoints (id),
  set_id INTEGER NOT NULL,
  sealed_at INTEGER NOT NULL,
  committed_at INTEGER NOT NULL,
  entries INTEGER NOT NULL,
  raw_bytes INTEGER NOT NULL,
  new_bytes INTEGER NOT NULL,
  UNIQUE (endpoint_id, set_id)
);
CREATE TABLE IF NOT EXISTS file_versions ${FILE_VERSIONS_COLUMNS};
CREATE INDEX IF NOT EXISTS file_versions_by_path ON file_versions (endpoint_id, folder, path, snapshot_id);
CREATE INDEX IF NOT EXISTS file_versions_by_snapshot ON file_versions (snapshot_id);
-- Pack files by a small integer: a chunk row names its pack in one or two bytes instead of a
-- 24-character file name (twice: in the row and in chunks_by_pack), 3.6 MB of corpus A's
-- 78k chunks. AUTOINCREMENT: an id is never reused, so a cached id -> name stays true.
CREATE TABLE IF NOT EXISTS packs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS chunks ${CHUNKS_COLUMNS};
-- Added with browse and verify (IF NOT EXISTS: an older catalog gains them when it is opened).
-- A point in time per endpoint (--at), and an endpoint's snapshots in order.
CREATE INDEX IF NOT EXISTS snapshots_by_endpoint ON snapshots (endpoint_id, committed_at);
-- A pack's chunks in file order (id breaks ties, for paging). Not covering clen and rawlen:
-- verify reads them from the row (one seek per chunk, beside reading its data) rather than
-- every catalog carrying them twice (0.5 MB of corpus A's catalog).
CREATE INDEX IF NOT EXISTS chunks_by_pack ON chunks (pack, offset, id);
`

/**
 * Added with retention and prune (IF NOT EXISTS: an older catalog gains them when opened).
 * - retention_policies: endpoint_id 0 is the policy for every endpoint. rules = 1 when keep
 *   rules are set at this scope (a NULL count is 0); an endpoint's rules replace the global
 *   ones as a whole. hold = 1 suspends every deletion (src/store/retention.ts).
 * - pruned_snapshots: what prune removed, and the kept snapshot its surviving file versions
 *   were moved to (src/store/prune.ts).
 */
const RETENTION_SCHEMA = `
CREATE TABLE IF NOT EXISTS retention_policies (
  endpoint_id INTEGER PRIMARY KEY,
  rules INTEGER NOT NULL DEFAULT 0,
  keep_last INTEGER,
  keep_hourly INTEGER,
  keep_daily INTEGER,
  keep_weekly INTEGER,
  keep_monthly INTEGER,
  keep_yearly INTEGER,
  min_age_ms INTEGER,
  hold INTEGER NOT NULL DEFAULT 0,
  updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS pruned_snapshots (
  id INTEGER PRIMARY KEY,
  endpoint_id INTEGER NOT NULL,
  set_id INTEGER NOT NULL,
  sealed_at INTEGER NOT NULL,
  committed_at INTEGER NOT NULL,
  entries INTEGER NOT NULL,
  raw_bytes INTEGER NOT NULL,
  new_bytes INTEGER NOT NULL,
  pruned_at INTEGER NOT NULL,
  merged_into INTEGER NOT NULL,
  versions_moved INTEGER NOT NULL,
  versions_dropped INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS pruned_snapshots_by_endpoint ON pruned_snapshots (endpoint_id, set_id);
`

/**
 * Chunk ownership (docs/security.md, "Ownership before dedup"): which endpoint has sent (and so
 * holds) which chunk. Dedup of storage is global, but an endpoint may only reference, and only
 * be restored, chunks it owns; a chunk it does not own is fetched from it like any new chunk,
 * whether the store holds it or not. The endpoint that stored a chunk is `chunks.sent_by`
 * (in the row written anyway, so a first backup pays no extra insert); chunk_owners holds the
 * others that sent it since, and every owner of a chunk stored before ownership existed.
 * Keyed chunk first so that prune's deletion of a chunk (the trigger) and the per-endpoint
 * lookup share the one index.
 */
const OWNERSHIP_SCHEMA = `
CREATE TABLE chunk_owners (
  chunk BLOB NOT NULL,
  endpoint_id INTEGER NOT NULL,
  PRIMARY KEY (chunk, endpoint_id)
) WITHOUT ROWID;
CREATE TRIGGER chunk_owners_follow_chunks AFTER DELETE ON chunks BEGIN
  DELETE FROM chunk_owners WHERE chunk = old.id;
END;
`

/**
 * The catalog's layout version (`PRAGMA user_version`). 0: chunks name their pack by file
 * name (TEXT); 1: by packs.id; 2: file_versions.mtime_ns is an INTEGER (not its decimal
 * text) and chunks_by_pack no longer covers clen and rawlen. An older catalog is migrated
 * when it is opened.
 */
export const CATALOG_VERSION = 2

/** file_versions as of version 2; the migration rebuilds the table into it. */
const FILE_VERSIONS_V2 = `CREATE TABLE file_versions_v2 ${FILE_VERSIONS_COLUMNS}`

/** Whether endpoint ?1 owns stored chunk `c`. */
const OWNED_BY = '(c.sent_by = ?1 OR EXISTS (SELECT 1 FROM chunk_owners o WHERE o.chunk = c.id AND o.endpoint_id = ?1))'

export interface EndpointRow {
  id: number
  peerId: string
  name: string
  firstSeen: number
  lastSeen: number
  lastBackup?: number
}

export interface SnapshotRow {
  id: number
  endpointId: number
  peerId: string
  endpointName: string
  setId: number
  sealedAt: number
  committedAt: number
  entries: number
  rawBytes: number
  newBytes: number
}

export interface VersionRow extends StagedEntry {
  snapshotId: number
}

export interface NewChunk extends PackLocation {
  id: Uint8Array
  rawlen: number
}

export class Catalog {
  readonly db: DatabaseSync
  private readonly sql: ReturnType<typeof statementCache>
  /** Pack names by id, filled from committed rows only (ids are never reused). */
  private readonly packNames = new Map<number, string>()
  /** Pack ids by name, filled after a commit that made or used them. */
  private readonly packIds = new Map<string, number>()

  constructor (readonly file: string) {
    this.db = openDatabase(file)
    this.db.exec(SCHEMA)
    this.db.exec(RETENTION_SCHEMA)
    ensureColumn(this.db, 'file_versions', 'link_key', 'TEXT') // added in 0.1.0 after the first schema
    this.addOwnership()
    this.migrate()
    this.sql = statementCache(this.db)
  }

  /**
   * Migrates an older layout to CATALOG_VERSION, in one transaction whatever it starts from:
   * SQLite cannot change a column's type in place, so the tables concerned are rebuilt, and a
   * crash leaves the old layout whole (the next open migrates again).
   * - 0 -> 1: chunks name their pack by packs.id instead of the file name;
   * - 1 -> 2: file_versions.mtime_ns from decimal TEXT to INTEGER (0.9 MB of corpus A's 84k
   *   versions), chunks_by_pack without clen and rawlen.
   */
  private migrate (): void {
    const packType = this.db.prepare('PRAGMA table_info(chunks)').all().find(r => r.name === 'pack')?.type
    const mtimeType = this.db.prepare('PRAGMA table_info(file_versions)').all().find(r => r.name === 'mtime_ns')?.type
    const byPackColumns = this.db.prepare('PRAGMA index_info(chunks_by_pack)').all().length
    if (packType !== 'TEXT' && mtimeType !== 'TEXT' && byPackColumns === 3) {
      if (Number(this.db.prepare('PRAGMA user_version').get()?.user_version) < CATALOG_VERSION) this.db.exec(`PRAGMA user_version = ${CATALOG_VERSION}`)
      return
    }
    transaction(this.db, () => {
      if (packType === 'TEXT') {
        this.db.exec(`INSERT OR IGNORE INTO packs (name) SELECT DISTINCT pack FROM chunks ORDER BY pack;
          CREATE TABLE chunks_v1 ${CHUNKS_COLUMNS};
          INSERT INTO chunks_v1 (id, pack, offset, clen, rawlen, sent_by)
            SELECT c.id, p.id, c.offset, c.clen, c.rawlen, c.sent_by FROM chunks c JOIN packs p ON p.name = c.pack ORDER BY c.id;
          DROP TABLE chunks;
          ALTER TABLE chunks_v1 RENAME TO chunks;
          CREATE TRIGGER chunk_owners_follow_chunks AFTER DELETE ON chunks BEGIN
            DELETE FROM chunk_owners WHERE chunk = old.id;
          END;`)
      }
      this.db.exec('DROP INDEX IF EXISTS chunks_by_pack; CREATE INDEX chunks_by_pack ON chunks (pack, offset, id);')
      if (mtimeType === 'TEXT') {
        // rowids kept: nothing refers to them across transactions, but nothing needs them renumbered either
        this.db.exec(`${FILE_VERSIONS_V2};
          INSERT INTO file_versions_v2 (rowid, snapshot_id, endpoint_id, folder, path, type, mode, mtime_ns, size, chunks, target, link_key)
            SELECT rowid, snapshot_id, endpoint_id, folder, path, type, mode, CAST(mtime_ns AS INTEGER), size, chunks, target, link_key FROM file_versions ORDER BY rowid;
          DROP TABLE file_versions;
          ALTER TABLE file_versions_v2 RENAME TO file_versions;
          CREATE INDEX file_versions_by_path ON file_versions (endpoint_id, folder, path, snapshot_id);
          CREATE INDEX file_versions_by_snapshot ON file_versions (snapshot_id);`)
      }
      this.db.exec(`PRAGMA user_version = ${CATALOG_VERSION}`)
    })
    // the old tables' and indexes' pages are free now: give them back once (corpus A's catalog: 33 -> 25 MB from v0)
    this.db.exec('VACUUM')
  }

  /** A pack's file name from its id (committed packs only; they are never renamed). */
  private packName (id: number): string {
    let name = this.packNames.get(id)
    if (name === undefined) {
      const r = this.sql('SELECT name FROM packs WHERE id = ?').get(id)
      if (r === undefined) throw new HoldfastError('STORE_INVARIANT', `chunk names pack #${id}, which the catalog lacks`)
      name = r.name as string
      this.packNames.set(id, name)
    }
    return name
  }

  /**
   * Creates the ownership table on a catalog made before it, backfilled from the file
   * versions: each endpoint owns what its committed versions reference. Those commits were
   * trusted when they were made (the old puller took any chunk id an agent listed), so a
   * reference stolen through dedup before this version is carried over; docs/security.md.
   */
  private addOwnership (): void {
    if (this.db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'chunk_owners'").get() !== undefined) return
    transaction(this.db, () => {
      ensureColumn(this.db, 'chunks', 'sent_by', 'INTEGER')
      this.db.exec(OWNERSHIP_SCHEMA)
      ensureSeq(this.db, maxChunksPerVersion(this.db))
      this.db.exec(`INSERT OR IGNORE INTO chunk_owners (chunk, endpoint_id)
        SELECT ${CHUNK_REF}, fv.endpoint_id FROM file_versions fv CROSS JOIN temp.hf_seq n ON n.k < length(fv.chunks) / 32
        WHERE ${CHUNK_REF} IN (SELECT id FROM chunks)`)
    })
  }

  close (): void { this.db.close() }

  touchEndpoint (peerId: string, name: string, now: number): number {
    this.sql(`INSERT INTO endpoints (peer_id, name, first_seen, last_seen) VALUES (?, ?, ?, ?)
      ON CONFLICT (peer_id) DO UPDATE SET last_seen = excluded.last_seen, name = CASE WHEN excluded.name = '' THEN endpoints.name ELSE excluded.name END`).run(peerId, name, now, now)
    return Number(this.sql('SELECT id FROM endpoints WHERE peer_id = ?').get(peerId)?.id)
  }

  /** When an endpoint was last heard from (its last contact or backup), if the catalog knows it. */
  endpointLastSeen (peerId: string): number | undefined {
    const r = this.sql('SELECT last_seen FROM endpoints WHERE peer_id = ?').get(peerId)
    return r === undefined ? undefined : Number(r.last_seen)
  }

  endpoints (): EndpointRow[] {
    return this.sql('SELECT id, peer_id, name, first_seen, last_seen, last_backup FROM endpoints ORDER BY id').all().map(r => ({
      id: Number(r.id), peerId: r.peer_id as string, name: r.name as string, firstSeen: Number(r.first_seen), lastSeen: Number(r.last_seen),
      lastBackup: r.last_backup === null ? undefined : Number(r.last_backup)
    }))
  }

  /** Finds an endpoint by peer id, by a unique suffix of it, or by name. */
  findEndpoint (ref: string): EndpointRow {
    const all = this.endpoints()
    const exact = all.find(e => e.peerId === ref)
    if (exact !== undefined) return exact
    const matches = all.filter(e => e.name === ref || e.peerId.endsWith(ref))
    if (matches.length === 1) return matches[0]
    if (matches.length > 1) throw new HoldfastError('PEER_UNKNOWN', `'${ref}' matches ${matches.length} endpoints; use the full peer id`)
    throw new HoldfastError('PEER_UNKNOWN', `no endpoint '${ref}' in the catalog`)
  }

  /**
   * The snapshot a set was committed as, or, if prune has removed it since, the kept snapshot
   * its versions went into: either way the set is in the store and needs only an ack.
   */
  committedAs (endpointId: number, setId: number): number | undefined {
    const live = this.hasSnapshotFor(endpointId, setId)
    if (live !== undefined) return live
    const r = this.sql('SELECT merged_into FROM pruned_snapshots WHERE endpoint_id = ? AND set_id = ?').get(endpointId, setId)
    return r === undefined ? undefined : Number(r.merged_into)
  }

  hasSnapshotFor (endpointId: number, setId: number): number | undefined {
    const r = this.sql('SELECT id FROM snapshots WHERE endpoint_id = ? AND set_id = ?').get(endpointId, setId)
    return r === undefined ? undefined : Number(r.id)
  }

  /**
   * Which of these chunk ids the store lacks. The store's own view, for maintenance and
   * tests: never use it to decide what to ask an agent for (it tells which chunks exist
   * anywhere in the fleet); that is unownedChunks. One read transaction for the batch.
   */
  missingChunks (ids: Iterable<Uint8Array>): Uint8Array[] {
    const stmt = this.db.prepare('SELECT 1 FROM chunks WHERE id = ?')
    const missing: Uint8Array[] = []
    this.db.exec('BEGIN')
    try {
      for (const id of ids) if (stmt.get(id) === undefined) missing.push(id)
    } finally {
      this.db.exec('COMMIT')
    }
    return missing
  }

  /**
   * Which of these chunk ids the endpoint has not sent (or whose data the store no longer
   * holds): the ones a pull must fetch from it, whether another endpoint's copy is stored or
   * not, so that neither what it may reference nor what it is asked for depends on the
   * others' data. One read transaction for the batch.
   */
  unownedChunks (endpointId: number, ids: Iterable<Uint8Array>): Uint8Array[] {
    return this.fetchPlan(endpointId, ids).fetch
  }

  /**
   * What a pull asks the endpoint for (unownedChunks), and which of those the store holds
   * already (sent by another endpoint): those are verified and owned, not stored again.
   * One query per id in one read transaction.
   */
  fetchPlan (endpointId: number, ids: Iterable<Uint8Array>): { fetch: Uint8Array[], storedElsewhere: Set<string> } {
    const stmt = this.sql(`SELECT ${OWNED_BY} AS owned FROM chunks c WHERE c.id = ?2`)
    const fetch: Uint8Array[] = []
    const storedElsewhere = new Set<string>()
    this.db.exec('BEGIN')
    try {
      for (const id of ids) {
        const r = stmt.get(endpointId, id)
        if (r !== undefined && Number(r.owned) === 1) continue
        fetch.push(id)
        if (r !== undefined) storedElsewhere.add(Buffer.from(id).toString('latin1'))
      }
    } finally {
      this.db.exec('COMMIT')
    }
    return { fetch, storedElsewhere }
  }

  /** Whether the endpoint owns a stored chunk (it sent it, or its versions did before ownership). */
  owns (endpointId: number, id: Uint8Array): boolean {
    return this.sql(`SELECT 1 FROM chunks c WHERE c.id = ?2 AND ${OWNED_BY}`).get(endpointId, id) !== undefined
  }

  chunkLocation (id: Uint8Array): (PackLocation & { rawlen: number }) | undefined {
    const r = this.sql('SELECT pack, offset, clen, rawlen FROM chunks WHERE id = ?').get(id)
    if (r === undefined) return undefined
    return { pack: this.packName(Number(r.pack)), offset: Number(r.offset), clen: Number(r.clen), rawlen: Number(r.rawlen) }
  }

  /**
   * Where a chunk is, for a restore of one endpoint's data: CHUNK_NOT_OWNED when the store
   * holds it but the endpoint never sent it (a version that names another endpoint's chunk
   * must not hand that endpoint's bytes over), CHUNK_MISSING when the store lacks it.
   */
  ownedChunkLocation (endpointId: number, id: Uint8Array): PackLocation & { rawlen: number } {
    const r = this.sql(`SELECT c.pack, c.offset, c.clen, c.rawlen FROM chunks c WHERE c.id = ?2 AND ${OWNED_BY}`).get(endpointId, id)
    if (r !== undefined) return { pack: this.packName(Number(r.pack)), offset: Number(r.offset), clen: Number(r.clen), rawlen: Number(r.rawlen) }
    if (this.chunkLocation(id) === undefined) throw new HoldfastError('CHUNK_MISSING', `chunk ${toHex(id)} is not in the store`)
    throw new HoldfastError('CHUNK_NOT_OWNED', `chunk ${toHex(id)} was never sent by endpoint #${endpointId}; not restored from another endpoint's data`, { id: toHex(id) })
  }

  /**
   * Commits a snapshot with its file versions and new chunks in one transaction. The packs
   * holding the chunks must already be fsynced. Returns the snapshot id.
   *
   * The endpoint comes to own `chunks` (it sent them, stored now) and `proven` (it sent them,
   * verified, but another endpoint's copy was stored already). Every chunk the entries
   * reference must then be owned by the endpoint: otherwise nothing is committed
   * (CHUNK_NOT_OWNED), since the entries would let a restore of this endpoint read another's
   * data. A set id committed before is never replaced: its snapshot id is returned as it is.
   */
  commitSnapshot (input: { endpointId: number, setId: number, sealedAt: number, committedAt: number, entries: StagedEntry[], chunks: NewChunk[], proven?: Uint8Array[] }): number {
    // pack ids made in this transaction are cached only once it has committed
    const madeIds = new Map<string, number>()
    const snapshotId = transaction(this.db, () => {
      const existing = this.hasSnapshotFor(input.endpointId, input.setId)
      if (existing !== undefined) return existing
      const insertChunk = this.sql('INSERT OR IGNORE INTO chunks (id, pack, offset, clen, rawlen, sent_by) VALUES (?, ?, ?, ?, ?, ?)')
      const insertOwner = this.sql('INSERT OR IGNORE INTO chunk_owners (chunk, endpoint_id) VALUES (?, ?)')
      let newBytes = 0
      let lastName = ''
      let lastId = 0
      for (const c of input.chunks) {
        if (c.pack !== lastName) {
          lastName = c.pack
          lastId = this.packIds.get(c.pack) ?? madeIds.get(c.pack) ?? packIdFor(this.db, c.pack)
          madeIds.set(c.pack, lastId)
        }
        const r = insertChunk.run(c.id, lastId, c.offset, c.clen, c.rawlen, input.endpointId)
        if (Number(r.changes) > 0) newBytes += c.clen
        else insertOwner.run(c.id, input.endpointId) // another pull stored it meanwhile
      }
      // proven: usually few (what another endpoint stored first), so a set of them is cheap
      const proven = new Set<string>()
      for (const id of input.proven ?? []) { insertOwner.run(id, input.endpointId); proven.add(Buffer.from(id).toString('latin1')) }
      // Every reference must now be owned. The puller sends new chunks in the order the
      // entries first name them, so a cursor over them settles most references without a
      // query (a set of 78k ids as strings cost a first backup 5%); the rest are looked up.
      let cursor = 0
      for (const e of input.entries) {
        for (let i = 0; i < e.chunks.byteLength; i += CHUNK_ID_BYTES) {
          const id = e.chunks.subarray(i, i + CHUNK_ID_BYTES)
          if (cursor < input.chunks.length && sameId(input.chunks[cursor].id, id)) { cursor++; continue }
          if ((proven.size > 0 && proven.has(Buffer.from(id).toString('latin1'))) || this.owns(input.endpointId, id)) continue
          throw new HoldfastError('CHUNK_NOT_OWNED', `set ${input.setId} references chunk ${toHex(id)}, which this endpoint has not sent; nothing committed`, { setId: input.setId, id: toHex(id) })
        }
      }
      const rawBytes = input.entries.reduce((n, e) => n + (e.type === 'file' ? e.size : 0), 0)
      const snap = this.sql('INSERT INTO snapshots (endpoint_id, set_id, sealed_at, committed_at, entries, raw_bytes, new_bytes) VALUES (?, ?, ?, ?, ?, ?, ?)')
        .run(input.endpointId, input.setId, input.sealedAt, input.committedAt, input.entries.length, rawBytes, newBytes)
      const snapshotId = Number(snap.lastInsertRowid)
      const insertVersion = this.sql('INSERT INTO file_versions (snapshot_id, endpoint_id, folder, path, type, mode, mtime_ns, size, chunks, target, link_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)')
      for (const e of input.entries) {
        insertVersion.run(snapshotId, input.endpointId, e.folder, e.path, e.type, e.mode, e.mtimeNs, e.size, e.chunks, e.target ?? null, e.linkKey ?? null)
      }
      this.sql('UPDATE endpoints SET last_backup = ? WHERE id = ?').run(input.committedAt, input.endpointId)
      return snapshotId
    })
    for (const [name, id] of madeIds) { this.packIds.set(name, id); this.packNames.set(id, name) }
    this.truncateWal()
    return snapshotId
  }

  /**
   * Copies the WAL into the catalog file and truncates it, so the store does not keep a WAL
   * as large as the last commit (11 MB after corpus A's first backup, 28% of the catalog's
   * bytes) beside the pages it holds. The commit is durable already (synchronous FULL); this
   * is housekeeping, so it never waits: a reader on another connection (a restore, verify)
   * makes it do what it can now (busy_timeout 0), and a later commit finishes it.
   */
  private truncateWal (): void {
    this.db.exec('PRAGMA busy_timeout = 0')
    try {
      this.db.prepare('PRAGMA wal_checkpoint(TRUNCATE)').get()
    } catch (err) {
      // another connection's lock: the set is committed all the same, so this is no failure
      if (!/busy|locked/i.test((err as Error).message)) throw err
    } finally {
      this.db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`)
    }
  }

  snapshots (endpointId?: number): SnapshotRow[] {
    const sql = `SELECT s.id, s.endpoint_id, e.peer_id, e.name, s.set_id, s.sealed_at, s.committed_at, s.entries, s.raw_bytes, s.new_bytes
      FROM snapshots s JOIN endpoints e ON e.id = s.endpoint_id ${endpointId === undefined ? '' : 'WHERE s.endpoint_id = ?'} ORDER BY s.id`
    const rows = endpointId === undefined ? this.sql(sql).all() : this.sql(sql).all(endpointId)
    return rows.map(r => ({
      id: Number(r.id), endpointId: Number(r.endpoint_id), peerId: r.peer_id as string, endpointName: r.name as string, setId: Number(r.set_id),
      sealedAt: Number(r.sealed_at), committedAt: Number(r.committed_at), entries: Number(r.entries), rawBytes: Number(r.raw_bytes), newBytes: Number(r.new_bytes)
    }))
  }

  snapshotCount (): number {
    return Number(this.sql('SELECT count(*) AS n FROM snapshots').get()?.n ?? 0)
  }

  latestSnapshot (endpointId: number): number | undefined {
    const r = this.sql('SELECT max(id) AS id FROM snapshots WHERE endpoint_id = ?').get(endpointId)
    return r?.id === null || r?.id === undefined ? undefined : Number(r.id)
  }

  snapshot (id: number): SnapshotRow {
    const r = this.sql(`SELECT s.id, s.endpoint_id, e.peer_id, e.name, s.set_id, s.sealed_at, s.committed_at, s.entries, s.raw_bytes, s.new_bytes
      FROM snapshots s JOIN endpoints e ON e.id = s.endpoint_id WHERE s.id = ?`).get(id)
    if (r === undefined) throw new HoldfastError('SNAPSHOT_UNKNOWN', `no snapshot ${id}`)
    return {
      id: Number(r.id), endpointId: Number(r.endpoint_id), peerId: r.peer_id as string, endpointName: r.name as string, setId: Number(r.set_id),
      sealedAt: Number(r.sealed_at), committedAt: Number(r.committed_at), entries: Number(r.entries), rawBytes: Number(r.raw_bytes), newBytes: Number(r.new_bytes)
    }
  }

  /** The endpoint's newest snapshot committed at or before `atMs` (ms since the epoch). */
  snapshotAt (endpointId: number, atMs: number): number | undefined {
    const r = this.sql('SELECT id FROM snapshots WHERE endpoint_id = ? AND committed_at <= ? ORDER BY committed_at DESC, id DESC LIMIT 1').get(endpointId, atMs)
    return r === undefined ? undefined : Number(r.id)
  }

  endpointById (id: number): EndpointRow {
    const r = this.sql('SELECT id, peer_id, name, first_seen, last_seen, last_backup FROM endpoints WHERE id = ?').get(id)
    if (r === undefined) throw new HoldfastError('PEER_UNKNOWN', `no endpoint #${id} in the catalog`)
    return {
      id: Number(r.id), peerId: r.peer_id as string, name: r.name as string, firstSeen: Number(r.first_seen), lastSeen: Number(r.last_seen),
      lastBackup: r.last_backup === null ? undefined : Number(r.last_backup)
    }
  }

  /** What the files of `treeAt` hold, in bytes, summed by SQLite (no rows made in JS). */
  treeBytes (endpointId: number, snapshotId: number): number {
    const r = this.sql(`SELECT coalesce(sum(fv.size), 0) AS n FROM file_versions fv
      JOIN (SELECT folder, path, max(snapshot_id) AS sid FROM file_versions WHERE endpoint_id = ? AND snapshot_id <= ? GROUP BY folder, path) newest
        ON fv.endpoint_id = ? AND fv.folder = newest.folder AND fv.path = newest.path AND fv.snapshot_id = newest.sid
      WHERE fv.type = 'file'`).get(endpointId, snapshotId, endpointId)
    return Number(r?.n ?? 0)
  }

  /**
   * Runs `fn`, which must be synchronous (so no other statement of this connection can run in
   * between), in one read transaction: many point reads then share one WAL snapshot instead of
   * opening one each. Inside a transaction already, `fn` simply runs in it.
   */
  readBatch<T> (fn: () => T): T {
    if (this.db.isTransaction) return fn()
    this.db.exec('BEGIN')
    try {
      return fn()
    } finally {
      this.db.exec('COMMIT')
    }
  }

  /** The endpoint's tree as of a snapshot: the newest version of each path, deletions dropped. */
  * treeAt (endpointId: number, snapshotId: number): Generator<VersionRow> {
    const stmt = this.db.prepare(`SELECT fv.snapshot_id, fv.folder, fv.path, fv.type, fv.mode, CAST(fv.mtime_ns AS TEXT) AS mtime_ns, fv.size, fv.chunks, fv.target, fv.link_key
      FROM file_versions fv
      JOIN (SELECT folder, path, max(snapshot_id) AS sid FROM file_versions WHERE endpoint_id = ? AND snapshot_id <= ? GROUP BY folder, path) newest
        ON fv.endpoint_id = ? AND fv.folder = newest.folder AND fv.path = newest.path AND fv.snapshot_id = newest.sid
      WHERE fv.type != 'deleted'
      ORDER BY fv.folder, fv.path`)
    for (const r of stmt.iterate(endpointId, snapshotId, endpointId)) {
      const v: VersionRow = {
        snapshotId: Number(r.snapshot_id),
        folder: r.folder as string,
        path: r.path as Uint8Array,
        type: r.type as EntryType,
        mode: Number(r.mode),
        mtimeNs: BigInt(r.mtime_ns as string),
        size: Number(r.size),
        chunks: r.chunks as Uint8Array
      }
      if (r.target !== null) v.target = r.target as Uint8Array
      if (r.link_key !== null && r.link_key !== undefined) v.linkKey = r.link_key as string
      yield v
    }
  }

  /**
   * The newest snapshot of an endpoint in which a path (or something under it) existed, for
   * restoring what was deleted since.
   */
  lastSnapshotHolding (endpointId: number, folder: string, rel: Uint8Array | undefined): number | undefined {
    const r = rel === undefined
      ? this.sql("SELECT max(snapshot_id) AS s FROM file_versions WHERE endpoint_id = ? AND folder = ? AND type != 'deleted'").get(endpointId, folder)
      : this.sql("SELECT max(snapshot_id) AS s FROM file_versions WHERE endpoint_id = ? AND folder = ? AND type != 'deleted' AND (path = ? OR (path > ? AND path < ?))")
        .get(endpointId, folder, rel, Buffer.concat([rel, Buffer.from('/')]), Buffer.concat([rel, Buffer.from('0')]))
    return r?.s === null || r?.s === undefined ? undefined : Number(r.s)
  }

  /** For each pack the index names, where its last referenced record ends. */
  packExtents (): Map<string, number> {
    return new Map(this.sql('SELECT p.name, max(c.offset + c.clen) AS end FROM chunks c JOIN packs p ON p.id = c.pack GROUP BY c.pack').all().map(r => [r.name as string, Number(r.end)]))
  }

  storedBytes (): number {
    return Number(this.sql('SELECT coalesce(sum(clen), 0) AS n FROM chunks').get()?.n ?? 0)
  }

  /** Every stored retention policy (endpoint 0: the global one), global first. */
  retentionPolicies (): RetentionPolicyRow[] {
    return this.sql(`SELECT endpoint_id, rules, ${Object.values(RULE_COLUMNS).join(', ')}, min_age_ms, hold, updated_at FROM retention_policies ORDER BY endpoint_id`).all().map(r => {
      const row: RetentionPolicyRow = { endpointId: Number(r.endpoint_id), hold: Number(r.hold) === 1, updatedAt: Number(r.updated_at) }
      if (Number(r.rules) === 1) {
        const rules: RetentionRules = {}
        for (const k of RULE_KEYS) if (r[RULE_COLUMNS[k]] !== null) rules[k] = Number(r[RULE_COLUMNS[k]])
        if (r.min_age_ms !== null) rules.minAgeMs = Number(r.min_age_ms)
        row.rules = rules
      }
      return row
    })
  }

  /**
   * Changes the policy of one scope (endpoint id, or 0 for every endpoint): `rules` replaces
   * its keep rules (null clears them), `hold` sets or releases its legal hold; what is not
   * given stays. A scope left with neither rules nor a hold has no row.
   */
  setRetentionPolicy (endpointId: number, change: { rules?: RetentionRules | null, hold?: boolean }, now: number): RetentionPolicyRow | undefined {
    return transaction(this.db, () => {
      const current = this.retentionPolicies().find(p => p.endpointId === endpointId)
      const rules = change.rules === undefined ? current?.rules : change.rules ?? undefined
      const hold = change.hold ?? current?.hold ?? false
      if (rules === undefined && !hold) {
        this.sql('DELETE FROM retention_policies WHERE endpoint_id = ?').run(endpointId)
        return undefined
      }
      const values = RULE_KEYS.map(k => rules?.[k] ?? null)
      this.sql(`INSERT OR REPLACE INTO retention_policies (endpoint_id, rules, ${Object.values(RULE_COLUMNS).join(', ')}, min_age_ms, hold, updated_at)
        VALUES (?, ?, ${RULE_KEYS.map(() => '?').join(', ')}, ?, ?, ?)`)
        .run(endpointId, rules === undefined ? 0 : 1, ...values, rules?.minAgeMs ?? null, hold ? 1 : 0, now)
      return { endpointId, rules, hold, updatedAt: now }
    })
  }

  /** Snapshots prune removed, oldest first (optionally of one endpoint). */
  prunedSnapshots (endpointId?: number): Array<{ id: number, endpointId: number, setId: number, committedAt: number, prunedAt: number, mergedInto: number, versionsMoved: number, versionsDropped: number }> {
    const rows = endpointId === undefined
      ? this.sql('SELECT id, endpoint_id, set_id, committed_at, pruned_at, merged_into, versions_moved, versions_dropped FROM pruned_snapshots ORDER BY id').all()
      : this.sql('SELECT id, endpoint_id, set_id, committed_at, pruned_at, merged_into, versions_moved, versions_dropped FROM pruned_snapshots WHERE endpoint_id = ? ORDER BY id').all(endpointId)
    return rows.map(r => ({
      id: Number(r.id), endpointId: Number(r.endpoint_id), setId: Number(r.set_id), committedAt: Number(r.committed_at), prunedAt: Number(r.pruned_at),
      mergedInto: Number(r.merged_into), versionsMoved: Number(r.versions_moved), versionsDropped: Number(r.versions_dropped)
    }))
  }
}

function sameId (a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false
  return true
}
