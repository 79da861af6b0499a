/**
 * The serving side every Holdfast protocol shares, written once: register and unregister the
 * handler, ask the peer gate, give the exchange its deadline (and idle deadline), and turn any
 * failure into the protocol's typed error frame so the client learns why. A protocol declares
 * its id, its limits as data and its handler; nothing here throws into libp2p.
 */
import type { Connection, Stream } from '@libp2p/interface'
import { HoldfastError } from '../util/errors.js'
import type { Logger } from '../util/log.js'
import { systemClock, type Clock } from '../util/clock.js'
import { FrameReader, writeFrame } from './framing.js'
import { deadline, encodeJson, errorMessage, IdleDeadline, runExchange, type PeerGate, type ProtocolHost } from './exchange.js'

export interface ServiceLimits {
  /** Streams a remote may have open on this protocol at once (libp2p refuses more). */
  maxInboundStreams: number
  /** Streams this node may open on this protocol at once. */
  maxOutboundStreams: number
  /**
   * Exchanges one remote peer may have running at once, over all its connections (libp2p's
   * stream limits count per connection, and a peer can open several). Default: maxInboundStreams.
   */
  maxStreamsPerPeer?: number
  /** Deadline for one whole exchange. */
  timeoutMs: number
  /** If set, the exchange fails when the handler goes this long without `touch()`. */
  idleTimeoutMs?: number
  /** Largest error frame the protocol's client accepts; the message is cut to fit. */
  maxErrorFrameBytes: number
}

/** What a handler gets for one inbound stream. */
export interface Exchange {
  stream: Stream
  /** Frames from the remote; made before anything is read, so no data is missed. */
  reader: FrameReader
  /** The remote's peer id, already let through the gate. */
  remote: string
  /** The remote's IP address as the connection has it ('' when it is not an IP connection). */
  remoteIp: string
  /** The exchange's deadline (not the idle one): pass it to every write and close. */
  signal: AbortSignal
  /** Pushes the idle deadline back (a no-op when the protocol has none). */
  touch: () => void
  log: Logger
}

export interface ServiceSpec {
  protocol: string
  /** Short name for logs and error messages: 'fetch', 'ack'… */
  name: string
  limits: ServiceLimits
  /** The message a refused peer is sent with PEER_NOT_ALLOWED. */
  refusal: string
  /** Frames an error payload for this protocol (fetch prefixes 0xFF); default: the bare JSON. */
  errorFrame?: (json: Uint8Array) => Uint8Array
  /**
   * Serves one exchange. Throwing is the way to fail: the helper sends the error frame and
   * ends the stream. On success the handler has ended its side of the stream itself.
   */
  handle: (exchange: Exchange) => Promise<void>
}

export interface ServiceInit {
  allow: PeerGate
  log: Logger
  /** Times the grace before a stream that is still being written to is reset. */
  clock?: Clock
}

/**
 * How long an error frame may take to leave, and how long a remote still sending (a restore
 * push) gets to stop before the stream is reset: without the reset it would block on a full
 * window until its own idle timeout.
 */
const ERROR_GRACE_MS = 2000

/** Registers `spec` on `host`; start and stop are idempotent. */
export class ProtocolService {
  private started = false
  /** Running exchanges by remote peer id; an entry is removed when its count drops to zero. */
  private readonly perPeer = new Map<string, number>()

  constructor (private readonly host: ProtocolHost, private readonly spec: ServiceSpec, private readonly init: ServiceInit) {}

  async start (): Promise<void> {
    if (this.started) return
    const { maxInboundStreams, maxOutboundStreams } = this.spec.limits
    await this.host.handle(this.spec.protocol, (stream, connection) => { void this.onStream(stream, connection) }, { maxInboundStreams, maxOutboundStreams })
    this.started = true
  }

  async stop (): Promise<void> {
    if (!this.started) return
    await this.host.unhandle(this.spec.protocol)
    this.started = false
  }

  private async onStream (stream: Stream, connection: Connection): Promise<void> {
    const { name, limits } = this.spec
    const remote = connection.remotePeer.toString()
    const log = this.init.log.child(`${name}:${remote.slice(-8)}`)
    // made before any await, so nothing the remote sends early is lost
    const reader = new FrameReader(stream)
    try {
      if (!this.init.allow(remote)) {
        log.warn(`refused ${name} from a peer that is not an allowed manager`)
        await this.answerWithError(stream, new HoldfastError('PEER_NOT_ALLOWED', this.spec.refusal), AbortSignal.timeout(ERROR_GRACE_MS))
        return
      }
      const running = this.perPeer.get(remote) ?? 0
      if (running >= (limits.maxStreamsPerPeer ?? limits.maxInboundStreams)) {
        log.warn(`refused a ${name} stream: the peer already has ${running} running`)
        await this.answerWithError(stream, new HoldfastError('TOO_MANY_STREAMS', `at most ${running} ${name} exchanges at once per peer`), AbortSignal.timeout(ERROR_GRACE_MS))
        return
      }
      this.perPeer.set(remote, running + 1)
      try {
        await this.serveExchange(stream, reader, remote, remoteIpOf(connection), log)
      } finally {
        const left = (this.perPeer.get(remote) ?? 1) - 1
        if (left <= 0) this.perPeer.delete(remote)
        else this.perPeer.set(remote, left)
      }
    } catch (err) {
      // runExchange has already reset the stream; a handler must never throw into libp2p
      log.debug(`${name} exchange failed`, { err: String(err) })
    }
  }

  private async serveExchange (stream: Stream, reader: FrameReader, remote: string, remoteIp: string, log: Logger): Promise<void> {
    const { name, limits } = this.spec
    const signal = deadline(limits.timeoutMs)
    const idle = limits.idleTimeoutMs === undefined ? undefined : new IdleDeadline(limits.idleTimeoutMs, signal)
    const watched = idle?.signal ?? signal
    try {
      await runExchange(stream, watched, name, async () => {
        try {
          await this.spec.handle({ stream, reader, remote, remoteIp, signal, touch: () => { idle?.touch() }, log })
        } catch (err) {
          // past the deadline runExchange resets the stream: there is no one left to tell
          if (watched.aborted) throw err
          log.info(`${name} failed; answered with an error frame`, { err: String(err) })
          await this.answerWithError(stream, err, signal)
        }
      })
    } finally {
      idle?.clear()
    }
  }

  /**
   * Sends the typed error frame, then ends our side cleanly (a reset could overtake the frame).
   * A remote still sending gets a grace to stop, then the stream is reset.
   */
  private async answerWithError (stream: Stream, err: unknown, signal: AbortSignal): Promise<void> {
    const limit = AbortSignal.any([signal, AbortSignal.timeout(ERROR_GRACE_MS)])
    try {
      await writeFrame(stream, this.errorFrame(err), limit)
      await stream.close({ signal: limit })
    } catch (writeErr) {
      stream.abort(err instanceof Error ? err : new HoldfastError('ABORTED', String(writeErr)))
      return
    }
    if (stream.remoteWriteStatus === 'writable') {
      const clock = this.init.clock ?? systemClock
      void clock.sleep(ERROR_GRACE_MS).then(() => {
        if (stream.status === 'open' || stream.status === 'closing') stream.abort(new HoldfastError('ABORTED', `${this.spec.name}: the remote kept sending after the error frame`))
      }, () => {})
    }
  }

  private errorFrame (err: unknown): Uint8Array {
    const wrap = this.spec.errorFrame ?? ((json: Uint8Array) => json)
    const message = errorMessage(err)
    // The code always fits; a long message is halved until the frame is under the client's
    // limit (bytes, not characters: escapes and UTF-8 make them differ). Bounded: 32 halvings
    // empty any string.
    for (let i = 0; ; i++) {
      try {
        return wrap(encodeJson(message, this.spec.limits.maxErrorFrameBytes - 1))
      } catch (tooLarge) {
        if (i >= 32 || message.error.message.length === 0) throw tooLarge
        message.error.message = message.error.message.slice(0, Math.floor(message.error.message.length / 2))
      }
    }
  }
}

/** The IP in a connection's remote multiaddr (/ip4/… or /ip6/…), or ''. */
function remoteIpOf (connection: Connection): string {
  // a test double may have no address at all
  const addr = (connection as { remoteAddr?: { toString: () => string } }).remoteAddr?.toString() ?? ''
  return /^\/ip[46]\/([^/]+)/.exec(addr)?.[1] ?? ''
}
