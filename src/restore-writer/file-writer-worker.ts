/**
 * File-writer worker for a restore from the store: verifies each chunk (zstd decompress
 * bounded by its declared length, SHA-256 against its id) and writes it into its file, so
 * that decompression, hashing and the file syscalls run on several threads beside the
 * manager's daemon thread.
 *
 * The caller (RestoreSink.addStored) has already made the parent directory and checked it:
 * the path a file is created at is /proc/self/fd/N/<name>, N being the parent's descriptor,
 * held open by the caller until this worker answers for the file (descriptors are shared by
 * the process's threads). So a parent swapped for a link is never followed here either.
 */
import { parentPort } from 'node:worker_threads'
import { closeSync, constants, fchmodSync, ftruncateSync, futimesSync, openSync, unlinkSync } from 'node:fs'
import { verifyChunk } from '../codec/chunk-codec.js'
import { HoldfastError, describeError } from '../util/errors.js'
import { writeSparse } from './sparse-write.js'

export interface WriteChunk { id: Uint8Array, offset: number, length: number, rawLength: number }

/** One part of one file: its first part opens it, its last closes it. */
export interface WriteItem {
  job: number
  /** First part: where to create the file (through the parent's descriptor). */
  path?: Uint8Array
  chunks: WriteChunk[]
  /** Last part: the length the file must have, its permission bits and mtime. */
  end?: { size: number, mode: number, mtimeS: number }
  /** The caller gave the file up (a chunk could not be read): remove what was written. */
  abort?: boolean
}
export interface WriteRequest { batch: number, buffer: ArrayBuffer, items: WriteItem[] }
export interface WriteFailure { job: number, code: string, message: string }
export interface WriteReply { batch: number, done: Array<{ job: number, bytes: number }>, failed: WriteFailure[] }

const CREATE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW

interface Open { fd: number, path: Uint8Array, position: number, dataEnd: number }
const open = new Map<number, Open>()
/** Jobs that failed here; their later parts are skipped. */
const failed = new Set<number>()

function giveUp (job: number): void {
  const f = open.get(job)
  if (f === undefined) return
  open.delete(job)
  try { closeSync(f.fd) } catch {}
  // A file that cannot be restored whole is not left behind looking restored.
  try { unlinkSync(Buffer.from(f.path.buffer, f.path.byteOffset, f.path.byteLength)) } catch {}
}

function codeOf (err: unknown): string {
  if (err instanceof HoldfastError) return err.code
  return (err as NodeJS.ErrnoException | undefined)?.code ?? 'EIO'
}

function writeItem (item: WriteItem, data: Uint8Array, reply: WriteReply): void {
  if (failed.has(item.job)) {
    if (item.end !== undefined || item.abort === true) failed.delete(item.job)
    return
  }
  if (item.abort === true) { giveUp(item.job); return }
  try {
    let f = open.get(item.job)
    if (f === undefined) {
      if (item.path === undefined) throw new HoldfastError('STORE_INVARIANT', `restore job ${item.job} has no open file`)
      const fd = openSync(Buffer.from(item.path.buffer, item.path.byteOffset, item.path.byteLength), CREATE_FLAGS, 0o600)
      f = { fd, path: item.path, position: 0, dataEnd: 0 }
      open.set(item.job, f)
    }
    for (const c of item.chunks) {
      const plain = verifyChunk(c.id, data.subarray(c.offset, c.offset + c.length), c.rawLength)
      const end = writeSparse(f.fd, plain, f.position)
      if (end > f.position) f.dataEnd = end
      f.position += plain.byteLength
    }
    if (item.end === undefined) return
    // a new file's length is what was written, unless it ends in a hole
    if (f.position > f.dataEnd) ftruncateSync(f.fd, f.position)
    if (f.position !== item.end.size) throw new HoldfastError('STORE_CORRUPT', `restored ${f.position} bytes, the entry says ${item.end.size}`)
    // through the descriptor: a path could lead elsewhere by now
    fchmodSync(f.fd, item.end.mode)
    futimesSync(f.fd, item.end.mtimeS, item.end.mtimeS)
    open.delete(item.job)
    closeSync(f.fd)
    reply.done.push({ job: item.job, bytes: f.position })
  } catch (err) {
    giveUp(item.job)
    if (item.end === undefined) failed.add(item.job)
    reply.failed.push({ job: item.job, code: codeOf(err), message: err instanceof Error ? err.message : describeError(err) })
  }
}

parentPort?.on('message', (req: WriteRequest) => {
  const data = new Uint8Array(req.buffer)
  const reply: WriteReply = { batch: req.batch, done: [], failed: [] }
  for (const item of req.items) writeItem(item, data, reply)
  parentPort?.postMessage(reply satisfies WriteReply)
})
