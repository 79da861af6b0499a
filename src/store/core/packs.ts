/**
 * Pack files: chunks appended one after another into files of a target size, so a store of
 * millions of chunks is a few hundred files and a commit costs one fsync.
 *
 * Layout: an 8-byte magic "HFPACK01", then records of
 *   id (32 bytes) | rawLength (u32 BE) | compressedLength (u32 BE) | zstd data
 * The catalog maps each chunk id to (pack, offset of its data, compressed length); the record
 * headers make a pack readable without the catalog (for verify and repair).
 * A pack is only ever appended to by the process that created it, and there by one writer
 * (PackWriter: each concurrent pull has its own); after a restart a new pack is started, so
 * bytes a crash left uncommitted are never mistaken for committed ones.
 * A failed write (the disk is full) or a failed pull does not wait for a restart: the
 * writer's discard() cuts its packs back to what they held at its last sync(), so a full disk
 * that fails every retry does not fill up further with dead tails, and the pack is reused.
 */
import { closeSync, constants, fsyncSync, ftruncateSync, mkdirSync, openSync, readSync, readdirSync, statSync, unlinkSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { HoldfastError } from '../../util/errors.js'

export const PACK_MAGIC = Buffer.from('HFPACK01')
export const PACK_RECORD_HEADER = 32 + 4 + 4
export const DEFAULT_PACK_BYTES = 32 * 1024 * 1024

export interface PackLocation {
  pack: string
  offset: number
  clen: number
}

const WRITE_BUFFER_BYTES = 4 * 1024 * 1024

/**
 * One appender of pack data: its own append pack, write buffer and unsynced extents. Every
 * pull that may run beside another takes its own (PackStore.acquireWriter), because discard()
 * cuts packs back to their last sync: on a shared pack, one endpoint's failed pull would cut
 * away, and the next append overwrite, another's appended but not yet committed chunks, whose
 * locations that pull would then commit.
 */
export class PackWriter {
  /** The pack appends go to now (undefined: the next append starts a new one). */
  current?: { name: string, fd: number, size: number }
  private dirty = false
  // Appends gather here and reach the file in few large writes (chunks average a few KiB).
  // Allocated at the first append: a writer that only reads costs nothing.
  private writeBuffer?: Buffer
  private buffered = 0
  private bufferedAt = 0
  /**
   * Packs appended to since the last sync(), with the length each had then: what discard()
   * cuts them back to. A pack started since then has the magic's length.
   */
  private readonly unsynced = new Map<string, number>()

  constructor (private readonly store: PackStore, private readonly targetBytes: number) {}

  /** Appends a chunk; durable only after sync(). A write that fails discards what was not synced. */
  append (id: Uint8Array, rawLength: number, compressed: Uint8Array): PackLocation {
    try {
      return this.appendRecord(id, rawLength, compressed)
    } catch (err) {
      throw this.failed(err)
    }
  }

  private appendRecord (id: Uint8Array, rawLength: number, compressed: Uint8Array): PackLocation {
    if (this.current === undefined || this.current.size + PACK_RECORD_HEADER + compressed.byteLength > this.targetBytes) this.roll()
    const cur = this.current as { name: string, fd: number, size: number }
    if (!this.unsynced.has(cur.name)) this.unsynced.set(cur.name, cur.size)
    const recordBytes = PACK_RECORD_HEADER + compressed.byteLength
    if (this.buffered + recordBytes > WRITE_BUFFER_BYTES) this.flush()
    if (this.buffered === 0) this.bufferedAt = cur.size
    if (recordBytes > WRITE_BUFFER_BYTES) {
      const header = Buffer.allocUnsafe(PACK_RECORD_HEADER)
      writeRecordHeader(header, 0, id, rawLength, compressed.byteLength)
      writeAll(cur.fd, header, cur.size)
      writeAll(cur.fd, compressed, cur.size + PACK_RECORD_HEADER)
    } else {
      this.writeBuffer ??= Buffer.allocUnsafe(WRITE_BUFFER_BYTES)
      writeRecordHeader(this.writeBuffer, this.buffered, id, rawLength, compressed.byteLength)
      this.writeBuffer.set(compressed, this.buffered + PACK_RECORD_HEADER)
      this.buffered += recordBytes
    }
    const loc = { pack: cur.name, offset: cur.size + PACK_RECORD_HEADER, clen: compressed.byteLength }
    cur.size += PACK_RECORD_HEADER + compressed.byteLength
    this.dirty = true
    return loc
  }

  /** fsyncs what was appended (the first step of the commit order, see docs/architecture.md). */
  sync (): void {
    try {
      this.flush()
      if (this.current !== undefined && this.dirty) fsyncSync(this.current.fd)
    } catch (err) {
      throw this.failed(err)
    }
    this.dirty = false
    this.unsynced.clear()
  }

  /** Whether anything was appended since the last sync() or discard(). */
  get pending (): boolean { return this.unsynced.size > 0 }

  /**
   * Drops everything this writer appended since its last sync(): the pack being appended to is
   * cut back and reused, a pack finished since is cut back (deleted if nothing of it was
   * synced). For a pull that failed before its commit; the catalog names none of these bytes.
   * If a cut fails, the append pack is given up (the next append starts a new one) and
   * start-up recovery cuts what is left.
   */
  discard (): { truncatedBytes: number } {
    this.buffered = 0
    let truncatedBytes = 0
    for (const [name, length] of this.unsynced) {
      try {
        truncatedBytes += Math.max(0, this.store.packSize(name) - length)
        if (name === this.current?.name) {
          ftruncateSync(this.current.fd, length)
          fsyncSync(this.current.fd)
          this.current.size = length
        } else if (length <= PACK_MAGIC.byteLength) {
          this.store.removePack(name)
        } else {
          cutFile(join(this.store.dir, name), length)
        }
      } catch {
        if (name === this.current?.name) this.abandonCurrent()
      }
    }
    this.unsynced.clear()
    this.dirty = false
    return { truncatedBytes }
  }

  /** After a failed write: discard what was not synced; ENOSPC/EDQUOT become STORE_FULL. */
  failed (err: unknown): unknown {
    this.discard()
    return storeWriteError(err)
  }

  /** Writes the buffered appends to the file (not fsynced). */
  flush (): void {
    if (this.buffered === 0 || this.current === undefined || this.writeBuffer === undefined) return
    writeAll(this.current.fd, this.writeBuffer.subarray(0, this.buffered), this.bufferedAt)
    this.buffered = 0
  }

  /** Finishes the append pack (written, fsynced, closed): the next append starts a new one. */
  finish (): void {
    if (this.current === undefined) return
    this.sync()
    closeSync(this.current.fd)
    this.current = undefined
  }

  private abandonCurrent (): void {
    if (this.current === undefined) return
    try { closeSync(this.current.fd) } catch {}
    this.current = undefined
  }

  private roll (): void {
    if (this.current !== undefined) {
      this.flush()
      fsyncSync(this.current.fd)
      closeSync(this.current.fd)
    }
    // time-ordered, unique even across restarts within one millisecond
    const name = `${Date.now().toString(36).padStart(9, '0')}-${randomBytes(4).toString('hex')}.pack`
    this.current = undefined
    const fd = openSync(join(this.store.dir, name), constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o600)
    try {
      writeAll(fd, PACK_MAGIC, 0)
      fsyncSync(fd)
      const dirFd = openSync(this.store.dir, constants.O_RDONLY)
      try { fsyncSync(dirFd) } finally { closeSync(dirFd) }
    } catch (err) {
      // no room even for the magic: a pack nobody names would only wait for recovery
      closeSync(fd)
      try { unlinkSync(join(this.store.dir, name)) } catch {}
      throw err
    }
    this.current = { name, fd, size: PACK_MAGIC.byteLength }
  }
}

export class PackStore {
  private readonly readFds = new Map<string, number>()
  /** Every writer made, and those no pull holds now (reused, so a pack fills before the next starts). */
  private readonly writers = new Set<PackWriter>()
  private readonly idle: PackWriter[] = []
  /** The writer of this store's own append/sync/discard (prune's repack, tests, benches). */
  private readonly own: PackWriter

  constructor (readonly dir: string, private readonly targetBytes = DEFAULT_PACK_BYTES) {
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    this.own = this.newWriter()
  }

  /**
   * A writer for one pull alone, until releaseWriter(). Concurrent pulls must not share one:
   * a failed pull's discard() would cut the other's unsynced chunks (see PackWriter).
   */
  acquireWriter (): PackWriter { return this.idle.pop() ?? this.newWriter() }

  /** Gives a writer back; what it appended and did not sync is discarded first. */
  releaseWriter (writer: PackWriter): void {
    if (writer === this.own || this.idle.includes(writer)) return
    if (writer.pending) writer.discard()
    this.idle.push(writer)
  }

  private newWriter (): PackWriter {
    const w = new PackWriter(this, this.targetBytes)
    this.writers.add(w)
    return w
  }

  /** Appends through the store's own writer; durable only after sync(). */
  append (id: Uint8Array, rawLength: number, compressed: Uint8Array): PackLocation { return this.own.append(id, rawLength, compressed) }

  /** fsyncs what the store's own writer appended. */
  sync (): void { this.own.sync() }

  /** Drops what the store's own writer appended since its last sync() (see PackWriter.discard). */
  discard (): { truncatedBytes: number } { return this.own.discard() }

  /** The packs being appended to now, by any writer. */
  appendPacks (): Set<string> {
    const names = new Set<string>()
    for (const w of this.writers) if (w.current !== undefined) names.add(w.current.name)
    return names
  }

  /** Whether a writer is appending to this pack now. */
  isAppending (pack: string): boolean { return this.writerOf(pack) !== undefined }

  private writerOf (pack: string): PackWriter | undefined {
    for (const w of this.writers) if (w.current?.name === pack) return w
    return undefined
  }

  /**
   * Finishes every pack being appended to (written, fsynced, closed), so the next append
   * starts a new one. Prune calls it, holding pulls off, before it deletes or repacks packs: a
   * pack is never deleted while it is being appended to.
   */
  finishPack (): void {
    for (const w of this.writers) w.finish()
  }

  read (loc: PackLocation): Buffer {
    return this.readInto(loc, Buffer.allocUnsafe(loc.clen))
  }

  /** `read` into the caller's buffer (its first `loc.clen` bytes; returned as a view), so a reader can reuse one. */
  readInto (loc: PackLocation, into: Buffer): Buffer {
    if (into.byteLength < loc.clen) throw new HoldfastError('STORE_INVARIANT', `a read of ${loc.clen} bytes into a buffer of ${into.byteLength}`)
    const writer = this.writerOf(loc.pack)
    if (writer !== undefined) {
      try { writer.flush() } catch (err) { throw writer.failed(err) }
    }
    let fd = this.readFds.get(loc.pack)
    if (fd === undefined) {
      if (this.readFds.size >= 128) this.closeReaders()
      try {
        fd = openSync(join(this.dir, loc.pack), constants.O_RDONLY)
      } catch (err) {
        throw new HoldfastError('STORE_CORRUPT', `pack ${loc.pack} cannot be opened: ${(err as Error).message}`, { pack: loc.pack })
      }
      this.readFds.set(loc.pack, fd)
    }
    let got = 0
    while (got < loc.clen) {
      const n = readSync(fd, into, got, loc.clen - got, loc.offset + got)
      if (n === 0) throw new HoldfastError('STORE_CORRUPT', `pack ${loc.pack} is truncated at ${loc.offset + got}`, { pack: loc.pack })
      got += n
    }
    return into.subarray(0, loc.clen)
  }

  /**
   * Start-up recovery, before anything is appended: bytes a crash left after the last
   * committed record of a pack are cut off, and packs no committed chunk points into are
   * removed. Safe because a chunk's catalog row exists only after its pack was fsynced, and
   * no other process appends to these packs. (Prune must hold off while this runs.)
   */
  recover (extents: Map<string, number>): { removedPacks: string[], truncatedBytes: number } {
    if (this.appendPacks().size > 0) throw new HoldfastError('STORE_INVARIANT', 'recover() must run before the first append')
    const removedPacks: string[] = []
    let truncatedBytes = 0
    for (const name of this.packNames()) {
      const path = join(this.dir, name)
      const end = extents.get(name)
      if (end === undefined) {
        unlinkSync(path)
        removedPacks.push(name)
        continue
      }
      const size = statSync(path).size
      if (size > end) {
        const fd = openSync(path, constants.O_RDWR)
        try {
          ftruncateSync(fd, end)
          fsyncSync(fd)
        } finally {
          closeSync(fd)
        }
        truncatedBytes += size - end
      }
    }
    if (removedPacks.length > 0) {
      const dirFd = openSync(this.dir, constants.O_RDONLY)
      try { fsyncSync(dirFd) } finally { closeSync(dirFd) }
    }
    return { removedPacks, truncatedBytes }
  }

  /**
   * Deletes a pack file (its cached reader is closed first) and fsyncs the directory. For
   * prune, once the catalog no longer names any chunk in it. Never the pack being appended to.
   */
  removePack (name: string): void {
    if (this.writerOf(name) !== undefined) throw new HoldfastError('PACK_BUSY', `pack ${name} is being appended to`)
    if (!/^[\w.-]+\.pack$/.test(name)) throw new HoldfastError('STORE_INVARIANT', `not a pack name: ${name}`)
    const fd = this.readFds.get(name)
    if (fd !== undefined) {
      closeSync(fd)
      this.readFds.delete(name)
    }
    try {
      unlinkSync(join(this.dir, name))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    const dirFd = openSync(this.dir, constants.O_RDONLY)
    try { fsyncSync(dirFd) } finally { closeSync(dirFd) }
  }

  /** A pack file's size on disk (0 if it is gone). */
  packSize (name: string): number {
    try { return statSync(join(this.dir, name)).size } catch { return 0 }
  }

  packNames (): string[] {
    return readdirSync(this.dir).filter(n => n.endsWith('.pack')).sort()
  }

  /** Syncs and closes every writer's append pack (what a pull left unsynced is discarded), then the readers. */
  close (): void {
    for (const w of this.writers) {
      if (w !== this.own && w.pending) w.discard()
      w.finish()
    }
    this.closeReaders()
  }

  /**
   * Closes the cached readers: another PackStore on this directory (prune's worker) may have
   * deleted or replaced packs, and a reader kept open would hold a deleted file's space.
   */
  dropReaders (): void { this.closeReaders() }

  private closeReaders (): void {
    for (const fd of this.readFds.values()) closeSync(fd)
    this.readFds.clear()
  }
}

function writeRecordHeader (buf: Buffer, at: number, id: Uint8Array, rawLength: number, clen: number): void {
  buf.set(id, at)
  buf.writeUInt32BE(rawLength, at + 32)
  buf.writeUInt32BE(clen, at + 36)
}

/** A write error of the store as the caller should see it: a full disk is STORE_FULL. */
export function storeWriteError (err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new HoldfastError('STORE_FULL', `store full: no space left for pack data (${code}); nothing was committed`, { errno: code }, { cause: err })
  }
  return err
}

function cutFile (path: string, length: number): void {
  const fd = openSync(path, constants.O_RDWR)
  try {
    ftruncateSync(fd, length)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}

function writeAll (fd: number, data: Uint8Array, position: number): void {
  let written = 0
  while (written < data.byteLength) written += writeSync(fd, data, written, data.byteLength - written, position + written)
}
