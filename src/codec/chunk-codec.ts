/**
 * How chunk data is packed for spool, wire and store: zstd-compressed plaintext (node:zlib).
 * A chunk's id is the SHA-256 of its plaintext, so whoever receives compressed bytes can
 * prove they are the chunk that was asked for.
 */
import { createHash } from 'node:crypto'
import { constants, zstdCompressSync, zstdDecompressSync } from 'node:zlib'
import { HoldfastError } from '../util/errors.js'
import { toHex } from '../model/entry.js'

export const ZSTD_LEVEL = 3

export function chunkId (plain: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(plain).digest())
}

export function compressChunk (plain: Uint8Array, level = ZSTD_LEVEL): Buffer {
  return zstdCompressSync(plain, { params: { [constants.ZSTD_c_compressionLevel]: level } })
}

export function decompressChunk (compressed: Uint8Array, rawLength: number): Buffer {
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
