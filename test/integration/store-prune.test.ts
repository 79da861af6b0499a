/**
 * Retention and prune on a real store (PackStore + Catalog + restore + verify, real files):
 * - policy selection on synthetic snapshot times (keep-last, hourly/daily/weekly/monthly/
 *   yearly buckets, the oldest kept while periods are left, min-age, holds, scopes);
 * - the fold rule: removing snapshots never changes the tree of a snapshot that stays (exact
 *   versions on a hand-made history; bit-exact restores of every kept snapshot of random
 *   histories with edits, deletions and re-creations on two endpoints);
 * - reclaiming: fully dead packs deleted, partly dead packs repacked above the threshold and
 *   left below it; a dry run changes nothing and predicts the real run;
 * - kill -9 of a prune in a child process at every kind of step of the crash-safe order and
 *   at random times: after start-up recovery every snapshot left restores as before, verify
 *   --read-data passes, and a second prune finishes the job.
 */
import { strict as assert } from 'node:assert'
import { spawn, spawnSync } from 'node:child_process'
import { cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { PackStore } from '../../src/store/core/packs.js'
import { Catalog, type NewChunk } from '../../src/store/core/catalog.js'
import { restoreSnapshot } from '../../src/store/restore.js'
import { verifyStore } from '../../src/store/maintenance/verify.js'
import { prune, removeSnapshots, type PruneReport, type PruneStep } from '../../src/store/maintenance/prune.js'
import { effectivePolicy, formatDuration, isoWeek, parseDuration, selectSnapshots, UNLIMITED, type EffectivePolicy, type RetentionRules } from '../../src/store/maintenance/retention.js'
import { chunkId, compressChunk } from '../../src/codec/chunk-codec.js'
import { toHex, type EntryType, type StagedEntry } from '../../src/model/entry.js'
import { transaction } from '../../src/util/sqlite.js'
import { Prng, describeTree, diffDescriptions, sha256, type TreeDescription } from '../support/crash.js'

// ---------------------------------------------------------------- helpers

const CHUNK = 4096
const HOUR = 3_600_000
const DAY = 24 * HOUR
const S_IFREG = 0o100000
const S_IFDIR = 0o040000
const S_IFLNK = 0o120000
const DIST_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..')

interface Spec {
  folder: string
  path: string
  type: EntryType
  content?: Buffer
  perm?: number
  mtimeNs?: bigint
  target?: string
}

function cut (content: Buffer): Buffer[] {
  const out: Buffer[] = []
  for (let i = 0; i < content.byteLength; i += CHUNK) out.push(content.subarray(i, i + CHUNK))
  return out
}

function entryOf (spec: Spec): { entry: StagedEntry, plains: Buffer[] } {
  const plains = spec.type === 'file' ? cut(spec.content ?? Buffer.alloc(0)) : []
  const typeBits = spec.type === 'file' ? S_IFREG : spec.type === 'dir' ? S_IFDIR : spec.type === 'symlink' ? S_IFLNK : 0
  const entry: StagedEntry = {
    folder: spec.folder,
    path: new Uint8Array(Buffer.from(spec.path, 'latin1')),
    type: spec.type,
    mode: spec.type === 'deleted' ? 0 : typeBits | (spec.perm ?? (spec.type === 'dir' ? 0o755 : 0o644)),
    mtimeNs: spec.type === 'deleted' ? 0n : spec.mtimeNs ?? 1_600_000_000_000_000_000n,
    size: spec.type === 'file' ? (spec.content?.byteLength ?? 0) : 0,
    chunks: new Uint8Array(Buffer.concat(plains.map(p => chunkId(p))))
  }
  if (spec.type === 'symlink') entry.target = new Uint8Array(Buffer.from(spec.target ?? '', 'latin1'))
  return { entry, plains }
}

/** A manager's store on real files: packs of 64 KiB (so there are many), a real catalog. */
class TestStore {
  packs: PackStore
  catalog: Catalog
  private nextSet = new Map<number, number>()

  constructor (readonly root: string, readonly packBytes = 64 * 1024) {
    this.packs = new PackStore(join(root, 'packs'), packBytes)
    this.catalog = new Catalog(join(root, 'catalog.db'))
  }

  static fresh (packBytes?: number): TestStore {
    return new TestStore(mkdtempSync(join(tmpdir(), 'holdfast-prune-')), packBytes)
  }

  endpoint (name: string): number { return this.catalog.touchEndpoint(`12D3KooW${name}Peer`, name, 1) }

  /** What the puller does: append the chunks the store lacks, fsync, commit in one transaction. */
  commit (endpointId: number, specs: Spec[], committedAt: number): number {
    const entries: StagedEntry[] = []
    const plainById = new Map<string, Buffer>()
    for (const spec of specs) {
      const { entry, plains } = entryOf(spec)
      entries.push(entry)
      for (const p of plains) plainById.set(toHex(chunkId(p)), p)
    }
    const ids = [...plainById.keys()].map(h => new Uint8Array(Buffer.from(h, 'hex')))
    const chunks: NewChunk[] = []
    for (const id of this.catalog.missingChunks(ids)) {
      const plain = plainById.get(toHex(id)) as Buffer
      chunks.push({ id, rawlen: plain.byteLength, ...this.packs.append(id, plain.byteLength, compressChunk(plain)) })
    }
    this.packs.sync()
    const setId = this.nextSet.get(endpointId) ?? 1
    this.nextSet.set(endpointId, setId + 1)
    return this.catalog.commitSnapshot({ endpointId, setId, sealedAt: committedAt, committedAt, entries, chunks, proven: ids })
  }

  /** Opens the store again the way the manager starts: recovery before anything else. */
  reopen (): { removedPacks: string[], truncatedBytes: number } {
    this.close()
    this.packs = new PackStore(join(this.root, 'packs'), this.packBytes)
    this.catalog = new Catalog(join(this.root, 'catalog.db'))
    return this.packs.recover(this.catalog.packExtents())
  }

  /** Restores a snapshot into a fresh directory and describes each folder's tree. */
  async restoreDescribe (endpointId: number, snapshotId: number): Promise<Map<string, TreeDescription>> {
    const target = mkdtempSync(join(tmpdir(), 'holdfast-prune-restore-'))
    try {
      const r = await restoreSnapshot(this.catalog, this.packs, { endpointId, snapshotId, target: join(target, 't') })
      assert.deepEqual(r.errors, [], `restore of snapshot ${snapshotId}`)
      const out = new Map<string, TreeDescription>()
      if (!existsSync(join(target, 't'))) return out
      for (const folder of describeTree(join(target, 't')).keys()) {
        if (!folder.includes('/')) out.set(folder, describeTree(join(target, 't', folder)))
      }
      return out
    } finally {
      rmSync(target, { recursive: true, force: true })
    }
  }

  packBytesOnDisk (): number {
    return this.packs.packNames().reduce((n, p) => n + this.packs.packSize(p), 0)
  }

  close (): void {
    try { this.packs.close() } catch {}
    try { this.catalog.close() } catch {}
  }

  dispose (): void {
    this.close()
    rmSync(this.root, { recursive: true, force: true })
  }
}

/** Every difference between two restores (folder by folder). */
function treeDiffs (expected: Map<string, TreeDescription>, actual: Map<string, TreeDescription>): string[] {
  const diffs: string[] = []
  for (const [folder, tree] of expected) {
    const other = actual.get(folder)
    if (other === undefined) { diffs.push(`${folder}: missing`); continue }
    diffs.push(...diffDescriptions(tree, other).map(d => `${folder}/${d}`))
  }
  for (const folder of actual.keys()) if (!expected.has(folder)) diffs.push(`${folder}: unexpected`)
  return diffs
}

type Node = { type: 'file', content: Buffer, perm: number, mtimeNs: bigint } | { type: 'dir', perm: number, mtimeNs: bigint } | { type: 'symlink', target: string, mtimeNs: bigint }

/**
 * A random history of one endpoint: each step creates, edits (append: earlier chunks stay;
 * rewrite; chmod), deletes and re-creates files (re-created with old or new contents), makes
 * directories and symlinks, and removes empty directories. `expected()` describes the tree.
 */
class History {
  readonly nodes = new Map<string, Node>()
  private readonly gone: Array<{ key: string, content?: Buffer }> = []
  private serial = 0
  private tick = 0n

  constructor (private readonly rng: Prng, private readonly folders: string[], private readonly shared: Buffer[]) {}

  private mtime (): bigint { this.tick++; return 1_700_000_000_000_000_000n + this.tick * 1_000_000_123_000n }

  private dirsOf (folder: string): string[] { return ['', ...[...this.nodes].filter(([k, n]) => n.type === 'dir' && k.startsWith(`${folder}/`)).map(([k]) => k.slice(folder.length + 1))] }

  private content (): Buffer {
    const r = this.rng.next()
    if (r < 0.15 && this.shared.length > 0) return this.rng.pick(this.shared) // the same bytes as elsewhere: deduplicated
    if (r < 0.25) return Buffer.alloc(0)
    return this.rng.bytes(this.rng.int(1, 6 * CHUNK + 100))
  }

  step (): Spec[] {
    const rng = this.rng
    const specs: Spec[] = []
    const changed = new Set<string>()
    const put = (key: string, node: Node | undefined): void => {
      const slash = key.indexOf('/')
      const folder = key.slice(0, slash)
      const path = key.slice(slash + 1)
      if (node === undefined) {
        const old = this.nodes.get(key)
        this.nodes.delete(key)
        this.gone.push({ key, content: old?.type === 'file' ? old.content : undefined })
        specs.push({ folder, path, type: 'deleted' })
      } else {
        this.nodes.set(key, node)
        specs.push(node.type === 'file'
          ? { folder, path, type: 'file', content: node.content, perm: node.perm, mtimeNs: node.mtimeNs }
          : node.type === 'dir' ? { folder, path, type: 'dir', perm: node.perm, mtimeNs: node.mtimeNs } : { folder, path, type: 'symlink', target: node.target, mtimeNs: node.mtimeNs })
      }
      changed.add(key)
    }
    const files = (): string[] => [...this.nodes].filter(([k, n]) => n.type !== 'dir' && !changed.has(k)).map(([k]) => k)
    const fresh = (): string => {
      const folder = rng.pick(this.folders)
      const dir = rng.pick(this.dirsOf(folder))
      const name = `${rng.chance(0.1) ? 'caf\u00e9-' : 'f'}${this.serial++}`
      return dir === '' ? `${folder}/${name}` : `${folder}/${dir}/${name}`
    }
    if (rng.chance(0.3) || this.nodes.size === 0) {
      const folder = rng.pick(this.folders)
      const parent = rng.pick(this.dirsOf(folder))
      const key = `${folder}/${parent === '' ? '' : parent + '/'}d${this.serial++}`
      put(key, { type: 'dir', perm: rng.pick([0o755, 0o750, 0o700]), mtimeNs: this.mtime() })
    }
    for (let i = rng.int(1, 4); i > 0; i--) put(fresh(), { type: 'file', content: this.content(), perm: rng.pick([0o644, 0o600, 0o755]), mtimeNs: this.mtime() })
    for (let i = rng.int(0, 3); i > 0; i--) {
      const key = files().find(k => this.nodes.get(k)?.type === 'file' && rng.chance(0.3))
      if (key === undefined) break
      const old = this.nodes.get(key) as Extract<Node, { type: 'file' }>
      const how = rng.pick(['append', 'rewrite', 'chmod'] as const)
      const content = how === 'append' ? Buffer.concat([old.content, rng.bytes(rng.int(1, 2 * CHUNK))]) : how === 'rewrite' ? this.content() : old.content
      put(key, { type: 'file', content, perm: how === 'chmod' ? (old.perm === 0o600 ? 0o640 : 0o600) : old.perm, mtimeNs: this.mtime() })
    }
    for (let i = rng.int(0, 3); i > 0; i--) {
      const all = files()
      if (all.length === 0) break
      put(rng.pick(all), undefined)
    }
    for (let i = rng.int(0, 2); i > 0 && this.gone.length > 0; i--) {
      const g = this.gone.splice(rng.int(0, this.gone.length - 1), 1)[0]
      if (this.nodes.has(g.key) || changed.has(g.key) || !this.parentExists(g.key)) continue
      put(g.key, { type: 'file', content: g.content !== undefined && rng.chance(0.5) ? g.content : this.content(), perm: 0o644, mtimeNs: this.mtime() })
    }
    if (rng.chance(0.3)) put(fresh(), { type: 'symlink', target: rng.chance(0.5) ? '../elsewhere' : 'f0', mtimeNs: this.mtime() })
    if (rng.chance(0.2)) {
      const empty = [...this.nodes].filter(([k, n]) => n.type === 'dir' && !changed.has(k) && ![...this.nodes.keys()].some(o => o.startsWith(`${k}/`))).map(([k]) => k)
      if (empty.length > 0) put(rng.pick(empty), undefined)
    }
    return specs
  }

  private parentExists (key: string): boolean {
    const parts = key.split('/')
    return parts.length <= 2 || this.nodes.get(parts.slice(0, -1).join('/'))?.type === 'dir'
  }

  /** The tree as a restore should produce it, per folder (keys latin1, relative to the folder). */
  expected (): Map<string, TreeDescription> {
    const out = new Map<string, TreeDescription>()
    for (const [key, n] of this.nodes) {
      const slash = key.indexOf('/')
      const folder = key.slice(0, slash)
      let tree = out.get(folder)
      if (tree === undefined) { tree = new Map(); out.set(folder, tree) }
      const rel = key.slice(slash + 1)
      if (n.type === 'file') tree.set(rel, { type: 'file', mode: n.perm, mtimeNs: n.mtimeNs, size: n.content.byteLength, sha256: sha256(n.content) })
      else if (n.type === 'dir') tree.set(rel, { type: 'dir', mode: n.perm, mtimeNs: n.mtimeNs, size: 0 })
      else tree.set(rel, { type: 'symlink', mode: 0, mtimeNs: n.mtimeNs, size: 0, target: n.target })
    }
    return out
  }
}

interface Built {
  store: TestStore
  endpoints: Array<{ id: number, name: string, snapshots: Array<{ id: number, time: number }> }>
  /** Snapshot id → the tree it must restore to. */
  expected: Map<number, Map<string, TreeDescription>>
  now: number
}

/**
 * Two endpoints with random histories, interleaved in time: alpha every 7 hours (two folders),
 * bravo every 11 hours; some contents are shared between them.
 */
function buildHistories (seed: number, counts: [number, number]): Built {
  const rng = new Prng(seed)
  const store = TestStore.fresh()
  const shared = [rng.bytes(3 * CHUNK + 5), rng.bytes(CHUNK), rng.bytes(2 * CHUNK)]
  const t0 = Date.UTC(2024, 0, 1, 3, 0, 0)
  const plan = [
    { name: 'alpha', every: 7 * HOUR, count: counts[0], history: new History(rng, ['home', 'work'], shared) },
    { name: 'bravo', every: 11 * HOUR, count: counts[1], history: new History(rng, ['docs'], shared) }
  ]
  const events: Array<{ time: number, which: number }> = []
  plan.forEach((p, which) => { for (let i = 0; i < p.count; i++) events.push({ time: t0 + i * p.every, which }) })
  events.sort((a, b) => a.time - b.time || a.which - b.which)
  const endpoints = plan.map(p => ({ id: store.endpoint(p.name), name: p.name, snapshots: [] as Array<{ id: number, time: number }> }))
  const expected = new Map<number, Map<string, TreeDescription>>()
  for (const ev of events) {
    const p = plan[ev.which]
    const id = store.commit(endpoints[ev.which].id, p.history.step(), ev.time)
    endpoints[ev.which].snapshots.push({ id, time: ev.time })
    expected.set(id, p.history.expected())
  }
  return { store, endpoints, expected, now: events[events.length - 1].time + HOUR }
}

/** Every snapshot left restores to what it restored to before; returns how many were checked. */
async function assertTreesIntact (store: TestStore, built: Built, context: string): Promise<number> {
  let n = 0
  for (const s of store.catalog.snapshots()) {
    const want = built.expected.get(s.id)
    assert.ok(want !== undefined, `${context}: snapshot ${s.id} is one of those committed`)
    const diffs = treeDiffs(want, await store.restoreDescribe(s.endpointId, s.id))
    assert.deepEqual(diffs, [], `${context}: snapshot ${s.id} (${s.endpointName}) restores as before the prune`)
    n++
  }
  return n
}

async function assertVerifies (store: TestStore, context: string): Promise<void> {
  const r = await verifyStore(store.catalog, store.packs.dir, { readData: true, workers: 2 })
  assert.ok(r.ok, `${context}: verify --read-data: ${JSON.stringify({ counts: r.problemCounts, problems: r.problems.slice(0, 3) })}`)
}

/** Structural invariants after a prune: versions name existing snapshots, packs hold what the index says. */
function assertConsistent (store: TestStore, context: string): void {
  const db = store.catalog.db
  const orphanVersions = Number(db.prepare('SELECT count(*) AS n FROM file_versions fv WHERE NOT EXISTS (SELECT 1 FROM snapshots s WHERE s.id = fv.snapshot_id AND s.endpoint_id = fv.endpoint_id)').get()?.n)
  assert.equal(orphanVersions, 0, `${context}: every file version names a snapshot of its endpoint`)
  const named = new Set(db.prepare('SELECT DISTINCT p.name AS pack FROM chunks c JOIN packs p ON p.id = c.pack').all().map(r => r.pack as string))
  for (const p of named) assert.ok(existsSync(join(store.packs.dir, p)), `${context}: pack ${p} exists`)
}

/** Chunk rows no file version references (counted in JS, independently of prune's SQL). */
function unreferencedChunkRows (store: TestStore): number {
  const used = new Set<string>()
  for (const r of store.catalog.db.prepare('SELECT chunks FROM file_versions').iterate()) {
    const b = Buffer.from(r.chunks as Uint8Array)
    for (let i = 0; i < b.byteLength; i += 32) used.add(b.subarray(i, i + 32).toString('hex'))
  }
  let n = 0
  for (const r of store.catalog.db.prepare('SELECT id FROM chunks').iterate()) if (!used.has(Buffer.from(r.id as Uint8Array).toString('hex'))) n++
  return n
}

/** Rows of every table prune touches, and the pack files with their sizes. */
function storeImage (store: TestStore): string {
  const db = store.catalog.db
  const rows = (sql: string): unknown[] => db.prepare(sql).all().map(r => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v])))
  return JSON.stringify({
    snapshots: rows('SELECT * FROM snapshots ORDER BY id'),
    // mtime_ns as text: an INTEGER of nanoseconds is beyond a JS number (node:sqlite throws)
    versions: rows('SELECT rowid, snapshot_id, endpoint_id, folder, path, type, mode, CAST(mtime_ns AS TEXT) AS mtime_ns, size, chunks, target, link_key FROM file_versions ORDER BY rowid'),
    chunks: rows('SELECT * FROM chunks ORDER BY id'),
    pruned: rows('SELECT * FROM pruned_snapshots ORDER BY id'),
    packs: store.packs.packNames().map(p => [p, store.packs.packSize(p)])
  })
}

const rules = (r: RetentionRules): EffectivePolicy => ({ rules: r, rulesFrom: 'global', hold: false })
const kept = (snaps: Array<{ id: number, time: number }>, policy: EffectivePolicy, now: number): number[] =>
  selectSnapshots(snaps, policy, { now, utc: true }).filter(d => d.keep).map(d => d.id).sort((a, b) => a - b)
const at = (iso: string): number => Date.parse(iso)

// ---------------------------------------------------------------- tests

describe('integration: retention policies (selection on synthetic snapshot times)', function () {
  it('keep-last keeps the N newest; the newest is always kept; no rules keep everything', () => {
    const snaps = Array.from({ length: 10 }, (_, i) => ({ id: i + 1, time: at('2024-03-01T00:00:00Z') + i * HOUR }))
    assert.deepEqual(kept(snaps, rules({ keepLast: 3 }), 0), [8, 9, 10])
    assert.deepEqual(kept(snaps, rules({ keepLast: 1 }), 0), [10])
    assert.deepEqual(kept(snaps, rules({ keepLast: 20 }), 0), snaps.map(s => s.id))
    // only a min-age that keeps nothing: still the newest
    assert.deepEqual(kept(snaps, rules({ minAgeMs: HOUR }), at('2030-01-01T00:00:00Z')), [10])
    assert.deepEqual(kept(snaps, { rulesFrom: 'none', hold: false }, 0), snaps.map(s => s.id))
    assert.deepEqual(kept(snaps, rules({ keepLast: 0, keepDaily: 0 }), 0), snaps.map(s => s.id), 'all counts 0: no policy')
    const reasons = selectSnapshots(snaps, rules({ keepLast: 2 }), { now: 0 })
    assert.deepEqual(reasons.slice(0, 3).map(d => [d.id, d.reasons]), [[10, ['newest', 'last']], [9, ['last']], [8, []]])
  })

  it('keep-hourly and keep-daily keep the newest snapshot of each of the N newest periods that have one', () => {
    // every 20 minutes from 10:00 to 14:40: hours 10..14, three snapshots each
    const snaps = Array.from({ length: 15 }, (_, i) => ({ id: i + 1, time: at('2024-03-01T10:00:00Z') + i * 20 * 60_000 }))
    // hours 14, 13, 12: the last snapshot of each (14:40, 13:40, 12:40)
    assert.deepEqual(kept(snaps, rules({ keepHourly: 3 }), 0), [9, 12, 15])
    // days with gaps: a day without snapshots is not a period
    const days = ['2024-03-01T08:00', '2024-03-01T20:00', '2024-03-02T09:00', '2024-03-05T01:00', '2024-03-05T23:59', '2024-03-06T00:00', '2024-03-09T12:00']
      .map((t, i) => ({ id: i + 1, time: at(`${t}:00Z`) }))
    assert.deepEqual(kept(days, rules({ keepDaily: 3 }), 0), [5, 6, 7]) // 9th, 6th, 5th (its last, 23:59)
    assert.deepEqual(kept(days, rules({ keepDaily: 4 }), 0), [3, 5, 6, 7])
    // more days asked for than there are: one per day, and the oldest snapshot too
    const all = selectSnapshots(days, rules({ keepDaily: 10 }), { now: 0, utc: true })
    assert.deepEqual(all.filter(d => d.keep).map(d => d.id).sort((a, b) => a - b), [1, 2, 3, 5, 6, 7])
    assert.deepEqual(all.find(d => d.id === 1)?.reasons, ['oldest'])
    // unlimited: one per day for every day
    assert.deepEqual(kept(days, rules({ keepDaily: UNLIMITED }), 0), [1, 2, 3, 5, 6, 7])
  })

  it('keep-weekly uses ISO weeks (across New Year), keep-monthly and keep-yearly calendar months and years', () => {
    assert.deepEqual(isoWeek(2020, 12, 31), { year: 2020, week: 53 })
    assert.deepEqual(isoWeek(2021, 1, 3), { year: 2020, week: 53 })
    assert.deepEqual(isoWeek(2021, 1, 4), { year: 2021, week: 1 })
    assert.deepEqual(isoWeek(2024, 12, 30), { year: 2025, week: 1 })
    const weeks = ['2020-12-28T10:00', '2020-12-31T10:00', '2021-01-03T23:00', '2021-01-04T00:30', '2021-01-10T12:00', '2021-01-11T12:00']
      .map((t, i) => ({ id: i + 1, time: at(`${t}:00Z`) }))
    // weeks: 2020-W53 (1, 2, 3), 2021-W1 (4, 5), 2021-W2 (6)
    assert.deepEqual(kept(weeks, rules({ keepWeekly: 2 }), 0), [5, 6])
    assert.deepEqual(kept(weeks, rules({ keepWeekly: 3 }), 0), [3, 5, 6])
    const months = ['2023-11-15', '2023-12-01', '2023-12-31', '2024-01-01', '2024-02-29', '2024-02-29T23:00', '2024-03-01']
      .map((t, i) => ({ id: i + 1, time: at(t.includes('T') ? `${t}:00Z` : `${t}T12:00:00Z`) }))
    assert.deepEqual(kept(months, rules({ keepMonthly: 3 }), 0), [4, 6, 7])
    assert.deepEqual(kept(months, rules({ keepYearly: 2 }), 0), [3, 7])
    // a union: kept by any rule, with every reason named
    const union = selectSnapshots(months, rules({ keepLast: 2, keepMonthly: 3, keepYearly: 2 }), { now: 0, utc: true })
    assert.deepEqual(union.filter(d => d.keep).map(d => [d.id, d.reasons.join('+')]), [
      [7, 'newest+last+monthly+yearly'], [6, 'last+monthly'], [4, 'monthly'], [3, 'yearly']
    ])
  })

  it('min-age keeps young snapshots; a hold (own or global) keeps everything; own rules replace the global ones', () => {
    const now = at('2024-06-30T00:00:00Z')
    const snaps = Array.from({ length: 30 }, (_, i) => ({ id: i + 1, time: now - (30 - i) * DAY })) // one a day, 30..1 days ago
    const young = kept(snaps, rules({ keepLast: 1, minAgeMs: parseDuration('7d') }), now)
    assert.deepEqual(young, [25, 26, 27, 28, 29, 30]) // 6..1 days ago; exactly 7 days old is not younger than 7d
    // 29 and 30 are younger than 3 days; 30 is the newest of its ISO week, 24 (Sunday 23 June) of the week before
    assert.deepEqual(kept(snaps, rules({ keepWeekly: 2, minAgeMs: 3 * DAY }), now), [24, 29, 30])

    const global = { endpointId: 0, rules: { keepLast: 2 }, hold: false, updatedAt: 1 }
    const own = { endpointId: 7, rules: { keepDaily: 5 }, hold: false, updatedAt: 1 }
    assert.deepEqual(effectivePolicy(global, undefined), { rules: { keepLast: 2 }, rulesFrom: 'global', hold: false })
    assert.deepEqual(effectivePolicy(global, own), { rules: { keepDaily: 5 }, rulesFrom: 'endpoint', hold: false })
    assert.deepEqual(kept(snaps, effectivePolicy(global, own), now), [26, 27, 28, 29, 30])
    const heldHere = effectivePolicy(global, { endpointId: 7, hold: true, updatedAt: 1 })
    assert.deepEqual(heldHere, { rules: { keepLast: 2 }, rulesFrom: 'global', hold: true, holdFrom: 'endpoint' })
    assert.deepEqual(kept(snaps, heldHere, now), snaps.map(s => s.id))
    const heldEverywhere = effectivePolicy({ ...global, hold: true }, own)
    assert.equal(heldEverywhere.holdFrom, 'global')
    assert.ok(selectSnapshots(snaps, heldEverywhere, { now }).every(d => d.keep && d.reasons[0] === 'hold'))
  })

  it('durations: 30d, 12h, 2w, 6m, 1y6m; bad ones are refused', () => {
    assert.equal(parseDuration('30d'), 30 * DAY)
    assert.equal(parseDuration('12h'), 12 * HOUR)
    assert.equal(parseDuration('2w'), 14 * DAY)
    assert.equal(parseDuration('1y6m'), 365 * DAY + 180 * DAY)
    assert.equal(parseDuration('0'), 0)
    assert.equal(formatDuration(30 * DAY), '30d')
    assert.equal(formatDuration(36 * HOUR), '1d12h')
    for (const bad of ['', '30', 'd', '1.5d', '-1d', '30 days', '1x']) assert.throws(() => parseDuration(bad), (e: unknown) => (e as { code?: string }).code === 'ADMIN_BAD_REQUEST', bad)
  })

  it('the catalog stores policies per scope; set replaces rules, keeps or changes the hold; an older catalog gains the tables', () => {
    const store = TestStore.fresh()
    try {
      const ep = store.endpoint('alpha')
      assert.deepEqual(store.catalog.retentionPolicies(), [])
      store.catalog.setRetentionPolicy(0, { rules: { keepLast: 3, keepDaily: 7, minAgeMs: DAY } }, 10)
      store.catalog.setRetentionPolicy(ep, { hold: true }, 11)
      assert.deepEqual(store.catalog.retentionPolicies(), [
        { endpointId: 0, rules: { keepLast: 3, keepDaily: 7, minAgeMs: DAY }, hold: false, updatedAt: 10 },
        { endpointId: ep, hold: true, updatedAt: 11 }
      ])
      store.catalog.setRetentionPolicy(0, { rules: { keepWeekly: UNLIMITED } }, 12) // replaces, does not merge
      store.catalog.setRetentionPolicy(ep, { rules: { keepLast: 1 } }, 13) // the hold stays
      assert.deepEqual(store.catalog.retentionPolicies().map(p => [p.endpointId, p.rules, p.hold]), [[0, { keepWeekly: UNLIMITED }, false], [ep, { keepLast: 1 }, true]])
      assert.equal(store.catalog.setRetentionPolicy(ep, { rules: null, hold: false }, 14), undefined)
      assert.deepEqual(store.catalog.retentionPolicies().map(p => p.endpointId), [0])
      // a catalog made before retention existed: the tables appear when it is opened
      store.catalog.db.exec('DROP TABLE retention_policies; DROP TABLE pruned_snapshots')
      store.reopen()
      assert.deepEqual(store.catalog.retentionPolicies(), [])
      assert.deepEqual(store.catalog.prunedSnapshots(), [])
    } finally {
      store.dispose()
    }
  })
})

describe('integration: prune (fold-preserving removal, reclaim, repack, dry run, kill -9)', function () {
  this.timeout(300_000)
  const stores: TestStore[] = []
  afterEach(() => { for (const s of stores.splice(0)) s.dispose() })

  it('removes snapshots by the fold rule: exact versions after edits, deletions and re-creations', async () => {
    const store = TestStore.fresh()
    stores.push(store)
    const ep = store.endpoint('laptop')
    const other = store.endpoint('desktop')
    const v = (s: string, n = 1): Buffer => Buffer.from(`${s}\n`.repeat(n))
    const f = (path: string, content: Buffer, perm = 0o644): Spec => ({ folder: 'home', path, type: 'file', content, perm, mtimeNs: BigInt(content.byteLength) * 1_000_000_000n + 1_700_000_000_000_000_000n })
    const del = (path: string): Spec => ({ folder: 'home', path, type: 'deleted' })
    const t = (i: number): number => at('2024-05-01T00:00:00Z') + i * DAY
    const s: number[] = [0]
    s.push(store.commit(ep, [f('f', v('f1', 3000)), f('g', v('g1')), { folder: 'home', path: 'd', type: 'dir', perm: 0o750, mtimeNs: 1n * 1_000_000_000n }, f('d/h', v('h1')), f('old', v('old'))], t(1)))
    store.commit(other, [f('f', v('f1', 3000))], t(1)) // the same bytes on another endpoint: shared chunks
    s.push(store.commit(ep, [f('f', v('f2', 3000)), del('g')], t(2)))
    s.push(store.commit(ep, [f('f', v('f3', 3000)), f('g', v('g2')), f('tmp', v('tmp'))], t(3)))
    s.push(store.commit(ep, [del('f')], t(4)))
    s.push(store.commit(ep, [f('f', v('f4')), f('d/h', v('h2'), 0o600), f('tmp2', v('tmp2'))], t(5)))
    s.push(store.commit(ep, [f('g', v('g3')), del('tmp2')], t(6)))
    s.push(store.commit(ep, [f('eph', v('eph'))], t(7)))
    s.push(store.commit(ep, [del('eph'), del('old'), del('tmp')], t(8)))
    s.push(store.commit(ep, [f('last', v('last'))], t(9)))
    const before = new Map<number, Map<string, TreeDescription>>()
    for (const id of s.slice(1)) before.set(id, await store.restoreDescribe(ep, id))
    const keep = [s[2], s[4], s[6], s[9]]
    const remove = [s[1], s[3], s[5], s[7], s[8]]

    const result = transaction(store.catalog.db, () => removeSnapshots(store.catalog.db, ep, remove, t(10)))
    assert.deepEqual([...result.mergedInto], [[s[1], s[2]], [s[3], s[4]], [s[5], s[6]], [s[7], s[9]], [s[8], s[9]]])
    assert.deepEqual(store.catalog.snapshots(ep).map(x => x.id), keep)

    const versions = (path: string): string[] => store.catalog.db.prepare('SELECT snapshot_id, type, size FROM file_versions WHERE endpoint_id = ? AND path = ? ORDER BY snapshot_id')
      .all(ep, Buffer.from(path)).map(r => `${Number(r.snapshot_id)}:${String(r.type)}${r.type === 'file' ? `:${Number(r.size)}` : ''}`)
    // f: v1 (s1) superseded by v2 at s2; v3 (s3) superseded by the deletion at s4; v4 (s5) moves to s6
    assert.deepEqual(versions('f'), [`${s[2]}:file:${'f2\n'.length * 3000}`, `${s[4]}:deleted`, `${s[6]}:file:3`])
    // g: v1 (s1) superseded by the deletion at s2; v2 (s3) moves to s4
    assert.deepEqual(versions('g'), [`${s[2]}:deleted`, `${s[4]}:file:3`, `${s[6]}:file:3`])
    assert.deepEqual(versions('d'), [`${s[2]}:dir`])
    assert.deepEqual(versions('d/h'), [`${s[2]}:file:3`, `${s[6]}:file:3`])
    // tmp2: created at s5 (removed), deleted at s6 (kept): the version goes, the deletion stays
    assert.deepEqual(versions('tmp2'), [`${s[6]}:deleted`])
    // eph: created at s7, deleted at s8, both removed and absent at s6: nothing is left of it
    assert.deepEqual(versions('eph'), [])
    // old: present since s1 (moved to s2), deleted at s8: the deletion moves to s9
    assert.deepEqual(versions('old'), [`${s[2]}:file:4`, `${s[9]}:deleted`])
    assert.deepEqual(versions('tmp'), [`${s[4]}:file:4`, `${s[9]}:deleted`])
    assert.deepEqual(result, { moved: 9, dropped: 6, mergedInto: result.mergedInto })
    assert.deepEqual(store.catalog.prunedSnapshots().map(p => [p.id, p.mergedInto, p.versionsMoved, p.versionsDropped]), [
      [s[1], s[2], 3, 2], [s[3], s[4], 2, 1], [s[5], s[6], 2, 1], [s[7], s[9], 0, 1], [s[8], s[9], 2, 1]
    ])
    // every kept snapshot restores exactly as before
    for (const id of keep) assert.deepEqual(treeDiffs(before.get(id) as Map<string, TreeDescription>, await store.restoreDescribe(ep, id)), [], `snapshot ${id}`)
    // a deleted file is restorable from the last kept snapshot that holds it
    assert.equal(store.catalog.lastSnapshotHolding(ep, 'home', Buffer.from('old')), s[2])
    assert.equal(store.catalog.lastSnapshotHolding(ep, 'home', Buffer.from('eph')), undefined)
    // the newest snapshot cannot go
    assert.throws(() => transaction(store.catalog.db, () => removeSnapshots(store.catalog.db, ep, [s[9]], 0)), /newest/)

    // prune reclaims what no version uses: f1's chunks stay (the other endpoint has them), f3's go
    const r = await prune(store.catalog, store.packs, { now: t(10), repackThreshold: 0 })
    assert.equal(r.snapshots.removed, 0, 'no policy: nothing more is removed')
    assert.ok(r.chunks.reclaimed > 0)
    const ids = (content: Buffer): Uint8Array[] => cut(content).map(c => chunkId(c))
    assert.equal(store.catalog.missingChunks(ids(v('f1', 3000))).length, 0)
    assert.equal(store.catalog.missingChunks(ids(v('f3', 3000))).length, ids(v('f3', 3000)).length)
    for (const id of keep) assert.deepEqual(treeDiffs(before.get(id) as Map<string, TreeDescription>, await store.restoreDescribe(ep, id)), [], `snapshot ${id} after reclaiming`)
    assertConsistent(store, 'after reclaiming')
    await assertVerifies(store, 'after reclaiming')
  })

  it('random histories on two endpoints: every kept snapshot restores bit-exact, the rest is reclaimed, a second prune finds nothing', async () => {
    for (const seed of [0x5eed01, 0x5eed02, 0x5eed03]) {
      const built = buildHistories(seed, [36, 22])
      const store = built.store
      stores.push(store)
      const [alpha, bravo] = built.endpoints
      // the harness restores what the model says, before any prune
      for (const e of built.endpoints) for (const sn of e.snapshots) assert.deepEqual(treeDiffs(built.expected.get(sn.id) as Map<string, TreeDescription>, await store.restoreDescribe(e.id, sn.id)), [], `seed ${seed}: snapshot ${sn.id} before prune`)
      const globalRules: RetentionRules = { keepLast: 2, keepDaily: 3, keepWeekly: 1 }
      store.catalog.setRetentionPolicy(0, { rules: globalRules }, 0)
      store.catalog.setRetentionPolicy(bravo.id, { rules: { keepLast: 4 } }, 0)
      const bytesBefore = store.packBytesOnDisk()
      const r = await prune(store.catalog, store.packs, { now: built.now, utc: true, repackThreshold: 0 })

      const wantAlpha = kept(alpha.snapshots, rules(globalRules), built.now)
      const wantBravo = kept(bravo.snapshots, rules({ keepLast: 4 }), built.now)
      assert.deepEqual(store.catalog.snapshots(alpha.id).map(x => x.id), wantAlpha, `seed ${seed}: alpha keeps what the policy says`)
      assert.deepEqual(store.catalog.snapshots(bravo.id).map(x => x.id), wantBravo.slice(-4))
      assert.ok(wantAlpha.length < alpha.snapshots.length && wantAlpha.length >= 3)
      assert.equal(r.snapshots.removed, alpha.snapshots.length + bravo.snapshots.length - wantAlpha.length - wantBravo.length)
      assert.equal(await assertTreesIntact(store, built, `seed ${seed}`), wantAlpha.length + wantBravo.length)
      assertConsistent(store, `seed ${seed}`)
      // threshold 0: every dead chunk is gone, every chunk left is used, every pack is named
      assert.equal(unreferencedChunkRows(store), 0)
      assert.equal(r.chunks.left, 0)
      assert.ok(r.chunks.reclaimed > 0 && r.packs.deleted + r.packs.repacked > 0, JSON.stringify(r.packs))
      assert.equal(store.packBytesOnDisk(), bytesBefore - r.bytes.reclaimed)
      assert.ok(r.bytes.reclaimed > 0 && r.bytes.after < r.bytes.before)
      await assertVerifies(store, `seed ${seed}`)
      const verifyReport = await verifyStore(store.catalog, store.packs.dir, {})
      assert.deepEqual(verifyReport.packs.unreferenced, [], 'no pack is left behind')

      const again = await prune(store.catalog, store.packs, { now: built.now, utc: true, repackThreshold: 0 })
      assert.deepEqual([again.snapshots.removed, again.versions.dropped, again.versions.moved, again.chunks.dead, again.bytes.reclaimed], [0, 0, 0, 0, 0])
      // restores survive a restart too (recovery finds nothing to do)
      assert.deepEqual(store.reopen(), { removedPacks: [], truncatedBytes: 0 })
      await assertTreesIntact(store, built, `seed ${seed} after restart`)
    }
  })

  it('keeps everything without a policy, and under a hold; min-age protects young snapshots', async () => {
    const built = buildHistories(0x601d, [12, 6])
    const store = built.store
    stores.push(store)
    const [alpha, bravo] = built.endpoints
    const image = storeImage(store)
    const none = await prune(store.catalog, store.packs, { now: built.now, utc: true })
    assert.equal(none.snapshots.removed, 0)
    assert.equal(none.bytes.reclaimed, 0)
    assert.ok(none.endpoints.every(e => e.snapshots.every(sn => sn.keep && sn.reasons.includes('no-policy'))))
    assert.equal(storeImage(store), image, 'nothing changed')

    store.catalog.setRetentionPolicy(0, { rules: { keepLast: 1 }, hold: true }, 0)
    const held = await prune(store.catalog, store.packs, { now: built.now, utc: true })
    assert.equal(held.snapshots.removed, 0)
    assert.equal(storeImage(store), image, 'a global hold suspends every deletion')

    store.catalog.setRetentionPolicy(0, { hold: false }, 0)
    store.catalog.setRetentionPolicy(alpha.id, { hold: true }, 0)
    // bravo: one snapshot every 11 hours, the newest 23 hours old: min-age 36h keeps two
    store.catalog.setRetentionPolicy(bravo.id, { rules: { keepLast: 1, minAgeMs: parseDuration('36h') } }, 0)
    const young = bravo.snapshots.filter(x => built.now - x.time < 36 * HOUR).map(x => x.id)
    assert.equal(young.length, 2)
    const partly = await prune(store.catalog, store.packs, { now: built.now, utc: true })
    assert.equal(store.catalog.snapshots(alpha.id).length, alpha.snapshots.length, 'alpha is held')
    assert.deepEqual(store.catalog.snapshots(bravo.id).map(x => x.id), young)
    assert.deepEqual(partly.endpoints.find(e => e.endpoint === 'bravo')?.snapshots.slice(0, 3).map(sn => sn.reasons), [['newest', 'last', 'min-age'], ['min-age'], []])
    await assertTreesIntact(store, built, 'hold and min-age')
    await assertVerifies(store, 'hold and min-age')
  })

  it('reclaims: a fully dead pack is deleted, a partly dead one repacked above the threshold and left below it', async () => {
    const store = TestStore.fresh(1024 * 1024)
    stores.push(store)
    const ep = store.endpoint('packs')
    const rng = new Prng(7)
    const file = (path: string, content: Buffer): Spec => ({ folder: 'home', path, type: 'file', content, mtimeNs: 1_700_000_000_000_000_000n })
    const a = rng.bytes(20 * CHUNK)
    const b = rng.bytes(20 * CHUNK)
    const c = rng.bytes(20 * CHUNK)
    const packOf = (content: Buffer): Set<string> => new Set(cut(content).map(p => store.catalog.chunkLocation(chunkId(p))?.pack ?? '?'))
    // each file in a pack of its own
    store.commit(ep, [file('a', a)], 1)
    store.packs.finishPack()
    store.commit(ep, [file('b', b)], 2)
    store.packs.finishPack()
    store.commit(ep, [file('c', c)], 3)
    store.packs.finishPack()
    const [pa, pb, pc] = [a, b, c].map(x => [...packOf(x)])
    assert.ok(pa.length === 1 && pb.length === 1 && pc.length === 1 && new Set([pa[0], pb[0], pc[0]]).size === 3)
    // a goes; b keeps its first 12 chunks (40% of its pack dead); c loses its last chunk (5%)
    const b2 = Buffer.concat([b.subarray(0, 12 * CHUNK), rng.bytes(3 * CHUNK)])
    const c2 = Buffer.concat([c.subarray(0, 19 * CHUNK), rng.bytes(CHUNK)])
    const last = store.commit(ep, [{ folder: 'home', path: 'a', type: 'deleted' }, file('b', b2), file('c', c2)], 4)
    const before = await store.restoreDescribe(ep, last)
    store.catalog.setRetentionPolicy(0, { rules: { keepLast: 1 } }, 0)

    const dry = await prune(store.catalog, store.packs, { now: 10, dryRun: true })
    const r = await prune(store.catalog, store.packs, { now: 10 })
    assert.deepEqual([r.snapshots.removed, r.packs.deleted, r.packs.repacked, r.packs.belowThreshold], [3, 1, 1, 1])
    assert.deepEqual([r.chunks.dead, r.chunks.reclaimed, r.chunks.left], [20 + 8 + 1, 20 + 8, 1])
    assert.equal(existsSync(join(store.packs.dir, pa[0])), false, 'the fully dead pack is deleted')
    assert.equal(existsSync(join(store.packs.dir, pb[0])), false, 'the 40% dead pack is repacked')
    assert.ok(existsSync(join(store.packs.dir, pc[0])), 'the 5% dead pack stays')
    const movedTo = [...packOf(b2.subarray(0, 12 * CHUNK))]
    assert.ok(movedTo.length === 1 && movedTo[0] !== pb[0], 'b\'s live chunks now live in a new pack')
    // the dead chunk of c stays in the index (a later pull may use it again), and on disk
    assert.equal(store.catalog.missingChunks([chunkId(c.subarray(19 * CHUNK))]).length, 0)
    assert.deepEqual(treeDiffs(before, await store.restoreDescribe(ep, last)), [])
    await assertVerifies(store, 'after repack')
    const liveRecords = cut(b2.subarray(0, 12 * CHUNK)).reduce((n, p) => n + 40 + (store.catalog.chunkLocation(chunkId(p))?.clen ?? 0), 0)
    assert.equal(r.bytes.copied, liveRecords, 'copied: the live records of b\'s pack')

    // the dry run predicted the real run
    const pick = (x: PruneReport): unknown => [x.snapshots, x.versions, x.chunks, x.packs.deleted, x.packs.repacked, x.packs.belowThreshold, x.packs.orphans, x.bytes.copied]
    assert.deepEqual(pick(dry), pick(r))
    assert.ok(Math.abs(dry.bytes.reclaimed - r.bytes.reclaimed) <= 8, `estimate ${dry.bytes.reclaimed} vs ${r.bytes.reclaimed} (a new pack's 8-byte header)`)

    // a lower threshold repacks c's pack too; the dead chunk is then gone
    const low = await prune(store.catalog, store.packs, { now: 10, repackThreshold: 0.04 })
    assert.deepEqual([low.snapshots.removed, low.packs.repacked, low.chunks.reclaimed, low.chunks.left], [0, 1, 1, 0])
    assert.equal(store.catalog.missingChunks([chunkId(c.subarray(19 * CHUNK))]).length, 1)
    assert.deepEqual(treeDiffs(before, await store.restoreDescribe(ep, last)), [])
    await assertVerifies(store, 'after the second repack')
    // packs nothing names (an interrupted pull's) go too
    store.packs.finishPack()
    const stray = store.packs.append(chunkId(Buffer.from('stray')), 5, compressChunk(Buffer.from('stray'))).pack
    store.packs.sync()
    const strays = await prune(store.catalog, store.packs, { now: 10 })
    assert.equal(strays.packs.orphans, 1)
    assert.equal(existsSync(join(store.packs.dir, stray)), false)
  })

  it('a dry run changes nothing and reports per endpoint and snapshot what would go', async () => {
    const built = buildHistories(0xd12, [20, 10])
    const store = built.store
    stores.push(store)
    store.catalog.setRetentionPolicy(0, { rules: { keepLast: 3, keepDaily: 2 } }, 0)
    const image = storeImage(store)
    const dry = await prune(store.catalog, store.packs, { now: built.now, utc: true, dryRun: true })
    assert.equal(storeImage(store), image, 'catalog rows and pack files are as they were')
    assert.equal(dry.dryRun, true)
    const alpha = dry.endpoints.find(e => e.endpoint === 'alpha')
    assert.ok(alpha !== undefined)
    assert.equal(alpha.snapshots.length, 20)
    assert.equal(alpha.snapshots[0].id, Math.max(...built.endpoints[0].snapshots.map(x => x.id)), 'newest first')
    for (const sn of alpha.snapshots) {
      if (sn.keep) assert.ok(sn.reasons.length > 0)
      else assert.ok(sn.reasons.length === 0 && sn.mergedInto !== undefined && alpha.snapshots.some(k => k.keep && k.id === sn.mergedInto && k.id > sn.id))
    }
    assert.ok(dry.snapshots.removed > 0 && dry.versions.dropped > 0 && dry.chunks.dead > 0 && dry.bytes.reclaimed > 0)
    // twice in a row: the same answer (its changes were rolled back)
    const again = await prune(store.catalog, store.packs, { now: built.now, utc: true, dryRun: true })
    assert.deepEqual({ ...again, ms: 0 }, { ...dry, ms: 0 })
    const real = await prune(store.catalog, store.packs, { now: built.now, utc: true })
    assert.deepEqual([real.snapshots, real.versions, real.chunks.dead, real.chunks.reclaimed, real.packs.deleted, real.packs.repacked], [dry.snapshots, dry.versions, dry.chunks.dead, dry.chunks.reclaimed, dry.packs.deleted, dry.packs.repacked])
    assert.deepEqual(real.endpoints.map(e => e.snapshots.map(sn => [sn.id, sn.keep, sn.mergedInto])), dry.endpoints.map(e => e.snapshots.map(sn => [sn.id, sn.keep, sn.mergedInto])))
    await assertTreesIntact(store, built, 'after the real run')
  })

  it('kill -9 at every kind of step of a prune, and at random times: after recovery every snapshot left restores as before and verify passes', async function () {
    const built = buildHistories(0xc0ffee, [40, 24])
    const base = built.store
    stores.push(base)
    base.catalog.setRetentionPolicy(0, { rules: { keepLast: 3, keepDaily: 2, keepWeekly: 1 } }, 0)
    base.close()
    const work: string[] = []
    const copy = (): TestStore => {
      const dir = mkdtempSync(join(tmpdir(), 'holdfast-prune-kill-'))
      rmSync(dir, { recursive: true })
      cpSync(base.root, dir, { recursive: true })
      work.push(dir)
      return new TestStore(dir, base.packBytes)
    }
    try {
      // the reference: every step of an uninterrupted prune, and what it leaves
      const ref = copy()
      const steps: PruneStep[] = []
      const refReport = await prune(ref.catalog, ref.packs, { now: built.now, utc: true, onStep: st => { steps.push(st) } })
      const refKept = ref.catalog.snapshots().map(x => x.id)
      assert.ok(refReport.snapshots.removed > 0 && refReport.packs.deleted > 0 && refReport.packs.repacked > 0, JSON.stringify(refReport.packs))
      for (const kind of ['snapshots-removed', 'dead-chunks-found', 'dead-rows-deleted', 'dead-pack-removed', 'repack-synced', 'repack-committed', 'repacked-pack-removed'] as const) {
        assert.ok(steps.includes(kind), `the run passes ${kind}`)
      }
      ref.close()

      // kill points: the first and last step of each kind, and some others at random
      const rng = new Prng(0xdead)
      const points = new Set<number>()
      for (const kind of new Set(steps)) { points.add(steps.indexOf(kind) + 1); points.add(steps.lastIndexOf(kind) + 1) }
      while (points.size < Math.min(steps.length, 24)) points.add(rng.int(1, steps.length))
      const script = `
        import { join } from 'node:path'
        const { Catalog } = await import(process.env.HF_URL_CATALOG)
        const { PackStore } = await import(process.env.HF_URL_PACKS)
        const { prune } = await import(process.env.HF_URL_PRUNE)
        const dir = process.env.HF_STORE
        const catalog = new Catalog(join(dir, 'catalog.db'))
        const packs = new PackStore(join(dir, 'packs'), Number(process.env.HF_PACK_BYTES))
        packs.recover(catalog.packExtents())
        let n = 0
        const killAt = Number(process.env.HF_KILL_AT)
        process.send?.('started')
        const t = performance.now()
        await prune(catalog, packs, { now: Number(process.env.HF_NOW), utc: true, onStep: () => { if (++n === killAt) process.kill(process.pid, 'SIGKILL') } })
        process.stdout.write(String(performance.now() - t))
        process.exit(0)`
      const env = (dir: string, killAt: number): NodeJS.ProcessEnv => ({
        ...process.env,
        HF_URL_CATALOG: pathToFileURL(join(DIST_ROOT, 'src', 'store', 'core', 'catalog.js')).href,
        HF_URL_PACKS: pathToFileURL(join(DIST_ROOT, 'src', 'store', 'core', 'packs.js')).href,
        HF_URL_PRUNE: pathToFileURL(join(DIST_ROOT, 'src', 'store', 'maintenance', 'prune.js')).href,
        HF_STORE: dir,
        HF_PACK_BYTES: String(base.packBytes),
        HF_NOW: String(built.now),
        HF_KILL_AT: String(killAt)
      })
      const afterCrash = async (store: TestStore, context: string): Promise<void> => {
        store.reopen() // what the manager does first when it starts again
        assertConsistent(store, context)
        const left = store.catalog.snapshots().map(x => x.id)
        for (const id of refKept) assert.ok(left.includes(id), `${context}: kept snapshot ${id} is still there`)
        await assertTreesIntact(store, built, context)
        await assertVerifies(store, context)
        // a second prune finishes the job: the same snapshots as the uninterrupted run
        await prune(store.catalog, store.packs, { now: built.now, utc: true })
        assert.deepEqual(store.catalog.snapshots().map(x => x.id), refKept, `${context}: the next prune ends where an uninterrupted one does`)
        await assertTreesIntact(store, built, `${context}, pruned again`)
        await assertVerifies(store, `${context}, pruned again`)
        store.close()
      }

      for (const k of [...points].sort((a, b) => a - b)) {
        const store = copy()
        store.close()
        const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: env(store.root, k), encoding: 'utf8' })
        assert.equal(child.signal, 'SIGKILL', `killed at step ${k} (${steps[k - 1]}): ${child.stderr}`)
        await afterCrash(store, `killed at step ${k} (${steps[k - 1]})`)
      }

      // at random times, wherever the prune happens to be
      const full = copy()
      full.close()
      const whole = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: env(full.root, 0), encoding: 'utf8' })
      assert.equal(whole.status, 0, whole.stderr)
      const pruneMs = Number(whole.stdout)
      assert.ok(pruneMs > 0)
      for (let round = 0; round < 5; round++) {
        const store = copy()
        store.close()
        // a kill delay (the point of the test, not a wait for something): from when prune starts
        const delayMs = rng.uniform(0, pruneMs)
        const signal = await new Promise<NodeJS.Signals | null>((resolve, reject) => {
          const child = spawn(process.execPath, ['--input-type=module', '-e', script], { env: env(store.root, 0), stdio: ['ignore', 'ignore', 'pipe', 'ipc'] })
          let timer: NodeJS.Timeout | undefined
          child.on('message', () => { timer = setTimeout(() => child.kill('SIGKILL'), delayMs) })
          child.on('error', reject)
          child.on('exit', (_code, sig) => { clearTimeout(timer); resolve(sig) })
        })
        await afterCrash(store, `killed ${signal === 'SIGKILL' ? '' : '(too late) '}${delayMs.toFixed(1)} ms into the prune (round ${round})`)
      }
    } finally {
      for (const d of work) rmSync(d, { recursive: true, force: true })
    }
  })
})
