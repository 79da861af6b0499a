/**
 * A streaming tar writer (ustar, with a pax header for long names): yields the archive block by
 * block, reading each file only when its turn comes, so a package of any size is built in
 * constant memory. It writes what it is given; the package builder decides what is safe to
 * include (tests use it to make hostile archives too).
 */
import { BLOCK, FIELD, TYPE, headerChecksum, paxRecord } from './tar-format.js'
import { HoldfastError } from '../util/errors.js'

export interface TarSource {
  /** The path inside the archive, '/'-separated. */
  path: string
  type: 'file' | 'directory' | 'symlink' | 'hardlink' | 'fifo' | 'charDevice'
  mode: number
  /** Seconds since the epoch. */
  mtime: number
  /** For a file: its exact length; the body must yield exactly this many bytes. */
  size?: number
  linkname?: string
  body?: () => AsyncIterable<Uint8Array>
}

const TYPEFLAG: Record<TarSource['type'], string> = {
  file: TYPE.file, directory: TYPE.directory, symlink: TYPE.symlink, hardlink: TYPE.hardlink, fifo: TYPE.fifo, charDevice: TYPE.charDevice
}

function putString (header: Buffer, [off, len]: readonly [number, number], value: string): void {
  header.write(value, off, len, 'utf8')
}

function putOctal (header: Buffer, [off, len]: readonly [number, number], value: number): void {
  header.write(value.toString(8).padStart(len - 1, '0') + '\0', off, len, 'ascii')
}

function header (path: string, typeflag: string, mode: number, size: number, mtime: number, linkname: string): Buffer {
  const h = Buffer.alloc(BLOCK)
  putString(h, FIELD.name, path)
  putOctal(h, FIELD.mode, mode & 0o7777)
  putOctal(h, FIELD.uid, 0)
  putOctal(h, FIELD.gid, 0)
  putOctal(h, FIELD.size, size)
  putOctal(h, FIELD.mtime, Math.max(0, Math.floor(mtime)))
  putString(h, FIELD.typeflag, typeflag)
  putString(h, FIELD.linkname, linkname)
  putString(h, FIELD.magic, 'ustar\0')
  putString(h, FIELD.version, '00')
  putString(h, FIELD.uname, 'root')
  putString(h, FIELD.gname, 'root')
  h.write(headerChecksum(h).toString(8).padStart(6, '0') + '\0 ', FIELD.chksum[0], 8, 'ascii')
  return h
}

const padding = (size: number): Buffer => Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK)

/** The archive's bytes, block-aligned, ending with the two zero blocks. */
export async function * writeTar (entries: AsyncIterable<TarSource> | Iterable<TarSource>, signal?: AbortSignal): AsyncGenerator<Buffer> {
  for await (const e of entries) {
    signal?.throwIfAborted()
    const size = e.type === 'file' ? (e.size ?? 0) : 0
    const linkname = e.linkname ?? ''
    // Names that do not fit a ustar field (100 bytes) go in a pax header before the entry; the
    // ustar field keeps a truncated name, which readers that know pax ignore.
    const records: Buffer[] = []
    if (Buffer.byteLength(e.path) > 100) records.push(paxRecord('path', e.path))
    if (Buffer.byteLength(linkname) > 100) records.push(paxRecord('linkpath', linkname))
    if (records.length > 0) {
      const pax = Buffer.concat(records)
      yield header('PaxHeader', TYPE.paxHeader, 0o644, pax.byteLength, e.mtime, '')
      yield pax
      yield padding(pax.byteLength)
    }
    yield header(Buffer.from(e.path).subarray(0, 100).toString('utf8'), TYPEFLAG[e.type], e.mode, size, e.mtime, Buffer.from(linkname).subarray(0, 100).toString('utf8'))
    if (e.type === 'file') {
      let written = 0
      if (e.body !== undefined) {
        for await (const chunk of e.body()) {
          written += chunk.byteLength
          // A file that grew while packing would shift every later header: stop, do not corrupt.
          if (written > size) throw new HoldfastError('PACKAGE_INVALID', `tar: ${e.path} is longer than its declared ${size} bytes`)
          yield Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
        }
      }
      if (written !== size) throw new HoldfastError('PACKAGE_INVALID', `tar: ${e.path} gave ${written} bytes, not its declared ${size}`)
      yield padding(size)
    }
  }
  yield Buffer.alloc(2 * BLOCK)
}
