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
import type { PackLocation, PackStore } from './core/packs.js'
import { checkFreeSpace, type FreeSpaceProbe } from '../restore-writer/free-space.js'
import { RestoreSink, prepareTarget, type ChunkProvider, type RestoreProgress, type SinkSummary, type StoredChunkReader } from '../restore-writer/restore-sink.js'

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

/** Pack bytes read at once: chunks of neighbouring files sit next to each other in a pack. */
const READ_WINDOW = 1024 * 1024

/**
 * Reads stored chunks through a window of their pack: one pread serves the many small chunks
 * that follow each other there (a backup appends a tree's chunks in order), instead of one
 * pread each. The pack being appended to is read chunk by chunk (its length is moving).
 */
export class PackWindow {
  private pack = ''
  private start = 0
  private data: Buffer = Buffer.alloc(0)
  private readonly sizes = new Map<string, number>()

  constructor (private readonly packs: PackStore, private readonly windowBytes = READ_WINDOW) {}

  read (loc: PackLocation): Buffer {
    if (loc.pack === this.pack && loc.offset >= this.start && loc.offset + loc.clen <= this.start + this.data.byteLength) {
      return this.data.subarray(loc.offset - this.start, loc.offset - this.start + loc.clen)
    }
    if (loc.clen >= this.windowBytes || loc.pack === this.packs.currentPack()) return this.packs.read(loc)
    let size = this.sizes.get(loc.pack)
    if (size === undefined) { size = this.packs.packSize(loc.pack); this.sizes.set(loc.pack, size) }
    const clen = Math.max(loc.clen, Math.min(this.windowBytes, size - loc.offset))
    // a new buffer each time: slices of the last window may still wait to be sent to a writer
    this.data = this.packs.read({ pack: loc.pack, offset: loc.offset, clen })
    this.pack = loc.pack
    this.start = loc.offset
    return this.data.subarray(0, loc.clen)
  }
}

/**
 * The store's chunks for `addStored`: only chunks the endpoint owns (CHUNK_NOT_OWNED
 * otherwise), as stored; the restore writers verify them.
 */
export function storedChunks (catalog: Catalog, packs: PackStore, endpointId: number): StoredChunkReader {
  const window = new PackWindow(packs)
  return (_index, id) => {
    const loc = catalog.ownedChunkLocation(endpointId, id)
    return { rawLength: loc.rawlen, compressed: window.read(loc) }
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
  const chunks = storedChunks(catalog, packs, req.endpointId)
  let matched = 0
  try {
    // files are written by several writer threads; directories' metadata, symlinks and hard
    // links wait for them (drain, then finish)
    for (const e of catalog.treeAt(req.endpointId, req.snapshotId)) {
      if (filter !== undefined && !filter(e)) continue
      matched++
      await sink.addStored(e, chunks)
    }
    await sink.drain()
  } finally {
    await sink.dispose()
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
