/**
 * The reconcile scan: walk a protected folder (readdir + lstat, never following symlinks) and
 * compare every path with what was last staged. Unchanged paths (same type, mode, size, mtime,
 * ctime, inode) are never read again. A folder or directory that cannot be read hides nothing:
 * what it held is not taken as deleted.
 */
import { lstatSync, readdirSync, readlinkSync, type BigIntStats } from 'node:fs'
import type { EntryType } from '../model/entry.js'
import type { TrackedFile } from './state-db.js'
import { lockedNames, type IgnoreRule } from './ignore.js'

export interface ScanItem {
  rel: Buffer
  abs: Buffer
  tracked: TrackedFile
  target?: Buffer
}

export interface ScanProblem {
  rel: Buffer
  code: string
  message: string
}

export interface ScanResult {
  changed: ScanItem[]
  deleted: Buffer[]
  /** Changed paths left for a later scan because they changed less than the settle time ago. */
  settling: number
  /** Earliest time (ms) a settling path will have settled. */
  settledAt?: number
  /** Documents left for later because an office lock file says they are open. */
  locked: number
  problems: ScanProblem[]
  /** Paths seen in this scan. */
  seen: number
  /** The folder root itself could not be read: nothing was compared. */
  rootError?: ScanProblem
}

const SLASH = Buffer.from('/')

export function entryTypeOf (st: BigIntStats): EntryType {
  if (st.isFile()) return 'file'
  if (st.isDirectory()) return 'dir'
  if (st.isSymbolicLink()) return 'symlink'
  return 'special'
}

export function trackedFromStat (st: BigIntStats): TrackedFile {
  return {
    type: entryTypeOf(st),
    mode: Number(st.mode),
    size: st.isFile() ? Number(st.size) : 0,
    mtimeNs: st.mtimeNs.toString(),
    ctimeNs: st.ctimeNs.toString(),
    ino: st.ino.toString()
  }
}

function sameState (a: TrackedFile, b: TrackedFile): boolean {
  return a.type === b.type && a.mode === b.mode && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs && a.ino === b.ino
}

export interface ScanOptions {
  root: string
  tracked: Map<string, TrackedFile>
  nowMs: number
  settleMs: number
  /** Names never backed up (office lock files, editor temporaries, the folder's own globs). */
  ignore: IgnoreRule
  signal?: AbortSignal
}

export function scanFolder (options: ScanOptions): ScanResult {
  const { tracked, nowMs, settleMs } = options
  const root = Buffer.from(options.root)
  const result: ScanResult = { changed: [], deleted: [], settling: 0, locked: 0, problems: [], seen: 0 }
  const seen = new Set<string>()
  // Paths under a directory we could not read are kept as they were.
  const unreadable: string[] = []
  try {
    const st = lstatSync(root, { bigint: true })
    if (!st.isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' })
    readdirSync(root)
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    result.rootError = { rel: Buffer.alloc(0), code: e.code ?? 'EIO', message: `protected folder ${options.root} cannot be read: ${e.message}` }
    return result
  }
  const settleCutoffNs = BigInt(Math.floor(nowMs - settleMs)) * 1_000_000n
  const stack: Buffer[] = [Buffer.alloc(0)]
  while (stack.length > 0) {
    if (options.signal?.aborted === true) throw options.signal.reason
    const relDir = stack.pop() as Buffer
    const absDir = relDir.length === 0 ? root : Buffer.concat([root, SLASH, relDir])
    let names: Buffer[]
    try {
      names = readdirSync(absDir, { encoding: 'buffer' })
    } catch (err) {
      const e = err as NodeJS.ErrnoException
      if (e.code === 'ENOENT' || e.code === 'ENOTDIR') continue // vanished while we walked: its deletion shows up below
      result.problems.push({ rel: relDir, code: e.code ?? 'EIO', message: e.message })
      unreadable.push(relDir.toString('latin1') + '/')
      continue
    }
    const locks = lockedNames(names)
    for (const name of names) {
      const rel = relDir.length === 0 ? name : Buffer.concat([relDir, SLASH, name])
      if (options.ignore(name, rel)) continue
      const abs = Buffer.concat([absDir, SLASH, name])
      let st: BigIntStats
      try {
        st = lstatSync(abs, { bigint: true })
      } catch (err) {
        const e = err as NodeJS.ErrnoException
        if (e.code !== 'ENOENT') result.problems.push({ rel, code: e.code ?? 'EIO', message: e.message })
        continue
      }
      const key = rel.toString('latin1')
      seen.add(key)
      result.seen++
      const now = trackedFromStat(st)
      if (now.type === 'dir') stack.push(rel)
      const before = tracked.get(key)
      if (before !== undefined && sameState(before, now)) continue
      if (st.mtimeNs > settleCutoffNs || st.ctimeNs > settleCutoffNs) {
        result.settling++
        const settles = Number(st.mtimeNs > st.ctimeNs ? st.mtimeNs : st.ctimeNs) / 1e6 + settleMs
        result.settledAt = Math.min(result.settledAt ?? Infinity, settles)
        continue
      }
      if (now.type === 'file' && locks.isLocked(name)) {
        // Open in an office program: its last save may be half written. Wait for the lock to go.
        result.locked++
        continue
      }
      const item: ScanItem = { rel, abs, tracked: now }
      if (now.type === 'symlink') {
        try {
          item.target = readlinkSync(abs, { encoding: 'buffer' })
        } catch (err) {
          const e = err as NodeJS.ErrnoException
          if (e.code !== 'ENOENT') result.problems.push({ rel, code: e.code ?? 'EIO', message: e.message })
          continue
        }
      }
      result.changed.push(item)
    }
  }
  for (const key of tracked.keys()) {
    if (seen.has(key)) continue
    if (unreadable.some(prefix => key.startsWith(prefix))) continue
    result.deleted.push(Buffer.from(key, 'latin1'))
  }
  return result
}
