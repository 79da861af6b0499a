/**
 * The data model shared by agent, wire and store (DESIGN.md §2). Paths are raw bytes: Linux
 * names need not be UTF-8, so nothing here assumes they are.
 */
export type EntryType = 'file' | 'dir' | 'symlink' | 'special' | 'deleted'
export const ENTRY_TYPES: readonly EntryType[] = ['file', 'dir', 'symlink', 'special', 'deleted']

export const CHUNK_ID_BYTES = 32

export interface StagedEntry {
  /** Name of the protected folder the path is relative to. */
  folder: string
  /** Path relative to the folder, raw bytes, '/'-separated, never empty, never absolute. */
  path: Uint8Array
  type: EntryType
  /** st_mode permission and type bits (0 for deletions). */
  mode: number
  /** Modification time in nanoseconds since the epoch, as the platform gave it. */
  mtimeNs: bigint
  size: number
  /** SHA-256 ids of the plaintext chunks, in file order, concatenated (32 bytes each). */
  chunks: Uint8Array
  /** Symlink target as raw bytes (symlinks only). */
  target?: Uint8Array
  /**
   * Files that are one inode under several names (hard links) share this key, so a restore
   * links them again instead of writing copies. Absent for files with one name.
   */
  linkKey?: string
}

/** A sealed staging set as the manifest protocol reports it. */
export interface SetSummary {
  id: number
  sealedAt: number
  entries: number
  chunks: number
  /** Plaintext bytes of the files in the set. */
  rawBytes: number
  /** Compressed bytes held in the spool for the set. */
  storedBytes: number
}

export function chunkIdsOf (entry: StagedEntry): Uint8Array[] {
  const out: Uint8Array[] = []
  for (let i = 0; i < entry.chunks.byteLength; i += CHUNK_ID_BYTES) out.push(entry.chunks.subarray(i, i + CHUNK_ID_BYTES))
  return out
}

export function toHex (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}

export function fromHex (hex: string): Uint8Array {
  return new Uint8Array(Buffer.from(hex, 'hex'))
}

/** A lossless string key for a raw-byte path (latin1 maps each byte to one code unit). */
export function pathKey (folder: string, path: Uint8Array): string {
  return folder + '\u0000' + Buffer.from(path.buffer, path.byteOffset, path.byteLength).toString('latin1')
}

/** For display only: non-UTF-8 bytes are shown escaped. */
export function displayPath (path: Uint8Array): string {
  const buf = Buffer.from(path.buffer, path.byteOffset, path.byteLength)
  const text = buf.toString('utf8')
  if (Buffer.from(text, 'utf8').equals(buf)) return text
  return Array.from(buf, b => (b >= 0x20 && b < 0x7f && b !== 0x5c) ? String.fromCharCode(b) : '\\x' + b.toString(16).padStart(2, '0')).join('')
}

/**
 * A protected folder's name is one path component: not empty, no '/', no NUL, not '.' or
 * '..', at most 255 characters (config.ts checks the same at load).
 */
export function isSafeFolderName (folder: string): boolean {
  return /^[^/\0]{1,255}$/.test(folder) && folder !== '.' && folder !== '..'
}

/** A path is safe to restore when it has no empty, '.', or '..' components and is relative. */
export function isSafeRelativePath (path: Uint8Array): boolean {
  if (path.byteLength === 0 || path[0] === 0x2f) return false
  let start = 0
  for (let i = 0; i <= path.byteLength; i++) {
    if (i === path.byteLength || path[i] === 0x2f) {
      const len = i - start
      if (len === 0) return false
      if (len === 1 && path[start] === 0x2e) return false
      if (len === 2 && path[start] === 0x2e && path[start + 1] === 0x2e) return false
      start = i + 1
    } else if (path[i] === 0) {
      return false
    }
  }
  return true
}
