/**
 * The staging workers of one staging round. The pool outlives set boundaries: every task
 * names its set, each worker keeps a segment per set, and `finishSet` closes one set's
 * segments while the next set's batches are already queued behind it (a worker handles its
 * messages in order, so a set's `finish` runs after every batch of that set sent before it).
 * Batches go to whichever worker has the fewest in flight.
 */
import { Worker } from 'node:worker_threads'
import type { FileResult, FileTask, WorkerInit, WorkerReply, WorkerRequest } from './stage-worker.js'
import { HoldfastError } from '../util/errors.js'

interface Waiter<T> { resolve: (r: T) => void, reject: (e: Error) => void }

interface Slot {
  worker: Worker
  inFlight: number
  pending: Map<number, Waiter<FileResult[]>>
  finishing: Map<number, Waiter<string[]>>
  failure?: Error
}

/**
 * Heap bounds of a staging worker. Its JS heap holds one batch's chunk metadata; the file
 * data lives in two fixed buffers outside the heap (the read buffer and the compressor's
 * output), so a small old generation is plenty and keeps an endpoint's footprint down.
 */
export const STAGE_WORKER_LIMITS = Object.freeze({ maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 32 })

export class StagingPool {
  private readonly slots: Slot[] = []
  private nextTask = 1

  constructor (count: number, init: Omit<WorkerInit, 'workerIndex'>) {
    for (let i = 0; i < count; i++) {
      const worker = new Worker(new URL('./stage-worker.js', import.meta.url), { workerData: { ...init, workerIndex: i } satisfies WorkerInit, resourceLimits: STAGE_WORKER_LIMITS })
      const slot: Slot = { worker, inFlight: 0, pending: new Map(), finishing: new Map() }
      worker.on('message', (msg: WorkerReply) => { this.onReply(slot, msg) })
      worker.on('error', err => { this.fail(slot, err) })
      worker.on('exit', code => { if (code !== 0) this.fail(slot, new HoldfastError('WORKER_FAILED', `staging worker exited with code ${code}`)) })
      this.slots.push(slot)
    }
  }

  get size (): number { return this.slots.length }

  async stage (setId: number, files: FileTask[]): Promise<FileResult[]> {
    const slot = this.slots.reduce((a, b) => (b.inFlight < a.inFlight ? b : a))
    if (slot.failure !== undefined) throw slot.failure
    const taskId = this.nextTask++
    slot.inFlight++
    return await new Promise<FileResult[]>((resolve, reject) => {
      slot.pending.set(taskId, { resolve, reject })
      slot.worker.postMessage({ kind: 'stage', taskId, setId, files } satisfies WorkerRequest)
    })
  }

  /**
   * fsyncs and closes the set's segments in every worker, after every batch of the set already
   * sent; returns the segment names written for it. Send no batch of the set after this.
   */
  async finishSet (setId: number): Promise<string[]> {
    const lists = await Promise.all(this.slots.map(async slot => await new Promise<string[]>((resolve, reject) => {
      if (slot.failure !== undefined) { reject(slot.failure); return }
      slot.finishing.set(setId, { resolve, reject })
      slot.worker.postMessage({ kind: 'finish', setId } satisfies WorkerRequest)
    })))
    return lists.flat()
  }

  async terminate (): Promise<void> {
    await Promise.all(this.slots.map(async s => await s.worker.terminate()))
  }

  private onReply (slot: Slot, msg: WorkerReply): void {
    if (msg.kind === 'staged') {
      slot.inFlight--
      const p = slot.pending.get(msg.taskId)
      slot.pending.delete(msg.taskId)
      p?.resolve(msg.results)
    } else if (msg.kind === 'finished') {
      const f = slot.finishing.get(msg.setId)
      slot.finishing.delete(msg.setId)
      f?.resolve(msg.segments)
    } else {
      this.fail(slot, new HoldfastError('WORKER_FAILED', msg.message))
    }
  }

  private fail (slot: Slot, err: Error): void {
    if (slot.failure !== undefined) return
    slot.failure = err
    for (const p of slot.pending.values()) p.reject(err)
    slot.pending.clear()
    for (const f of slot.finishing.values()) f.reject(err)
    slot.finishing.clear()
  }
}
