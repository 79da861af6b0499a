/**
 * Chunk references in SQL. A file version's chunk ids are one BLOB (32 bytes each, in file
 * order), so to join them with the chunk index they are expanded against a sequence table:
 *
 *   FROM file_versions fv CROSS JOIN temp.hf_seq n ON n.k < length(fv.chunks) / 32
 *   … substr(fv.chunks, n.k * 32 + 1, 32) is the k-th chunk id
 *
 * The sequence is a rowid range, so the expansion costs one seek per version and one step per
 * reference, in C, with no JS call per row. It lives in the connection's temp schema (never
 * in the catalog file) and grows to the longest chunk list asked for.
 */
import type { DatabaseSync } from '../../util/sqlite.js'
import { CHUNK_ID_BYTES } from '../../model/entry.js'

const seqRows = new WeakMap<DatabaseSync, number>()

/** SQL for the k-th chunk id of `fv.chunks` when joined with `temp.hf_seq n`. */
export const CHUNK_REF = `substr(fv.chunks, n.k * ${CHUNK_ID_BYTES} + 1, ${CHUNK_ID_BYTES})`

/** Makes temp.hf_seq hold 0 … count-1 (at least). */
export function ensureSeq (db: DatabaseSync, count: number): void {
  let have = seqRows.get(db)
  if (have === undefined) {
    db.exec('CREATE TEMP TABLE IF NOT EXISTS hf_seq (k INTEGER PRIMARY KEY)')
    have = Number(db.prepare('SELECT count(*) AS n FROM temp.hf_seq').get()?.n ?? 0)
  }
  if (count > have) {
    db.prepare(`WITH RECURSIVE s(k) AS (SELECT ? UNION ALL SELECT k + 1 FROM s WHERE k + 1 < ?)
      INSERT OR IGNORE INTO temp.hf_seq (k) SELECT k FROM s`).run(have, count)
    have = count
  }
  seqRows.set(db, have)
}

/** The longest chunk list of any file version, in chunks (a full scan: for verify). */
export function maxChunksPerVersion (db: DatabaseSync): number {
  const r = db.prepare('SELECT coalesce(max(length(chunks)), 0) AS n FROM file_versions').get()
  return Math.ceil(Number(r?.n ?? 0) / CHUNK_ID_BYTES)
}
