/**
 * Verifies batches of received chunks in worker threads.
 *
 * A batch's bytes are copied once, as each chunk arrives, into one buffer that is then
 * transferred to a worker and back (no copy either way), and the caller appends from it.
 * The batch holds nothing but numbers and that buffer: ids travel as bytes in a small buffer
 * of their own, because a Uint8Array view posted to a worker is cloned with its whole
 * backing store (for an id, a page of entries), which cost the manager's thread 1.2-1.4 s
 * over corpus A (docs/benchmarks.md). Data buffers are reused, so a pull allocates a few.
 */
import { Worker } from 'node:worker_threads'
import { availableParallelism } from 'node:os'
import { HoldfastError } from '../../util/errors.js'
import { CHUNK_ID_BYTES, toHex } from '../../model/entry.js'
import type { CheckReply, CheckRequest } from './chunk-check-worker.js'

export interface ReceivedChunk { id: Uint8Array, rawLength: number, compressed: Uint8Array }

/** A batch is sent when it holds this many chunks or bytes (a larger chunk goes alone). */
export const CHECK_BATCH_CHUNKS = 256
export const CHECK_BATCH_BYTES = 4 * 1024 * 1024
/** Spare data buffers kept for reuse (a pull has at most 5 batches out: one filling, 4 verifying); more are freed. */
const SPARE_BUFFERS = 5

/** Chunks gathered for one verification: copied in as they arrive. */
export class CheckBatch {
  /** The caller's id for each chunk (kept on this thread: appends and messages use them). */
  readonly ids: Uint8Array[] = []
  /** Per chunk: offset, compressed length, raw length. */
  readonly meta = new Uint32Array(CHECK_BATCH_CHUNKS * 3)
  readonly idBytes = new Uint8Array(CHECK_BATCH_CHUNKS * CHUNK_ID_BYTES)
  bytes = 0

  constructor (private data: ArrayBuffer) {}

  get count (): number { return this.ids.length }
  get buffer (): ArrayBuffer { return this.data }

  /** Whether the chunk belongs in this batch (otherwise send this one and start another). */
  fits (compressedLength: number): boolean {
    if (this.count >= CHECK_BATCH_CHUNKS) return false
    return this.count === 0 || this.bytes + compressedLength <= this.data.byteLength
  }

  add (chunk: ReceivedChunk): void {
    const n = chunk.compressed.byteLength
    if (!this.fits(n)) throw new HoldfastError('STORE_INVARIANT', 'chunk added to a full check batch')
    // a chunk larger than the buffer travels alone, in a buffer of its own size
    if (this.count === 0 && n > this.data.byteLength) this.data = new ArrayBuffer(n)
    new Uint8Array(this.data, this.bytes, n).set(chunk.compressed)
    const i = this.count
    this.meta[i * 3] = this.bytes
    this.meta[i * 3 + 1] = n
    this.meta[i * 3 + 2] = chunk.rawLength
    this.idBytes.set(chunk.id, i * CHUNK_ID_BYTES)
    this.ids.push(chunk.id)
    this.bytes += n
  }
}

/** A batch every chunk of which is verified: its chunks, in order, viewing the batch's buffer. */
export class VerifiedBatch {
  constructor (private readonly batch: CheckBatch, private readonly data: ArrayBuffer, private readonly onRelease: (data: ArrayBuffer) => void) {}

  get count (): number { return this.batch.count }

  chunk (i: number): ReceivedChunk {
    const m = this.batch.meta
    return { id: this.batch.ids[i], rawLength: m[i * 3 + 2], compressed: new Uint8Array(this.data, m[i * 3], m[i * 3 + 1]) }
  }

  /** Hands the buffer back for reuse: no view from chunk() may be used after. */
  release (): void { this.onRelease(this.data) }
}

export class ChunkCheckPool {
  private readonly workers: Worker[] = []
  private readonly pending = new Map<number, { resolve: (v: VerifiedBatch) => void, reject: (e: Error) => void, batch: CheckBatch }>()
  private readonly spare: ArrayBuffer[] = []
  private nextBatch = 1
  private turn = 0

  constructor (count = Math.max(1, Math.min(4, availableParallelism()))) {
    for (let i = 0; i < count; i++) {
      const worker = new Worker(new URL('./chunk-check-worker.js', import.meta.url))
      worker.on('message', (reply: CheckReply) => { this.onReply(reply) })
      worker.on('error', err => { this.failAll(err) })
      worker.unref()
      this.workers.push(worker)
    }
  }

  /** An empty batch to fill (with a reused buffer when there is one). */
  batch (): CheckBatch {
    return new CheckBatch(this.spare.pop() ?? new ArrayBuffer(CHECK_BATCH_BYTES))
  }

  /**
   * Verifies every chunk of the batch: resolves with them, or rejects with
   * CHUNK_HASH_MISMATCH (or CHUNK_TOO_LARGE). The batch's buffer belongs to the pool from
   * here on: the result's chunks view it until release().
   */
  async verify (batch: CheckBatch): Promise<VerifiedBatch> {
    const id = this.nextBatch++
    const worker = this.workers[this.turn++ % this.workers.length]
    const buffer = batch.buffer
    return await new Promise<VerifiedBatch>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, batch })
      const meta = batch.meta.slice(0, batch.count * 3)
      const ids = batch.idBytes.slice(0, batch.count * CHUNK_ID_BYTES)
      worker.postMessage({ batch: id, count: batch.count, buffer, meta: meta.buffer, ids: ids.buffer } satisfies CheckRequest, [buffer, meta.buffer, ids.buffer])
    })
  }

  async terminate (): Promise<void> {
    await Promise.all(this.workers.map(async w => await w.terminate()))
    this.failAll(new HoldfastError('ABORTED', 'verification stopped'))
    this.spare.length = 0
  }

  private onReply (reply: CheckReply): void {
    const p = this.pending.get(reply.batch)
    if (p === undefined) return
    this.pending.delete(reply.batch)
    if (reply.failure === undefined) {
      p.resolve(new VerifiedBatch(p.batch, reply.buffer, data => { this.recycle(data) }))
      return
    }
    this.recycle(reply.buffer)
    const chunkId = p.batch.ids[reply.failure.index]
    p.reject(new HoldfastError('CHUNK_HASH_MISMATCH', `chunk ${toHex(chunkId)} failed verification: ${reply.failure.message}`, { id: toHex(chunkId) }))
  }

  private recycle (data: ArrayBuffer): void {
    // only the standard size is kept: a buffer made for one large chunk is left to the GC
    if (data.byteLength === CHECK_BATCH_BYTES && this.spare.length < SPARE_BUFFERS) this.spare.push(data)
  }

  private failAll (err: Error): void {
    for (const p of this.pending.values()) p.reject(err)
    this.pending.clear()
  }
}
