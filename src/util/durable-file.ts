/**
 * Writes a small file so that a crash or power cut leaves either the old file or the new one,
 * whole: write a temporary file beside it, fsync it, rename it over the target, fsync the
 * directory. Without the fsyncs the rename can reach the disk before the data (ext4, xfs), and
 * a power cut leaves a host with an empty identity or config. Sync, because its callers (CLI
 * init/join, identity creation) are one-shot and the files are a few hundred bytes.
 */
import { closeSync, fchmodSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { basename, dirname, join } from 'node:path'

export function writeFileDurable (file: string, data: string | Uint8Array, mode: number): void {
  const dir = dirname(file)
  // pid and a random part: a temp file left by a process killed mid-write must not block a
  // later writer that happens to get the same pid (pids repeat, in a container almost surely).
  const tmp = join(dir, `${basename(file)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`)
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data
  const fd = openSync(tmp, 'wx', mode)
  try {
    try {
      // open's mode is filtered by the umask; the caller asked for exactly this mode
      fchmodSync(fd, mode)
      let off = 0
      while (off < bytes.byteLength) off += writeSync(fd, bytes, off, bytes.byteLength - off)
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    renameSync(tmp, file)
  } catch (err) {
    try { unlinkSync(tmp) } catch {}
    throw err
  }
  fsyncDir(dir)
}

/** Makes a rename (or create, unlink) in `dir` durable. */
export function fsyncDir (dir: string): void {
  const fd = openSync(dir, 'r')
  try { fsyncSync(fd) } finally { closeSync(fd) }
}
