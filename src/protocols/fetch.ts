/**
 * /holdfast/fetch/1 — the manager pulls a batch of chunks from an agent's spool.
 *
 *   → {v, setId, ids:[hex], rate}      (JSON frame; at most maxIdsPerRequest ids)
 *   → then, while the batch runs, {v, rate} whenever the manager's rate for the pull changes
 *     (optional: a manager that sends none closes its side after the request)
 *   ← chunk frames, one per id in request order:  0x01 | id(32) | rawLength(u32 BE) | zstd data
 *     or 0x02 | id(32) when the agent no longer holds the chunk,
 *   ← then the end frame: 0x00 | count(u32 BE)
 *   ← or at any point an error frame: 0xFF | JSON {v, error:{code,message}}
 *
 * Many chunks share one stream because opening a stream costs about a millisecond
 * (LIBP2P-NOTES.md). The agent paces its sends at the rate the manager names, and takes a new
 * rate as soon as it arrives: a batch lasts minutes at a low rate, and a share that rises when
 * another pull ends must show within a second, not at the next batch. The receiver
 * checks order, length and hash of every chunk, and a stream that ends before the end frame is
 * an error, never a short result.
 */
import type { PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { HoldfastError } from '../util/errors.js'
import type { Logger } from '../util/log.js'
import { systemClock, type Clock } from '../util/clock.js'
import { RateLimiter } from '../util/rate-limiter.js'
import { checkRawLength } from '../codec/chunk-codec.js'
import { CHUNK_ID_BYTES, fromHex, toHex } from '../model/entry.js'
import { Uint8ArrayList } from 'uint8arraylist'
import { encodeFrame, FrameBatcher, FrameReader, type ByteStream } from './framing.js'
import { arr, deadline, decodeJson, int, protocolId, readJson, runExchange, sendJson, field, WIRE_VERSION, type PeerGate, type ProtocolHost } from './exchange.js'
import { ProtocolService, type Exchange } from './service.js'
import { MinRateWatch, type MinRateLimit } from './min-rate.js'

export const FETCH_PROTOCOL = protocolId('fetch')

export const FETCH_LIMITS = Object.freeze({
  maxIdsPerRequest: 4096,
  maxRequestBytes: 4096 * 70 + 1024,
  /** Largest chunk (4 MiB) plus zstd's worst-case expansion and the frame's own header. */
  maxChunkFrameBytes: 4 * 1024 * 1024 + 64 * 1024 + 64,
  /** Deadline for one batch: generous, since a batch at a low rate can take minutes. */
  timeoutMs: 30 * 60_000,
  /** The stream fails if no frame arrives for this long. */
  idleTimeoutMs: 60_000,
  /** A rate update frame ({v, rate}). */
  maxRateUpdateBytes: 256,
  /** Rate updates one batch may carry; later ones are ignored (a bound, not a real limit). */
  maxRateUpdates: 100_000,
  /** How often the client looks whether the pull's rate changed. */
  rateCheckMs: 100,
  /** How long the agent waits, after its end frame, for the manager to close its side. */
  closeGraceMs: 10_000,
  /**
   * A reply slower than max(16 KiB/s, 10% of the asked rate) over 20 s of waiting is cut with
   * TRANSFER_TOO_SLOW: a drip-feeding agent must not hold a pull slot and the store for the
   * whole batch deadline (min-rate.ts).
   */
  minRate: Object.freeze({ windowMs: 20_000, floorBytesPerSecond: 16 * 1024, fractionOfAsked: 0.1 }),
  /** Fetch streams one manager may have open on an agent at once, over all its connections. */
  maxStreamsPerPeer: 8,
  /** Fetch streams an agent serves at once, whoever asks. */
  maxInboundStreams: 8
})

/**
 * Paced sends go out in pieces of about 1/20 s of traffic (4-64 KiB), each after its tokens:
 * a 1 MiB chunk at a 250 KB/s share is then four seconds of steady flow, not a burst and a
 * silence, and a new rate applies from the next piece.
 */
function paceStep (rate: number): number { return Math.max(4 * 1024, Math.min(64 * 1024, Math.floor(rate / 20))) }

const FRAME_CHUNK = 0x01
const FRAME_MISSING = 0x02
const FRAME_END = 0x00
const FRAME_ERROR = 0xff

export interface SpooledChunk {
  rawLength: number
  compressed: Uint8Array
}

/** What the agent provides to serve chunks. */
export interface ChunkSource {
  readChunk: (id: Uint8Array) => Promise<SpooledChunk | null>
  /**
   * A whole batch, yielded in the order of `ids` (null: not held), if the source can do
   * better than one readChunk per id (the spool: one lookup per batch, one read per run of
   * neighbouring chunks). A failure is thrown at the position of the chunk it concerns.
   */
  readChunks?: (ids: Uint8Array[], signal?: AbortSignal) => AsyncIterable<SpooledChunk | null>
}

async function * oneByOne (source: ChunkSource, ids: Uint8Array[]): AsyncGenerator<SpooledChunk | null> {
  for (const id of ids) yield await source.readChunk(id)
}

export interface FetchRequest {
  setId: number
  ids: Uint8Array[]
  /** Bytes per second the agent may send at; 0 means unlimited. */
  rate: number
}

function requestFromWire (r: Record<string, unknown>): FetchRequest {
  const ids = arr(r, 'ids', FETCH_LIMITS.maxIdsPerRequest).map(v => {
    field(typeof v === 'string' && /^[0-9a-f]{64}$/.test(v), 'ids', v)
    return fromHex(v as string)
  })
  return { setId: int(r, 'setId', 0), ids, rate: int(r, 'rate', 0) }
}

export interface FetchServiceInit {
  source: ChunkSource
  allow: PeerGate
  log: Logger
  clock: Clock
  /** The agent's own ceiling on upload rate, whatever the manager asks (0 = none). */
  maxRate?: number
}

export class FetchService {
  private readonly service: ProtocolService

  constructor (host: ProtocolHost, private readonly init: FetchServiceInit) {
    this.service = new ProtocolService(host, {
      protocol: FETCH_PROTOCOL,
      name: 'fetch',
      limits: { maxInboundStreams: FETCH_LIMITS.maxInboundStreams, maxOutboundStreams: FETCH_LIMITS.maxInboundStreams, maxStreamsPerPeer: FETCH_LIMITS.maxStreamsPerPeer, timeoutMs: FETCH_LIMITS.timeoutMs, maxErrorFrameBytes: FETCH_LIMITS.maxChunkFrameBytes },
      refusal: 'this agent serves only its pinned manager',
      // every reply frame starts with its type, so an error is `0xFF | JSON`, never bare JSON
      errorFrame: json => concat([FRAME_ERROR], json),
      handle: async exchange => { await this.serve(exchange) }
    }, init)
  }

  async start (): Promise<void> { await this.service.start() }
  async stop (): Promise<void> { await this.service.stop() }

  private async serve ({ stream, reader, signal }: Exchange): Promise<void> {
    const request = await readJson(reader, FETCH_LIMITS.maxRequestBytes, 'the fetch request', requestFromWire)
    const ceiling = this.init.maxRate ?? 0
    const pacer = new Pacer(effectiveRate(request.rate, ceiling), this.init.clock)
    // The manager may name new rates while the batch runs; the stream's read side carries
    // nothing else. An old manager closes its side after the request: the loop ends at once.
    const updates = (async () => {
      for (let n = 0; n < FETCH_LIMITS.maxRateUpdates; n++) {
        const frame = await reader.next(FETCH_LIMITS.maxRateUpdateBytes)
        if (frame === null) return
        pacer.setRate(effectiveRate(decodeJson(frame, r => int(r, 'rate', 0)), ceiling))
      }
    })()
    // the stream ending or failing under it is the main loop's business, not this one's
    updates.catch(() => {})
    // Unpaced, pack frames into sends of 256 KiB; paced, the pacer cuts them to its step.
    const batcher = new FrameBatcher(stream, 256 * 1024)
    const send = async (frame: Uint8Array): Promise<void> => {
      if (!pacer.paced) { await pacer.flush(stream, signal); await batcher.push(frame, signal); return }
      await batcher.flush(signal)
      await pacer.send(stream, encodeFrame(frame), signal)
    }
    let count = 0
    const source = this.init.source
    for await (const chunk of source.readChunks?.(request.ids, signal) ?? oneByOne(source, request.ids)) {
      const id = request.ids[count]
      if (chunk === null) {
        await send(concat([FRAME_MISSING], id))
      } else {
        const frame = new Uint8Array(1 + CHUNK_ID_BYTES + 4 + chunk.compressed.byteLength)
        frame[0] = FRAME_CHUNK
        frame.set(id, 1)
        new DataView(frame.buffer).setUint32(1 + CHUNK_ID_BYTES, chunk.rawLength, false)
        frame.set(chunk.compressed, 1 + CHUNK_ID_BYTES + 4)
        await send(frame)
      }
      count++
    }
    const end = new Uint8Array(5)
    new DataView(end.buffer).setUint32(1, count, false)
    end[0] = FRAME_END
    await send(end)
    await batcher.flush(signal)
    await pacer.flush(stream, signal)
    await stream.close({ signal })
    // The manager closes its side once it has the end frame (one round trip); a manager that
    // does not is cut after a grace, so no update reader outlives its batch.
    const grace = new AbortController()
    const ended = await Promise.race([
      updates.then(() => true, () => true),
      this.init.clock.sleep(FETCH_LIMITS.closeGraceMs, grace.signal).then(() => false, () => true)
    ])
    grace.abort()
    if (!ended) stream.abort(new HoldfastError('TIMEOUT', `fetch: the manager kept its side open ${FETCH_LIMITS.closeGraceMs} ms after the end frame`))
  }
}

/**
 * The agent's side of pacing: a token bucket whose rate the manager may change mid-batch, and
 * sends cut into steps so that no step goes out before its tokens. Small frames (a missing
 * chunk, the end frame) wait in a buffer until a step is full or the batch ends.
 */
class Pacer {
  private limiter?: RateLimiter
  private readonly pending = new Uint8ArrayList()

  constructor (rate: number, private readonly clock: Clock) { this.setRate(rate) }

  get paced (): boolean { return this.limiter !== undefined }

  setRate (rate: number): void {
    if (rate <= 0) { this.limiter = undefined; return }
    if (this.limiter === undefined) this.limiter = new RateLimiter(rate, this.clock)
    else this.limiter.setRate(rate)
  }

  async send (stream: ByteStream, parts: Uint8Array[], signal: AbortSignal): Promise<void> {
    for (const p of parts) this.pending.append(p)
    for (;;) {
      const limiter = this.limiter
      const step = limiter === undefined ? this.pending.byteLength : paceStep(limiter.rate)
      if (this.pending.byteLength < step || step === 0) return
      await this.sendStep(stream, step, signal)
    }
  }

  async flush (stream: ByteStream, signal: AbortSignal): Promise<void> {
    if (this.pending.byteLength > 0) await this.sendStep(stream, this.pending.byteLength, signal)
  }

  private async sendStep (stream: ByteStream, bytes: number, signal: AbortSignal): Promise<void> {
    const out = this.pending.sublist(0, bytes)
    this.pending.consume(bytes)
    await this.limiter?.take(bytes, signal)
    if (!stream.send(out)) await stream.onDrain({ signal })
  }
}

/** The rate the agent sends at: what the manager asks, never above the agent's own ceiling. */
export function effectiveRate (asked: number, ceiling: number): number {
  if (ceiling <= 0) return asked
  if (asked <= 0) return ceiling
  return Math.min(asked, ceiling)
}

function concat (a: ArrayLike<number>, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.byteLength)
  out.set(a, 0)
  out.set(b, a.length)
  return out
}

export interface FetchedChunk {
  id: Uint8Array
  rawLength: number
  compressed: Uint8Array
}

export interface FetchOptions {
  signal?: AbortSignal
  timeoutMs?: number
  /**
   * The pull's current rate, looked at every rateCheckMs while the batch runs; a change is
   * sent to the agent at once. Without it the request's rate holds for the whole batch.
   */
  rate?: { current: () => number, clock: Clock }
  /** Times the minimum-rate window (default: the system clock). */
  clock?: Clock
  /** Only for tests and benchmarks: FETCH_LIMITS.minRate is the limit. */
  minRate?: MinRateLimit
}

export class FetchClient {
  constructor (private readonly host: ProtocolHost) {}

  /**
   * Yields the chunks of one batch in request order. Throws CHUNK_MISSING when the agent no
   * longer holds one, STREAM_ENDED_EARLY when the stream ends before the end frame,
   * FRAME_MALFORMED when the agent answers out of order. Hash checks are the caller's (they
   * cost CPU the caller may want to spend elsewhere), see verifyChunk.
   */
  async * fetch (peer: PeerId | Multiaddr | Multiaddr[], request: FetchRequest, options: FetchOptions = {}): AsyncGenerator<FetchedChunk> {
    if (request.ids.length > FETCH_LIMITS.maxIdsPerRequest) throw new RangeError(`at most ${FETCH_LIMITS.maxIdsPerRequest} ids per request`)
    const signal = deadline(options.timeoutMs ?? FETCH_LIMITS.timeoutMs, options.signal)
    const stream = await this.host.dialProtocol(peer, FETCH_PROTOCOL, { signal })
    const reader = new FrameReader(stream)
    const live = options.rate
    let sentRate = Math.floor(request.rate)
    await runExchange(stream, signal, 'fetch request', async () => {
      await sendJson(stream, { v: WIRE_VERSION, setId: request.setId, ids: request.ids.map(toHex), rate: sentRate }, FETCH_LIMITS.maxRequestBytes, signal)
      // with no rate to follow our side has nothing more to say
      if (live === undefined) await stream.close({ signal })
    })
    // Follows the pull's rate while the batch runs (bounded by the batch: stopped below).
    const stopUpdates = new AbortController()
    const updates = live === undefined
      ? Promise.resolve()
      : (async () => {
          const stop = AbortSignal.any([signal, stopUpdates.signal])
          while (!stop.aborted) {
            await live.clock.sleep(FETCH_LIMITS.rateCheckMs, stop)
            const now = Math.floor(live.current())
            if (now === sentRate) continue
            sentRate = now
            await sendJson(stream, { v: WIRE_VERSION, rate: now }, FETCH_LIMITS.maxRateUpdateBytes, stop)
          }
        })()
    // an aborted sleep or a write to a stream that failed under us ends the updates; the
    // replies' reader reports what went wrong
    updates.catch(() => {})
    const finishUpdates = async (): Promise<void> => {
      stopUpdates.abort()
      await updates.catch(() => {})
    }
    let index = 0
    // One idle timer, pushed back on every frame (a new signal per frame costs more than the frame).
    const idleController = new AbortController()
    const idleTimer = setTimeout(() => { idleController.abort(new DOMException(`no frame for ${FETCH_LIMITS.idleTimeoutMs} ms`, 'TimeoutError')) }, FETCH_LIMITS.idleTimeoutMs)
    const watch = new MinRateWatch(options.minRate ?? FETCH_LIMITS.minRate, request.rate, options.clock ?? systemClock, `fetch of ${request.ids.length} chunks`)
    const idle = AbortSignal.any([signal, idleController.signal, watch.signal])
    try {
      for (;;) {
        idleTimer.refresh()
        const frame = await runExchange(stream, idle, 'fetch reply', async () => await reader.expect(FETCH_LIMITS.maxChunkFrameBytes, `the end frame (after ${index} of ${request.ids.length} chunks)`))
        watch.observe(frame.byteLength + 4)
        const kind = frame[0]
        if (kind === FRAME_END) {
          const count = frame.byteLength >= 5 ? new DataView(frame.buffer, frame.byteOffset, frame.byteLength).getUint32(1, false) : -1
          if (count !== request.ids.length || index !== request.ids.length) {
            throw new HoldfastError('FRAME_MALFORMED', `end frame after ${index} chunks says ${count}; ${request.ids.length} were asked for`)
          }
          if (live !== undefined) {
            await finishUpdates()
            await stream.close({ signal })
          }
          return
        }
        if (kind === FRAME_ERROR) {
          decodeJson(frame.subarray(1), () => null)
          throw new HoldfastError('FRAME_MALFORMED', 'error frame without an error')
        }
        if (kind !== FRAME_CHUNK && kind !== FRAME_MISSING) throw new HoldfastError('FRAME_MALFORMED', `unknown fetch frame type ${String(kind)}`)
        if (frame.byteLength < 1 + CHUNK_ID_BYTES) throw new HoldfastError('FRAME_MALFORMED', 'fetch frame too short for a chunk id')
        const id = frame.subarray(1, 1 + CHUNK_ID_BYTES)
        const expected = request.ids[index]
        if (expected === undefined || !Buffer.from(id).equals(Buffer.from(expected))) {
          throw new HoldfastError('FRAME_MALFORMED', `chunk ${index} is ${toHex(id)}, not the one asked for`)
        }
        if (kind === FRAME_MISSING) throw new HoldfastError('CHUNK_MISSING', `agent no longer holds chunk ${toHex(id)}`, { id: toHex(id) })
        if (frame.byteLength < 1 + CHUNK_ID_BYTES + 4) throw new HoldfastError('FRAME_MALFORMED', 'chunk frame too short')
        const rawLength = new DataView(frame.buffer, frame.byteOffset, frame.byteLength).getUint32(1 + CHUNK_ID_BYTES, false)
        // refused here, before anyone decompresses by it (the agent's word is not a bound)
        checkRawLength(rawLength)
        index++
        // the caller's own work (verifying, pacing) is not the agent's slowness
        watch.away()
        yield { id: expected, rawLength, compressed: frame.subarray(1 + CHUNK_ID_BYTES + 4) }
        watch.back()
      }
    } catch (err) {
      // the typed reason, not runExchange's generic ABORTED: the caller backs the peer off for it
      const cause = watch.reason ?? err
      stream.abort(cause instanceof Error ? cause : new HoldfastError('ABORTED', String(cause)))
      throw cause
    } finally {
      clearTimeout(idleTimer)
      // also when the consumer stops early (a generator's return): no update outlives its batch
      await finishUpdates()
      watch.stop()
    }
  }
}
