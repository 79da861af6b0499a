/**
 * /holdfast/ack/1 — the manager tells the agent that a staging set is durable in its store.
 *
 *   → {v, setId, snapshotId}     ← {v, ok:true}
 *
 * Sent only after the snapshot is committed in the catalog (DESIGN.md §1); the agent marks
 * the set's entries backed up and frees its spool. An ack for a set the agent no longer holds
 * is answered ok (acks are idempotent: a lost reply leads to a second ack).
 */
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Logger } from '../util/log.js'
import { FrameReader } from './framing.js'
import { deadline, errorMessage, int, protocolId, readJson, refuse, runExchange, sendJson, WIRE_VERSION, type PeerGate, type ProtocolHost } from './exchange.js'

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
  private started = false
  constructor (private readonly host: ProtocolHost, private readonly init: AckServiceInit) {}

  async start (): Promise<void> {
    if (this.started) return
    await this.host.handle(ACK_PROTOCOL, (stream, connection) => { void this.onStream(stream, connection) }, { maxInboundStreams: 4 })
    this.started = true
  }

  async stop (): Promise<void> {
    if (!this.started) return
    await this.host.unhandle(ACK_PROTOCOL)
    this.started = false
  }

  private async onStream (stream: Stream, connection: Connection): Promise<void> {
    const remote = connection.remotePeer.toString()
    const log = this.init.log.child(`ack:${remote.slice(-8)}`)
    if (!this.init.allow(remote)) {
      log.warn('refused ack from a peer that is not an allowed manager')
      await refuse(stream, 'PEER_NOT_ALLOWED', 'this agent takes acks only from its pinned manager', ACK_LIMITS.maxMessageBytes)
      return
    }
    const signal = deadline(ACK_LIMITS.timeoutMs)
    try {
      await runExchange(stream, signal, 'ack', async () => {
        const reader = new FrameReader(stream)
        try {
          const ack = await readJson(reader, ACK_LIMITS.maxMessageBytes, 'the ack', r => ({ setId: int(r, 'setId', 1), snapshotId: int(r, 'snapshotId', 1) }))
          await this.init.sink.acknowledge(ack.setId, ack.snapshotId, remote)
          await sendJson(stream, { v: WIRE_VERSION, ok: true }, ACK_LIMITS.maxMessageBytes, signal)
        } catch (err) {
          log.warn('ack not applied', { err: String(err) })
          await sendJson(stream, errorMessage(err), ACK_LIMITS.maxMessageBytes, signal)
          await stream.close({ signal })
          return
        }
        await stream.close({ signal })
      })
    } catch (err) {
      log.warn('ack failed', { err: String(err) })
    }
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
        if (r.ok !== true) throw new Error('ack not confirmed')
        return true
      })
    })
  }
}
