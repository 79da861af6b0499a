/**
 * A fixed set of staging workers for one staging round. Each worker owns its spool segments;
 * batches go to whichever worker has the fewest in flight.
 */
import { Worker } from 'node:worker_threads'
import type { FileResult, FileTask, WorkerInit, WorkerReply, WorkerRequest } from './stage-worker.js'
import { HoldfastError } from '../util/errors.js'

interface Slot {
  worker: Worker
  inFlight: number
  pending: Map<number, { resolve: (r: FileResult[]) => void, reject: (e: Error) => void }>
  finished?: { resolve: (segments: string[]) => void, reject: (e: Error) => void }
  failure?: Error
}

export class StagingPool {
  private readonly slots: Slot[] = []
  private nextTask = 1

  constructor (count: number, init: Omit<WorkerInit, 'workerIndex'>) {
    for (let i = 0; i < count; i++) {
      const worker = new Worker(new URL('./stage-worker.js', import.meta.url), { workerData: { ...init, workerIndex: i } satisfies WorkerInit, resourceLimits: { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 64 } })
      const slot: Slot = { worker, inFlight: 0, pending: new Map() }
      worker.on('message', (msg: WorkerReply) => { this.onReply(slot, msg) })
      worker.on('error', err => { this.fail(slot, err) })
      worker.on('exit', code => { if (code !== 0) this.fail(slot, new HoldfastError('WORKER_FAILED', `staging worker exited with code ${code}`)) })
      this.slots.push(slot)
    }
  }

  get size (): number { return this.slots.length }

  async stage (files: FileTask[]): Promise<FileResult[]> {
    const slot = this.slots.reduce((a, b) => (b.inFlight < a.inFlight ? b : a))
    if (slot.failure !== undefined) throw slot.failure
    const taskId = this.nextTask++
    slot.inFlight++
    return await new Promise<FileResult[]>((resolve, reject) => {
      slot.pending.set(taskId, { resolve, reject })
      slot.worker.postMessage({ kind: 'stage', taskId, files } satisfies WorkerRequest)
    })
  }

  /** fsyncs and closes every segment; returns all segment names written this round. */
  async finish (): Promise<string[]> {
    const lists = await Promise.all(this.slots.map(async slot => await new Promise<string[]>((resolve, reject) => {
      if (slot.failure !== undefined) { reject(slot.failure); return }
      slot.finished = { resolve, reject }
      slot.worker.postMessage({ kind: 'finish' } satisfies WorkerRequest)
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
      slot.finished?.resolve(msg.segments)
      slot.finished = undefined
    } else {
      this.fail(slot, new HoldfastError('WORKER_FAILED', msg.message))
    }
  }

  private fail (slot: Slot, err: Error): void {
    if (slot.failure !== undefined) return
    slot.failure = err
    for (const p of slot.pending.values()) p.reject(err)
    slot.pending.clear()
    slot.finished?.reject(err)
  }
}
