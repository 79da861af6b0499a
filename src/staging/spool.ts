/**
 * The agent's spool: compressed chunks in segment files, located through the state database.
 * Reads keep a few segment descriptors open; segments go when their set is acknowledged.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readSync, unlinkSync, constants } from 'node:fs'
import { join } from 'node:path'
import type { AgentStateDb, SpoolLocation } from './state-db.js'
import type { ChunkSource, SpooledChunk } from '../protocols/fetch.js'
import { HoldfastError } from '../util/errors.js'

/**
 * A fetch batch is read in windows of request positions holding about this many spooled
 * bytes (at least one chunk): what one batch holds in memory at a time, whatever its length.
 */
const WINDOW_BYTES = 1024 * 1024
/** Largest single read of a segment (a chunk larger than this is read alone). */
const MAX_READ_BYTES = 1024 * 1024
/**
 * Chunks this close in a segment share one read, the bytes between them read and dropped: the
 * manager asks only for what its store lacks, so a batch skips chunks here and there, and a
 * syscall costs more than a few KiB of page-cache copy.
 */
const MAX_GAP_BYTES = 16 * 1024

/** What one request position of a batch turned into. */
type Slot =
  | { kind: 'chunk', chunk: SpooledChunk }
  | { kind: 'missing' }
  /** Its segment was gone when the window was read: look it up again (it may have moved to another set's row). */
  | { kind: 'relookup' }
  | { kind: 'error', error: unknown }

interface Run { segment: string, start: number, end: number, members: number[] }

export class Spool implements ChunkSource {
  private readonly fds = new Map<string, number>()
  /**
   * Told when a chunk asked for is not here (no row, or its segment is gone): some sealed set
   * can no longer be served whole, and the agent stages its paths again.
   */
  onMissing?: (id: Uint8Array) => void

  constructor (readonly dir: string, private readonly state: AgentStateDb) {
    mkdirSync(dir, { recursive: true, mode: 0o700 })
  }

  async readChunk (id: Uint8Array): Promise<SpooledChunk | null> {
    const loc = this.state.spoolLocation(id)
    if (loc === undefined) { this.onMissing?.(id); return null }
    let fd: number
    try {
      fd = this.fd(loc.segment)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      this.onMissing?.(id)
      return null
    }
    const data = Buffer.allocUnsafe(loc.clen)
    let got = 0
    while (got < loc.clen) {
      const n = readSync(fd, data, got, loc.clen - got, loc.offset + got)
      if (n === 0) throw new HoldfastError('STORE_CORRUPT', `spool segment ${loc.segment} is shorter than the database says`)
      got += n
    }
    return { rawLength: loc.rawlen, compressed: data }
  }

  /**
   * The chunks of one fetch batch in request order, each as readChunk would give it (null:
   * not here, and onMissing is told). Locations come from one query for the whole batch; each
   * window's chunks are read in (segment, offset) order, runs of neighbours with one read.
   * A failure is thrown, and a missing chunk reported, only at its own position, so a batch
   * with a bad chunk in the middle serves everything before it exactly as one-by-one reads did.
   */
  async * readChunks (ids: Uint8Array[], signal?: AbortSignal): AsyncGenerator<SpooledChunk | null> {
    const locs = this.state.spoolLocations(ids)
    for (let start = 0; start < ids.length;) {
      signal?.throwIfAborted()
      let end = start + 1
      let bytes = locs[start]?.clen ?? 0
      while (end < ids.length && bytes + (locs[end]?.clen ?? 0) <= WINDOW_BYTES) bytes += locs[end++]?.clen ?? 0
      const slots = this.readWindow(locs, start, end)
      for (let i = start; i < end; i++) {
        const slot = slots[i - start]
        if (slot.kind === 'chunk') yield slot.chunk
        else if (slot.kind === 'missing') { this.onMissing?.(ids[i]); yield null }
        else if (slot.kind === 'relookup') yield await this.readChunk(ids[i])
        else throw slot.error
      }
      start = end
    }
  }

  /** Reads the located chunks of positions [start, end) of a batch: one read per run. */
  private readWindow (locs: Array<SpoolLocation | undefined>, start: number, end: number): Slot[] {
    const slots: Slot[] = []
    const located: number[] = []
    for (let i = start; i < end; i++) {
      slots.push({ kind: 'missing' })
      if (locs[i] !== undefined) located.push(i)
    }
    const at = (i: number): SpoolLocation => locs[i] as SpoolLocation
    located.sort((a, b) => {
      const x = at(a)
      const y = at(b)
      return x.segment < y.segment ? -1 : x.segment > y.segment ? 1 : x.offset - y.offset
    })
    const runs: Run[] = []
    for (const i of located) {
      const loc = at(i)
      const run = runs[runs.length - 1]
      const runEnd = Math.max(run?.end ?? 0, loc.offset + loc.clen)
      if (run !== undefined && run.segment === loc.segment && loc.offset <= run.end + MAX_GAP_BYTES && runEnd - run.start <= MAX_READ_BYTES) {
        run.end = runEnd
        run.members.push(i)
      } else {
        runs.push({ segment: loc.segment, start: loc.offset, end: loc.offset + loc.clen, members: [i] })
      }
    }
    for (const run of runs) {
      let fd: number
      try {
        fd = this.fd(run.segment)
      } catch (err) {
        const slot: Slot = (err as NodeJS.ErrnoException).code === 'ENOENT' ? { kind: 'relookup' } : { kind: 'error', error: err }
        for (const i of run.members) slots[i - start] = slot
        continue
      }
      const data = Buffer.allocUnsafe(run.end - run.start)
      let got = 0
      try {
        while (got < data.byteLength) {
          const n = readSync(fd, data, got, data.byteLength - got, run.start + got)
          if (n === 0) break
          got += n
        }
      } catch (err) {
        for (const i of run.members) slots[i - start] = { kind: 'error', error: err }
        continue
      }
      for (const i of run.members) {
        const loc = at(i)
        const from = loc.offset - run.start
        slots[i - start] = from + loc.clen <= got
          ? { kind: 'chunk', chunk: { rawLength: loc.rawlen, compressed: data.subarray(from, from + loc.clen) } }
          : { kind: 'error', error: new HoldfastError('STORE_CORRUPT', `spool segment ${loc.segment} is shorter than the database says`) }
      }
    }
    return slots
  }

  private fd (segment: string): number {
    let fd = this.fds.get(segment)
    if (fd === undefined) {
      if (this.fds.size >= 64) this.closeAll()
      fd = openSync(join(this.dir, segment), constants.O_RDONLY)
      this.fds.set(segment, fd)
    }
    return fd
  }

  closeAll (): void {
    for (const fd of this.fds.values()) closeSync(fd)
    this.fds.clear()
  }

  remove (segments: Iterable<string>): void {
    for (const segment of segments) {
      const fd = this.fds.get(segment)
      if (fd !== undefined) { closeSync(fd); this.fds.delete(segment) }
      try { unlinkSync(join(this.dir, segment)) } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      }
    }
  }

  /** Makes new segment names durable in the directory before the database points at them. */
  syncDir (): void {
    const fd = openSync(this.dir, constants.O_RDONLY)
    try { fsyncSync(fd) } finally { closeSync(fd) }
  }

  /** Segment files in the spool directory now. */
  segmentsPresent (): Set<string> {
    return new Set(readdirSync(this.dir).filter(name => name.endsWith('.seg')))
  }

  /** The segments a set's workers wrote (named set-<id>-w<worker>-<n>.seg). */
  segmentsOfSet (setId: number): string[] {
    const prefix = `set-${setId}-`
    return readdirSync(this.dir).filter(name => name.startsWith(prefix) && name.endsWith('.seg'))
  }

  /** Deletes segments nothing points at (left by a crash mid-staging). Returns how many. */
  removeOrphans (): number {
    const live = this.state.liveSegments()
    const orphans = readdirSync(this.dir).filter(name => name.endsWith('.seg') && !live.has(name))
    this.remove(orphans)
    return orphans.length
  }
}
