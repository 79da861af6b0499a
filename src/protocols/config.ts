/**
 * /holdfast/config/1 — the manager hands an agent its central settings (`holdfast config set`).
 *
 *   → {v, version, settings}     ← {v, applied: version}
 *
 * Served by the agent, to its pinned managers only. `settings` is the endpoint's whole
 * effective document (fleet-wide merged with its own overrides, model/central-settings.ts),
 * not a diff, so a lost reply costs nothing: the next visit sends the same document again. The
 * agent applies it at once and durably, or refuses it with a typed error frame
 * (CONFIG_REFUSED: a folder that does not exist, a rule that names none; CONFIG_UNKNOWN_KEY,
 * CONFIG_INVALID) and keeps what it had; the manager shows the refusal in the peer list.
 */
import type { PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { HoldfastError } from '../util/errors.js'
import type { Logger } from '../util/log.js'
import { decodeCentralSettings, type VersionedSettings } from '../model/central-settings.js'
import { FrameReader } from './framing.js'
import { deadline, int, protocolId, readJson, runExchange, sendJson, WIRE_VERSION, type PeerGate, type ProtocolHost } from './exchange.js'
import { ProtocolService, type Exchange } from './service.js'

export const CONFIG_PROTOCOL = protocolId('config')

export const CONFIG_LIMITS = Object.freeze({
  /** A settings document: 256 folders with their ignore lists fit many times over. */
  maxRequestBytes: 256 * 1024,
  /** The reply, or an error frame with the reason for a refusal. */
  maxReplyBytes: 8 * 1024,
  /** Applying restarts the staging parts (watchers stop); a whole exchange gets this long. */
  timeoutMs: 30_000,
  /** Versions are counted by the manager, one per change. */
  maxVersion: Number.MAX_SAFE_INTEGER
})

/** What the agent does with a document; resolves to the version now applied, throws to refuse. */
export interface ConfigSink {
  apply: (document: VersionedSettings, manager: string) => Promise<number>
}

export interface ConfigServiceInit {
  sink: ConfigSink
  allow: PeerGate
  log: Logger
}

/** Checks a request as it comes off the wire: a version ≥ 1 and settings the manager may set. */
export function decodeConfigRequest (r: Record<string, unknown>): VersionedSettings {
  const version = int(r, 'version', 1, CONFIG_LIMITS.maxVersion)
  for (const k of Object.keys(r)) if (k !== 'v' && k !== 'version' && k !== 'settings') throw new HoldfastError('FRAME_MALFORMED', `unknown field '${k.slice(0, 64)}' in a config request`)
  return { version, settings: decodeCentralSettings(r.settings) }
}

/** Checks the agent's reply: the version it applied. */
export function decodeConfigReply (r: Record<string, unknown>): { applied: number } {
  return { applied: int(r, 'applied', 0, CONFIG_LIMITS.maxVersion) }
}

export class ConfigService {
  private readonly service: ProtocolService

  constructor (host: ProtocolHost, private readonly init: ConfigServiceInit) {
    this.service = new ProtocolService(host, {
      protocol: CONFIG_PROTOCOL,
      name: 'config',
      // one document at a time is all a manager has to say
      limits: { maxInboundStreams: 2, maxOutboundStreams: 2, maxStreamsPerPeer: 1, timeoutMs: CONFIG_LIMITS.timeoutMs, maxErrorFrameBytes: CONFIG_LIMITS.maxReplyBytes },
      refusal: 'this agent takes its configuration only from its pinned manager',
      handle: async exchange => { await this.serve(exchange) }
    }, init)
  }

  async start (): Promise<void> { await this.service.start() }
  async stop (): Promise<void> { await this.service.stop() }

  private async serve ({ stream, reader, remote, signal }: Exchange): Promise<void> {
    const document = await readJson(reader, CONFIG_LIMITS.maxRequestBytes, 'the config', decodeConfigRequest)
    const applied = await this.init.sink.apply(document, remote)
    await sendJson(stream, { v: WIRE_VERSION, applied }, CONFIG_LIMITS.maxReplyBytes, signal)
    await stream.close({ signal })
  }
}

export class ConfigClient {
  constructor (private readonly host: ProtocolHost) {}

  /**
   * Sends the document; resolves to the version the agent applied. A refusal arrives as
   * REMOTE_ERROR whose message carries the agent's code and reason.
   */
  async push (peer: PeerId | Multiaddr | Multiaddr[], document: VersionedSettings, options: { signal?: AbortSignal } = {}): Promise<{ applied: number }> {
    const signal = deadline(CONFIG_LIMITS.timeoutMs, options.signal)
    const stream = await this.host.dialProtocol(peer, CONFIG_PROTOCOL, { signal })
    return await runExchange(stream, signal, 'config', async () => {
      await sendJson(stream, { v: WIRE_VERSION, version: document.version, settings: document.settings }, CONFIG_LIMITS.maxRequestBytes, signal)
      await stream.close({ signal })
      return await readJson(new FrameReader(stream), CONFIG_LIMITS.maxReplyBytes, 'the config reply', decodeConfigReply)
    })
  }
}
