/**
 * /holdfast/ack/1 — the manager tells the agent that a staging set is durable in its store.
 *
 *   → {v, setId, snapshotId}     ← {v, ok:true}
 *
 * Sent only after the snapshot is committed in the catalog (DESIGN.md §1); the agent marks
 * the set's entries backed up and frees its spool. An ack for a set already acked is answered
 * ok (acks are idempotent: a lost reply leads to a second ack); one for a set the agent does
 * not hold sealed is refused with ACK_REFUSED and frees nothing (docs/security.md).
 */
import type { PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { HoldfastError } from '../util/errors.js'
import type { Logger } from '../util/log.js'
import { FrameReader } from './framing.js'
import { deadline, int, protocolId, readJson, runExchange, sendJson, WIRE_VERSION, type PeerGate, type ProtocolHost } from './exchange.js'
import { ProtocolService, type Exchange } from './service.js'

export const ACK_PROTOCOL = protocolId('ack')

export const ACK_LIMITS = Object.freeze({
  maxMessageBytes: 1024,
  timeoutMs: 30_000
})

export interface AckSink {
  acknowledge: (setId: number, snapshotId: number, manager: string) => Promise<void>
}

export interface AckServiceInit {
  sink: AckSink
  allow: PeerGate
  log: Logger
}

export class AckService {
  private readonly service: ProtocolService

  constructor (host: ProtocolHost, private readonly init: AckServiceInit) {
    this.service = new ProtocolService(host, {
      protocol: ACK_PROTOCOL,
      name: 'ack',
      limits: { maxInboundStreams: 4, maxOutboundStreams: 4, timeoutMs: ACK_LIMITS.timeoutMs, maxErrorFrameBytes: ACK_LIMITS.maxMessageBytes },
      refusal: 'this agent takes acks only from its pinned manager',
      handle: async exchange => { await this.serve(exchange) }
    }, init)
  }

  async start (): Promise<void> { await this.service.start() }
  async stop (): Promise<void> { await this.service.stop() }

  private async serve ({ stream, reader, remote, signal }: Exchange): Promise<void> {
    const ack = await readJson(reader, ACK_LIMITS.maxMessageBytes, 'the ack', r => ({ setId: int(r, 'setId', 1), snapshotId: int(r, 'snapshotId', 1) }))
    await this.init.sink.acknowledge(ack.setId, ack.snapshotId, remote)
    await sendJson(stream, { v: WIRE_VERSION, ok: true }, ACK_LIMITS.maxMessageBytes, signal)
    await stream.close({ signal })
  }
}

export class AckClient {
  constructor (private readonly host: ProtocolHost) {}

  async ack (peer: PeerId | Multiaddr | Multiaddr[], setId: number, snapshotId: number, options: { signal?: AbortSignal } = {}): Promise<void> {
    const signal = deadline(ACK_LIMITS.timeoutMs, options.signal)
    const stream = await this.host.dialProtocol(peer, ACK_PROTOCOL, { signal })
    await runExchange(stream, signal, 'ack', async () => {
      await sendJson(stream, { v: WIRE_VERSION, setId, snapshotId }, ACK_LIMITS.maxMessageBytes, signal)
      await stream.close({ signal })
      const reader = new FrameReader(stream)
      await readJson(reader, ACK_LIMITS.maxMessageBytes, 'the ack reply', r => {
        if (r.ok !== true) throw new HoldfastError('FRAME_MALFORMED', 'ack not confirmed')
        return true
      })
    })
  }
}
