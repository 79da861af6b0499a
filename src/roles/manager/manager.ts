/**
 * The manager role: finds endpoints (mDNS + static peers), and on a timer dials each agent in
 * turn, pulls what it has staged into the store, and answers the admin CLI.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { HoldfastConfig } from '../../config/config.js'
import { loadOrCreateIdentity } from '../../node/identity.js'
import { createHoldfastNode, listenPort, type HoldfastNode } from '../../node/libp2p-node.js'
import { Discovery } from '../../node/discovery.js'
import { ENROL_PROLOGUE, encodeJoinToken, fleetTag, isPeerId } from '../../node/fleet.js'
import { EnrolService } from '../../protocols/enrol.js'
import { Membership, type MemberState } from './membership.js'
import { Catalog } from '../../store/core/catalog.js'
import { PackStore } from '../../store/core/packs.js'
import { pathFilter, restoreSnapshot, type RestoreProgress, type RestoreSummary } from '../../store/restore.js'
import { parsePathSpec, type PathSpec } from '../../model/path-spec.js'
import { MANAGER_API, type ManagerCommands, type RestoreRequest } from '../../admin/api.js'
import { RestoreClient, type AgentRestoreSummary, type RestorePushProgress } from '../../protocols/restore.js'
import { AdminServer } from '../../admin/admin-socket.js'
import { HoldfastError, describeError } from '../../util/errors.js'
import type { Clock } from '../../util/clock.js'
import type { Logger } from '../../util/log.js'
import { HOLDFAST_VERSION } from '../../version.js'
import { PeerTable, type PeerRecord } from './peer-table.js'
import { Puller, type PullProgress, type PullResult } from './puller.js'
import { storeAdminHandlers } from './store-admin.js'
import { lastHolding, pathAt, resolveSnapshot } from '../../store/queries/browse.js'
import { ReadWriteLock } from '../../util/mutex.js'
import { ManifestClient } from '../../protocols/manifest.js'
import { Scheduler, type PeerScheduleStatus } from './scheduler/scheduler.js'
import { BandwidthBudget, parseBudgetProfiles, parseRate } from './scheduler/bandwidth-budget.js'
import { parseUploadWindows } from '../../model/upload-window.js'
import { createPullVisit } from './scheduler/visit.js'
import { peerIdFromString } from '@libp2p/peer-id'
import { StaticPeerFile, parseStaticPeer } from './static-peers.js'
import { endpointHealth, type EndpointHealth } from './health/fleet-health.js'
import { RateMeter } from './health/rate-meter.js'
import { ManagerMetrics, MetricsServer, type EndpointFigures, type ManagerFigures } from './health/metrics.js'
import { parseListenAddress } from '../../model/listen-address.js'
import { AuditLog, audited } from './audit-log.js'
import { EnrolThrottle } from './enrol-throttle.js'
import type { PrivateKey } from '@libp2p/interface'
import { CentralConfigStore, ConfigDelivery, FLEET_SCOPE, shortValue, type ConfigChange, type ConfigGetReply, type ConfigShowReply } from './central-config.js'
import { ConfigClient } from '../../protocols/config.js'
import { Deployer, UPGRADE_PROBE_TIMEOUT_MS, type DeployState } from './deploy/deployer.js'
import { PackageShelf } from './deploy/package-shelf.js'

/** Closing a dead connection must not hold up the round. */
const HANG_UP_TIMEOUT_MS = 2_000
/**
 * Longest prune waits for running pulls before it cuts them (LOCK_PREEMPTED; they resume next
 * round, asking only for what the store lacks). See docs/architecture.md, "Store lock".
 */
export const PRUNE_PREEMPTS_PULLS_AFTER_MS = 60_000

export interface PeerListRow {
  peerId: string
  name: string
  role: string
  version: string
  addresses: string[]
  source: string
  lastSeen: number
  /** Last time it answered the manager (a manifest); for a static peer the only sign of life. */
  lastContact?: number
  lastBackup?: number
  pendingBytes?: number
  pendingSets?: number
  lastError?: string
  /** What the scheduler is doing with it, and if not backing it up, why. */
  schedule?: PeerScheduleStatus
  /** Agents: state, why, last good backup, rate and overdue, as `holdfast peers` shows them (health/fleet-health.ts). */
  health?: EndpointHealth
  /** Agents: approved (pulled), pending (holds the fleet key, never approved: not pulled), revoked. */
  membership?: MemberState
  /** Agents: the central config version it reported applied, the one the manager holds for it, and why it refused that one. */
  configVersion?: number
  configWanted?: number
  configError?: string
  /** Bare nodes and deployed hosts: bare, deploying, agent, or failed with why (deploy/deployer.ts). */
  deploy?: { state: DeployState, why?: string }
}

export interface RoundResult {
  peers: Array<{ peerId: string, name: string, ok: boolean, snapshots: PullResult['snapshots'], bytesPulled: number, ms: number, error?: string }>
}

/** A restore pushed onto its endpoint: the agent's summary, and where it wrote it. */
export interface EndpointRestoreSummary extends AgentRestoreSummary {
  snapshotId: number
  endpoint: string
  /** The directory under the agent's restore root. */
  label: string
  ms: number
}

export class Manager {
  private node?: HoldfastNode
  private discovery?: Discovery
  private admin?: AdminServer<ManagerCommands>
  private puller?: Puller
  readonly catalog: Catalog
  readonly packs: PackStore
  readonly peers: PeerTable
  private readonly controller = new AbortController()
  private peerId = ''
  private scheduler?: Scheduler
  private budget?: BandwidthBudget
  /** backup-now callers watching progress. */
  private readonly progressListeners = new Set<(p: PullProgress) => void>()
  /**
   * Pulls and verify read the store (a pull relies on the chunks the catalog says it has);
   * prune deletes from it. Readers share, prune waits for them and holds new ones off.
   */
  private readonly storeLock: ReadWriteLock
  private loop?: Promise<void>
  /** The last pull failed because the store's disk is full (cleared by the next pull that commits). */
  private storeFull?: { since: number, error: string }
  /** Peers added by hand at runtime (`holdfast peers add`), persisted in the data dir. */
  private staticPeerFile?: StaticPeerFile
  private readonly rates: RateMeter
  private metrics?: ManagerMetrics
  private metricsServer?: MetricsServer
  private metricsUrl?: string
  readonly audit: AuditLog
  /** Tokens, approved and revoked hosts (membership.ts). */
  readonly membership: Membership
  /** The enrolment listener: its own node, its own port, the enrol protocol only. */
  private enrolNode?: HoldfastNode
  /** Central agent settings (`holdfast config`), and their delivery on visits. */
  readonly centralConfig: CentralConfigStore
  private configDelivery?: ConfigDelivery
  /** Gives bare nodes the agent role and runs rolling upgrades (deploy/deployer.ts). */
  private deployer?: Deployer
  private enrolThrottle?: EnrolThrottle

  constructor (readonly config: HoldfastConfig, private readonly clock: Clock, private readonly log: Logger) {
    mkdirSync(config.dataDir, { recursive: true, mode: 0o700 })
    this.catalog = new Catalog(join(config.dataDir, 'catalog.db'))
    this.packs = new PackStore(join(config.dataDir, 'packs'))
    this.storeLock = new ReadWriteLock(clock)
    this.audit = new AuditLog(join(config.dataDir, 'audit.log'))
    this.membership = new Membership(config.dataDir)
    this.centralConfig = new CentralConfigStore(config.dataDir)
    // a live peer answers every re-query; three missed in a row (or two minutes, the SRV TTL) means it moved
    this.peers = new PeerTable({ addressTtlMs: Math.max(120_000, 3 * config.mdns.queryIntervalSeconds * 1000) })
    this.rates = new RateMeter(clock.now)
  }

  get id (): string { return this.peerId }

  async start (): Promise<void> {
    // First: an address that cannot be had fails the start loudly, before a node or socket is
    // open that would keep a failed daemon alive. Figures are read at each scrape, so a scrape
    // before the scheduler exists sees an empty fleet.
    this.metrics = new ManagerMetrics({ endpoints: () => this.endpointFigures(), manager: () => this.managerFigures() })
    if (this.config.manager.metrics.listen !== '') {
      this.metricsServer = new MetricsServer(this.metrics, this.log.child('metrics'))
      this.metricsUrl = await this.metricsServer.start(parseListenAddress(this.config.manager.metrics.listen))
      this.log.info('metrics endpoint listening', { url: this.metricsUrl })
    }
    const recovered = this.packs.recover(this.catalog.packExtents())
    if (recovered.removedPacks.length > 0 || recovered.truncatedBytes > 0) {
      this.log.info('recovered packs after an interrupted pull', { removedPacks: recovered.removedPacks.length, truncatedBytes: recovered.truncatedBytes })
    }
    const identity = await loadOrCreateIdentity(this.config.dataDir)
    this.peerId = identity.peerId
    // a revoked host is refused on every connection, both ways, once Noise has proved its id
    const node = await createHoldfastNode({ privateKey: identity.privateKey, fleetKey: this.config.fleetKey, listen: this.config.listen, denied: id => this.membership.isRevoked(id) })
    this.node = node
    this.enrolNode = await this.startEnrolment(identity.privateKey)
    this.configDelivery = new ConfigDelivery(this.centralConfig, new ConfigClient(node), this.log.child('config'))
    this.deployer = new Deployer({
      host: node,
      peers: this.peers,
      policy: this.config.manager.deploy,
      packages: new PackageShelf(this.config.dataDir, identity),
      clock: this.clock,
      log: this.log.child('deploy'),
      isApproved: id => this.membership.stateOf(id) === 'approved',
      onAgent: peer => { this.scheduler?.returned(peer); this.scheduler?.wake() },
      audit: (target, ok, detail) => { this.audit.append({ time: this.clock.now(), actor: { uid: 'network' }, command: 'deploy', target, outcome: ok ? 'ok' : 'failed', detail }) },
      // what an upgraded host runs now, from its manifest (a short bound: it may be restarting)
      probe: async (peer, signal) => {
        const m = await new ManifestClient(node).list(peer.addrs, { signal, timeoutMs: UPGRADE_PROBE_TIMEOUT_MS })
        return { version: m.agentVersion, ...(m.rolledBack === undefined ? {} : { rolledBack: m.rolledBack }) }
      },
      signal: this.controller.signal
    })
    this.puller = new Puller({ host: node, catalog: this.catalog, packs: this.packs, clock: this.clock, log: this.log.child('pull') })
    const staticPeerFile = new StaticPeerFile(this.config.dataDir)
    this.staticPeerFile = staticPeerFile
    this.discovery = new Discovery({
      self: { peerId: this.peerId, role: 'manager', version: HOLDFAST_VERSION, name: this.config.name, port: listenPort(node), fleetTag: fleetTag(this.config.fleetKey) },
      mdns: this.config.mdns.enabled,
      queryIntervalMs: this.config.mdns.queryIntervalSeconds * 1000,
      staticPeers: [...this.config.staticPeers, ...staticPeerFile.list().map(p => p.address)],
      onPeer: peer => {
        const { isNew, newAddress, record } = this.peers.upsert(peer, this.clock.now())
        // An endpoint the catalog knows has answered us before (a backup proved its id): after a
        // manager restart it must not queue behind the dial budget meant for strangers.
        if (isNew && record.lastContact === undefined) record.lastContact = this.catalog.endpointLastSeen(peer.peerId)
        if (isNew) this.log.info('found peer', { peer: peer.peerId, role: peer.role, via: peer.source, addrs: peer.addrs.map(String) })
        else if (newAddress) this.log.info('peer announced a new address', { peer: peer.peerId, addrs: record.addrs.map(String) })
        if (newAddress && record.role === 'agent') this.scheduler?.returned(record)
        this.deployer?.sighted(record)
      },
      onPeerGone: gone => { this.peers.forget(gone.peerId, gone.addrs) },
      clock: this.clock,
      log: this.log.child('discovery')
    })
    // A dial that reached a peer (Noise proved its id) is what lets a new address displace the
    // one that worked; a record alone never does (peer-table.ts, confirm).
    node.addEventListener('connection:open', evt => {
      const c = evt.detail
      if (c.direction === 'outbound') this.peers.confirm(c.remotePeer.toString(), c.remoteAddr, this.clock.now())
    })
    this.discovery.start()
    const store = storeAdminHandlers(this.catalog, this.packs, { exclusive: async (fn) => await this.storeLock.write(fn, { preemptReadersAfterMs: PRUNE_PREEMPTS_PULLS_AFTER_MS }), shared: async (fn) => await this.storeLock.read(fn) })
    const now = this.clock.now
    this.admin = new AdminServer(this.config.adminSocket, MANAGER_API, {
      ...store,
      // what changes the store or reads an endpoint's data out of it is recorded (audit-log.ts)
      prune: audited(this.audit, now, 'prune', () => 'store', store.prune, req => req.dryRun === true),
      'retention-set': audited(this.audit, now, 'retention-set', req => req.endpoint ?? 'fleet default', store['retention-set']),
      audit: async (req) => this.audit.read(req.since),
      'config-show': async (req) => this.configShow(req.endpoint),
      'config-get': async (req) => this.configGet(req.endpoint, req.key),
      'config-set': async (req) => this.configSet(req.endpoint, req.key, req.value),
      deploy: audited(this.audit, now, 'deploy', req => req.node, async (req) => await (this.deployer as Deployer).deployNow(req.node)),
      'deploy-status': async () => (this.deployer as Deployer).status(),
      'deploy-upgrade': audited(this.audit, now, 'deploy', req => `agents → ${req.version}, ${req.batch ?? 1} at a time`, async (req, ctx) => await (this.deployer as Deployer).upgrade(req, AbortSignal.any([ctx.signal, this.controller.signal]))),
      'deploy-package-add': audited(this.audit, now, 'deploy', req => `package ${req.tarball} shelved as ${req.version}`, async (req, ctx) => await (this.deployer as Deployer).addPackage(req.tarball, req.version, ctx.signal)),
      peers: async (req) => this.peerList(req.overdueAfterMs),
      'peers-add': audited(this.audit, now, 'peers-add', req => req.address, async (req) => this.addStaticPeer(req.address)),
      'peers-remove': audited(this.audit, now, 'peers-remove', req => req.target, async (req) => this.removeStaticPeer(req.target)),
      'peers-approve': audited(this.audit, now, 'approve', req => req.peerId, async (req) => this.approve(req.peerId)),
      'peers-revoke': audited(this.audit, now, 'revoke', req => req.peerId, async (req) => await this.revoke(req.peerId)),
      'token-create': audited(this.audit, now, 'token-create', req => `${req.uses ?? 1} use(s), ${Math.round((req.expiresInMs ?? DEFAULT_TOKEN_TTL_MS) / 60_000)} min`, async (req) => this.createToken(req)),
      'token-list': async () => this.membership.tokens(this.clock.now()),
      'token-revoke': audited(this.audit, now, 'token-revoke', req => req.id, async (req) => this.membership.revokeToken(req.id, this.clock.now())),
      snapshots: async (req) => this.catalog.snapshots(req.endpoint === undefined ? undefined : this.catalog.findEndpoint(req.endpoint).id),
      restore: audited(this.audit, now, 'restore', req => `${req.endpoint}${req.snapshot !== undefined ? ` snapshot ${req.snapshot}` : ''}${req.path !== undefined ? ` path ${req.path}` : ''} → ${req.toEndpoint === true ? 'the endpoint' : req.target ?? ''}`, async (req, ctx) => await this.restore(req, ctx.progress, ctx.signal)),
      'backup-now': audited(this.audit, now, 'backup-now', () => 'all agents', async (req, ctx) => await this.backupNow(req, ctx.progress, ctx.signal)),
      status: async () => ({ peerId: this.peerId, name: this.config.name, listen: node.getMultiaddrs().map(String), mdns: this.discovery?.mdnsEnabled ?? false, peers: this.peers.all().length, snapshots: this.catalog.snapshotCount(), storedBytes: this.catalog.storedBytes(), store: this.storeFull === undefined ? 'ok' : 'store full', storeError: this.storeFull?.error, metrics: this.metricsUrl })
    }, this.log, { group: this.config.admin.group })
    this.scheduler = this.createScheduler(node)
    await this.admin.start()
    this.log.info('manager started', { peer: this.peerId, listen: node.getMultiaddrs().map(String) })
    this.loop = this.scheduler.run()
  }

  async stop (): Promise<void> {
    this.controller.abort(new HoldfastError('ABORTED', 'manager stopping'))
    await this.loop?.catch(() => {})
    await this.puller?.close()
    await this.metricsServer?.stop()
    await this.admin?.stop()
    this.discovery?.stop()
    await this.enrolNode?.stop()
    this.enrolThrottle?.flush()
    await this.node?.stop()
    this.packs.close()
    this.catalog.close()
    this.centralConfig.close()
  }

  peerList (overdueAfterMs = this.config.manager.overdueAfterHours * 3_600_000): PeerListRow[] {
    const endpoints = new Map(this.catalog.endpoints().map(e => [e.peerId, e]))
    const now = this.clock.now()
    return this.peers.all().map(p => {
      const schedule = p.role === 'agent' ? this.scheduler?.status(p) : undefined
      const storeLastBackup = endpoints.get(p.peerId)?.lastBackup ?? p.lastBackup
      return {
      peerId: p.peerId,
      name: p.name,
      role: p.role,
      version: p.version,
      addresses: p.addrs.map(String),
      source: p.source,
      lastSeen: Math.max(p.lastSeen, p.lastContact ?? 0),
      lastContact: p.lastContact,
      lastBackup: storeLastBackup,
      pendingBytes: p.pendingBytes,
      pendingSets: p.pendingSets,
      lastError: p.lastError,
      schedule,
      health: p.role !== 'agent'
        ? undefined
        : membershipHealth(this.membership.stateOf(p.peerId), p.peerId, endpointHealth({ addrs: p.addrs.length, firstSeen: p.firstSeen, failures: p.failures, lastFailure: p.lastFailure, lastError: p.lastError, schedule, storeLastBackup, rate: this.rates.rate(p.peerId) }, now, overdueAfterMs)),
      membership: p.role === 'agent' ? this.membership.stateOf(p.peerId) : undefined,
      ...(p.role === 'agent' ? this.configFields(p.peerId, p.name) : {}),
      deploy: deployField(this.deployer, p)
      }
    })
  }

  private configFields (peerId: string, name: string): Pick<PeerListRow, 'configVersion' | 'configWanted' | 'configError'> {
    const c = this.configDelivery?.state(peerId, name)
    if (c === undefined || (c.wanted === 0 && c.applied === undefined)) return {}
    return { configVersion: c.applied, configWanted: c.wanted, configError: c.error }
  }

  /** An endpoint as `config` names it: 'all', a known peer (by id or name), or a name not seen yet. */
  private configScope (endpoint: string): { scope: string, peer?: { peerId: string, name: string } } {
    if (endpoint === FLEET_SCOPE) return { scope: FLEET_SCOPE }
    const peer = this.peers.get(endpoint) ?? this.peers.agents().find(p => p.name === endpoint)
    if (peer !== undefined) return { scope: endpoint, peer: { peerId: peer.peerId, name: peer.name } }
    if (isPeerId(endpoint)) return { scope: endpoint, peer: { peerId: endpoint, name: '' } }
    // a name the manager has not met: its settings wait for the host that takes it
    return { scope: endpoint, peer: { peerId: '', name: endpoint } }
  }

  private configShow (endpoint: string): ConfigShowReply {
    const { scope, peer } = this.configScope(endpoint)
    const own = this.centralConfig.scope(scope)
    const agents = this.peers.agents()
      .filter(p => peer === undefined || p.peerId === peer.peerId)
      .flatMap(p => { const s = this.configDelivery?.state(p.peerId, p.name); return s === undefined ? [] : [s] })
    const reply: ConfigShowReply = { scope, settings: own.settings, version: own.version, agents, history: this.centralConfig.history(peer === undefined ? [scope] : [FLEET_SCOPE, ...new Set([scope, peer.name, peer.peerId].filter(s => s !== ''))]) }
    if (peer !== undefined) reply.effective = this.centralConfig.effective(peer.peerId, peer.name)
    return reply
  }

  private configGet (endpoint: string, key: string): ConfigGetReply {
    const { scope, peer } = this.configScope(endpoint)
    const scopes = peer === undefined ? [scope] : [...new Set([peer.peerId, peer.name, scope].filter(s => s !== ''))].concat(FLEET_SCOPE)
    for (const s of scopes) {
      const own = this.centralConfig.scope(s)
      const value = (own.settings as Record<string, unknown>)[key]
      if (value !== undefined) return { scope, key, value, from: s, version: own.version }
    }
    return { scope, key, from: 'unset', version: 0 }
  }

  /** Recorded in the audit log with the old and new value, whether it took or not. */
  private configSet (endpoint: string, key: string, value: unknown): ConfigChange {
    const { scope } = this.configScope(endpoint)
    const target = `${scope} ${key}`
    let change: ConfigChange
    try {
      change = this.centralConfig.set(scope, key, value, this.clock.now())
    } catch (err) {
      this.audit.append({ time: this.clock.now(), actor: { uid: 'unknown' }, command: 'config-change', target, outcome: 'failed', detail: err instanceof HoldfastError ? `${err.code}: ${err.message}`.slice(0, 300) : 'UNKNOWN' })
      throw err
    }
    this.audit.append({ time: this.clock.now(), actor: { uid: 'unknown' }, command: 'config-change', target, outcome: 'ok', detail: `${shortValue(change.old)} → ${shortValue(change.new)} (version ${change.version})` })
    this.log.info('central config changed; agents get it on their next contact', { scope, key, version: change.version })
    return change
  }

  /** `holdfast peers add`: persisted first, then dialled like a config static peer. */
  private addStaticPeer (address: string): ManagerCommands['peers-add']['reply'] {
    const peer = parseStaticPeer(address)
    if (peer.peerId === this.peerId) throw new HoldfastError('ADMIN_BAD_REQUEST', `'${address}' is this manager itself`)
    const added = (this.staticPeerFile as StaticPeerFile).add(peer)
    this.discovery?.addStatic(peer.address)
    this.log.info(added ? 'static peer added' : 'static peer was listed already', { peer: peer.peerId, addr: peer.address })
    return { peerId: peer.peerId, address: peer.address, added }
  }

  /** `holdfast peers remove`: a peer (by id or multiaddr) added by hand; the config's are the config's. */
  private removeStaticPeer (target: string): ManagerCommands['peers-remove']['reply'] {
    const gone = (this.staticPeerFile as StaticPeerFile).remove(target.trim())
    if (gone.length === 0) {
      const inConfig = this.config.staticPeers.some(a => a === target || a.endsWith(`/p2p/${target}`))
      if (inConfig) throw new HoldfastError('ADMIN_BAD_REQUEST', `'${target}' is listed in manager.json's staticPeers; remove it there and restart the manager`)
      throw new HoldfastError('PEER_UNKNOWN', `no peer added with 'peers add' matches '${target}' (give its peer id or the multiaddr it was added with)`)
    }
    for (const p of gone) {
      // a config entry for the same address keeps it
      if (this.config.staticPeers.includes(p.address)) continue
      const addrs = this.peers.get(p.peerId)?.addrs.filter(m => m.toString() === p.address) ?? []
      this.peers.dropStatic(p.peerId, addrs)
    }
    this.log.info('static peer removed', { target, addrs: gone.map(p => p.address) })
    return { removed: gone.map(p => p.address) }
  }

  private endpointFigures (): EndpointFigures[] {
    return this.peerList().flatMap(r => r.health === undefined ? [] : [{ peerId: r.peerId, name: r.name, state: r.health.state, lastGoodAt: r.health.lastGoodAt, lastGoodAgeMs: r.health.lastGoodAgeMs, pendingBytes: r.pendingBytes, rate: r.health.rate, overdue: r.health.overdue }])
  }

  private managerFigures (): ManagerFigures {
    const scheduler = this.scheduler
    let queued = 0
    if (scheduler !== undefined) {
      for (const p of this.peers.agents()) {
        const state = scheduler.status(p).schedule.state
        if (state === 'waiting-for-slot' || state === 'budget-exhausted') queued++
      }
    }
    return { activePulls: scheduler?.activeVisits ?? 0, queueLength: queued, budgetBytesPerSecond: this.budget?.total() ?? 0 }
  }

  /**
   * The scheduler (scheduler/scheduler.ts) with a visit that reads the manifest, applies
   * windows and idleness, and pulls under the store's read lock at the budget's share.
   */
  private createScheduler (node: HoldfastNode): Scheduler {
    const m = this.config.manager
    const windows = {
      default: m.uploadWindows.default === undefined ? undefined : parseUploadWindows(m.uploadWindows.default),
      endpoints: new Map(Object.entries(m.uploadWindows.endpoints).map(([k, v]) => [k, parseUploadWindows(v)]))
    }
    const caps = new Map(Object.entries(m.endpointCaps).map(([k, v]) => [k, parseRate(v)]))
    const budget = new BandwidthBudget({ bytesPerSecond: m.bandwidthBytesPerSecond, profiles: parseBudgetProfiles(m.bandwidthProfiles) }, this.clock.now)
    this.budget = budget
    const visit = createPullVisit({
      manifests: new ManifestClient(node),
      puller: this.puller as Puller,
      clock: this.clock,
      log: this.log.child('visit'),
      windows,
      policy: { maxAgeMs: m.maxAgeHours * 3_600_000, maxAgeRateFraction: m.maxAgeRateFraction },
      around: async fn => await this.storeLock.read(fn, { preemptible: true }),
      onViolation: async peer => { await this.hangUp(peer.peerId) },
      onProgress: p => {
        this.rates.record(p)
        for (const l of this.progressListeners) l(p)
      },
      onManifest: (peer, manifest) => {
        peer.lastContact = this.clock.now()
        peer.version = manifest.agentVersion
        if (peer.name === '' && manifest.name !== undefined) peer.name = manifest.name
        peer.pendingSets = manifest.sets.length
        peer.pendingBytes = manifest.sets.reduce((n, set) => n + set.storedBytes, 0)
      },
      onContact: async (peer, manifest, signal) => { await this.configDelivery?.deliver(peer, manifest.configVersion, signal) },
      onPulled: (peer, pulled) => {
        if (pulled.snapshots.length > 0) {
          peer.lastBackup = this.clock.now()
          this.storeFull = undefined
        }
      }
    })
    const lastBackups = (): Map<string, number | undefined> => new Map(this.catalog.endpoints().map(e => [e.peerId, e.lastBackup]))
    return new Scheduler({
      clock: this.clock,
      table: this.peers,
      // pending and revoked hosts are never pulled (the peer list says why)
      eligible: peer => this.membership.stateOf(peer.peerId) === 'approved',
      visit: async (peer, ctx) => {
        const started = this.clock.now()
        this.metrics?.pullStarted()
        let outcome: Awaited<ReturnType<typeof visit>>
        try {
          outcome = await visit(peer, ctx)
        } finally {
          this.rates.end(peer.peerId)
        }
        const ms = this.clock.now() - started
        this.metrics?.pullEnded(outcome.kind === 'pulled' ? { ok: true, bytes: outcome.bytesPulled, ms } : outcome.kind === 'skipped' ? { ok: 'skipped', ms } : { ok: false, code: outcome.code ?? errorCodeOf(outcome.error, outcome.failure), ms })
        if (outcome.kind === 'failed' && outcome.failure === 'unreachable') {
          // not there, or the connection died under the pull: ask the network where the peer
          // is now, and close what may still look open so the next pull dials anew
          this.discovery?.requery()
          await this.hangUp(peer.peerId)
        }
        if (outcome.kind === 'failed' && outcome.code === 'STORE_FULL') this.storeFull ??= { since: this.clock.now(), error: outcome.error }
        return outcome
      },
      budget,
      log: this.log.child('schedule'),
      maxConcurrent: m.maxConcurrentPulls,
      intervalMs: m.pullIntervalSeconds * 1000,
      sliceMs: m.sliceSeconds * 1000,
      maxAgeMs: m.maxAgeHours * 3_600_000,
      capOf: peer => caps.get(peer.peerId) ?? caps.get(peer.name),
      lastBackupOf: peer => lastBackups().get(peer.peerId) ?? undefined
    }, this.controller.signal)
  }

  /**
   * The enrolment listener: a second node with the manager's identity (so the token's peer id
   * is proved on dial) and a public prologue, on its own port, serving the enrol protocol
   * only. Its port is kept across restarts so tokens already handed out stay good.
   */
  private async startEnrolment (privateKey: PrivateKey): Promise<HoldfastNode> {
    const portFile = join(this.config.dataDir, 'enrol-port')
    let saved: number | undefined
    try {
      const n = Number(readFileSync(portFile, 'utf8').trim())
      if (Number.isInteger(n) && n > 0 && n <= 65535) saved = n
    } catch {}
    const listenOn = (port: number): string[] => this.config.listen.map(a => a.replace(/\/tcp\/\d+(?=\/|$)/, `/tcp/${port}`))
    const create = async (port: number): Promise<HoldfastNode> => await createHoldfastNode({ privateKey, fleetKey: this.config.fleetKey, prologue: ENROL_PROLOGUE, listen: listenOn(port), denied: id => this.membership.isRevoked(id) })
    let node: HoldfastNode
    try {
      node = await create(saved ?? 0)
    } catch (err) {
      if (saved === undefined) throw err
      this.log.warn('last enrolment port is taken; tokens made before this start name the old one', { port: saved })
      node = await create(0)
    }
    try {
      writeFileSync(portFile, `${listenPort(node)}\n`, { mode: 0o600 })
    } catch (err) {
      this.log.warn('cannot save the enrolment port; tokens will not survive a restart', { err: describeError(err) })
    }
    // refusals are audited as counts (enrol-throttle.ts), not one line per attempt
    this.enrolThrottle = new EnrolThrottle(this.clock, r => {
      this.audit.append({ time: this.clock.now(), actor: { uid: 'network' }, command: 'join', target: `${r.count} attempt(s) refused by the rate limit, the last from ${r.lastIp === '' ? '?' : r.lastIp} as ${r.lastPeer}`, outcome: 'failed', detail: 'ENROL_RATE_LIMITED' })
    })
    const throttle = this.enrolThrottle
    await new EnrolService(node, {
      log: this.log.child('enrol'),
      enrol: async (request, peerId, ip) => {
        const target = `${peerId}${request.name === '' ? '' : ` (${request.name})`}`
        const admitted = throttle.admit(peerId, ip)
        if (!admitted.ok) throw new HoldfastError('ENROL_RATE_LIMITED', `too many enrolment attempts; retry in ${Math.ceil(admitted.retryInMs / 1000)} s`, { retryInMs: admitted.retryInMs })
        let state: MemberState
        try {
          state = this.membership.redeem(request.secret, peerId, request.name, this.config.membership.autoApprove, this.clock.now())
        } catch (err) {
          throttle.failed(peerId, ip)
          this.audit.append({ time: this.clock.now(), actor: { uid: 'network' }, command: 'join', target, outcome: 'failed', detail: describeError(err) })
          throw err
        }
        this.audit.append({ time: this.clock.now(), actor: { uid: 'network' }, command: 'join', target, outcome: 'ok', detail: state })
        this.log.info('host enrolled', { peer: peerId, name: request.name, state })
        return { fleetKey: this.config.fleetKey, managerPeerId: this.peerId, state: state === 'approved' ? 'approved' : 'pending' }
      }
    }).start()
    return node
  }

  private createToken (req: ManagerCommands['token-create']['request']): ManagerCommands['token-create']['reply'] {
    const addrs = [...new Set((this.enrolNode?.getMultiaddrs() ?? []).map(a => a.decapsulateCode(PEER_ID_CODE).toString()))]
    if (addrs.length === 0) throw new HoldfastError('NODE_NOT_LISTENING', 'the enrolment listener has no address')
    const { secret, row } = this.membership.createToken({ expiresInMs: req.expiresInMs ?? DEFAULT_TOKEN_TTL_MS, uses: req.uses ?? 1 }, this.clock.now())
    return { ...row, token: encodeJoinToken({ secret, managerPeerId: this.peerId, addrs }) }
  }

  private approve (peerId: string): ManagerCommands['peers-approve']['reply'] {
    checkPeerId(peerId)
    const record = this.membership.approve(peerId, this.clock.now())
    const peer = this.peers.get(peerId)
    if (peer !== undefined) this.scheduler?.returned(peer)
    this.scheduler?.wake()
    return { peerId, state: record.state }
  }

  /** Recorded first (the gater refuses from then on), then every open connection is closed. */
  private async revoke (peerId: string): Promise<ManagerCommands['peers-revoke']['reply']> {
    checkPeerId(peerId)
    const record = this.membership.revoke(peerId, this.clock.now())
    await this.hangUp(peerId)
    try {
      await this.enrolNode?.hangUp(peerIdFromString(peerId), { signal: AbortSignal.timeout(HANG_UP_TIMEOUT_MS) })
    } catch {}
    this.log.warn('peer revoked: connections closed, later dials refused; its backups are kept', { peer: peerId })
    return { peerId, state: record.state }
  }

  /** Closes our connections to a peer, bounded; failing to close is only logged. */
  private async hangUp (peerId: string): Promise<void> {
    try {
      await this.node?.hangUp(peerIdFromString(peerId), { signal: AbortSignal.timeout(HANG_UP_TIMEOUT_MS) })
    } catch (err) {
      this.log.debug('closing a dead connection failed', { peer: peerId, err: describeError(err) })
    }
  }

  private async backupNow (req: ManagerCommands['backup-now']['request'], progress: (p: PullProgress) => void, signal: AbortSignal): Promise<RoundResult> {
    const expect = req.expectPeers ?? 0
    const timeoutMs = req.timeoutMs ?? 30_000
    const deadline = this.clock.now() + timeoutMs
    // Bounded wait for discovery to find the expected number of agents.
    const approved = (): PeerRecord[] => this.peers.agents().filter(p => this.membership.stateOf(p.peerId) === 'approved')
    while (approved().length < expect) {
      if (this.clock.now() >= deadline) {
        throw new HoldfastError('TIMEOUT', `found ${approved().length} of ${expect} expected approved agents within ${timeoutMs / 1000} s`)
      }
      await this.clock.sleep(100, signal)
    }
    // every agent now, ignoring windows, idleness and backoff; k at a time, each pulled to the end
    const scheduler = this.scheduler as Scheduler
    const started = this.clock.now()
    this.progressListeners.add(progress)
    try {
      const aborted = new Promise<never>((_resolve, reject) => {
        if (signal.aborted) reject(signal.reason)
        signal.addEventListener('abort', () => { reject(signal.reason) }, { once: true })
      })
      aborted.catch(() => {})
      const visits = await Promise.race([scheduler.visitNow(approved()), aborted])
      return {
        peers: visits.map(({ peer, outcome, earlier, earlierSince }) => {
          const ms = this.clock.now() - Math.min(started, earlierSince ?? started)
          // a scheduled pull already under way when backup-now came is part of what it moved
          const before = earlier.flatMap(o => o.kind === 'pulled' ? [o.detail as PullResult] : [])
          const snapshots = before.flatMap(p => p.snapshots)
          const bytesPulled = before.reduce((n, p) => n + p.bytesPulled, 0)
          if (outcome.kind === 'pulled') {
            const pulled = outcome.detail as PullResult
            return { peerId: peer.peerId, name: peer.name, ok: true, snapshots: [...snapshots, ...pulled.snapshots], bytesPulled: bytesPulled + pulled.bytesPulled, ms }
          }
          if (outcome.kind === 'failed') return { peerId: peer.peerId, name: peer.name, ok: false, snapshots, bytesPulled, ms, error: outcome.error }
          return { peerId: peer.peerId, name: peer.name, ok: true, snapshots, bytesPulled, ms }
        })
      }
    } finally {
      this.progressListeners.delete(progress)
    }
  }

  private async restore (req: RestoreRequest, progress: (p: RestoreProgress | RestorePushProgress) => void, signal: AbortSignal): Promise<RestoreSummary | EndpointRestoreSummary> {
    const endpoint = this.catalog.findEndpoint(req.endpoint)
    const chosen = req.snapshot !== undefined || req.at !== undefined
    let snapshotId = resolveSnapshot(this.catalog, endpoint, req).id
    // The reading of --path the snapshot holds (model/path-spec.ts), as ls would choose it.
    let spec: PathSpec | undefined
    if (req.path !== undefined) {
      const candidates = parsePathSpec(req.path)
      spec = pathAt(this.catalog, endpoint.id, snapshotId, candidates)
      if (spec === undefined) {
        // A path deleted since: without an explicit snapshot, restore its last version.
        const last = chosen ? undefined : lastHolding(this.catalog, endpoint.id, candidates)
        if (last === undefined) throw new HoldfastError('PATH_NOT_FOUND', `no path '${req.path}' in snapshot ${snapshotId}`)
        spec = last.spec
        snapshotId = last.snapshotId
      }
    }
    if (req.toEndpoint === true) return await this.pushRestore(endpoint.peerId, snapshotId, spec, req.overwrite === true, progress, signal)
    // the decoder lets no restore without toEndpoint through without an absolute target
    return await restoreSnapshot(this.catalog, this.packs, { endpointId: endpoint.id, snapshotId, path: spec, target: req.target as string, keepSetuid: req.keepSetuid === true, signal, onProgress: p => { progress(p) } })
  }

  /**
   * Pushes a snapshot (or one path of it) back onto its endpoint over /holdfast/restore/1,
   * dialling the addresses discovery found. The store's read lock keeps prune from removing
   * a chunk the push is about to send.
   */
  private async pushRestore (peerId: string, snapshotId: number, path: PathSpec | undefined, overwrite: boolean, progress: (p: RestorePushProgress) => void, signal: AbortSignal): Promise<EndpointRestoreSummary> {
    const peer = this.peers.get(peerId)
    if (peer === undefined || peer.addrs.length === 0) throw new HoldfastError('PEER_UNKNOWN', `endpoint ${peerId} has not been found on the network; it must be reachable to restore onto it`)
    const endpointId = this.catalog.findEndpoint(peerId).id
    const started = this.clock.now()
    // Named by the snapshot and its commit time: pushing the same snapshot again meets its
    // own earlier restore, which the agent refuses to write into unless told to overwrite.
    const committed = new Date(this.catalog.snapshot(snapshotId).committedAt).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')
    const label = `restore-${snapshotId}-${committed}`
    const restoreId = `${snapshotId}-${started.toString(36)}-${Math.random().toString(36).slice(2, 8)}`
    const filter = path === undefined ? undefined : pathFilter(path)
    const catalog = this.catalog
    const packs = this.packs
    const client = new RestoreClient(this.node as HoldfastNode)
    // what the files hold, so the agent can refuse a restore that cannot fit before it writes
    let bytes = 0
    for (const e of catalog.treeAt(endpointId, snapshotId)) if (e.type === 'file' && (filter === undefined || filter(e))) bytes += e.size
    const summary = await this.storeLock.read(async () => await client.push(peer.addrs, { restoreId, label, overwrite, bytes }, {
      entries: function * () {
        for (const e of catalog.treeAt(endpointId, snapshotId)) if (filter === undefined || filter(e)) yield e
      },
      chunk: id => {
        // only what this endpoint sent: never another endpoint's data (docs/security.md)
        const loc = catalog.ownedChunkLocation(endpointId, id)
        return { rawLength: loc.rawlen, compressed: packs.read(loc) }
      }
    }, { signal: AbortSignal.any([signal, this.controller.signal]), onProgress: p => { progress(p) } }))
    this.log.info('restore pushed to endpoint', { peer: peerId, snapshot: snapshotId, label, files: summary.files, errors: summary.errors.length + summary.errorsOmitted })
    return { snapshotId, endpoint: peerId, label, ...summary, ms: this.clock.now() - started }
  }
}

/** A token's default life, when `token create` gives no --expires. */
export const DEFAULT_TOKEN_TTL_MS = 24 * 3_600_000
/** The multicodec of /p2p (a token's addresses carry no peer id: it is beside them). */
const PEER_ID_CODE = 421

function checkPeerId (peerId: string): void {
  if (!isPeerId(peerId)) throw new HoldfastError('ADMIN_BAD_REQUEST', `'${peerId}' is not a peer id`)
}

/** A host not approved is shown as such, whatever the scheduler would say: it is never pulled. */
function membershipHealth (state: MemberState, peerId: string, health: EndpointHealth): EndpointHealth {
  if (state === 'approved') return health
  return state === 'pending'
    ? { ...health, state: 'pending', reason: 'not-approved', why: `holds the fleet key but is not approved; not pulled (holdfast peers approve ${peerId})` }
    : { ...health, state: 'revoked', reason: 'revoked', why: 'revoked: connections refused; its backups are kept' }
}

function deployField (deployer: Deployer | undefined, p: PeerRecord): PeerListRow['deploy'] {
  const d = deployer?.stateOf(p)
  return d === undefined ? undefined : { state: d.state, ...(d.why === undefined ? {} : { why: d.why }) }
}

/** A failed visit's error code for the metrics: the code its message starts with, else its kind. */
function errorCodeOf (error: string, failure: string): string {
  return /^([A-Z][A-Z0-9_]{1,40}):/.exec(error)?.[1] ?? failure.toUpperCase()
}
