/**
 * One staging round: scan every protected folder, stage what changed into the spool (in worker
 * threads), and seal it as one immutable staging set. The set is sealed only after its spool
 * segments are fsynced, in a single database transaction, so a crash at any point leaves either
 * no set or a whole one.
 */
import { availableParallelism } from 'node:os'
import type { Clock } from '../util/clock.js'
import type { Logger } from '../util/log.js'
import type { FolderConfig } from '../node/config.js'
import { DEFAULT_CHUNKER, type ChunkerParams } from '../chunking/fastcdc.js'
import type { SetSummary, StagedEntry } from '../model/entry.js'
import { CHUNK_ID_BYTES } from '../model/entry.js'
import { scanFolder, type ScanItem } from './scanner.js'
import type { AgentStateDb, NewSpoolChunk, StagedChange } from './state-db.js'
import type { Spool } from './spool.js'
import { StagingPool } from './worker-pool.js'
import type { FileResult } from './stage-worker.js'
import { ignoreRule } from './ignore.js'

export interface StageProgress {
  phase: 'scanning' | 'staging' | 'sealing'
  filesDone: number
  filesTotal: number
  bytesDone: number
  bytesTotal: number
}

export interface StageRoundResult {
  set?: SetSummary
  scanned: number
  changed: number
  deleted: number
  settling: number
  settledAt?: number
  /** Documents waiting for their office lock file to go. */
  locked: number
  /** Staging stopped at the spool cap; what was left waits until the manager frees space. */
  spoolFull: boolean
  /** Files left for a later round because the spool was full. */
  deferred: number
  /** Files that changed while they were read: not staged, tried again next round. */
  torn: number
  errors: number
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
}

const BATCH_FILES = 64
const BATCH_BYTES = 16 * 1024 * 1024

export class Stager {
  constructor (private readonly init: StagerInit) {}

  async stageRound (options: { signal?: AbortSignal, onProgress?: (p: StageProgress) => void } = {}): Promise<StageRoundResult> {
    const { state, clock, log } = this.init
    const now = clock.now()
    const result: StageRoundResult = { scanned: 0, changed: 0, deleted: 0, settling: 0, locked: 0, spoolFull: false, deferred: 0, torn: 0, errors: 0 }
    const work: Array<{ folder: string, item: ScanItem }> = []
    const changes: StagedChange[] = []
    options.onProgress?.({ phase: 'scanning', filesDone: 0, filesTotal: 0, bytesDone: 0, bytesTotal: 0 })
    for (const folder of this.init.folders) {
      const scan = scanFolder({ root: folder.path, tracked: state.loadTracked(folder.name), nowMs: now, settleMs: this.init.settleMs, ignore: ignoreRule(folder.ignore), signal: options.signal })
      if (scan.rootError !== undefined) {
        log.error('protected folder cannot be read; nothing in it is treated as changed or deleted', { folder: folder.path, code: scan.rootError.code })
        state.recordPathError(folder.name, new Uint8Array(0), 'FOLDER_UNREADABLE', scan.rootError.message, now)
        result.errors++
        continue
      }
      result.scanned += scan.seen
      result.settling += scan.settling
      result.locked += scan.locked
      if (scan.settledAt !== undefined) result.settledAt = Math.min(result.settledAt ?? Infinity, scan.settledAt)
      for (const p of scan.problems) {
        state.recordPathError(folder.name, p.rel, p.code, p.message, now)
        result.errors++
      }
      for (const item of scan.changed) {
        if (item.tracked.type === 'file') {
          work.push({ folder: folder.name, item })
        } else {
          changes.push({ entry: nonFileEntry(folder.name, item), tracked: item.tracked })
        }
      }
      for (const rel of scan.deleted) {
        changes.push({ entry: { folder: folder.name, path: rel, type: 'deleted', mode: 0, mtimeNs: BigInt(now) * 1_000_000n, size: 0, chunks: new Uint8Array(0) } })
      }
      result.deleted += scan.deleted.length
    }
    if (work.length === 0 && changes.length === 0) return result

    const setId = state.beginSet(now)
    const newChunks: NewSpoolChunk[] = []
    const bytesTotal = work.reduce((n, w) => n + w.item.tracked.size, 0)
    let filesDone = 0
    let bytesDone = 0
    if (work.length > 0) {
      const workers = Math.max(1, Math.min(this.init.workers > 0 ? this.init.workers : availableParallelism(), 4, work.length))
      const pool = new StagingPool(workers, {
        spoolDir: this.init.spool.dir,
        setId,
        chunker: this.init.chunker ?? DEFAULT_CHUNKER,
        niceness: this.init.niceness ?? 10,
        segmentBytes: 256 * 1024 * 1024
      })
      // The spool cap: bytes already spooled, plus what this round wrote, plus what is being
      // staged right now counted at zstd's worst case, so the cap is never crossed.
      const spooledBefore = state.spoolBytes()
      let spooledNow = 0
      let inFlightBound = 0
      const used = (): number => spooledBefore + spooledNow + inFlightBound
      try {
        const inFlight = new Set<Promise<void>>()
        let next = 0
        while (next < work.length) {
          if (options.signal?.aborted === true) throw options.signal.reason
          const batch: typeof work = []
          let batchBound = 0
          let batchRaw = 0
          while (next < work.length && batch.length < BATCH_FILES && batchRaw < BATCH_BYTES) {
            const w = work[next]
            const bound = compressedBound(w.item.tracked.size)
            if (bound > this.init.spoolCapBytes) {
              state.recordPathError(w.folder, w.item.rel, 'SPOOL_TOO_SMALL', `file of ${w.item.tracked.size} bytes is larger than the spool cap of ${this.init.spoolCapBytes}`, now)
              result.errors++
              next++
              continue
            }
            if (used() + batchBound + bound > this.init.spoolCapBytes) break
            batch.push(w)
            batchBound += bound
            batchRaw += w.item.tracked.size
            next++
          }
          if (batch.length === 0) {
            if (next >= work.length) break
            if (inFlight.size > 0) {
              // what is in flight may compress well: see what it really took, then try again
              await Promise.all(inFlight)
              continue
            }
            result.spoolFull = true
            result.deferred = work.length - next
            log.warn('spool cap reached; the rest waits until the manager pulls', { capBytes: this.init.spoolCapBytes, deferredFiles: result.deferred })
            break
          }
          const thisBatch = batch
          inFlightBound += batchBound
          const p = pool.stage(thisBatch.map(w => ({ abs: w.item.abs }))).then(results => {
            inFlightBound -= batchBound
            results.forEach((r, i) => {
              const w = thisBatch[i]
              if (r.ok) for (const c of r.chunks) spooledNow += c.clen
              this.absorb(w.folder, w.item, r, changes, newChunks, now)
              if (!r.ok) {
                if (r.code === 'TORN') {
                  result.torn++
                  // try again once it has had time to settle
                  result.settledAt = Math.min(result.settledAt ?? Infinity, now + this.init.settleMs + 1000)
                } else if (r.code !== 'ENOENT') {
                  result.errors++
                }
              }
              filesDone++
              bytesDone += w.item.tracked.size
            })
            options.onProgress?.({ phase: 'staging', filesDone, filesTotal: work.length, bytesDone, bytesTotal })
          })
          inFlight.add(p)
          void p.finally(() => inFlight.delete(p))
          if (inFlight.size >= pool.size * 2) await Promise.race(inFlight)
        }
        await Promise.all(inFlight)
        options.onProgress?.({ phase: 'sealing', filesDone, filesTotal: work.length, bytesDone, bytesTotal })
        await pool.finish()
        this.init.spool.syncDir()
      } catch (err) {
        await pool.terminate()
        state.discardSet(setId)
        this.init.spool.removeOrphans()
        throw err
      }
      await pool.terminate()
    }
    if (changes.length === 0) {
      state.discardSet(setId)
      this.init.spool.removeOrphans()
      return result
    }
    result.set = state.sealSet(setId, changes, newChunks, clock.now())
    result.changed = changes.length - result.deleted
    log.info('sealed staging set', { set: setId, entries: changes.length, bytes: result.set.rawBytes, spooled: result.set.storedBytes })
    return result
  }

  private absorb (folder: string, item: ScanItem, r: FileResult, changes: StagedChange[], newChunks: NewSpoolChunk[], now: number): void {
    if (!r.ok) {
      if (r.code !== 'ENOENT' && r.code !== 'TORN') this.init.state.recordPathError(folder, item.rel, r.code, r.message, now)
      if (r.code === 'TORN') this.init.log.info('file changed while read; will retry', { path: item.rel.toString() })
      return
    }
    const ids = new Uint8Array(r.chunks.length * CHUNK_ID_BYTES)
    r.chunks.forEach((c, i) => {
      ids.set(c.id, i * CHUNK_ID_BYTES)
      newChunks.push({ id: c.id, segment: c.segment, offset: c.offset, clen: c.clen, rawlen: c.rawlen })
    })
    const entry: StagedEntry = {
      folder,
      path: item.rel,
      type: 'file',
      mode: r.tracked.mode,
      mtimeNs: BigInt(r.tracked.mtimeNs),
      size: r.tracked.size,
      chunks: ids
    }
    changes.push({ entry, tracked: r.tracked })
  }
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

/** Most bytes zstd can produce for `size` bytes of input, cut into chunks (ZSTD_compressBound plus slack). */
function compressedBound (size: number): number {
  return size + (size >> 7) + 4096
}
