/**
 * Browse, stats and verify on a generated catalog of about a million file versions.
 *
 *   node dist/bench/catalog-browse.js [--endpoints 10] [--files 60000] [--snapshots 21]
 *        [--changes 2000] [--dir DIR] [--keep] [--no-verify] [--explain]
 *
 * Each endpoint gets one folder with 20 × 30 directories of `files / 600` files each (names
 * of a few kinds: report-N.docx, img_N.jpg, notes-N.md, data-N.csv), a first snapshot of the
 * whole tree, then `snapshots - 1` snapshots that each modify, delete or add `changes` files.
 * A third of the files hold content every endpoint shares (stored once). Chunk data is real
 * (small, zstd-compressed, in real packs), so verify and verify --read-data run as they would.
 * Each query runs once cold, then 5 times; the table shows the first run and the median.
 */
import { mkdtempSync, rmSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { createHash } from 'node:crypto'
import { Catalog, type NewChunk } from '../src/store/core/catalog.js'
import { PackStore } from '../src/store/core/packs.js'
import { compressChunk } from '../src/codec/chunk-codec.js'
import type { StagedEntry } from '../src/model/entry.js'
import { findPaths, listTree, pathVersions, resolveSnapshot } from '../src/store/queries/browse.js'
import { storeStats } from '../src/store/queries/stats.js'
import { verifyStore } from '../src/store/maintenance/verify.js'

const { values } = parseArgs({
  options: {
    endpoints: { type: 'string', default: '10' },
    files: { type: 'string', default: '60000' },
    snapshots: { type: 'string', default: '21' },
    changes: { type: 'string', default: '2000' },
    dir: { type: 'string' },
    keep: { type: 'boolean' },
    'no-verify': { type: 'boolean' },
    explain: { type: 'boolean' }
  }
})
const ENDPOINTS = Number(values.endpoints)
const FILES = Number(values.files)
const SNAPSHOTS = Number(values.snapshots)
const CHANGES = Number(values.changes)
const TOP = 20
const SUB = 30
const PER_DIR = Math.max(1, Math.round(FILES / (TOP * SUB)))
const KINDS = ['report-%.docx', 'img_%.jpg', 'notes-%.md', 'data-%.csv']
const T0 = Date.parse('2024-01-01T00:00:00Z')
const HOUR = 3600_000

function say (s: string): void { process.stderr.write(s + '\n') }

/** Deterministic PRNG (xorshift32), so runs are comparable. */
let seed = 0x486f6c64
function rand (n: number): number {
  seed ^= seed << 13; seed >>>= 0
  seed ^= seed >>> 17
  seed ^= seed << 5; seed >>>= 0
  return seed % n
}

function fileName (d: number, s: number, i: number): string {
  const kind = KINDS[i % KINDS.length]
  return `d${d}/s${s}/${kind.replace('%', String(d * 100000 + s * 1000 + i))}`
}

interface Built { root: string, catalog: Catalog, packs: PackStore, endpointIds: number[], generateMs: number }

function build (root: string): Built {
  const started = performance.now()
  const catalog = new Catalog(join(root, 'catalog.db'))
  const packs = new PackStore(join(root, 'packs'))
  const endpointIds: number[] = []
  let contentCounter = 0
  const chunkFor = (shared: boolean, key: string, pending: Map<string, { id: Uint8Array, plain: Buffer }>): { id: Uint8Array, size: number } => {
    const plain = Buffer.from(shared ? `shared:${key}` : `own:${contentCounter++}:${key}`)
    const id = new Uint8Array(createHash('sha256').update(plain).digest())
    pending.set(Buffer.from(id).toString('latin1'), { id, plain })
    return { id, size: plain.length }
  }
  const commit = (endpointId: number, setId: number, entries: StagedEntry[], pending: Map<string, { id: Uint8Array, plain: Buffer }>): void => {
    const missing = catalog.missingChunks([...pending.values()].map(p => p.id))
    const byKey = pending
    const chunks: NewChunk[] = []
    for (const id of missing) {
      const p = byKey.get(Buffer.from(id).toString('latin1'))
      if (p === undefined) continue
      chunks.push({ id, rawlen: p.plain.length, ...packs.append(id, p.plain.length, compressChunk(p.plain)) })
    }
    packs.sync()
    const at = T0 + setId * HOUR + endpointId * 1000
    // every chunk the set lists counts as sent by it (a puller fetches what the endpoint does not own)
    catalog.commitSnapshot({ endpointId, setId, sealedAt: at - 500, committedAt: at, entries, chunks, proven: [...pending.values()].map(p => p.id) })
  }
  for (let e = 0; e < ENDPOINTS; e++) {
    const endpointId = catalog.touchEndpoint(`12D3KooWBench${String(e).padStart(4, '0')}`, `host-${e}`, T0)
    endpointIds.push(endpointId)
    const live = new Map<string, number>() // path → version
    let pending = new Map<string, { id: Uint8Array, plain: Buffer }>()
    const entries: StagedEntry[] = []
    const fileEntry = (path: string, version: number): StagedEntry => {
      const shared = (path.length + version) % 3 === 0 && version === 0
      const nChunks = path.endsWith('.jpg') ? 3 : 1
      const ids: Uint8Array[] = []
      let size = 0
      for (let c = 0; c < nChunks; c++) {
        const chunk = chunkFor(shared, `${path}#${version}#${c}`, pending)
        ids.push(chunk.id)
        size += chunk.size
      }
      return { folder: 'home', path: Buffer.from(path), type: 'file', mode: 0o100644, mtimeNs: BigInt(T0 + version * HOUR) * 1_000_000n, size, chunks: new Uint8Array(Buffer.concat(ids)) }
    }
    for (let d = 0; d < TOP; d++) {
      entries.push({ folder: 'home', path: Buffer.from(`d${d}`), type: 'dir', mode: 0o040755, mtimeNs: BigInt(T0) * 1_000_000n, size: 0, chunks: new Uint8Array(0) })
      for (let s = 0; s < SUB; s++) {
        entries.push({ folder: 'home', path: Buffer.from(`d${d}/s${s}`), type: 'dir', mode: 0o040755, mtimeNs: BigInt(T0) * 1_000_000n, size: 0, chunks: new Uint8Array(0) })
        for (let i = 0; i < PER_DIR; i++) {
          const p = fileName(d, s, i)
          live.set(p, 0)
          entries.push(fileEntry(p, 0))
        }
      }
    }
    commit(endpointId, 1, entries, pending)
    let added = PER_DIR
    for (let snap = 2; snap <= SNAPSHOTS; snap++) {
      pending = new Map()
      const changes: StagedEntry[] = []
      const touched = new Set<string>()
      for (let k = 0; k < CHANGES; k++) {
        const d = rand(TOP)
        const s = rand(SUB)
        const what = rand(10)
        if (what < 6) { // modify
          const p = fileName(d, s, rand(PER_DIR))
          if (!live.has(p) || touched.has(p)) continue
          touched.add(p)
          const v = (live.get(p) ?? 0) + 1
          live.set(p, v)
          changes.push(fileEntry(p, v))
        } else if (what < 8) { // delete
          const p = fileName(d, s, rand(PER_DIR))
          if (!live.has(p) || touched.has(p)) continue
          touched.add(p)
          live.delete(p)
          changes.push({ folder: 'home', path: Buffer.from(p), type: 'deleted', mode: 0, mtimeNs: 0n, size: 0, chunks: new Uint8Array(0) })
        } else { // add
          const p = fileName(d, s, added++)
          touched.add(p)
          live.set(p, 0)
          changes.push(fileEntry(p, 0))
        }
      }
      commit(endpointId, snap, changes, pending)
    }
    say(`  endpoint ${e + 1}/${ENDPOINTS}: ${Number(catalog.db.prepare('SELECT count(*) AS n FROM file_versions').get()?.n)} versions so far`)
  }
  packs.sync()
  return { root, catalog, packs, endpointIds, generateMs: performance.now() - started }
}

function time<T> (fn: () => T, runs = 5): { first: number, median: number, result: T } {
  let t = performance.now()
  const result = fn()
  const first = performance.now() - t
  const times: number[] = []
  for (let i = 0; i < runs; i++) {
    t = performance.now()
    fn()
    times.push(performance.now() - t)
  }
  times.sort((a, b) => a - b)
  return { first, median: times[Math.floor(times.length / 2)], result }
}

async function timeAsync<T> (fn: () => Promise<T>): Promise<{ ms: number, result: T }> {
  const t = performance.now()
  const result = await fn()
  return { ms: performance.now() - t, result }
}

async function main (): Promise<void> {
  const root = values.dir ?? mkdtempSync(join(tmpdir(), 'holdfast-bench-catalog-'))
  let built: Built
  if (values.dir !== undefined && existsSync(join(root, 'catalog.db'))) {
    say(`reusing ${root}`)
    const catalog = new Catalog(join(root, 'catalog.db'))
    built = { root, catalog, packs: new PackStore(join(root, 'packs')), endpointIds: catalog.endpoints().map(e => e.id), generateMs: 0 }
  } else {
    say(`generating into ${root}: ${ENDPOINTS} endpoints × (${TOP * SUB * PER_DIR} files + ${SNAPSHOTS - 1} snapshots × ${CHANGES} changes)`)
    built = build(root)
  }
  const { catalog, endpointIds } = built
  const versions = Number(catalog.db.prepare('SELECT count(*) AS n FROM file_versions').get()?.n)
  const chunks = Number(catalog.db.prepare('SELECT count(*) AS n FROM chunks').get()?.n)
  const snapshots = catalog.snapshots().length
  say(`catalog: ${versions} file versions, ${chunks} chunks, ${snapshots} snapshots${built.generateMs > 0 ? `; generated in ${(built.generateMs / 1000).toFixed(1)} s` : ''}`)

  const ep = catalog.endpointById(endpointIds[Math.floor(endpointIds.length / 2)])
  const latest = resolveSnapshot(catalog, ep, {})
  const middle = resolveSnapshot(catalog, ep, { at: T0 + Math.floor(SNAPSHOTS / 2) * HOUR + 0.5 * HOUR })
  const rows: Array<[string, string, number, number]> = []
  const run = (name: string, detail: (r: unknown) => string, fn: () => unknown): void => {
    const t = time(fn)
    rows.push([name, detail(t.result), t.first, t.median])
  }
  const n = (r: unknown): string => {
    const o = r as { entries?: unknown[], versions?: unknown[], hits?: unknown[], truncated?: boolean }
    const len = (o.entries ?? o.versions ?? o.hits ?? []).length
    return `${len}${o.truncated === true ? '+' : ''} rows`
  }
  run('ls (folders)', n, () => listTree(catalog, { endpointId: ep.id, snapshotId: latest.id }))
  run('ls home (20 dirs over the whole tree)', n, () => listTree(catalog, { endpointId: ep.id, snapshotId: latest.id, path: 'home' }))
  run('ls home/d7 (30 dirs)', n, () => listTree(catalog, { endpointId: ep.id, snapshotId: latest.id, path: 'home/d7' }))
  run('ls home/d7/s12 (a directory of files)', n, () => listTree(catalog, { endpointId: ep.id, snapshotId: latest.id, path: 'home/d7/s12' }))
  run(`ls home/d7/s12 --at (snapshot ${middle.id})`, n, () => listTree(catalog, { endpointId: ep.id, snapshotId: middle.id, path: 'home/d7/s12' }))
  run('ls one file', n, () => listTree(catalog, { endpointId: ep.id, snapshotId: latest.id, path: `home/${fileName(7, 12, 3)}` }))
  run('resolve --at', () => '1 row', () => resolveSnapshot(catalog, ep, { at: T0 + 5.5 * HOUR }))
  run('versions of one file', n, () => pathVersions(catalog, ep.id, `home/${fileName(7, 12, 3)}`))
  run("find '*.docx' (first 1000)", n, () => findPaths(catalog, '*.docx', { limit: 1000 }))
  run("find 'report-712003.docx' (whole fleet, no match limit)", n, () => findPaths(catalog, 'report-712003.docx', { limit: 0 }))
  run("find '*-7120??.*' (whole fleet)", n, () => findPaths(catalog, '*-7120??.*', { limit: 0 }))
  run("find 'd7/s12/*.md' (literal head: index range)", n, () => findPaths(catalog, 'd7/s12/*.md', { limit: 0 }))
  run("find 'home/d7/**/notes-71200*' (folder named)", n, () => findPaths(catalog, 'home/d7/**/notes-71200*', { limit: 0 }))
  run("find '*.docx' --endpoint (all matches)", n, () => findPaths(catalog, '*.docx', { endpointId: ep.id, limit: 0 }))
  const stats = time(() => storeStats(catalog), 2)
  rows.push(['stats (all endpoints)', `${stats.result.total.files} files, ratio ${stats.result.total.dedupRatio}`, stats.first, stats.median])

  const w = Math.max(...rows.map(r => r[0].length))
  const out = [`${'query'.padEnd(w)}  ${'result'.padEnd(22)}  first ms  median ms`]
  for (const [name, detail, first, median] of rows) out.push(`${name.padEnd(w)}  ${detail.padEnd(22)}  ${first.toFixed(1).padStart(8)}  ${median.toFixed(1).padStart(9)}`)
  process.stdout.write(`catalog: ${versions} file versions, ${chunks} chunks, ${snapshots} snapshots, ${ENDPOINTS} endpoints\n${out.join('\n')}\n`)

  if (values['no-verify'] !== true) {
    const v = await timeAsync(async () => await verifyStore(catalog, built.packs.dir, {}))
    process.stdout.write(`verify:             ${(v.ms / 1000).toFixed(2)} s, ${v.result.chunks.checked} chunks, ${v.result.versions} file versions, ok=${String(v.result.ok)}\n`)
    const vd = await timeAsync(async () => await verifyStore(catalog, built.packs.dir, { readData: true }))
    process.stdout.write(`verify --read-data: ${(vd.ms / 1000).toFixed(2)} s, ${(vd.result.chunks.bytesRead / 1048576).toFixed(1)} MiB read, ok=${String(vd.result.ok)}\n`)
  }

  if (values.explain === true) {
    const plan = (sql: string, ...params: Array<string | number | Uint8Array>): string =>
      catalog.db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params).map(r => `    ${String(r.detail)}`).join('\n')
    process.stdout.write('\nquery plans\n')
    process.stdout.write(`  ls seek:\n${plan('SELECT path FROM file_versions WHERE endpoint_id = ?1 AND folder = ?2 AND path >= ?3 AND path < ?5 AND snapshot_id <= ?4 ORDER BY path LIMIT 1', 1, 'home', Buffer.from('d'), 5, Buffer.from('e'))}\n`)
    process.stdout.write(`  version at:\n${plan('SELECT snapshot_id, type FROM file_versions WHERE endpoint_id = ? AND folder = ? AND path = ? AND snapshot_id <= ? ORDER BY snapshot_id DESC LIMIT 1', 1, 'home', Buffer.from('x'), 5)}\n`)
    process.stdout.write(`  find groups:\n${plan('SELECT endpoint_id, folder FROM file_versions WHERE (endpoint_id, folder) > (?, ?) ORDER BY endpoint_id, folder LIMIT 1', 1, 'home')}\n`)
    process.stdout.write(`  --at:\n${plan('SELECT id FROM snapshots WHERE endpoint_id = ? AND committed_at <= ? ORDER BY committed_at DESC, id DESC LIMIT 1', 1, 5)}\n`)
    process.stdout.write(`  verify page:\n${plan('SELECT id, offset, clen, rawlen FROM chunks WHERE pack = ? AND (offset, id) > (?, ?) ORDER BY offset, id LIMIT 2048', 'p', 0, Buffer.alloc(0))}\n`)
  }

  built.packs.close()
  catalog.close()
  if (values.keep !== true && values.dir === undefined) rmSync(root, { recursive: true, force: true })
  else say(`kept ${root}`)
}

await main()
