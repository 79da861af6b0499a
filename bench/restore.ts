/**
 * Restore speed on its own (issue 12 item 6): backs a tree up once into a real store
 * (PackStore + Catalog, chunked with the real FastCDC and zstd) and times N full restores of
 * it with `restoreSnapshot`, each into a new empty directory.
 *
 *   npm run bench:restore -- [SOURCE_DIR] [--runs N] [--store DIR] [--restic] [--keep] [--main-thread] [--out FILE]
 *
 * SOURCE_DIR: default a ~200 MB part of corpus A (fs, net, kernel, include, Documentation),
 * copied once to /var/tmp/restore-bench-src. --store DIR keeps the store there and reuses it
 * when it exists, so two builds can be compared on the very same store (A/B). --restic backs
 * the same tree up with restic once and times `restic restore` between Holdfast's runs.
 *
 * The restores run as in the manager daemon: in a worker thread with the daemon thread's heap
 * limits (src/daemon/run-daemon.ts), which starts the writer threads; --main-thread runs them
 * on this thread instead (as before).
 *
 * Per run: wall, peak RSS over the restore alone (VmHWM, reset just before), CPU-s of this process (process.cpuUsage: every thread, so the libuv pool and
 * worker threads count), files/s, and a 2,000-file creation probe taken just before (this
 * disk's file creation cost swings by 20×; see bench/support.ts createProbe). Restored trees
 * are removed only after the last run: a bulk delete slows file creation for minutes here.
 * The machine is shared: compare CPU-seconds and ratios within one run, not wall across runs.
 */
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'
import { FastCdc } from '../src/chunking/fastcdc.js'
import { chunkId, compressChunk } from '../src/codec/chunk-codec.js'
import { Catalog, type NewChunk } from '../src/store/core/catalog.js'
import { PackStore } from '../src/store/core/packs.js'
import { restoreSnapshot } from '../src/store/restore.js'
import type { StagedEntry } from '../src/model/entry.js'
import { CORPUS_HOME, createProbe, procSample, resetPeakRss, ensureCorpus, machineFacts, median, round, runTimed, say, sourceRevision, warmCache } from './support.js'

const PART = ['fs', 'net', 'kernel', 'include', 'Documentation']
const DEFAULT_SOURCE = '/var/tmp/restore-bench-src'
const FOLDER = 'src'

/** The default tree: part of corpus A, copied once (a copy, so the corpus stays untouched). */
function defaultSource (): string {
  if (existsSync(join(DEFAULT_SOURCE, PART[0]))) return DEFAULT_SOURCE
  const corpus = ensureCorpus()
  mkdirSync(DEFAULT_SOURCE, { recursive: true })
  for (const p of PART) cpSync(join(corpus, p), join(DEFAULT_SOURCE, p), { recursive: true, verbatimSymlinks: true, preserveTimestamps: true })
  return DEFAULT_SOURCE
}

/** Backs `root` up as one snapshot: the manager's commit order (append, sync, commit). */
function backup (root: string, storeDir: string): { files: number, bytes: number } {
  const packs = new PackStore(join(storeDir, 'packs'))
  const catalog = new Catalog(join(storeDir, 'catalog.db'))
  const endpointId = catalog.touchEndpoint('bench-peer', 'bench', Date.now())
  const cdc = new FastCdc()
  const entries: StagedEntry[] = []
  const chunks: NewChunk[] = []
  const seen = new Set<string>()
  let files = 0
  let bytes = 0
  const walk = (rel: string): void => {
    for (const name of readdirSync(join(root, rel)).sort()) {
      const relPath = rel === '' ? name : `${rel}/${name}`
      const abs = join(root, relPath)
      const st = lstatSync(abs, { bigint: true })
      const base = { folder: FOLDER, path: new Uint8Array(Buffer.from(relPath)), mode: Number(st.mode), mtimeNs: st.mtimeNs, size: 0, chunks: new Uint8Array(0) }
      if (st.isDirectory()) {
        entries.push({ ...base, type: 'dir' })
        walk(relPath)
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
        files++
        bytes += data.byteLength
      }
    }
  }
  walk('')
  packs.sync()
  catalog.commitSnapshot({ endpointId, setId: 1, sealedAt: Date.now(), committedAt: Date.now(), entries, chunks })
  catalog.close()
  packs.close()
  return { files, bytes }
}

interface Run { tool: string, wallS: number, cpuS: number, userS: number, sysS: number, filesPerS: number, probeUsPerFile: number, errors?: number, peakRssMiB?: number }

/** The manager daemon thread's heap limits (src/daemon/run-daemon.ts): restores run under them. */
const DAEMON_THREAD_LIMITS = { maxYoungGenerationSizeMb: 16 }

interface RestoreResult { files: number, errors: number }

/** Restores the store's latest snapshot into each target it is sent, on the thread it runs on. */
function restorer (storeDir: string): { restore: (target: string) => Promise<RestoreResult>, close: () => void } {
  const catalog = new Catalog(join(storeDir, 'catalog.db'))
  const packs = new PackStore(join(storeDir, 'packs'))
  const endpointId = catalog.findEndpoint('bench-peer').id
  const snapshotId = catalog.latestSnapshot(endpointId) ?? 0
  return {
    restore: async target => {
      const s = await restoreSnapshot(catalog, packs, { endpointId, snapshotId, target })
      return { files: s.files, errors: s.errors.length }
    },
    close: () => { catalog.close(); packs.close() }
  }
}

/** The same, in a worker thread with the daemon thread's limits. */
function threadRestorer (storeDir: string): { restore: (target: string) => Promise<RestoreResult>, close: () => Promise<number> } {
  const worker = new Worker(new URL(import.meta.url), { workerData: { storeDir }, resourceLimits: DAEMON_THREAD_LIMITS })
  return {
    restore: async target => await new Promise<RestoreResult>((resolve, reject) => {
      worker.once('message', (m: RestoreResult | { error: string }) => { if ('error' in m) reject(new Error(m.error)); else resolve(m) })
      worker.once('error', reject)
      worker.postMessage(target)
    }),
    close: async () => await worker.terminate()
  }
}

async function main (): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { runs: { type: 'string', default: '3' }, 'main-thread': { type: 'boolean', default: false }, store: { type: 'string' }, restic: { type: 'boolean', default: false }, keep: { type: 'boolean', default: false }, out: { type: 'string' } }
  })
  const source = positionals[0] === undefined ? defaultSource() : resolve(positionals[0])
  const runs = Math.max(1, Math.min(20, Number(values.runs)))
  const work = mkdtempSync(join(CORPUS_HOME, 'restore-bench-'))
  const storeDir = values.store === undefined ? join(work, 'store') : resolve(values.store)
  say(`source ${source}; work ${work}; store ${storeDir}`)
  let facts: { files: number, bytes: number } | undefined
  if (!existsSync(join(storeDir, 'catalog.db'))) {
    mkdirSync(storeDir, { recursive: true })
    const t = performance.now()
    facts = backup(source, storeDir)
    say(`backed up ${facts.files} files, ${facts.bytes} bytes in ${round((performance.now() - t) / 1000)} s`)
  }
  const resticRepo = join(work, 'restic-repo')
  const resticEnv = { RESTIC_PASSWORD: 'bench', RESTIC_REPOSITORY: resticRepo }
  if (values.restic === true) {
    const init = await runTimed(['restic', 'init'], { env: resticEnv, timeoutMs: 60_000 })
    const b = await runTimed(['restic', 'backup', '--quiet', source], { env: resticEnv, timeoutMs: 600_000 })
    if (init.code !== 0 || b.code !== 0) throw new Error(`restic failed: ${init.stderr}${b.stderr}`)
  }
  warmCache(source)
  const r = values['main-thread'] === true ? restorer(storeDir) : threadRestorer(storeDir)
  // the packs are read from the page cache, as after a recent backup
  warmCache(join(storeDir, 'packs'))
  const results: Run[] = []
  for (let i = 0; i < runs; i++) {
    const probeUsPerFile = createProbe(work, true)
    const target = join(work, `hf-${i}`)
    const peakReset = resetPeakRss(process.pid)
    const c0 = process.cpuUsage()
    const t0 = performance.now()
    const s = await r.restore(target)
    const wallS = (performance.now() - t0) / 1000
    const c = process.cpuUsage(c0)
    const peak = peakReset ? procSample(process.pid)?.vmHwmMiB : undefined
    const run: Run = { tool: 'holdfast', wallS: round(wallS, 3) as number, cpuS: round((c.user + c.system) / 1e6, 3) as number, userS: round(c.user / 1e6, 3) as number, sysS: round(c.system / 1e6, 3) as number, filesPerS: Math.round(s.files / wallS), probeUsPerFile, errors: s.errors, ...(peak === undefined ? {} : { peakRssMiB: Math.round(peak) }) }
    results.push(run)
    say(JSON.stringify(run))
    if (values.restic === true) {
      const probe = createProbe(work, true)
      const r = await runTimed(['restic', 'restore', '--quiet', 'latest', '--target', join(work, `restic-${i}`)], { env: resticEnv, timeoutMs: 600_000 })
      if (r.code !== 0) throw new Error(`restic restore failed: ${r.stderr}`)
      const cpu = (r.childUserS ?? 0) + (r.childSysS ?? 0)
      const rr: Run = { tool: 'restic', wallS: round(r.wallS, 3) as number, cpuS: round(cpu, 3) as number, userS: r.childUserS ?? 0, sysS: r.childSysS ?? 0, filesPerS: Math.round(s.files / r.wallS), probeUsPerFile: probe }
      results.push(rr)
      say(JSON.stringify(rr))
    }
  }
  await r.close()
  const summary = (tool: string): Record<string, number> | undefined => {
    const xs = results.filter(r => r.tool === tool)
    if (xs.length === 0) return undefined
    const peaks = xs.flatMap(r => r.peakRssMiB === undefined ? [] : [r.peakRssMiB])
    return { wallS: round(median(xs.map(r => r.wallS)), 3) as number, cpuS: round(median(xs.map(r => r.cpuS)), 3) as number, filesPerS: Math.round(median(xs.map(r => r.filesPerS))), ...(peaks.length === 0 ? {} : { peakRssMiB: Math.max(...peaks) }) }
  }
  const hf = summary('holdfast')
  const rs = summary('restic')
  const out = {
    bench: 'restore',
    machine: machineFacts(),
    revision: sourceRevision(resolve(import.meta.dirname, '..', '..')),
    source,
    backedUp: facts,
    runs: results,
    median: { holdfast: hf, restic: rs },
    ratio: hf !== undefined && rs !== undefined ? { wall: round(hf.wallS / rs.wallS, 2), cpu: round(hf.cpuS / rs.cpuS, 2) } : undefined
  }
  say(`median holdfast ${JSON.stringify(hf)}${rs === undefined ? '' : ` restic ${JSON.stringify(rs)} ratio ${JSON.stringify(out.ratio)}`}`)
  // removed only now: deleting the restored trees slows file creation for a while on this disk
  // (a --store given is outside `work` and stays for the next run). With --keep the restored
  // trees stay too, for the caller to remove once every timed run is over (A/B runs in a row).
  if (values.keep === true) say(`kept ${work}`)
  else rmSync(work, { recursive: true, force: true })
  const text = JSON.stringify(out, null, 2) + '\n'
  if (values.out !== undefined) writeFileSync(values.out, text)
  process.stdout.write(text)
}

if (isMainThread) {
  main().catch(err => { say(String((err as Error).stack ?? err)); process.exitCode = 1 })
} else {
  const r = restorer((workerData as { storeDir: string }).storeDir)
  parentPort?.on('message', (target: string) => {
    r.restore(target).then(m => { parentPort?.postMessage(m) }, (err: unknown) => { parentPort?.postMessage({ error: String((err as Error).stack ?? err) }) })
  })
}
