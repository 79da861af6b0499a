/**
 * Admin handlers for the store's read-only and maintenance commands (browse, verify, stats, …).
 * The manager registers these beside its own. Requests arrive checked by the admin API's
 * decoders (src/admin/api.ts); each answers with plain data the CLI renders.
 */
import type { AdminHandlers } from '../../admin/admin-socket.js'
import type { ManagerCommands } from '../../admin/api.js'
import type { Catalog } from '../../store/core/catalog.js'
import type { PackStore } from '../../store/core/packs.js'
import { DEFAULT_FIND_LIMIT, DEFAULT_LS_LIMIT, findPaths, listTree, pathVersions, resolveSnapshot } from '../../store/queries/browse.js'
import { runCatalogTask } from '../../store/maintenance/catalog-tasks.js'
import { Mutex } from '../../util/mutex.js'
import { prune, type PruneReport } from '../../store/maintenance/prune.js'
import { describeRules, effectivePolicy, type EffectivePolicy, type RetentionRules } from '../../store/maintenance/retention.js'
import { endpointLabel } from '../../store/queries/browse.js'

export interface StoreAdminOptions {
  /**
   * Runs `fn` while no pull is in progress (and holds pulls off until it is done). Whatever
   * deletes from the store (prune) goes through this: a pull relies on the chunks the catalog
   * says the store has, from the moment it asks until it commits.
   */
  exclusive: <T>(fn: () => Promise<T>) => Promise<T>
  /** Runs `fn` while nothing deletes from the store (verify reads pack files directly). */
  shared: <T>(fn: () => Promise<T>) => Promise<T>
  /** ms since the epoch (retention's min-age and the policy's timestamps); default Date.now. */
  now?: () => number
}

export interface RetentionShow {
  global: { rules?: RetentionRules, hold: boolean, text: string, updatedAt?: number }
  endpoints: Array<{
    peerId: string
    endpoint: string
    snapshots: number
    /** What is set on the endpoint itself. */
    own?: { rules?: RetentionRules, hold: boolean, updatedAt: number }
    /** What applies to it. */
    effective: EffectivePolicy & { text: string }
  }>
}

export interface PruneResult extends PruneReport {
  /** When the request came, when prune began (after any pull in progress ended), ms waited. */
  requestedAt: number
  startedAt: number
  lockWaitMs: number
}

/** The store's commands of the manager's admin API. */
export type StoreCommands = Pick<ManagerCommands, 'ls' | 'versions' | 'find' | 'stats' | 'verify' | 'retention-show' | 'retention-set' | 'prune'>

export function storeAdminHandlers (catalog: Catalog, packs: PackStore, options: StoreAdminOptions): AdminHandlers<StoreCommands> {
  const now = options.now ?? Date.now
  // One prune (or dry run) at a time: they share the catalog connection's temp tables.
  const pruneLock = new Mutex()
  const retentionShow = (): RetentionShow => {
    const policies = catalog.retentionPolicies()
    const global = policies.find(p => p.endpointId === 0)
    const counts = new Map<number, number>()
    for (const r of catalog.db.prepare('SELECT endpoint_id, count(*) AS n FROM snapshots GROUP BY endpoint_id').all()) counts.set(Number(r.endpoint_id), Number(r.n))
    return {
      global: { rules: global?.rules, hold: global?.hold ?? false, text: describeRules(global?.rules), updatedAt: global?.updatedAt },
      endpoints: catalog.endpoints().map(e => {
        const own = policies.find(p => p.endpointId === e.id)
        const eff = effectivePolicy(global, own)
        return {
          peerId: e.peerId,
          endpoint: endpointLabel(e),
          snapshots: counts.get(e.id) ?? 0,
          own: own === undefined ? undefined : { rules: own.rules, hold: own.hold, updatedAt: own.updatedAt },
          effective: { ...eff, text: describeRules(eff.rules) }
        }
      })
    }
  }
  return {
    ls: async (req) => {
      const endpoint = catalog.findEndpoint(req.endpoint)
      const snap = resolveSnapshot(catalog, endpoint, req)
      return listTree(catalog, { endpointId: endpoint.id, snapshotId: snap.id, path: req.path, limit: req.limit ?? DEFAULT_LS_LIMIT })
    },
    versions: async (req) => pathVersions(catalog, catalog.findEndpoint(req.endpoint).id, req.path),
    find: async (req) => {
      const endpointId = req.endpoint === undefined ? undefined : catalog.findEndpoint(req.endpoint).id
      return findPaths(catalog, req.pattern, { endpointId, limit: req.limit ?? DEFAULT_FIND_LIMIT })
    },
    // Counting and checking a whole store take seconds to minutes: they run in a worker
    // thread with their own catalog connection, beside pulls and other admin calls.
    stats: async (_args, ctx) => await runCatalogTask({ kind: 'stats', catalogFile: catalog.file }, { signal: ctx.signal }),
    verify: async (req, ctx) => {
      // The catalog names a chunk only after its pack was synced, so verify reads the pack
      // files directly, beside any pull in progress.
      const task = { kind: 'verify' as const, catalogFile: catalog.file, packsDir: packs.dir, readData: req.readData === true, limit: req.limit }
      return await options.shared(async () => await runCatalogTask(task, { signal: ctx.signal, onProgress: p => { ctx.progress(p) } }))
    },
    'retention-show': async () => retentionShow(),
    'retention-set': async (req) => {
      const endpointId = req.endpoint === undefined ? 0 : catalog.findEndpoint(req.endpoint).id
      const change: { rules?: RetentionRules | null, hold?: boolean } = {}
      if (req.rules !== undefined) change.rules = req.rules
      if (req.hold !== undefined) change.hold = req.hold
      catalog.setRetentionPolicy(endpointId, change, now())
      return retentionShow()
    },
    // A dry run only reads (its catalog changes are rolled back) and runs beside pulls; a real
    // prune deletes, so it runs while no pull is in progress and holds the next one off.
    prune: async (req, ctx) => {
      const dryRun = req.dryRun === true
      const threshold = req.repackThreshold
      const requestedAt = now()
      return await pruneLock.run(async () => {
        const run = async (): Promise<PruneResult> => {
          const startedAt = now()
          const report = await prune(catalog, packs, { now: startedAt, dryRun, repackThreshold: threshold, utc: req.utc === true, signal: ctx.signal, onProgress: p => { ctx.progress(p) } })
          return { ...report, requestedAt, startedAt, lockWaitMs: startedAt - requestedAt }
        }
        // The real prune's catalog pass takes seconds on millions of versions: it runs in a
        // worker thread with its own connection and pack store, so the admin socket keeps
        // answering. No pull runs meanwhile (exclusive); this side's append pack is finished
        // first, so the worker never deletes or repacks a pack open for appending here.
        const runInWorker = async (): Promise<PruneResult> => {
          const startedAt = now()
          packs.finishPack()
          try {
            const report = await runCatalogTask({ kind: 'prune', catalogFile: catalog.file, packsDir: packs.dir, now: startedAt, repackThreshold: threshold, utc: req.utc === true }, { signal: ctx.signal, onProgress: p => { ctx.progress(p) } })
            return { ...report, requestedAt, startedAt, lockWaitMs: startedAt - requestedAt }
          } finally {
            packs.dropReaders()
          }
        }
        // A dry run stays here: it holds a write transaction it rolls back, and beside pulls
        // that must not make a pull's commit wait on another connection.
        return dryRun ? await run() : await options.exclusive(runInWorker)
      })
    }
  }
}
