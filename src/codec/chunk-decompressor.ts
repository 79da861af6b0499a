/**
 * A zstd decompressor that keeps one decompression context for many chunks, each its own
 * complete zstd frame whose plaintext length is known beforehand (the chunk's rawLength).
 *
 * Why: node:zlib's zstdDecompressSync builds and frees a whole zstd engine on every call
 * (0.9 s per verify worker over corpus A, docs/benchmarks.md). As ChunkCompressor does for
 * compression, this drives the native handle of one ZstdDecompress stream with the call
 * zstdDecompressSync makes (node's processChunkSync), minus the close at the end.
 *
 * The data is untrusted (it comes from an agent, or from a pack on disk): the output buffer
 * is rawLength + 1 bytes, so a frame that decodes to more is seen (the extra byte) without
 * writing past the bound, and one that decodes to fewer is refused too. Either way, and on
 * any native error, the context is dropped (its state is unknown) and the next chunk opens
 * a new one; a frame that ends early is reported by node as an error ("unexpected end of
 * file") because the input is given with ZSTD_e_end.
 *
 * The handle is node-internal. If its shape is not there (another Node), this falls back to
 * zstdDecompressSync with maxOutputLength = rawLength, with the same checks; `reusable`
 * says which path is live, and a unit test pins it on the Node this project ships with.
 */
import { constants, zstdDecompressSync, ZstdDecompress } from 'node:zlib'
import { HoldfastError } from '../util/errors.js'
import { MAX_CHUNK_BYTES, checkRawLength, chunkId, verifyChunk } from './chunk-codec.js'
import { toHex } from '../model/entry.js'

interface NativeZstdHandle {
  writeSync: (flush: number, input: Uint8Array, inOff: number, inLen: number, out: Uint8Array, outOff: number, outLen: number) => void
}

interface Engine { stream: ZstdDecompress, handle: NativeZstdHandle, state: Uint32Array, errorKey: symbol }

function notAChunk (message: string, cause?: unknown): HoldfastError {
  return new HoldfastError('CHUNK_HASH_MISMATCH', message, {}, cause === undefined ? undefined : { cause })
}

export class ChunkDecompressor {
  private engine?: Engine
  private out: Buffer
  private broken = false

  /** `expectedMaxRaw` sizes the output buffer up front (it grows on demand up to MAX_CHUNK_BYTES + 1). */
  constructor (expectedMaxRaw = 0) {
    this.out = Buffer.allocUnsafe(Math.min(expectedMaxRaw, MAX_CHUNK_BYTES) + 1)
    this.engine = this.open()
  }

  /** Whether chunks go through one kept context (false: zstdDecompressSync per chunk). */
  get reusable (): boolean { return this.engine !== undefined }

  /**
   * Decompresses one frame that must decode to exactly `rawLength` bytes. Throws
   * CHUNK_TOO_LARGE for a rawLength no chunk can have, CHUNK_HASH_MISMATCH for data that
   * does not decompress or decodes to another length. The result is a view of an internal
   * buffer, valid until the next call: hash it or copy it before decompressing again.
   */
  decompressView (compressed: Uint8Array, rawLength: number): Buffer {
    // checked before zstd runs: its output is bounded by rawLength, so rawLength needs a bound
    checkRawLength(rawLength)
    const engine = this.engine ?? this.open()
    if (engine === undefined) return this.fallback(compressed, rawLength)
    // one byte more than expected: a frame that decodes to more fills it, and is refused
    if (this.out.byteLength < rawLength + 1) this.out = Buffer.allocUnsafe(rawLength + 1)
    const outLen = rawLength + 1
    engine.handle.writeSync(constants.ZSTD_e_end, compressed, 0, compressed.byteLength, this.out, 0, outLen)
    const failure = (engine.stream as unknown as Record<symbol, unknown>)[engine.errorKey]
    const availOut = engine.state[0]
    const availIn = engine.state[1]
    const produced = outLen - availOut
    if (failure !== null && failure !== undefined) {
      // node has closed the handle already: it must never be written to again
      this.discard(engine)
      throw notAChunk('chunk data does not decompress', failure)
    }
    if (availIn !== 0 || produced !== rawLength) {
      // too long (the extra byte was written, or input is left over) or too short: the
      // context may be mid-frame, so it is not reused
      this.discard(engine)
      throw notAChunk(`chunk data decompresses to ${produced > rawLength || availIn !== 0 ? 'more than' : `${produced} bytes, not`} ${rawLength} bytes`)
    }
    return this.out.subarray(0, rawLength)
  }

  /** Decompresses into a new buffer of its own. */
  decompress (compressed: Uint8Array, rawLength: number): Buffer {
    return Buffer.from(this.decompressView(compressed, rawLength))
  }

  close (): void {
    if (this.engine !== undefined) this.discard(this.engine)
    this.broken = true
  }

  private fallback (compressed: Uint8Array, rawLength: number): Buffer {
    let plain: Buffer
    try {
      // maxOutputLength bounds memory against a zstd bomb from a hostile sender
      plain = zstdDecompressSync(compressed, { maxOutputLength: Math.max(rawLength, 1) })
    } catch (err) {
      throw notAChunk('chunk data does not decompress', err)
    }
    if (plain.byteLength !== rawLength) throw notAChunk(`chunk data decompresses to ${plain.byteLength} bytes, not ${rawLength} bytes`)
    return plain
  }

  private open (): Engine | undefined {
    if (this.broken) return undefined
    const stream = new ZstdDecompress()
    const internals = stream as unknown as { _handle?: unknown, _writeState?: unknown }
    const handle = internals._handle as Partial<NativeZstdHandle> | null | undefined
    const state = internals._writeState
    // node records a native error on the stream under this symbol (its 'error' event comes
    // later, on the next tick): the only synchronous way to see that a chunk failed
    const errorKey = Object.getOwnPropertySymbols(stream).find(s => s.description === 'kError')
    if (handle === null || handle === undefined || typeof handle.writeSync !== 'function' || !(state instanceof Uint32Array) || state.length < 2 || errorKey === undefined) {
      this.broken = true
      stream.destroy()
      return undefined
    }
    // the error is read from errorKey; the event must not go unhandled
    stream.on('error', () => {})
    const engine: Engine = { stream, handle: handle as NativeZstdHandle, state, errorKey }
    this.engine = engine
    return engine
  }

  private discard (engine: Engine): void {
    if (this.engine === engine) this.engine = undefined
    engine.stream.destroy()
  }
}

/**
 * Decompresses and re-hashes with a kept context; throws CHUNK_HASH_MISMATCH unless the bytes
 * are the chunk `id` (verifyChunk in chunk-codec.ts, without a new zstd engine per chunk).
 * The result is a view valid until the decompressor's next call.
 */
export function verifyChunkWith (decompressor: ChunkDecompressor, id: Uint8Array, compressed: Uint8Array, rawLength: number): Buffer {
  const plain = decompressor.decompressView(compressed, rawLength)
  const actual = chunkId(plain)
  if (!Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength).equals(Buffer.from(id.buffer, id.byteOffset, id.byteLength))) {
    throw new HoldfastError('CHUNK_HASH_MISMATCH', `chunk ${toHex(id)} hashes to ${toHex(actual)}`, { id: toHex(id) })
  }
  return plain
}

/**
 * verifyChunkWith for chunks read back from the store (restore): whatever the kept context
 * refuses is verified again by verifyChunk (zstdDecompressSync), whose answer is the one a
 * stored chunk has always had. A store written before the strict ingest may hold a frame that
 * zstdDecompressSync accepts and the strict path does not (bytes after the frame): that file
 * must still restore. Only bad chunks pay for the second look.
 */
export function verifyStoredChunkWith (decompressor: ChunkDecompressor, id: Uint8Array, compressed: Uint8Array, rawLength: number): Buffer {
  try {
    return verifyChunkWith(decompressor, id, compressed, rawLength)
  } catch (err) {
    if (err instanceof HoldfastError && err.code === 'CHUNK_HASH_MISMATCH') return verifyChunk(id, compressed, rawLength)
    throw err
  }
}
