/**
 * Packs in the catalog by a small integer id (table packs, CATALOG_VERSION 1): chunk rows and
 * chunks_by_pack name a pack by packs.id, the maintenance code by its file name.
 */
import type { DatabaseSync } from '../../util/sqlite.js'

/** SQL for the id of the pack named by the next `?` parameter (NULL if no such pack). */
export const PACK_NAMED = '(SELECT id FROM packs WHERE name = ?)'

/**
 * The id of a pack file name, made when the catalog does not know it yet. Inside a write
 * transaction (the row goes if it rolls back, so never cache the id before the commit).
 */
export function packIdFor (db: DatabaseSync, name: string): number {
  db.prepare('INSERT OR IGNORE INTO packs (name) VALUES (?)').run(name)
  return Number(db.prepare('SELECT id FROM packs WHERE name = ?').get(name)?.id)
}
