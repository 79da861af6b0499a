/**
 * Length-prefixed frames over a libp2p stream: a 4-byte big-endian length, then the payload.
 * The length is checked against the caller's limit before a byte of payload is buffered, and a
 * stream that ends inside a frame is an error, never a short message.
 */
import { Uint8ArrayList } from 'uint8arraylist'
import { HoldfastError } from '../util/errors.js'

export const FRAME_HEADER_BYTES = 4

/** What framing needs of a stream: bytes in (async iterable), bytes out with backpressure. */
export interface ByteStream extends AsyncIterable<Uint8Array | Uint8ArrayList> {
  send: (data: Uint8Array | Uint8ArrayList) => boolean
  onDrain: (options?: { signal?: AbortSignal }) => Promise<void>
}

export function encodeFrame (payload: Uint8Array): Uint8Array[] {
  const header = new Uint8Array(FRAME_HEADER_BYTES)
  new DataView(header.buffer).setUint32(0, payload.byteLength, false)
  return [header, payload]
}

/**
 * Sends one frame as one message: header and payload in one `send`, so the muxer and Noise
 * see one message, not a 4-byte one (small Noise messages take a slow JS cipher path).
 */
export async function writeFrame (stream: ByteStream, payload: Uint8Array, signal?: AbortSignal): Promise<void> {
  if (!stream.send(new Uint8ArrayList(...encodeFrame(payload)))) await stream.onDrain({ signal })
}

/**
 * Packs many frames into few sends. Per-message costs (yamux header, Noise tag and cipher
 * call, a syscall) dominate for small chunks; a batch of up to `flushBytes` pays them once.
 */
export class FrameBatcher {
  private readonly pending = new Uint8ArrayList()

  constructor (private readonly stream: ByteStream, private readonly flushBytes = 256 * 1024) {}

  async push (payload: Uint8Array, signal?: AbortSignal): Promise<void> {
    for (const part of encodeFrame(payload)) this.pending.append(part)
    if (this.pending.byteLength >= this.flushBytes) await this.flush(signal)
  }

  async flush (signal?: AbortSignal): Promise<void> {
    if (this.pending.byteLength === 0) return
    const out = this.pending.sublist()
    this.pending.consume(this.pending.byteLength)
    if (!this.stream.send(out)) await this.stream.onDrain({ signal })
  }
}

export class FrameReader {
  private readonly buffer = new Uint8ArrayList()
  private readonly source: AsyncIterator<Uint8Array | Uint8ArrayList>
  private ended = false

  constructor (source: AsyncIterable<Uint8Array | Uint8ArrayList>) {
    this.source = source[Symbol.asyncIterator]()
  }

  /**
   * The next frame's payload, or `null` when the stream ended cleanly between frames.
   * Throws FRAME_TOO_LARGE (before buffering the payload) or FRAME_TRUNCATED.
   */
  async next (maxLength: number): Promise<Uint8Array | null> {
    if (!await this.fill(FRAME_HEADER_BYTES)) {
      if (this.buffer.byteLength === 0) return null
      throw new HoldfastError('FRAME_TRUNCATED', `stream ended inside a frame header (${this.buffer.byteLength} of ${FRAME_HEADER_BYTES} bytes)`)
    }
    const length = this.buffer.getUint32(0, false)
    if (length > maxLength) {
      throw new HoldfastError('FRAME_TOO_LARGE', `frame of ${length} bytes exceeds the limit of ${maxLength}`, { length, maxLength })
    }
    if (!await this.fill(FRAME_HEADER_BYTES + length)) {
      throw new HoldfastError('FRAME_TRUNCATED', `stream ended inside a frame (${this.buffer.byteLength - FRAME_HEADER_BYTES} of ${length} bytes)`, { length })
    }
    const payload = this.buffer.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + length)
    this.buffer.consume(FRAME_HEADER_BYTES + length)
    return payload
  }

  /** Like next(), but the stream ending is an error: the caller expected a frame. */
  async expect (maxLength: number, what: string): Promise<Uint8Array> {
    const frame = await this.next(maxLength)
    if (frame === null) throw new HoldfastError('STREAM_ENDED_EARLY', `stream ended before ${what}`)
    return frame
  }

  private async fill (bytes: number): Promise<boolean> {
    while (this.buffer.byteLength < bytes) {
      if (this.ended) return false
      const { done, value } = await this.source.next()
      if (done === true) { this.ended = true; return false }
      this.buffer.append(value)
    }
    return true
  }
}
