/**
 * Builds the libp2p node every Holdfast daemon runs: TCP, Noise (with a prologue derived from
 * the fleet key, so a peer without the key cannot complete a handshake), and yamux.
 * @libp2p/pnet is not used: it truncates bulk transfers in this version (LIBP2P-NOTES.md).
 */
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import type { PrivateKey } from '@libp2p/interface'
import { noisePrologue } from './fleet.js'
import { HoldfastError } from '../util/errors.js'

export interface NodeOptions {
  privateKey: PrivateKey
  fleetKey: string
  listen: string[]
  /** Replaces the fleet prologue (the manager's enrolment listener, a joiner's one-off node). */
  prologue?: Uint8Array
  /**
   * Peers refused once Noise has proved who they are, both ways (a revoked host): checked
   * on every connection, so a revocation holds for the next dial without a restart.
   */
  denied?: (peerId: string) => boolean
}

export type HoldfastNode = Libp2p

export async function createHoldfastNode (options: NodeOptions): Promise<HoldfastNode> {
  return await createLibp2p({
    privateKey: options.privateKey,
    addresses: { listen: options.listen },
    transports: [tcp()],
    connectionEncrypters: [noise({ prologueBytes: options.prologue ?? noisePrologue(options.fleetKey) })],
    connectionGater: {
      denyInboundEncryptedConnection: (peer) => options.denied?.(peer.toString()) ?? false,
      denyOutboundEncryptedConnection: (peer) => options.denied?.(peer.toString()) ?? false
    },
    streamMuxers: [yamux()],
    connectionManager: {
      // a manager keeps one connection per endpoint; 1,000 endpoints is the design target
      maxConnections: 1200
    }
  })
}

/** The TCP port the node actually listens on (the config may say port 0). */
export function listenPort (node: HoldfastNode): number {
  for (const ma of node.getMultiaddrs()) {
    const tcpPart = ma.getComponents().find(c => c.name === 'tcp')
    if (tcpPart?.value !== undefined) return Number(tcpPart.value)
  }
  throw new HoldfastError('NODE_NOT_LISTENING', 'node is not listening on TCP')
}
