/**
 * The manager role: finds endpoints (mDNS + static peers), and on a timer dials each agent in
 * turn, pulls what it has staged into the store, and answers the admin CLI.
 */
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import type { HoldfastConfig } from '../../config/config.js'
import { loadOrCreateIdentity } from '../../node/identity.js'
import { createHoldfastNode, listenPort, type HoldfastNode } from '../../node/libp2p-node.js'
import { Discovery } from '../../node/discovery.js'
import { fleetTag } from '../../node/fleet.js'
import { Catalog } from '../../store/core/catalog.js'
import { PackStore } from '../../store/core/packs.js'
import { pathFilter, restoreSnapshot, type RestoreProgress, type RestoreSummary } from '../../store/restore.js'
import { parsePathSpec, type PathSpec } from '../../model/path-spec.js'
import { MANAGER_API, type ManagerCommands, type RestoreRequest } from '../../admin/api.js'
import { RestoreClient, type AgentRestoreSummary, type RestorePushProgress } from '../../protocols/restore.js'
import { toHex } from '../../model/entry.js'
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
import { classifyPullFailure } from './failure-kind.js'
import { peerIdFromString } from '@libp2p/peer-id'

/** Closing a dead connection must not hold up the round. */
const HANG_UP_TIMEOUT_MS = 2_000

export interface PeerListRow {
  peerId: string
  name: string
  role: string
  version: string
  addresses: string[]
  source: string
  lastSeen: number
  lastBackup?: number
  pendingBytes?: number
  pendingSets?: number
  lastError?: string
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
  private round?: Promise<RoundResult>
  /**
   * Pulls and verify read the store (a pull relies on the chunks the catalog says it has);
   * prune deletes from it. Readers share, prune waits for them and holds new ones off.
   */
  private readonly storeLock = new ReadWriteLock()
  private loop?: Promise<void>
  /** Wakes the schedule loop early: a backed-off peer was announced again. */
  private wakeLoop?: () => void

  constructor (readonly config: HoldfastConfig, private readonly clock: Clock, private readonly log: Logger) {
    mkdirSync(config.dataDir, { recursive: true, mode: 0o700 })
    this.catalog = new Catalog(join(config.dataDir, 'catalog.db'))
    this.packs = new PackStore(join(config.dataDir, 'packs'))
    // a live peer answers every re-query; three missed in a row (or two minutes, the SRV TTL) means it moved
    this.peers = new PeerTable({ addressTtlMs: Math.max(120_000, 3 * config.mdns.queryIntervalSeconds * 1000) })
  }

  get id (): string { return this.peerId }

  async start (): Promise<void> {
    const recovered = this.packs.recover(this.catalog.packExtents())
    if (recovered.removedPacks.length > 0 || recovered.truncatedBytes > 0) {
      this.log.info('recovered packs after an interrupted pull', { removedPacks: recovered.removedPacks.length, truncatedBytes: recovered.truncatedBytes })
    }
    const identity = await loadOrCreateIdentity(this.config.dataDir)
    this.peerId = identity.peerId
    const node = await createHoldfastNode({ privateKey: identity.privateKey, fleetKey: this.config.fleetKey, listen: this.config.listen })
    this.node = node
    this.puller = new Puller({ host: node, catalog: this.catalog, packs: this.packs, clock: this.clock, log: this.log.child('pull') })
    this.discovery = new Discovery({
      self: { peerId: this.peerId, role: 'manager', version: HOLDFAST_VERSION, name: this.config.name, port: listenPort(node), fleetTag: fleetTag(this.config.fleetKey) },
      mdns: this.config.mdns.enabled,
      queryIntervalMs: this.config.mdns.queryIntervalSeconds * 1000,
      staticPeers: this.config.staticPeers,
      onPeer: peer => {
        const { isNew, newAddress, record } = this.peers.upsert(peer, this.clock.now())
        if (isNew) this.log.info('found peer', { peer: peer.peerId, role: peer.role, via: peer.source, addrs: peer.addrs.map(String) })
        else if (newAddress) this.log.info('peer announced a new address', { peer: peer.peerId, addrs: record.addrs.map(String) })
        if (newAddress && record.role === 'agent') this.wakeLoop?.()
      },
      onPeerGone: gone => { this.peers.forget(gone.peerId, gone.addrs) },
      clock: this.clock,
      log: this.log.child('discovery')
    })
    this.discovery.start()
    this.admin = new AdminServer(this.config.adminSocket, MANAGER_API, {
      ...storeAdminHandlers(this.catalog, this.packs, { exclusive: async (fn) => await this.storeLock.write(fn), shared: async (fn) => await this.storeLock.read(fn) }),
      peers: async () => this.peerList(),
      snapshots: async (req) => this.catalog.snapshots(req.endpoint === undefined ? undefined : this.catalog.findEndpoint(req.endpoint).id),
      restore: async (req, ctx) => await this.restore(req, ctx.progress, ctx.signal),
      'backup-now': async (req, ctx) => await this.backupNow(req, ctx.progress, ctx.signal),
      status: async () => ({ peerId: this.peerId, name: this.config.name, listen: node.getMultiaddrs().map(String), mdns: this.discovery?.mdnsEnabled ?? false, peers: this.peers.all().length, snapshots: this.catalog.snapshotCount(), storedBytes: this.catalog.storedBytes() })
    }, this.log)
    await this.admin.start()
    this.log.info('manager started', { peer: this.peerId, listen: node.getMultiaddrs().map(String) })
    this.loop = this.scheduleLoop()
  }

  async stop (): Promise<void> {
    this.controller.abort(new HoldfastError('ABORTED', 'manager stopping'))
    await this.loop?.catch(() => {})
    await this.round?.catch(() => {})
    await this.puller?.close()
    await this.admin?.stop()
    this.discovery?.stop()
    await this.node?.stop()
    this.packs.close()
    this.catalog.close()
  }

  peerList (): PeerListRow[] {
    const endpoints = new Map(this.catalog.endpoints().map(e => [e.peerId, e]))
    return this.peers.all().map(p => ({
      peerId: p.peerId,
      name: p.name,
      role: p.role,
      version: p.version,
      addresses: p.addrs.map(String),
      source: p.source,
      lastSeen: p.lastSeen,
      lastBackup: endpoints.get(p.peerId)?.lastBackup ?? p.lastBackup,
      pendingBytes: p.pendingBytes,
      pendingSets: p.pendingSets,
      lastError: p.lastError
    }))
  }

  /** One round over every agent, in turn. Rounds never overlap. */
  async runRound (options: { respectBackoff: boolean, onlyRetries?: boolean, signal?: AbortSignal, progress?: (p: PullProgress) => void }): Promise<RoundResult> {
    if (this.round !== undefined) return await this.round
    this.round = this.storeLock.read(async () => await this.doRound(options)).finally(() => { this.round = undefined })
    return await this.round
  }

  private async doRound (options: { respectBackoff: boolean, onlyRetries?: boolean, signal?: AbortSignal, progress?: (p: PullProgress) => void }): Promise<RoundResult> {
    const result: RoundResult = { peers: [] }
    const signal = options.signal === undefined ? this.controller.signal : AbortSignal.any([options.signal, this.controller.signal])
    this.peers.expire(this.clock.now())
    for (const peer of this.peers.agents()) {
      if (signal.aborted) break
      if (options.respectBackoff && peer.nextAttemptAt > this.clock.now()) continue
      if (options.onlyRetries === true && peer.failures === 0) continue
      result.peers.push(await this.pullPeer(peer, signal, options.progress))
    }
    return result
  }

  private async pullPeer (peer: PeerRecord, signal: AbortSignal, progress?: (p: PullProgress) => void): Promise<RoundResult['peers'][number]> {
    const puller = this.puller as Puller
    // One pull at a time today, so it gets the whole budget; concurrent pulls will share it.
    const rate = this.config.manager.bandwidthBytesPerSecond
    const started = this.clock.now()
    let answered = false
    try {
      const pulled = await puller.pull(peer, {
        rate,
        signal,
        onProgress: p => progress?.(p),
        onManifest: m => {
          answered = true
          peer.lastContact = this.clock.now()
          peer.version = m.agentVersion
          if (peer.name === '' && m.name !== undefined) peer.name = m.name
          peer.pendingSets = m.sets.length
          peer.pendingBytes = m.sets.reduce((n, s) => n + s.storedBytes, 0)
        }
      })
      peer.failures = 0
      peer.nextAttemptAt = 0
      peer.lastError = undefined
      // the last manifest was read after the last ack: what it lists is still waiting
      peer.pendingSets = pulled.manifest.sets.length
      peer.pendingBytes = pulled.manifest.sets.reduce((n, s) => n + s.storedBytes, 0)
      if (pulled.snapshots.length > 0) peer.lastBackup = this.clock.now()
      return { peerId: peer.peerId, name: peer.name, ok: true, snapshots: pulled.snapshots, bytesPulled: pulled.bytesPulled, ms: this.clock.now() - started }
    } catch (err) {
      peer.lastError = describeError(err)
      // Never got a manifest, or the connection died under the pull (a link cut): the peer
      // was not there (restarted elsewhere, asleep, off, unplugged). Ask the network where it
      // is now, and try again soon rather than backing off for a whole interval or more.
      const kind = classifyPullFailure(err, answered, signal.aborted)
      if (kind === 'unreachable') {
        this.discovery?.requery()
        // a connection that died silently may still look open: the next pull must dial anew
        await this.hangUp(peer.peerId)
      }
      const backoff = this.peers.recordFailure(peer, kind, this.clock.now(), this.config.manager.pullIntervalSeconds * 1000)
      this.log.warn('pull failed; will retry', { peer: peer.peerId, err: peer.lastError, reason: kind, retryInSeconds: Math.round(backoff / 1000) })
      return { peerId: peer.peerId, name: peer.name, ok: false, snapshots: [], bytesPulled: 0, ms: this.clock.now() - started, error: peer.lastError }
    }
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
    while (this.peers.agents().length < expect) {
      if (this.clock.now() >= deadline) {
        throw new HoldfastError('TIMEOUT', `found ${this.peers.agents().length} of ${expect} expected agents within ${timeoutMs / 1000} s`)
      }
      await this.clock.sleep(100, signal)
    }
    return await this.runRound({ respectBackoff: false, signal, progress })
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
    return await restoreSnapshot(this.catalog, this.packs, { endpointId: endpoint.id, snapshotId, path: spec, target: req.target as string, signal, onProgress: p => { progress(p) } })
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
    const summary = await this.storeLock.read(async () => await client.push(peer.addrs, { restoreId, label, overwrite }, {
      entries: function * () {
        for (const e of catalog.treeAt(endpointId, snapshotId)) if (filter === undefined || filter(e)) yield e
      },
      chunk: id => {
        const loc = catalog.chunkLocation(id)
        if (loc === undefined) throw new HoldfastError('CHUNK_MISSING', `chunk ${toHex(id)} is not in the store`)
        return { rawLength: loc.rawlen, compressed: packs.read(loc) }
      }
    }, { signal: AbortSignal.any([signal, this.controller.signal]), onProgress: p => { progress(p) } }))
    this.log.info('restore pushed to endpoint', { peer: peerId, snapshot: snapshotId, label, files: summary.files, errors: summary.errors.length + summary.errorsOmitted })
    return { snapshotId, endpoint: peerId, label, ...summary, ms: this.clock.now() - started }
  }

  /**
   * A round every pull interval; in between, wakes for a peer whose short retry is due or that
   * was announced again after failing, so a restarted agent is not left waiting a whole
   * interval (or a backoff) to be pulled. A round skips peers still waiting out a failure.
   */
  private async scheduleLoop (): Promise<void> {
    const signal = this.controller.signal
    const interval = this.config.manager.pullIntervalSeconds * 1000
    let nextRoundAt = this.clock.now() + interval
    while (!signal.aborted) {
      const retryAt = this.peers.nextRetryAt()
      const wakeAt = retryAt === undefined ? nextRoundAt : Math.min(nextRoundAt, retryAt)
      const wait = wakeAt - this.clock.now()
      const early = new AbortController()
      this.wakeLoop = () => { early.abort() }
      try {
        if (wait > 0) await this.clock.sleep(wait, AbortSignal.any([signal, early.signal]))
      } catch {
        if (signal.aborted) return
      }
      this.wakeLoop = undefined
      const now = this.clock.now()
      // an early wake pulls only the peers that failed and are due again; the others wait for their round
      const full = now >= nextRoundAt
      if (full) nextRoundAt = now + interval
      else if (!this.peers.agents().some(p => p.failures > 0 && p.nextAttemptAt <= now)) continue
      try {
        await this.runRound({ respectBackoff: true, onlyRetries: !full })
      } catch (err) {
        if (!signal.aborted) this.log.error('pull round failed', { err: describeError(err) })
      }
    }
  }
}
