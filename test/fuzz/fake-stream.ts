/**
 * An in-memory stand-in for a libp2p stream and host (not a test file itself), so the fuzz
 * suites drive the real protocol clients and services with hostile bytes and no network.
 * Only what the protocol code touches is implemented: reading, send, close, abort.
 */
import type { Connection, Stream, StreamHandler } from '@libp2p/interface'
import type { ProtocolHost } from '../../src/protocols/exchange.js'
import { Uint8ArrayList } from 'uint8arraylist'

export class FakeStream {
  readonly sent: Uint8Array[] = []
  status: 'open' | 'closing' | 'closed' | 'aborted' = 'open'
  /** The remote has sent all it will: the protocol code never waits for more. */
  remoteWriteStatus: 'writable' | 'closed' = 'closed'
  abortReason?: unknown
  private settle!: () => void
  /** Settles when our side has closed or aborted the stream. */
  readonly finished = new Promise<void>(resolve => { this.settle = resolve })

  constructor (private readonly input: readonly Uint8Array[]) {}

  async * [Symbol.asyncIterator] (): AsyncGenerator<Uint8Array> {
    for (const piece of this.input) {
      if (this.status === 'aborted') return
      yield piece
    }
  }

  send (data: Uint8Array | Uint8ArrayList): boolean {
    this.sent.push(data instanceof Uint8ArrayList ? data.subarray() : data)
    return true
  }

  async onDrain (): Promise<void> {}

  async close (): Promise<void> {
    this.status = 'closed'
    this.settle()
  }

  abort (err: unknown): void {
    this.abortReason = err
    this.status = 'aborted'
    this.settle()
  }

  /** What was sent, as one byte string. */
  output (): Uint8Array {
    return new Uint8Array(Buffer.concat(this.sent))
  }
}

/** A host whose every dial gets a stream reading `replies`; and whose handlers can be called. */
export class FakeHost implements ProtocolHost {
  readonly handlers = new Map<string, StreamHandler>()
  replies: readonly Uint8Array[] = []
  last?: FakeStream

  async handle (protocol: string, handler: StreamHandler): Promise<void> { this.handlers.set(protocol, handler) }
  async unhandle (protocol: string): Promise<void> { this.handlers.delete(protocol) }

  async dialProtocol (): Promise<Stream> {
    this.last = new FakeStream(this.replies)
    return this.last as unknown as Stream
  }

  /** Opens an inbound stream carrying `input` on `protocol`; resolves when the service is done. */
  async inbound (protocol: string, input: readonly Uint8Array[], remotePeer = '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'): Promise<FakeStream> {
    const handler = this.handlers.get(protocol)
    if (handler === undefined) throw new Error(`no handler for ${protocol}`)
    const stream = new FakeStream(input)
    const connection = { remotePeer: { toString: () => remotePeer } } as unknown as Connection
    await handler(stream as unknown as Stream, connection)
    await stream.finished
    return stream
  }
}

/** Splits bytes into pieces at the given sizes (cycled), as a peer's writes might arrive. */
export function pieces (bytes: Uint8Array, sizes: readonly number[]): Uint8Array[] {
  const out: Uint8Array[] = []
  let at = 0
  for (let i = 0; at < bytes.byteLength; i++) {
    const size = sizes.length === 0 ? bytes.byteLength : Math.max(1, sizes[i % sizes.length])
    out.push(bytes.subarray(at, at + size))
    at += size
  }
  return out
}
