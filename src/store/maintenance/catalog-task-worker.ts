/** Worker thread of catalog-tasks.ts: opens its own connection and runs one task. */
import { parentPort, workerData } from 'node:worker_threads'
import { Catalog } from '../core/catalog.js'
import { storeStats } from '../queries/stats.js'
import { verifyStore } from './verify.js'
import { prune } from './prune.js'
import { PackStore } from '../core/packs.js'
import { HoldfastError, errorCode } from '../../util/errors.js'
import { TASK_CACHE_KIB, type CatalogTask, type CatalogTaskMessage } from './catalog-tasks.js'

const post = (m: CatalogTaskMessage): void => { parentPort?.postMessage(m) }

async function run (task: CatalogTask): Promise<unknown> {
  const catalog = new Catalog(task.catalogFile)
  try {
    catalog.db.exec(`PRAGMA cache_size = -${TASK_CACHE_KIB}`)
    if (task.kind === 'stats') return storeStats(catalog)
    if (task.kind === 'prune') return await runPrune(catalog, task)
    return await verifyStore(catalog, task.packsDir, { readData: task.readData, limit: task.limit, workers: task.workers, onProgress: p => { post({ progress: p }) } })
  } finally {
    catalog.close()
  }
}

async function runPrune (catalog: Catalog, task: Extract<CatalogTask, { kind: 'prune' }>): Promise<unknown> {
  const controller = new AbortController()
  parentPort?.on('message', (m: { abort?: boolean }) => { if (m.abort === true) controller.abort(new HoldfastError('ABORTED', 'prune aborted')) })
  const packs = new PackStore(task.packsDir, task.packBytes)
  try {
    return await prune(catalog, packs, { now: task.now, repackThreshold: task.repackThreshold, utc: task.utc, signal: controller.signal, onProgress: p => { post({ progress: p }) } })
  } finally {
    packs.close()
  }
}

run(workerData as CatalogTask).then(
  result => { post({ result }) },
  (err: unknown) => { post({ error: { code: errorCode(err), message: err instanceof Error ? err.message : String(err) } }) }
)
