/**
 * Prune: remove the snapshots the retention policies (retention.ts) let go, then reclaim the
 * chunks no file version references any more.
 *
 * THE FOLD RULE. Snapshots are incremental: the tree of endpoint E at snapshot S is, for each
 * path, the newest of E's versions with snapshot id ≤ S (absent if that is a deletion). To
 * remove snapshots without changing the tree of any snapshot that stays, E's snapshots are
 * cut into groups: the removed snapshots between two consecutive kept snapshots P < N (P may
 * be none; N always exists, as the newest snapshot is always kept). For the versions of a
 * group's removed snapshots, path by path:
 *   1. a version superseded by a newer version of its path at or before N is dropped;
 *   2. the survivor (the newest in (P, N], when N itself has no version of the path) is moved
 *      to N (its snapshot id becomes N) — unless it is a deletion and the path is absent at
 *      P anyway (no version ≤ P, or the newest ≤ P is a deletion): then it is dropped too;
 *   3. the removed snapshot rows go (recorded in pruned_snapshots with merged_into = N).
 * Why the tree of every kept snapshot K is unchanged: versions ≤ P are not touched, so trees
 * at K ≤ P are the same. For K ≥ N and a path p: if p has a version in (N, K], that version
 * decides and is untouched. Otherwise the newest version ≤ K is the newest ≤ N: if it lies in
 * (P, N] it is exactly the survivor of step 2, now at N with the same contents (or, for a
 * dropped deletion, the newest ≤ P decides, which is absent, as the deletion was); if it lies
 * ≤ P it is untouched. Groups are disjoint, so each group can be argued alone. It follows that
 * every file version left names a snapshot that exists, a deleted file stays restorable for as
 * long as a kept snapshot holds it, and "restore the last version of a deleted path" still
 * finds a snapshot whose tree holds that version.
 *
 * THE CRASH-SAFE ORDER (a kill -9 anywhere leaves every committed snapshot restorable and
 * verify passing). The real prune runs while no pull is in progress (the manager's store
 * lock, StoreAdminOptions.exclusive), so no pull relies on a chunk while it is deleted.
 *   1. One catalog transaction removes the snapshots (the fold rule above). Chunks the removed
 *      versions used are now unreferenced but still indexed and still on disk.
 *   2. Dead chunks are found: indexed chunks no file version references. If the pack being
 *      appended to is to be deleted or repacked, it is finished first (fsynced, closed), so
 *      no pack prune deletes is open for appending.
 *   3. Packs the catalog does not name (an interrupted pull left them) are deleted.
 *   4. Packs whose every chunk is dead: one transaction deletes their index rows, then the
 *      files are deleted. A crash between the two leaves packs nothing names, which start-up
 *      recovery (PackStore.recover) deletes.
 *   5. Packs whose dead share is at least the threshold, one at a time: the live chunks are
 *      read, re-hashed and appended to the append pack (a new one if it was finished), which
 *      is fsynced; then one transaction points their index rows at the copies and deletes
 *      the pack's dead rows; then the old pack is deleted. A crash before the commit leaves
 *      unreferenced bytes at the end of the append pack (cut by recovery) and the old pack in
 *      use; a crash after it leaves the old pack unreferenced (deleted by recovery).
 *   Packs below the threshold keep their dead chunks, still indexed (a later pull may use
 *   them again; a later prune repacks the pack once enough of it is dead).
 * The dry run is the same code in one transaction that is rolled back: what it reports is
 * what the catalog steps would do; the pack steps are estimated from the pack sizes.
 */
import { setImmediate as yieldToLoop } from 'node:timers/promises'
import type { Catalog } from '../core/catalog.js'
import type { PackStore } from '../core/packs.js'
import { PACK_MAGIC, PACK_RECORD_HEADER } from '../core/packs.js'
import { CHUNK_REF, ensureSeq, maxChunksPerVersion } from '../core/chunk-refs.js'
import { PACK_NAMED, packIdFor } from '../core/pack-ids.js'
import { verifyChunk } from '../../codec/chunk-codec.js'
import { HoldfastError, describeError } from '../../util/errors.js'
import { endpointLabel } from '../queries/browse.js'
import { describeRules, effectivePolicy, selectSnapshots, type EffectivePolicy, type KeepReason, type RetentionRules } from './retention.js'
import { transaction, type DatabaseSync } from '../../util/sqlite.js'

export const DEFAULT_REPACK_THRESHOLD = 0.1

/** Points of the crash-safe order, reported to `onStep` (the crash tests kill the process there). */
export type PruneStep =
  | 'pack-finished'
  | 'snapshots-removed'
  | 'dead-chunks-found'
  | 'orphan-pack-removed'
  | 'dead-rows-deleted'
  | 'dead-pack-removed'
  | 'repack-synced'
  | 'repack-committed'
  | 'repacked-pack-removed'

export interface PruneOptions {
  /** ms since the epoch: min-age is measured from here. */
  now: number
  dryRun?: boolean
  /** Repack a pack when at least this share of it is dead (0..1; default 0.1). */
  repackThreshold?: number
  /** Calendar periods in UTC instead of local time. */
  utc?: boolean
  signal?: AbortSignal
  onStep?: (step: PruneStep, detail?: string) => void
  onProgress?: (p: PruneProgress) => void
}

export interface PruneProgress { phase: 'snapshots' | 'chunks' | 'packs', packsDone: number, packsTotal: number }

export interface PruneSnapshot {
  id: number
  setId: number
  committedAt: number
  keep: boolean
  /** Why it is kept; empty when it goes. */
  reasons: KeepReason[]
  /** For a removed snapshot: the kept snapshot its surviving versions move to. */
  mergedInto?: number
}

export interface PruneEndpoint {
  peerId: string
  endpoint: string
  policy: EffectivePolicy & { text: string }
  /** Newest first. */
  snapshots: PruneSnapshot[]
  kept: number
  removed: number
  versionsMoved: number
  versionsDropped: number
}

export interface PrunePackProblem { pack: string, message: string }

export interface PruneReport {
  dryRun: boolean
  repackThreshold: number
  endpoints: PruneEndpoint[]
  snapshots: { total: number, kept: number, removed: number }
  /** File versions dropped (superseded, or redundant deletions) and moved to a kept snapshot. */
  versions: { dropped: number, moved: number }
  chunks: {
    /** Indexed chunks no file version references (after the removal). */
    dead: number
    deadBytes: number
    /** Of those, in packs deleted or repacked: gone from the store. */
    reclaimed: number
    reclaimedBytes: number
    /** Of those, in packs below the repack threshold: still stored. */
    left: number
    leftBytes: number
  }
  packs: {
    before: number
    after: number
    /** Every chunk dead: deleted. */
    deleted: number
    repacked: number
    /** Named by no chunk of the catalog: deleted. */
    orphans: number
    /** Partly dead, below the threshold: left as they are. */
    belowThreshold: number
    /** Packs that could not be repacked (a live chunk unreadable or corrupt): left as they are. */
    problems: PrunePackProblem[]
  }
  /** Bytes of pack files: before, after (estimated for a dry run), reclaimed, and live bytes copied by repacking. */
  bytes: { before: number, after: number, reclaimed: number, copied: number }
  ms: number
}

interface PackStat {
  pack: string
  chunks: number
  live: number
  /** Record bytes (header + data) of live chunks. */
  liveBytes: number
  dead: number
  /** Compressed bytes of dead chunks (what the index says they take). */
  deadBytes: number
  fileSize: number
}

/**
 * Runs prune (or, with dryRun, reports what it would do and changes nothing). The caller
 * holds pulls off for a real run (see the crash-safe order above); a dry run only reads.
 */
export async function prune (catalog: Catalog, packs: PackStore, options: PruneOptions): Promise<PruneReport> {
  const started = performance.now()
  const db = catalog.db
  const threshold = options.repackThreshold ?? DEFAULT_REPACK_THRESHOLD
  if (!(threshold >= 0 && threshold <= 1)) throw new RangeError('repackThreshold must be within 0..1')
  const dryRun = options.dryRun === true
  const step = (s: PruneStep, detail?: string): void => { options.onStep?.(s, detail) }
  const checkAbort = (): void => { if (options.signal?.aborted === true) throw options.signal.reason }
  const report: PruneReport = {
    dryRun,
    repackThreshold: threshold,
    endpoints: [],
    snapshots: { total: 0, kept: 0, removed: 0 },
    versions: { dropped: 0, moved: 0 },
    chunks: { dead: 0, deadBytes: 0, reclaimed: 0, reclaimedBytes: 0, left: 0, leftBytes: 0 },
    packs: { before: 0, after: 0, deleted: 0, repacked: 0, orphans: 0, belowThreshold: 0, problems: [] },
    bytes: { before: 0, after: 0, reclaimed: 0, copied: 0 },
    ms: 0
  }
  const namesBefore = packs.packNames()
  report.packs.before = namesBefore.length
  report.bytes.before = namesBefore.reduce((n, p) => n + packs.packSize(p), 0)

  // The chunk-reference sequence is filled outside any transaction: a rollback would empty it
  // behind ensureSeq's back. Removing snapshots never makes a chunk list longer.
  ensureSeq(db, maxChunksPerVersion(db))

  options.onProgress?.({ phase: 'snapshots', packsDone: 0, packsTotal: 0 })
  let stats: PackStat[]
  db.exec('BEGIN IMMEDIATE')
  let open = true
  try {
    removeByPolicy(catalog, report, options)
    if (!dryRun) {
      db.exec('COMMIT')
      open = false
      step('snapshots-removed')
    }
    options.onProgress?.({ phase: 'chunks', packsDone: 0, packsTotal: 0 })
    stats = packStats(db, packs)
    if (dryRun) {
      db.exec('ROLLBACK')
      open = false
    }
  } finally {
    if (open) db.exec('ROLLBACK')
  }
  if (!dryRun) step('dead-chunks-found')

  const named = new Set(stats.map(s => s.pack))
  const appending = packs.appendPacks()
  // Packs nothing names. The append packs among them hold only what a failed pull left (no
  // pull runs during a real prune); a dry run, which runs beside pulls, leaves them out.
  const orphans = packs.packNames().filter(p => !named.has(p) && (!appending.has(p) || !dryRun))
  const dead = stats.filter(s => s.live === 0)
  const repack = stats.filter(s => s.live > 0 && s.dead > 0 && deadShare(s) >= threshold)
  const below = stats.filter(s => s.live > 0 && s.dead > 0 && !repack.includes(s))
  for (const s of stats) { report.chunks.dead += s.dead; report.chunks.deadBytes += s.deadBytes }
  for (const s of below) { report.chunks.left += s.dead; report.chunks.leftBytes += s.deadBytes }
  report.packs.belowThreshold = below.length
  // The packs being appended to are finished before one is deleted or repacked (not otherwise:
  // a prune that leaves them alone does not make the next pull start a new pack).
  if (!dryRun && [...appending].some(current => orphans.includes(current) || [...dead, ...repack].some(s => s.pack === current))) {
    packs.finishPack()
    step('pack-finished')
  }

  if (dryRun) {
    report.packs.orphans = orphans.length
    report.packs.deleted = dead.length
    report.packs.repacked = repack.length
    for (const s of [...dead, ...repack]) { report.chunks.reclaimed += s.dead; report.chunks.reclaimedBytes += s.deadBytes }
    const orphanBytes = orphans.reduce((n, p) => n + packs.packSize(p), 0)
    const deadPackBytes = dead.reduce((n, s) => n + s.fileSize, 0)
    const repackGain = repack.reduce((n, s) => n + s.fileSize - s.liveBytes, 0)
    report.bytes.copied = repack.reduce((n, s) => n + s.liveBytes, 0)
    report.bytes.reclaimed = orphanBytes + deadPackBytes + repackGain
    report.bytes.after = report.bytes.before - report.bytes.reclaimed
    report.packs.after = report.packs.before - orphans.length - dead.length - repack.length + Math.ceil(report.bytes.copied / packTarget(stats))
    report.ms = Math.round(performance.now() - started)
    return report
  }

  try {
    const total = orphans.length + dead.length + repack.length
    let done = 0
    const tick = async (): Promise<void> => {
      done++
      options.onProgress?.({ phase: 'packs', packsDone: done, packsTotal: total })
      await yieldToLoop() // let the admin socket and the network breathe between packs
    }
    // 4. packs nothing names: no pull is running, and the append pack was finished
    for (const p of orphans) {
      checkAbort()
      packs.removePack(p)
      report.packs.orphans++
      step('orphan-pack-removed', p)
      await tick()
    }
    // 5. packs whose every chunk is dead: index rows first, then the files
    if (dead.length > 0) {
      checkAbort()
      const emptied = transaction(db, () => {
        const del = db.prepare(`DELETE FROM chunks WHERE pack = ${PACK_NAMED} AND id NOT IN (SELECT id FROM temp.hf_prune_live)`)
        const left = db.prepare(`SELECT count(*) AS n FROM chunks WHERE pack = ${PACK_NAMED}`)
        return dead.filter(s => { del.run(s.pack); return Number(left.get(s.pack)?.n) === 0 })
      })
      step('dead-rows-deleted')
      for (const s of emptied) {
        packs.removePack(s.pack)
        report.packs.deleted++
        report.chunks.reclaimed += s.dead
        report.chunks.reclaimedBytes += s.deadBytes
        step('dead-pack-removed', s.pack)
        await tick()
      }
    }
    // 6. partly dead packs above the threshold, one at a time
    for (const s of repack) {
      checkAbort()
      const moved = repackOne(db, packs, s, report)
      if (moved) {
        step('repack-synced', s.pack)
        commitRepack(db, s, moved)
        step('repack-committed', s.pack)
        packs.removePack(s.pack)
        report.packs.repacked++
        report.chunks.reclaimed += s.dead
        report.chunks.reclaimedBytes += s.deadBytes
        report.bytes.copied += moved.reduce((n, m) => n + PACK_RECORD_HEADER + m.clen, 0)
        step('repacked-pack-removed', s.pack)
      }
      await tick()
    }
  } finally {
    db.exec('DROP TABLE IF EXISTS temp.hf_prune_live')
  }
  const namesAfter = packs.packNames()
  report.packs.after = namesAfter.length
  report.bytes.after = namesAfter.reduce((n, p) => n + packs.packSize(p), 0)
  report.bytes.reclaimed = report.bytes.before - report.bytes.after
  report.ms = Math.round(performance.now() - started)
  return report
}

function deadShare (s: PackStat): number {
  return s.fileSize <= 0 ? 1 : 1 - (s.liveBytes + PACK_MAGIC.byteLength) / s.fileSize
}

/** A guess of the pack size for the dry run's pack count: the largest pack seen, at least 1 MiB. */
function packTarget (stats: PackStat[]): number {
  return Math.max(1024 * 1024, ...stats.map(s => s.fileSize))
}

/** The policy of every endpoint, applied inside the caller's transaction. */
function removeByPolicy (catalog: Catalog, report: PruneReport, options: PruneOptions): void {
  const policies = catalog.retentionPolicies()
  const global = policies.find(p => p.endpointId === 0)
  const db = catalog.db
  const snapshotsOf = db.prepare('SELECT id, set_id, committed_at FROM snapshots WHERE endpoint_id = ? ORDER BY id')
  for (const e of catalog.endpoints()) {
    const rows = snapshotsOf.all(e.id).map(r => ({ id: Number(r.id), setId: Number(r.set_id), committedAt: Number(r.committed_at) }))
    if (rows.length === 0) continue
    const policy = effectivePolicy(global, policies.find(p => p.endpointId === e.id))
    const decisions = selectSnapshots(rows.map(r => ({ id: r.id, time: r.committedAt })), policy, { now: options.now, utc: options.utc })
    const byId = new Map(rows.map(r => [r.id, r]))
    const ep: PruneEndpoint = {
      peerId: e.peerId,
      endpoint: endpointLabel(e),
      policy: { ...policy, text: policy.hold ? `legal hold (${policy.holdFrom ?? ''}); ${describeRules(policy.rules)} when released` : describeRules(policy.rules) },
      snapshots: decisions.map(d => ({ id: d.id, setId: byId.get(d.id)?.setId ?? 0, committedAt: d.time, keep: d.keep, reasons: d.reasons })),
      kept: 0,
      removed: 0,
      versionsMoved: 0,
      versionsDropped: 0
    }
    const result = removeSnapshots(db, e.id, decisions.filter(d => !d.keep).map(d => d.id), options.now)
    for (const s of ep.snapshots) {
      if (s.keep) ep.kept++
      else { ep.removed++; s.mergedInto = result.mergedInto.get(s.id) }
    }
    ep.versionsMoved = result.moved
    ep.versionsDropped = result.dropped
    report.endpoints.push(ep)
    report.snapshots.total += rows.length
    report.snapshots.kept += ep.kept
    report.snapshots.removed += ep.removed
    report.versions.moved += result.moved
    report.versions.dropped += result.dropped
  }
}

/**
 * Removes snapshots of one endpoint by the fold rule (see the top of this file). Must run
 * inside a transaction. The newest snapshot of the endpoint cannot be removed (so the largest
 * snapshot id is never removed either, and SQLite never hands a removed id out again: ids
 * stay in commit order).
 */
export function removeSnapshots (db: DatabaseSync, endpointId: number, remove: number[], now: number): { moved: number, dropped: number, mergedInto: Map<number, number> } {
  const out = { moved: 0, dropped: 0, mergedInto: new Map<number, number>() }
  if (remove.length === 0) return out
  const all = db.prepare('SELECT id FROM snapshots WHERE endpoint_id = ? ORDER BY id').all(endpointId).map(r => Number(r.id))
  const removeSet = new Set(remove)
  for (const id of remove) if (!all.includes(id)) throw new RangeError(`snapshot ${id} is not one of endpoint ${endpointId}'s`)
  if (removeSet.has(all[all.length - 1])) throw new RangeError('the newest snapshot of an endpoint is always kept')
  db.exec('DROP TABLE IF EXISTS temp.hf_prune_group; CREATE TEMP TABLE hf_prune_group (id INTEGER PRIMARY KEY)')
  const addToGroup = db.prepare('INSERT INTO temp.hf_prune_group (id) VALUES (?)')
  const perSnapshot = db.prepare('SELECT g.id, (SELECT count(*) FROM file_versions fv WHERE fv.snapshot_id = g.id) AS n FROM temp.hf_prune_group g')
  // 1. superseded at or before N
  const dropSuperseded = db.prepare(`DELETE FROM file_versions WHERE rowid IN (
    SELECT fv.rowid FROM temp.hf_prune_group g JOIN file_versions fv ON fv.snapshot_id = g.id
    WHERE EXISTS (SELECT 1 FROM file_versions w WHERE w.endpoint_id = fv.endpoint_id AND w.folder = fv.folder AND w.path = fv.path
      AND w.snapshot_id > fv.snapshot_id AND w.snapshot_id <= ?))`)
  // 2a. a deletion of a path that is absent at P anyway
  const dropRedundantDeletions = db.prepare(`DELETE FROM file_versions WHERE rowid IN (
    SELECT fv.rowid FROM temp.hf_prune_group g JOIN file_versions fv ON fv.snapshot_id = g.id
    WHERE fv.type = 'deleted' AND coalesce((SELECT p.type FROM file_versions p
      WHERE p.endpoint_id = fv.endpoint_id AND p.folder = fv.folder AND p.path = fv.path AND p.snapshot_id <= ?
      ORDER BY p.snapshot_id DESC LIMIT 1), 'deleted') = 'deleted')`)
  // 2b. the survivors move to N, and N's counts grow by them: a snapshot lists what it holds now
  const survivors = db.prepare("SELECT count(*) AS n, total(CASE WHEN fv.type = 'file' THEN fv.size ELSE 0 END) AS bytes FROM temp.hf_prune_group g JOIN file_versions fv ON fv.snapshot_id = g.id")
  const countMoved = db.prepare('UPDATE snapshots SET entries = entries + ?, raw_bytes = raw_bytes + ? WHERE id = ?')
  const moveToNext = db.prepare('UPDATE file_versions SET snapshot_id = ? WHERE snapshot_id IN (SELECT id FROM temp.hf_prune_group)')
  const record = db.prepare(`INSERT INTO pruned_snapshots (id, endpoint_id, set_id, sealed_at, committed_at, entries, raw_bytes, new_bytes, pruned_at, merged_into, versions_moved, versions_dropped)
    SELECT id, endpoint_id, set_id, sealed_at, committed_at, entries, raw_bytes, new_bytes, ?, ?, ?, ? FROM snapshots WHERE id = ?`)
  const deleteSnapshot = db.prepare('DELETE FROM snapshots WHERE id = ? AND endpoint_id = ?')
  try {
    let previousKept = 0 // P: none yet (snapshot ids start at 1)
    let group: number[] = []
    for (const id of all) {
      if (removeSet.has(id)) { group.push(id); continue }
      if (group.length > 0) {
        const next = id
        db.exec('DELETE FROM temp.hf_prune_group')
        for (const g of group) addToGroup.run(g)
        const before = new Map(perSnapshot.all().map(r => [Number(r.id), Number(r.n)]))
        dropSuperseded.run(next)
        dropRedundantDeletions.run(previousKept)
        const after = new Map(perSnapshot.all().map(r => [Number(r.id), Number(r.n)]))
        const moving = survivors.get()
        countMoved.run(Number(moving?.n ?? 0), Number(moving?.bytes ?? 0), next)
        moveToNext.run(next)
        for (const g of group) {
          const moved = after.get(g) ?? 0
          const dropped = (before.get(g) ?? 0) - moved
          record.run(now, next, moved, dropped, g)
          deleteSnapshot.run(g, endpointId)
          out.moved += moved
          out.dropped += dropped
          out.mergedInto.set(g, next)
        }
        group = []
      }
      previousKept = id
    }
  } finally {
    db.exec('DROP TABLE IF EXISTS temp.hf_prune_group')
  }
  return out
}

/**
 * Dead and live chunks per pack. Leaves temp.hf_prune_live (every chunk id some file version
 * references) for the steps that follow; the caller drops it.
 */
function packStats (db: DatabaseSync, packs: PackStore): PackStat[] {
  db.exec(`DROP TABLE IF EXISTS temp.hf_prune_live;
    CREATE TEMP TABLE hf_prune_live (id BLOB PRIMARY KEY) WITHOUT ROWID`)
  const need = maxChunksPerVersion(db)
  const have = Number(db.prepare('SELECT count(*) AS n FROM temp.hf_seq').get()?.n ?? 0)
  // never decide that a chunk is dead from a sequence too short to see every reference
  if (have < need) throw new HoldfastError('STORE_INVARIANT', `chunk-reference sequence holds ${have} rows, ${need} needed`)
  db.prepare(`INSERT OR IGNORE INTO temp.hf_prune_live (id)
    SELECT ${CHUNK_REF} FROM file_versions fv CROSS JOIN temp.hf_seq n ON n.k < length(fv.chunks) / 32`).run()
  return db.prepare(`SELECT p.name AS pack, count(*) AS chunks,
      total(CASE WHEN l.id IS NULL THEN 0 ELSE 1 END) AS live,
      total(CASE WHEN l.id IS NULL THEN 0 ELSE c.clen + ${PACK_RECORD_HEADER} END) AS live_bytes,
      total(CASE WHEN l.id IS NULL THEN c.clen ELSE 0 END) AS dead_bytes
    FROM chunks c JOIN packs p ON p.id = c.pack LEFT JOIN temp.hf_prune_live l ON l.id = c.id GROUP BY c.pack ORDER BY p.name`).all().map(r => {
    const chunks = Number(r.chunks)
    const live = Number(r.live)
    return { pack: r.pack as string, chunks, live, liveBytes: Number(r.live_bytes), dead: chunks - live, deadBytes: Number(r.dead_bytes), fileSize: packs.packSize(r.pack as string) }
  })
}

interface MovedChunk { id: Uint8Array, pack: string, offset: number, clen: number }

/**
 * Copies the live chunks of one pack into the append pack (re-hashed on the way) and fsyncs
 * it. Returns where they went, or undefined (and a problem in the report) when a live chunk
 * cannot be read or is corrupt: that pack is left as it is.
 */
function repackOne (db: DatabaseSync, packs: PackStore, s: PackStat, report: PruneReport): MovedChunk[] | undefined {
  const rows = db.prepare(`SELECT c.id, c.offset, c.clen, c.rawlen FROM chunks c WHERE c.pack = ${PACK_NAMED} AND c.id IN (SELECT id FROM temp.hf_prune_live) ORDER BY c.offset`).all(s.pack)
  const data: Array<{ id: Uint8Array, rawlen: number, compressed: Buffer }> = []
  try {
    for (const r of rows) {
      const id = r.id as Uint8Array
      const compressed = packs.read({ pack: s.pack, offset: Number(r.offset), clen: Number(r.clen) })
      verifyChunk(id, compressed, Number(r.rawlen))
      data.push({ id, rawlen: Number(r.rawlen), compressed })
    }
  } catch (err) {
    report.packs.problems.push({ pack: s.pack, message: `not repacked: ${describeError(err)}` })
    return undefined
  }
  const moved: MovedChunk[] = []
  for (const d of data) {
    const loc = packs.append(d.id, d.rawlen, d.compressed)
    moved.push({ id: d.id, ...loc })
  }
  packs.sync()
  return moved
}

/** One transaction: the live chunks' rows point at their copies, the pack's dead rows go. */
function commitRepack (db: DatabaseSync, s: PackStat, moved: MovedChunk[]): void {
  transaction(db, () => {
    const repoint = db.prepare(`UPDATE chunks SET pack = ?, offset = ? WHERE id = ? AND pack = ${PACK_NAMED} AND clen = ?`)
    const ids = new Map<string, number>()
    for (const m of moved) {
      let packId = ids.get(m.pack)
      if (packId === undefined) ids.set(m.pack, packId = packIdFor(db, m.pack))
      const r = repoint.run(packId, m.offset, m.id, s.pack, m.clen)
      if (Number(r.changes) !== 1) throw new HoldfastError('STORE_INVARIANT', `chunk of pack ${s.pack} changed while it was repacked`)
    }
    db.prepare(`DELETE FROM chunks WHERE pack = ${PACK_NAMED} AND id NOT IN (SELECT id FROM temp.hf_prune_live)`).run(s.pack)
    const left = Number(db.prepare(`SELECT count(*) AS n FROM chunks WHERE pack = ${PACK_NAMED}`).get(s.pack)?.n)
    if (left !== 0) throw new HoldfastError('STORE_INVARIANT', `pack ${s.pack} still holds ${left} indexed chunks after repacking`)
  })
}

export type { RetentionRules }
