/**
 * Worker threads that verify and write restored files (file-writer-worker.ts), fed in
 * batches: each compressed chunk is copied, as it is handed over, straight into its batch's
 * one transferable buffer (so the caller may hand over a view of a buffer it reuses). All
 * parts of a file go to the same worker, in order, so a file too large for one batch is
 * written part by part and memory stays bounded by the bytes in flight, whatever the file.
 */
import { Worker } from 'node:worker_threads'
import { availableParallelism } from 'node:os'
import { HoldfastError } from '../util/errors.js'
import { CHUNK_ID_BYTES } from '../model/entry.js'
import type { WriteItem, WriteReply, WriteRequest } from './file-writer-worker.js'

/** A file's outcome: bytes written, or the worker's error (code and message). */
export type JobResult = { ok: true, bytes: number } | { ok: false, code: string, message: string }

/** A batch is sent once it holds this many bytes or files. */
const BATCH_BYTES = 1024 * 1024
const BATCH_ITEMS = 64
/** Room a batch buffer has past BATCH_BYTES, so the chunk that fills it rarely needs a bigger one. */
const BATCH_SLACK = 256 * 1024

/**
 * Compressed bytes in flight, per writer: a few batches each keeps every writer busy while
 * the caller reads the next ones, and each is held twice at worst (the pack reads it was cut
 * from, and the batch buffer until the writer's heap lets it go), so more only adds memory.
 */
const IN_FLIGHT_PER_WRITER = 4 * 1024 * 1024

/**
 * A writer's own heap holds only a batch's item list; a small young generation also makes
 * it collect the transferred batch buffers (external memory) soon after they are written.
 */
export const WRITER_LIMITS = Object.freeze({ maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 64 })

/**
 * Writer threads for the CPUs this process may use (availableParallelism follows the affinity
 * mask: taskset, cgroup cpusets): 2 to 4, but 1 on a single CPU. There a second writer only
 * competes with the first and with the daemon thread for the one CPU, and its heap and
 * batches in flight cost memory: restoring 19k files (167 MB of corpus A) through the manager
 * pinned to one CPU, 1 writer peaked at 166-171 MiB against 193-215 MiB with 2, at the same
 * user CPU time (2.9-3.3 s against 3.0-3.6 s).
 */
export function writerCount (cpus: number = availableParallelism()): number {
  return cpus <= 1 ? 1 : Math.min(4, cpus)
}

/** A worker's next batch: its items and the buffer their bytes are copied into (`bytes` used). */
interface Pending { items: WriteItem[], buf?: Buffer, bytes: number }

export class FileWriterPool {
  private readonly workers: Worker[] = []
  private readonly pending: Pending[] = []
  private readonly inFlight = new Map<number, { worker: number, bytes: number }>()
  /** Jobs the caller has not ended or aborted yet, and the worker each goes to. */
  private readonly workerOf = new Map<number, number>()
  /** Jobs whose result has not come yet (a part can fail before the caller ends the job). */
  private readonly results = new Map<number, (r: JobResult) => void>()
  private readonly roomWaiters: Array<() => void> = []
  private bytesInFlight = 0
  private nextBatch = 1
  private nextJob = 1
  private turn = 0
  private broken?: Error

  /**
   * @param maxBytesInFlight compressed bytes sent to workers and not yet written (plus what
   *   waits in unsent batches) above which `room()` waits
   */
  constructor (count = writerCount(), private readonly maxBytesInFlight = count * IN_FLIGHT_PER_WRITER) {
    for (let i = 0; i < count; i++) {
      const worker = new Worker(new URL('./file-writer-worker.js', import.meta.url), { resourceLimits: WRITER_LIMITS })
      worker.on('message', (reply: WriteReply) => { this.onReply(reply) })
      worker.on('error', err => { this.fail(err) })
      this.workers.push(worker)
      this.pending.push({ items: [], bytes: 0 })
    }
  }

  /** Starts a file created at `path`; its result comes when its last part is written. */
  begin (path: Uint8Array): { job: number, result: Promise<JobResult> } {
    const job = this.nextJob++
    const worker = this.turn++ % this.workers.length
    this.workerOf.set(job, worker)
    const result = new Promise<JobResult>(resolve => { this.results.set(job, resolve) })
    const p = this.pending[worker]
    p.items.push({ job, path: [p.bytes, path.byteLength], chunks: [] })
    append(p, path)
    return { job, result }
  }

  /** Adds a chunk (compressed, as stored) to the file's current part; its bytes are copied now. */
  chunk (job: number, id: Uint8Array, rawLength: number, compressed: Uint8Array): void {
    // the writer finds each chunk's data right after its id
    if (id.byteLength !== CHUNK_ID_BYTES) throw new HoldfastError('STORE_INVARIANT', `restore job ${job}: a chunk id of ${id.byteLength} bytes`)
    const p = this.partOf(job)
    const item = p.items[p.items.length - 1]
    item.chunks.push(p.bytes, compressed.byteLength, rawLength)
    append(p, id)
    append(p, compressed)
    if (p.bytes >= BATCH_BYTES) this.flush(this.workerOf.get(job) ?? 0)
  }

  /** The file is complete: the worker checks its length, sets mode and mtime, closes it. */
  end (job: number, size: number, mode: number, mtimeS: number): void {
    const p = this.partOf(job)
    const worker = this.workerOf.get(job) ?? 0
    this.workerOf.delete(job)
    p.items[p.items.length - 1].end = { size, mode, mtimeS }
    if (p.bytes >= BATCH_BYTES || p.items.length >= BATCH_ITEMS) this.flush(worker)
  }

  /** Gives the file up (its data could not be read): the worker removes what it wrote. */
  abort (job: number, result: JobResult): void {
    const worker = this.workerOf.get(job)
    if (worker === undefined) return
    this.workerOf.delete(job)
    this.pending[worker].items.push({ job, chunks: [], abort: true })
    this.settle(job, result)
  }

  /** Whether the caller should wait (`room()`) before reading more. */
  get full (): boolean { return this.bytesInFlight + this.pendingBytes() >= this.maxBytesInFlight }

  /** Sends what waits, then resolves once the bytes in flight are below the bound. */
  async room (): Promise<void> {
    for (let w = 0; w < this.workers.length; w++) this.flush(w)
    while (this.broken === undefined && this.bytesInFlight >= this.maxBytesInFlight / 2) {
      await new Promise<void>(resolve => { this.roomWaiters.push(resolve) })
    }
    if (this.broken !== undefined) throw this.broken
  }

  /** Sends every waiting batch now, without waiting: for a caller about to wait on a file's result. */
  send (): void {
    for (let w = 0; w < this.workers.length; w++) this.flush(w)
  }

  /** Sends everything and resolves once every batch is answered. */
  async drain (): Promise<void> {
    for (let w = 0; w < this.workers.length; w++) this.flush(w)
    while (this.broken === undefined && this.inFlight.size > 0) {
      await new Promise<void>(resolve => { this.roomWaiters.push(resolve) })
    }
    if (this.broken !== undefined) throw this.broken
  }

  async terminate (): Promise<void> {
    await Promise.all(this.workers.map(async w => await w.terminate()))
    this.fail(new HoldfastError('ABORTED', 'restore writers stopped'))
  }

  /** The batch a job's next part goes into; a job whose earlier part was sent starts a new item. */
  private partOf (job: number): Pending {
    const worker = this.workerOf.get(job)
    if (worker === undefined) throw new HoldfastError('STORE_INVARIANT', `restore job ${job} is not open`)
    const p = this.pending[worker]
    const last = p.items[p.items.length - 1]
    if (last === undefined || last.job !== job) p.items.push({ job, chunks: [] })
    return p
  }

  private pendingBytes (): number {
    let n = 0
    for (const p of this.pending) n += p.bytes
    return n
  }

  /**
   * Sends a worker's waiting batch. A file not ended yet is sent as far as it goes; its later
   * chunks go into a new item of the next batch (partOf).
   */
  private flush (worker: number): void {
    const p = this.pending[worker]
    if (p.items.length === 0) return
    // a batch of items only (an abort) has no bytes: an empty buffer is sent
    const buffer = (p.buf ?? Buffer.allocUnsafeSlow(0)).buffer as ArrayBuffer
    const batch = this.nextBatch++
    this.inFlight.set(batch, { worker, bytes: p.bytes })
    this.bytesInFlight += p.bytes
    const items = p.items
    this.pending[worker] = { items: [], bytes: 0 }
    this.workers[worker].postMessage({ batch, buffer, items } satisfies WriteRequest, [buffer])
  }

  private onReply (reply: WriteReply): void {
    const b = this.inFlight.get(reply.batch)
    if (b !== undefined) {
      this.inFlight.delete(reply.batch)
      this.bytesInFlight -= b.bytes
    }
    for (const d of reply.done) this.settle(d.job, { ok: true, bytes: d.bytes })
    for (const f of reply.failed) this.settle(f.job, { ok: false, code: f.code, message: f.message })
    this.wake()
  }

  private settle (job: number, r: JobResult): void {
    const resolve = this.results.get(job)
    if (resolve === undefined) return
    this.results.delete(job)
    resolve(r)
  }

  private wake (): void {
    for (const w of this.roomWaiters.splice(0)) w()
  }

  private fail (err: Error): void {
    this.broken ??= err
    for (const job of [...this.results.keys()]) this.settle(job, { ok: false, code: 'ABORTED', message: err.message })
    this.wake()
  }
}

/**
 * Copies bytes onto the end of a batch. Its buffer is made on first use, not zero-filled
 * (every byte used is copied over) and not from Node's pool, so it can be transferred; a chunk
 * that does not fit moves the batch into a buffer big enough.
 */
function append (p: Pending, bytes: Uint8Array): void {
  const need = p.bytes + bytes.byteLength
  if (p.buf === undefined || p.buf.byteLength < need) {
    const grown = Buffer.allocUnsafeSlow(Math.max(need, BATCH_BYTES + BATCH_SLACK))
    if (p.buf !== undefined) p.buf.copy(grown, 0, 0, p.bytes)
    p.buf = grown
  }
  p.buf.set(bytes, p.bytes)
  p.bytes = need
}
