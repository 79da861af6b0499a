/**
 * Writing restored data so sparse files stay sparse: shared by the restore sink (on the
 * caller's thread) and the file-writer workers.
 */
import { writeSync } from 'node:fs'

const HOLE_BLOCK = 64 * 1024
const ZEROS = Buffer.alloc(HOLE_BLOCK)

/**
 * Writes `data` at `position`, skipping 64 KiB blocks that are all zeros so they stay holes
 * (sparse files stay sparse where the filesystem allows); runs of data blocks go in one write.
 * Returns where the last byte written ends (`position` when nothing was written), so the caller
 * knows whether the file must be extended by ftruncate: a new file needs it only when it ends
 * in a hole.
 */
export function writeSparse (fd: number, bytes: Uint8Array, position: number): number {
  const data = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let runStart = -1
  let dataEnd = position
  const flush = (end: number): void => {
    if (runStart < 0) return
    let written = 0
    while (written < end - runStart) written += writeSync(fd, data, runStart + written, end - runStart - written, position + runStart + written)
    dataEnd = position + end
    runStart = -1
  }
  for (let off = 0; off < data.byteLength; off += HOLE_BLOCK) {
    const end = Math.min(data.byteLength, off + HOLE_BLOCK)
    const zero = data.subarray(off, end).equals(ZEROS.subarray(0, end - off))
    if (zero) flush(off)
    else if (runStart < 0) runStart = off
  }
  flush(data.byteLength)
  return dataEnd
}

/**
 * Seconds as the double Node's utimes takes. Whole seconds and the fraction are converted
 * separately so the only loss is the double's own resolution (≈ 0.24 µs today).
 */
export function secondsOf (ns: bigint): number {
  return Number(ns / 1_000_000_000n) + Number(ns % 1_000_000_000n) / 1e9
}
