/**
 * Restore: write an endpoint's tree as of a snapshot (whole, or one path or subtree) into a
 * target directory, bit-exact, with modes, mtimes, symlinks and empty directories.
 *
 * Safety: the target must be empty or absent; every path is checked (no '..', no absolute
 * paths); files are created with O_EXCL|O_NOFOLLOW; symlinks are created last, so no path
 * written by the restore can pass through a link it restored. Each chunk is re-hashed as it
 * is read, so a corrupt store is reported rather than restored.
 */
import { closeSync, constants, lutimesSync, mkdirSync, openSync, readdirSync, symlinkSync, utimesSync, writeSync, chmodSync, statSync, unlinkSync, ftruncateSync, linkSync } from 'node:fs'
import { CHUNK_ID_BYTES, displayPath, isSafeRelativePath, toHex, type StagedEntry } from '../model/entry.js'
import { verifyChunk } from '../codec/chunk-codec.js'
import { HoldfastError } from '../util/errors.js'
import type { Catalog } from './catalog.js'
import type { PackStore } from './packs.js'

export interface RestoreRequest {
  endpointId: number
  snapshotId: number
  /** "<folder>" or "<folder>/<path>": restore only that path and what is under it. */
  path?: string
  target: string
  signal?: AbortSignal
  onProgress?: (p: RestoreProgress) => void
}

export interface RestoreProgress { files: number, bytes: number }

export interface RestoreSummary {
  snapshotId: number
  files: number
  dirs: number
  symlinks: number
  other: number
  bytes: number
  ms: number
  errors: Array<{ path: string, code: string, message: string }>
}

const SLASH = Buffer.from('/')

/**
 * Seconds as the double Node's utimes takes. Whole seconds and the fraction are converted
 * separately so the only loss is the double's own resolution (≈ 0.24 µs today).
 */
function secondsOf (ns: bigint): number {
  return Number(ns / 1_000_000_000n) + Number(ns % 1_000_000_000n) / 1e9
}

export function restoreSnapshot (catalog: Catalog, packs: PackStore, req: RestoreRequest): RestoreSummary {
  const started = Date.now()
  const summary: RestoreSummary = { snapshotId: req.snapshotId, files: 0, dirs: 0, symlinks: 0, other: 0, bytes: 0, ms: 0, errors: [] }
  prepareTarget(req.target)
  const filter = req.path === undefined ? undefined : pathFilter(req.path)
  const target = Buffer.from(req.target)
  const dirs: Array<{ abs: Buffer, e: StagedEntry }> = []
  const links: Array<{ abs: Buffer, e: StagedEntry }> = []
  let matched = 0
  const madeDirs = new Set<string>()
  const linkGroups = new Map<string, { abs: Buffer, size: number, chunks: Uint8Array }>()
  const ensureParent = (abs: Buffer): void => {
    const idx = abs.lastIndexOf(0x2f)
    const parent = abs.subarray(0, idx)
    const key = parent.toString('latin1')
    if (madeDirs.has(key)) return
    mkdirSync(parent, { recursive: true, mode: 0o700 })
    madeDirs.add(key)
  }
  for (const e of catalog.treeAt(req.endpointId, req.snapshotId)) {
    if (req.signal?.aborted === true) throw req.signal.reason
    if (filter !== undefined && !filter(e)) continue
    matched++
    const shown = `${e.folder}/${displayPath(e.path)}`
    if (!isSafeRelativePath(e.path) || !/^[^/\0]+$/.test(e.folder) || e.folder === '..' || e.folder === '.') {
      summary.errors.push({ path: shown, code: 'RESTORE_PATH_UNSAFE', message: 'path is absolute or leaves its folder; skipped' })
      continue
    }
    const abs = Buffer.concat([target, SLASH, Buffer.from(e.folder), SLASH, e.path])
    try {
      if (e.type === 'dir') {
        mkdirSync(abs, { recursive: true, mode: 0o700 })
        madeDirs.add(abs.toString('latin1'))
        dirs.push({ abs, e })
      } else if (e.type === 'symlink') {
        links.push({ abs, e })
      } else if (e.type === 'file') {
        ensureParent(abs)
        const linked = e.linkKey === undefined ? undefined : linkGroups.get(e.linkKey)
        // A hard link of a file already restored: link it again. The content must match too,
        // so an inode number the endpoint reused can never join unrelated files.
        if (linked !== undefined && linked.size === e.size && Buffer.from(linked.chunks).equals(Buffer.from(e.chunks))) {
          linkSync(linked.abs, abs)
        } else {
          summary.bytes += writeFile(abs, e, catalog, packs)
          if (e.linkKey !== undefined) linkGroups.set(e.linkKey, { abs, size: e.size, chunks: e.chunks })
        }
        summary.files++
        if ((summary.files & 255) === 0) req.onProgress?.({ files: summary.files, bytes: summary.bytes })
      } else {
        // FIFOs, sockets and devices are recorded, not recreated
        summary.other++
      }
    } catch (err) {
      const error = err as NodeJS.ErrnoException
      summary.errors.push({ path: shown, code: err instanceof HoldfastError ? err.code : error.code ?? 'EIO', message: error.message })
    }
  }
  if (filter !== undefined && matched === 0) throw new HoldfastError('PATH_NOT_FOUND', `no path '${req.path ?? ''}' in snapshot ${req.snapshotId}`)
  for (const { abs, e } of links) {
    try {
      ensureParent(abs)
      symlinkSync(Buffer.from(e.target ?? new Uint8Array(0)), abs)
      lutimesSync(abs, secondsOf(e.mtimeNs), secondsOf(e.mtimeNs))
      summary.symlinks++
    } catch (err) {
      summary.errors.push({ path: `${e.folder}/${displayPath(e.path)}`, code: (err as NodeJS.ErrnoException).code ?? 'EIO', message: (err as Error).message })
    }
  }
  // Directories last, deepest first: writing into a directory changes its mtime.
  dirs.sort((a, b) => b.abs.length - a.abs.length)
  for (const { abs, e } of dirs) {
    try {
      chmodSync(abs, e.mode & 0o7777)
      utimesSync(abs, secondsOf(e.mtimeNs), secondsOf(e.mtimeNs))
      summary.dirs++
    } catch (err) {
      summary.errors.push({ path: `${e.folder}/${displayPath(e.path)}`, code: (err as NodeJS.ErrnoException).code ?? 'EIO', message: (err as Error).message })
    }
  }
  summary.ms = Date.now() - started
  req.onProgress?.({ files: summary.files, bytes: summary.bytes })
  return summary
}

function writeFile (abs: Buffer, e: StagedEntry, catalog: Catalog, packs: PackStore): number {
  const fd = openSync(abs, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600)
  let position = 0
  try {
    for (let i = 0; i < e.chunks.byteLength; i += CHUNK_ID_BYTES) {
      const id = e.chunks.subarray(i, i + CHUNK_ID_BYTES)
      const loc = catalog.chunkLocation(id)
      if (loc === undefined) throw new HoldfastError('CHUNK_MISSING', `chunk ${toHex(id)} is not in the store`)
      const plain = verifyChunk(id, packs.read(loc), loc.rawlen)
      writeSparse(fd, plain, position)
      position += plain.byteLength
    }
    ftruncateSync(fd, position) // sets the length when the file ends in a hole
    if (position !== e.size) throw new HoldfastError('STORE_CORRUPT', `restored ${position} bytes, the catalog says ${e.size}`)
  } catch (err) {
    // A file that cannot be restored whole is not left behind looking restored.
    closeSync(fd)
    try { unlinkSync(abs) } catch {}
    throw err
  }
  closeSync(fd)
  chmodSync(abs, e.mode & 0o7777)
  utimesSync(abs, secondsOf(e.mtimeNs), secondsOf(e.mtimeNs))
  return position
}

const HOLE_BLOCK = 64 * 1024
const ZEROS = Buffer.alloc(HOLE_BLOCK)

/**
 * Writes `data` at `position`, skipping 64 KiB blocks that are all zeros so they stay holes
 * (sparse files stay sparse where the filesystem allows); runs of data blocks go in one write.
 */
function writeSparse (fd: number, data: Buffer, position: number): void {
  let runStart = -1
  const flush = (end: number): void => {
    if (runStart < 0) return
    let written = 0
    while (written < end - runStart) written += writeSync(fd, data, runStart + written, end - runStart - written, position + runStart + written)
    runStart = -1
  }
  for (let off = 0; off < data.byteLength; off += HOLE_BLOCK) {
    const end = Math.min(data.byteLength, off + HOLE_BLOCK)
    const zero = data.subarray(off, end).equals(ZEROS.subarray(0, end - off))
    if (zero) flush(off)
    else if (runStart < 0) runStart = off
  }
  flush(data.byteLength)
}

function prepareTarget (target: string): void {
  try {
    const st = statSync(target)
    if (!st.isDirectory()) throw new HoldfastError('RESTORE_TARGET_NOT_EMPTY', `restore target ${target} exists and is not a directory`)
    if (readdirSync(target).length > 0) throw new HoldfastError('RESTORE_TARGET_NOT_EMPTY', `restore target ${target} is not empty; choose an empty or new directory`)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    mkdirSync(target, { recursive: true, mode: 0o700 })
  }
}

function pathFilter (spec: string): (e: StagedEntry) => boolean {
  const trimmed = spec.replace(/^\/+|\/+$/g, '')
  const slash = trimmed.indexOf('/')
  const folder = slash < 0 ? trimmed : trimmed.slice(0, slash)
  const rel = slash < 0 ? undefined : Buffer.from(trimmed.slice(slash + 1))
  return e => {
    if (e.folder !== folder) return false
    if (rel === undefined) return true
    const p = Buffer.from(e.path.buffer, e.path.byteOffset, e.path.byteLength)
    if (p.equals(rel)) return true
    return p.length > rel.length && p[rel.length] === 0x2f && p.subarray(0, rel.length).equals(rel)
  }
}
