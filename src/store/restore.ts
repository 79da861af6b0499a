/**
 * Restore from the manager's store: an endpoint's tree as of a snapshot (whole, or one path
 * or subtree), read from the catalog and packs and written by the restore writer
 * (restore-writer/restore-sink.ts).
 */
import { displayPath, type StagedEntry } from '../model/entry.js'
import { parsePathSpec, specCovers, type PathSpec } from '../model/path-spec.js'
import { pathAt } from './queries/browse.js'
import { verifyChunk } from '../codec/chunk-codec.js'
import { HoldfastError } from '../util/errors.js'
import type { Catalog } from './core/catalog.js'
import type { PackStore } from './core/packs.js'
import { checkFreeSpace, type FreeSpaceProbe } from '../restore-writer/free-space.js'
import { RestoreSink, prepareTarget, type ChunkProvider, type RestoreProgress, type SinkSummary } from '../restore-writer/restore-sink.js'

export type { RestoreProgress, RestoreError } from '../restore-writer/restore-sink.js'

export interface RestoreRequest {
  endpointId: number
  snapshotId: number
  /**
   * Restore only this path and what is under it: a spec as the user typed it
   * ("<folder>[/<path>]", read by model/path-spec.ts), or one reading of it already chosen.
   */
  path?: string | PathSpec
  target: string
  /** Restore setuid/setgid bits as stored (default: dropped, and counted in the summary). */
  keepSetuid?: boolean
  signal?: AbortSignal
  onProgress?: (p: RestoreProgress) => void
  /** Free bytes at a path (default: statfs); a test stands in for a small file system. */
  freeSpace?: FreeSpaceProbe
}


/** A restore from the store: what the sink wrote, and which snapshot it was. */
export interface RestoreSummary extends SinkSummary {
  snapshotId: number
}

/**
 * A ChunkProvider reading one endpoint's chunks from the manager's store, re-hashing each.
 * Only chunks the endpoint owns (has sent) are read: CHUNK_NOT_OWNED otherwise.
 */
export function storeChunks (catalog: Catalog, packs: PackStore, endpointId: number): ChunkProvider {
  return async (_index, id) => {
    const loc = catalog.ownedChunkLocation(endpointId, id)
    return verifyChunk(id, packs.read(loc), loc.rawlen)
  }
}

export async function restoreSnapshot (catalog: Catalog, packs: PackStore, req: RestoreRequest): Promise<RestoreSummary> {
  // The spec's reading is chosen before the target is touched: a path not there fails first.
  const spec = typeof req.path === 'string' ? pathAt(catalog, req.endpointId, req.snapshotId, parsePathSpec(req.path)) : req.path
  const shown = typeof req.path === 'string' ? req.path : req.path === undefined ? '' : showSpec(req.path)
  if (req.path !== undefined && spec === undefined) throw new HoldfastError('PATH_NOT_FOUND', `no path '${shown}' in snapshot ${req.snapshotId}`)
  prepareTarget(req.target)
  const filter = spec === undefined ? undefined : pathFilter(spec)
  // A restore that cannot fit says so before it writes anything (one extra pass over the tree).
  let bytes = 0
  for (const e of catalog.treeAt(req.endpointId, req.snapshotId)) if (e.type === 'file' && (filter === undefined || filter(e))) bytes += e.size
  checkFreeSpace(req.target, bytes, req.freeSpace)
  const sink = new RestoreSink({ target: req.target, keepSetuid: req.keepSetuid, signal: req.signal, onProgress: req.onProgress })
  const chunks = storeChunks(catalog, packs, req.endpointId)
  let matched = 0
  for (const e of catalog.treeAt(req.endpointId, req.snapshotId)) {
    if (filter !== undefined && !filter(e)) continue
    matched++
    await sink.add(e, chunks)
  }
  if (filter !== undefined && matched === 0) throw new HoldfastError('PATH_NOT_FOUND', `no path '${shown}' in snapshot ${req.snapshotId}`)
  return { snapshotId: req.snapshotId, ...sink.finish() }
}

/** Selects one reading of a path spec: the folder or path, and what is under it. */
export function pathFilter (spec: PathSpec): (e: StagedEntry) => boolean {
  return e => specCovers(spec, e)
}

function showSpec (spec: PathSpec): string {
  return spec.path === undefined ? spec.folder : `${spec.folder}/${displayPath(spec.path)}`
}
