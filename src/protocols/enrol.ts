/**
 * /holdfast/enrol/1 — a new host trades a join token's secret for what it needs to be an agent.
 *
 *   → {v, secret, name}     ← {v, fleetKey, managerPeerId, state: 'approved'|'pending'}
 *
 * Served only on the manager's enrolment listener (a node of its own with a public Noise
 * prologue: the joiner has no fleet key yet; docs/security.md, "Membership"). The joiner dials
 * the manager by the peer id in its token, so Noise proves the manager before the secret
 * leaves; the manager records the joiner's peer id (also proved by Noise) before it answers.
 * A refusal (ENROL_REFUSED) says nothing about which tokens exist.
 */
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Logger } from '../util/log.js'
import { HoldfastError } from '../util/errors.js'
import { FrameReader } from './framing.js'
import { deadline, field, protocolId, readJson, runExchange, sendJson, str, WIRE_VERSION, type ProtocolHost } from './exchange.js'
import { ProtocolService, type Exchange } from './service.js'
import { isPeerId } from '../node/fleet.js'

export const ENROL_PROTOCOL = protocolId('enrol')

export const ENROL_LIMITS = Object.freeze({
  maxMessageBytes: 1024,
  /** One request and one reply: a joiner slower than this is not joining. */
  timeoutMs: 15_000,
  /** Anyone on the LAN can reach the listener: few at once, one per peer. */
  maxInboundStreams: 8,
  maxStreamsPerPeer: 1,
  maxNameChars: 255
})

export interface EnrolRequest { secret: string, name: string }
export interface EnrolGrant { fleetKey: string, managerPeerId: string, state: 'approved' | 'pending' }

export interface EnrolServiceInit {
  /** Checks the secret and records `peerId` (`ip`: where it came from); throws ENROL_REFUSED or ENROL_RATE_LIMITED. */
  enrol: (request: EnrolRequest, peerId: string, ip: string) => Promise<EnrolGrant>
  log: Logger
}

export class EnrolService {
  private readonly service: ProtocolService

  constructor (host: ProtocolHost, private readonly init: EnrolServiceInit) {
    this.service = new ProtocolService(host, {
      protocol: ENROL_PROTOCOL,
      name: 'enrol',
      limits: { maxInboundStreams: ENROL_LIMITS.maxInboundStreams, maxOutboundStreams: 1, maxStreamsPerPeer: ENROL_LIMITS.maxStreamsPerPeer, timeoutMs: ENROL_LIMITS.timeoutMs, maxErrorFrameBytes: ENROL_LIMITS.maxMessageBytes },
      refusal: 'enrolment refused',
      handle: async exchange => { await this.serve(exchange) }
    // the secret is the gate here: whoever completes the (public-prologue) handshake may ask
    }, { allow: () => true, log: init.log })
  }

  async start (): Promise<void> { await this.service.start() }
  async stop (): Promise<void> { await this.service.stop() }

  private async serve ({ stream, reader, remote, remoteIp, signal }: Exchange): Promise<void> {
    const request = await readJson(reader, ENROL_LIMITS.maxMessageBytes, 'the enrolment request', r => ({ secret: str(r, 'secret', 64), name: str(r, 'name', ENROL_LIMITS.maxNameChars) }))
    const grant = await this.init.enrol(request, remote, remoteIp)
    await sendJson(stream, { v: WIRE_VERSION, ...grant }, ENROL_LIMITS.maxMessageBytes, signal)
    await stream.close({ signal })
  }
}

/** The joiner's side: one exchange with the manager's enrolment listener. */
export async function enrol (host: ProtocolHost, manager: Multiaddr[], request: EnrolRequest, options: { signal?: AbortSignal } = {}): Promise<EnrolGrant> {
  const signal = deadline(ENROL_LIMITS.timeoutMs, options.signal)
  const stream = await host.dialProtocol(manager, ENROL_PROTOCOL, { signal })
  return await runExchange(stream, signal, 'enrol', async () => {
    await sendJson(stream, { v: WIRE_VERSION, ...request }, ENROL_LIMITS.maxMessageBytes, signal)
    await stream.close({ signal })
    const reader = new FrameReader(stream)
    return await readJson(reader, ENROL_LIMITS.maxMessageBytes, 'the enrolment reply', r => {
      const fleetKey = str(r, 'fleetKey', 64)
      const managerPeerId = str(r, 'managerPeerId', 128)
      const state = r.state
      field(/^[0-9a-f]{64}$/.test(fleetKey), 'fleetKey', fleetKey)
      field(isPeerId(managerPeerId), 'managerPeerId', managerPeerId)
      if (state !== 'approved' && state !== 'pending') throw new HoldfastError('FRAME_MALFORMED', "field 'state' is missing or has the wrong type")
      return { fleetKey, managerPeerId, state }
    })
  })
}
