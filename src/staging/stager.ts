/**
 * One staging round: scan every protected folder a directory at a time, stage what changed
 * into the spool (in worker threads), and seal it as immutable staging sets of bounded size.
 * A set is sealed only after its spool segments are fsynced, in a single database
 * transaction, so a crash at any point leaves whole sets and at most two unsealed sets (the
 * one being sealed and the one being filled), which are thrown away on start (their changes
 * are found again by the next scan).
 *
 * One pool of staging workers serves the whole round. When a set is full the scan goes on
 * into the next set at once: the full set is sealed on this thread in the gaps, after its
 * last batches, while the workers already stage the next set's (at most one set sealing at a
 * time; sets seal in id order).
 *
 * Sets are capped (entries and bytes) so that memory stays bounded whatever the size of the
 * tree, and so that the manager can pull the first part of a large first backup while the
 * rest is still being staged.
 */
import { availableParallelism } from 'node:os'
import type { Clock } from '../util/clock.js'
import type { Logger } from '../util/log.js'
import type { FolderConfig } from '../config/config.js'
import { DEFAULT_CHUNKER, type ChunkerParams } from '../chunking/fastcdc.js'
import type { SetSummary, StagedEntry } from '../model/entry.js'
import { CHUNK_ID_BYTES } from '../model/entry.js'
import { checkFolderRoot, scanFolder, type ScanItem } from './scanner.js'
import type { AgentStateDb, StagedChange } from './state-db.js'
import { SetRows } from './set-rows.js'
import type { Spool } from './spool.js'
import { StagingPool } from './worker-pool.js'
import type { FileResult } from './stage-worker.js'
import { ignoreRule } from './ignore.js'
import { SettleTracker } from './settle.js'
import { reserveFor, statfsProbe, type FreeSpaceProbe } from './free-space.js'
import { isHoldfastError } from '../util/errors.js'
import { testPausePoint } from '../util/test-pause.js'

export interface StageProgress {
  phase: 'scanning' | 'staging' | 'sealing'
  filesDone: number
  bytesDone: number
  setsSealed: number
}

export interface StageRoundResult {
  /** The last set sealed in this round (see `sets` for all of them). */
  set?: SetSummary
  sets: SetSummary[]
  scanned: number
  changed: number
  deleted: number
  settling: number
  settledAt?: number
  /** Documents waiting for their office lock file to go. */
  locked: number
  /** Staging stopped at the spool cap; what was left waits until the manager frees space. */
  spoolFull: boolean
  /**
   * Staging stopped because the disk holding the spool reached its reserve; what was left
   * waits until space comes back.
   */
  diskLow: boolean
  /** Files left for a later round because the spool (or the disk) was full. */
  deferred: number
  /** Files that changed while they were read: not staged, tried again next round. */
  torn: number
  errors: number
  /** Most bytes the rows of the sets being filled and sealed held in memory at once. */
  peakRowBytes: number
}

export interface StagerInit {
  folders: FolderConfig[]
  state: AgentStateDb
  spool: Spool
  clock: Clock
  log: Logger
  settleMs: number
  workers: number
  chunker?: ChunkerParams
  niceness?: number
  /** Most bytes the spool may hold. */
  spoolCapBytes: number
  /** A set is sealed once it has this many entries (bounds memory on both sides). */
  maxSetEntries?: number
  /** …or this many bytes of file data. */
  maxSetBytes?: number
  /** Free space left on the spool's file system; 0 = max(1 GiB, 5% of it). */
  diskReserveBytes?: number
  /** Where free space is read (default: fs.statfs). */
  freeSpace?: FreeSpaceProbe
}

const BATCH_FILES = 64
const BATCH_BYTES = 16 * 1024 * 1024
/**
 * Batches queued per worker. Three rather than two so that a worker still has work while this
 * thread is busy in a seal's transaction. A batch in flight holds no file data on this thread
 * (workers read the files themselves), so what this bounds is the spool space reserved at
 * zstd's worst case: at most workers × 3 × 16 MiB.
 */
const BATCHES_PER_WORKER = 3
/** Staging workers when the config says 0: one per core the agent may run on, at most this. */
const MAX_DEFAULT_WORKERS = 4
export const DEFAULT_MAX_SET_ENTRIES = 20_000
export const DEFAULT_MAX_SET_BYTES = 1024 * 1024 * 1024

interface Work { folder: string, item: ScanItem, bound: number }

/** A set being filled (or sealed): the workers write its chunks into segments named after it. */
interface OpenSet {
  id: number
  /** Whether a batch of it went to the workers (then the workers have segments to close). */
  dispatched: boolean
  /** Its rows, held compactly until the seal (see set-rows.ts). */
  rows: SetRows
  /** Entries given to this set so far, staged or still in a worker. */
  assigned: number
  rawBytes: number
  inFlight: Set<Promise<void>>
}

export class Stager {
  /** When settling paths were first seen, kept from round to round (see settle.ts). */
  private readonly settle = new SettleTracker()

  constructor (private readonly init: StagerInit) {}

  async stageRound (options: { signal?: AbortSignal, onProgress?: (p: StageProgress) => void } = {}): Promise<StageRoundResult> {
    try {
      return await new StagingRound(this.init, this.settle, options.signal, options.onProgress).run()
    } finally {
      this.settle.endRound()
    }
  }
}

class StagingRound {
  private readonly result: StageRoundResult = { sets: [], scanned: 0, changed: 0, deleted: 0, settling: 0, locked: 0, spoolFull: false, diskLow: false, deferred: 0, torn: 0, errors: 0, peakRowBytes: 0 }
  private readonly now: number
  private open?: OpenSet
  /** The set being sealed (behind the set being filled), and that seal. */
  private closing?: OpenSet
  private sealing?: Promise<void>
  /** One pool for the round, made at the first batch. */
  private pool?: StagingPool
  /** Every batch in the workers, of any set: the backpressure. */
  private readonly inFlight = new Set<Promise<void>>()
  private batch: Work[] = []
  private batchBound = 0
  private batchRaw = 0
  // The spool cap: bytes already spooled, plus what this round wrote, plus what is being
  // staged right now counted at zstd's worst case, so the cap is never crossed.
  private readonly spooledBefore: number
  private spooledNow = 0
  private inFlightBound = 0
  private filesDone = 0
  private bytesDone = 0
  private readonly maxEntries: number
  private readonly maxBytes: number
  // The disk reserve: free space at the last statfs, and what this round had finished
  // writing then. Everything staged or in flight since counts at its worst case.
  private freeAtProbe = Infinity
  private writtenAtProbe = 0
  private reserve = 0

  constructor (private readonly init: StagerInit, private readonly settle: SettleTracker, private readonly signal?: AbortSignal, private readonly onProgress?: (p: StageProgress) => void) {
    this.now = init.clock.now()
    this.spooledBefore = init.state.spoolBytes()
    this.maxEntries = init.maxSetEntries ?? DEFAULT_MAX_SET_ENTRIES
    this.maxBytes = init.maxSetBytes ?? DEFAULT_MAX_SET_BYTES
    this.probeDisk()
  }

  private probeDisk (): void {
    const free = (this.init.freeSpace ?? statfsProbe).free(this.init.spool.dir)
    this.reserve = reserveFor(free.totalBytes, this.init.diskReserveBytes ?? 0)
    this.freeAtProbe = free.availBytes
    this.writtenAtProbe = this.spooledNow
  }

  /** Whether `bound` more bytes keep the disk above its reserve (in flight counted as unwritten). */
  private diskAllows (bound: number): boolean {
    const since = this.spooledNow + this.inFlightBound + this.batchBound - this.writtenAtProbe
    return this.freeAtProbe - since - bound >= this.reserve
  }

  async run (): Promise<StageRoundResult> {
    const { state, log } = this.init
    this.onProgress?.({ phase: 'scanning', filesDone: 0, bytesDone: 0, setsSealed: 0 })
    try {
      for (const folder of this.init.folders) {
        try {
          checkFolderRoot(folder.path)
        } catch (err) {
          if (!isHoldfastError(err, 'FOLDER_UNREADABLE')) throw err
          log.error('protected folder cannot be read; nothing in it is treated as changed or deleted', { folder: folder.path, errno: err.details.errno })
          state.recordPathError(folder.name, new Uint8Array(0), 'FOLDER_UNREADABLE', err.message, this.now)
          this.result.errors++
          continue
        }
        const scan = scanFolder({
          root: folder.path,
          tracked: {
            childrenOf: dir => state.trackedChildren(folder.name, dir),
            descendantsOf: dir => state.trackedDescendants(folder.name, dir)
          },
          nowMs: this.now,
          settleMs: this.init.settleMs,
          observer: { firstSeen: (key, fingerprint, now) => this.settle.firstSeen(`${folder.name}\0${key}`, fingerprint, now) },
          ignore: ignoreRule(folder.ignore),
          signal: this.signal
        })
        for (const dir of scan) {
          const r = this.result
          r.scanned += dir.seen
          r.settling += dir.settling
          r.locked += dir.locked
          if (dir.settledAt !== undefined) r.settledAt = Math.min(r.settledAt ?? Infinity, dir.settledAt)
          for (const p of dir.problems) {
            state.recordPathError(folder.name, p.rel, p.code, p.message, this.now)
            r.errors++
          }
          for (const item of dir.changed) {
            if (item.tracked.type === 'file') await this.addFile({ folder: folder.name, item, bound: compressedBound(item.tracked.size) })
            else this.addChange({ entry: nonFileEntry(folder.name, item), tracked: item.tracked })
          }
          for (const rel of dir.deleted) {
            this.addChange({ entry: { folder: folder.name, path: rel, type: 'deleted', mode: 0, mtimeNs: BigInt(this.now) * 1_000_000n, size: 0, chunks: new Uint8Array(0) } })
            r.deleted++
          }
          if (this.open !== undefined && (this.open.assigned >= this.maxEntries || this.open.rawBytes >= this.maxBytes)) await this.closeSet()
        }
      }
      await this.closeSet()
      await this.sealing
    } catch (err) {
      await this.abandon()
      throw err
    } finally {
      await this.pool?.terminate()
      this.pool = undefined
    }
    if (this.result.diskLow) log.warn('disk reserve reached; staging waits until space comes back', { reserveBytes: this.reserve, deferredFiles: this.result.deferred })
    if (this.result.spoolFull) log.warn('spool cap reached; the rest waits until the manager pulls', { capBytes: this.init.spoolCapBytes, deferredFiles: this.result.deferred })
    return this.result
  }

  private openSet (): OpenSet {
    this.open ??= { id: this.init.state.beginSet(this.now), dispatched: false, rows: new SetRows(), assigned: 0, rawBytes: 0, inFlight: new Set() }
    return this.open
  }

  private addChange (change: StagedChange): void {
    const open = this.openSet()
    open.rows.addChange(change)
    open.assigned++
    this.notePeakRows()
  }

  private notePeakRows (): void {
    const held = (this.open?.rows.heldBytes ?? 0) + (this.closing?.rows.heldBytes ?? 0)
    if (held > this.result.peakRowBytes) this.result.peakRowBytes = held
  }

  private used (): number { return this.spooledBefore + this.spooledNow + this.inFlightBound }

  private async addFile (w: Work): Promise<void> {
    const cap = this.init.spoolCapBytes
    if (w.bound > cap) {
      this.init.state.recordPathError(w.folder, w.item.rel, 'SPOOL_TOO_SMALL', `file of ${w.item.tracked.size} bytes is larger than the spool cap of ${cap}`, this.now)
      this.result.errors++
      return
    }
    if (this.result.spoolFull || this.result.diskLow) { this.result.deferred++; return }
    let reprobed = false
    while (this.used() + this.batchBound + w.bound > cap || !this.diskAllows(w.bound)) {
      if (this.batch.length > 0) { await this.dispatch(); continue }
      if (this.inFlight.size > 0) {
        // what is in flight may compress well: see what it really took, then try again
        await Promise.all(this.inFlight)
        continue
      }
      if (!this.diskAllows(w.bound) && !reprobed) {
        // nothing of ours in flight: ask the file system again before stopping
        reprobed = true
        this.probeDisk()
        continue
      }
      if (!this.diskAllows(w.bound)) this.result.diskLow = true
      else this.result.spoolFull = true
      this.result.deferred++
      return
    }
    this.batch.push(w)
    this.batchBound += w.bound
    this.batchRaw += w.item.tracked.size
    const open = this.openSet()
    open.rawBytes += w.item.tracked.size
    open.assigned++
    if (this.batch.length >= BATCH_FILES || this.batchRaw >= BATCH_BYTES) await this.dispatch()
  }

  private async dispatch (): Promise<void> {
    if (this.batch.length === 0) return
    if (this.signal?.aborted === true) throw this.signal.reason
    // others write to this disk too: look again at every batch
    this.probeDisk()
    const open = this.openSet()
    this.pool ??= new StagingPool(this.init.workers > 0 ? this.init.workers : Math.min(availableParallelism(), MAX_DEFAULT_WORKERS), {
      spoolDir: this.init.spool.dir,
      chunker: this.init.chunker ?? DEFAULT_CHUNKER,
      niceness: this.init.niceness ?? 10,
      segmentBytes: 256 * 1024 * 1024
    })
    const pool = this.pool
    open.dispatched = true
    const batch = this.batch
    const bound = this.batchBound
    this.batch = []
    this.batchBound = 0
    this.batchRaw = 0
    this.inFlightBound += bound
    const p = pool.stage(open.id, batch.map(w => ({ abs: w.item.abs }))).then(results => {
      this.inFlightBound -= bound
      results.forEach((r, i) => { this.absorb(open, batch[i], r) })
      this.onProgress?.({ phase: 'staging', filesDone: this.filesDone, bytesDone: this.bytesDone, setsSealed: this.result.sets.length })
    })
    open.inFlight.add(p)
    this.inFlight.add(p)
    void p.finally(() => { open.inFlight.delete(p); this.inFlight.delete(p) }).catch(() => {})
    testPausePoint('stage-batch')
    // Backpressure: a few batches per worker in flight, whichever set they belong to.
    if (this.inFlight.size >= pool.size * BATCHES_PER_WORKER) await Promise.race(this.inFlight)
  }

  private absorb (open: OpenSet, w: Work, r: FileResult): void {
    this.filesDone++
    this.bytesDone += w.item.tracked.size
    if (!r.ok) {
      if (r.code === 'FILE_TORN') {
        this.result.torn++
        this.init.log.info('file changed while read; will retry', { path: w.item.rel.toString() })
        // try again once it has had time to settle
        this.result.settledAt = Math.min(this.result.settledAt ?? Infinity, this.now + this.init.settleMs + 1000)
      } else if (r.code !== 'ENOENT') {
        this.init.state.recordPathError(w.folder, w.item.rel, r.code, r.message, this.now)
        this.result.errors++
      }
      return
    }
    const ids = new Uint8Array(r.chunks.length * CHUNK_ID_BYTES)
    r.chunks.forEach((c, i) => {
      ids.set(c.id, i * CHUNK_ID_BYTES)
      this.spooledNow += c.clen
      open.rows.addChunk(c)
    })
    const entry: StagedEntry = { folder: w.folder, path: w.item.rel, type: 'file', mode: r.tracked.mode, mtimeNs: BigInt(r.tracked.mtimeNs), size: r.tracked.size, chunks: ids }
    if (w.item.linkKey !== undefined) entry.linkKey = w.item.linkKey
    open.rows.addChange({ entry, tracked: r.tracked })
    this.notePeakRows()
  }

  /**
   * Closes the open set to new work and starts its seal behind the previous one; the scan goes
   * on into a new set meanwhile. Waits for the previous seal first, so at most one set is
   * sealing while one is being filled.
   */
  private async closeSet (): Promise<void> {
    await this.dispatch()
    const open = this.open
    if (open === undefined) return
    await this.sealing
    this.open = undefined
    this.closing = open
    // Sent now, so each worker closes this set's segment right after its last batch of the set
    // and before any batch of the next.
    const segments = open.dispatched && this.pool !== undefined ? this.pool.finishSet(open.id) : undefined
    // seal() is awaited later (next closeSet, the end of the round, or abandon): keep a failure
    // from being reported as unhandled in between
    segments?.catch(() => {})
    this.sealing = this.seal(open, segments)
    this.sealing.catch(() => {})
  }

  /** Seals a closed set: its batches absorbed, segments fsynced, then one transaction. */
  private async seal (open: OpenSet, segments: Promise<string[]> | undefined): Promise<void> {
    this.onProgress?.({ phase: 'sealing', filesDone: this.filesDone, bytesDone: this.bytesDone, setsSealed: this.result.sets.length })
    await Promise.all(open.inFlight)
    if (segments !== undefined) {
      await segments
      this.init.spool.syncDir()
    }
    if (open.rows.changes === 0) {
      this.init.state.discardSet(open.id)
      this.init.spool.remove(this.init.spool.segmentsOfSet(open.id))
      this.closing = undefined
      return
    }
    const rows = open.rows.finish()
    const summary = this.init.state.sealSet(open.id, rows.changes, rows.chunks, this.init.clock.now())
    this.closing = undefined
    testPausePoint('stage-sealed')
    this.result.sets.push(summary)
    this.result.set = summary
    this.result.changed += open.rows.present
    this.init.log.info('sealed staging set', { set: summary.id, entries: summary.entries, bytes: summary.rawBytes, spooled: summary.storedBytes })
  }

  /** A failed round: the sets not sealed and their segments go; sealed sets stay. */
  private async abandon (): Promise<void> {
    const open = this.open
    this.open = undefined
    await Promise.allSettled([...this.inFlight, this.sealing])
    // the workers may still hold the sets' segments open: stop them before deleting
    await this.pool?.terminate()
    this.pool = undefined
    for (const set of [this.closing, open]) {
      if (set === undefined) continue
      this.init.state.discardSet(set.id)
      this.init.spool.remove(this.init.spool.segmentsOfSet(set.id))
    }
    this.closing = undefined
  }
}

/** Most bytes zstd can produce for `size` bytes of input cut into chunks (compress bound plus slack). */
function compressedBound (size: number): number {
  return size + (size >> 7) + 4096
}

function nonFileEntry (folder: string, item: ScanItem): StagedEntry {
  const entry: StagedEntry = {
    folder,
    path: item.rel,
    type: item.tracked.type,
    mode: item.tracked.mode,
    mtimeNs: BigInt(item.tracked.mtimeNs),
    size: 0,
    chunks: new Uint8Array(0)
  }
  if (item.target !== undefined) entry.target = item.target
  return entry
}
