/**
 * The joiner's side of enrolment: a one-off libp2p node with the host's own identity and the
 * public enrolment prologue dials the manager's enrolment listener by the pinned peer id
 * (Noise proves it is that manager before the secret is sent) and trades the secret for the
 * fleet key. The node is stopped whatever happens.
 */
import { multiaddr } from '@multiformats/multiaddr'
import type { PrivateKey } from '@libp2p/interface'
import { createHoldfastNode } from '../node/libp2p-node.js'
import { ENROL_PROLOGUE, type JoinToken } from '../node/fleet.js'
import { enrol, type EnrolGrant } from '../protocols/enrol.js'
import { HoldfastError } from '../util/errors.js'

export async function enrolWithManager (privateKey: PrivateKey, token: JoinToken, name: string, signal?: AbortSignal): Promise<EnrolGrant> {
  // dial-only: no listener, and the fleet key is not known yet (the prologue is the enrolment one)
  const node = await createHoldfastNode({ privateKey, fleetKey: '00'.repeat(32), prologue: ENROL_PROLOGUE, listen: [] })
  try {
    const addrs = token.addrs.map(a => multiaddr(`${a}/p2p/${token.managerPeerId}`))
    const grant = await enrol(node, addrs, { secret: token.secret, name }, { signal })
    if (grant.managerPeerId !== token.managerPeerId) throw new HoldfastError('ENROL_REFUSED', 'the manager answered with another peer id than the token names')
    return grant
  } finally {
    await node.stop()
  }
}
