/**
 * Staging worker thread: reads files, cuts them into content-defined chunks, hashes and
 * compresses each chunk, and appends it to this worker's own spool segment. Only chunk
 * metadata goes back to the main thread, so memory stays at one read buffer per worker
 * whatever the file size. Runs at lowered CPU priority so the person at the endpoint wins.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { closeSync, constants, fstatSync, fsyncSync, openSync, readSync, writeSync } from 'node:fs'
import { setPriority } from 'node:os'
import { join } from 'node:path'
import { FastCdc, type ChunkerParams } from '../chunking/fastcdc.js'
import { chunkId, compressChunk } from '../codec/chunk-codec.js'
import { trackedFromStat } from './scanner.js'
import type { TrackedFile } from './state-db.js'
import { errnoOf, type ProblemCode } from '../util/errors.js'

export interface WorkerInit {
  spoolDir: string
  setId: number
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
  | { kind: 'stage', taskId: number, files: FileTask[] }
  | { kind: 'finish' }

export type WorkerReply =
  | { kind: 'staged', taskId: number, results: FileResult[] }
  | { kind: 'finished', segments: string[] }
  | { kind: 'failed', message: string }

const init = workerData as WorkerInit
const chunker = new FastCdc(init.chunker)
const buffer = Buffer.allocUnsafe(init.chunker.maxSize * 2)
const segments: string[] = []
let segFd = -1
let segName = ''
let segOffset = 0

try { setPriority(init.niceness) } catch { /* not permitted: run at normal priority */ }

function segmentFor (bytes: number): void {
  if (segFd >= 0 && segOffset + bytes <= init.segmentBytes) return
  if (segFd >= 0) { fsyncSync(segFd); closeSync(segFd) }
  segName = `set-${init.setId}-w${init.workerIndex}-${segments.length}.seg`
  segFd = openSync(join(init.spoolDir, segName), constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o600)
  segOffset = 0
  segments.push(segName)
}

function appendChunk (plain: Uint8Array, out: StagedChunk[]): void {
  const id = chunkId(plain)
  const compressed = compressChunk(plain)
  segmentFor(compressed.byteLength)
  let written = 0
  while (written < compressed.byteLength) written += writeSync(segFd, compressed, written, compressed.byteLength - written, segOffset + written)
  out.push({ id, segment: segName, offset: segOffset, clen: compressed.byteLength, rawlen: plain.byteLength })
  segOffset += compressed.byteLength
}

function stageFile (task: FileTask): FileResult {
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
      appendChunk(buffer.subarray(start, start + len), chunks)
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
      const results = msg.files.map(stageFile)
      parentPort?.postMessage({ kind: 'staged', taskId: msg.taskId, results } satisfies WorkerReply)
    } else {
      if (segFd >= 0) { fsyncSync(segFd); closeSync(segFd); segFd = -1 }
      parentPort?.postMessage({ kind: 'finished', segments } satisfies WorkerReply)
    }
  } catch (err) {
    parentPort?.postMessage({ kind: 'failed', message: String(err) } satisfies WorkerReply)
  }
})
