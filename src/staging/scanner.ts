/**
 * The reconcile scan: walk a protected folder one directory at a time (readdir + lstat, never
 * following symlinks) and compare each directory's entries with what was last staged for that
 * directory. Unchanged paths (same type, mode, size, mtime, ctime, inode) are never read
 * again. Memory is one directory listing at a time, whatever the size of the tree.
 *
 * A folder or directory that cannot be read hides nothing: what it held is not taken as
 * deleted (deletions are only inferred from a listing that succeeded).
 */
import { lstatSync, readdirSync, readlinkSync, type BigIntStats } from 'node:fs'
import type { EntryType } from '../model/entry.js'
import type { TrackedFile } from './state-db.js'
import { lockedNames, type IgnoreRule } from './ignore.js'
import { HoldfastError, errnoOf, type ProblemCode } from '../util/errors.js'
import { SettleTracker, settleVerdict, type SettleObserver } from './settle.js'

export interface ScanItem {
  rel: Buffer
  abs: Buffer
  tracked: TrackedFile
  target?: Buffer
  /** device:inode of a file with more than one name (hard links). */
  linkKey?: string
}

export interface ScanProblem {
  rel: Buffer
  code: ProblemCode
  message: string
}

/** What one directory contributed. */
export interface DirectoryScan {
  changed: ScanItem[]
  deleted: Buffer[]
  settling: number
  /** Earliest time (ms) a settling path here will have settled. */
  settledAt?: number
  /** Documents left for later because an office lock file says they are open. */
  locked: number
  problems: ScanProblem[]
  seen: number
}

/** What the scan needs to know of the last staged state. */
export interface TrackedLookup {
  /** Tracked children of one directory ('' is the folder itself), keyed by name (latin1). */
  childrenOf: (dir: Buffer) => Map<string, TrackedFile>
  /** Every tracked path strictly under a directory (for a directory that went away). */
  descendantsOf: (dir: Buffer) => Buffer[]
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
  tracked: TrackedLookup
  nowMs: number
  settleMs: number
  /**
   * When each settling path was first seen (keyed by its folder-relative path, latin1); kept
   * by the caller across rounds. Without one, a path with a future ctime never settles within
   * this scan (it is seen for the first time now).
   */
  observer?: SettleObserver
  /** Names never backed up (office lock files, editor temporaries, the folder's own globs). */
  ignore: IgnoreRule
  signal?: AbortSignal
}


/** Checks the folder root can be listed; throws FOLDER_UNREADABLE (details.errno says why) otherwise. */
export function checkFolderRoot (root: string): void {
  try {
    const st = lstatSync(root, { bigint: true })
    if (!st.isDirectory()) throw new HoldfastError('FOLDER_UNREADABLE', `protected folder ${root} is not a directory`, { errno: 'ENOTDIR' })
    readdirSync(root)
  } catch (err) {
    if (err instanceof HoldfastError) throw err
    throw new HoldfastError('FOLDER_UNREADABLE', `protected folder ${root} cannot be read: ${(err as Error).message}`, { errno: errnoOf(err) })
  }
}

/** Walks the folder depth-first, one directory per yielded result. */
export function * scanFolder (options: ScanOptions): Generator<DirectoryScan> {
  const root = Buffer.from(options.root)
  checkFolderRoot(options.root)
  const observer = options.observer ?? new SettleTracker()
  const stack: Buffer[] = [Buffer.alloc(0)]
  while (stack.length > 0) {
    if (options.signal?.aborted === true) throw options.signal.reason
    const relDir = stack.pop() as Buffer
    const out: DirectoryScan = { changed: [], deleted: [], settling: 0, locked: 0, problems: [], seen: 0 }
    const absDir = relDir.length === 0 ? root : Buffer.concat([root, SLASH, relDir])
    let names: Buffer[]
    try {
      names = readdirSync(absDir, { encoding: 'buffer' })
    } catch (err) {
      const e = err as NodeJS.ErrnoException
      // Vanished while we walked: its parent's listing reports the deletion. Unreadable: its
      // contents are kept as they were.
      if (e.code !== 'ENOENT' && e.code !== 'ENOTDIR') {
        out.problems.push({ rel: relDir, code: errnoOf(e), message: e.message })
        yield out
      }
      continue
    }
    const tracked = options.tracked.childrenOf(relDir)
    const seen = new Set<string>()
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
        if (e.code !== 'ENOENT') {
          out.problems.push({ rel, code: errnoOf(e), message: e.message })
          seen.add(name.toString('latin1')) // not seen clearly is not gone
        }
        continue
      }
      const key = name.toString('latin1')
      seen.add(key)
      out.seen++
      const now = trackedFromStat(st)
      if (now.type === 'dir') stack.push(rel)
      const before = tracked.get(key)
      if (before !== undefined && before.type === 'dir' && now.type !== 'dir') {
        // a directory replaced by something else: everything that was under it is gone
        out.deleted.push(...options.tracked.descendantsOf(rel))
      }
      if (before !== undefined && sameState(before, now)) continue
      // never by mtime, which anyone can set (a file stamped 2100 would wait until 2100)
      const settle = settleVerdict(st, rel.toString('latin1'), options.nowMs, options.settleMs, observer)
      if (!settle.settled) {
        out.settling++
        out.settledAt = Math.min(out.settledAt ?? Infinity, settle.settlesAt ?? options.nowMs + options.settleMs)
        continue
      }
      if (now.type === 'file' && locks.isLocked(name)) {
        // Open in an office program: its last save may be half written. Wait for the lock to go.
        out.locked++
        continue
      }
      const item: ScanItem = { rel, abs, tracked: now }
      if (now.type === 'file' && st.nlink > 1n) item.linkKey = `${st.dev}:${st.ino}`
      if (now.type === 'symlink') {
        try {
          item.target = readlinkSync(abs, { encoding: 'buffer' })
        } catch (err) {
          const e = err as NodeJS.ErrnoException
          if (e.code !== 'ENOENT') out.problems.push({ rel, code: errnoOf(e), message: e.message })
          continue
        }
      }
      out.changed.push(item)
    }
    for (const [key, before] of tracked) {
      if (seen.has(key)) continue
      const rel = relDir.length === 0 ? Buffer.from(key, 'latin1') : Buffer.concat([relDir, SLASH, Buffer.from(key, 'latin1')])
      if (before.type === 'dir') out.deleted.push(...options.tracked.descendantsOf(rel))
      out.deleted.push(rel)
    }
    yield out
  }
}
