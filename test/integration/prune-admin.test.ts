/**
 * Prune through the manager's admin handlers on a real catalog of many file versions, over a
 * real admin socket: the catalog pass runs off the main thread, so the socket keeps answering
 * (`status`) while a prune runs, and the prune still does its work.
 */
import { strict as assert } from 'node:assert'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AdminServer, adminCall } from '../../src/admin/admin-socket.js'
import { Catalog } from '../../src/store/core/catalog.js'
import { PackStore } from '../../src/store/core/packs.js'
import { storeAdminHandlers, type StoreCommands } from '../../src/roles/manager/store-admin.js'
import { MANAGER_API } from '../../src/admin/api.js'
import { silentLogger } from '../../src/util/log.js'

const VERSIONS = 300_000

describe('integration: prune and the admin socket', function () {
  this.timeout(180_000)
  let root: string
  let catalog: Catalog
  let packs: PackStore
  let server: AdminServer<StoreCommands>

  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'holdfast-prune-admin-'))
    catalog = new Catalog(join(root, 'catalog.db'))
    packs = new PackStore(join(root, 'packs'))
    // Three snapshots of one endpoint: the first two each hold every path (the first is
    // superseded by the second), the third is the newest. Keep-last 1 folds the first two into it.
    const ep = catalog.touchEndpoint('12D3KooWPruneAdminPeer', 'big', 1)
    const db = catalog.db
    db.exec('BEGIN')
    for (let s = 1; s <= 3; s++) db.prepare('INSERT INTO snapshots (id, endpoint_id, set_id, sealed_at, committed_at, entries, raw_bytes, new_bytes) VALUES (?, ?, ?, ?, ?, ?, ?, 0)').run(s, ep, s, s * 1000, s * 1000, s === 3 ? 1 : VERSIONS, s === 3 ? 1 : VERSIONS)
    for (const s of [1, 2]) {
      db.prepare(`WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?)
        INSERT INTO file_versions (snapshot_id, endpoint_id, folder, path, type, mode, mtime_ns, size, chunks)
        SELECT ?, ?, 'home', CAST(printf('dir%04d/file%06d', i / 1000, i) AS BLOB), 'file', 33188, '0', 1, randomblob(32) FROM n`).run(VERSIONS, s, ep)
    }
    db.prepare("INSERT INTO file_versions (snapshot_id, endpoint_id, folder, path, type, mode, mtime_ns, size, chunks) VALUES (3, ?, 'home', CAST('newest' AS BLOB), 'file', 33188, '0', 1, randomblob(32))").run(ep)
    db.exec('COMMIT')
    catalog.setRetentionPolicy(0, { rules: { keepLast: 1 } }, 10_000)
    // The manager's store commands on a real socket; `retention-show` is the probe: it reads
    // the catalog on the main thread, as status does, so it answers only if that thread is free.
    server = new AdminServer<StoreCommands>(join(root, 'admin.sock'), MANAGER_API,
      storeAdminHandlers(catalog, packs, { exclusive: async fn => await fn(), shared: async fn => await fn(), now: () => 10_000 }), silentLogger)
    await server.start()
  })

  after(async () => {
    await server?.stop()
    packs?.close()
    catalog?.close()
    if (root !== undefined) rmSync(root, { recursive: true, force: true })
  })

  it('answers on the admin socket while a prune of hundreds of thousands of versions runs, and the prune completes', async () => {
    const socket = join(root, 'admin.sock')
    let pruneDone = false
    const pruning = adminCall(socket, 'prune', {}, { timeoutMs: 170_000 }).finally(() => { pruneDone = true })
    pruning.catch(() => {}) // observed below
    const latencies: number[] = []
    let answeredDuringPrune = 0
    // Bounded: at most 2,000 calls, each with its own timeout.
    for (let i = 0; i < 2000 && !pruneDone; i++) {
      const t0 = performance.now()
      const shown = await adminCall(socket, 'retention-show', {}, { timeoutMs: 60_000 }) as { endpoints: unknown[] }
      latencies.push(performance.now() - t0)
      assert.ok(Array.isArray(shown.endpoints))
      if (!pruneDone) answeredDuringPrune++
    }
    const report = await pruning as { snapshots: { removed: number }, versions: { moved: number, dropped: number } }
    assert.equal(report.snapshots.removed, 2)
    assert.deepEqual([report.versions.moved, report.versions.dropped], [VERSIONS, VERSIONS])
    assert.equal(catalog.snapshotCount(), 1)
    assert.ok(answeredDuringPrune >= 3, `the socket answered ${answeredDuringPrune} times while the prune ran`)
    const worst = Math.max(...latencies)
    assert.ok(worst < 500, `a call took up to ${Math.round(worst)} ms while the prune ran (the catalog pass blocked the socket)`)
  })
})
