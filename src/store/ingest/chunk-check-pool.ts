/**
 * Verifies batches of received chunks in worker threads. A batch's bytes are copied once into
 * one transferable buffer, so handing it over costs no further copy.
 */
import { Worker } from 'node:worker_threads'
import { availableParallelism } from 'node:os'
import { HoldfastError } from '../../util/errors.js'
import { toHex } from '../../model/entry.js'
import type { CheckItem, CheckReply, CheckRequest } from './chunk-check-worker.js'

export interface ReceivedChunk { id: Uint8Array, rawLength: number, compressed: Uint8Array }

export class ChunkCheckPool {
  private readonly workers: Worker[] = []
  private readonly pending = new Map<number, { resolve: () => void, reject: (e: Error) => void, chunks: ReceivedChunk[] }>()
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

  /** Resolves when every chunk of the batch is verified; rejects with CHUNK_HASH_MISMATCH. */
  async verify (chunks: ReceivedChunk[]): Promise<void> {
    if (chunks.length === 0) return
    const total = chunks.reduce((n, c) => n + c.compressed.byteLength, 0)
    const buffer = new ArrayBuffer(total)
    const view = new Uint8Array(buffer)
    const items: CheckItem[] = []
    let offset = 0
    for (const c of chunks) {
      view.set(c.compressed, offset)
      items.push({ id: c.id, offset, length: c.compressed.byteLength, rawLength: c.rawLength })
      offset += c.compressed.byteLength
    }
    const batch = this.nextBatch++
    const worker = this.workers[this.turn++ % this.workers.length]
    await new Promise<void>((resolve, reject) => {
      this.pending.set(batch, { resolve, reject, chunks })
      worker.postMessage({ batch, buffer, items } satisfies CheckRequest, [buffer])
    })
  }

  async terminate (): Promise<void> {
    await Promise.all(this.workers.map(async w => await w.terminate()))
    this.failAll(new HoldfastError('ABORTED', 'verification stopped'))
  }

  private onReply (reply: CheckReply): void {
    const p = this.pending.get(reply.batch)
    if (p === undefined) return
    this.pending.delete(reply.batch)
    if (reply.failure === undefined) { p.resolve(); return }
    const chunk = p.chunks[reply.failure.index]
    p.reject(new HoldfastError('CHUNK_HASH_MISMATCH', `chunk ${toHex(chunk.id)} failed verification: ${reply.failure.message}`, { id: toHex(chunk.id) }))
  }

  private failAll (err: Error): void {
    for (const p of this.pending.values()) p.reject(err)
    this.pending.clear()
  }
}
