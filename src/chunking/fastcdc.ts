/**
 * FastCDC content-defined chunking (Xia et al., 2016) with normalized chunking.
 *
 * A 32-bit gear hash rolls over the input; because each step shifts left, bit k of the hash
 * depends on the last k+1 bytes, so the masks test the *top* bits to get a 32-byte window.
 * Before the average size a harder mask (more bits) applies, after it an easier one, which
 * pulls chunk sizes towards the average. Cut points depend only on content, so an insertion
 * in the middle of a file changes the chunks around it and no others.
 */
export interface ChunkerParams {
  minSize: number
  avgSize: number
  maxSize: number
}

export const DEFAULT_CHUNKER: ChunkerParams = Object.freeze({
  minSize: 256 * 1024,
  avgSize: 1024 * 1024,
  maxSize: 4 * 1024 * 1024
})

/** The gear table is part of the on-disk format: changing it changes every chunk id boundary. */
export const GEAR: Uint32Array = buildGearTable(0x486f6c64) // "Hold"

function buildGearTable (seed: number): Uint32Array {
  // xorshift32: deterministic, no dependency, good enough spread for a gear table
  const table = new Uint32Array(256)
  let x = seed >>> 0
  for (let i = 0; i < 256; i++) {
    x ^= x << 13; x >>>= 0
    x ^= x >>> 17
    x ^= x << 5; x >>>= 0
    table[i] = x
  }
  return table
}

function topBitsMask (bits: number): number {
  return bits >= 32 ? 0xffffffff : (~((1 << (32 - bits)) - 1)) >>> 0
}

export function validateParams (p: ChunkerParams): void {
  if (!(p.minSize > 0 && p.minSize <= p.avgSize && p.avgSize <= p.maxSize)) {
    throw new RangeError(`chunker sizes must satisfy 0 < min <= avg <= max (got ${p.minSize}/${p.avgSize}/${p.maxSize})`)
  }
}

export class FastCdc {
  readonly params: ChunkerParams
  private readonly maskS: number
  private readonly maskL: number

  constructor (params: ChunkerParams = DEFAULT_CHUNKER) {
    validateParams(params)
    this.params = params
    const bits = Math.round(Math.log2(params.avgSize))
    this.maskS = topBitsMask(bits + 2)
    this.maskL = topBitsMask(bits - 2)
  }

  /**
   * Length of the next chunk of `buf` starting at `start`, looking at bytes up to `end`.
   * When `final` is false and no cut was found before `end`, returns -1: the caller must
   * supply more data (at least up to start + maxSize) before asking again.
   */
  cut (buf: Uint8Array, start: number, end: number, final: boolean): number {
    const { minSize, avgSize, maxSize } = this.params
    const available = end - start
    if (available <= minSize) return final ? available : (available >= maxSize ? maxSize : -1)
    const limit = Math.min(available, maxSize)
    const normal = Math.min(avgSize, limit)
    const maskS = this.maskS
    const maskL = this.maskL
    let hash = 0
    let i = minSize
    for (; i < normal; i++) {
      hash = ((hash << 1) + GEAR[buf[start + i]]) >>> 0
      if ((hash & maskS) === 0) return i + 1
    }
    for (; i < limit; i++) {
      hash = ((hash << 1) + GEAR[buf[start + i]]) >>> 0
      if ((hash & maskL) === 0) return i + 1
    }
    if (limit === maxSize) return maxSize
    return final ? available : -1
  }

  /** All chunk lengths of a complete buffer (for tests and small inputs). */
  chunkLengths (buf: Uint8Array): number[] {
    const out: number[] = []
    let pos = 0
    while (pos < buf.length) {
      const len = this.cut(buf, pos, buf.length, true)
      out.push(len)
      pos += len
    }
    return out
  }
}
