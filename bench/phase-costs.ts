/**
 * Where Holdfast's time goes, without the network: runs the real staging, serving, store and
 * restore code in this one process on the corpus and times each piece.
 *
 *   node dist/bench/phase-costs.js [CORPUS_DIR] [--out FILE] [--workers N] [--keep]
 *
 * --workers N: staging worker threads for the stageRound part (default 0: the agent's default,
 * one per core, at most 4); compare 1 and the default to see how staging scales.
 *
 *   1. scan        scanFolder over the tree, nothing tracked (first scan) and, after staging,
 *                  against the state db (the no-change scan), and a no-change stageRound
 *   2. pipeline    one thread, the worker's per-file loop with a timer around each step: open,
 *                  read, FastCDC cut, SHA-256, zstd, spool write (the CPU budget of staging);
 *                  beside it, what zstd level 1 would cost and give
 *   3. stageRound  the real Stager (worker threads, spool, state db), sets sealed as it goes
 *   4. serve       what the agent does per chunk to answer a fetch: Spool.readChunk
 *                  (= AgentStateDb.spoolLocation + readSync), and as FetchService does it,
 *                  Spool.readChunks per batch of 1,024; and the manifest's entry encoding
 *   5. ingest      what the manager does per chunk after it arrives: verifyChunk (zstd
 *                  decompress + SHA-256) in one thread and through the ChunkCheckPool as the
 *                  puller uses it, PackStore.append, then sync + Catalog.commitSnapshot
 *   6. restore     restoreSnapshot from that store into an empty dir, and its parts:
 *                  Catalog.chunkLocation, PackStore.read, verifyChunk, file create + write
 * The gap between these and the end-to-end figures (e2e-corpus) is the network path: libp2p
 * (noise, yamux), framing, and the processes' event loops.
 */
import { closeSync, constants, fstatSync, mkdirSync, mkdtempSync, openSync, readSync, rmSync, writeFileSync, writeSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { scanFolder, type ScanItem, type TrackedLookup } from '../src/staging/scanner.js'
import { AgentStateDb } from '../src/staging/state-db.js'
import { Spool } from '../src/staging/spool.js'
import { Stager, type StageProgress } from '../src/staging/stager.js'
import { defaultIgnore } from '../src/staging/ignore.js'
import { FastCdc, DEFAULT_CHUNKER } from '../src/chunking/fastcdc.js'
import { chunkId, verifyChunk, ZSTD_LEVEL } from '../src/codec/chunk-codec.js'
import { ChunkCompressor } from '../src/codec/chunk-compressor.js'
import { Catalog, type NewChunk } from '../src/store/core/catalog.js'
import { PackStore } from '../src/store/core/packs.js'
import { restoreSnapshot } from '../src/store/restore.js'
import { ChunkCheckPool, type VerifiedBatch } from '../src/store/ingest/chunk-check-pool.js'
import { entryToWire } from '../src/protocols/manifest.js'
import { CHUNK_ID_BYTES, type StagedEntry } from '../src/model/entry.js'
import { systemClock } from '../src/util/clock.js'
import { silentLogger } from '../src/util/log.js'
import { ensureCorpus, machineFacts, round, say, warmCache } from './support.js'

type Results = Record<string, Record<string, number | string | undefined>>

/** Runs the directory-at-a-time scan to the end and gathers what it found. */
function fullScan (root: string, tracked: TrackedLookup): { seen: number, changed: ScanItem[] } {
  const out = { seen: 0, changed: [] as ScanItem[] }
  for (const dir of scanFolder({ root, tracked, nowMs: Date.now(), settleMs: 0, ignore: defaultIgnore })) {
    out.seen += dir.seen
    for (const item of dir.changed) out.changed.push(item)
  }
  return out
}

function ms (t: number): number { return Math.round(performance.now() - t) }

async function main (): Promise<number> {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { out: { type: 'string' }, keep: { type: 'boolean' }, workdir: { type: 'string' }, workers: { type: 'string' } } })
  const corpus = resolve(ensureCorpus(positionals[0]))
  const work = mkdtempSync(join(resolve(values.workdir ?? '/var/tmp'), 'holdfast-phases-'))
  const results: Results = {}
  const folder = { name: 'corpus', path: corpus, ignore: [] as string[] }
  try {
    say(`== phase costs on ${corpus} (work dir ${work})`)
    results.warm = { seconds: round(warmCache(corpus)) }

    // 1. scan
    let t = performance.now()
    const firstScan = fullScan(corpus, { childrenOf: () => new Map(), descendantsOf: () => [] })
    results.scan = { firstScanMs: ms(t), entries: firstScan.seen, changed: firstScan.changed.length }
    say(`   scan (nothing tracked): ${results.scan.firstScanMs} ms, ${firstScan.seen} entries`)

    // 2. the per-file pipeline in one thread
    const pipe = { openMs: 0, readMs: 0, cutMs: 0, shaMs: 0, zstdMs: 0, writeMs: 0, files: 0, chunks: 0, rawBytes: 0, zstdBytes: 0, zstdLevel1Ms: 0, zstdLevel1Bytes: 0 }
    const chunker = new FastCdc(DEFAULT_CHUNKER)
    const buffer = Buffer.allocUnsafe(DEFAULT_CHUNKER.maxSize * 2)
    // as the staging workers do: one kept zstd context
    const compressor = new ChunkCompressor(ZSTD_LEVEL, DEFAULT_CHUNKER.maxSize)
    const compressor1 = new ChunkCompressor(1, DEFAULT_CHUNKER.maxSize)
    const seg = openSync(join(work, 'pipeline.seg'), constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o600)
    let segOff = 0
    const tPipe = performance.now()
    for (const item of firstScan.changed) {
      if (item.tracked.type !== 'file') continue
      let a = performance.now()
      const fd = openSync(item.abs, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK)
      fstatSync(fd, { bigint: true })
      pipe.openMs += performance.now() - a
      let filled = 0
      let start = 0
      let eof = false
      for (;;) {
        if (!eof && filled < buffer.length) {
          a = performance.now()
          const n = readSync(fd, buffer, filled, buffer.length - filled, null)
          pipe.readMs += performance.now() - a
          if (n === 0) eof = true
          filled += n
          if (!eof && filled < buffer.length) continue
        }
        if (start >= filled && eof) break
        a = performance.now()
        const len = chunker.cut(buffer, start, filled, eof)
        pipe.cutMs += performance.now() - a
        if (len < 0) { buffer.copy(buffer, 0, start, filled); filled -= start; start = 0; continue }
        if (len === 0) break
        const plain = buffer.subarray(start, start + len)
        a = performance.now()
        chunkId(plain)
        const b = performance.now()
        const z = compressor.compressView(plain)
        const c = performance.now()
        let w = 0
        while (w < z.byteLength) w += writeSync(seg, z, w, z.byteLength - w, segOff + w)
        segOff += z.byteLength
        pipe.writeMs += performance.now() - c
        // what level 1 would cost and give (not part of the pipeline's total)
        const d = performance.now()
        pipe.zstdLevel1Bytes += compressor1.compressView(plain).byteLength
        pipe.zstdLevel1Ms += performance.now() - d
        pipe.shaMs += b - a
        pipe.zstdMs += c - b
        pipe.chunks++
        pipe.rawBytes += len
        pipe.zstdBytes += z.byteLength
        start += len
        if (start >= filled && eof) break
      }
      a = performance.now()
      fstatSync(fd, { bigint: true })
      closeSync(fd)
      pipe.openMs += performance.now() - a
      pipe.files++
    }
    closeSync(seg)
    rmSync(join(work, 'pipeline.seg'))
    results.pipeline = {
      totalMs: ms(tPipe) - Math.round(pipe.zstdLevel1Ms),
      ...Object.fromEntries(Object.entries(pipe).map(([k, v]) => [k, k.endsWith('Ms') ? Math.round(v) : v])),
      zstdUsPerChunk: round(pipe.zstdMs * 1000 / pipe.chunks, 1),
      zstdMBps: round(pipe.rawBytes / 1e6 / (pipe.zstdMs / 1000), 0),
      ratio: round(pipe.rawBytes / pipe.zstdBytes, 2),
      level1Ratio: round(pipe.rawBytes / pipe.zstdLevel1Bytes, 2)
    }
    say(`   pipeline, 1 thread: ${JSON.stringify(results.pipeline)}`)

    // 3. the real Stager
    const agentDir = join(work, 'agent')
    mkdirSync(agentDir)
    const state = new AgentStateDb(join(agentDir, 'agent.db'))
    const spool = new Spool(join(agentDir, 'spool'), state)
    const stager = new Stager({ folders: [folder], state, spool, clock: systemClock, log: silentLogger, settleMs: 0, workers: Number(values.workers ?? 0), spoolCapBytes: 20 * 2 ** 30 })
    const phaseAt: Partial<Record<StageProgress['phase'], number>> = {}
    t = performance.now()
    const round1 = await stager.stageRound({ onProgress: p => { phaseAt[p.phase] ??= performance.now() - t } })
    const stageTotal = performance.now() - t
    const sets = round1.sets
    if (sets.length === 0) throw new Error('the first staging round sealed nothing')
    results.stageRound = {
      workers: values.workers ?? 'default',
      totalMs: Math.round(stageTotal),
      // the scan now walks one directory at a time and stages as it goes: 'staging' starts
      // with the first batch, so scan and stage overlap
      firstBatchAtMs: Math.round(phaseAt.staging ?? 0),
      sets: sets.length,
      entries: sets.reduce((n, x) => n + x.entries, 0),
      chunks: sets.reduce((n, x) => n + x.chunks, 0),
      storedBytes: sets.reduce((n, x) => n + x.storedBytes, 0)
    }
    say(`   stageRound: ${JSON.stringify(results.stageRound)}`)
    t = performance.now()
    const rescan = fullScan(corpus, { childrenOf: dir => state.trackedChildren(folder.name, dir), descendantsOf: dir => state.trackedDescendants(folder.name, dir) })
    const rescanMs = ms(t)
    t = performance.now()
    const round2 = await stager.stageRound()
    results.noChange = { stageRoundMs: ms(t), scanWithStateDbMs: rescanMs, changedInScan: rescan.changed.length, changed: round2.changed }
    say(`   no-change stageRound: ${JSON.stringify(results.noChange)}`)

    // 4. serving: manifest entries and spooled chunks
    t = performance.now()
    const entriesBySet = sets.map(x => ({ set: x, entries: [...state.setEntries(x.id)] }))
    const entries: StagedEntry[] = entriesBySet.flatMap(x => x.entries)
    const readEntriesMs = ms(t)
    t = performance.now()
    let wireBytes = 0
    for (let i = 0; i < entries.length; i += 2000) wireBytes += JSON.stringify({ v: 1, entries: entries.slice(i, i + 2000).map(entryToWire) }).length
    const encodeMs = ms(t)
    const ids: Uint8Array[] = []
    const setOfChunk: number[] = []
    const seen = new Set<string>()
    for (const { set, entries: es } of entriesBySet) {
      for (const e of es) {
        for (let i = 0; i < e.chunks.byteLength; i += CHUNK_ID_BYTES) {
          const id = e.chunks.subarray(i, i + CHUNK_ID_BYTES)
          const k = Buffer.from(id).toString('latin1')
          if (!seen.has(k)) { seen.add(k); ids.push(id); setOfChunk.push(set.id) }
        }
      }
    }
    t = performance.now()
    for (const id of ids) state.spoolLocation(id)
    const locateMs = ms(t)
    t = performance.now()
    const spooled: Array<{ rawLength: number, compressed: Uint8Array }> = []
    for (const id of ids) {
      const c = await spool.readChunk(id)
      if (c === null) throw new Error('a staged chunk is missing from the spool')
      spooled.push(c)
    }
    const readChunkMs = ms(t)
    // what FetchService does: batches of 1,024 (the puller's batch), one lookup and a read per run
    t = performance.now()
    let servedBytes = 0
    for (let b = 0; b < ids.length; b += 1024) {
      for await (const c of spool.readChunks(ids.slice(b, b + 1024))) {
        if (c === null) throw new Error('a staged chunk is missing from the spool')
        servedBytes += c.compressed.byteLength
      }
    }
    const readChunksMs = ms(t)
    if (servedBytes !== spooled.reduce((n, c) => n + c.compressed.byteLength, 0)) throw new Error('batched reads gave other bytes than one-by-one reads')
    results.serve = { entriesFromDbMs: readEntriesMs, encodeEntriesJsonMs: encodeMs, entriesJsonBytes: wireBytes, chunks: ids.length, spoolLocationMs: locateMs, readChunkMs, readChunkUsPerChunk: round(readChunkMs * 1000 / ids.length, 1), readChunksBatchedMs: readChunksMs, readChunksUsPerChunk: round(readChunksMs * 1000 / ids.length, 1) }
    say(`   serve: ${JSON.stringify(results.serve)}`)

    // 5. ingest on the manager's side
    const storeDir = join(work, 'manager')
    mkdirSync(storeDir)
    const catalog = new Catalog(join(storeDir, 'catalog.db'))
    const packs = new PackStore(join(storeDir, 'packs'))
    const endpointId = catalog.touchEndpoint('bench-peer', 'bench', Date.now())
    t = performance.now()
    const missing = catalog.unownedChunks(endpointId, ids) // what the puller asks (ownership: docs/security.md)
    const missingMs = ms(t)
    let verifyMs = 0
    let appendMs = 0
    const newChunks = new Map<number, NewChunk[]>(sets.map(x => [x.id, []]))
    for (let i = 0; i < ids.length; i++) {
      const c = spooled[i]
      let a = performance.now()
      verifyChunk(ids[i], c.compressed, c.rawLength)
      verifyMs += performance.now() - a
      a = performance.now()
      const loc = packs.append(ids[i], c.rawLength, c.compressed)
      appendMs += performance.now() - a
      newChunks.get(setOfChunk[i])?.push({ ...loc, id: ids[i], rawlen: c.rawLength })
    }
    t = performance.now()
    packs.sync()
    const syncMs = ms(t)
    t = performance.now()
    let snapshotId = 0
    for (const { set, entries: es } of entriesBySet) {
      snapshotId = catalog.commitSnapshot({ endpointId, setId: set.id, sealedAt: set.sealedAt, committedAt: Date.now(), entries: es, chunks: newChunks.get(set.id) ?? [] })
    }
    const commitMs = ms(t)
    // the same verification as the puller does it: batches of 256 chunks / 4 MiB in a pool of
    // worker threads (one per core), four batches in flight
    const pool = new ChunkCheckPool()
    // the pool's workers are unref'd (the manager's other handles keep it alive): hold the loop
    const keepAlive = setInterval(() => {}, 1000)
    t = performance.now()
    const inFlight: Array<Promise<VerifiedBatch>> = []
    let batch = pool.batch()
    const send = async (): Promise<void> => {
      inFlight.push(pool.verify(batch))
      batch = pool.batch()
      if (inFlight.length >= 4) (await inFlight.shift() as VerifiedBatch).release()
    }
    for (let i = 0; i < ids.length; i++) {
      if (!batch.fits(spooled[i].compressed.byteLength)) await send()
      batch.add({ id: ids[i], rawLength: spooled[i].rawLength, compressed: spooled[i].compressed })
    }
    if (batch.count > 0) await send()
    await Promise.all(inFlight)
    const poolMs = ms(t)
    clearInterval(keepAlive)
    await pool.terminate()
    results.ingest = { missingChunksMs: missingMs, missing: missing.length, verifyMs: Math.round(verifyMs), verifyUsPerChunk: round(verifyMs * 1000 / ids.length, 1), verifyPoolWallMs: poolMs, packAppendMs: Math.round(appendMs), packSyncMs: syncMs, commitSnapshotsMs: commitMs, snapshots: entriesBySet.length }
    say(`   ingest: ${JSON.stringify(results.ingest)}`)
    spooled.length = 0

    // 6. restore, whole, then its parts
    const target = join(work, 'restore')
    t = performance.now()
    const summary = await restoreSnapshot(catalog, packs, { endpointId, snapshotId, target })
    const restoreMs = ms(t)
    rmSync(target, { recursive: true, force: true })
    let locMs = 0
    let readMs = 0
    let verMs = 0
    const tParts = performance.now()
    for (const e of catalog.treeAt(endpointId, snapshotId)) {
      for (let i = 0; i < e.chunks.byteLength; i += CHUNK_ID_BYTES) {
        const id = e.chunks.subarray(i, i + CHUNK_ID_BYTES)
        let a = performance.now()
        const loc = catalog.chunkLocation(id)
        locMs += performance.now() - a
        if (loc === undefined) throw new Error('chunk missing from the catalog')
        a = performance.now()
        const data = packs.read(loc)
        readMs += performance.now() - a
        a = performance.now()
        verifyChunk(id, data, loc.rawlen)
        verMs += performance.now() - a
      }
    }
    const partsMs = ms(tParts)
    // creating files: the same number of small files, in directories of the same fan-out
    const createDir = join(work, 'create-test')
    const buf = Buffer.alloc(4096, 0x61)
    t = performance.now()
    const n = summary.files
    for (let i = 0; i < n; i++) {
      if (i % 16 === 0) mkdirSync(join(createDir, String(i >> 4)), { recursive: true })
      const fd = openSync(join(createDir, String(i >> 4), `f${i}`), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600)
      writeSync(fd, buf)
      closeSync(fd)
    }
    const createMs = ms(t)
    rmSync(createDir, { recursive: true, force: true })
    results.restore = {
      restoreSnapshotMs: restoreMs,
      files: summary.files,
      errors: summary.errors.length,
      readAllChunksMs: partsMs,
      chunkLocationMs: Math.round(locMs),
      packReadMs: Math.round(readMs),
      verifyMs: Math.round(verMs),
      createFilesMs: createMs,
      createUsPerFile: round(createMs * 1000 / n, 0)
    }
    say(`   restore: ${JSON.stringify(results.restore)}`)
    catalog.close()
    packs.close()
    spool.closeAll()
    state.close()
    const out = { bench: 'phase-costs', machine: machineFacts(), corpus, results }
    process.stdout.write(JSON.stringify(out, null, 2) + '\n')
    if (values.out !== undefined) writeFileSync(values.out, JSON.stringify(out, null, 2) + '\n')
    return 0
  } finally {
    if (values.keep !== true) rmSync(work, { recursive: true, force: true }); else say(`   kept ${work}`)
  }
}

process.exitCode = await main().catch(err => {
  say(`phase-costs failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`)
  return 1
})
