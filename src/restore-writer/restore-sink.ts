/**
 * The restore writer: writes entries (each file with an async provider of its chunks'
 * plaintext in order) under a target directory, bit-exact, with modes, mtimes, symlinks, hard
 * links and empty directories. The manager uses it to restore from its store
 * (store/restore.ts) and the agent to write a restore the manager pushes to it
 * (/holdfast/restore/1), so it lives in neither role's room.
 *
 * Safety: every path is checked (no '..', no absolute paths); directories are made one
 * component at a time and a component that is not a directory (a symlink) is refused; files
 * are created with O_EXCL|O_NOFOLLOW; symlinks are created last, so no path written by the
 * restore can pass through a link it restored. A parent swapped for a symlink between that
 * check and the create is the race Node's API leaves open (it has no openat/mkdirat), so
 * every create goes through the parent's descriptor instead of its path: the parent is
 * opened O_DIRECTORY|O_NOFOLLOW, that descriptor must be the very directory this restore
 * made or checked there (fstat: same device and inode as recorded then), and the name is
 * made as /proc/self/fd/N/<name>, which resolves to the directory held open, not to whatever
 * the path names by then (the effect of mkdirat/openat/symlinkat). A parent that is not what
 * was checked (a link swapped in for an ancestor, another directory put in its place) refuses
 * the entry (RESTORE_PATH_UNSAFE); modes and times are set through a descriptor, never a path
 * (docs/security.md, hostile content). setuid/setgid bits are
 * dropped unless `keepSetuid`. An existing file is replaced only when the
 * sink was opened with `overwrite`. Each chunk is re-hashed before it is written (by the
 * provider), so a corrupt source is reported rather than restored.
 */
import { closeSync, constants, existsSync, lutimesSync, mkdirSync, openSync, readdirSync, symlinkSync, utimesSync, chmodSync, statSync, lstatSync, unlinkSync, ftruncateSync, linkSync, renameSync, rmSync, fsyncSync, fchmodSync, fstatSync, futimesSync, realpathSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { CHUNK_ID_BYTES, displayPath, isSafeFolderName, isSafeRelativePath, type StagedEntry } from '../model/entry.js'
import { HoldfastError } from '../util/errors.js'
import { checkFreeSpace, type FreeSpaceProbe } from './free-space.js'
import { secondsOf, writeSparse } from './sparse-write.js'
import { FileWriterPool, type JobResult } from './file-writer-pool.js'
import { verifyChunk } from '../codec/chunk-codec.js'

export interface RestoreProgress { files: number, bytes: number }

export interface RestoreError { path: string, code: string, message: string }

/** What a sink counts; the caller adds which snapshot it was. */
export interface SinkSummary {
  files: number
  dirs: number
  symlinks: number
  other: number
  bytes: number
  ms: number
  errors: RestoreError[]
  /** Files and directories whose setuid/setgid bits were not restored (no `keepSetuid`). */
  setuidStripped: number
}


/**
 * The plaintext of chunk `index` of the file being written (its id is `id`), verified: the
 * provider throws CHUNK_HASH_MISMATCH or CHUNK_MISSING for that file alone, anything else
 * (a stream failing, an abort) ends the whole restore.
 */
export type ChunkProvider = (index: number, id: Uint8Array) => Promise<Uint8Array>

/** A chunk as stored: compressed and not yet verified (`addStored` verifies it). */
export interface StoredChunk { rawLength: number, compressed: Uint8Array }

/**
 * Chunk `index` of the file being written, as stored, read synchronously (from the manager's
 * packs). Throws CHUNK_MISSING or STORE_CORRUPT for that file alone; anything else (a chunk
 * the endpoint does not own) ends the whole restore. `compressed` may be a view of the
 * reader's own buffer, valid only until its next call: the sink copies it before reading on.
 */
export type StoredChunkReader = (index: number, id: Uint8Array) => StoredChunk

/** Errors that spoil one entry, not the restore: reported in the summary and skipped. */
const ENTRY_ERROR_CODES = new Set(['CHUNK_HASH_MISMATCH', 'CHUNK_MISSING', 'STORE_CORRUPT', 'RESTORE_PATH_UNSAFE'])

function isEntryError (err: unknown): boolean {
  if (err instanceof HoldfastError) return ENTRY_ERROR_CODES.has(err.code)
  // file-system errors (EACCES, ENOSPC, EEXIST…) are about this path
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  return typeof code === 'string' && /^E[A-Z]+$/.test(code)
}

/** The same test for an error a file-writer worker reported by its code. */
function isEntryCode (code: string): boolean {
  return ENTRY_ERROR_CODES.has(code) || /^E[A-Z]+$/.test(code)
}

const SLASH = Buffer.from('/')

/** Whether names can be reached through a descriptor (/proc/self/fd/N/<name>): Linux. */
const PROC_FD = existsSync('/proc/self/fd')

/** A directory's identity, recorded when the restore makes or checks it. */
interface DirId { dev: number, ino: number }
const MAX_REPORTED_ERRORS = 1000

/** Parent directories' descriptors kept open for the files being written into them. */
const MAX_OPEN_PARENTS = 64

export interface RestoreSinkOptions {
  /** The directory entries are written under, as `<target>/<folder>/<path>`; must exist. */
  target: string
  /** Replace files and symlinks that exist already (never a directory, never through a link). */
  overwrite?: boolean
  /** Restore setuid/setgid bits as stored; by default they are dropped (mode & 0o1777) and counted. */
  keepSetuid?: boolean
  signal?: AbortSignal
  onProgress?: (p: RestoreProgress) => void
}

/** Writes entries under a target directory; `finish()` sets links and directory metadata. */
export class RestoreSink {
  private readonly started = Date.now()
  private readonly summary: SinkSummary = { files: 0, dirs: 0, symlinks: 0, other: 0, bytes: 0, ms: 0, errors: [], setuidStripped: 0 }
  private errorCount = 0
  private readonly targetBytes: Buffer
  private readonly dirs: Array<{ abs: Buffer, e: StagedEntry }> = []
  private readonly links: Array<{ abs: Buffer, e: StagedEntry }> = []
  /**
   * Directories made or checked by this restore, with their identity: a descriptor later
   * opened by the path must be that same directory to be written through.
   */
  private readonly checkedDirs = new Map<string, DirId>()
  /** Hard-link groups: the file written first, and whether it was written whole. */
  private readonly linkGroups = new Map<string, { abs: Buffer, size: number, chunks: Uint8Array, written: Promise<boolean> }>()
  /** addStored: the writers, the files they are writing, an error that ends the restore. */
  private pool?: FileWriterPool
  private readonly running = new Set<Promise<void>>()
  private fatal?: unknown
  /** addStored: parents' checked descriptors, with how many files in flight use each. */
  private readonly parents = new Map<string, { fd: number, refs: number }>()

  constructor (private readonly options: RestoreSinkOptions) {
    // the real path: what the kernel reports for a descriptor is compared with paths built on it
    this.targetBytes = realpathSync(Buffer.from(options.target), { encoding: 'buffer' })
    const st = statSync(this.targetBytes)
    this.checkedDirs.set(this.targetBytes.toString('latin1'), { dev: st.dev, ino: st.ino })
  }

  /** Whether `add` would hard-link this file to one already written (it then needs no data). */
  willLink (e: StagedEntry): boolean {
    if (e.type !== 'file' || e.linkKey === undefined) return false
    const linked = this.linkGroups.get(e.linkKey)
    // The content must match too, so an inode number the endpoint reused can never join unrelated files.
    return linked !== undefined && linked.size === e.size && Buffer.from(linked.chunks).equals(Buffer.from(e.chunks))
  }

  /** Where an entry lands under the target, or undefined (recorded as RESTORE_PATH_UNSAFE) if it would leave it. */
  private placeOf (e: StagedEntry, shown: string): Buffer | undefined {
    if (!isSafeRelativePath(e.path) || !isSafeFolderName(e.folder)) {
      this.error(shown, 'RESTORE_PATH_UNSAFE', 'path is absolute or leaves its folder; skipped')
      return undefined
    }
    return Buffer.concat([this.targetBytes, SLASH, Buffer.from(e.folder), SLASH, e.path])
  }

  /**
   * Writes one entry. Problems with the entry (an unsafe path, a corrupt chunk, a file-system
   * error) are recorded in the summary; an abort or a failing provider is thrown.
   */
  async add (e: StagedEntry, chunk: ChunkProvider): Promise<void> {
    if (this.options.signal?.aborted === true) throw this.options.signal.reason
    const shown = `${e.folder}/${displayPath(e.path)}`
    const abs = this.placeOf(e, shown)
    if (abs === undefined) return
    try {
      if (e.type === 'dir') {
        this.ensureDir(abs)
        this.dirs.push({ abs, e })
      } else if (e.type === 'symlink') {
        this.links.push({ abs, e })
      } else if (e.type === 'file') {
        this.ensureParent(abs)
        const linked = e.linkKey === undefined ? undefined : this.linkGroups.get(e.linkKey)
        if (linked !== undefined) await linked.written
        if (linked !== undefined && this.willLink(e)) {
          this.create(abs, p => { linkSync(linked.abs, p) })
        } else {
          this.summary.bytes += await this.writeFile(abs, e, chunk)
          if (e.linkKey !== undefined) this.linkGroups.set(e.linkKey, { abs, size: e.size, chunks: e.chunks, written: Promise.resolve(true) })
        }
        this.summary.files++
        if ((this.summary.files & 255) === 0) this.options.onProgress?.({ files: this.summary.files, bytes: this.summary.bytes })
      } else {
        // FIFOs, sockets and devices are recorded, not recreated
        this.summary.other++
      }
    } catch (err) {
      if (!isEntryError(err)) throw err
      const error = err as NodeJS.ErrnoException
      this.error(shown, err instanceof HoldfastError ? err.code : error.code ?? 'EIO', error.message)
    }
  }

  /**
   * Writes one entry whose chunks are read as stored (`read`, synchronous): a file is handed to
   * the file-writer workers, which verify each chunk before writing it, so several files are
   * written at once and this thread only reads and dispatches. Returns once the file's data
   * is handed over (or, with many bytes in flight, once there is room); call `drain()` before
   * `finish()`. Other entries, and any entry of a sink that may overwrite, are written as by
   * `add`. Problems with one file are recorded as by `add`; an error that ends the restore is
   * thrown here or by `drain()`.
   */
  async addStored (e: StagedEntry, read: StoredChunkReader): Promise<void> {
    if (e.type !== 'file' || this.options.overwrite === true) {
      await this.add(e, async (index, id) => { const c = read(index, id); return verifyChunk(id, c.compressed, c.rawLength) })
      return
    }
    if (this.fatal !== undefined) throw this.fatal
    if (this.options.signal?.aborted === true) throw this.options.signal.reason
    const shown = `${e.folder}/${displayPath(e.path)}`
    const abs = this.placeOf(e, shown)
    if (abs === undefined) return
    try {
      this.ensureParent(abs)
      const linked = e.linkKey === undefined ? undefined : this.linkGroups.get(e.linkKey)
      // A link needs its first name written: wait for that file (hard links are rare). Its
      // batch may still wait to fill up, and nothing else fills it while we wait: send it now.
      if (linked !== undefined) this.pool?.send()
      if (linked !== undefined && await linked.written && this.willLink(e)) {
        this.create(abs, p => { linkSync(linked.abs, p) })
        this.countFile(0)
        return
      }
      await this.writeStored(abs, e, read, shown)
    } catch (err) {
      if (!isEntryError(err)) throw err
      const error = err as NodeJS.ErrnoException
      this.error(shown, err instanceof HoldfastError ? err.code : error.code ?? 'EIO', error.message)
    }
  }

  /** Waits for every file `addStored` handed over, then stops the writers; throws what ended the restore. */
  async drain (): Promise<void> {
    try {
      await this.pool?.drain()
      await Promise.all(this.running)
    } finally {
      await this.dispose()
    }
    if (this.fatal !== undefined) throw this.fatal
  }

  /** Stops the writers and closes the parents' descriptors (after drain, or on the way out of a failed restore). */
  async dispose (): Promise<void> {
    const pool = this.pool
    this.pool = undefined
    await pool?.terminate()
    // what a stopped writer leaves unsettled settles now (as ABORTED)
    await Promise.all(this.running)
    for (const { fd } of this.parents.values()) closeSync(fd)
    this.parents.clear()
  }

  private countFile (bytes: number): void {
    this.summary.bytes += bytes
    this.summary.files++
    if ((this.summary.files & 255) === 0) this.options.onProgress?.({ files: this.summary.files, bytes: this.summary.bytes })
  }

  /**
   * Hands a file to a writer: created through its parent's checked descriptor (as `create`
   * does), each chunk read here and verified by the writer before it is written.
   */
  private async writeStored (abs: Buffer, e: StagedEntry, read: StoredChunkReader, shown: string): Promise<void> {
    const slash = abs.lastIndexOf(0x2f)
    const parentKey = this.holdParent(abs.subarray(0, slash))
    const path = parentKey === undefined ? abs : Buffer.concat([Buffer.from(`/proc/self/fd/${this.parents.get(parentKey)?.fd ?? -1}`), abs.subarray(slash)])
    const pool = this.pool ??= new FileWriterPool()
    const { job, result } = pool.begin(path)
    let settle = (_ok: boolean): void => {}
    if (e.linkKey !== undefined) {
      const written = new Promise<boolean>(resolve => { settle = resolve })
      this.linkGroups.set(e.linkKey, { abs, size: e.size, chunks: e.chunks, written })
    }
    const group = e.linkKey === undefined ? undefined : this.linkGroups.get(e.linkKey)
    const done = result.then(r => { this.settled(r, shown, parentKey, e.linkKey, group); settle(r.ok) })
    this.running.add(done)
    void done.finally(() => { this.running.delete(done) })
    try {
      for (let i = 0, index = 0; i < e.chunks.byteLength; i += CHUNK_ID_BYTES, index++) {
        const id = e.chunks.subarray(i, i + CHUNK_ID_BYTES)
        const c = read(index, id)
        pool.chunk(job, id, c.rawLength, c.compressed)
        if (pool.full) await pool.room()
      }
    } catch (err) {
      // the writer removes what it wrote of the file; the error is recorded by addStored
      pool.abort(job, { ok: false, code: 'READ_FAILED', message: (err as Error).message })
      throw err
    }
    pool.end(job, e.size, this.modeOf(e), secondsOf(e.mtimeNs))
  }

  /** A file's result from its writer: counted, or recorded as an entry error, or fatal. */
  private settled (r: JobResult, shown: string, parentKey: string | undefined, linkKey: string | undefined, group: unknown): void {
    if (parentKey !== undefined) this.releaseParent(parentKey)
    if (r.ok) { this.countFile(r.bytes); return }
    // a failed first name is no group: the next name of it is written with its data
    if (linkKey !== undefined && this.linkGroups.get(linkKey) === group) this.linkGroups.delete(linkKey)
    if (r.code === 'READ_FAILED') return // addStored records it
    if (isEntryCode(r.code)) this.error(shown, r.code, r.message)
    else this.fatal ??= new HoldfastError(r.code === 'ABORTED' ? 'ABORTED' : 'STORE_INVARIANT', `restore writer failed: ${r.message}`)
  }

  /**
   * A descriptor of `parent`, checked (as withinParent does) to be the intended directory now,
   * held for one more file; its key, or undefined without /proc (the plain path is used).
   */
  private holdParent (parent: Buffer): string | undefined {
    if (!PROC_FD) return undefined
    const key = parent.toString('latin1')
    let held = this.parents.get(key)
    if (held === undefined) {
      const fd = openParentDir(parent)
      try { this.checkDirFd(fd, parent) } catch (err) { closeSync(fd); throw err }
      this.closeIdleParents()
      held = { fd, refs: 0 }
      this.parents.set(key, held)
    }
    // Checked once, when opened: the descriptor pins that directory, so a file created through
    // it lands in the directory this restore made, even if the directory is renamed meanwhile
    // (only the target's owner can, and nowhere they could not write anyway). No per-file check.
    held.refs++
    return key
  }

  private releaseParent (key: string): void {
    const held = this.parents.get(key)
    if (held !== undefined) held.refs--
  }

  /** Makes room for one more descriptor, closing the oldest that no file in flight uses. */
  private closeIdleParents (): void {
    if (this.parents.size < MAX_OPEN_PARENTS) return
    for (const [key, held] of this.parents) {
      if (this.parents.size < MAX_OPEN_PARENTS) break
      if (held.refs > 0) continue
      closeSync(held.fd)
      this.parents.delete(key)
    }
  }

  /** Symlinks, then directories' modes and mtimes (deepest first); returns the counts. */
  finish (): SinkSummary {
    if (this.running.size > 0 || this.pool !== undefined) throw new HoldfastError('STORE_INVARIANT', 'RestoreSink.finish() before drain(): files are still being written')
    for (const { abs, e } of this.links) {
      try {
        this.ensureParent(abs)
        this.create(abs, p => {
          symlinkSync(Buffer.from(e.target ?? new Uint8Array(0)), p)
          lutimesSync(p, secondsOf(e.mtimeNs), secondsOf(e.mtimeNs))
        })
        this.summary.symlinks++
      } catch (err) {
        if (!isEntryError(err)) throw err
        this.error(`${e.folder}/${displayPath(e.path)}`, err instanceof HoldfastError ? err.code : (err as NodeJS.ErrnoException).code ?? 'EIO', (err as Error).message)
      }
    }
    // Directories last, deepest first: writing into a directory changes its mtime.
    this.dirs.sort((a, b) => b.abs.length - a.abs.length)
    for (const { abs, e } of this.dirs) {
      try {
        this.setDirMeta(abs, e)
        this.summary.dirs++
      } catch (err) {
        this.error(`${e.folder}/${displayPath(e.path)}`, (err as NodeJS.ErrnoException).code ?? 'EIO', (err as Error).message)
      }
    }
    this.summary.ms = Date.now() - this.started
    this.options.onProgress?.({ files: this.summary.files, bytes: this.summary.bytes })
    return { ...this.summary, errors: [...this.summary.errors] }
  }

  /** The permission bits to restore: setuid/setgid only when asked (counted when dropped). */
  private modeOf (e: StagedEntry): number {
    if (this.options.keepSetuid === true || (e.mode & 0o6000) === 0) return e.mode & 0o7777
    this.summary.setuidStripped++
    return e.mode & 0o1777
  }

  /**
   * Fails unless the descriptor (opened by the path `abs`) is the directory this restore made
   * or checked at `abs`: an ancestor swapped for a link, or another directory put in its
   * place, leads elsewhere. One fstat: cheaper than reading the descriptor's path back from
   * /proc, and it tells two directories apart even at the same path.
   */
  private checkDirFd (fd: number, abs: Buffer): void {
    const want = this.checkedDirs.get(abs.toString('latin1'))
    const st = fstatSync(fd)
    if (want !== undefined && st.dev === want.dev && st.ino === want.ino) return
    throw new HoldfastError('RESTORE_PATH_UNSAFE', `${displayPath(abs)} is not the directory this restore made there (a parent was swapped during the restore); skipped`)
  }

  /**
   * Runs `fn` on a path that reaches `abs`'s name inside its parent through a descriptor of
   * the parent checked to be the intended directory: /proc/self/fd/N/<name>, the effect of the
   * *at calls Node lacks. Without /proc, the plain path (the name cannot be reached through
   * the descriptor).
   */
  private withinParent<T> (abs: Buffer, fn: (p: Buffer) => T): T {
    const slash = abs.lastIndexOf(0x2f)
    const parent = abs.subarray(0, slash)
    const fd = openParentDir(parent)
    try {
      this.checkDirFd(fd, parent)
      if (!PROC_FD) return fn(abs)
      return fn(Buffer.concat([Buffer.from(`/proc/self/fd/${fd}`), abs.subarray(slash)]))
    } finally {
      closeSync(fd)
    }
  }

  /** A directory's mode and times, set through a descriptor checked to be the directory. */
  private setDirMeta (abs: Buffer, e: StagedEntry): void {
    const mode = this.modeOf(e)
    let fd: number
    try {
      fd = openSync(abs, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EACCES') throw err
      // a directory restored without read permission cannot be opened: check its path instead
      if (!lstatSync(abs).isDirectory() || !realpathSync(abs, { encoding: 'buffer' }).equals(abs)) throw new HoldfastError('RESTORE_PATH_UNSAFE', `${displayPath(abs)} is no longer a directory of the restore`)
      chmodSync(abs, mode)
      utimesSync(abs, secondsOf(e.mtimeNs), secondsOf(e.mtimeNs))
      return
    }
    try {
      this.checkDirFd(fd, abs)
      fchmodSync(fd, mode)
      futimesSync(fd, secondsOf(e.mtimeNs), secondsOf(e.mtimeNs))
    } finally {
      closeSync(fd)
    }
  }

  get errors (): number { return this.errorCount }

  get target (): string { return this.options.target }

  private error (path: string, code: string, message: string): void {
    this.errorCount++
    if (this.summary.errors.length < MAX_REPORTED_ERRORS) this.summary.errors.push({ path, code, message })
  }

  /**
   * Runs a create (given the path to make it at, through the checked parent) that fails with
   * EEXIST on an existing name; with overwrite, replaces a non-directory once.
   */
  private create (abs: Buffer, make: (p: Buffer) => void): void {
    this.withinParent(abs, p => {
      try {
        make(p)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || this.options.overwrite !== true) throw err
        if (lstatSync(p).isDirectory()) throw err
        unlinkSync(p)
        make(p)
      }
    })
  }

  private ensureParent (abs: Buffer): void {
    this.ensureDir(abs.subarray(0, abs.lastIndexOf(0x2f)))
  }

  /**
   * Makes `abs` and its missing parents below the target, one component at a time; an
   * existing component must be a real directory (lstat), so nothing is written through a link.
   */
  private ensureDir (abs: Buffer): void {
    const key = abs.toString('latin1')
    if (this.checkedDirs.has(key)) return
    this.ensureDir(abs.subarray(0, abs.lastIndexOf(0x2f)))
    // made through the parent's checked descriptor: a parent swapped for a link since it was
    // checked is refused, never followed
    const id = this.withinParent(abs, p => {
      try {
        mkdirSync(p, { mode: 0o700 })
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      }
      // what the name holds now, inside the checked parent (made, or found): recorded, so a
      // descriptor opened by this path later can be checked to be this very directory
      const st = lstatSync(p)
      if (!st.isDirectory()) throw new HoldfastError('RESTORE_PATH_UNSAFE', `${displayPath(abs)} exists and is not a directory`)
      return { dev: st.dev, ino: st.ino }
    })
    this.checkedDirs.set(key, id)
  }

  private async writeFile (abs: Buffer, e: StagedEntry, chunk: ChunkProvider): Promise<number> {
    const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW
    let fd = -1
    this.create(abs, p => { fd = openSync(p, flags, 0o600) })
    let position = 0
    let dataEnd = 0
    try {
      for (let i = 0, index = 0; i < e.chunks.byteLength; i += CHUNK_ID_BYTES, index++) {
        const plain = await chunk(index, e.chunks.subarray(i, i + CHUNK_ID_BYTES))
        const end = writeSparse(fd, plain, position)
        if (end > position) dataEnd = end
        position += plain.byteLength
      }
      // the file is new: its length is what was written, unless it ends in a hole
      if (position > dataEnd) ftruncateSync(fd, position)
      if (position !== e.size) throw new HoldfastError('STORE_CORRUPT', `restored ${position} bytes, the entry says ${e.size}`)
    } catch (err) {
      // A file that cannot be restored whole is not left behind looking restored.
      closeSync(fd)
      try { unlinkSync(abs) } catch {}
      throw err
    }
    try {
      // through the descriptor: a path could lead elsewhere by now
      fchmodSync(fd, this.modeOf(e))
      futimesSync(fd, secondsOf(e.mtimeNs), secondsOf(e.mtimeNs))
    } finally {
      closeSync(fd)
    }
    return position
  }
}

/**
 * A restore pushed onto an endpoint, finished atomically: it is written under
 * `<root>/.<label>.partial-<id>` and renamed to `<root>/<label>` only once complete, so a push
 * cut part way never leaves a label directory with part of a restore in it.
 * - a new label: the partial directory is renamed to it;
 * - an existing label (only with `overwrite`): the partial is swapped in (the old directory is
 *   renamed to `.<label>.replaced-<id>`, the partial to the label, then the old one removed), so
 *   the label holds exactly the restore, never a mix of old and new files;
 * - a failure (`abort`): the partial directory is removed. A process killed part way leaves
 *   it, hidden and named as partial, never under the label.
 */
export class PartialRestoreDir {
  readonly sink: RestoreSink
  readonly partial: string
  readonly final: string
  private done = false

  constructor (readonly root: string, readonly label: string, readonly overwrite: boolean, signal?: AbortSignal) {
    const id = randomBytes(6).toString('hex')
    this.final = join(root, label)
    this.partial = join(root, `.${label}.partial-${id}`)
    mkdirSync(this.partial, { mode: 0o700 })
    this.sink = new RestoreSink({ target: this.partial, signal })
  }

  get target (): string { return this.final }
  get errors (): number { return this.sink.errors }

  async add (e: StagedEntry, chunk: ChunkProvider): Promise<void> { await this.sink.add(e, chunk) }

  /** Finishes the sink and moves the restore into place under its label. */
  finish (): SinkSummary {
    const summary = this.sink.finish()
    syncDir(this.partial)
    let replaced: string | undefined
    try {
      renameSync(this.partial, this.final)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code !== 'EEXIST' && code !== 'ENOTEMPTY') { this.abort(); throw err }
      // The label appeared meanwhile, or is the one to overwrite: swap, never merge.
      if (!this.overwrite || !lstatSync(this.final).isDirectory()) {
        this.abort()
        throw new HoldfastError('RESTORE_TARGET_NOT_EMPTY', `restore directory ${this.final} exists; push again with overwrite to replace it`)
      }
      replaced = join(this.root, `.${this.label}.replaced-${randomBytes(6).toString('hex')}`)
      renameSync(this.final, replaced)
      renameSync(this.partial, this.final)
    }
    this.done = true
    syncDir(this.root)
    if (replaced !== undefined) rmSync(replaced, { recursive: true, force: true })
    return summary
  }

  /** Removes what was written; the label is left as it was. */
  abort (): void {
    if (this.done) return
    this.done = true
    rmSync(this.partial, { recursive: true, force: true })
  }
}

function syncDir (dir: string): void {
  const fd = openSync(dir, constants.O_RDONLY)
  try { fsyncSync(fd) } finally { closeSync(fd) }
}

/**
 * Opens a restore pushed onto an endpoint (see PartialRestoreDir). `label` must be one plain
 * path component; an existing label is refused unless `overwrite`. With `bytes` (what the
 * restore's files hold), a restore that cannot fit in the free space is refused up front.
 */
export function openRestoreDir (root: string, label: string, overwrite: boolean, signal?: AbortSignal, space?: { bytes?: number, probe?: FreeSpaceProbe }): PartialRestoreDir {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(label)) throw new HoldfastError('RESTORE_PATH_UNSAFE', `restore label '${label}' is not a plain name`)
  mkdirSync(root, { recursive: true, mode: 0o700 })
  checkTargetOwner(root)
  const target = join(root, label)
  try {
    const st = lstatSync(target)
    if (!overwrite) throw new HoldfastError('RESTORE_TARGET_NOT_EMPTY', `restore directory ${target} exists; push again with overwrite to replace it`)
    if (!st.isDirectory()) throw new HoldfastError('RESTORE_TARGET_NOT_EMPTY', `${target} exists and is not a directory`)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  // the old directory stays until the swap: the whole restore must fit beside it
  if (space?.bytes !== undefined) checkFreeSpace(root, space.bytes, space.probe)
  return new PartialRestoreDir(root, label, overwrite, signal)
}

/**
 * A restore writes only into a directory of the process's own user: in someone else's
 * directory its owner could swap names under the restore and steer it (and, for a daemon
 * running as root, a user's directory is exactly where that would be tried). No exception
 * for root: root restores into a directory root owns.
 */
export function checkTargetOwner (dir: string, uid: number | undefined = process.getuid?.()): void {
  if (uid === undefined) return
  const st = statSync(dir)
  if (st.uid !== uid) {
    throw new HoldfastError('RESTORE_TARGET_NOT_OWNED', `restore target ${dir} belongs to uid ${st.uid}, not to uid ${uid} that restores; choose a directory of uid ${uid}, or a new one`, { dir, owner: st.uid, uid })
  }
}

/** Makes `target` a new directory, or checks that it is an empty one of ours. */
export function prepareTarget (target: string, uid: number | undefined = process.getuid?.()): void {
  try {
    const st = statSync(target)
    if (!st.isDirectory()) throw new HoldfastError('RESTORE_TARGET_NOT_EMPTY', `restore target ${target} exists and is not a directory`)
    checkTargetOwner(target, uid)
    if (readdirSync(target).length > 0) throw new HoldfastError('RESTORE_TARGET_NOT_EMPTY', `restore target ${target} is not empty; choose an empty or new directory`)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    mkdirSync(target, { recursive: true, mode: 0o700 })
  }
}

/** Opens a parent directory without following a link: one swapped in for it is RESTORE_PATH_UNSAFE. */
function openParentDir (parent: Buffer): number {
  try {
    return openSync(parent, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ELOOP' || code === 'ENOTDIR') throw new HoldfastError('RESTORE_PATH_UNSAFE', `${displayPath(parent)} is no longer a directory (swapped for a link during the restore); skipped`)
    throw err
  }
}
