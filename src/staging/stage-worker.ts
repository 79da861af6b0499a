/**
 * Staging worker thread: reads files, cuts them into content-defined chunks, hashes and
 * compresses each chunk, and appends it to this worker's own spool segment for the task's set.
 * Only chunk metadata goes back to the main thread, so memory stays at one read buffer and one
 * compression buffer per worker whatever the file size. Runs at lowered CPU priority so the
 * person at the endpoint wins.
 *
 * One worker serves a whole staging round: each task names its set, and `finish` for a set
 * fsyncs and closes that set's segment while later tasks (the next set's) keep coming.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { closeSync, constants, fstatSync, fsyncSync, openSync, readSync, writeSync } from 'node:fs'
import { setPriority } from 'node:os'
import { join } from 'node:path'
import { FastCdc, type ChunkerParams } from '../chunking/fastcdc.js'
import { chunkId, ZSTD_LEVEL } from '../codec/chunk-codec.js'
import { ChunkCompressor } from '../codec/chunk-compressor.js'
import { trackedFromStat } from './scanner.js'
import type { TrackedFile } from './state-db.js'
import { errnoOf, type ProblemCode } from '../util/errors.js'

export interface WorkerInit {
  spoolDir: string
  workerIndex: number
  chunker: ChunkerParams
  niceness: number
  segmentBytes: number
}

export interface FileTask { abs: Uint8Array }

export interface StagedChunk { id: Uint8Array, segment: string, offset: number, clen: number, rawlen: number }

export type FileResult =
  | { ok: true, chunks: StagedChunk[], tracked: TrackedFile }
  | { ok: false, code: ProblemCode, message: string }

export type WorkerRequest =
  | { kind: 'stage', taskId: number, setId: number, files: FileTask[] }
  | { kind: 'finish', setId: number }

export type WorkerReply =
  | { kind: 'staged', taskId: number, results: FileResult[] }
  | { kind: 'finished', setId: number, segments: string[] }
  | { kind: 'failed', message: string }

const init = workerData as WorkerInit
const chunker = new FastCdc(init.chunker)
const buffer = Buffer.allocUnsafe(init.chunker.maxSize * 2)
// one zstd context for every chunk this worker compresses (see chunk-compressor.ts)
const compressor = new ChunkCompressor(ZSTD_LEVEL, init.chunker.maxSize)

/** The segment this worker is writing for one set, and the ones it finished for it. */
interface SetSegments { fd: number, name: string, offset: number, names: string[] }
const sets = new Map<number, SetSegments>()

try { setPriority(init.niceness) } catch { /* not permitted: run at normal priority */ }

function segmentFor (setId: number, bytes: number): SetSegments {
  let seg = sets.get(setId)
  if (seg !== undefined && seg.fd >= 0 && seg.offset + bytes <= init.segmentBytes) return seg
  if (seg === undefined) { seg = { fd: -1, name: '', offset: 0, names: [] }; sets.set(setId, seg) }
  if (seg.fd >= 0) { fsyncSync(seg.fd); closeSync(seg.fd) }
  seg.name = `set-${setId}-w${init.workerIndex}-${seg.names.length}.seg`
  seg.fd = openSync(join(init.spoolDir, seg.name), constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o600)
  seg.offset = 0
  seg.names.push(seg.name)
  return seg
}

function appendChunk (setId: number, plain: Uint8Array, out: StagedChunk[]): void {
  const id = chunkId(plain)
  // a view of the compressor's buffer: written out before the next chunk is compressed
  const compressed = compressor.compressView(plain)
  const seg = segmentFor(setId, compressed.byteLength)
  let written = 0
  while (written < compressed.byteLength) written += writeSync(seg.fd, compressed, written, compressed.byteLength - written, seg.offset + written)
  out.push({ id, segment: seg.name, offset: seg.offset, clen: compressed.byteLength, rawlen: plain.byteLength })
  seg.offset += compressed.byteLength
}

/** fsyncs and closes the set's open segment; returns every segment written for the set. */
function finishSet (setId: number): string[] {
  const seg = sets.get(setId)
  if (seg === undefined) return []
  sets.delete(setId)
  if (seg.fd >= 0) { fsyncSync(seg.fd); closeSync(seg.fd) }
  return seg.names
}

function stageFile (setId: number, task: FileTask): FileResult {
  let fd: number
  try {
    fd = openSync(Buffer.from(task.abs), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK)
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    return { ok: false, code: errnoOf(e), message: e.message }
  }
  try {
    const before = fstatSync(fd, { bigint: true })
    if (!before.isFile()) return { ok: false, code: 'FILE_CHANGED_TYPE', message: 'no longer a regular file' }
    const chunks: StagedChunk[] = []
    let filled = 0
    let start = 0
    let eof = false
    let total = 0
    for (;;) {
      if (!eof && filled < buffer.length) {
        const n = readSync(fd, buffer, filled, buffer.length - filled, null)
        if (n === 0) eof = true
        filled += n
        total += n
        if (!eof && filled < buffer.length) continue
      }
      if (start >= filled && eof) break
      const len = chunker.cut(buffer, start, filled, eof)
      if (len < 0) {
        buffer.copy(buffer, 0, start, filled)
        filled -= start
        start = 0
        continue
      }
      if (len === 0) break
      appendChunk(setId, buffer.subarray(start, start + len), chunks)
      start += len
      if (start >= filled && eof) break
    }
    const after = fstatSync(fd, { bigint: true })
    if (after.size !== before.size || after.mtimeNs !== before.mtimeNs || after.ctimeNs !== before.ctimeNs || BigInt(total) !== before.size) {
      // Torn: the file changed while we read it. Drop this copy; the next scan tries again.
      return { ok: false, code: 'FILE_TORN', message: 'file changed while it was read' }
    }
    return { ok: true, chunks, tracked: trackedFromStat(before) }
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    return { ok: false, code: errnoOf(e), message: e.message }
  } finally {
    closeSync(fd)
  }
}

parentPort?.on('message', (msg: WorkerRequest) => {
  try {
    if (msg.kind === 'stage') {
      const results = msg.files.map(task => stageFile(msg.setId, task))
      parentPort?.postMessage({ kind: 'staged', taskId: msg.taskId, results } satisfies WorkerReply)
    } else {
      parentPort?.postMessage({ kind: 'finished', setId: msg.setId, segments: finishSet(msg.setId) } satisfies WorkerReply)
    }
  } catch (err) {
    parentPort?.postMessage({ kind: 'failed', message: String(err) } satisfies WorkerReply)
  }
})
