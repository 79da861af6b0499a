/**
 * Admin handlers for the store's read-only and maintenance commands (browse, verify, stats, …).
 * The manager registers these beside its own. Each checks its arguments (they come from a
 * local client, but still as untyped JSON) and answers with plain data the CLI renders.
 */
import type { AdminHandler } from '../../admin/admin-socket.js'
import type { Catalog } from '../../store/catalog.js'
import type { PackStore } from '../../store/packs.js'
import { DEFAULT_FIND_LIMIT, DEFAULT_LS_LIMIT, findPaths, listTree, pathVersions, resolveSnapshot } from '../../store/browse.js'
import { runCatalogTask } from '../../store/catalog-tasks.js'
import { HoldfastError } from '../../util/errors.js'

function str (args: Record<string, unknown>, key: string, required: true): string
function str (args: Record<string, unknown>, key: string, required?: false): string | undefined
function str (args: Record<string, unknown>, key: string, required = false): string | undefined {
  const v = args[key]
  if (v === undefined || v === null) {
    if (required) throw new HoldfastError('ADMIN_BAD_REQUEST', `missing '${key}'`)
    return undefined
  }
  if (typeof v !== 'string') throw new HoldfastError('ADMIN_BAD_REQUEST', `'${key}' must be a string`)
  return v
}

function int (args: Record<string, unknown>, key: string): number | undefined {
  const v = args[key]
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw new HoldfastError('ADMIN_BAD_REQUEST', `'${key}' must be an integer`)
  return v
}

export interface StoreAdminOptions {
  /**
   * Runs `fn` while no pull is in progress (and holds pulls off until it is done). Whatever
   * deletes from the store (prune) goes through this: a pull relies on the chunks the catalog
   * says the store has, from the moment it asks until it commits.
   */
  exclusive: <T>(fn: () => Promise<T>) => Promise<T>
}

export function storeAdminHandlers (catalog: Catalog, packs: PackStore, _options: StoreAdminOptions): Record<string, AdminHandler> {
  return {
    ls: async (args) => {
      const endpoint = catalog.findEndpoint(str(args, 'endpoint', true))
      const snap = resolveSnapshot(catalog, endpoint, { snapshot: int(args, 'snapshot'), at: int(args, 'at') })
      return listTree(catalog, { endpointId: endpoint.id, snapshotId: snap.id, path: str(args, 'path'), limit: int(args, 'limit') ?? DEFAULT_LS_LIMIT })
    },
    versions: async (args) => {
      const endpoint = catalog.findEndpoint(str(args, 'endpoint', true))
      return pathVersions(catalog, endpoint.id, str(args, 'path', true))
    },
    find: async (args) => {
      const ref = str(args, 'endpoint')
      const endpointId = ref === undefined ? undefined : catalog.findEndpoint(ref).id
      return findPaths(catalog, str(args, 'pattern', true), { endpointId, limit: int(args, 'limit') ?? DEFAULT_FIND_LIMIT })
    },
    // Counting and checking a whole store take seconds to minutes: they run in a worker
    // thread with their own catalog connection, beside pulls and other admin calls.
    stats: async (_args, ctx) => await runCatalogTask({ kind: 'stats', catalogFile: catalog.file }, { signal: ctx.signal }),
    verify: async (args, ctx) => {
      // The catalog names a chunk only after its pack was synced, so verify reads the pack
      // files directly, beside any pull in progress.
      const task = { kind: 'verify' as const, catalogFile: catalog.file, packsDir: packs.dir, readData: args.readData === true, limit: int(args, 'limit') }
      return await runCatalogTask(task, { signal: ctx.signal, onProgress: p => { ctx.progress(p) } })
    }
  }
}
