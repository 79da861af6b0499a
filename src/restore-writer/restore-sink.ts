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
 * restore can pass through a link it restored. An existing file is replaced only when the
 * sink was opened with `overwrite`. Each chunk is re-hashed before it is written (by the
 * provider), so a corrupt source is reported rather than restored.
 */
import { closeSync, constants, lutimesSync, mkdirSync, openSync, readdirSync, symlinkSync, utimesSync, writeSync, chmodSync, statSync, lstatSync, unlinkSync, ftruncateSync, linkSync, renameSync, rmSync, fsyncSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { CHUNK_ID_BYTES, displayPath, isSafeFolderName, isSafeRelativePath, type StagedEntry } from '../model/entry.js'
import { HoldfastError } from '../util/errors.js'
import { checkFreeSpace, type FreeSpaceProbe } from './free-space.js'

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
}


/**
 * The plaintext of chunk `index` of the file being written (its id is `id`), verified: the
 * provider throws CHUNK_HASH_MISMATCH or CHUNK_MISSING for that file alone, anything else
 * (a stream failing, an abort) ends the whole restore.
 */
export type ChunkProvider = (index: number, id: Uint8Array) => Promise<Uint8Array>

/** Errors that spoil one entry, not the restore: reported in the summary and skipped. */
const ENTRY_ERROR_CODES = new Set(['CHUNK_HASH_MISMATCH', 'CHUNK_MISSING', 'STORE_CORRUPT', 'RESTORE_PATH_UNSAFE'])

function isEntryError (err: unknown): boolean {
  if (err instanceof HoldfastError) return ENTRY_ERROR_CODES.has(err.code)
  // file-system errors (EACCES, ENOSPC, EEXIST…) are about this path
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  return typeof code === 'string' && /^E[A-Z]+$/.test(code)
}

const SLASH = Buffer.from('/')
const MAX_REPORTED_ERRORS = 1000

/**
 * Seconds as the double Node's utimes takes. Whole seconds and the fraction are converted
 * separately so the only loss is the double's own resolution (≈ 0.24 µs today).
 */
function secondsOf (ns: bigint): number {
  return Number(ns / 1_000_000_000n) + Number(ns % 1_000_000_000n) / 1e9
}

export interface RestoreSinkOptions {
  /** The directory entries are written under, as `<target>/<folder>/<path>`; must exist. */
  target: string
  /** Replace files and symlinks that exist already (never a directory, never through a link). */
  overwrite?: boolean
  signal?: AbortSignal
  onProgress?: (p: RestoreProgress) => void
}

/** Writes entries under a target directory; `finish()` sets links and directory metadata. */
export class RestoreSink {
  private readonly started = Date.now()
  private readonly summary: SinkSummary = { files: 0, dirs: 0, symlinks: 0, other: 0, bytes: 0, ms: 0, errors: [] }
  private errorCount = 0
  private readonly targetBytes: Buffer
  private readonly dirs: Array<{ abs: Buffer, e: StagedEntry }> = []
  private readonly links: Array<{ abs: Buffer, e: StagedEntry }> = []
  /** Directories known to be real directories made or checked by this restore. */
  private readonly checkedDirs = new Set<string>()
  private readonly linkGroups = new Map<string, { abs: Buffer, size: number, chunks: Uint8Array }>()

  constructor (private readonly options: RestoreSinkOptions) {
    this.targetBytes = Buffer.from(options.target)
    this.checkedDirs.add(this.targetBytes.toString('latin1'))
  }

  /** Whether `add` would hard-link this file to one already written (it then needs no data). */
  willLink (e: StagedEntry): boolean {
    if (e.type !== 'file' || e.linkKey === undefined) return false
    const linked = this.linkGroups.get(e.linkKey)
    // The content must match too, so an inode number the endpoint reused can never join unrelated files.
    return linked !== undefined && linked.size === e.size && Buffer.from(linked.chunks).equals(Buffer.from(e.chunks))
  }

  /**
   * Writes one entry. Problems with the entry (an unsafe path, a corrupt chunk, a file-system
   * error) are recorded in the summary; an abort or a failing provider is thrown.
   */
  async add (e: StagedEntry, chunk: ChunkProvider): Promise<void> {
    if (this.options.signal?.aborted === true) throw this.options.signal.reason
    const shown = `${e.folder}/${displayPath(e.path)}`
    if (!isSafeRelativePath(e.path) || !isSafeFolderName(e.folder)) {
      this.error(shown, 'RESTORE_PATH_UNSAFE', 'path is absolute or leaves its folder; skipped')
      return
    }
    const abs = Buffer.concat([this.targetBytes, SLASH, Buffer.from(e.folder), SLASH, e.path])
    try {
      if (e.type === 'dir') {
        this.ensureDir(abs)
        this.dirs.push({ abs, e })
      } else if (e.type === 'symlink') {
        this.links.push({ abs, e })
      } else if (e.type === 'file') {
        this.ensureParent(abs)
        const linked = e.linkKey === undefined ? undefined : this.linkGroups.get(e.linkKey)
        if (linked !== undefined && this.willLink(e)) {
          this.create(abs, () => { linkSync(linked.abs, abs) })
        } else {
          this.summary.bytes += await this.writeFile(abs, e, chunk)
          if (e.linkKey !== undefined) this.linkGroups.set(e.linkKey, { abs, size: e.size, chunks: e.chunks })
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

  /** Symlinks, then directories' modes and mtimes (deepest first); returns the counts. */
  finish (): SinkSummary {
    for (const { abs, e } of this.links) {
      try {
        this.ensureParent(abs)
        this.create(abs, () => { symlinkSync(Buffer.from(e.target ?? new Uint8Array(0)), abs) })
        lutimesSync(abs, secondsOf(e.mtimeNs), secondsOf(e.mtimeNs))
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
        chmodSync(abs, e.mode & 0o7777)
        utimesSync(abs, secondsOf(e.mtimeNs), secondsOf(e.mtimeNs))
        this.summary.dirs++
      } catch (err) {
        this.error(`${e.folder}/${displayPath(e.path)}`, (err as NodeJS.ErrnoException).code ?? 'EIO', (err as Error).message)
      }
    }
    this.summary.ms = Date.now() - this.started
    this.options.onProgress?.({ files: this.summary.files, bytes: this.summary.bytes })
    return { ...this.summary, errors: [...this.summary.errors] }
  }

  get errors (): number { return this.errorCount }

  get target (): string { return this.options.target }

  private error (path: string, code: string, message: string): void {
    this.errorCount++
    if (this.summary.errors.length < MAX_REPORTED_ERRORS) this.summary.errors.push({ path, code, message })
  }

  /** Runs a create that fails with EEXIST on an existing name; with overwrite, replaces a non-directory once. */
  private create (abs: Buffer, make: () => void): void {
    try {
      make()
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || this.options.overwrite !== true) throw err
      if (lstatSync(abs).isDirectory()) throw err
      unlinkSync(abs)
      make()
    }
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
    try {
      mkdirSync(abs, { mode: 0o700 })
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      if (!lstatSync(abs).isDirectory()) throw new HoldfastError('RESTORE_PATH_UNSAFE', `${displayPath(abs)} exists and is not a directory`)
    }
    this.checkedDirs.add(key)
  }

  private async writeFile (abs: Buffer, e: StagedEntry, chunk: ChunkProvider): Promise<number> {
    const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW
    let fd = -1
    this.create(abs, () => { fd = openSync(abs, flags, 0o600) })
    let position = 0
    try {
      for (let i = 0, index = 0; i < e.chunks.byteLength; i += CHUNK_ID_BYTES, index++) {
        const plain = await chunk(index, e.chunks.subarray(i, i + CHUNK_ID_BYTES))
        writeSparse(fd, plain, position)
        position += plain.byteLength
      }
      ftruncateSync(fd, position) // sets the length when the file ends in a hole
      if (position !== e.size) throw new HoldfastError('STORE_CORRUPT', `restored ${position} bytes, the entry says ${e.size}`)
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
}

const HOLE_BLOCK = 64 * 1024
const ZEROS = Buffer.alloc(HOLE_BLOCK)

/**
 * Writes `data` at `position`, skipping 64 KiB blocks that are all zeros so they stay holes
 * (sparse files stay sparse where the filesystem allows); runs of data blocks go in one write.
 */
function writeSparse (fd: number, bytes: Uint8Array, position: number): void {
  const data = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
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

/** Makes `target` a new directory, or checks that it is an empty one. */
export function prepareTarget (target: string): void {
  try {
    const st = statSync(target)
    if (!st.isDirectory()) throw new HoldfastError('RESTORE_TARGET_NOT_EMPTY', `restore target ${target} exists and is not a directory`)
    if (readdirSync(target).length > 0) throw new HoldfastError('RESTORE_TARGET_NOT_EMPTY', `restore target ${target} is not empty; choose an empty or new directory`)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    mkdirSync(target, { recursive: true, mode: 0o700 })
  }
}
