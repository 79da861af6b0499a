/**
 * The agent role: keeps its protected folders staged and serves the staged sets to the
 * manager it trusts. Scans run at start, on a timer, and sooner when something is settling;
 * only one staging round runs at a time.
 */
import { mkdirSync, readFileSync, statfsSync, writeFileSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import type { HoldfastConfig } from '../../config/config.js'
import { loadOrCreateIdentity } from '../../node/identity.js'
import { createHoldfastNode, listenPort, type HoldfastNode } from '../../node/libp2p-node.js'
import { Discovery } from '../../node/discovery.js'
import { fleetTag } from '../../node/fleet.js'
import { AgentStateDb } from '../../staging/state-db.js'
import { Spool } from '../../staging/spool.js'
import { Stager, type StageRoundResult } from '../../staging/stager.js'
import { ManifestService } from '../../protocols/manifest.js'
import { FetchService } from '../../protocols/fetch.js'
import { AckService } from '../../protocols/ack.js'
import { RestoreService, type RestoreHeader, type RestoreWriter } from '../../protocols/restore.js'
import { openRestoreDir } from '../../restore-writer/restore-sink.js'
import { AdminServer } from '../../admin/admin-socket.js'
import { AGENT_API, type AgentCommands } from '../../admin/api.js'
import { HoldfastError, describeError, errorCode } from '../../util/errors.js'
import type { Clock } from '../../util/clock.js'
import type { Logger } from '../../util/log.js'
import { displayPath } from '../../model/entry.js'
import { FolderWatchers } from '../../staging/watcher.js'
import { restageBrokenSets } from '../../staging/repair.js'
import { HOLDFAST_VERSION } from '../../version.js'
import { IdleMonitor, LinuxIdleProbe, type IdleProbe, type IdleReport } from './idle.js'

export interface AgentStatus {
  peerId: string
  name: string
  listen: string[]
  folders: Array<{ name: string, path: string, watch: 'events' | 'scan' }>
  filesTracked: number
  filesNotBackedUp: number
  settling: number
  /** Documents an office lock file says are open: staged once it goes. */
  waitingForLock: number
  sealedSets: number
  stagedBytesNotPulled: number
  spoolBytes: number
  spoolCapBytes: number
  /** The last staging round stopped at the cap; the rest waits for the manager to pull. */
  spoolFull: boolean
  /** The last staging round stopped at the disk reserve; it goes on when space comes back. */
  diskLow: boolean
  lastScanAt?: number
  lastAck?: { setId: number, snapshotId: number, at: number, ageSeconds: number }
  errors: Array<{ folder: string, path: string, code: string, message: string, at: number }>
  mdns: boolean
  /** What the last manifest request reported, and the upload windows in play. */
  idle?: IdleReport
  uploadWindows: { fromManager?: string, own: string }
}

export class Agent {
  private node?: HoldfastNode
  private discovery?: Discovery
  private admin?: AdminServer<AgentCommands>
  private readonly state: AgentStateDb
  private readonly spool: Spool
  private readonly stager: Stager
  private readonly controller = new AbortController()
  private peerId = ''
  private running?: Promise<StageRoundResult>
  private lastScan?: { at: number, result: StageRoundResult }
  private loop?: Promise<void>
  private wake?: () => void
  private nextScanAt = 0
  private readonly spoolCapBytes: number
  private readonly watchers: FolderWatchers
  /** A fetch asked for a chunk the spool lacks: look for sets that cannot be served whole. */
  private repairDue = false
  private readonly idle: IdleMonitor
  private lastIdle?: IdleReport
  /** The windows the manager said it applies, from its last manifest request. */
  private managerWindows?: string

  constructor (readonly config: HoldfastConfig, private readonly clock: Clock, private readonly log: Logger, deps: { idleProbe?: IdleProbe } = {}) {
    this.idle = new IdleMonitor(deps.idleProbe ?? new LinuxIdleProbe(clock), { loadPerCpu: config.agent.idleLoadPerCpu, inputIdleMs: config.agent.idleInputSeconds * 1000 }, clock)
    mkdirSync(config.dataDir, { recursive: true, mode: 0o700 })
    this.state = new AgentStateDb(join(config.dataDir, 'agent.db'))
    this.spool = new Spool(join(config.dataDir, 'spool'), this.state)
    this.spoolCapBytes = config.agent.spoolCapBytes > 0 ? config.agent.spoolCapBytes : defaultSpoolCap(config.dataDir)
    this.watchers = new FolderWatchers({
      mode: config.agent.watch,
      maxEntries: config.agent.watchMaxEntries,
      // an event starts a scan once the change has had time to settle
      onChange: () => { this.requestScan(config.agent.settleSeconds * 1000 + 200) },
      log: log.child('watch')
    })
    this.stager = new Stager({
      spoolCapBytes: this.spoolCapBytes,
      folders: config.agent.folders,
      state: this.state,
      spool: this.spool,
      clock,
      log: log.child('stage'),
      settleMs: config.agent.settleSeconds * 1000,
      workers: config.agent.workers,
      diskReserveBytes: config.agent.diskReserveBytes
    })
  }

  async start (): Promise<void> {
    lowerIoPriority(this.log)
    const abandoned = this.state.abandonUnsealedSets()
    const orphans = this.spool.removeOrphans()
    if (abandoned.length > 0 || orphans > 0) this.log.info('cleaned up after an interrupted staging round', { sets: abandoned.length, segments: orphans })
    this.repairSets()
    this.spool.onMissing = () => { this.repairDue = true; this.requestScan(0) }
    const identity = await loadOrCreateIdentity(this.config.dataDir)
    this.peerId = identity.peerId
    const node = await this.listenWherePossible(identity.privateKey)
    this.node = node
    // Only the pinned managers (config requires at least one): holding the fleet key does not
    // make a host a manager. Every agent protocol below goes through this gate.
    const allow = (remote: string): boolean => this.config.managers.includes(remote)
    await new ManifestService(node, {
      allow,
      log: this.log,
      source: {
        manifest: (request) => {
          if (request?.windows !== undefined) this.managerWindows = request.windows
          const idle = this.idle.report()
          this.lastIdle = idle
          return {
            agentVersion: HOLDFAST_VERSION,
            name: this.config.name,
            idle: idle.idle,
            load: idle.load,
            inputIdleSeconds: idle.inputIdleSeconds,
            // the offset now, so the manager needs no zone database and DST is the endpoint's business
            utcOffsetMinutes: -new Date(this.clock.now()).getTimezoneOffset(),
            timeZone: Intl.DateTimeFormat().resolvedOptions().timeZone,
            uploadWindows: this.config.agent.uploadWindows === '' ? undefined : this.config.agent.uploadWindows,
            sets: this.state.sealedSets()
          }
        },
        entries: (setId) => {
          if (this.state.setState(setId) !== 'sealed') throw new HoldfastError('SET_UNKNOWN', `no sealed set ${setId}`)
          return this.state.setEntries(setId)
        }
      }
    }).start()
    await new FetchService(node, { source: this.spool, allow, log: this.log, clock: this.clock, maxRate: this.config.agent.maxUploadBytesPerSecond }).start()
    await new AckService(node, {
      allow,
      log: this.log,
      sink: {
        acknowledge: async (setId, snapshotId, manager) => {
          const state = this.state.setState(setId)
          if (state === 'acked') return // a repeat (the reply to the first was lost)
          // The spool is freed only for a set this agent sealed and served; an ack for any
          // other set is a manager's bug or a forgery, and freeing on it would lose data.
          if (state !== 'sealed') {
            this.log.warn('refused an ack for a set that is not sealed here; nothing freed', { set: setId, snapshot: snapshotId, state: state ?? 'unknown', manager: manager.slice(-8) })
            throw new HoldfastError('ACK_REFUSED', `set ${setId} is ${state === undefined ? 'unknown' : `'${state}'`} here; only a sealed set is acknowledged`, { setId, snapshotId })
          }
          const segments = this.state.acknowledge(setId, snapshotId, this.clock.now())
          this.spool.remove(segments)
          // space came back: staging that stopped at the spool cap can go on
          if (this.lastScan?.result.spoolFull === true || this.lastScan?.result.diskLow === true) this.requestScan(0)
          this.log.info('set acknowledged by manager; marked backed up', { set: setId, snapshot: snapshotId, manager: manager.slice(-8) })
        }
      }
    }).start()
    await new RestoreService(node, { allow, log: this.log, target: { open: async (header, manager) => this.openRestore(header, manager) } }).start()
    this.discovery = new Discovery({
      self: { peerId: this.peerId, role: 'agent', version: HOLDFAST_VERSION, name: this.config.name, port: listenPort(node), fleetTag: fleetTag(this.config.fleetKey) },
      mdns: this.config.mdns.enabled,
      queryIntervalMs: this.config.mdns.queryIntervalSeconds * 1000,
      staticPeers: [],
      onPeer: () => {},
      clock: this.clock,
      log: this.log.child('discovery')
    })
    this.discovery.start()
    this.admin = new AdminServer(this.config.adminSocket, AGENT_API, {
      status: async () => this.status(),
      'scan-now': async () => await this.scanNow()
    }, this.log, { group: this.config.admin.group })
    await this.admin.start()
    this.log.info('agent started', { peer: this.peerId, listen: node.getMultiaddrs().map(String), folders: this.config.agent.folders.map(f => f.path) })
    this.loop = this.scanLoop()
  }

  /**
   * Listens on the port it had last time where the config leaves the port to the system
   * (tcp/0): after a restart the manager's known address is still right, so nothing waits
   * on rediscovery. Falls back to the config as written when that port is taken.
   */
  private async listenWherePossible (privateKey: Parameters<typeof createHoldfastNode>[0]['privateKey']): Promise<HoldfastNode> {
    const portFile = join(this.config.dataDir, 'listen-port')
    let saved: number | undefined
    try {
      const n = Number(readFileSync(portFile, 'utf8').trim())
      if (Number.isInteger(n) && n > 0 && n <= 65535) saved = n
    } catch {}
    const preferred = saved === undefined ? this.config.listen : this.config.listen.map(a => a.replace(/\/tcp\/0(?=\/|$)/, `/tcp/${saved}`))
    let node: HoldfastNode
    if (preferred.some((a, i) => a !== this.config.listen[i])) {
      try {
        node = await createHoldfastNode({ privateKey, fleetKey: this.config.fleetKey, listen: preferred })
      } catch (err) {
        // libp2p's message embeds the listen error's stack; its name says enough here
        this.log.info('last listen port is taken; listening on a new one', { port: saved, err: errorCode(err) })
        node = await createHoldfastNode({ privateKey, fleetKey: this.config.fleetKey, listen: this.config.listen })
      }
    } else {
      node = await createHoldfastNode({ privateKey, fleetKey: this.config.fleetKey, listen: this.config.listen })
    }
    try {
      writeFileSync(portFile, `${listenPort(node)}\n`, { mode: 0o600 })
    } catch (err) {
      this.log.warn('cannot save the listen port; a restart will listen on a new one', { err: describeError(err) })
    }
    return node
  }

  async stop (): Promise<void> {
    this.controller.abort(new HoldfastError('ABORTED', 'agent stopping'))
    this.wake?.()
    await this.watchers.stop()
    await this.loop?.catch(() => {})
    await this.running?.catch(() => {})
    await this.admin?.stop()
    this.discovery?.stop()
    await this.node?.stop()
    this.spool.closeAll()
    this.state.close()
  }

  /** Runs a staging round now (or joins the one running) and reports it. */
  async scanNow (): Promise<StageRoundResult> {
    if (this.running !== undefined) return await this.running
    if (this.repairDue) this.repairSets()
    this.running = this.stager.stageRound({ signal: this.controller.signal }).then(result => {
      this.lastScan = { at: this.clock.now(), result }
      return result
    }).finally(() => { this.running = undefined })
    return await this.running
  }

  /** Drops sets that lost a chunk; the round that follows stages their paths again. */
  private repairSets (): void {
    this.repairDue = false
    try {
      restageBrokenSets(this.state, this.spool, this.log, this.clock.now())
    } catch (err) {
      this.log.error('cannot check the staged sets against the spool', { err: describeError(err) })
    }
  }

  status (): AgentStatus {
    const last = this.state.lastAck()
    const sets = this.state.sealedSets()
    return {
      peerId: this.peerId,
      name: this.config.name,
      listen: this.node?.getMultiaddrs().map(String) ?? [],
      folders: this.config.agent.folders.map(f => ({ name: f.name, path: f.path, watch: this.watchers.state(f.name) })),
      filesTracked: this.state.trackedCount(),
      filesNotBackedUp: this.state.unackedFiles(),
      settling: this.lastScan?.result.settling ?? 0,
      waitingForLock: this.lastScan?.result.locked ?? 0,
      sealedSets: sets.length,
      stagedBytesNotPulled: sets.reduce((n, s) => n + s.storedBytes, 0),
      spoolBytes: this.state.spoolBytes(),
      spoolCapBytes: this.spoolCapBytes,
      spoolFull: this.lastScan?.result.spoolFull ?? false,
      diskLow: this.lastScan?.result.diskLow ?? false,
      lastScanAt: this.lastScan?.at,
      lastAck: last === undefined ? undefined : { ...last, ageSeconds: Math.round((this.clock.now() - last.at) / 1000) },
      errors: this.state.pathErrors().map(e => ({ folder: e.folder, path: displayPath(e.path), code: e.code, message: e.message, at: e.at })),
      mdns: this.discovery?.mdnsEnabled ?? false,
      idle: this.lastIdle,
      uploadWindows: { fromManager: this.managerWindows, own: this.config.agent.uploadWindows }
    }
  }

  /**
   * A restore the manager pushes lands in `<restoreDir>/<label>`: written beside it as a
   * partial directory and renamed into place once complete (swapped for the old one when the
   * manager asked to overwrite); refused up front when it cannot fit.
   */
  private openRestore (header: RestoreHeader, manager: string): RestoreWriter {
    const sink = openRestoreDir(this.config.agent.restoreDir, header.label, header.overwrite, this.controller.signal, { bytes: header.bytes })
    this.log.info('writing a restore from the manager', { manager: manager.slice(-8), restore: header.restoreId, target: sink.target, overwrite: header.overwrite })
    return sink
  }

  /** Asks for a scan within `delayMs` (sooner requests win; later ones are already covered). */
  requestScan (delayMs: number): void {
    const at = this.clock.now() + delayMs
    if (at < this.nextScanAt) {
      this.nextScanAt = at
      this.wake?.()
    }
  }

  /**
   * Sleeps until the next scan is due: the reconcile interval, or sooner when an event, a
   * settling file, a lock or an ack asks. Nothing wakes in between, so an idle agent costs
   * no CPU.
   */
  private async scanLoop (): Promise<void> {
    const signal = this.controller.signal
    const interval = this.config.agent.scanIntervalSeconds * 1000
    this.nextScanAt = this.clock.now()
    while (!signal.aborted) {
      const wait = this.nextScanAt - this.clock.now()
      if (wait > 0) {
        const wakeController = new AbortController()
        this.wake = () => { wakeController.abort() }
        try {
          await this.clock.sleep(wait, AbortSignal.any([signal, wakeController.signal]))
        } catch {
          if (signal.aborted) return
        }
        continue
      }
      this.nextScanAt = this.clock.now() + interval
      try {
        const result = await this.scanNow()
        if (result.settledAt !== undefined) this.requestScan(Math.max(100, result.settledAt - this.clock.now() + 50))
        // a lock going away is an event where events are watched; elsewhere look again soon
        if (result.locked > 0) this.requestScan(Math.min(interval, 30_000))
        // space that others free on the disk says nothing to us: look again soon
        if (result.diskLow) this.requestScan(Math.min(interval, 60_000))
        await this.updateWatchers()
      } catch (err) {
        if (signal.aborted) return
        this.log.error('staging round failed; will retry', { err: describeError(err) })
      }
    }
  }

  private async updateWatchers (): Promise<void> {
    const counts = this.state.trackedCountByFolder()
    for (const folder of this.config.agent.folders) {
      try {
        await this.watchers.update(folder, counts.get(folder.name) ?? 0)
      } catch (err) {
        this.log.warn('cannot watch folder; the reconcile scan covers it', { folder: folder.path, err: describeError(err) })
      }
    }
  }
}

/** 10% of the free space where the spool lives, between 256 MiB and 20 GiB. */
function defaultSpoolCap (dir: string): number {
  try {
    const fs = statfsSync(dir)
    return Math.max(256 * 1024 * 1024, Math.min(20 * 1024 * 1024 * 1024, Math.floor(fs.bavail * fs.bsize * 0.1)))
  } catch {
    return 1024 * 1024 * 1024
  }
}

/**
 * Best-effort, lowest I/O priority of the best-effort class for this process's main thread;
 * threads made after this (staging workers, libuv's pool) inherit it. Node has no ioprio_set,
 * so util-linux's ionice does it where installed.
 */
function lowerIoPriority (log: Logger): void {
  const r = spawnSync('ionice', ['-c', '2', '-n', '7', '-p', String(process.pid)], { stdio: 'ignore' })
  if (r.status !== 0) log.info('ionice unavailable; staging runs at normal I/O priority')
}
