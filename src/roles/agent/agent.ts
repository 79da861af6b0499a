/**
 * The agent role: keeps its protected folders staged and serves the staged sets to the
 * manager it trusts. Scans run at start, on a timer, and sooner when something is settling;
 * only one staging round runs at a time.
 */
import { FollowUpRunner } from '../../util/follow-up-runner.js'
import { mkdirSync, readFileSync, statfsSync, statSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import type { HoldfastConfig } from '../../config/config.js'
import { loadOrCreateIdentity } from '../../node/identity.js'
import { listenPort, type HoldfastNode } from '../../node/libp2p-node.js'
import { createNodeOnSavedPort } from '../../node/saved-port.js'
import { endpointDiscovery, type Discovery } from '../../node/discovery.js'
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
import { HoldfastError, describeError } from '../../util/errors.js'
import type { Clock } from '../../util/clock.js'
import type { Logger } from '../../util/log.js'
import { displayPath } from '../../model/entry.js'
import { FolderWatchers } from '../../staging/watcher.js'
import { restageBrokenSets } from '../../staging/repair.js'
import { HOLDFAST_VERSION } from '../../version.js'
import { IdleMonitor, LinuxIdleProbe, type IdleProbe, type IdleReport } from './idle.js'
import { ConfigService } from '../../protocols/config.js'
import { agentConfigFrom, centralFolders, decodeCentralSettings, type CentralAgentSettings, type VersionedSettings } from '../../model/central-settings.js'
import { writeFileDurable } from '../../util/durable-file.js'

/** Where the applied central config is kept (agent.json is the endpoint's and is never rewritten). */
const CENTRAL_CONFIG_FILE = 'central-config.json'
import { DeployService } from '../../protocols/deploy.js'
import { upgradeTarget } from '../node/upgrade-target.js'
import { readUpgradeState } from '../../deploy/upgrade-state.js'

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
  /** The settings in effect: agent.json with the central config the manager sent over it. */
  config: {
    /** The central config version applied (0: none); central: its settings as the manager sent them. */
    version: number
    central: CentralAgentSettings
    settleSeconds: number
    scanIntervalSeconds: number
    spoolCapBytes: number
    workers: number
    uploadWindows: string
    idleLoadPerCpu: number
    idleInputSeconds: number
    /** The last central config this agent refused, and why (it kept the one it had). */
    refused?: { version: number, error: string }
  }
}

export class Agent {
  private node?: HoldfastNode
  private discovery?: Discovery
  private admin?: AdminServer<AgentCommands>
  private readonly state: AgentStateDb
  private readonly spool: Spool
  private stager: Stager
  private readonly controller = new AbortController()
  private peerId = ''
  private readonly rounds = new FollowUpRunner<StageRoundResult>(async () => await this.stageRound())
  private lastScan?: { at: number, result: StageRoundResult }
  private loop?: Promise<void>
  private wake?: () => void
  private nextScanAt = 0
  private spoolCapBytes = 0
  private watchers: FolderWatchers
  /** A fetch asked for a chunk the spool lacks: look for sets that cannot be served whole. */
  private repairDue = false
  private idle: IdleMonitor
  private readonly idleProbe: IdleProbe
  /** The config in effect: `local` (agent.json) with `central` over it (model/central-settings.ts). */
  config: HoldfastConfig
  private central: VersionedSettings = { version: 0, settings: {} }
  private refused?: { version: number, error: string }
  /** Central configs are applied one at a time. */
  private applying: Promise<unknown> = Promise.resolve()
  private lastIdle?: IdleReport
  /** The windows the manager said it applies, from its last manifest request. */
  private managerWindows?: string

  /** Asks the process to exit for its supervisor to restart it (a package was made current). */
  private readonly restart: () => void
  /** Where packages go (`--install-root`, under the supervisor); without one a package is refused. */
  private readonly installRoot?: string

  constructor (readonly local: HoldfastConfig, private readonly clock: Clock, private readonly log: Logger, deps: { idleProbe?: IdleProbe, restart?: () => void, installRoot?: string } = {}) {
    this.restart = deps.restart ?? (() => { log.warn('a new version is current, but this agent runs without a supervisor to restart it') })
    this.installRoot = deps.installRoot
    mkdirSync(local.dataDir, { recursive: true, mode: 0o700 })
    this.idleProbe = deps.idleProbe ?? new LinuxIdleProbe(clock)
    this.config = this.loadCentral()
    this.state = new AgentStateDb(join(local.dataDir, 'agent.db'))
    this.spool = new Spool(join(local.dataDir, 'spool'), this.state)
    const parts = this.stagingParts(this.config)
    this.idle = parts.idle
    this.watchers = parts.watchers
    this.stager = parts.stager
  }

  /**
   * The central config applied before a restart, over agent.json. Not checked against the
   * disk again: a protected folder that went away is reported per path by staging, as for a
   * local one. If agent.json changed so that the two no longer fit, the local file wins and
   * version 0 is reported, so the manager sends the config again and hears why.
   */
  private loadCentral (): HoldfastConfig {
    const file = join(this.local.dataDir, CENTRAL_CONFIG_FILE)
    let text: string
    try {
      text = readFileSync(file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn('cannot read the applied central config; running on agent.json alone', { err: describeError(err) })
      return this.local
    }
    try {
      const saved = JSON.parse(text) as { version?: unknown, settings?: unknown }
      if (typeof saved.version !== 'number' || !Number.isSafeInteger(saved.version) || saved.version < 1) throw new HoldfastError('CONFIG_INVALID', 'no valid version')
      const settings = decodeCentralSettings(saved.settings)
      const config = agentConfigFrom(this.local, settings)
      this.central = { version: saved.version, settings }
      return config
    } catch (err) {
      this.log.warn('the applied central config no longer fits agent.json; running on agent.json alone until the manager sends it again', { err: describeError(err) })
      return this.local
    }
  }

  /** The parts that read the staging settings; rebuilt whole when a central config changes them. */
  private stagingParts (config: HoldfastConfig): { idle: IdleMonitor, watchers: FolderWatchers, stager: Stager } {
    const a = config.agent
    this.spoolCapBytes = a.spoolCapBytes > 0 ? a.spoolCapBytes : defaultSpoolCap(config.dataDir)
    return {
      idle: new IdleMonitor(this.idleProbe, { loadPerCpu: a.idleLoadPerCpu, inputIdleMs: a.idleInputSeconds * 1000 }, this.clock),
      watchers: new FolderWatchers({
        mode: a.watch,
        maxEntries: a.watchMaxEntries,
        // an event starts a scan once the change has had time to settle
        onChange: () => { this.requestScan(a.settleSeconds * 1000 + 200) },
        log: this.log.child('watch')
      }),
      stager: new Stager({
        spoolCapBytes: this.spoolCapBytes,
        folders: a.folders,
        state: this.state,
        spool: this.spool,
        clock: this.clock,
        log: this.log.child('stage'),
        settleMs: a.settleSeconds * 1000,
        workers: a.workers,
        diskReserveBytes: a.diskReserveBytes
      })
    }
  }

  /**
   * Applies a central config from a pinned manager (protocols/config.ts): checked in full
   * first (every folder it names must be a directory here, a rule must name at least one), so
   * a refusal changes nothing; then saved, then the staging parts are rebuilt with it. A round
   * under way finishes with the parts it started with; the next one uses the new ones.
   */
  async applyCentral (document: VersionedSettings, manager: string): Promise<number> {
    const run = this.applying.then(async () => await this.applyNow(document, manager))
    this.applying = run.catch(() => {})
    return await run
  }

  private async applyNow (document: VersionedSettings, manager: string): Promise<number> {
    if (document.version === this.central.version && JSON.stringify(document.settings) === JSON.stringify(this.central.settings)) return this.central.version
    let next: HoldfastConfig
    try {
      for (const f of centralFolders(document.settings)) {
        let dir = false
        try { dir = statSync(f.path).isDirectory() } catch {}
        if (!dir) throw new HoldfastError('CONFIG_REFUSED', `folder ${f.path} does not exist here (or is not a directory)`, { path: f.path })
      }
      next = agentConfigFrom(this.local, document.settings)
      writeFileDurable(join(this.local.dataDir, CENTRAL_CONFIG_FILE), JSON.stringify(document) + '\n', 0o600)
    } catch (err) {
      const error = describeError(err)
      this.refused = { version: document.version, error }
      this.log.warn('refused a central config; keeping the one in effect', { manager: manager.slice(-8), version: document.version, err: error })
      if (err instanceof HoldfastError && err.code !== 'CONFIG_INVALID' && err.code !== 'CONFIG_UNKNOWN_KEY') throw err
      throw new HoldfastError('CONFIG_REFUSED', error, { version: document.version })
    }
    const before = this.config.agent
    this.config = next
    this.central = { version: document.version, settings: document.settings }
    this.refused = undefined
    const old = this.watchers
    const parts = this.stagingParts(next)
    this.idle = parts.idle
    this.watchers = parts.watchers
    this.stager = parts.stager
    await old.stop()
    this.log.info('applied a central config', {
      manager: manager.slice(-8),
      version: document.version,
      folders: next.agent.folders.map(f => f.path),
      added: next.agent.folders.filter(f => !before.folders.some(b => b.path === f.path)).map(f => f.path),
      removed: before.folders.filter(b => !next.agent.folders.some(f => f.path === b.path)).map(f => f.path)
    })
    // the new folders (and a shorter interval) take effect now, not at the old interval's end
    this.requestScan(0)
    return document.version
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
    const node = await createNodeOnSavedPort({ privateKey: identity.privateKey, fleetKey: this.config.fleetKey, listen: this.config.listen }, this.config.dataDir, this.log)
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
            sets: this.state.sealedSets(),
            configVersion: this.central.version,
            rolledBack: this.rolledBack()
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
    await new ConfigService(node, { allow, log: this.log, sink: { apply: async (document, manager) => await this.applyCentral(document, manager) } }).start()
    await new RestoreService(node, { allow, log: this.log, target: { open: async (header, manager) => this.openRestore(header, manager) } }).start()
    // rolling upgrades (holdfast deploy --version): a signed package from a pinned manager
    await new DeployService(node, { allow, log: this.log.child('deploy'), target: upgradeTarget(this.installRoot, this.config.managers, this.log, this.restart) }).start()
    this.discovery = endpointDiscovery({ peerId: this.peerId, role: 'agent', version: HOLDFAST_VERSION, name: this.config.name, port: listenPort(node), fleetTag: fleetTag(this.config.fleetKey), mdns: this.config.mdns, clock: this.clock, log: this.log.child('discovery') })
    this.discovery.start()
    this.admin = new AdminServer(this.config.adminSocket, AGENT_API, {
      status: async () => this.status(),
      'scan-now': async req => req.join === true ? await this.rounds.join() : await this.scanNow()
    }, this.log, { group: this.config.admin.group })
    await this.admin.start()
    this.log.info('agent started', { peer: this.peerId, listen: node.getMultiaddrs().map(String), folders: this.config.agent.folders.map(f => f.path) })
    this.loop = this.scanLoop()
  }

  /** The supervisor's record of a failed upgrade it undid, for the manager's rolling upgrade. */
  private rolledBack (): { version: string, reason: string } | undefined {
    if (this.installRoot === undefined) return undefined
    try {
      const state = readUpgradeState(this.installRoot)
      return state?.phase === 'rolled-back' && state.failed !== undefined ? state.failed : undefined
    } catch (err) {
      this.log.warn('cannot read the upgrade state', { err: describeError(err) })
      return undefined
    }
  }


  async stop (): Promise<void> {
    this.controller.abort(new HoldfastError('ABORTED', 'agent stopping'))
    this.wake?.()
    await this.watchers.stop()
    await this.loop?.catch(() => {})
    await this.rounds.current?.catch(() => {})
    await this.admin?.stop()
    this.discovery?.stop()
    await this.node?.stop()
    this.spool.closeAll()
    this.state.close()
  }

  /**
   * Runs a staging round now and reports it. Asked while a round runs, it waits for the round
   * after it: the running one may have walked past what changed since it began.
   */
  async scanNow (): Promise<StageRoundResult> { return await this.rounds.run() }

  private async stageRound (): Promise<StageRoundResult> {
    // a round asked for while the last one ran must not start once the agent is stopping
    if (this.controller.signal.aborted) throw new HoldfastError('ABORTED', 'agent stopping')
    if (this.repairDue) this.repairSets()
    const result = await this.stager.stageRound({ signal: this.controller.signal })
    this.lastScan = { at: this.clock.now(), result }
    return result
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
      uploadWindows: { fromManager: this.managerWindows, own: this.config.agent.uploadWindows },
      config: {
        version: this.central.version,
        central: this.central.settings,
        settleSeconds: this.config.agent.settleSeconds,
        scanIntervalSeconds: this.config.agent.scanIntervalSeconds,
        spoolCapBytes: this.spoolCapBytes,
        workers: this.config.agent.workers,
        uploadWindows: this.config.agent.uploadWindows,
        idleLoadPerCpu: this.config.agent.idleLoadPerCpu,
        idleInputSeconds: this.config.agent.idleInputSeconds,
        ...(this.refused === undefined ? {} : { refused: this.refused })
      }
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
    this.nextScanAt = this.clock.now()
    while (!signal.aborted) {
      // read each time: a central config may have changed it
      const interval = this.config.agent.scanIntervalSeconds * 1000
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
