/**
 * Store verification worker (verify.ts): checks a run of one pack's chunks, in file order,
 * against the pack on disk. For each chunk the catalog places at (offset, clen):
 *   - the record lies inside the pack (a shorter pack was truncated);
 *   - the record header at offset - 40 names the chunk id, its raw length and clen;
 *   - with readData, the data decompresses (bounded by the raw length) and hashes to the id.
 * The pack is read through one window of bounded size, moving forward, so memory stays at
 * the window (or one record, if a record is larger) whatever the size of the pack.
 * Every failure is reported, not only the first.
 */
import { parentPort } from 'node:worker_threads'
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs'
import { join } from 'node:path'
import { verifyChunk } from '../../codec/chunk-codec.js'
import { HoldfastError, describeError, errorCode } from '../../util/errors.js'
import { PACK_MAGIC, PACK_RECORD_HEADER } from '../core/packs.js'

export type PackProblemKind = 'pack-bad-magic' | 'pack-truncated' | 'bad-location' | 'header-mismatch' | 'hash-mismatch'

export interface PackJob {
  job: number
  dir: string
  pack: string
  checkMagic: boolean
  readData: boolean
  /** Chunk ids, 32 bytes each, in the order of offsets. */
  ids: Uint8Array
  offsets: number[]
  clens: number[]
  rawlens: number[]
}

export interface PackJobReply {
  job: number
  /** The pack could not be opened or read (every chunk of the job is unverified). */
  unreadable?: { code: string, message: string }
  size: number
  bytesRead: number
  /** index -1: the pack as a whole. */
  problems: Array<{ index: number, kind: PackProblemKind, message: string }>
}

/** No record is this large (chunks are at most 4 MiB, and zstd adds little): a catalog row claiming more is wrong. */
export const MAX_RECORD_DATA = 64 * 1024 * 1024

const HEADER_WINDOW = 256 * 1024
const DATA_WINDOW = 8 * 1024 * 1024

let open: { pack: string, fd: number } | undefined
let window = Buffer.alloc(0)
let winStart = 0
let winEnd = 0

function fdFor (dir: string, pack: string): number {
  if (open?.pack === pack) return open.fd
  if (open !== undefined) closeSync(open.fd)
  open = undefined
  winStart = winEnd = 0
  const fd = openSync(join(dir, pack), constants.O_RDONLY)
  open = { pack, fd }
  return fd
}

/** The bytes [at, at + length) of the file (which must lie inside it), through the window. */
function bytesAt (fd: number, size: number, at: number, length: number, windowBytes: number): { buf: Buffer, read: number } {
  if (at >= winStart && at + length <= winEnd) return { buf: window.subarray(at - winStart, at - winStart + length), read: 0 }
  const want = Math.min(Math.max(length, windowBytes), size - at)
  if (window.length < want) window = Buffer.allocUnsafe(want)
  let got = 0
  while (got < want) {
    const n = readSync(fd, window, got, want - got, at + got)
    if (n === 0) break
    got += n
  }
  winStart = at
  winEnd = at + got
  if (got < length) throw new HoldfastError('PACK_TRUNCATED', `pack ended at ${at + got} while reading ${length} bytes at ${at}`)
  return { buf: window.subarray(0, length), read: got }
}

export function checkJob (job: PackJob): PackJobReply {
  const reply: PackJobReply = { job: job.job, size: 0, bytesRead: 0, problems: [] }
  let fd: number
  let size: number
  try {
    fd = fdFor(job.dir, job.pack)
    size = fstatSync(fd).size
  } catch (err) {
    reply.unreadable = { code: errorCode(err), message: describeError(err) }
    return reply
  }
  reply.size = size
  const windowBytes = job.readData ? DATA_WINDOW : HEADER_WINDOW
  try {
    if (job.checkMagic) {
      const magic = size >= PACK_MAGIC.length ? bytesAt(fd, size, 0, PACK_MAGIC.length, windowBytes) : undefined
      if (magic !== undefined) reply.bytesRead += magic.read
      if (magic === undefined || !magic.buf.equals(PACK_MAGIC)) reply.problems.push({ index: -1, kind: 'pack-bad-magic', message: `pack ${job.pack} does not start with ${PACK_MAGIC.toString()}` })
    }
    for (let i = 0; i < job.offsets.length; i++) {
      const offset = job.offsets[i]
      const clen = job.clens[i]
      const rawlen = job.rawlens[i]
      const id = job.ids.subarray(i * 32, i * 32 + 32)
      if (offset < PACK_MAGIC.length + PACK_RECORD_HEADER || clen <= 0 || clen > MAX_RECORD_DATA || rawlen < 0 || rawlen > MAX_RECORD_DATA) {
        reply.problems.push({ index: i, kind: 'bad-location', message: `the catalog places the chunk at offset ${offset}, ${clen} bytes (raw ${rawlen}): not a possible record` })
        continue
      }
      if (offset + clen > size) {
        reply.problems.push({ index: i, kind: 'pack-truncated', message: `pack ${job.pack} is ${size} bytes; the chunk's data ends at ${offset + clen}` })
        continue
      }
      const length = job.readData ? PACK_RECORD_HEADER + clen : PACK_RECORD_HEADER
      let record: Buffer
      try {
        // headers only: read ahead just as far as the next headers that fit the window, so
        // dense small records cost one read and large ones no more than their header
        let ahead = windowBytes
        const start = offset - PACK_RECORD_HEADER
        if (!job.readData && !(start >= winStart && start + length <= winEnd)) {
          let j = i
          while (j + 1 < job.offsets.length && job.offsets[j + 1] - offset + PACK_RECORD_HEADER <= HEADER_WINDOW) j++
          ahead = job.offsets[j] - offset + PACK_RECORD_HEADER
        }
        const r = bytesAt(fd, size, start, length, ahead)
        record = r.buf
        reply.bytesRead += r.read
      } catch (err) {
        reply.problems.push({ index: i, kind: 'pack-truncated', message: describeError(err) })
        continue
      }
      const headerId = record.subarray(0, 32)
      const headerRaw = record.readUInt32BE(32)
      const headerClen = record.readUInt32BE(36)
      if (!headerId.equals(id) || headerRaw !== rawlen || headerClen !== clen) {
        const what: string[] = []
        if (!headerId.equals(id)) what.push(`names chunk ${headerId.toString('hex').slice(0, 16)}…`)
        if (headerRaw !== rawlen) what.push(`raw length ${headerRaw}, the catalog says ${rawlen}`)
        if (headerClen !== clen) what.push(`length ${headerClen}, the catalog says ${clen}`)
        reply.problems.push({ index: i, kind: 'header-mismatch', message: `record header at ${offset - PACK_RECORD_HEADER} ${what.join('; ')}` })
        continue
      }
      if (job.readData) {
        try {
          verifyChunk(id, record.subarray(PACK_RECORD_HEADER), rawlen)
        } catch (err) {
          reply.problems.push({ index: i, kind: 'hash-mismatch', message: describeError(err) })
        }
      }
    }
  } catch (err) {
    reply.unreadable = { code: errorCode(err), message: describeError(err) }
  }
  return reply
}

parentPort?.on('message', (msg: PackJob | { close: true }) => {
  if ('close' in msg) {
    if (open !== undefined) closeSync(open.fd)
    open = undefined
    parentPort?.postMessage({ closed: true })
    return
  }
  parentPort?.postMessage(checkJob(msg))
})
