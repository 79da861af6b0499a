/**
 * The agent's spool: compressed chunks in segment files, located through the state database.
 * Reads keep a few segment descriptors open; segments go when their set is acknowledged.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readSync, unlinkSync, constants } from 'node:fs'
import { join } from 'node:path'
import type { AgentStateDb } from './state-db.js'
import type { ChunkSource, SpooledChunk } from '../protocols/fetch.js'
import { HoldfastError } from '../util/errors.js'

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
