/**
 * Admin handlers for the store's read-only and maintenance commands (browse, verify, stats, …).
 * The manager registers these beside its own.
 */
import type { AdminHandler } from '../../admin/admin-socket.js'
import type { Catalog } from '../../store/catalog.js'
import type { PackStore } from '../../store/packs.js'

export function storeAdminHandlers (_catalog: Catalog, _packs: PackStore): Record<string, AdminHandler> {
  return {}
}
