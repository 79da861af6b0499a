/**
 * Space accounting: for each endpoint's latest tree, the logical bytes (sum of its files'
 * sizes) against the bytes the store holds for it (the compressed length of each distinct
 * chunk the tree references), and the same for the fleet, where a chunk two endpoints share
 * counts once.
 *
 * All in SQL over temp tables (bounded memory, whatever the size of the trees):
 * 1. the latest version of every path of every endpoint: one pass over the path index,
 *    grouped, joined back to the version rows; files only (deletions drop out);
 * 2. their chunk references, expanded against a sequence (chunk-refs.ts), made distinct per
 *    endpoint in a temp table keyed (endpoint, chunk);
 * 3. joined with the chunk index for compressed and plaintext lengths, per endpoint and
 *    over the distinct chunks of all endpoints.
 */
import type { Catalog } from './catalog.js'
import { CHUNK_REF, ensureSeq } from './chunk-refs.js'
import { endpointLabel } from './browse.js'

export interface EndpointStats {
  peerId: string
  endpoint: string
  /** The latest snapshot (undefined: none yet). */
  snapshotId?: number
  files: number
  /** Sum of the sizes of the files in the latest tree. */
  logicalBytes: number
  /** Distinct chunks the latest tree references. */
  chunks: number
  /** Plaintext bytes of those distinct chunks (what dedup leaves). */
  uniqueBytes: number
  /** Compressed bytes of those chunks in the store. */
  storedBytes: number
  /** logicalBytes / storedBytes (dedup and compression together); 0 when nothing is stored. */
  dedupRatio: number
  /** Of storedBytes: bytes no other endpoint's latest tree references. */
  ownBytes: number
}

export interface StoreStats {
  endpoints: EndpointStats[]
  total: {
    endpoints: number
    files: number
    logicalBytes: number
    /** Distinct chunks over every endpoint's latest tree (a shared chunk counts once). */
    chunks: number
    uniqueBytes: number
    storedBytes: number
    /** logicalBytes / storedBytes over the latest trees. */
    dedupRatio: number
    /** The whole store: every chunk, older versions' included. */
    storeChunks: number
    storeBytes: number
    snapshots: number
  }
  ms: number
}

function ratio (a: number, b: number): number {
  return b === 0 ? 0 : Math.round((a / b) * 1000) / 1000
}

export function storeStats (catalog: Catalog): StoreStats {
  const started = performance.now()
  const db = catalog.db
  db.exec(`DROP TABLE IF EXISTS temp.hf_stats_files; DROP TABLE IF EXISTS temp.hf_stats_refs;
    CREATE TEMP TABLE hf_stats_files (vid INTEGER PRIMARY KEY, endpoint_id INTEGER NOT NULL, size INTEGER NOT NULL, n INTEGER NOT NULL);
    CREATE TEMP TABLE hf_stats_refs (endpoint_id INTEGER NOT NULL, id BLOB NOT NULL, PRIMARY KEY (endpoint_id, id)) WITHOUT ROWID;`)
  try {
    db.exec(`INSERT INTO temp.hf_stats_files (vid, endpoint_id, size, n)
      SELECT fv.rowid, fv.endpoint_id, fv.size, length(fv.chunks) / 32
      FROM (SELECT endpoint_id, folder, path, max(snapshot_id) AS sid FROM file_versions GROUP BY endpoint_id, folder, path) g
      JOIN file_versions fv ON fv.endpoint_id = g.endpoint_id AND fv.folder = g.folder AND fv.path = g.path AND fv.snapshot_id = g.sid
      WHERE fv.type = 'file'`)
    const maxChunks = Number(db.prepare('SELECT coalesce(max(n), 0) AS n FROM temp.hf_stats_files').get()?.n ?? 0)
    ensureSeq(db, maxChunks)
    db.exec(`INSERT OR IGNORE INTO temp.hf_stats_refs (endpoint_id, id)
      SELECT f.endpoint_id, ${CHUNK_REF} FROM temp.hf_stats_files f CROSS JOIN file_versions fv ON fv.rowid = f.vid CROSS JOIN temp.hf_seq n ON n.k < f.n`)

    const perFiles = new Map<number, { files: number, logical: number }>()
    for (const r of db.prepare('SELECT endpoint_id, count(*) AS files, total(size) AS logical FROM temp.hf_stats_files GROUP BY endpoint_id').all()) {
      perFiles.set(Number(r.endpoint_id), { files: Number(r.files), logical: Number(r.logical) })
    }
    const perChunks = new Map<number, { chunks: number, unique: number, stored: number }>()
    for (const r of db.prepare(`SELECT r.endpoint_id, count(c.id) AS chunks, total(c.rawlen) AS uniq, total(c.clen) AS stored
      FROM temp.hf_stats_refs r JOIN chunks c ON c.id = r.id GROUP BY r.endpoint_id`).all()) {
      perChunks.set(Number(r.endpoint_id), { chunks: Number(r.chunks), unique: Number(r.uniq), stored: Number(r.stored) })
    }
    // chunks only one endpoint references: grouped by chunk, in the temp table's own order
    const own = new Map<number, number>()
    for (const r of db.prepare(`SELECT x.endpoint_id, total(c.clen) AS own FROM (
        SELECT id, min(endpoint_id) AS endpoint_id FROM temp.hf_stats_refs GROUP BY id HAVING count(*) = 1
      ) x JOIN chunks c ON c.id = x.id GROUP BY x.endpoint_id`).all()) {
      own.set(Number(r.endpoint_id), Number(r.own))
    }
    const fleet = db.prepare(`SELECT count(c.id) AS chunks, total(c.rawlen) AS uniq, total(c.clen) AS stored
      FROM (SELECT DISTINCT id FROM temp.hf_stats_refs) r JOIN chunks c ON c.id = r.id`).get()
    const store = db.prepare('SELECT count(*) AS n, total(clen) AS bytes FROM chunks').get()
    const snapshots = Number(db.prepare('SELECT count(*) AS n FROM snapshots').get()?.n ?? 0)

    const endpoints: EndpointStats[] = catalog.endpoints().map(e => {
      const f = perFiles.get(e.id) ?? { files: 0, logical: 0 }
      const c = perChunks.get(e.id) ?? { chunks: 0, unique: 0, stored: 0 }
      return {
        peerId: e.peerId,
        endpoint: endpointLabel(e),
        snapshotId: catalog.latestSnapshot(e.id),
        files: f.files,
        logicalBytes: f.logical,
        chunks: c.chunks,
        uniqueBytes: c.unique,
        storedBytes: c.stored,
        dedupRatio: ratio(f.logical, c.stored),
        ownBytes: own.get(e.id) ?? 0
      }
    })
    const logical = endpoints.reduce((n, e) => n + e.logicalBytes, 0)
    const stored = Number(fleet?.stored ?? 0)
    return {
      endpoints,
      total: {
        endpoints: endpoints.length,
        files: endpoints.reduce((n, e) => n + e.files, 0),
        logicalBytes: logical,
        chunks: Number(fleet?.chunks ?? 0),
        uniqueBytes: Number(fleet?.uniq ?? 0),
        storedBytes: stored,
        dedupRatio: ratio(logical, stored),
        storeChunks: Number(store?.n ?? 0),
        storeBytes: Number(store?.bytes ?? 0),
        snapshots
      },
      ms: Math.round(performance.now() - started)
    }
  } finally {
    db.exec('DROP TABLE IF EXISTS temp.hf_stats_files; DROP TABLE IF EXISTS temp.hf_stats_refs')
  }
}
