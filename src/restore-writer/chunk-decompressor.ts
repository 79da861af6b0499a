/**
 * Verifies stored chunks (zstd decompress bounded by the declared length, then SHA-256 against
 * the id) with one kept zstd decompression context and one output buffer, for a restore writer
 * that verifies tens of thousands of chunks in a row.
 *
 * Why: node:zlib's zstdDecompressSync builds and frees a whole zstd engine (and its window
 * buffer) on every call, and gathers its output in 64 KiB pieces it then concatenates. In the
 * restore's writer threads that was half of their zstd time, and the multi-megabyte
 * malloc/free churn per chunk kept each thread's glibc arena large. Like the compression side
 * (codec/chunk-compressor.ts) this drives the stream's native handle with the call
 * zstdDecompressSync makes (node's processChunkSync), minus the close, resetting the session
 * before each chunk so nothing of one chunk can leak into the next.
 *
 * That handle is node-internal. If its shape is not there (another Node), or a chunk does not
 * come out as exactly one complete frame of its declared length, the chunk is verified again by
 * codec/chunk-codec.ts's verifyChunk, which gives the authoritative answer (the same plaintext
 * or the same error); a context that reported an error is dropped and a new one made.
 *
 * The lead folds this together with src/codec/chunk-decompressor.ts (branch wt-pull) when both
 * are in.
 */
import { createHash } from 'node:crypto'
import { constants, ZstdDecompress } from 'node:zlib'
import { checkRawLength, verifyChunk } from '../codec/chunk-codec.js'
import { HoldfastError } from '../util/errors.js'
import { toHex } from '../model/entry.js'

interface NativeZstdHandle {
  writeSync: (flush: number, input: Uint8Array, inOff: number, inLen: number, out: Uint8Array, outOff: number, outLen: number) => void
  reset: () => void
}

interface Engine { stream: ZstdDecompress, handle: NativeZstdHandle, state: Uint32Array }

export class ChunkVerifier {
  private engine?: Engine
  /** Output: one byte more than the largest chunk so far, so a frame longer than declared shows. */
  private out: Buffer = Buffer.allocUnsafe(64 * 1024)
  private broken = false

  /** Whether chunks go through one kept context (false: verifyChunk per chunk). */
  get reusable (): boolean { return this.engine !== undefined || this.open() !== undefined }

  /**
   * The verified plaintext of chunk `id`: a view of an internal buffer, valid until the next
   * call (write it before verifying the next chunk). Throws CHUNK_TOO_LARGE or
   * CHUNK_HASH_MISMATCH as verifyChunk does.
   */
  verifyView (id: Uint8Array, compressed: Uint8Array, rawLength: number): Buffer {
    // checked before zstd runs: the output is bounded by rawLength, so rawLength needs a bound
    checkRawLength(rawLength)
    const plain = this.decompress(compressed, rawLength)
    if (plain === undefined) return verifyChunk(id, compressed, rawLength)
    const actual = createHash('sha256').update(plain).digest()
    if (!actual.equals(id)) throw new HoldfastError('CHUNK_HASH_MISMATCH', `chunk ${toHex(id)} hashes to ${toHex(actual)}`)
    return plain
  }

  close (): void {
    if (this.engine !== undefined) this.discard(this.engine)
  }

  /** Exactly `rawLength` bytes from one complete frame, or undefined (the caller falls back). */
  private decompress (compressed: Uint8Array, rawLength: number): Buffer | undefined {
    const engine = this.engine ?? this.open()
    if (engine === undefined) return undefined
    if (this.out.byteLength < rawLength + 1) this.out = Buffer.allocUnsafe(rawLength + 1)
    engine.handle.reset()
    engine.handle.writeSync(constants.ZSTD_e_end, compressed, 0, compressed.byteLength, this.out, 0, rawLength + 1)
    // node closes the handle (synchronously) when zstd reports an error, e.g. a truncated frame
    if (engine.stream.destroyed) { this.discard(engine); return undefined }
    const availOut = engine.state[0]
    const availIn = engine.state[1]
    // all input used and exactly rawLength bytes out; anything else (a second frame, a longer
    // or shorter output) is left to verifyChunk, which reports it as zstdDecompressSync would
    if (availIn !== 0 || availOut !== 1) return undefined
    return this.out.subarray(0, rawLength)
  }

  private open (): Engine | undefined {
    if (this.broken) return undefined
    const stream = new ZstdDecompress()
    const internals = stream as unknown as { _handle?: unknown, _writeState?: unknown }
    const handle = internals._handle as Partial<NativeZstdHandle> | null | undefined
    const state = internals._writeState
    if (handle === null || handle === undefined || typeof handle.writeSync !== 'function' || typeof handle.reset !== 'function' || !(state instanceof Uint32Array) || state.length < 2) {
      this.broken = true
      stream.destroy()
      return undefined
    }
    // the native side's errors come as an 'error' event on a later tick: the call that caused
    // one sees the stream destroyed instead, and the event needs a listener
    stream.on('error', () => {})
    this.engine = { stream, handle: handle as NativeZstdHandle, state }
    return this.engine
  }

  private discard (engine: Engine): void {
    if (this.engine === engine) this.engine = undefined
    engine.stream.destroy()
  }
}
