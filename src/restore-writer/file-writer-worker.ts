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
import { CHUNK_ID_BYTES } from '../model/entry.js'
import { HoldfastError, describeError } from '../util/errors.js'
import { writeSparse } from './sparse-write.js'
import { ChunkDecompressor, verifyStoredChunkWith } from '../codec/chunk-decompressor.js'

/**
 * One part of one file: its first part opens it, its last closes it. Its bytes (path, chunk
 * ids, compressed data) are all in the batch's one transferred buffer: a typed array in the
 * message itself would be cloned with the whole buffer it is a view of.
 */
export interface WriteItem {
  job: number
  /** First part: where to create the file (through the parent's descriptor), as [offset, length] in the buffer. */
  path?: [number, number]
  /**
   * Per chunk, three numbers: where its id starts in the buffer (its compressed data follows
   * the id), the compressed length, the plaintext length.
   */
  chunks: number[]
  /** Last part: the length the file must have, its permission bits and mtime. */
  end?: { size: number, mode: number, mtimeS: number }
  /** The caller gave the file up (a chunk could not be read): remove what was written. */
  abort?: boolean
}
export interface WriteRequest { batch: number, buffer: ArrayBuffer, items: WriteItem[] }
export interface WriteFailure { job: number, code: string, message: string }
export interface WriteReply { batch: number, done: Array<{ job: number, bytes: number }>, failed: WriteFailure[] }

const CREATE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW

interface Open { fd: number, path: Buffer, position: number, dataEnd: number }
const open = new Map<number, Open>()
/** Jobs that failed here; their later parts are skipped. */
const failed = new Set<number>()
/** One zstd context and output buffer for every chunk this thread verifies. */
const decompressor = new ChunkDecompressor()

function giveUp (job: number): void {
  const f = open.get(job)
  if (f === undefined) return
  open.delete(job)
  try { closeSync(f.fd) } catch {}
  // A file that cannot be restored whole is not left behind looking restored.
  try { unlinkSync(f.path) } catch {}
}

function codeOf (err: unknown): string {
  if (err instanceof HoldfastError) return err.code
  return (err as NodeJS.ErrnoException | undefined)?.code ?? 'EIO'
}

function writeItem (item: WriteItem, data: Buffer, reply: WriteReply): void {
  if (failed.has(item.job)) {
    if (item.end !== undefined || item.abort === true) failed.delete(item.job)
    return
  }
  if (item.abort === true) { giveUp(item.job); return }
  try {
    let f = open.get(item.job)
    if (f === undefined) {
      if (item.path === undefined) throw new HoldfastError('STORE_INVARIANT', `restore job ${item.job} has no open file`)
      // a copy: the batch's buffer is let go once the batch is done, the path may be needed later
      const path = Buffer.from(data.subarray(item.path[0], item.path[0] + item.path[1]))
      const fd = openSync(path, CREATE_FLAGS, 0o600)
      f = { fd, path, position: 0, dataEnd: 0 }
      open.set(item.job, f)
    }
    const chunks = item.chunks
    for (let i = 0; i + 2 < chunks.length; i += 3) {
      const at = chunks[i]
      const data0 = at + CHUNK_ID_BYTES
      const plain = verifyStoredChunkWith(decompressor, data.subarray(at, data0), data.subarray(data0, data0 + chunks[i + 1]), chunks[i + 2])
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
  const data = Buffer.from(req.buffer)
  const reply: WriteReply = { batch: req.batch, done: [], failed: [] }
  for (const item of req.items) writeItem(item, data, reply)
  parentPort?.postMessage(reply satisfies WriteReply)
})
