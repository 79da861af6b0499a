/**
 * Free space where the spool lives. Staging stops at a reserve so that backing up never
 * fills the endpoint's disk (the spool cap alone does not: its floor ignores free space).
 * An interface so tests can stand in for a small file system where they cannot mount one.
 */
import { statfsSync } from 'node:fs'

export interface FreeSpace {
  /** Bytes an unprivileged process may still write. */
  availBytes: number
  totalBytes: number
}

export interface FreeSpaceProbe {
  free: (dir: string) => FreeSpace
}

export const statfsProbe: FreeSpaceProbe = {
  free: (dir) => {
    const fs = statfsSync(dir)
    return { availBytes: fs.bavail * fs.bsize, totalBytes: fs.blocks * fs.bsize }
  }
}

const GiB = 1024 * 1024 * 1024

/** The configured reserve, or max(1 GiB, 5% of the file system) when 0. */
export function reserveFor (totalBytes: number, configured: number): number {
  return configured > 0 ? configured : Math.max(GiB, Math.floor(totalBytes * 0.05))
}
