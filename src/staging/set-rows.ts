/**
 * The rows of one staging set while it fills, held as bytes until its seal.
 *
 * Why: held as objects (an entry, its tracked state, a Uint8Array for the path and for each
 * chunk id, a segment name per chunk), a set of 20k entries took ~1.1 KiB of heap per entry,
 * and up to two sets are held at once (one sealing, one filling): that, with the heap's own
 * headroom, was most of the agent's peak RSS while staging. Encoded here a row takes its own
 * bytes plus a few dozen, in blocks of at most 256 KiB, and is decoded one at a time at the
 * seal. Nothing is written to the database before the seal, so the crash rules stay as they
 * were (a set left 'staging' has no rows and is discarded on start).
 */
import type { EntryType, StagedEntry } from '../model/entry.js'
import { ENTRY_TYPES } from '../model/entry.js'
import type { NewSpoolChunk, StagedChange, TrackedFile } from './state-db.js'
import { HoldfastError } from '../util/errors.js'

/** Blocks start small (a set of a few files holds a few KiB) and double up to this. */
const FIRST_BLOCK_BYTES = 16 * 1024
const MAX_BLOCK_BYTES = 256 * 1024

const HAS_TRACKED = 1
const HAS_TARGET = 2
const HAS_LINK_KEY = 4

/** Appends and reads back length-prefixed fields in a list of fixed blocks. */
class ByteLog {
  private readonly blocks: Buffer[] = []
  private block = Buffer.alloc(0)
  private at = 0
  private used = 0

  /** Bytes held (blocks allocated), for the memory bound. */
  get heldBytes (): number { return this.used }

  /** Makes room for a record of `n` bytes in one block (a record never spans two). */
  reserve (n: number): void {
    if (this.at + n <= this.block.byteLength) return
    if (this.blocks.length > 0) this.blocks[this.blocks.length - 1] = this.block.subarray(0, this.at)
    // allocUnsafe from the pool would share slabs between sets; these are dropped whole
    const size = this.blocks.length === 0 ? FIRST_BLOCK_BYTES : Math.min(MAX_BLOCK_BYTES, this.block.byteLength * 2)
    this.block = Buffer.allocUnsafeSlow(Math.max(size, n))
    this.blocks.push(this.block)
    this.at = 0
    this.used += this.block.byteLength
  }

  u8 (v: number): void { this.at = this.block.writeUInt8(v, this.at) }
  u32 (v: number): void { this.at = this.block.writeUInt32LE(v, this.at) }
  f64 (v: number): void { this.at = this.block.writeDoubleLE(v, this.at) }
  bytes (v: Uint8Array): void { this.u32(v.byteLength); this.block.set(v, this.at); this.at += v.byteLength }
  /** Latin-1 strings only (decimal numbers, hex keys): one byte per char. */
  ascii (v: string): void {
    if (v.length > 255) throw new HoldfastError('SET_ROW_INVALID', `field too long for a set row: ${v.length} chars`)
    this.u8(v.length)
    this.at += this.block.write(v, this.at, 'latin1')
  }

  /** Closes the log for writing; returns the blocks in order, each cut to what it holds. */
  finish (): Buffer[] {
    if (this.blocks.length > 0) this.blocks[this.blocks.length - 1] = this.block.subarray(0, this.at)
    this.block = Buffer.alloc(0)
    this.at = 0
    return this.blocks
  }
}

class Reader {
  at = 0
  constructor (readonly b: Buffer) {}
  u8 (): number { return this.b.readUInt8(this.at++) }
  u32 (): number { const v = this.b.readUInt32LE(this.at); this.at += 4; return v }
  f64 (): number { const v = this.b.readDoubleLE(this.at); this.at += 8; return v }
  /** A view of the block (blocks are never written again once finished). */
  bytes (): Uint8Array { const n = this.u32(); const v = this.b.subarray(this.at, this.at + n); this.at += n; return v }
  ascii (): string { const n = this.u8(); const v = this.b.toString('latin1', this.at, this.at + n); this.at += n; return v }
}

function typeCode (t: EntryType): number {
  const i = ENTRY_TYPES.indexOf(t)
  if (i < 0) throw new HoldfastError('SET_ROW_INVALID', `unknown entry type ${String(t)}`)
  return i
}

/** Interns strings that repeat on every row (folder names, segment names) as small numbers. */
class Names {
  private readonly ids = new Map<string, number>()
  readonly list: string[] = []
  id (name: string): number {
    let i = this.ids.get(name)
    if (i === undefined) { i = this.list.length; this.list.push(name); this.ids.set(name, i) }
    return i
  }
}

/** One set's changes and new spool chunks, in the order they were added. */
export class SetRows {
  private readonly changeLog = new ByteLog()
  private readonly chunkLog = new ByteLog()
  private readonly folders = new Names()
  private readonly segments = new Names()
  /** Changes held (entries of the set). */
  changes = 0
  /** Changes that are not deletions. */
  present = 0
  chunks = 0

  /** Bytes this set's rows hold in memory. */
  get heldBytes (): number { return this.changeLog.heldBytes + this.chunkLog.heldBytes }

  addChange ({ entry, tracked }: StagedChange): void {
    const log = this.changeLog
    const linkKey = entry.linkKey === undefined ? undefined : Buffer.from(entry.linkKey, 'utf8')
    // fixed fields 18 + mtime ≤ 256, four length prefixes 16, tracked's fixed 13 + three strings ≤ 3 × 256
    log.reserve(320 + entry.path.byteLength + entry.chunks.byteLength + (entry.target?.byteLength ?? 0) + (linkKey?.byteLength ?? 0) + (tracked === undefined ? 0 : 16 + 3 * 256))
    log.u8((tracked === undefined ? 0 : HAS_TRACKED) | (entry.target === undefined ? 0 : HAS_TARGET) | (linkKey === undefined ? 0 : HAS_LINK_KEY))
    log.u32(this.folders.id(entry.folder))
    log.u8(typeCode(entry.type))
    log.u32(entry.mode)
    // decimal: a file stamped centuries ahead has an mtime past int64 nanoseconds
    log.ascii(entry.mtimeNs.toString())
    log.f64(entry.size)
    log.bytes(entry.path)
    log.bytes(entry.chunks)
    if (entry.target !== undefined) log.bytes(entry.target)
    if (linkKey !== undefined) log.bytes(linkKey)
    if (tracked !== undefined) {
      log.u8(typeCode(tracked.type))
      log.u32(tracked.mode)
      log.f64(tracked.size)
      log.ascii(tracked.mtimeNs)
      log.ascii(tracked.ctimeNs)
      log.ascii(tracked.ino)
    }
    this.changes++
    if (entry.type !== 'deleted') this.present++
  }

  addChunk (c: NewSpoolChunk): void {
    const log = this.chunkLog
    log.reserve(4 + c.id.byteLength + 4 + 8 + 4 + 4)
    log.bytes(c.id)
    log.u32(this.segments.id(c.segment))
    log.f64(c.offset)
    log.u32(c.clen)
    log.u32(c.rawlen)
    this.chunks++
  }

  /** Closes the set to new rows: its changes, then its chunks, each decoded as it is read. */
  finish (): { changes: Iterable<StagedChange>, chunks: Iterable<NewSpoolChunk> } {
    const changeBlocks = this.changeLog.finish()
    const chunkBlocks = this.chunkLog.finish()
    const folders = this.folders.list
    const segments = this.segments.list
    return {
      changes: { * [Symbol.iterator] () { for (const b of changeBlocks) yield * readChanges(b, folders) } },
      chunks: { * [Symbol.iterator] () { for (const b of chunkBlocks) yield * readChunks(b, segments) } }
    }
  }
}

function * readChanges (b: Buffer, folders: string[]): Generator<StagedChange> {
  const r = new Reader(b)
  while (r.at < b.byteLength) {
    const flags = r.u8()
    const entry: StagedEntry = {
      folder: folders[r.u32()],
      type: ENTRY_TYPES[r.u8()],
      mode: r.u32(),
      mtimeNs: BigInt(r.ascii()),
      size: r.f64(),
      path: r.bytes(),
      chunks: r.bytes()
    }
    if ((flags & HAS_TARGET) !== 0) entry.target = r.bytes()
    if ((flags & HAS_LINK_KEY) !== 0) entry.linkKey = Buffer.from(r.bytes()).toString('utf8')
    if ((flags & HAS_TRACKED) === 0) { yield { entry }; continue }
    const tracked: TrackedFile = { type: ENTRY_TYPES[r.u8()], mode: r.u32(), size: r.f64(), mtimeNs: r.ascii(), ctimeNs: r.ascii(), ino: r.ascii() }
    yield { entry, tracked }
  }
}

function * readChunks (b: Buffer, segments: string[]): Generator<NewSpoolChunk> {
  const r = new Reader(b)
  while (r.at < b.byteLength) {
    yield { id: r.bytes(), segment: segments[r.u32()], offset: r.f64(), clen: r.u32(), rawlen: r.u32() }
  }
}
