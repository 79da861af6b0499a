/**
 * /holdfast/deploy/1 — the manager gives a host a role (a bare node becomes an agent) and,
 * when the host's version differs, the package to run it with.
 *
 *   → offer    {v, role: 'agent', settings: CentralAgentSettings, package?: SignedManifest}
 *   ← {v, accepted: true}                or {v, error:{code, message}}  (refused: nothing changed)
 *   → with a package only: data frames (raw tarball bytes, each ≤ maxDataFrameBytes, exactly
 *     manifest.size in all), then one empty frame
 *   ← result   {v, ok: true, version, role}  or {v, error:{code, message}}
 *
 * The host serves this protocol to its pinned managers only (the peer gate; a node's
 * connection gater refuses everyone else before a stream opens). It checks the offer before it
 * says accepted — the manifest's signature against the pinned manager key comes first, so no
 * byte of an unsigned package is read — and acts on the result only after the reply has left
 * (restarting into a new version, or starting the agent in place).
 */
import type { PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { HoldfastError } from '../util/errors.js'
import type { Logger } from '../util/log.js'
import { decodeCentralSettings, type CentralAgentSettings } from '../model/central-settings.js'
import type { SignedManifest } from '../deploy/package.js'
import { isPeerId } from '../node/fleet.js'
import { FrameReader, writeFrame } from './framing.js'
import { deadline, field, IdleDeadline, int, protocolId, readJson, runExchange, sendJson, str, WIRE_VERSION, type PeerGate, type ProtocolHost } from './exchange.js'
import { ProtocolService, type Exchange } from './service.js'

export const DEPLOY_PROTOCOL = protocolId('deploy')

export const DEPLOY_LIMITS = Object.freeze({
  /** The offer: settings of up to 256 folders with their ignore globs, and a manifest. */
  maxOfferBytes: 512 * 1024,
  maxReplyBytes: 4096,
  maxDataFrameBytes: 256 * 1024,
  /** Largest package a host takes (the project's build with its production dependencies). */
  maxPackageBytes: 512 * 1024 * 1024,
  /** The whole exchange, a package's transfer and install included. */
  timeoutMs: 30 * 60_000,
  /** No frame (or no progress of the install) for this long fails the exchange. */
  idleTimeoutMs: 120_000,
  /** One deploy at a time on a host, from its one manager. */
  maxInboundStreams: 2,
  maxStreamsPerPeer: 1,
  maxVersionChars: 64
})

export type DeployRole = 'agent'

export interface DeployOffer {
  role: DeployRole
  settings: CentralAgentSettings
  package?: SignedManifest
}

export interface DeployResult {
  version: string
  role: DeployRole
}

/** What a host does with an offer (roles/node/node.ts, and the agent for upgrades). */
export interface DeployTarget {
  /** Checks the offer (signature first); throws to refuse, leaving the host as it was. */
  check: (offer: DeployOffer, manager: string) => Promise<void>
  /** Applies it; `pkg` is the tarball's bytes when the offer has a package. */
  apply: (offer: DeployOffer, manager: string, pkg: AsyncIterable<Uint8Array> | undefined, signal: AbortSignal) => Promise<DeployResult>
  /** Runs once the result has been sent (the switch into the new role or version). */
  applied: (result: DeployResult) => void
}

const VERSION_PATTERN = /^[0-9A-Za-z][0-9A-Za-z.+-]*$/

function version (r: Record<string, unknown>, name: string): string {
  const v = str(r, name, DEPLOY_LIMITS.maxVersionChars)
  return field(VERSION_PATTERN.test(v), name, v)
}

/** A signed manifest's shape; its signature is the package module's to check. */
export function decodeSignedManifest (value: unknown): SignedManifest {
  field(typeof value === 'object' && value !== null && !Array.isArray(value), 'package', value)
  const r = value as Record<string, unknown>
  const m = r.manifest
  field(typeof m === 'object' && m !== null && !Array.isArray(m), 'package.manifest', m)
  const mr = m as Record<string, unknown>
  field(mr.format === 1, 'package.manifest.format', mr.format)
  field(mr.name === 'holdfast', 'package.manifest.name', mr.name)
  const sha256 = str(mr, 'sha256', 64)
  field(/^[0-9a-f]{64}$/.test(sha256), 'package.manifest.sha256', sha256)
  const signer = str(r, 'signer', 128)
  field(isPeerId(signer), 'package.signer', signer)
  const signature = str(r, 'signature', 1024)
  field(/^[A-Za-z0-9+/]+={0,2}$/.test(signature), 'package.signature', signature)
  return {
    manifest: { format: 1, name: 'holdfast', version: version(mr, 'version'), sha256, size: int(mr, 'size', 1, DEPLOY_LIMITS.maxPackageBytes), builtAt: str(mr, 'builtAt', 64) },
    signer,
    signature
  }
}

export function decodeOffer (r: Record<string, unknown>): DeployOffer {
  field(r.role === 'agent', 'role', r.role)
  const settings = decodeCentralSettings(r.settings)
  const offer: DeployOffer = { role: 'agent', settings }
  if (r.package !== undefined) offer.package = decodeSignedManifest(r.package)
  return offer
}

function decodeResult (r: Record<string, unknown>): DeployResult {
  field(r.ok === true, 'ok', r.ok)
  field(r.role === 'agent', 'role', r.role)
  return { version: version(r, 'version'), role: 'agent' }
}

/**
 * The package's bytes as they come off the stream: each frame bounded, the total exactly the
 * manifest's size (more is refused at the frame that passes it, less when the end frame comes).
 */
async function * packageBytes (reader: FrameReader, size: number, touch: () => void): AsyncGenerator<Uint8Array> {
  let received = 0
  for (;;) {
    const frame = await reader.expect(DEPLOY_LIMITS.maxDataFrameBytes, 'the package data')
    touch()
    if (frame.byteLength === 0) break
    received += frame.byteLength
    if (received > size) throw new HoldfastError('FRAME_TOO_LARGE', `the package is longer than its manifest's ${size} bytes`)
    yield frame
  }
  if (received !== size) throw new HoldfastError('FRAME_TRUNCATED', `the package ended after ${received} of ${size} bytes`)
}

export interface DeployServiceInit {
  target: DeployTarget
  allow: PeerGate
  log: Logger
}

export class DeployService {
  private readonly service: ProtocolService

  constructor (host: ProtocolHost, private readonly init: DeployServiceInit) {
    this.service = new ProtocolService(host, {
      protocol: DEPLOY_PROTOCOL,
      name: 'deploy',
      limits: { maxInboundStreams: DEPLOY_LIMITS.maxInboundStreams, maxOutboundStreams: 1, maxStreamsPerPeer: DEPLOY_LIMITS.maxStreamsPerPeer, timeoutMs: DEPLOY_LIMITS.timeoutMs, idleTimeoutMs: DEPLOY_LIMITS.idleTimeoutMs, maxErrorFrameBytes: DEPLOY_LIMITS.maxReplyBytes },
      refusal: 'deploy offers are taken from the pinned manager only',
      handle: async exchange => { await this.serve(exchange) }
    }, { allow: init.allow, log: init.log })
  }

  async start (): Promise<void> { await this.service.start() }
  async stop (): Promise<void> { await this.service.stop() }

  private async serve ({ stream, reader, remote, signal, touch }: Exchange): Promise<void> {
    const offer = await readJson(reader, DEPLOY_LIMITS.maxOfferBytes, 'the deploy offer', decodeOffer)
    await this.init.target.check(offer, remote)
    await sendJson(stream, { v: WIRE_VERSION, accepted: true }, DEPLOY_LIMITS.maxReplyBytes, signal)
    const pkg = offer.package === undefined ? undefined : packageBytes(reader, offer.package.manifest.size, touch)
    const result = await this.init.target.apply(offer, remote, pkg, signal)
    await sendJson(stream, { v: WIRE_VERSION, ok: true, ...result }, DEPLOY_LIMITS.maxReplyBytes, signal)
    await stream.close({ signal })
    this.init.target.applied(result)
  }
}

/** The manager's side of one offer; `pkg` yields the tarball when the offer has a package. */
export async function offerDeploy (host: ProtocolHost, peer: PeerId | Multiaddr[], offer: DeployOffer, pkg: (() => AsyncIterable<Uint8Array>) | undefined, options: { signal?: AbortSignal } = {}): Promise<DeployResult> {
  if ((offer.package === undefined) !== (pkg === undefined)) throw new HoldfastError('DEPLOY_FAILED', 'an offer with a package needs its bytes, and only then')
  const signal = deadline(DEPLOY_LIMITS.timeoutMs, options.signal)
  const stream = await host.dialProtocol(peer, DEPLOY_PROTOCOL, { signal })
  const idle = new IdleDeadline(DEPLOY_LIMITS.idleTimeoutMs, signal)
  try {
    return await runExchange(stream, idle.signal, 'deploy', async () => {
      const reader = new FrameReader(stream)
      await sendJson(stream, { v: WIRE_VERSION, ...offer }, DEPLOY_LIMITS.maxOfferBytes, signal)
      await readJson(reader, DEPLOY_LIMITS.maxReplyBytes, 'the answer to the offer', r => field(r.accepted === true, 'accepted', true))
      idle.touch()
      if (pkg !== undefined) {
        for await (const chunk of pkg()) {
          for (let at = 0; at < chunk.byteLength; at += DEPLOY_LIMITS.maxDataFrameBytes) {
            await writeFrame(stream, chunk.subarray(at, at + DEPLOY_LIMITS.maxDataFrameBytes), signal)
            idle.touch()
          }
        }
        await writeFrame(stream, new Uint8Array(0), signal)
      }
      await stream.close({ signal })
      // the host installs before it answers: the idle deadline covers that wait too
      return await readJson(reader, DEPLOY_LIMITS.maxReplyBytes, 'the deploy result', decodeResult)
    })
  } finally {
    idle.clear()
  }
}
