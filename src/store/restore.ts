/**
 * Restore from the manager's store: an endpoint's tree as of a snapshot (whole, or one path
 * or subtree), read from the catalog and packs and written by the restore writer
 * (restore-writer/restore-sink.ts).
 */
import { toHex, type StagedEntry } from '../model/entry.js'
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
  /** "<folder>" or "<folder>/<path>": restore only that path and what is under it. */
  path?: string
  target: string
  signal?: AbortSignal
  onProgress?: (p: RestoreProgress) => void
  /** Free bytes at a path (default: statfs); a test stands in for a small file system. */
  freeSpace?: FreeSpaceProbe
}


/** A restore from the store: what the sink wrote, and which snapshot it was. */
export interface RestoreSummary extends SinkSummary {
  snapshotId: number
}

/** A ChunkProvider reading from the manager's store, re-hashing each chunk. */
export function storeChunks (catalog: Catalog, packs: PackStore): ChunkProvider {
  return async (_index, id) => {
    const loc = catalog.chunkLocation(id)
    if (loc === undefined) throw new HoldfastError('CHUNK_MISSING', `chunk ${toHex(id)} is not in the store`)
    return verifyChunk(id, packs.read(loc), loc.rawlen)
  }
}

export async function restoreSnapshot (catalog: Catalog, packs: PackStore, req: RestoreRequest): Promise<RestoreSummary> {
  prepareTarget(req.target)
  const filter = req.path === undefined ? undefined : pathFilter(req.path)
  // A restore that cannot fit says so before it writes anything (one extra pass over the tree).
  let bytes = 0
  for (const e of catalog.treeAt(req.endpointId, req.snapshotId)) if (e.type === 'file' && (filter === undefined || filter(e))) bytes += e.size
  checkFreeSpace(req.target, bytes, req.freeSpace)
  const sink = new RestoreSink({ target: req.target, signal: req.signal, onProgress: req.onProgress })
  const chunks = storeChunks(catalog, packs)
  let matched = 0
  for (const e of catalog.treeAt(req.endpointId, req.snapshotId)) {
    if (filter !== undefined && !filter(e)) continue
    matched++
    await sink.add(e, chunks)
  }
  if (filter !== undefined && matched === 0) throw new HoldfastError('PATH_NOT_FOUND', `no path '${req.path ?? ''}' in snapshot ${req.snapshotId}`)
  return { snapshotId: req.snapshotId, ...sink.finish() }
}

/** Selects "<folder>" or "<folder>/<path>" and what is under it. */
export function pathFilter (spec: string): (e: StagedEntry) => boolean {
  const trimmed = spec.replace(/^\/+|\/+$/g, '')
  const slash = trimmed.indexOf('/')
  const folder = slash < 0 ? trimmed : trimmed.slice(0, slash)
  const rel = slash < 0 ? undefined : Buffer.from(trimmed.slice(slash + 1))
  return e => {
    if (e.folder !== folder) return false
    if (rel === undefined) return true
    const p = Buffer.from(e.path.buffer, e.path.byteOffset, e.path.byteLength)
    if (p.equals(rel)) return true
    return p.length > rel.length && p[rel.length] === 0x2f && p.subarray(0, rel.length).equals(rel)
  }
}
