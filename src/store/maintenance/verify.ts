/**
 * `holdfast verify`: do the catalog and the packs agree, and (with readData) is every stored
 * chunk still the chunk it claims to be? Damage is reported with what it touches: the chunk
 * ids, the file versions that reference them (endpoint, folder/path, the snapshot that
 * recorded the version) and every snapshot whose tree holds such a version.
 *
 * The algorithm (docs/architecture.md has the prose):
 * 1. Packs: each pack the chunk index names (packs by name, each checked against chunks_by_pack) is opened. A pack
 *    that is gone marks all its chunks bad (one INSERT … SELECT). Otherwise its chunks are
 *    read from the index in file order, a page at a time, and handed to worker threads
 *    (verify-pack-worker.ts), which check each record's place and header and, with
 *    readData, decompress and re-hash its data, streaming forward through the pack with a
 *    bounded window. Records that overlap the one before are reported. Bad chunk ids go to
 *    a temp table.
 * 2. Catalog, in SQL over every file version, its chunk list expanded against a sequence
 *    (chunk-refs.ts), no query per row: (a) chunk lists wrong on their face (not a multiple
 *    of 32 bytes; a size but no chunks); (b) references to chunks the index lacks (an
 *    anti-join, one primary-key probe per reference) become bad chunks too; (c) with
 *    readData, each version's size against the sum of its chunks' raw lengths; (d) the
 *    versions that reference any bad chunk (a probe into the small temp table of bad ids).
 * 3. Impact: for each damaged version, the next version of its path bounds the snapshots
 *    whose trees hold it; their union is the damaged snapshots.
 * The store may take pulls meanwhile: a chunk is in the index only after its pack was
 * fsynced, so what the index names is on disk when it is checked.
 */
import { Worker } from 'node:worker_threads'
import { availableParallelism } from 'node:os'
import { readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { HoldfastError } from '../../util/errors.js'
import { CHUNK_ID_BYTES, displayPath, toHex } from '../../model/entry.js'
import type { Catalog } from '../core/catalog.js'
import { CHUNK_REF, ensureSeq, maxChunksPerVersion } from '../core/chunk-refs.js'
import { PACK_NAMED } from '../core/pack-ids.js'
import { PACK_RECORD_HEADER } from '../core/packs.js'
import { endpointLabel } from '../queries/browse.js'
import type { PackJob, PackJobReply, PackProblemKind } from './verify-pack-worker.js'

export type VerifyProblemKind = PackProblemKind | 'pack-missing' | 'pack-unreadable' | 'overlap' | 'chunk-missing' | 'size-mismatch' | 'bad-chunk-list'

export interface VerifyProblem {
  kind: VerifyProblemKind
  message: string
  pack?: string
  /** Hex chunk id. */
  chunk?: string
  offset?: number
  /** For a pack-level problem: how many chunks it holds. */
  chunks?: number
  /** For a catalog problem: the file version. */
  file?: { peerId: string, endpoint: string, path: string, snapshotId: number }
}

export interface DamagedFile {
  peerId: string
  endpoint: string
  folder: string
  /** "<folder>/<path>", display form. */
  path: string
  rawPath: string
  /** The snapshot that recorded this version. */
  snapshotId: number
  /** The snapshots whose tree holds this version: the first, the last, how many. */
  inSnapshots: { first: number, last: number, count: number }
  /** Its bad chunks (hex), at most a few. */
  chunks: string[]
  reason: 'bad-chunk' | 'chunk-missing' | 'size-mismatch' | 'bad-chunk-list'
}

export interface VerifyProgress {
  phase: 'packs' | 'catalog' | 'impact'
  packsDone: number
  packsTotal: number
  chunksDone: number
  chunksTotal: number
  bytesRead: number
  bytesTotal: number
  problems: number
}

export interface VerifyReport {
  ok: boolean
  readData: boolean
  packs: { total: number, missing: number, unreferenced: string[] }
  chunks: { total: number, checked: number, bytesRead: number }
  versions: number
  problemCounts: Partial<Record<VerifyProblemKind, number>>
  problemsTotal: number
  /** The first `limit` problems. */
  problems: VerifyProblem[]
  damaged: {
    chunksTotal: number
    chunks: string[]
    filesTotal: number
    files: DamagedFile[]
    snapshotsTotal: number
    snapshots: Array<{ id: number, peerId: string, endpoint: string }>
  }
  ms: number
}

export interface VerifyOptions {
  readData?: boolean
  /** Worker threads (default: up to 4). */
  workers?: number
  /** How many problems, damaged chunks, files and snapshots to list (counts are exact). Default 1000. */
  limit?: number
  signal?: AbortSignal
  onProgress?: (p: VerifyProgress) => void
}

const PAGE_CHUNKS = 2048
const JOB_DATA_BYTES = 32 * 1024 * 1024
const PROGRESS_MS = 250

class PackWorkers {
  private readonly workers: Worker[] = []
  private readonly idle: Worker[] = []
  private readonly waiting: Array<(w: Worker) => void> = []
  private readonly pending = new Map<number, { resolve: (r: PackJobReply) => void, reject: (e: Error) => void }>()
  private failure?: Error

  constructor (count: number) {
    for (let i = 0; i < count; i++) {
      const w = new Worker(new URL('./verify-pack-worker.js', import.meta.url))
      w.on('message', (r: PackJobReply | { closed: true }) => {
        if ('closed' in r) return
        const p = this.pending.get(r.job)
        this.pending.delete(r.job)
        this.release(w)
        p?.resolve(r)
      })
      w.on('error', err => { this.fail(err) })
      this.workers.push(w)
      this.idle.push(w)
    }
  }

  async run (job: PackJob): Promise<PackJobReply> {
    if (this.failure !== undefined) throw this.failure
    const w = this.idle.pop() ?? await new Promise<Worker>(resolve => { this.waiting.push(resolve) })
    return await new Promise((resolve, reject) => {
      this.pending.set(job.job, { resolve, reject })
      w.postMessage(job, [job.ids.buffer as ArrayBuffer])
    })
  }

  private release (w: Worker): void {
    const next = this.waiting.shift()
    if (next !== undefined) next(w)
    else this.idle.push(w)
  }

  private fail (err: Error): void {
    this.failure = err
    for (const p of this.pending.values()) p.reject(err)
    this.pending.clear()
  }

  async close (): Promise<void> {
    await Promise.all(this.workers.map(async w => await w.terminate()))
  }
}

interface Tally {
  report: VerifyReport
  limit: number
}

function addProblem (t: Tally, p: VerifyProblem, count = 1): void {
  t.report.problemsTotal += count
  t.report.problemCounts[p.kind] = (t.report.problemCounts[p.kind] ?? 0) + count
  if (t.report.problems.length < t.limit) t.report.problems.push(p)
}

export async function verifyStore (catalog: Catalog, packsDir: string, options: VerifyOptions = {}): Promise<VerifyReport> {
  const started = performance.now()
  const db = catalog.db
  const readData = options.readData === true
  const limit = options.limit ?? 1000
  const report: VerifyReport = {
    ok: false,
    readData,
    packs: { total: 0, missing: 0, unreferenced: [] },
    chunks: { total: 0, checked: 0, bytesRead: 0 },
    versions: 0,
    problemCounts: {},
    problemsTotal: 0,
    problems: [],
    damaged: { chunksTotal: 0, chunks: [], filesTotal: 0, files: [], snapshotsTotal: 0, snapshots: [] },
    ms: 0
  }
  const t: Tally = { report, limit }
  db.exec(`DROP TABLE IF EXISTS temp.hf_verify_bad; DROP TABLE IF EXISTS temp.hf_verify_versions;
    CREATE TEMP TABLE hf_verify_bad (id BLOB PRIMARY KEY, kind TEXT NOT NULL) WITHOUT ROWID;
    CREATE TEMP TABLE hf_verify_versions (vid INTEGER PRIMARY KEY, endpoint_id INTEGER NOT NULL, snapshot_id INTEGER NOT NULL, reason TEXT NOT NULL, missing INTEGER NOT NULL, next_sid INTEGER);
    CREATE INDEX temp.hf_verify_versions_by_snapshot ON hf_verify_versions (endpoint_id, snapshot_id)`)
  const markBad = db.prepare('INSERT OR IGNORE INTO temp.hf_verify_bad (id, kind) VALUES (?, ?)')

  const totals = db.prepare('SELECT count(*) AS n, total(clen) AS bytes FROM chunks').get()
  const progress: VerifyProgress = {
    phase: 'packs',
    packsDone: 0,
    packsTotal: 0,
    chunksDone: 0,
    chunksTotal: Number(totals?.n ?? 0),
    bytesRead: 0,
    bytesTotal: readData ? Number(totals?.bytes ?? 0) : 0,
    problems: 0
  }
  report.chunks.total = progress.chunksTotal
  let lastProgress = 0
  const tell = (force = false): void => {
    const now = performance.now()
    if (!force && now - lastProgress < PROGRESS_MS) return
    lastProgress = now
    progress.problems = report.problemsTotal
    options.onProgress?.({ ...progress })
  }
  const checkAbort = (): void => { if (options.signal?.aborted === true) throw options.signal.reason }

  try {
    // ---- 1. packs
    const packNames: string[] = []
    // packs in name order, those no chunk names left out (prune keeps a pack's row)
    const nextPack = db.prepare('SELECT p.name FROM packs p WHERE p.name > ? AND EXISTS (SELECT 1 FROM chunks c WHERE c.pack = p.id) ORDER BY p.name LIMIT 1')
    for (let after = ''; ;) {
      const r = nextPack.get(after)
      if (r === undefined) break
      after = r.name as string
      packNames.push(after)
    }
    report.packs.total = progress.packsTotal = packNames.length
    tell(true)
    const workerCount = Math.max(1, options.workers ?? Math.min(4, availableParallelism()))
    const workers = new PackWorkers(workerCount)
    let nextJob = 1
    try {
      const pageStmt = db.prepare(`SELECT id, offset, clen, rawlen FROM chunks WHERE pack = ${PACK_NAMED} AND (offset, id) > (?, ?)
        ORDER BY offset, id LIMIT ${PAGE_CHUNKS}`)
      const inFlight = new Set<Promise<void>>()
      const settle = (job: PackJob, reply: PackJobReply): void => {
        progress.bytesRead += reply.bytesRead
        report.chunks.bytesRead += reply.bytesRead
        if (reply.unreadable !== undefined) {
          for (let i = 0; i < job.offsets.length; i++) {
            const id = job.ids.subarray(i * 32, i * 32 + 32)
            markBad.run(id, 'pack-unreadable')
          }
          addProblem(t, { kind: 'pack-unreadable', pack: job.pack, chunks: job.offsets.length, message: `pack ${job.pack} cannot be read: ${reply.unreadable.message}` })
        }
        for (const p of reply.problems) {
          if (p.index < 0) { addProblem(t, { kind: p.kind, pack: job.pack, message: p.message }); continue }
          const id = job.ids.subarray(p.index * 32, p.index * 32 + 32)
          markBad.run(id, p.kind)
          addProblem(t, { kind: p.kind, pack: job.pack, chunk: toHex(id), offset: job.offsets[p.index], message: p.message })
        }
        report.chunks.checked += job.offsets.length
        progress.chunksDone += job.offsets.length
        tell()
      }
      const dispatch = async (job: PackJob): Promise<void> => {
        // the worker receives the ids' buffer (transferred); keep a copy for the reply
        const mine: PackJob = { ...job, ids: new Uint8Array(job.ids) }
        const reply = await workers.run(job)
        settle(mine, reply)
      }
      const submit = async (job: PackJob): Promise<void> => {
        const p = dispatch(job).finally(() => { inFlight.delete(p) })
        p.catch(() => {}) // awaited below; a worker failure must not also go unhandled
        inFlight.add(p)
        if (inFlight.size >= workerCount * 2) await Promise.race(inFlight)
      }
      for (const pack of packNames) {
        checkAbort()
        try {
          statSync(join(packsDir, pack))
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
          db.prepare(`INSERT OR IGNORE INTO temp.hf_verify_bad (id, kind) SELECT id, 'pack-missing' FROM chunks WHERE pack = ${PACK_NAMED}`).run(pack)
          const n = Number(db.prepare(`SELECT count(*) AS n FROM chunks WHERE pack = ${PACK_NAMED}`).get(pack)?.n ?? 0)
          report.packs.missing++
          addProblem(t, { kind: 'pack-missing', pack, chunks: n, message: `pack ${pack} is missing: the catalog places ${n} chunks in it` })
          report.chunks.checked += n
          progress.chunksDone += n
          progress.packsDone++
          tell()
          continue
        }
        let lastOffset = -1
        let lastId: Uint8Array = new Uint8Array(0)
        let prevEnd = 0
        let first = true
        for (;;) {
          checkAbort()
          const rows = pageStmt.all(pack, lastOffset, lastId)
          if (rows.length === 0) break
          let job: PackJob | undefined
          let jobBytes = 0
          const flush = async (): Promise<void> => {
            if (job === undefined) return
            const j = job
            job = undefined
            jobBytes = 0
            await submit(j)
          }
          const idBuf = Buffer.allocUnsafe(rows.length * 32)
          let jobStart = 0
          for (let i = 0; i < rows.length; i++) {
            const r = rows[i]
            const id = r.id as Uint8Array
            const offset = Number(r.offset)
            const clen = Number(r.clen)
            if (offset - PACK_RECORD_HEADER < prevEnd) {
              addProblem(t, { kind: 'overlap', pack, chunk: toHex(id), offset, message: `the record at ${offset - PACK_RECORD_HEADER} overlaps the one before it (which ends at ${prevEnd})` })
            }
            prevEnd = Math.max(prevEnd, offset + clen)
            if (job !== undefined && (job.offsets.length >= PAGE_CHUNKS || (readData && jobBytes + clen > JOB_DATA_BYTES))) {
              job.ids = new Uint8Array(idBuf.subarray(jobStart * 32, i * 32))
              await flush()
              jobStart = i
            }
            job ??= { job: nextJob++, dir: packsDir, pack, checkMagic: first, readData, ids: new Uint8Array(0), offsets: [], clens: [], rawlens: [] }
            first = false
            idBuf.set(id, i * 32)
            job.offsets.push(offset)
            job.clens.push(clen)
            job.rawlens.push(Number(r.rawlen))
            jobBytes += clen
          }
          if (job !== undefined) {
            (job as PackJob).ids = new Uint8Array(idBuf.subarray(jobStart * 32, rows.length * 32))
            await flush()
          }
          const last = rows[rows.length - 1]
          lastOffset = Number(last.offset)
          lastId = last.id as Uint8Array
          if (rows.length < PAGE_CHUNKS) break
        }
        // its last jobs may still be running: progress counts packs handed out
        progress.packsDone++
        tell()
      }
      await Promise.all(inFlight)
    } finally {
      await workers.close()
    }
    const inCatalog = new Set(packNames)
    try {
      report.packs.unreferenced = readdirSync(packsDir).filter(n => n.endsWith('.pack') && !inCatalog.has(n)).sort()
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }

    // ---- 2. catalog: every file version's chunk references
    checkAbort()
    progress.phase = 'catalog'
    tell(true)
    ensureSeq(db, maxChunksPerVersion(db))
    report.versions = Number(db.prepare("SELECT count(*) AS n FROM file_versions WHERE type = 'file'").get()?.n ?? 0)
    const expand = `file_versions fv CROSS JOIN temp.hf_seq n ON n.k < length(fv.chunks) / ${CHUNK_ID_BYTES}`
    // 2a. chunk lists wrong on their face
    db.exec(`INSERT INTO temp.hf_verify_versions (vid, endpoint_id, snapshot_id, missing, reason)
      SELECT rowid, endpoint_id, snapshot_id, 0, CASE WHEN length(chunks) % ${CHUNK_ID_BYTES} != 0 THEN 'bad-chunk-list' ELSE 'size-mismatch' END
      FROM file_versions WHERE type = 'file' AND (length(chunks) % ${CHUNK_ID_BYTES} != 0 OR (length(chunks) = 0 AND size != 0))`)
    // 2b. references to chunks the index lacks: one primary-key probe per reference, in
    //     table order (sorting the references first costs more than it saves)
    db.exec(`INSERT OR IGNORE INTO temp.hf_verify_bad (id, kind)
      SELECT ${CHUNK_REF}, 'chunk-missing' FROM ${expand}
      WHERE fv.type = 'file' AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.id = ${CHUNK_REF})`)
    const missingCount = Number(db.prepare("SELECT count(*) AS n FROM temp.hf_verify_bad WHERE kind = 'chunk-missing'").get()?.n ?? 0)
    if (missingCount > 0) {
      const room = Math.max(0, limit - report.problems.length)
      for (const r of db.prepare(`SELECT id FROM temp.hf_verify_bad WHERE kind = 'chunk-missing' ORDER BY id LIMIT ${room}`).all()) {
        addProblem(t, { kind: 'chunk-missing', chunk: toHex(r.id as Uint8Array), message: `chunk ${toHex(r.id as Uint8Array)} is referenced by file versions but not in the chunk index` })
      }
      const unlisted = missingCount - Math.min(room, missingCount)
      if (unlisted > 0) {
        report.problemsTotal += unlisted
        report.problemCounts['chunk-missing'] = (report.problemCounts['chunk-missing'] ?? 0) + unlisted
      }
    }
    // 2c. (with the data) each version's size against its chunks' raw lengths
    if (readData) {
      db.exec(`INSERT OR IGNORE INTO temp.hf_verify_versions (vid, endpoint_id, snapshot_id, missing, reason)
        SELECT fv.rowid, fv.endpoint_id, fv.snapshot_id, 0, 'size-mismatch'
        FROM ${expand} LEFT JOIN chunks c ON c.id = ${CHUNK_REF}
        WHERE fv.type = 'file' GROUP BY fv.rowid HAVING count(c.id) = count(*) AND total(c.rawlen) != fv.size`)
    }
    const listed = db.prepare(`SELECT v.vid, v.reason, e.peer_id, e.name, fv.folder, fv.path, fv.snapshot_id, fv.size, length(fv.chunks) AS chunk_bytes
      FROM temp.hf_verify_versions v JOIN file_versions fv ON fv.rowid = v.vid JOIN endpoints e ON e.id = fv.endpoint_id
      WHERE v.vid > ? ORDER BY v.vid LIMIT 1000`)
    for (let after = -1; ;) {
      const rows = listed.all(after)
      if (rows.length === 0) break
      for (const r of rows) {
        after = Number(r.vid)
        const file = { peerId: r.peer_id as string, endpoint: endpointLabel({ peerId: r.peer_id as string, name: r.name as string }), path: `${r.folder as string}/${displayPath(r.path as Uint8Array)}`, snapshotId: Number(r.snapshot_id) }
        if (r.reason === 'size-mismatch') {
          addProblem(t, { kind: 'size-mismatch', file, message: `${file.endpoint}: ${file.path} (snapshot ${file.snapshotId}) is ${Number(r.size)} bytes but its chunks add up to a different length` })
        } else {
          addProblem(t, { kind: 'bad-chunk-list', file, message: `${file.endpoint}: ${file.path} (snapshot ${file.snapshotId}) has a chunk list of ${Number(r.chunk_bytes)} bytes, not a multiple of 32` })
        }
      }
    }
    // 2d. the versions that reference a bad chunk (a damaged one, or one the index lacks)
    if (Number(db.prepare('SELECT count(*) AS n FROM temp.hf_verify_bad').get()?.n ?? 0) > 0) {
      db.exec(`INSERT INTO temp.hf_verify_versions (vid, endpoint_id, snapshot_id, missing, reason)
        SELECT fv.rowid, fv.endpoint_id, fv.snapshot_id, total(b.kind = 'chunk-missing'),
          CASE WHEN max(b.kind = 'chunk-missing') THEN 'chunk-missing' ELSE 'bad-chunk' END
        FROM ${expand} CROSS JOIN temp.hf_verify_bad b ON b.id = ${CHUNK_REF}
        WHERE fv.type = 'file' GROUP BY fv.rowid
        ON CONFLICT (vid) DO UPDATE SET reason = excluded.reason, missing = excluded.missing`)
    }

    // ---- 3. impact
    checkAbort()
    progress.phase = 'impact'
    tell(true)
    const bad = db.prepare('SELECT count(*) AS n FROM temp.hf_verify_bad').get()
    report.damaged.chunksTotal = Number(bad?.n ?? 0)
    report.damaged.chunks = db.prepare(`SELECT id FROM temp.hf_verify_bad ORDER BY id LIMIT ${limit}`).all().map(r => toHex(r.id as Uint8Array))
    db.exec(`UPDATE temp.hf_verify_versions SET next_sid = (
      SELECT min(n.snapshot_id) FROM file_versions fv JOIN file_versions n
        ON n.endpoint_id = fv.endpoint_id AND n.folder = fv.folder AND n.path = fv.path AND n.snapshot_id > fv.snapshot_id
      WHERE fv.rowid = temp.hf_verify_versions.vid)`)
    report.damaged.filesTotal = Number(db.prepare('SELECT count(*) AS n FROM temp.hf_verify_versions').get()?.n ?? 0)
    const files = db.prepare(`SELECT v.vid, v.reason, fv.endpoint_id, e.peer_id, e.name, fv.folder, fv.path, fv.snapshot_id, fv.chunks,
        (SELECT min(s.id) FROM snapshots s WHERE s.endpoint_id = fv.endpoint_id AND s.id >= fv.snapshot_id AND (v.next_sid IS NULL OR s.id < v.next_sid)) AS first,
        (SELECT max(s.id) FROM snapshots s WHERE s.endpoint_id = fv.endpoint_id AND s.id >= fv.snapshot_id AND (v.next_sid IS NULL OR s.id < v.next_sid)) AS last,
        (SELECT count(*) FROM snapshots s WHERE s.endpoint_id = fv.endpoint_id AND s.id >= fv.snapshot_id AND (v.next_sid IS NULL OR s.id < v.next_sid)) AS count
      FROM temp.hf_verify_versions v JOIN file_versions fv ON fv.rowid = v.vid JOIN endpoints e ON e.id = fv.endpoint_id
      ORDER BY fv.endpoint_id, fv.folder, fv.path, fv.snapshot_id LIMIT ${limit}`).all()
    const isBad = db.prepare('SELECT 1 FROM temp.hf_verify_bad WHERE id = ?')
    for (const r of files) {
      const chunks = r.chunks as Uint8Array
      const badIds: string[] = []
      for (let i = 0; i + CHUNK_ID_BYTES <= chunks.byteLength && badIds.length < 8; i += CHUNK_ID_BYTES) {
        const id = chunks.subarray(i, i + CHUNK_ID_BYTES)
        if (isBad.get(id) !== undefined && !badIds.includes(toHex(id))) badIds.push(toHex(id))
      }
      const path = r.path as Uint8Array
      report.damaged.files.push({
        peerId: r.peer_id as string,
        endpoint: endpointLabel({ peerId: r.peer_id as string, name: r.name as string }),
        folder: r.folder as string,
        path: `${r.folder as string}/${displayPath(path)}`,
        rawPath: Buffer.from(path).toString('base64'),
        snapshotId: Number(r.snapshot_id),
        inSnapshots: { first: Number(r.first ?? r.snapshot_id), last: Number(r.last ?? r.snapshot_id), count: Number(r.count) },
        chunks: badIds,
        reason: r.reason as DamagedFile['reason']
      })
    }
    // the damaged snapshots: per endpoint, the union of the versions' [snapshot, next version) ranges
    const endpointsById = new Map(catalog.endpoints().map(e => [e.id, e]))
    const countIn = db.prepare('SELECT count(*) AS n FROM snapshots WHERE endpoint_id = ? AND id >= ? AND id < ?')
    const listIn = db.prepare('SELECT id FROM snapshots WHERE endpoint_id = ? AND id >= ? AND id < ? ORDER BY id LIMIT ?')
    const flushRange = (endpointId: number, from: number, to: number): void => {
      const upper = to === Infinity ? Number.MAX_SAFE_INTEGER : to
      report.damaged.snapshotsTotal += Number(countIn.get(endpointId, from, upper)?.n ?? 0)
      const room = limit - report.damaged.snapshots.length
      if (room <= 0) return
      const e = endpointsById.get(endpointId)
      for (const s of listIn.all(endpointId, from, upper, room)) {
        report.damaged.snapshots.push({ id: Number(s.id), peerId: e?.peerId ?? '', endpoint: e === undefined ? '' : endpointLabel(e) })
      }
    }
    let range: { endpointId: number, from: number, to: number } | undefined
    for (const r of db.prepare('SELECT endpoint_id, snapshot_id, next_sid FROM temp.hf_verify_versions ORDER BY endpoint_id, snapshot_id').iterate()) {
      const endpointId = Number(r.endpoint_id)
      const from = Number(r.snapshot_id)
      const to = r.next_sid === null ? Infinity : Number(r.next_sid)
      if (range !== undefined && range.endpointId === endpointId && from <= range.to) {
        range.to = Math.max(range.to, to)
        continue
      }
      if (range !== undefined) flushRange(range.endpointId, range.from, range.to)
      range = { endpointId, from, to }
    }
    if (range !== undefined) flushRange(range.endpointId, range.from, range.to)
    report.damaged.snapshots.sort((a, b) => a.id - b.id)
    report.ok = report.problemsTotal === 0
    report.ms = Math.round(performance.now() - started)
    progress.phase = 'impact'
    tell(true)
    return report
  } catch (err) {
    if (err instanceof HoldfastError || options.signal?.aborted === true) throw err
    throw new HoldfastError('STORE_CORRUPT', `verify could not finish: ${(err as Error).message}`, {}, { cause: err })
  } finally {
    db.exec('DROP TABLE IF EXISTS temp.hf_verify_bad; DROP TABLE IF EXISTS temp.hf_verify_versions')
  }
}
