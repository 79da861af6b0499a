/**
 * Long catalog work (stats, verify, prune) runs in a worker thread with its own connection to the
 * catalog, so the manager's thread keeps pulling and answering while a store of millions of
 * rows is counted or checked. WAL lets the worker read beside the manager's commits; its temp
 * tables are its own, so two such tasks never meet. Progress and the result come back as
 * messages; an abort (the admin client went away, the manager stops) ends the worker. Prune
 * is asked to stop instead (between packs, as its crash-safe order allows) and answers: a
 * worker killed inside a catalog transaction could leave its connection holding the lock.
 */
import { Worker } from 'node:worker_threads'
import { HoldfastError, type HoldfastErrorCode } from '../../util/errors.js'
import type { StoreStats } from '../queries/stats.js'
import type { VerifyProgress, VerifyReport } from './verify.js'
import type { PruneProgress, PruneReport } from './prune.js'

export type CatalogTask =
  | { kind: 'stats', catalogFile: string }
  | { kind: 'verify', catalogFile: string, packsDir: string, readData: boolean, limit?: number, workers?: number }
  /**
   * A real prune (not a dry run). The caller holds pulls off and has finished its own append
   * pack; the worker appends repacked chunks to a pack of its own.
   */
  | { kind: 'prune', catalogFile: string, packsDir: string, packBytes?: number, now: number, repackThreshold?: number, utc?: boolean }

export type CatalogTaskMessage =
  | { progress: VerifyProgress | PruneProgress }
  | { result: unknown }
  | { error: { code: string, message: string } }

/** Page cache of the task's connection: sorts and lookups over millions of rows stay in memory up to this. */
export const TASK_CACHE_KIB = 64 * 1024

export async function runCatalogTask (task: { kind: 'stats', catalogFile: string }, options?: TaskOptions): Promise<StoreStats>
export async function runCatalogTask (task: Extract<CatalogTask, { kind: 'verify' }>, options?: TaskOptions<VerifyProgress>): Promise<VerifyReport>
export async function runCatalogTask (task: Extract<CatalogTask, { kind: 'prune' }>, options?: TaskOptions<PruneProgress>): Promise<PruneReport>
export async function runCatalogTask (task: CatalogTask, options: TaskOptions = {}): Promise<unknown> {
  const worker = new Worker(new URL('./catalog-task-worker.js', import.meta.url), { workerData: task })
  let settled = false
  let onAbort = (): void => {}
  try {
    return await new Promise<unknown>((resolve, reject) => {
      const settle = (fn: () => void): void => { if (!settled) { settled = true; fn() } }
      onAbort = () => {
        // prune stops at its next safe point and answers with the abort
        if (task.kind === 'prune') { worker.postMessage({ abort: true }); return }
        settle(() => { reject(options.signal?.reason ?? new HoldfastError('ABORTED', `${task.kind} aborted`)) })
      }
      if (options.signal?.aborted === true) { onAbort(); return }
      options.signal?.addEventListener('abort', onAbort, { once: true })
      worker.on('message', (m: CatalogTaskMessage) => {
        if ('progress' in m) { if (!settled) options.onProgress?.(m.progress); return }
        if ('result' in m) { settle(() => { resolve(m.result) }); return }
        settle(() => { reject(new HoldfastError(m.error.code as HoldfastErrorCode, m.error.message)) })
      })
      worker.on('error', err => { settle(() => { reject(err) }) })
      worker.on('exit', code => { settle(() => { reject(new HoldfastError('ABORTED', `${task.kind} worker exited (${code}) without an answer`)) }) })
    })
  } finally {
    options.signal?.removeEventListener('abort', onAbort)
    await worker.terminate()
  }
}

export interface TaskOptions<P = VerifyProgress | PruneProgress> {
  signal?: AbortSignal
  /** Progress of the task's kind (a method: the implementation passes it on unnarrowed). */
  onProgress? (p: P): void
}
