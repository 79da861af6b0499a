/**
 * Browsing the catalog without restoring: an endpoint's tree under a path as of a snapshot
 * (`ls`), every version of one path (`versions`), and a glob over every path of the fleet
 * (`find`).
 *
 * Everything runs on the index file_versions (endpoint_id, folder, path, snapshot_id):
 * - ls is a skip scan: one seek finds the next child of the directory, the next seek starts
 *   past that child's subtree, so listing a directory costs a few seeks per child, whatever
 *   lies below it; each child's version at the snapshot is one more seek;
 * - versions is one range of the index;
 * - find visits each (endpoint, folder) range once: a pattern with a literal head ('docs/…')
 *   reads only that part of the range, others read the range's index entries (no table rows),
 *   test a literal part of the pattern in SQL first and the glob once per distinct path.
 */
import { HoldfastError } from '../../util/errors.js'
import { displayPath, type EntryType } from '../../model/entry.js'
import { statementCache, type DatabaseSync } from '../../util/sqlite.js'
import type { Catalog, EndpointRow, SnapshotRow } from '../core/catalog.js'
import { compileFindPattern, globMatches, type CompiledGlob } from './glob.js'
import { firstExisting, parsePathSpec, type PathSpec } from '../../model/path-spec.js'

export interface EndpointRef { peerId: string, name: string }

export interface TreeEntry {
  /** The entry's own name (display form: non-UTF-8 bytes escaped). */
  name: string
  /** "<folder>/<path>" in display form. */
  path: string
  /** The raw path bytes under the folder, base64 ('' for a folder itself). */
  rawPath: string
  type: EntryType
  mode?: number
  size: number
  mtimeNs?: string
  mtime?: string
  /** The snapshot that recorded the version shown. */
  snapshotId?: number
  /** A symlink's target (display form). */
  target?: string
  /** A directory known only from the paths under it (no entry of its own). */
  implicit?: boolean
}

export interface ListResult {
  endpoint: EndpointRef
  snapshot: { id: number, committedAt: number }
  /** What was listed: '' for the endpoint's folders, else "<folder>[/<path>]". */
  path: string
  kind: 'root' | 'dir' | 'file'
  entries: TreeEntry[]
  truncated: boolean
}

export interface PathVersion {
  snapshotId: number
  committedAt: number
  type: EntryType
  deleted: boolean
  size: number
  mode: number
  mtimeNs: string
  mtime: string
  chunks: number
  target?: string
}

export interface VersionsResult {
  endpoint: EndpointRef
  path: string
  rawPath: string
  versions: PathVersion[]
}

export interface FindHit {
  peerId: string
  endpoint: string
  folder: string
  /** "<folder>/<path>" in display form. */
  path: string
  rawPath: string
  /** The snapshot of the path's latest version (a deletion, when deleted). */
  snapshotId: number
  deleted: boolean
  /** Type, size and mtime of the newest version that existed (for a deleted path: before it went). */
  type: EntryType
  size: number
  mtime: string
  /** For a deleted path: the snapshot of its last existing version, the one to restore. */
  liveSnapshotId?: number
}

export interface FindResult { pattern: string, hits: FindHit[], truncated: boolean }

export const DEFAULT_LS_LIMIT = 10_000
export const DEFAULT_FIND_LIMIT = 1_000

const SLASH = 0x2f
const ZERO = 0x30 // '/' + 1: every path under "d/" sorts before "d0"

// ---------------------------------------------------------------- selection

/**
 * The snapshot a browse reads: an explicit id (which must be the endpoint's), else the newest
 * committed at or before `at` (ms), else the endpoint's latest.
 */
export function resolveSnapshot (catalog: Catalog, endpoint: EndpointRow, sel: { snapshot?: number, at?: number }): SnapshotRow {
  if (sel.snapshot !== undefined) {
    const snap = catalog.snapshot(sel.snapshot)
    if (snap.endpointId !== endpoint.id) throw new HoldfastError('SNAPSHOT_UNKNOWN', `snapshot ${sel.snapshot} belongs to another endpoint (${snap.endpointName || snap.peerId})`)
    return snap
  }
  if (sel.at !== undefined) {
    const id = catalog.snapshotAt(endpoint.id, sel.at)
    if (id === undefined) throw new HoldfastError('SNAPSHOT_UNKNOWN', `endpoint ${endpointLabel(endpoint)} has no snapshot committed at or before ${new Date(sel.at).toISOString()}`)
    return catalog.snapshot(id)
  }
  const id = catalog.latestSnapshot(endpoint.id)
  if (id === undefined) throw new HoldfastError('SNAPSHOT_UNKNOWN', `endpoint ${endpointLabel(endpoint)} has no snapshots yet`)
  return catalog.snapshot(id)
}

export function endpointLabel (e: { peerId: string, name: string }): string {
  return e.name === '' ? e.peerId : e.name
}

/**
 * Which reading of a path spec (model/path-spec.ts) the tree at a snapshot holds: a folder
 * with anything in it, a path with a live version, or a directory with something live under
 * it. The first such reading, as ls, versions and restore all choose.
 */
export function pathAt (catalog: Catalog, endpointId: number, snapshotId: number, candidates: readonly PathSpec[]): PathSpec | undefined {
  const reader = new TreeReader(catalog.db, endpointId, snapshotId)
  return firstExisting(candidates, c => {
    if (c.path === undefined) return reader.hasFolder(c.folder)
    const v = reader.versionAt(c.folder, c.path)
    return v !== undefined ? v.type !== 'deleted' : reader.hasLiveUnder(c.folder, c.path)
  })
}

/** The newest snapshot holding a reading of the spec (its first reading held anywhere), for a path deleted since. */
export function lastHolding (catalog: Catalog, endpointId: number, candidates: readonly PathSpec[]): { spec: PathSpec, snapshotId: number } | undefined {
  for (const c of candidates) {
    const snapshotId = catalog.lastSnapshotHolding(endpointId, c.folder, c.path)
    if (snapshotId !== undefined) return { spec: c, snapshotId }
  }
  return undefined
}

// ---------------------------------------------------------------- ls

interface VersionFields { snapshot_id: number, type: string, mode: number, mtime_ns: string, size: number, target: Uint8Array | null }

const caches = new WeakMap<DatabaseSync, ReturnType<typeof statementCache>>()
function sqlOf (db: DatabaseSync): ReturnType<typeof statementCache> {
  let c = caches.get(db)
  if (c === undefined) { c = statementCache(db); caches.set(db, c) }
  return c
}

class TreeReader {
  private readonly sql: ReturnType<typeof statementCache>
  constructor (db: DatabaseSync, private readonly endpointId: number, private readonly snapshotId: number) {
    this.sql = sqlOf(db)
  }

  /** The version of (folder, path) in the tree at the snapshot, or undefined. */
  versionAt (folder: string, path: Uint8Array): VersionFields | undefined {
    const r = this.sql(`SELECT snapshot_id, type, mode, CAST(mtime_ns AS TEXT) AS mtime_ns, size, target FROM file_versions
      WHERE endpoint_id = ? AND folder = ? AND path = ? AND snapshot_id <= ? ORDER BY snapshot_id DESC LIMIT 1`).get(this.endpointId, folder, path, this.snapshotId)
    return r === undefined ? undefined : r as unknown as VersionFields
  }

  /** The first path ≥ lo (and < hi) with a version at or before the snapshot, and that path's version at the snapshot. */
  next (folder: string, lo: Uint8Array, hi: Uint8Array | undefined): (VersionFields & { path: Uint8Array }) | undefined {
    const seek = hi === undefined
      ? 'SELECT path FROM file_versions WHERE endpoint_id = ?1 AND folder = ?2 AND path >= ?3 AND snapshot_id <= ?4 ORDER BY path LIMIT 1'
      : 'SELECT path FROM file_versions WHERE endpoint_id = ?1 AND folder = ?2 AND path >= ?3 AND path < ?5 AND snapshot_id <= ?4 ORDER BY path LIMIT 1'
    const stmt = this.sql(`SELECT fv.path, fv.snapshot_id, fv.type, fv.mode, CAST(fv.mtime_ns AS TEXT) AS mtime_ns, fv.size, fv.target FROM file_versions fv
      WHERE fv.endpoint_id = ?1 AND fv.folder = ?2 AND fv.path = (${seek}) AND fv.snapshot_id <= ?4 ORDER BY fv.snapshot_id DESC LIMIT 1`)
    const r = hi === undefined ? stmt.get(this.endpointId, folder, lo, this.snapshotId) : stmt.get(this.endpointId, folder, lo, this.snapshotId, hi)
    return r === undefined ? undefined : r as unknown as VersionFields & { path: Uint8Array }
  }

  /** Whether anything under "<prefix>/" is in the tree at the snapshot (stops at the first). */
  hasLiveUnder (folder: string, dir: Uint8Array): boolean {
    const lo = Buffer.concat([dir, Buffer.from([SLASH])])
    const hi = Buffer.concat([dir, Buffer.from([ZERO])])
    let cursor: Uint8Array = lo
    for (;;) {
      const v = this.next(folder, cursor, hi)
      if (v === undefined) return false
      if (v.type !== 'deleted') return true
      cursor = Buffer.concat([v.path, Buffer.from([0])])
    }
  }

  /** Whether the folder has anything at the snapshot. */
  hasFolder (folder: string): boolean {
    return this.sql('SELECT 1 FROM file_versions WHERE endpoint_id = ? AND folder = ? AND snapshot_id <= ? LIMIT 1').get(this.endpointId, folder, this.snapshotId) !== undefined
  }

  folders (): string[] {
    const out: string[] = []
    let after: string | undefined
    for (;;) {
      const r = after === undefined
        ? this.sql('SELECT folder FROM file_versions WHERE endpoint_id = ? ORDER BY folder LIMIT 1').get(this.endpointId)
        : this.sql('SELECT folder FROM file_versions WHERE endpoint_id = ? AND folder > ? ORDER BY folder LIMIT 1').get(this.endpointId, after)
      if (r === undefined) return out
      after = r.folder as string
      if (this.hasFolder(after)) out.push(after)
    }
  }
}

function mtimeIso (ns: string | bigint): string {
  const ms = Number(BigInt(ns) / 1_000_000n)
  const d = new Date(ms)
  return Number.isNaN(d.getTime()) ? '' : d.toISOString()
}

function b64 (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64')
}

function entryOf (folder: string, path: Uint8Array, name: Uint8Array, v: VersionFields): TreeEntry {
  const e: TreeEntry = {
    name: displayPath(name),
    path: `${folder}/${displayPath(path)}`,
    rawPath: b64(path),
    type: v.type as EntryType,
    mode: Number(v.mode),
    size: Number(v.size),
    mtimeNs: String(v.mtime_ns),
    mtime: mtimeIso(v.mtime_ns),
    snapshotId: Number(v.snapshot_id)
  }
  if (v.target !== null) e.target = displayPath(v.target)
  return e
}

/** Lists "<folder>[/<path>]" of an endpoint's tree as of a snapshot: a directory's children, a file itself, or (no path) the folders. */
export function listTree (catalog: Catalog, req: { endpointId: number, snapshotId: number, path?: string, limit?: number }): ListResult {
  const endpoint = catalog.endpointById(req.endpointId)
  const snap = catalog.snapshot(req.snapshotId)
  if (snap.endpointId !== req.endpointId) throw new HoldfastError('SNAPSHOT_UNKNOWN', `snapshot ${req.snapshotId} belongs to another endpoint`)
  const limit = req.limit === undefined || req.limit <= 0 ? Infinity : req.limit
  const reader = new TreeReader(catalog.db, req.endpointId, req.snapshotId)
  const base = { endpoint: { peerId: endpoint.peerId, name: endpoint.name }, snapshot: { id: snap.id, committedAt: snap.committedAt } }
  const candidates = parsePathSpec(req.path ?? '')
  if (candidates.length === 0) {
    const folders = reader.folders()
    const entries = folders.slice(0, limit === Infinity ? undefined : limit).map(f => ({ name: f, path: f, rawPath: '', type: 'dir' as const, size: 0 }))
    return { ...base, path: '', kind: 'root', entries, truncated: folders.length > entries.length }
  }
  for (const c of candidates) {
    if (c.path === undefined) {
      if (!reader.hasFolder(c.folder)) continue
      const { entries, truncated } = children(reader, c.folder, Buffer.alloc(0), limit)
      return { ...base, path: c.folder, kind: 'dir', entries, truncated }
    }
    const rel = c.path
    const shown = `${c.folder}/${displayPath(rel)}`
    const v = reader.versionAt(c.folder, rel)
    if (v !== undefined && v.type !== 'deleted' && v.type !== 'dir') {
      const slash = rel.lastIndexOf(SLASH)
      return { ...base, path: shown, kind: 'file', entries: [entryOf(c.folder, rel, rel.subarray(slash + 1), v)], truncated: false }
    }
    const isDir = v !== undefined ? v.type === 'dir' : reader.hasLiveUnder(c.folder, rel)
    if (!isDir) continue
    const { entries, truncated } = children(reader, c.folder, Buffer.concat([rel, Buffer.from([SLASH])]), limit)
    return { ...base, path: shown, kind: 'dir', entries, truncated }
  }
  throw new HoldfastError('PATH_NOT_FOUND', `no path '${req.path ?? ''}' in ${endpointLabel(endpoint)}'s snapshot ${snap.id}`)
}

/** The children of the directory whose paths start with `prefix` ('' for the folder root, else "dir/"). */
function children (reader: TreeReader, folder: string, prefix: Buffer, limit: number): { entries: TreeEntry[], truncated: boolean } {
  const entries: Array<{ key: Buffer, entry: TreeEntry }> = []
  const seen = new Set<string>()
  const hi = prefix.length === 0 ? undefined : Buffer.concat([prefix.subarray(0, prefix.length - 1), Buffer.from([ZERO])])
  let cursor: Buffer = prefix
  let truncated = false
  for (;;) {
    const v = reader.next(folder, cursor, hi)
    if (v === undefined) break
    const path = Buffer.from(v.path.buffer, v.path.byteOffset, v.path.byteLength)
    const rest = path.subarray(prefix.length)
    const slash = rest.indexOf(SLASH)
    const name = slash < 0 ? rest : rest.subarray(0, slash)
    const childPath = slash < 0 ? path : path.subarray(0, prefix.length + slash)
    // next: past this path, or past the child's whole subtree
    cursor = slash < 0 ? Buffer.concat([path, Buffer.from([0])]) : Buffer.concat([childPath, Buffer.from([ZERO])])
    const key = name.toString('latin1')
    if (seen.has(key)) continue
    seen.add(key)
    let entry: TreeEntry | undefined
    if (slash < 0) {
      if (v.type !== 'deleted') entry = entryOf(folder, path, name, v)
    } else {
      // met through a path under it: the child's own entry, if it never had one, is implicit
      const own = reader.versionAt(folder, childPath)
      if (own !== undefined) {
        if (own.type !== 'deleted') entry = entryOf(folder, childPath, name, own)
      } else if (reader.hasLiveUnder(folder, childPath)) {
        entry = { name: displayPath(name), path: `${folder}/${displayPath(childPath)}`, rawPath: b64(childPath), type: 'dir', size: 0, implicit: true }
      }
    }
    if (entry === undefined) continue
    if (entries.length >= limit) { truncated = true; break }
    entries.push({ key: Buffer.from(name), entry })
  }
  entries.sort((a, b) => Buffer.compare(a.key, b.key))
  return { entries: entries.map(e => e.entry), truncated }
}

// ---------------------------------------------------------------- versions

/** Every version of one path of an endpoint, oldest first, deletions included. */
export function pathVersions (catalog: Catalog, endpointId: number, path: string): VersionsResult {
  const endpoint = catalog.endpointById(endpointId)
  const candidates = parsePathSpec(path)
  if (candidates.length === 0 || candidates[0].path === undefined) throw new HoldfastError('ADMIN_BAD_REQUEST', `versions needs a path under a folder ("<folder>/<path>"), not '${path}'`)
  const stmt = sqlOf(catalog.db)(`SELECT fv.snapshot_id, s.committed_at, fv.type, fv.mode, CAST(fv.mtime_ns AS TEXT) AS mtime_ns, fv.size, length(fv.chunks) AS chunk_bytes, fv.target
    FROM file_versions fv JOIN snapshots s ON s.id = fv.snapshot_id
    WHERE fv.endpoint_id = ? AND fv.folder = ? AND fv.path = ? ORDER BY fv.snapshot_id`)
  for (const c of candidates) {
    const rel = c.path as Buffer
    const rows = stmt.all(endpointId, c.folder, rel)
    if (rows.length === 0) continue
    return {
      endpoint: { peerId: endpoint.peerId, name: endpoint.name },
      path: `${c.folder}/${displayPath(rel)}`,
      rawPath: b64(rel),
      versions: rows.map(r => {
        const v: PathVersion = {
          snapshotId: Number(r.snapshot_id),
          committedAt: Number(r.committed_at),
          type: r.type as EntryType,
          deleted: r.type === 'deleted',
          size: Number(r.size),
          mode: Number(r.mode),
          mtimeNs: String(r.mtime_ns),
          mtime: r.type === 'deleted' ? '' : mtimeIso(r.mtime_ns as string),
          chunks: Number(r.chunk_bytes) / 32
        }
        if (r.target !== null) v.target = displayPath(r.target as Uint8Array)
        return v
      })
    }
  }
  throw new HoldfastError('PATH_NOT_FOUND', `endpoint ${endpointLabel(endpoint)} has no version of '${path}'`)
}

// ---------------------------------------------------------------- find

const globs = new Map<number, RegExp>()
let nextGlob = 1
const withGlobFunction = new WeakSet<DatabaseSync>()

function registerGlobFunction (db: DatabaseSync): void {
  if (withGlobFunction.has(db)) return
  db.function('hf_glob', { deterministic: true }, (path, id) => {
    const re = globs.get(Number(id))
    if (re === undefined || !(path instanceof Uint8Array)) return 0
    return globMatches(re, path) ? 1 : 0
  })
  withGlobFunction.add(db)
}

/** The smallest byte string above every string that starts with `prefix` (undefined: none). */
function prefixEnd (prefix: Buffer): Buffer | undefined {
  let end = prefix.length
  while (end > 0 && prefix[end - 1] === 0xff) end--
  if (end === 0) return undefined
  const out = Buffer.from(prefix.subarray(0, end))
  out[end - 1]++
  return out
}

interface FindRow { path: Uint8Array, sid: number, type: string, size: number, mtime_ns: string }

/** Paths of the fleet (or one endpoint) that match a glob, each with its latest version. */
export function findPaths (catalog: Catalog, pattern: string, options: { endpointId?: number, limit?: number } = {}): FindResult {
  const compiled = compileFindPattern(pattern)
  const limit = options.limit === undefined || options.limit <= 0 ? Infinity : options.limit
  const db = catalog.db
  registerGlobFunction(db)
  const sql = sqlOf(db)
  const endpoints = new Map(catalog.endpoints().map(e => [e.id, e]))
  const hits: FindHit[] = []
  let truncated = false

  const groups = function * (): Generator<{ endpointId: number, folder: string }> {
    let cur: { endpointId: number, folder: string } | undefined
    for (;;) {
      let r
      if (options.endpointId !== undefined) {
        r = cur === undefined
          ? sql('SELECT endpoint_id, folder FROM file_versions WHERE endpoint_id = ? ORDER BY folder LIMIT 1').get(options.endpointId)
          : sql('SELECT endpoint_id, folder FROM file_versions WHERE endpoint_id = ? AND folder > ? ORDER BY folder LIMIT 1').get(options.endpointId, cur.folder)
      } else if (cur === undefined) {
        r = sql('SELECT endpoint_id, folder FROM file_versions ORDER BY endpoint_id, folder LIMIT 1').get()
      } else {
        // two plain seeks: a row-value (endpoint_id, folder) > (?, ?) walks the whole group
        r = sql('SELECT endpoint_id, folder FROM file_versions WHERE endpoint_id = ? AND folder > ? ORDER BY folder LIMIT 1').get(cur.endpointId, cur.folder) ??
          sql('SELECT endpoint_id, folder FROM file_versions WHERE endpoint_id > ? ORDER BY endpoint_id, folder LIMIT 1').get(cur.endpointId)
      }
      if (r === undefined) return
      cur = { endpointId: Number(r.endpoint_id), folder: r.folder as string }
      yield cur
    }
  }

  const run = (endpointId: number, folder: string, glob: CompiledGlob, regex: RegExp, max: number): FindRow[] => {
    const id = nextGlob++
    globs.set(id, regex)
    try {
      const end = glob.prefix.length > 0 ? prefixEnd(glob.prefix) : undefined
      const conds = ['endpoint_id = :e', 'folder = :f']
      const params: Record<string, number | string | Uint8Array> = { e: endpointId, f: folder, g: id, n: max === Infinity ? -1 : max }
      if (glob.prefix.length > 0) { conds.push('path >= :lo'); params.lo = glob.prefix }
      if (end !== undefined) { conds.push('path < :hi'); params.hi = end }
      if (glob.literal.length > 0) { conds.push('instr(path, :lit) > 0'); params.lit = glob.literal }
      // CROSS JOIN keeps the matches outermost (in path order, from the index): each one
      // then finds its version row with one seek
      return sql(`SELECT g.path, g.sid, fv.type, fv.size, CAST(fv.mtime_ns AS TEXT) AS mtime_ns FROM (
          SELECT path, max(snapshot_id) AS sid FROM file_versions WHERE ${conds.join(' AND ')}
          GROUP BY path HAVING hf_glob(path, :g)
        ) g CROSS JOIN file_versions fv ON fv.endpoint_id = :e AND fv.folder = :f AND fv.path = g.path AND fv.snapshot_id = g.sid
        LIMIT :n`).all(params) as unknown as FindRow[]
    } finally {
      globs.delete(id)
    }
  }

  for (const { endpointId, folder } of groups()) {
    const endpoint = endpoints.get(endpointId)
    if (endpoint === undefined) continue
    const remaining = limit - hits.length + 1
    const forms: Array<{ glob: CompiledGlob, regex: RegExp }> = [{ glob: compiled.forPath, regex: compiled.forPath.regex }]
    if (compiled.folderPart !== undefined && globMatches(compiled.folderPart.folder, folder)) {
      forms.push({ glob: compiled.folderPart.rest, regex: compiled.folderPart.rest.regex })
    }
    let rows: FindRow[]
    if (forms.length === 1) {
      rows = run(endpointId, folder, forms[0].glob, forms[0].regex, remaining)
    } else if (forms.every(f => f.glob.prefix.length > 0)) {
      // two ranges of the index, merged
      const byPath = new Map<string, FindRow>()
      for (const f of forms) for (const r of run(endpointId, folder, f.glob, f.regex, remaining)) byPath.set(Buffer.from(r.path).toString('latin1'), r)
      rows = [...byPath.entries()].sort((a, b) => Buffer.compare(Buffer.from(a[0], 'latin1'), Buffer.from(b[0], 'latin1'))).map(e => e[1]).slice(0, remaining)
    } else {
      // one pass over the folder with either form
      const either = new RegExp(`(?:${forms[0].regex.source})|(?:${forms[1].regex.source})`, 's')
      const common = compiled.folderPart?.rest.literal ?? Buffer.alloc(0)
      rows = run(endpointId, folder, { regex: either, prefix: Buffer.alloc(0), literal: common }, either, remaining)
    }
    for (const r of rows) {
      if (hits.length >= limit) { truncated = true; break }
      const path = r.path
      const hit: FindHit = {
        peerId: endpoint.peerId,
        endpoint: endpointLabel(endpoint),
        folder,
        path: `${folder}/${displayPath(path)}`,
        rawPath: b64(path),
        snapshotId: Number(r.sid),
        deleted: r.type === 'deleted',
        type: r.type as EntryType,
        size: Number(r.size),
        mtime: r.type === 'deleted' ? '' : mtimeIso(r.mtime_ns)
      }
      if (hit.deleted) {
        const live = sql(`SELECT snapshot_id, type, size, CAST(mtime_ns AS TEXT) AS mtime_ns FROM file_versions WHERE endpoint_id = ? AND folder = ? AND path = ? AND type != 'deleted'
          ORDER BY snapshot_id DESC LIMIT 1`).get(endpointId, folder, path)
        if (live !== undefined) {
          hit.liveSnapshotId = Number(live.snapshot_id)
          hit.type = live.type as EntryType
          hit.size = Number(live.size)
          hit.mtime = mtimeIso(live.mtime_ns as string)
        }
      }
      hits.push(hit)
    }
    if (truncated) break
  }
  return { pattern, hits, truncated }
}
