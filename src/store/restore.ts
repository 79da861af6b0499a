/**
 * Restore from the manager's store: an endpoint's tree as of a snapshot (whole, or one path
 * or subtree), read from the catalog and packs and written by the restore writer
 * (restore-writer/restore-sink.ts).
 */
import { CHUNK_ID_BYTES, displayPath, type StagedEntry } from '../model/entry.js'
import { parsePathSpec, specCovers, type PathSpec } from '../model/path-spec.js'
import { pathAt } from './queries/browse.js'
import { verifyChunk } from '../codec/chunk-codec.js'
import { HoldfastError } from '../util/errors.js'
import type { Catalog } from './core/catalog.js'
import type { PackLocation, PackStore } from './core/packs.js'
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

/** Pack bytes read at once: chunks of neighbouring files sit next to each other in a pack. */
const READ_WINDOW = 1024 * 1024

/**
 * Reads stored chunks through a window of their pack: one pread serves the many small chunks
 * that follow each other there (a backup appends a tree's chunks in order), instead of one
 * pread each. The pack being appended to is read chunk by chunk (its length is moving).
 *
 * One window buffer, read into again and again: what `read` returns is a view valid until the
 * next call, and the caller copies it at once (into a writer's batch, or through zstd). A new
 * 1 MiB buffer per window was a third of the daemon thread's GC time in a restore.
 */
export class PackWindow {
  private pack = ''
  private start = 0
  private end = 0
  private readonly data: Buffer
  private readonly sizes = new Map<string, number>()

  constructor (private readonly packs: PackStore, private readonly windowBytes = READ_WINDOW) {
    this.data = Buffer.allocUnsafe(windowBytes)
  }

  /** The chunk's stored bytes: a view of the window, valid until the next `read`. */
  read (loc: PackLocation): Buffer {
    if (loc.pack === this.pack && loc.offset >= this.start && loc.offset + loc.clen <= this.end) {
      return this.data.subarray(loc.offset - this.start, loc.offset - this.start + loc.clen)
    }
    if (loc.clen >= this.windowBytes || this.packs.isAppending(loc.pack)) return this.packs.read(loc)
    let size = this.sizes.get(loc.pack)
    if (size === undefined) { size = this.packs.packSize(loc.pack); this.sizes.set(loc.pack, size) }
    const clen = Math.max(loc.clen, Math.min(this.windowBytes, size - loc.offset))
    // forgotten first: a read that fails leaves no window half overwritten to serve from
    this.pack = ''
    this.packs.readInto({ pack: loc.pack, offset: loc.offset, clen }, this.data)
    this.pack = loc.pack
    this.start = loc.offset
    this.end = loc.offset + clen
    return this.data.subarray(0, loc.clen)
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
  if (filter === undefined) bytes = catalog.treeBytes(req.endpointId, req.snapshotId)
  else for (const e of catalog.treeAt(req.endpointId, req.snapshotId)) if (e.type === 'file' && filter(e)) bytes += e.size
  checkFreeSpace(req.target, bytes, req.freeSpace)
  const sink = new RestoreSink({ target: req.target, keepSetuid: req.keepSetuid, signal: req.signal, onProgress: req.onProgress })
  const window = new PackWindow(packs)
  const tree = catalog.treeAt(req.endpointId, req.snapshotId)
  let matched = 0
  try {
    // Files are written by several writer threads; directories' metadata, symlinks and hard
    // links wait for them (drain, then finish). Entries come in groups whose chunks are
    // located in one read transaction, never held across an await.
    for (let group = nextGroup(catalog, tree, req.endpointId, filter); group.length > 0; group = nextGroup(catalog, tree, req.endpointId, filter)) {
      for (const { e, locs } of group) {
        matched++
        await sink.addStored(e, index => {
          const loc = locs[index]
          if (loc instanceof Error) throw loc
          return { rawLength: loc.rawlen, compressed: window.read(loc) }
        })
      }
    }
    await sink.drain()
  } finally {
    tree.return(undefined) // ends the statement if the restore stopped part way
    await sink.dispose()
  }
  if (filter !== undefined && matched === 0) throw new HoldfastError('PATH_NOT_FOUND', `no path '${shown}' in snapshot ${req.snapshotId}`)
  return { snapshotId: req.snapshotId, ...sink.finish() }
}

/** Entries located per group: enough to amortise a transaction, little to hold. */
const GROUP_ENTRIES = 256

type Located = PackLocation & { rawlen: number }

/**
 * The next entries of the tree (those the filter keeps), each with its chunks' locations, or
 * the error locating one gave (CHUNK_MISSING, CHUNK_NOT_OWNED: thrown when that chunk is read,
 * as if looked up then).
 */
function nextGroup (catalog: Catalog, tree: Iterator<StagedEntry>, endpointId: number, filter: ((e: StagedEntry) => boolean) | undefined): Array<{ e: StagedEntry, locs: Array<Located | Error> }> {
  return catalog.readBatch(() => {
    const group: Array<{ e: StagedEntry, locs: Array<Located | Error> }> = []
    while (group.length < GROUP_ENTRIES) {
      const next = tree.next()
      if (next.done === true) break
      const e = next.value
      if (filter !== undefined && !filter(e)) continue
      const locs: Array<Located | Error> = []
      for (let i = 0; i < e.chunks.byteLength; i += CHUNK_ID_BYTES) {
        try {
          locs.push(catalog.ownedChunkLocation(endpointId, e.chunks.subarray(i, i + CHUNK_ID_BYTES)))
        } catch (err) {
          if (!(err instanceof HoldfastError)) throw err
          locs.push(err)
        }
      }
      group.push({ e, locs })
    }
    return group
  })
}

/** Selects one reading of a path spec: the folder or path, and what is under it. */
export function pathFilter (spec: PathSpec): (e: StagedEntry) => boolean {
  return e => specCovers(spec, e)
}

function showSpec (spec: PathSpec): string {
  return spec.path === undefined ? spec.folder : `${spec.folder}/${displayPath(spec.path)}`
}
