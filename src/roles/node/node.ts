/**
 * The bare node: the least a LAN host runs before its manager gives it a role. It holds its
 * identity and the fleet key, advertises itself over mDNS with role `node`, and serves one
 * protocol, /holdfast/deploy/1, to its pinned manager only (its connection gater refuses every
 * other peer once Noise has proved who it is). Nothing else runs until an offer is taken.
 *
 * States: bare → deploying (an offer with a package is being installed) → agent (the agent
 * runs in place, or the host restarts into the new version). A refused or failed offer leaves
 * it bare, with the reason in `status`.
 */
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { writeConfig, type HoldfastConfig } from '../../config/config.js'
import { loadOrCreateIdentity } from '../../node/identity.js'
import { listenPort, type HoldfastNode } from '../../node/libp2p-node.js'
import { createNodeOnSavedPort } from '../../node/saved-port.js'
import { endpointDiscovery, type Discovery } from '../../node/discovery.js'
import { fleetTag } from '../../node/fleet.js'
import { DeployService, DEPLOY_LIMITS, type DeployOffer, type DeployResult } from '../../protocols/deploy.js'
import { installPackage, switchCurrent, verifyManifest } from '../../deploy/package.js'
import { AdminServer } from '../../admin/admin-socket.js'
import { NODE_API, type NodeCommands } from '../../admin/api.js'
import { HoldfastError, describeError } from '../../util/errors.js'
import type { Clock } from '../../util/clock.js'
import type { Logger } from '../../util/log.js'
import { HOLDFAST_VERSION } from '../../version.js'
import { agentConfigFromOffer } from './offer-config.js'
import { requireInstallRoot } from './upgrade-target.js'

export type NodeState = 'bare' | 'deploying' | 'agent' | 'failed'

export interface NodeStatus {
  peerId: string
  name: string
  role: 'node'
  state: NodeState
  /** Why the last offer was refused or failed. */
  why?: string
  version: string
  listen: string[]
  managers: string[]
}

/** Where a node writes the agent config an offer gives it; `holdfast node` runs it from then on. */
export function agentConfigFile (dataDir: string): string { return join(dataDir, 'agent.json') }

export interface BareNodeHooks {
  /** agent.json is written: run the agent in this node's place (same identity and data dir). */
  becomeAgent: (config: HoldfastConfig) => void
  /** A package is installed and current: restart into it (the supervisor's exit code). */
  restart: () => void
}

export class BareNode {
  private node?: HoldfastNode
  private discovery?: Discovery
  private admin?: AdminServer<NodeCommands>
  private deploy?: DeployService
  private peerId = ''
  private state: NodeState = 'bare'
  private why?: string
  /** What an accepted offer leads to, once its result has left: the agent in place, or a restart into a package. */
  private pending?: { config: HoldfastConfig, restart: boolean }

  /** `installRoot`: where packages go (`--install-root`, the supervisor's); without one an offer with a package is refused. */
  constructor (readonly config: HoldfastConfig, private readonly clock: Clock, private readonly log: Logger, private readonly hooks: BareNodeHooks, failure?: string, private readonly installRoot?: string) {
    if (failure !== undefined) { this.state = 'failed'; this.why = failure }
  }

  async start (): Promise<void> {
    mkdirSync(this.config.dataDir, { recursive: true, mode: 0o700 })
    const identity = await loadOrCreateIdentity(this.config.dataDir)
    this.peerId = identity.peerId
    const pinned = this.config.managers
    // Only the pinned managers get a connection at all: the node has nothing for anyone else.
    const node = await createNodeOnSavedPort({ privateKey: identity.privateKey, fleetKey: this.config.fleetKey, listen: this.config.listen, denied: (id: string) => !pinned.includes(id) }, this.config.dataDir, this.log)
    this.node = node
    this.deploy = new DeployService(node, {
      allow: remote => pinned.includes(remote),
      log: this.log.child('deploy'),
      target: {
        check: async (offer) => { await this.check(offer) },
        apply: async (offer, manager, pkg, signal) => await this.apply(offer, manager, pkg, signal),
        applied: result => { this.applied(result) }
      }
    })
    await this.deploy.start()
    this.discovery = endpointDiscovery({ peerId: this.peerId, role: 'node', version: HOLDFAST_VERSION, name: this.config.name, port: listenPort(node), fleetTag: fleetTag(this.config.fleetKey), mdns: this.config.mdns, clock: this.clock, log: this.log.child('discovery') })
    this.discovery.start()
    this.admin = new AdminServer(this.config.adminSocket, NODE_API, { status: async () => this.status() }, this.log)
    await this.admin.start()
    this.log.info('bare node started; waiting for its manager to give it a role', { peer: this.peerId, listen: node.getMultiaddrs().map(String), managers: pinned })
  }

  async stop (): Promise<void> {
    await this.admin?.stop()
    this.discovery?.stop()
    await this.deploy?.stop()
    await this.node?.stop()
  }

  status (): NodeStatus {
    return { peerId: this.peerId, name: this.config.name, role: 'node', state: this.state, ...(this.why === undefined ? {} : { why: this.why }), version: HOLDFAST_VERSION, listen: this.node?.getMultiaddrs().map(String) ?? [], managers: this.config.managers }
  }

  /** Everything that can be checked before a byte of package is read: refusals change nothing. */
  private async check (offer: DeployOffer): Promise<void> {
    if (this.state === 'deploying' || this.pending !== undefined) throw new HoldfastError('DEPLOY_REFUSED', 'a deploy is already under way on this node')
    try {
      if (offer.package !== undefined) {
        await verifyManifest(offer.package, this.config.managers)
        requireInstallRoot(this.installRoot)
      }
      agentConfigFromOffer(this.config, offer.settings)
    } catch (err) {
      this.fail(err)
      throw err
    }
  }

  private async apply (offer: DeployOffer, manager: string, pkg: AsyncIterable<Uint8Array> | undefined, signal: AbortSignal): Promise<DeployResult> {
    this.state = 'deploying'
    this.why = undefined
    try {
      const { raw, config } = agentConfigFromOffer(this.config, offer.settings)
      let version = HOLDFAST_VERSION
      if (offer.package !== undefined && pkg !== undefined) {
        const root = requireInstallRoot(this.installRoot)
        const installed = await installPackage({ installRoot: root, source: pkg, signed: offer.package, pinnedManagers: this.config.managers, maxBytes: DEPLOY_LIMITS.maxPackageBytes, signal })
        await switchCurrent(root, installed.version)
        version = installed.version
      }
      // last, once nothing can fail: a node that has agent.json runs the agent from then on
      writeConfig(agentConfigFile(this.config.dataDir), raw)
      this.pending = { config, restart: offer.package !== undefined }
      this.state = 'agent'
      this.log.info('offer accepted: this host becomes an agent', { manager: manager.slice(-8), version, folders: config.agent.folders.map(f => f.path) })
      return { version, role: 'agent' }
    } catch (err) {
      this.fail(err)
      throw err
    }
  }

  private applied (_result: DeployResult): void {
    const pending = this.pending
    this.pending = undefined
    if (pending === undefined) return
    if (pending.restart) this.hooks.restart()
    else this.hooks.becomeAgent(pending.config)
  }

  private fail (err: unknown): void {
    this.state = 'failed'
    this.why = describeError(err)
    this.log.warn('deploy offer refused or failed; the node stays as it was', { why: this.why })
  }
}
