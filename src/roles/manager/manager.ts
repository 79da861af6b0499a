/**
 * The manager role: finds endpoints (mDNS + static peers), and on a timer dials each agent in
 * turn, pulls what it has staged into the store, and answers the admin CLI.
 */
import { mkdirSync } from 'node:fs'
import { join, isAbsolute } from 'node:path'
import type { HoldfastConfig } from '../../config/config.js'
import { loadOrCreateIdentity } from '../../node/identity.js'
import { createHoldfastNode, listenPort, type HoldfastNode } from '../../node/libp2p-node.js'
import { Discovery } from '../../node/discovery.js'
import { fleetTag } from '../../node/fleet.js'
import { Catalog } from '../../store/core/catalog.js'
import { PackStore } from '../../store/core/packs.js'
import { pathFilter, restoreSnapshot, type RestoreSummary } from '../../store/restore.js'
import { RestoreClient, type AgentRestoreSummary } from '../../protocols/restore.js'
import { toHex } from '../../model/entry.js'
import { AdminServer } from '../../admin/admin-socket.js'
import { HoldfastError, describeError, isHoldfastError } from '../../util/errors.js'
import type { Clock } from '../../util/clock.js'
import type { Logger } from '../../util/log.js'
import { HOLDFAST_VERSION } from '../../version.js'
import { PeerTable, type PeerRecord } from './peer-table.js'
import { Puller, type PullResult } from './puller.js'
import { storeAdminHandlers } from './store-admin.js'
import { resolveSnapshot } from '../../store/queries/browse.js'
import { ReadWriteLock } from '../../util/mutex.js'

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

const MAX_BACKOFF_MS = 60 * 60_000

export class Manager {
  private node?: HoldfastNode
  private discovery?: Discovery
  private admin?: AdminServer
  private puller?: Puller
  readonly catalog: Catalog
  readonly packs: PackStore
  readonly peers = new PeerTable()
  private readonly controller = new AbortController()
  private peerId = ''
  private round?: Promise<RoundResult>
  /**
   * Pulls and verify read the store (a pull relies on the chunks the catalog says it has);
   * prune deletes from it. Readers share, prune waits for them and holds new ones off.
   */
  private readonly storeLock = new ReadWriteLock()
  private loop?: Promise<void>
  /** The last pull failed because the store's disk is full (cleared by the next pull that commits). */
  private storeFull?: { since: number, error: string }

  constructor (readonly config: HoldfastConfig, private readonly clock: Clock, private readonly log: Logger) {
    mkdirSync(config.dataDir, { recursive: true, mode: 0o700 })
    this.catalog = new Catalog(join(config.dataDir, 'catalog.db'))
    this.packs = new PackStore(join(config.dataDir, 'packs'))
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
        const isNew = this.peers.get(peer.peerId) === undefined
        this.peers.upsert(peer, this.clock.now())
        if (isNew) this.log.info('found peer', { peer: peer.peerId, role: peer.role, via: peer.source, addrs: peer.addrs.map(String) })
      },
      clock: this.clock,
      log: this.log.child('discovery')
    })
    this.discovery.start()
    this.admin = new AdminServer(this.config.adminSocket, {
      ...storeAdminHandlers(this.catalog, this.packs, { exclusive: async (fn) => await this.storeLock.write(fn), shared: async (fn) => await this.storeLock.read(fn) }),
      peers: async () => this.peerList(),
      snapshots: async (args) => this.catalog.snapshots(args.endpoint === undefined ? undefined : this.catalog.findEndpoint(String(args.endpoint)).id),
      restore: async (args, ctx) => await this.restore(args, ctx.progress, ctx.signal),
      'backup-now': async (args, ctx) => await this.backupNow(args, ctx.progress, ctx.signal),
      status: async () => ({ peerId: this.peerId, name: this.config.name, listen: node.getMultiaddrs().map(String), mdns: this.discovery?.mdnsEnabled ?? false, peers: this.peers.all().length, snapshots: this.catalog.snapshotCount(), storedBytes: this.catalog.storedBytes(), store: this.storeFull === undefined ? 'ok' : 'store full', storeError: this.storeFull?.error })
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
  async runRound (options: { respectBackoff: boolean, signal?: AbortSignal, progress?: (p: unknown) => void }): Promise<RoundResult> {
    if (this.round !== undefined) return await this.round
    this.round = this.storeLock.read(async () => await this.doRound(options)).finally(() => { this.round = undefined })
    return await this.round
  }

  private async doRound (options: { respectBackoff: boolean, signal?: AbortSignal, progress?: (p: unknown) => void }): Promise<RoundResult> {
    const result: RoundResult = { peers: [] }
    const signal = options.signal === undefined ? this.controller.signal : AbortSignal.any([options.signal, this.controller.signal])
    for (const peer of this.peers.agents()) {
      if (signal.aborted) break
      if (options.respectBackoff && peer.nextAttemptAt > this.clock.now()) continue
      result.peers.push(await this.pullPeer(peer, signal, options.progress))
    }
    return result
  }

  private async pullPeer (peer: PeerRecord, signal: AbortSignal, progress?: (p: unknown) => void): Promise<RoundResult['peers'][number]> {
    const puller = this.puller as Puller
    // One pull at a time today, so it gets the whole budget; concurrent pulls will share it.
    const rate = this.config.manager.bandwidthBytesPerSecond
    const started = this.clock.now()
    try {
      const pulled = await puller.pull(peer, {
        rate,
        signal,
        onProgress: p => progress?.(p),
        onManifest: m => {
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
      if (pulled.snapshots.length > 0) this.storeFull = undefined
      // the last manifest was read after the last ack: what it lists is still waiting
      peer.pendingSets = pulled.manifest.sets.length
      peer.pendingBytes = pulled.manifest.sets.reduce((n, s) => n + s.storedBytes, 0)
      if (pulled.snapshots.length > 0) peer.lastBackup = this.clock.now()
      return { peerId: peer.peerId, name: peer.name, ok: true, snapshots: pulled.snapshots, bytesPulled: pulled.bytesPulled, ms: this.clock.now() - started }
    } catch (err) {
      peer.failures++
      peer.lastError = describeError(err)
      if (isHoldfastError(err, 'STORE_FULL')) this.storeFull ??= { since: this.clock.now(), error: peer.lastError }
      // A full store is not the peer's fault: retry at the plain interval, so backups resume
      // soon after space returns rather than after an hour of backoff.
      const backoff = isHoldfastError(err, 'STORE_FULL') ? this.config.manager.pullIntervalSeconds * 1000 : Math.min(MAX_BACKOFF_MS, this.config.manager.pullIntervalSeconds * 1000 * 2 ** Math.min(peer.failures - 1, 10))
      peer.nextAttemptAt = this.clock.now() + backoff
      this.log.warn('pull failed; will retry', { peer: peer.peerId, err: peer.lastError, retryInSeconds: Math.round(backoff / 1000) })
      return { peerId: peer.peerId, name: peer.name, ok: false, snapshots: [], bytesPulled: 0, ms: this.clock.now() - started, error: peer.lastError }
    }
  }

  private async backupNow (args: Record<string, unknown>, progress: (p: unknown) => void, signal: AbortSignal): Promise<RoundResult> {
    const expect = typeof args.expectPeers === 'number' ? args.expectPeers : 0
    const timeoutMs = typeof args.timeoutMs === 'number' ? args.timeoutMs : 30_000
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

  private async restore (args: Record<string, unknown>, progress: (p: unknown) => void, signal: AbortSignal): Promise<RestoreSummary | EndpointRestoreSummary> {
    if (typeof args.endpoint !== 'string') throw new HoldfastError('ADMIN_BAD_REQUEST', 'restore needs an endpoint')
    const toEndpoint = args.toEndpoint === true
    if (!toEndpoint && (typeof args.target !== 'string' || !isAbsolute(args.target))) throw new HoldfastError('ADMIN_BAD_REQUEST', 'restore needs an absolute target directory')
    const endpoint = this.catalog.findEndpoint(args.endpoint)
    const chosen = args.snapshot !== undefined || args.at !== undefined
    let snapshotId = resolveSnapshot(this.catalog, endpoint, {
      snapshot: args.snapshot === undefined ? undefined : Number(args.snapshot),
      at: typeof args.at === 'number' ? args.at : undefined
    }).id
    const path = typeof args.path === 'string' ? args.path : undefined
    if (toEndpoint) {
      // A path deleted since: without an explicit snapshot, push its last version.
      if (path !== undefined && !this.snapshotHolds(endpoint.id, snapshotId, path)) {
        const [folder, ...rest] = path.replace(/^\/+|\/+$/g, '').split('/')
        const last = chosen ? undefined : this.catalog.lastSnapshotHolding(endpoint.id, folder, rest.length === 0 ? undefined : Buffer.from(rest.join('/')))
        if (last === undefined) throw new HoldfastError('PATH_NOT_FOUND', `no path '${path}' in snapshot ${snapshotId}`)
        snapshotId = last
      }
      return await this.pushRestore(endpoint.peerId, snapshotId, path, args.overwrite === true, progress, signal)
    }
    const request = { endpointId: endpoint.id, snapshotId, path, target: args.target as string, signal, onProgress: (p: unknown) => { progress(p) } }
    try {
      return await restoreSnapshot(this.catalog, this.packs, request)
    } catch (err) {
      // A path deleted since: without an explicit snapshot, restore its last version.
      if (!isHoldfastError(err, 'PATH_NOT_FOUND') || chosen || path === undefined) throw err
      const [folder, ...rest] = path.replace(/^\/+|\/+$/g, '').split('/')
      const last = this.catalog.lastSnapshotHolding(endpoint.id, folder, rest.length === 0 ? undefined : Buffer.from(rest.join('/')))
      if (last === undefined) throw err
      return await restoreSnapshot(this.catalog, this.packs, { ...request, snapshotId: last })
    }
  }

  private snapshotHolds (endpointId: number, snapshotId: number, path: string): boolean {
    const filter = pathFilter(path)
    for (const e of this.catalog.treeAt(endpointId, snapshotId)) if (filter(e)) return true
    return false
  }

  /**
   * Pushes a snapshot (or one path of it) back onto its endpoint over /holdfast/restore/1,
   * dialling the addresses discovery found. The store's read lock keeps prune from removing
   * a chunk the push is about to send.
   */
  private async pushRestore (peerId: string, snapshotId: number, path: string | undefined, overwrite: boolean, progress: (p: unknown) => void, signal: AbortSignal): Promise<EndpointRestoreSummary> {
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
        const loc = catalog.chunkLocation(id)
        if (loc === undefined) throw new HoldfastError('CHUNK_MISSING', `chunk ${toHex(id)} is not in the store`)
        return { rawLength: loc.rawlen, compressed: packs.read(loc) }
      }
    }, { signal: AbortSignal.any([signal, this.controller.signal]), onProgress: p => { progress(p) } }))
    this.log.info('restore pushed to endpoint', { peer: peerId, snapshot: snapshotId, label, files: summary.files, errors: summary.errors.length + summary.errorsOmitted })
    return { snapshotId, endpoint: peerId, label, ...summary, ms: this.clock.now() - started }
  }

  private async scheduleLoop (): Promise<void> {
    const signal = this.controller.signal
    while (!signal.aborted) {
      try {
        await this.clock.sleep(this.config.manager.pullIntervalSeconds * 1000, signal)
      } catch {
        return
      }
      try {
        await this.runRound({ respectBackoff: true })
      } catch (err) {
        if (!signal.aborted) this.log.error('pull round failed', { err: describeError(err) })
      }
    }
  }
}
