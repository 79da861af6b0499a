/**
 * The manager's side of deployment: which bare nodes get the agent role (the policy in
 * manager.deploy), offering it (protocols/deploy.ts), recording each host's outcome, and
 * rolling upgrades a batch at a time. A host's deploy state is what `holdfast peers` and
 * `holdfast deploy status` show: bare, deploying, agent, or failed with the reason.
 */
import type { Multiaddr } from '@multiformats/multiaddr'
import type { CentralAgentSettings } from '../../../model/central-settings.js'
import { offerDeploy, type DeployOffer } from '../../../protocols/deploy.js'
import type { ProtocolHost } from '../../../protocols/exchange.js'
import type { PeerRecord, PeerTable } from '../peer-table.js'
import { HoldfastError, describeError, errorCode } from '../../../util/errors.js'
import type { Clock } from '../../../util/clock.js'
import type { Logger } from '../../../util/log.js'
import type { PackageShelf, ShelvedPackage } from './package-shelf.js'

export type DeployState = 'bare' | 'deploying' | 'agent' | 'failed'

export interface DeployOutcome {
  peerId: string
  name: string
  ok: boolean
  state: DeployState
  version?: string
  /** Why it failed: the node's refusal code (remote), or ours. */
  code?: string
  message?: string
}

export interface DeployStatusRow {
  peerId: string
  name: string
  role: string
  version: string
  state: DeployState
  why?: string
  at?: number
}

export interface UpgradeReport {
  version: string
  batch: number
  ok: boolean
  /** The batches run, in order; the last one is the one that failed when ok is false. */
  batches: DeployOutcome[][]
  /** Hosts left on their version because an earlier batch failed. */
  notAttempted: Array<{ peerId: string, name: string, version: string }>
}

interface HostDeploy { state: DeployState, why?: string, version?: string, at: number }

export interface DeployPolicy { auto: string, settings: CentralAgentSettings }

export interface DeployerInit {
  host: ProtocolHost
  peers: PeerTable
  policy: DeployPolicy
  packages: PackageShelf
  clock: Clock
  log: Logger
  /** Only members get code: pending and revoked hosts are never offered a role. */
  isApproved: (peerId: string) => boolean
  /** A host the manager now knows runs the agent: schedule it. */
  onAgent: (peer: PeerRecord) => void
  /** Records an automatic deploy in the audit log (an admin's goes through the admin socket). */
  audit: (target: string, ok: boolean, detail: string) => void
  /**
   * Asks an upgraded host what it runs now (the manifest: its version, and the supervisor's
   * record when it rolled the new one back). Bounded by its own timeout; throws while the host
   * is restarting. Without it the rolling upgrade goes by mDNS announcements alone.
   */
  probe?: (peer: PeerRecord, signal: AbortSignal) => Promise<HostVersion>
  /** A failed automatic deploy is offered again after this long (on the node's next sighting). */
  retryMs?: number
  signal: AbortSignal
}

export interface HostVersion { version: string, rolledBack?: { version: string, reason: string } }

export const DEPLOY_RETRY_MS = 5 * 60_000
/** One look at an upgraded host's manifest (the probe): it may be restarting. */
export const UPGRADE_PROBE_TIMEOUT_MS = 5000
/** Between two looks at an upgraded host while it restarts. */
const CAME_BACK_POLL_MS = 1000
/** A rolling upgrade's default wait for each host to come back on the new version. */
export const UPGRADE_HEALTH_TIMEOUT_MS = 120_000

/** A name glob ('lab-*', 'pc-??') as a whole-name regex. */
export function nameGlob (glob: string): RegExp {
  return new RegExp('^' + glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.') + '$')
}

export class Deployer {
  private readonly hosts = new Map<string, HostDeploy>()
  private readonly auto?: (peer: PeerRecord) => boolean

  constructor (private readonly init: DeployerInit) {
    const auto = init.policy.auto
    if (auto === 'approved') this.auto = peer => init.isApproved(peer.peerId)
    else if (auto !== 'none' && auto !== '') {
      const re = nameGlob(auto)
      this.auto = peer => init.isApproved(peer.peerId) && re.test(peer.name)
    }
  }

  stateOf (peer: PeerRecord): HostDeploy | undefined {
    return this.hosts.get(peer.peerId) ?? (peer.role === 'node' ? { state: 'bare', at: peer.firstSeen } : undefined)
  }

  /** Discovery saw a peer: a bare node the policy covers is given the agent role. */
  sighted (peer: PeerRecord): void {
    if (peer.role !== 'node' || this.auto === undefined || this.init.signal.aborted) return
    const known = this.hosts.get(peer.peerId)
    if (known?.state === 'deploying' || known?.state === 'agent') return
    if (known?.state === 'failed' && this.init.clock.now() - known.at < (this.init.retryMs ?? DEPLOY_RETRY_MS)) return
    if (!this.auto(peer)) return
    void this.deploy(peer).then(outcome => {
      this.init.audit(`${peer.peerId}${peer.name === '' ? '' : ` (${peer.name})`}`, outcome.ok, `policy '${this.init.policy.auto}': ${outcome.ok ? `agent ${outcome.version ?? ''}` : `${outcome.code ?? ''}: ${outcome.message ?? ''}`}`)
    })
  }

  /** `holdfast deploy <node>`: by peer id or name, whatever the policy says. */
  async deployNow (target: string): Promise<DeployOutcome> {
    const matches = this.init.peers.all().filter(p => p.peerId === target || p.name === target)
    if (matches.length === 0) throw new HoldfastError('PEER_UNKNOWN', `no host '${target}' has been found (give its peer id or name, as holdfast peers shows it)`)
    if (matches.length > 1) throw new HoldfastError('ADMIN_BAD_REQUEST', `${matches.length} hosts are named '${target}'; give the peer id`)
    const peer = matches[0]
    if (peer.role !== 'node') throw new HoldfastError('ADMIN_BAD_REQUEST', `${peer.peerId} is ${peer.role === 'agent' ? 'an agent already (upgrade it with holdfast deploy --version)' : `a ${peer.role}`}`)
    if (!this.init.isApproved(peer.peerId)) throw new HoldfastError('ADMIN_BAD_REQUEST', `${peer.peerId} is not an approved member; approve it first (holdfast peers approve ${peer.peerId})`)
    if (this.hosts.get(peer.peerId)?.state === 'deploying') throw new HoldfastError('DEPLOY_REFUSED', `a deploy to ${peer.peerId} is already under way`)
    return await this.deploy(peer)
  }

  status (): DeployStatusRow[] {
    return this.init.peers.all().filter(p => p.role === 'node' || p.role === 'agent').map(p => {
      const d = this.stateOf(p) ?? { state: 'agent' as const, at: p.firstSeen }
      return { peerId: p.peerId, name: p.name, role: p.role, version: p.version, state: d.state, ...(d.why === undefined ? {} : { why: d.why }), at: d.at }
    })
  }

  /** `holdfast deploy package add`: a tarball built elsewhere onto the shelf, signed here. */
  async addPackage (tarball: string, version: string, signal: AbortSignal): Promise<{ version: string, sha256: string, size: number, tarball: string }> {
    const p = await this.init.packages.add(tarball, version, signal)
    this.init.log.info('package shelved', { version, sha256: p.signed.manifest.sha256, size: p.signed.manifest.size })
    return { version, sha256: p.signed.manifest.sha256, size: p.signed.manifest.size, tarball: p.tarball }
  }

  /** Offers the agent role (and the newest shelved package when the node's version differs). */
  private async deploy (peer: PeerRecord): Promise<DeployOutcome> {
    const shelved = this.init.packages.latest()
    const pkg = shelved !== undefined && shelved.signed.manifest.version !== peer.version ? shelved : undefined
    const outcome = await this.offer(peer, pkg)
    if (outcome.ok) {
      // the node answered over its Noise-proved connection: that is proof enough of its new role
      peer.role = 'agent'
      if (outcome.version !== undefined) peer.version = outcome.version
      this.init.onAgent(peer)
    }
    return outcome
  }

  private async offer (peer: PeerRecord, pkg: ShelvedPackage | undefined): Promise<DeployOutcome> {
    const { clock, log } = this.init
    this.hosts.set(peer.peerId, { state: 'deploying', at: clock.now() })
    const offer: DeployOffer = { role: 'agent', settings: this.init.policy.settings, ...(pkg === undefined ? {} : { package: pkg.signed }) }
    try {
      if (peer.addrs.length === 0) throw new HoldfastError('DEPLOY_FAILED', 'no address to dial')
      const result = await offerDeploy(this.init.host, peer.addrs as Multiaddr[], offer, pkg === undefined ? undefined : () => this.init.packages.bytes(pkg), { signal: this.init.signal })
      this.hosts.set(peer.peerId, { state: 'agent', version: result.version, at: clock.now() })
      log.info('host took the agent role', { peer: peer.peerId, name: peer.name, version: result.version })
      return { peerId: peer.peerId, name: peer.name, ok: true, state: 'agent', version: result.version }
    } catch (err) {
      const why = describeError(err)
      const remote = err instanceof HoldfastError ? err.details.remoteCode : undefined
      const code = typeof remote === 'string' ? remote : errorCode(err)
      this.hosts.set(peer.peerId, { state: 'failed', why, at: clock.now() })
      log.warn('deploy failed; the host stays as it was', { peer: peer.peerId, name: peer.name, err: why })
      return { peerId: peer.peerId, name: peer.name, ok: false, state: 'failed', code, message: why }
    }
  }

  /**
   * Rolling upgrade: agents not on `version`, `batch` at a time (by name). A host counts as
   * upgraded when it accepted the package and came back announcing the new version within
   * the health timeout; the first batch with a failure ends the run, and the hosts after it
   * are not touched (backups go on there as before).
   */
  async upgrade (req: { version: string, batch?: number, healthTimeoutMs?: number }, signal: AbortSignal): Promise<UpgradeReport> {
    const pkg = await this.init.packages.forVersion(req.version, signal)
    const batch = req.batch ?? 1
    const healthMs = req.healthTimeoutMs ?? UPGRADE_HEALTH_TIMEOUT_MS
    const hosts = this.init.peers.agents().filter(p => this.init.isApproved(p.peerId) && p.version !== req.version).sort((a, b) => a.name.localeCompare(b.name) || a.peerId.localeCompare(b.peerId))
    const report: UpgradeReport = { version: req.version, batch, ok: true, batches: [], notAttempted: [] }
    for (let i = 0; i < hosts.length; i += batch) {
      const group = hosts.slice(i, i + batch)
      const offered = await Promise.all(group.map(async p => await this.offer(p, pkg)))
      const outcomes = await Promise.all(offered.map(async (o, j) => o.ok ? await this.cameBack(group[j], o, req.version, healthMs, signal) : o))
      report.batches.push(outcomes)
      if (outcomes.some(o => !o.ok)) {
        report.ok = false
        report.notAttempted = hosts.slice(i + batch).map(p => ({ peerId: p.peerId, name: p.name, version: p.version }))
        this.init.log.warn('rolling upgrade stopped at a failed batch', { version: req.version, failed: outcomes.filter(o => !o.ok).map(o => o.name || o.peerId), notAttempted: report.notAttempted.length })
        break
      }
    }
    return report
  }

  /**
   * Waits (bounded by the health timeout) for an upgraded host to run the new version: it
   * announces it over mDNS, or says so when asked (probe). It fails at once when the host says
   * its supervisor rolled this version back (the new version did not report healthy: the
   * supervisor's reason is the message), and at the timeout when it never came back on it.
   */
  private async cameBack (peer: PeerRecord, outcome: DeployOutcome, version: string, timeoutMs: number, signal: AbortSignal): Promise<DeployOutcome> {
    const { clock } = this.init
    const until = clock.now() + timeoutMs
    let lastError: string | undefined
    const failed = (why: string): DeployOutcome => {
      this.hosts.set(peer.peerId, { state: 'failed', why, at: clock.now() })
      this.init.log.warn('upgraded host did not come back healthy on the new version', { peer: peer.peerId, name: peer.name, version, why })
      return { ...outcome, ok: false, state: 'failed', code: 'UPGRADE_FAILED', message: why }
    }
    for (;;) {
      // the table's record: a restart may have replaced the one the batch started with
      const record = this.init.peers.all().find(p => p.peerId === peer.peerId) ?? peer
      if (record.version === version) return outcome
      if (this.init.probe !== undefined && record.addrs.length > 0) {
        try {
          const now = await this.init.probe(record, signal)
          record.version = now.version
          lastError = undefined
          if (now.version === version) return outcome
          if (now.rolledBack?.version === version) return failed(`rolled back to ${now.version}: ${version} ${now.rolledBack.reason}`)
        } catch (err) {
          signal.throwIfAborted()
          lastError = describeError(err)
        }
      }
      if (clock.now() >= until) return failed(`installed ${version} but did not come back on it within ${Math.round(timeoutMs / 1000)} s (runs ${record.version || 'nothing known'}${lastError === undefined ? '' : `; last contact: ${lastError}`})`)
      await clock.sleep(CAME_BACK_POLL_MS, signal)
    }
  }
}
