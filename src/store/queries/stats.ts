/**
 * Space accounting: for each endpoint's latest tree, the logical bytes (sum of its files'
 * sizes) against the bytes the store holds for it (the compressed length of each distinct
 * chunk the tree references), and the same for the fleet, where a chunk two endpoints share
 * counts once.
 *
 * All in SQL over temp tables (bounded memory, whatever the size of the trees):
 * 1. the latest version of every path of every endpoint: one pass over the covering path
 *    index, grouped; then those rows in table order, files only (deletions drop out);
 * 2. their chunk references, expanded against a sequence (chunk-refs.ts), sorted and made
 *    distinct in a temp table keyed (chunk, endpoint);
 * 3. joined with the chunk index, in chunk order, for compressed and plaintext lengths: per
 *    endpoint, and once per distinct chunk for the fleet.
 */
import type { Catalog } from '../core/catalog.js'
import { CHUNK_REF, ensureSeq } from '../core/chunk-refs.js'
import { CHUNK_ID_BYTES } from '../../model/entry.js'
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
  db.exec(`DROP TABLE IF EXISTS temp.hf_stats_latest; DROP TABLE IF EXISTS temp.hf_stats_refs;
    CREATE TEMP TABLE hf_stats_latest (vid INTEGER PRIMARY KEY);
    CREATE TEMP TABLE hf_stats_refs (id BLOB NOT NULL, endpoint_id INTEGER NOT NULL, PRIMARY KEY (id, endpoint_id)) WITHOUT ROWID;`)
  try {
    // 1. the latest version of every path: one pass over the covering path index (with a
    //    single max(), SQLite takes the bare rowid from the row holding the max)
    db.exec(`INSERT INTO temp.hf_stats_latest (vid)
      SELECT vid FROM (SELECT rowid AS vid, max(snapshot_id) FROM file_versions GROUP BY endpoint_id, folder, path)`)
    // the version rows in rowid order: a forward pass over the table
    const latestFiles = "temp.hf_stats_latest l CROSS JOIN file_versions fv ON fv.rowid = l.vid WHERE fv.type = 'file'"
    const perFiles = new Map<number, { files: number, logical: number }>()
    let maxChunks = 0
    for (const r of db.prepare(`SELECT fv.endpoint_id, count(*) AS files, total(fv.size) AS logical, max(length(fv.chunks)) AS longest FROM ${latestFiles} GROUP BY fv.endpoint_id`).all()) {
      perFiles.set(Number(r.endpoint_id), { files: Number(r.files), logical: Number(r.logical) })
      maxChunks = Math.max(maxChunks, Math.ceil(Number(r.longest) / CHUNK_ID_BYTES))
    }
    // 2. their chunk references, distinct per endpoint, inserted in key order
    ensureSeq(db, maxChunks)
    db.exec(`INSERT OR IGNORE INTO temp.hf_stats_refs (id, endpoint_id)
      SELECT ${CHUNK_REF}, fv.endpoint_id FROM temp.hf_stats_latest l CROSS JOIN file_versions fv ON fv.rowid = l.vid CROSS JOIN temp.hf_seq n ON n.k < length(fv.chunks) / ${CHUNK_ID_BYTES}
      WHERE fv.type = 'file' ORDER BY 1, 2`)
    // 3. lengths from the chunk index, looked up in id order (neighbouring pages)
    const perChunks = new Map<number, { chunks: number, unique: number, stored: number }>()
    for (const r of db.prepare(`SELECT r.endpoint_id, count(c.id) AS chunks, total(c.rawlen) AS uniq, total(c.clen) AS stored
      FROM temp.hf_stats_refs r JOIN chunks c ON c.id = r.id GROUP BY r.endpoint_id`).all()) {
      perChunks.set(Number(r.endpoint_id), { chunks: Number(r.chunks), unique: Number(r.uniq), stored: Number(r.stored) })
    }
    // each distinct chunk once: grouped under the lowest endpoint that references it, so the
    // groups add up to the fleet's total, and a chunk only one endpoint references is its own
    const own = new Map<number, number>()
    const fleet = { chunks: 0, unique: 0, stored: 0 }
    for (const r of db.prepare(`SELECT g.e AS endpoint_id, count(c.id) AS chunks, total(c.rawlen) AS uniq, total(c.clen) AS stored,
        total(CASE WHEN g.n = 1 THEN c.clen ELSE 0 END) AS own
      FROM (SELECT id, count(*) AS n, min(endpoint_id) AS e FROM temp.hf_stats_refs GROUP BY id) g JOIN chunks c ON c.id = g.id GROUP BY g.e`).all()) {
      own.set(Number(r.endpoint_id), Number(r.own))
      fleet.chunks += Number(r.chunks)
      fleet.unique += Number(r.uniq)
      fleet.stored += Number(r.stored)
    }
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
    return {
      endpoints,
      total: {
        endpoints: endpoints.length,
        files: endpoints.reduce((n, e) => n + e.files, 0),
        logicalBytes: logical,
        chunks: fleet.chunks,
        uniqueBytes: fleet.unique,
        storedBytes: fleet.stored,
        dedupRatio: ratio(logical, fleet.stored),
        storeChunks: Number(store?.n ?? 0),
        storeBytes: Number(store?.bytes ?? 0),
        snapshots
      },
      ms: Math.round(performance.now() - started)
    }
  } finally {
    db.exec('DROP TABLE IF EXISTS temp.hf_stats_latest; DROP TABLE IF EXISTS temp.hf_stats_refs')
  }
}
