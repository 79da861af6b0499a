/**
 * How chunk data is packed for spool, wire and store: zstd-compressed plaintext (node:zlib).
 * A chunk's id is the SHA-256 of its plaintext, so whoever receives compressed bytes can
 * prove they are the chunk that was asked for.
 */
import { createHash } from 'node:crypto'
import { constants, zstdCompressSync, zstdDecompressSync } from 'node:zlib'
import { HoldfastError } from '../util/errors.js'
import { toHex } from '../model/entry.js'
import { DEFAULT_CHUNKER } from '../chunking/fastcdc.js'

export const ZSTD_LEVEL = 3

/**
 * The largest plaintext a chunk can have (the chunker's maximum). A declared length is the
 * sender's word; nothing is decompressed for a chunk that claims more than this.
 */
export const MAX_CHUNK_BYTES = DEFAULT_CHUNKER.maxSize

/** Throws CHUNK_TOO_LARGE unless `rawLength` is a length a chunk can have. */
export function checkRawLength (rawLength: number): void {
  if (!Number.isSafeInteger(rawLength) || rawLength < 0 || rawLength > MAX_CHUNK_BYTES) {
    throw new HoldfastError('CHUNK_TOO_LARGE', `chunk declares ${rawLength} plaintext bytes; the maximum is ${MAX_CHUNK_BYTES}`, { rawLength, max: MAX_CHUNK_BYTES })
  }
}

export function chunkId (plain: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(plain).digest())
}

export function compressChunk (plain: Uint8Array, level = ZSTD_LEVEL): Buffer {
  return zstdCompressSync(plain, { params: { [constants.ZSTD_c_compressionLevel]: level } })
}

export function decompressChunk (compressed: Uint8Array, rawLength: number): Buffer {
  // checked before zstd runs: its output is bounded by rawLength, so rawLength needs a bound
  checkRawLength(rawLength)
  try {
    // maxOutputLength bounds memory against a zstd bomb from a hostile sender
    return zstdDecompressSync(compressed, { maxOutputLength: Math.max(rawLength, 1) })
  } catch (err) {
    throw new HoldfastError('CHUNK_HASH_MISMATCH', 'chunk data does not decompress', {}, { cause: err })
  }
}

/** Decompresses and re-hashes; throws CHUNK_HASH_MISMATCH unless the bytes are the chunk `id`. */
export function verifyChunk (id: Uint8Array, compressed: Uint8Array, rawLength: number): Buffer {
  const plain = decompressChunk(compressed, rawLength)
  if (plain.byteLength !== rawLength) {
    throw new HoldfastError('CHUNK_HASH_MISMATCH', `chunk ${toHex(id)} has ${plain.byteLength} bytes, expected ${rawLength}`)
  }
  const actual = chunkId(plain)
  if (!Buffer.from(actual).equals(Buffer.from(id))) {
    throw new HoldfastError('CHUNK_HASH_MISMATCH', `chunk ${toHex(id)} hashes to ${toHex(actual)}`)
  }
  return plain
}
