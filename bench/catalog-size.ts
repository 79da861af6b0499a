/**
 * Catalog weight (issue 12 item 7): backs a tree up into a real store (FastCDC, zstd,
 * PackStore, Catalog), committed the way the manager commits a first backup (one snapshot per
 * set of at most 20,000 entries, DEFAULT_MAX_SET_ENTRIES), then reports the catalog's bytes
 * per table and index (SQLite's dbstat), the -wal and -shm files as the backup left them, and
 * bytes per file version and per chunk. Also the CPU-s of the commits and of one restore-style
 * lookup pass (treeAt + ownedChunkLocation of every chunk), so a smaller catalog is not bought
 * with a slower commit or restore.
 *
 *   node dist/bench/catalog-size.js SOURCE_DIR STORE_DIR [--dist DIST_ROOT]
 *
 * --dist: the build whose Catalog and PackStore are used (default: this one), so an old build
 * (e.g. /work/main/dist) is measured by the same script (A/B). STORE_DIR must not exist.
 */
import { lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, statSync, existsSync } from 'node:fs'
import { join, resolve, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { FastCdc } from '../src/chunking/fastcdc.js'
import { chunkId, compressChunk } from '../src/codec/chunk-codec.js'
import type { Catalog as CatalogT, NewChunk } from '../src/store/core/catalog.js'
import type { PackStore as PackStoreT } from '../src/store/core/packs.js'
import type { StagedEntry } from '../src/model/entry.js'

const SET_ENTRIES = 20_000
const FOLDER = 'src'

function size (f: string): number { return existsSync(f) ? statSync(f).size : 0 }

async function main (): Promise<void> {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { dist: { type: 'string' } } })
  if (positionals.length !== 2) throw new Error('usage: catalog-size SOURCE_DIR STORE_DIR [--dist DIST_ROOT]')
  const root = resolve(positionals[0])
  const storeDir = resolve(positionals[1])
  if (existsSync(storeDir)) throw new Error(`${storeDir} exists`)
  const dist = values.dist === undefined ? join(dirname(fileURLToPath(import.meta.url)), '..') : resolve(values.dist)
  const { Catalog } = await import(join(dist, 'src/store/core/catalog.js')) as { Catalog: typeof CatalogT }
  const { PackStore } = await import(join(dist, 'src/store/core/packs.js')) as { PackStore: typeof PackStoreT }
  mkdirSync(storeDir, { recursive: true })
  const packs = new PackStore(join(storeDir, 'packs'))
  const dbFile = join(storeDir, 'catalog.db')
  let catalog = new Catalog(dbFile)
  const endpointId = catalog.touchEndpoint('bench-peer', 'bench', Date.now())
  const cdc = new FastCdc()
  const seen = new Set<string>()
  let entries: StagedEntry[] = []
  let chunks: NewChunk[] = []
  let setId = 0
  let versions = 0
  let chunkRows = 0
  let commitCpu = 0
  const commit = (): void => {
    if (entries.length === 0) return
    packs.sync()
    const c0 = process.cpuUsage()
    catalog.commitSnapshot({ endpointId, setId: ++setId, sealedAt: Date.now(), committedAt: Date.now(), entries, chunks })
    const c = process.cpuUsage(c0)
    commitCpu += (c.user + c.system) / 1e6
    versions += entries.length
    chunkRows += chunks.length
    entries = []
    chunks = []
  }
  const walk = (rel: string): void => {
    for (const name of readdirSync(join(root, rel)).sort()) {
      const relPath = rel === '' ? name : `${rel}/${name}`
      const abs = join(root, relPath)
      const st = lstatSync(abs, { bigint: true })
      const base = { folder: FOLDER, path: new Uint8Array(Buffer.from(relPath)), mode: Number(st.mode), mtimeNs: st.mtimeNs, size: 0, chunks: new Uint8Array(0) }
      if (st.isDirectory()) {
        entries.push({ ...base, type: 'dir' })
        if (entries.length >= SET_ENTRIES) commit()
        walk(relPath)
        continue
      } else if (st.isSymbolicLink()) {
        entries.push({ ...base, type: 'symlink', target: new Uint8Array(readlinkSync(abs, { encoding: 'buffer' })) })
      } else if (st.isFile()) {
        const data = readFileSync(abs)
        const ids: Uint8Array[] = []
        for (let pos = 0; pos < data.byteLength;) {
          const len = cdc.cut(data, pos, data.byteLength, true)
          const plain = data.subarray(pos, pos + len)
          const id = chunkId(plain)
          ids.push(id)
          const key = Buffer.from(id).toString('latin1')
          if (!seen.has(key)) {
            seen.add(key)
            chunks.push({ ...packs.append(id, len, compressChunk(plain)), id, rawlen: len })
          }
          pos += len
        }
        entries.push({ ...base, type: 'file', size: data.byteLength, chunks: new Uint8Array(Buffer.concat(ids)) })
      }
      if (entries.length >= SET_ENTRIES) commit()
    }
  }
  walk('')
  commit()
  const files = { db: size(dbFile), wal: size(`${dbFile}-wal`), shm: size(`${dbFile}-shm`) }
  const perObject = catalog.db.prepare('SELECT name, count(*) AS pages, sum(pgsize) AS bytes, sum(payload) AS payload FROM dbstat GROUP BY name ORDER BY bytes DESC').all()
  const total = files.db + files.wal + files.shm
  process.stdout.write(`${versions} file versions, ${chunkRows} chunks, ${setId} sets; ${packs.packNames().length} packs\n`)
  process.stdout.write(`catalog.db ${files.db} B, -wal ${files.wal} B, -shm ${files.shm} B; total ${total} B = ${(total / versions).toFixed(1)} B per version, ${(total / chunkRows).toFixed(1)} B per chunk\n`)
  for (const r of perObject) process.stdout.write(`  ${String(r.name).padEnd(36)} ${String(r.bytes).padStart(11)} B  payload ${String(r.payload).padStart(11)} B  ${(Number(r.bytes) / versions).toFixed(1)} B/version\n`)
  process.stdout.write(`commit CPU-s ${commitCpu.toFixed(3)}\n`)
  // a restore's lookups, on a fresh connection (as a restore after a restart)
  catalog.close()
  catalog = new Catalog(dbFile)
  const snapshotId = catalog.latestSnapshot(endpointId) ?? 0
  const c0 = process.cpuUsage()
  let refs = 0
  catalog.readBatch(() => {
    for (const v of catalog.treeAt(endpointId, snapshotId)) {
      for (let i = 0; i < v.chunks.byteLength; i += 32) { catalog.ownedChunkLocation(endpointId, v.chunks.subarray(i, i + 32)); refs++ }
    }
  })
  const c = process.cpuUsage(c0)
  process.stdout.write(`lookup CPU-s ${((c.user + c.system) / 1e6).toFixed(3)} (treeAt + ${refs} ownedChunkLocation)\n`)
  catalog.close()
  packs.close()
}

await main()
