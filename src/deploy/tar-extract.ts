/**
 * Unpacks tar events into a fresh directory, refusing anything that could reach outside it.
 * The package is signed, so this guards against a hostile or broken manager build, and it is
 * strict rather than clever: regular files, directories, and symbolic links whose target stays
 * inside the directory; never a hardlink, device or fifo; never a write through a symbolic link
 * (a link made earlier in the archive and a file "through" it is the classic escape); never an
 * entry that replaces one already written. Modes are reduced to 0755/0644: no setuid, no
 * world-writable files, whatever the archive says.
 */
import { constants, lstatSync, mkdirSync, symlinkSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { posix } from 'node:path'
import { HoldfastError } from '../util/errors.js'
import { TYPE } from './tar-format.js'
import type { TarEntry, TarEvent } from './tar-reader.js'

export interface ExtractOptions {
  /** Bytes of all files together: a bound on what a small gzip can expand to. */
  maxUnpackedBytes: number
  /** Entries of any kind. */
  maxEntries?: number
  signal?: AbortSignal
}

const unsafe = (path: string, why: string): HoldfastError =>
  new HoldfastError('PACKAGE_PATH_UNSAFE', `package entry ${JSON.stringify(path).slice(0, 200)}: ${why}`, { path: path.slice(0, 200) })

/** The entry's path as components under the root, or a refusal. */
export function entryComponents (raw: string): string[] {
  let path = raw
  while (path.startsWith('./')) path = path.slice(2)
  if (path.endsWith('/')) path = path.slice(0, -1)
  if (path === '' || path === '.') throw unsafe(raw, 'names no path')
  if (path.startsWith('/')) throw unsafe(raw, 'is absolute')
  const parts = path.split('/')
  for (const part of parts) {
    if (part === '..') throw unsafe(raw, 'has ..')
    if (part === '' || part === '.') throw unsafe(raw, 'has an empty or . component')
    if (part.includes('\0')) throw unsafe(raw, 'has a NUL')
  }
  return parts
}

/** Every existing parent must be a real directory of ours; missing ones are made. */
function ensureParents (root: string, parts: string[], raw: string): void {
  let dir = root
  for (let i = 0; i < parts.length - 1; i++) {
    dir = posix.join(dir, parts[i] as string)
    let st
    try { st = lstatSync(dir) } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      mkdirSync(dir, { mode: 0o755 })
      continue
    }
    if (st.isSymbolicLink()) throw unsafe(raw, `goes through the symbolic link ${parts.slice(0, i + 1).join('/')}`)
    if (!st.isDirectory()) throw unsafe(raw, 'goes through a non-directory')
  }
}

function checkLinkTarget (entry: TarEntry, parts: string[]): void {
  const target = entry.linkname
  if (target === '') throw unsafe(entry.path, 'is a link with no target')
  if (target.startsWith('/')) throw unsafe(entry.path, `links to the absolute path ${target.slice(0, 200)}`)
  const resolved = posix.normalize(posix.join(parts.slice(0, -1).join('/'), target))
  if (resolved === '..' || resolved.startsWith('../') || resolved === '.') throw unsafe(entry.path, `links outside its directory (${target.slice(0, 200)})`)
}

export async function extractTar (events: AsyncIterable<TarEvent>, root: string, options: ExtractOptions): Promise<{ files: number, bytes: number }> {
  const maxEntries = options.maxEntries ?? 200_000
  let entries = 0
  let files = 0
  let bytes = 0
  const it = events[Symbol.asyncIterator]()
  try {
    for (;;) {
      options.signal?.throwIfAborted()
      const next = await it.next()
      if (next.done === true) break
      const event = next.value
      if (event.kind !== 'entry') throw new HoldfastError('PACKAGE_INVALID', 'tar: data outside an entry')
      const entry = event.entry
      if (++entries > maxEntries) throw new HoldfastError('PACKAGE_INVALID', `package has more than ${maxEntries} entries`)
      const parts = entryComponents(entry.path)
      const target = posix.join(root, ...parts)
      switch (entry.typeflag) {
        case TYPE.directory: {
          ensureParents(root, parts, entry.path)
          try {
            mkdirSync(target, { mode: 0o755 })
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
            // a directory named twice is harmless; anything else already there is not
            if (!lstatSync(target).isDirectory()) throw unsafe(entry.path, 'is a directory over another entry')
          }
          break
        }
        case TYPE.file: case TYPE.oldFile: {
          ensureParents(root, parts, entry.path)
          // O_EXCL | O_NOFOLLOW: never replace an entry written before, never write through a link
          let handle
          try {
            handle = await open(target, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, (entry.mode & 0o111) !== 0 ? 0o755 : 0o644)
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === 'EEXIST' || (err as NodeJS.ErrnoException).code === 'ELOOP') throw unsafe(entry.path, 'names an entry that already exists')
            throw err
          }
          try {
            for (;;) {
              const ev = await it.next()
              if (ev.done === true) throw new HoldfastError('PACKAGE_INVALID', 'tar: archive ends inside a file')
              if (ev.value.kind === 'end') break
              if (ev.value.kind !== 'data') throw new HoldfastError('PACKAGE_INVALID', 'tar: entry inside a file')
              bytes += ev.value.bytes.byteLength
              if (bytes > options.maxUnpackedBytes) throw new HoldfastError('PACKAGE_TOO_LARGE', `package unpacks to more than ${options.maxUnpackedBytes} bytes`)
              let off = 0
              while (off < ev.value.bytes.byteLength) off += (await handle.write(ev.value.bytes, off)).bytesWritten
            }
            // each file durable before the version directory is renamed into place: a power cut
            // must not leave a "complete" version with empty files to switch to
            await handle.datasync()
          } finally {
            await handle.close()
          }
          files++
          continue
        }
        case TYPE.symlink: {
          checkLinkTarget(entry, parts)
          ensureParents(root, parts, entry.path)
          try {
            symlinkSync(entry.linkname, target)
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw unsafe(entry.path, 'names an entry that already exists')
            throw err
          }
          break
        }
        case TYPE.hardlink: throw unsafe(entry.path, 'is a hard link (packages have none)')
        case TYPE.charDevice: case TYPE.blockDevice: throw unsafe(entry.path, 'is a device')
        case TYPE.fifo: throw unsafe(entry.path, 'is a fifo')
        default: throw unsafe(entry.path, `has the entry type ${JSON.stringify(entry.typeflag)}, which packages do not use`)
      }
      // entries without data: the reader still sends their end
      const end = await it.next()
      if (end.done === true || end.value.kind !== 'end') throw new HoldfastError('PACKAGE_INVALID', 'tar: entry without its end')
    }
  } finally {
    // a refusal stops reading: close the reader and the file stream under it
    await it.return?.(undefined)
  }
  return { files, bytes }
}
