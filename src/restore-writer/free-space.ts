/**
 * Free-space check before a restore writes anything: a restore that cannot fit says so at
 * once (RESTORE_NO_SPACE) instead of failing file by file once the disk is full. The probe is
 * injectable so a test can stand in for a small file system.
 */
import { statfsSync } from 'node:fs'
import { HoldfastError } from '../util/errors.js'

/** Bytes an unprivileged writer may still use on the file system holding `path`. */
export type FreeSpaceProbe = (path: string) => number

export const statfsFree: FreeSpaceProbe = path => {
  const s = statfsSync(path, { bigint: true })
  return Number(s.bavail * s.bsize)
}

/**
 * Throws RESTORE_NO_SPACE when `bytes` (the file bytes to write) exceed the free space at
 * `dir`. Directories, inodes and file-system overhead are not counted, and hard links and
 * holes are counted in full: a close fit may still fail later, a clear misfit never starts.
 */
export function checkFreeSpace (dir: string, bytes: number, probe: FreeSpaceProbe = statfsFree): void {
  const free = probe(dir)
  if (bytes > free) {
    throw new HoldfastError('RESTORE_NO_SPACE', `the restore needs ${bytes} bytes, ${dir} has ${free} free; nothing was written`, { bytes, free, dir })
  }
}
