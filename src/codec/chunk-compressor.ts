/**
 * A zstd compressor that keeps one compression context for many chunks, each still its own
 * complete zstd frame (chunks are deduplicated and decompressed alone).
 *
 * Why: node:zlib's zstdCompressSync builds and frees a whole zstd engine on every call. Over
 * corpus A's 78k mostly tiny chunks that was a third of the staging workers' zstd time, and the
 * churn of multi-megabyte allocations kept glibc arenas large (bench/codec-options.ts,
 * docs/benchmarks.md). node:zlib's public reusable API is the async stream, whose thread-pool
 * hop per chunk costs more than it saves. So this drives the stream's native handle with the
 * same call zstdCompressSync makes (node's processChunkSync), minus the close at the end:
 * ZSTD_e_end with the whole chunk as input, which also gives the frame its content size.
 *
 * That handle is node-internal. If its shape is not there (another Node), or it ever reports an
 * error, this falls back to zstdCompressSync, which gives the same frames; `reusable` says which
 * path is live, and a unit test pins it on the Node this project ships with.
 */
import { constants, zstdCompressSync, ZstdCompress } from 'node:zlib'

interface NativeZstdHandle {
  writeSync: (flush: number, input: Uint8Array, inOff: number, inLen: number, out: Uint8Array, outOff: number, outLen: number) => void
}

interface Engine { stream: ZstdCompress, handle: NativeZstdHandle, state: Uint32Array, error?: Error }

/** ZSTD_compressBound: the most a frame of `size` input bytes can take, whatever the data. */
export function zstdBound (size: number): number {
  return size + (size >>> 8) + (size < 128 * 1024 ? (128 * 1024 - size) >>> 11 : 0) + 64
}

export class ChunkCompressor {
  private readonly options: { params: Record<number, number> }
  private engine?: Engine
  private out: Buffer
  private broken = false

  constructor (readonly level: number, expectedMaxInput = 0) {
    this.options = { params: { [constants.ZSTD_c_compressionLevel]: level } }
    this.out = Buffer.allocUnsafe(zstdBound(expectedMaxInput))
    this.engine = this.open()
  }

  /** Whether chunks go through one kept context (false: zstdCompressSync per chunk). */
  get reusable (): boolean { return this.engine !== undefined }

  /**
   * Compresses `plain` into one zstd frame. The result is a view of an internal buffer, valid
   * until the next call: write it out or copy it before compressing again.
   */
  compressView (plain: Uint8Array): Buffer {
    const engine = this.engine ?? this.open()
    if (engine === undefined) return zstdCompressSync(plain, this.options)
    const bound = zstdBound(plain.byteLength)
    if (this.out.byteLength < bound) this.out = Buffer.allocUnsafe(bound)
    engine.handle.writeSync(constants.ZSTD_e_end, plain, 0, plain.byteLength, this.out, 0, this.out.byteLength)
    const availOut = engine.state[0]
    const availIn = engine.state[1]
    if (engine.error !== undefined || availIn !== 0 || availOut === 0) {
      // With the output at ZSTD_compressBound the frame ends in one call; anything else means
      // the context is in an unknown state: drop it and let zstdCompressSync do this chunk.
      this.discard(engine)
      return zstdCompressSync(plain, this.options)
    }
    return this.out.subarray(0, this.out.byteLength - availOut)
  }

  /** Compresses `plain` into a new buffer of its own. */
  compress (plain: Uint8Array): Buffer {
    return Buffer.from(this.compressView(plain))
  }

  close (): void {
    if (this.engine !== undefined) this.discard(this.engine)
  }

  private open (): Engine | undefined {
    if (this.broken) return undefined
    const stream = new ZstdCompress(this.options)
    const internals = stream as unknown as { _handle?: unknown, _writeState?: unknown }
    const handle = internals._handle as Partial<NativeZstdHandle> | null | undefined
    const state = internals._writeState
    if (handle === null || handle === undefined || typeof handle.writeSync !== 'function' || !(state instanceof Uint32Array) || state.length < 2) {
      this.broken = true
      stream.destroy()
      return undefined
    }
    const engine: Engine = { stream, handle: handle as NativeZstdHandle, state }
    // node reports the native side's errors as a stream 'error' event (synchronously, from
    // inside writeSync); record it so the call that caused it can fall back.
    stream.on('error', err => { engine.error = err })
    this.engine = engine
    return engine
  }

  private discard (engine: Engine): void {
    if (this.engine === engine) this.engine = undefined
    // a context that failed once is not trusted again in this process
    if (engine.error !== undefined) this.broken = true
    engine.stream.destroy()
  }
}
