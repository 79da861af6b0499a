/** Worker thread of catalog-tasks.ts: opens its own connection and runs one task. */
import { parentPort, workerData } from 'node:worker_threads'
import { Catalog } from '../core/catalog.js'
import { storeStats } from '../queries/stats.js'
import { verifyStore } from './verify.js'
import { errorCode } from '../../util/errors.js'
import { TASK_CACHE_KIB, type CatalogTask, type CatalogTaskMessage } from './catalog-tasks.js'

const post = (m: CatalogTaskMessage): void => { parentPort?.postMessage(m) }

async function run (task: CatalogTask): Promise<unknown> {
  const catalog = new Catalog(task.catalogFile)
  try {
    catalog.db.exec(`PRAGMA cache_size = -${TASK_CACHE_KIB}`)
    if (task.kind === 'stats') return storeStats(catalog)
    return await verifyStore(catalog, task.packsDir, { readData: task.readData, limit: task.limit, workers: task.workers, onProgress: p => { post({ progress: p }) } })
  } finally {
    catalog.close()
  }
}

run(workerData as CatalogTask).then(
  result => { post({ result }) },
  (err: unknown) => { post({ error: { code: errorCode(err), message: err instanceof Error ? err.message : String(err) } }) }
)
