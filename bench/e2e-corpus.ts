/**
 * `npm run bench [-- CORPUS_DIR] [options]`: Holdfast against restic on one tree, in one run,
 * warm page cache, same machine (DESIGN.md §5 budgets). The corpus defaults to Debian's
 * linux-source-6.1, extracted once into /var/tmp/holdfast-corpus (or HOLDFAST_CORPUS).
 *
 * Holdfast runs as real daemons (manager + one agent, separate processes, the real CLI via the
 * TestFleet harness), talking over 127.0.0.1 only (mDNS off, the agent as a static peer).
 * Admin commands go over each daemon's admin socket with the same client the CLI uses
 * (adminCall), so the bench sees progress lines with their arrival times; what one CLI process
 * start costs is measured separately and reported (cliStartS).
 *
 *   first backup = agent process spawned → its first staging round sealed (scan-now returns)
 *                  → manager's backup-now returns (chunks pulled and verified, packs fsynced,
 *                  snapshot committed in the catalog, set acked by the agent)
 *   no change    = scan-now (nothing changed) + backup-now (nothing to pull)
 *   restore      = restore of the latest snapshot into an empty directory (then verified
 *                  with compareTrees, timed separately, not counted)
 *   stored       = packs/ + catalog.db (+ -wal, -shm) of the manager
 * restic does the same on the same tree: init (not timed), backup, backup again (no change),
 * restore latest, size of the repository.
 *
 * Other processes on the machine skew every figure, so before each timed phase the bench waits
 * (bounded) for the machine to be idle, and for each phase it reports the CPU seconds the rest
 * of the machine used meanwhile (load.otherS). Restores are file creations, whose cost on this
 * VM's disk swings widely: each restore is reported with a creation probe taken just before.
 *
 * Two-host split (issue 12): on a real fleet the agent runs on the endpoint and the manager on
 * a server, so their CPUs do not compete. `--split` imitates that on this 2-CPU machine with
 * taskset: every agent process (its worker threads inherit the affinity) on CPU 0, the manager
 * on CPU 1, restic on CPU 0 (the endpoint) with its repository on the same disk. Without it both
 * daemons and restic share both CPUs ("shared box"). `--both` runs the shared box for the first
 * backup only (Holdfast and restic), then the split for every phase.
 *
 * Every run ends with issue 12's targets table (bench/targets-table.ts), one line per row:
 * Holdfast, restic, ratio, target, met or MISSED. The agent's CPU-s are the agent process's
 * user + sys (threads and reaped children included, /proc/<pid>/stat) from spawn to the end
 * of the first backup; restic's from bash `times`. Peak RSS: VmHWM of the daemon (worker
 * threads share it); the manager's is reset (clear_refs) before the restore so the restore
 * row is the restore's own; restic's comes from GNU time (wait4's maxrss). The small-file tree
 * row (10 × the corpus's file count of 1-4 KiB files, as bench:agent makes it: 786k for
 * corpus A) is the agent staging that tree with no manager, against restic backing it up.
 *
 * No bulk delete before a timed restore: on this disk file creation slows for minutes after
 * tens of thousands of files are deleted. So nothing the bench made is deleted until every
 * timed phase is over: each restore (and each retry) goes into a new directory, each restic
 * retry into a new repository, the creation probes are left in place, and every fleet root,
 * restic root, restored tree and the small-file tree are removed at the very end.
 *
 * Options:
 *   --split              the two-host split (taskset: agent and restic on CPU 0, manager on 1)
 *   --both               shared box (first backup only) and then the split (every phase)
 *   --small-files N      files in the small-file tree (default 10 × the corpus's file count)
 *   --skip-small-tree    no small-file tree row
 *   --small-tree DIR     use this small-file tree, made beforehand (makeSmallTree in
 *                        bench/support.ts: `node dist/bench/make-small-tree.js DIR N`), and
 *                        leave it in place: making 786k files takes 25-45 min on this disk,
 *                        so it can be made once, before the quiet run
 *   --out FILE           write the results as JSON to FILE (always printed to stdout too)
 *   --nochange-runs N    no-change backups for each tool (default 3; the median is compared)
 *   --restic-first       run restic before Holdfast (default: Holdfast first)
 *   --skip-restic        Holdfast only (no ratios)
 *   --skip-verify        do not compare the restored tree with the source
 *   --quiet-wait S       wait at most S seconds for an idle machine before each phase (default
 *                        180); a phase disturbed anyway (others used > 5% of the CPU) is run
 *                        again, up to 3 times (the first backup: twice), discarded tries listed
 *   --profile DIR        run both daemons under --cpu-prof, profiles into DIR (timings are
 *                        then inflated; use for "where the time goes", not for figures)
 *   --workdir DIR        where temp dirs go (default /var/tmp)
 *   --label TEXT         recorded in the JSON (e.g. the commit measured, when not a git checkout)
 *   --overlap            first backup with backup-now called again and again while the agent
 *                        stages, so each set (sealed every 20,000 entries) is pulled as soon as
 *                        it is sealed; default: scan-now, then one backup-now
 *   --keep               keep the temp dirs (fleet root, restore, restic repo)
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { basename, dirname, join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { TestFleet, runCli, HOLDFAST_BIN, pinPrefix } from '../test/support/fleet.js'
import { compareTrees } from '../test/support/trees.js'
import { adminCall } from '../src/admin/admin-socket.js'
import type { RoundResult } from '../src/roles/manager/manager.js'
import type { SnapshotRow } from '../src/admin/api.js'
import type { SetSummary } from '../src/model/entry.js'
import type { RestoreSummary } from '../src/store/restore.js'
import type { AgentStatus } from '../src/roles/agent/agent.js'
import { cpuTotals, cpusAllowed, cpuWithChildren, createProbe, duBytes, ensureCorpus, freePort, machineFacts, makeSmallTree, median, procSample, resetPeakRss, round, runTimed, say, sourceRevision, syncDisks, treeFacts, waitQuiet, warmCache, type MachineFacts, type TreeFacts } from './support.js'
import { formatTargetTable, targetRows, type Pair, type TableFigures, type TableRow } from './targets-table.js'

const LONG_MS = 20 * 60_000

/** CPU lists for taskset in the two-host split; undefined: the shared box. */
export interface Pinning { agent: string, manager: string, restic: string }
const SPLIT: Pinning = Object.freeze({ agent: '0', manager: '1', restic: '0' })
type Mode = 'shared' | 'split'


/** What scan-now answers, in the shape of any version (one `set`, or `sets` since sets are sealed
 * every 20,000 entries). */
interface ScanReply { set?: SetSummary, sets?: SetSummary[], changed: number, scanned: number }
function setsOf (r: ScanReply): SetSummary[] { return r.sets ?? (r.set === undefined ? [] : [r.set]) }

interface ProgressMark { setId: number, atS: number, chunksDone: number, chunksTotal: number, bytesPulled: number }

/** CPU the machine spent during a phase: ours (the measured processes) and everyone else's. */
interface PhaseLoad { quietWaitS: number, busyBefore: number, machineBusyS: number, oursS: number, otherS: number }

/** Attempts of a phase thrown away because the rest of the machine was busy meanwhile. */
interface Discarded { wallS: number, otherS: number }

/** Tries per phase before a disturbed measurement is kept anyway (and flagged by its load). */
const MAX_ATTEMPTS = 3

/** Disturbed: the rest of the machine used more than 5% of the CPU there was (and > 0.2 s). */
function disturbed (load: PhaseLoad, wallS: number): boolean {
  return load.otherS > Math.max(0.2, 0.05 * wallS * availableParallelism())
}

interface HoldfastResults {
  revision: { commit: string, srcDirty: boolean | undefined }
  cliStartS: number
  pids: { agent?: number, manager?: number }
  /** Cpus_allowed_list of every thread of each daemon, read while they ran (split: ["0"], ["1"]). */
  cpusAllowed: { agent: string[], manager: string[] }
  /** Phase boundaries on CLOCK_MONOTONIC (µs), to slice --cpu-prof profiles. */
  clockMarks: Record<string, number>
  firstBackup: {
    totalS: number
    agentUpS: number
    stagingS: number
    pullS: number
    load: PhaseLoad
    fromLogs: Record<string, number | undefined>
    pullPhases: Record<string, number | undefined>
    pullPerSet: Array<{ set: number, batches: number, firstBatchS?: number, lastBatchS?: number, committedS?: number }>
    sets: { count: number, entries: number, chunks: number, rawBytes: number, storedBytes: number }
    overlap: boolean
    backupRounds: number
    snapshots: RoundResult['peers'][number]['snapshots']
    bytesPulled: number
    agentCpuS?: number
    managerCpuS?: number
    agentPeakRssMiB?: number
    managerPeakRssMiB?: number
  }
  /** absent when only the first backup was run (the shared box under --both) */
  noChange?: { runs: Array<{ scanS: number, backupS: number, totalS: number, load: PhaseLoad }>, medianS: number, discarded: Discarded[] }
  restore?: { wallS: number, createProbeUsPerFile: number, load: PhaseLoad, summary: Omit<RestoreSummary, 'errors'> & { errors: number }, managerCpuS?: number, managerPeakRssMiB?: number, managerPeakRssReset: boolean, discarded: Discarded[] }
  verify?: { seconds: number, differences: number, sample: string[] }
  stored: { packsBytes: number, catalogBytes: number, totalBytes: number, packs: number }
  agentSpoolAfterAckBytes?: number
}

interface ResticResults {
  version: string
  pinnedTo?: string
  initial: { wallS: number, cpuS?: number, peakRssMiB?: number, load: PhaseLoad, summary?: Record<string, unknown>, discarded: Discarded[] }
  noChange?: { runs: Array<{ wallS: number, cpuS?: number, load: PhaseLoad }>, medianS: number, discarded: Discarded[] }
  restore?: { wallS: number, cpuS?: number, peakRssMiB?: number, createProbeUsPerFile: number, load: PhaseLoad, discarded: Discarded[] }
  repoBytes: number
}

/** One mode's run: both tools, or only their first backups (firstOnly). */
interface ModeRun { mode: Mode, pinning?: Pinning, firstOnly: boolean, holdfast: HoldfastResults, firstBackupDiscarded: Discarded[], restic?: ResticResults }

/** The small-file tree: the agent staging it (no manager, as bench:agent), restic backing it up. */
interface SmallTreeResults {
  files: number
  fileBytes: number
  /** Seconds to make the tree; absent when it was made beforehand (--small-tree). */
  makeS?: number
  holdfast: { stagingS: number, sets: number, cpuS?: number, peakRssMiB?: number, cpusAllowed: string[], load: PhaseLoad }
  restic?: { wallS: number, cpuS?: number, peakRssMiB?: number, load: PhaseLoad }
}

function sec (ms: number): number { return Math.round(ms) / 1000 }

/** CLOCK_MONOTONIC in µs: the clock V8 stamps --cpu-prof samples with (see cpuprofile-top). */
function mono (): number { return Number(process.hrtime.bigint() / 1000n) }

function procCpu (pid: number | undefined): number {
  const s = procSample(pid)
  return s === undefined ? 0 : s.userS + s.sysS
}

/** Starts a phase: waits for a quiet machine, then samples CPU counters. */
async function beginPhase (quietWaitMs: number, pids: Array<number | undefined>): Promise<(pidsNow: Array<number | undefined>, extraOursS?: number) => PhaseLoad> {
  syncDisks()
  const quiet = await waitQuiet({ maxWaitMs: quietWaitMs })
  if (quiet.busy > 0.1) say(`   (machine still ${Math.round(quiet.busy * 100)}% busy after ${quiet.waitedS} s; measuring anyway, see load.otherS)`)
  const machine0 = cpuTotals()
  const self0 = process.cpuUsage()
  const procs0 = new Map<number, number>()
  for (const pid of pids) if (pid !== undefined) procs0.set(pid, procCpu(pid))
  return (pidsNow, extraOursS = 0) => {
    const machine = cpuTotals().busyS - machine0.busyS
    const self = process.cpuUsage(self0)
    let ours = (self.user + self.system) / 1e6 + extraOursS
    for (const pid of pidsNow) if (pid !== undefined) ours += procCpu(pid) - (procs0.get(pid) ?? 0)
    return { quietWaitS: quiet.waitedS, busyBefore: quiet.busy, machineBusyS: round(machine) as number, oursS: round(ours) as number, otherS: round(Math.max(0, machine - ours)) as number }
  }
}

/** Time (ms since epoch) of the first (or last) log line containing `needle`, from a daemon log. */
function logTime (file: string, needle: string, last = false): number | undefined {
  let text = ''
  try { text = readFileSync(file, 'utf8') } catch { return undefined }
  const lines = text.split('\n')
  if (last) lines.reverse()
  for (const line of lines) {
    if (!line.includes(needle)) continue
    const t = Date.parse(line.slice(0, 24))
    if (Number.isFinite(t)) return t
  }
  return undefined
}

/** Paths to remove once every timed phase is over (no bulk delete before a timed restore). */
class Deferred {
  readonly paths: string[] = []
  constructor (readonly keep: boolean) {}
  add (path: string): void { this.paths.push(path) }
  removeAll (): void {
    if (this.keep) { for (const p of this.paths) say(`   kept ${p}`); return }
    for (const p of this.paths.splice(0)) rmSync(p, { recursive: true, force: true })
  }
}

async function benchHoldfast (corpus: string, workdir: string, options: { nochangeRuns: number, verify: boolean, quietWaitMs: number, overlap: boolean, profileDir?: string, keep: boolean, pin?: Pinning, firstOnly: boolean, deferred: Deferred }): Promise<HoldfastResults> {
  const root = mkdtempSync(join(workdir, 'holdfast-bench-'))
  options.deferred.add(root)
  const fleet = new TestFleet(root)
  const stopOnSignal = (): void => { void fleet.stopAll().finally(() => { if (!options.keep) rmSync(root, { recursive: true, force: true }); process.exit(130) }) }
  process.once('SIGINT', stopOnSignal)
  process.once('SIGTERM', stopOnSignal)
  try {
    say(`== Holdfast: fleet in ${root}`)
    const port = await freePort()
    await fleet.init({ mdns: false, bandwidth: 10_000_000_000 })
    const agent = await fleet.addAgent('bench', corpus, { mdns: false, listen: `/ip4/127.0.0.1/tcp/${port}` })
    // The agent's peer id exists only after `join`: list it as the manager's static peer now.
    fleet.patchConfig(fleet.managerConfig, c => { c.staticPeers = [`/ip4/127.0.0.1/tcp/${port}/p2p/${agent.peerId}`] })

    // What one `holdfast` CLI process costs to start and answer (not in the figures below).
    const cliT = performance.now()
    await runCli(['--version'], { timeoutMs: 30_000 })
    const cliStartS = sec(performance.now() - cliT)

    const savedNodeOptions = process.env.NODE_OPTIONS
    if (options.profileDir !== undefined) {
      mkdirSync(options.profileDir, { recursive: true })
      process.env.NODE_OPTIONS = `${savedNodeOptions ?? ''} --cpu-prof --cpu-prof-dir=${options.profileDir}`.trim()
    }
    await fleet.startManager({ cpus: options.pin?.manager })
    const managerPid = fleet.process('manager')?.pid
    const marks: Record<string, number> = {}

    // ---- first backup: the clock starts when the agent process is spawned; its first staging
    // round starts on its own right after it is up.
    const endFirst = await beginPhase(options.quietWaitMs, [managerPid])
    const managerBefore = procSample(managerPid)
    const wallT0 = Date.now()
    const t0 = performance.now()
    marks.firstBackupStart = mono()
    await fleet.startAgent(agent, { cpus: options.pin?.agent })
    if (options.profileDir !== undefined) {
      if (savedNodeOptions === undefined) delete process.env.NODE_OPTIONS; else process.env.NODE_OPTIONS = savedNodeOptions
    }
    const agentPid = fleet.process('agent-bench')?.pid
    const tUp = performance.now()
    marks.agentUp = mono()
    say(`   agent up after ${sec(tUp - t0)} s; waiting for its first staging round`)
    // progress times are seconds since the agent was spawned
    const progress: ProgressMark[] = []
    const snapshots: RoundResult['peers'][number]['snapshots'] = []
    let bytesPulled = 0
    let backupRounds = 0
    const backupNow = async (): Promise<void> => {
      const r = await adminCall(fleet.managerSocket, 'backup-now', { expectPeers: 1, timeoutMs: 60_000 }, {
        timeoutMs: LONG_MS,
        onProgress: p => {
          const q = p as { setId: number, chunksDone: number, chunksTotal: number, bytesPulled: number }
          progress.push({ setId: q.setId, atS: (performance.now() - t0) / 1000, chunksDone: q.chunksDone, chunksTotal: q.chunksTotal, bytesPulled: q.bytesPulled })
        }
      }) as RoundResult
      backupRounds++
      const peer = r.peers[0]
      if (peer === undefined || !peer.ok) throw new Error(`backup-now failed: ${JSON.stringify(r)}`)
      snapshots.push(...peer.snapshots)
      bytesPulled += peer.bytesPulled
    }
    let staged: ScanReply | undefined
    let tStaged = 0
    const scanning = adminCall(agent.socket, 'scan-now', { join: true }, { timeoutMs: LONG_MS }).then(r => { staged = r as ScanReply; tStaged = performance.now(); marks.staged = mono() })
    scanning.catch(() => {})
    if (options.overlap) {
      // pull each set as soon as it is sealed, as a manager polling often would
      while (staged === undefined) {
        const before = snapshots.length
        await backupNow()
        if (snapshots.length === before) await Promise.race([scanning, new Promise(resolve => setTimeout(resolve, 250))])
      }
    }
    await scanning
    // read while the staging workers still exist: they must sit on the agent's CPU too
    const cpus = { agent: cpusAllowed(agentPid), manager: cpusAllowed(managerPid) }
    if (staged === undefined) throw new Error('scan-now gave no answer')
    const stagedSets = setsOf(staged)
    const sets = {
      count: stagedSets.length,
      entries: stagedSets.reduce((n, x) => n + x.entries, 0),
      chunks: stagedSets.reduce((n, x) => n + x.chunks, 0),
      rawBytes: stagedSets.reduce((n, x) => n + x.rawBytes, 0),
      storedBytes: stagedSets.reduce((n, x) => n + x.storedBytes, 0)
    }
    say(`   staged after ${sec(tStaged - t0)} s: ${JSON.stringify(sets)}${options.overlap ? ` (${snapshots.length} already pulled meanwhile)` : ''}`)
    await backupNow()
    const tDone = performance.now()
    marks.backedUp = mono()
    const firstLoad = endFirst([managerPid, agentPid])
    // The scheduler visits a new agent at once (issue 9): it may have pulled a set that was
    // sealed while staging went on, before backup-now. Those are in the catalog, not in the reply.
    const committed = await adminCall(fleet.managerSocket, 'snapshots', {}, { timeoutMs: 60_000 }) as SnapshotRow[]
    if (committed.length > snapshots.length) say(`   ${committed.length - snapshots.length} set(s) pulled by the scheduler before backup-now (counted in the time, not in bytesPulled)`)
    if (committed.length === 0 || committed.length !== sets.count) throw new Error(`first backup did not commit one snapshot per staged set (${sets.count}): ${JSON.stringify(snapshots)}`)
    const agentAfter = procSample(agentPid)
    const managerAfter = procSample(managerPid)
    const status = await adminCall(agent.socket, 'status', {}, { timeoutMs: 60_000 }) as AgentStatus
    if (status.lastAck === undefined || status.filesNotBackedUp !== 0 || status.sealedSets !== 0) {
      throw new Error(`agent does not report the set acknowledged: ${JSON.stringify({ lastAck: status.lastAck, notBackedUp: status.filesNotBackedUp, sealed: status.sealedSets })}`)
    }
    say(`   backed up after ${sec(tDone - t0)} s (pull ${sec(tDone - tStaged)} s); other processes used ${firstLoad.otherS} CPU-s meanwhile`)

    const agentLog = join(root, 'agent-bench.log')
    const managerLog = join(root, 'manager.log')
    const rel = (t: number | undefined): number | undefined => t === undefined ? undefined : sec(t - wallT0)
    const fromLogs = {
      agentStartedAtS: rel(logTime(agentLog, 'agent started')),
      firstSetSealedAtS: rel(logTime(agentLog, 'sealed staging set')),
      lastSetSealedAtS: rel(logTime(agentLog, 'sealed staging set', true)),
      lastAgentAckAtS: rel(logTime(agentLog, 'set acknowledged by manager', true)),
      firstSnapshotCommittedAtS: rel(logTime(managerLog, 'snapshot committed and acknowledged')),
      lastSnapshotCommittedAtS: rel(logTime(managerLog, 'snapshot committed and acknowledged', true))
    }
    // Progress arrives once per fetch batch of 1024 chunks. Per set: before its first batch the
    // manager read the set's entries and looked up which chunks it lacks (and, for the first
    // set, listed the manifest); after its last batch it finishes verifying, fsyncs the packs,
    // commits the catalog and acks (the manager logs the commit, with the set id).
    // (in --overlap mode sets are pulled while others are staged: the split below is then only
    // indicative, pullS is the tail after staging ended)
    const committedAt = new Map<number, number>()
    try {
      for (const line of readFileSync(managerLog, 'utf8').split('\n')) {
        const m = /snapshot committed and acknowledged .*\bset=(\d+)/.exec(line)
        if (m !== null) committedAt.set(Number(m[1]), (Date.parse(line.slice(0, 24)) - wallT0) / 1000)
      }
    } catch {}
    const perSet: Array<{ set: number, batches: number, firstBatchS: number, lastBatchS: number, committedS?: number }> = []
    for (const mark of progress) {
      let row = perSet.find(x => x.set === mark.setId)
      if (row === undefined) { row = { set: mark.setId, batches: 0, firstBatchS: mark.atS, lastBatchS: mark.atS, committedS: committedAt.get(mark.setId) }; perSet.push(row) }
      row.batches++
      row.lastBatchS = mark.atS
    }
    const multi = perSet.filter(x => x.batches >= 2)
    const batchS = multi.length === 0 ? undefined : multi.reduce((n, x) => n + x.lastBatchS - x.firstBatchS, 0) / multi.reduce((n, x) => n + x.batches - 1, 0)
    const pullS = sec(tDone - tStaged)
    const fetchS = batchS === undefined ? undefined : perSet.reduce((n, x) => n + x.lastBatchS - x.firstBatchS + batchS, 0)
    const afterLastBatchS = perSet.every(x => x.committedS !== undefined) ? perSet.reduce((n, x) => n + ((x.committedS as number) - x.lastBatchS), 0) : undefined
    const lastBytes = progress.length === 0 ? 0 : progress[progress.length - 1].bytesPulled
    const pullPhases = {
      sets: perSet.length,
      batches: progress.length,
      secondsPerBatch: round(batchS, 3),
      fetchS: round(fetchS, 3),
      afterLastBatchS: round(afterLastBatchS, 3),
      entriesAndLookupsS: fetchS === undefined || afterLastBatchS === undefined ? undefined : round(pullS - fetchS - afterLastBatchS, 3),
      pullMiBps: round(bytesPulled / 2 ** 20 / pullS, 1),
      lastSetBytes: lastBytes
    }
    const pullPerSet = perSet.map(x => ({ ...x, firstBatchS: round(x.firstBatchS, 3), lastBatchS: round(x.lastBatchS, 3), committedS: round(x.committedS, 3) }))

    const firstBackup: HoldfastResults['firstBackup'] = {
      totalS: sec(tDone - t0),
      agentUpS: sec(tUp - t0),
      stagingS: sec(tStaged - t0),
      pullS: sec(tDone - tStaged),
      load: firstLoad,
      fromLogs,
      pullPhases,
      pullPerSet,
      sets,
      overlap: options.overlap,
      backupRounds,
      snapshots,
      bytesPulled,
      // the agent's whole life so far: spawn, staging, serving the pull (children included)
      agentCpuS: round(cpuWithChildren(agentAfter)),
      managerCpuS: round(managerAfter === undefined || managerBefore === undefined ? undefined : (cpuWithChildren(managerAfter) as number) - (cpuWithChildren(managerBefore) as number)),
      agentPeakRssMiB: round(agentAfter?.vmHwmMiB, 0),
      managerPeakRssMiB: round(managerAfter?.vmHwmMiB, 0)
    }
    const storedNow = (): HoldfastResults['stored'] => {
      const packsDir = join(fleet.managerDir, 'packs')
      const packsBytes = duBytes(packsDir)
      // the catalog's WAL counts: it is part of what is on disk
      const catalogBytes = ['catalog.db', 'catalog.db-wal', 'catalog.db-shm'].reduce((n, f) => n + duBytes(join(fleet.managerDir, f)), 0)
      return { packsBytes, catalogBytes, totalBytes: packsBytes + catalogBytes, packs: readdirSync(packsDir).length }
    }
    const base = { revision: sourceRevision(join(dirname(HOLDFAST_BIN), '..')), cliStartS, pids: { agent: agentPid, manager: managerPid }, cpusAllowed: cpus, clockMarks: marks, firstBackup }
    if (options.firstOnly) return { ...base, stored: storedNow() }

    // ---- no-change backups
    const noChange: NonNullable<HoldfastResults['noChange']>['runs'] = []
    const noChangeDiscarded: Discarded[] = []
    marks.noChangeStart = mono()
    for (let i = 0; i < options.nochangeRuns; i++) {
      for (let attempt = 1; ; attempt++) {
        const end = await beginPhase(options.quietWaitMs, [managerPid, agentPid])
        const a = performance.now()
        const scan = await adminCall(agent.socket, 'scan-now', {}, { timeoutMs: LONG_MS }) as ScanReply
        const b = performance.now()
        const r = await adminCall(fleet.managerSocket, 'backup-now', { expectPeers: 1, timeoutMs: 60_000 }, { timeoutMs: LONG_MS }) as RoundResult
        const c = performance.now()
        const load = end([managerPid, agentPid])
        if (setsOf(scan).length > 0 || scan.changed !== 0) throw new Error(`no-change scan staged something: ${JSON.stringify(scan)}`)
        if (r.peers[0]?.ok !== true || r.peers[0].snapshots.length !== 0) throw new Error(`no-change backup-now did not come back empty: ${JSON.stringify(r)}`)
        say(`   no change #${i + 1}: scan ${sec(b - a)} s + backup-now ${sec(c - b)} s (other CPU ${load.otherS} s)`)
        if (disturbed(load, sec(c - a)) && attempt < MAX_ATTEMPTS) { noChangeDiscarded.push({ wallS: sec(c - a), otherS: load.otherS }); say('     disturbed by other processes: again'); continue }
        noChange.push({ scanS: sec(b - a), backupS: sec(c - b), totalS: sec(c - a), load })
        break
      }
    }
    marks.noChangeEnd = mono()

    // ---- stored size
    const stored = storedNow()
    const agentSpoolAfterAckBytes = duBytes(join(agent.dataDir, 'spool'))

    // ---- restore (by peer id: a static peer's name is never learnt by the manager, so the
    // catalog holds the endpoint with an empty name)
    // Each try restores into a new directory and nothing is deleted first (see the header);
    // the manager writes the files itself, so its CPU-s over the call are the restore's.
    const restoreDiscarded: Discarded[] = []
    let summary: RestoreSummary
    let restoreS: number
    let restoreLoad: PhaseLoad
    let createProbeUsPerFile: number
    let target: string
    let managerRestoreCpuS: number | undefined
    let peakReset = false
    for (let attempt = 1; ; attempt++) {
      target = join(root, `restore-${attempt}`)
      createProbeUsPerFile = createProbe(root, true)
      const endRestore = await beginPhase(options.quietWaitMs, [managerPid, agentPid])
      peakReset = resetPeakRss(managerPid)
      const m0 = procSample(managerPid)
      const r0 = performance.now()
      marks.restoreStart = mono()
      summary = await adminCall(fleet.managerSocket, 'restore', { endpoint: agent.peerId, target }, { timeoutMs: LONG_MS }) as RestoreSummary
      restoreS = sec(performance.now() - r0)
      marks.restoreEnd = mono()
      const m1 = procSample(managerPid)
      managerRestoreCpuS = round(m0 === undefined || m1 === undefined ? undefined : (cpuWithChildren(m1) as number) - (cpuWithChildren(m0) as number))
      restoreLoad = endRestore([managerPid, agentPid])
      say(`   restore: ${restoreS} s, ${summary.files} files, ${summary.errors.length} errors (file creation probe: ${createProbeUsPerFile} µs/file, other CPU ${restoreLoad.otherS} s)`)
      if (disturbed(restoreLoad, restoreS) && attempt < MAX_ATTEMPTS) { restoreDiscarded.push({ wallS: restoreS, otherS: restoreLoad.otherS }); say('     disturbed by other processes: again'); continue }
      break
    }
    const managerAfterRestore = procSample(managerPid)
    if (summary.errors.length > 0) say(`   first restore errors: ${JSON.stringify(summary.errors.slice(0, 5))}`)
    let verify: HoldfastResults['verify']
    if (options.verify) {
      const v0 = performance.now()
      const diffs = compareTrees(corpus, join(target, basename(corpus)))
      verify = { seconds: sec(performance.now() - v0), differences: diffs.length, sample: diffs.slice(0, 10).map(d => `${d.path}: ${d.what}`) }
      say(`   verify (not timed in the figures): ${verify.differences} differences in ${verify.seconds} s`)
    }

    return {
      ...base,
      noChange: { runs: noChange, medianS: median(noChange.map(r => r.totalS)), discarded: noChangeDiscarded },
      restore: { wallS: restoreS, createProbeUsPerFile, load: restoreLoad, summary: { ...summary, errors: summary.errors.length }, managerCpuS: managerRestoreCpuS, managerPeakRssMiB: round(managerAfterRestore?.vmHwmMiB, 0), managerPeakRssReset: peakReset, discarded: restoreDiscarded },
      verify,
      stored,
      agentSpoolAfterAckBytes
    }
  } finally {
    await fleet.stopAll()
    process.off('SIGINT', stopOnSignal)
    process.off('SIGTERM', stopOnSignal)
    // the fleet root (with the restored trees) is removed with the rest at the very end
  }
}

async function benchRestic (corpus: string, workdir: string, options: { nochangeRuns: number, quietWaitMs: number, pinTo?: string, firstOnly: boolean, deferred: Deferred }): Promise<ResticResults> {
  const root = mkdtempSync(join(workdir, 'restic-bench-'))
  // removed with the rest at the very end (repositories, restored trees)
  options.deferred.add(root)
  // the repository sits beside the tree, on the same disk (the endpoint's), as in a real run
  const env = { RESTIC_PASSWORD: 'holdfast-bench', RESTIC_REPOSITORY: join(root, 'repo-1'), RESTIC_CACHE_DIR: join(root, 'cache-1'), RESTIC_PROGRESS_FPS: '0.1' }
  const prefix = pinPrefix(options.pinTo)
  const cpu = (t: { childUserS?: number, childSysS?: number }): number | undefined => t.childUserS === undefined || t.childSysS === undefined ? undefined : round(t.childUserS + t.childSysS)
  const must = (t: { code: number, stderr: string }, what: string): void => { if (t.code !== 0) throw new Error(`restic ${what} failed (${t.code}): ${t.stderr.trim().slice(-2000)}`) }
  say(`== restic: repository in ${root}`)
  const version = (await runTimed(['restic', 'version'], { env, timeoutMs: 30_000 })).stdout.trim()
  const initialDiscarded: Discarded[] = []
  let initial: Awaited<ReturnType<typeof runTimed>>
  let initialLoad: PhaseLoad
  for (let attempt = 1; ; attempt++) {
    // a fresh repository each attempt (the initial backup must find nothing stored), in a
    // new directory: the old one is deleted at the end, not before a timed phase
    env.RESTIC_REPOSITORY = join(root, `repo-${attempt}`)
    env.RESTIC_CACHE_DIR = join(root, `cache-${attempt}`)
    must(await runTimed(['restic', 'init'], { env, timeoutMs: 120_000, prefix }), 'init')
    const end = await beginPhase(options.quietWaitMs, [])
    initial = await runTimed(['restic', 'backup', '--json', corpus], { env, timeoutMs: LONG_MS, prefix, peakRss: true })
    initialLoad = end([], cpu(initial))
    must(initial, 'backup')
    say(`   initial backup: ${round(initial.wallS)} s (cpu ${cpu(initial)} s, peak RSS ${round(initial.peakRssMiB, 0) ?? '?'} MiB, other CPU ${initialLoad.otherS} s)`)
    if (disturbed(initialLoad, initial.wallS) && attempt < MAX_ATTEMPTS) { initialDiscarded.push({ wallS: round(initial.wallS) as number, otherS: initialLoad.otherS }); say('     disturbed by other processes: again'); continue }
    break
  }
  const summaryLine = initial.stdout.trim().split('\n').reverse().find(l => l.includes('"message_type":"summary"'))
  const summary = summaryLine === undefined ? undefined : JSON.parse(summaryLine) as Record<string, unknown>
  const initialResult = { wallS: round(initial.wallS) as number, cpuS: cpu(initial), peakRssMiB: round(initial.peakRssMiB, 0), load: initialLoad, summary, discarded: initialDiscarded }
  if (options.firstOnly) return { version, pinnedTo: options.pinTo, initial: initialResult, repoBytes: duBytes(env.RESTIC_REPOSITORY) }
  const runs: NonNullable<ResticResults['noChange']>['runs'] = []
  const noChangeDiscarded: Discarded[] = []
  for (let i = 0; i < options.nochangeRuns; i++) {
    for (let attempt = 1; ; attempt++) {
      const end = await beginPhase(options.quietWaitMs, [])
      const t = await runTimed(['restic', 'backup', '--json', corpus], { env, timeoutMs: LONG_MS, prefix })
      const load = end([], cpu(t))
      must(t, 'backup (no change)')
      say(`   no change #${i + 1}: ${round(t.wallS)} s (other CPU ${load.otherS} s)`)
      if (disturbed(load, t.wallS) && attempt < MAX_ATTEMPTS) { noChangeDiscarded.push({ wallS: round(t.wallS) as number, otherS: load.otherS }); say('     disturbed by other processes: again'); continue }
      runs.push({ wallS: round(t.wallS) as number, cpuS: cpu(t), load })
      break
    }
  }
  // the repository holds 1 + the no-change snapshots; those add a few KiB of metadata each
  const repoBytes = duBytes(env.RESTIC_REPOSITORY)
  const restoreDiscarded: Discarded[] = []
  let restore: Awaited<ReturnType<typeof runTimed>>
  let restoreLoad: PhaseLoad
  let createProbeUsPerFile: number
  for (let attempt = 1; ; attempt++) {
    // a new, empty directory each try; nothing deleted before it (see the header)
    const target = join(root, `restore-${attempt}`)
    createProbeUsPerFile = createProbe(root, true)
    const end = await beginPhase(options.quietWaitMs, [])
    restore = await runTimed(['restic', 'restore', 'latest', '--target', target], { env, timeoutMs: LONG_MS, prefix, peakRss: true })
    restoreLoad = end([], cpu(restore))
    must(restore, 'restore')
    say(`   restore: ${round(restore.wallS)} s (file creation probe: ${createProbeUsPerFile} µs/file, other CPU ${restoreLoad.otherS} s)`)
    if (disturbed(restoreLoad, restore.wallS) && attempt < MAX_ATTEMPTS) { restoreDiscarded.push({ wallS: round(restore.wallS) as number, otherS: restoreLoad.otherS }); say('     disturbed by other processes: again'); continue }
    break
  }
  return {
    version,
    pinnedTo: options.pinTo,
    initial: initialResult,
    noChange: { runs, medianS: median(runs.map(r => r.wallS)), discarded: noChangeDiscarded },
    restore: { wallS: round(restore.wallS) as number, cpuS: cpu(restore), peakRssMiB: round(restore.peakRssMiB, 0), createProbeUsPerFile, load: restoreLoad, discarded: restoreDiscarded },
    repoBytes
  }
}

/** CPU-s others used during the phases a row rests on, when that disturbed either side; else undefined. */
function disturbance (pairs: Array<[PhaseLoad | undefined, number | undefined]>): number | undefined {
  const bad = pairs.filter((p): p is [PhaseLoad, number] => p[0] !== undefined && p[1] !== undefined && disturbed(p[0], p[1]))
  return bad.length === 0 ? undefined : round(bad.reduce((n, [load]) => n + load.otherS, 0))
}

/**
 * The small-file tree (made after every timed restore, removed at the very end): the agent
 * stages it with no manager, as bench:agent does, and restic backs it up, each pinned to the
 * endpoint's CPU in the split.
 */
async function benchSmallTree (wantedFiles: number, workdir: string, options: { quietWaitMs: number, pin?: Pinning, skipRestic: boolean, deferred: Deferred, madeTree?: string }): Promise<SmallTreeResults> {
  let tree: string
  let makeS: number | undefined
  if (options.madeTree === undefined) {
    tree = mkdtempSync(join(workdir, 'holdfast-small-tree-'))
    options.deferred.add(tree)
    say(`== small-file tree: making ${wantedFiles} files in ${tree}`)
    const m0 = performance.now()
    makeSmallTree(tree, wantedFiles)
    makeS = sec(performance.now() - m0)
  } else {
    // made beforehand (--small-tree) and left in place; its own file count is what is reported
    tree = options.madeTree
    say(`== small-file tree: ${tree} (made beforehand)`)
  }
  const facts = treeFacts(tree)
  const files = facts.files
  say(`   ${files} files, ${(facts.fileBytes / 1e6).toFixed(1)} MB${makeS === undefined ? '' : `, made in ${makeS} s`}`)
  const root = mkdtempSync(join(workdir, 'holdfast-small-bench-'))
  options.deferred.add(root)
  const fleet = new TestFleet(root)
  let holdfast: SmallTreeResults['holdfast']
  try {
    await fleet.init({ mdns: false })
    const agent = await fleet.addAgent('small', tree, { mdns: false })
    const end = await beginPhase(options.quietWaitMs, [])
    const t0 = performance.now()
    await fleet.startAgent(agent, { cpus: options.pin?.agent })
    const pid = fleet.process('agent-small')?.pid
    const first = await adminCall(agent.socket, 'scan-now', { join: true }, { timeoutMs: LONG_MS }) as ScanReply
    const stagingS = sec(performance.now() - t0)
    const cpus = cpusAllowed(pid)
    const after = procSample(pid)
    const load = end([pid])
    holdfast = { stagingS, sets: setsOf(first).length, cpuS: round(cpuWithChildren(after)), peakRssMiB: round(after?.vmHwmMiB, 0), cpusAllowed: cpus, load }
    say(`   agent staged it in ${stagingS} s, ${holdfast.cpuS ?? '?'} CPU-s, peak RSS ${holdfast.peakRssMiB ?? '?'} MiB (other CPU ${load.otherS} s)`)
  } finally {
    await fleet.stopAll()
  }
  if (options.skipRestic) return { files, fileBytes: facts.fileBytes, makeS, holdfast }
  const env = { RESTIC_PASSWORD: 'holdfast-bench', RESTIC_REPOSITORY: join(root, 'restic-repo'), RESTIC_CACHE_DIR: join(root, 'restic-cache'), RESTIC_PROGRESS_FPS: '0.1' }
  const prefix = pinPrefix(options.pin?.restic)
  const init = await runTimed(['restic', 'init'], { env, timeoutMs: 120_000, prefix })
  if (init.code !== 0) throw new Error(`restic init failed: ${init.stderr.trim().slice(-2000)}`)
  const end = await beginPhase(options.quietWaitMs, [])
  const t = await runTimed(['restic', 'backup', '--quiet', tree], { env, timeoutMs: LONG_MS, prefix, peakRss: true })
  const cpuS = t.childUserS === undefined || t.childSysS === undefined ? undefined : round(t.childUserS + t.childSysS)
  const load = end([], cpuS)
  if (t.code !== 0) throw new Error(`restic backup of the small-file tree failed: ${t.stderr.trim().slice(-2000)}`)
  const restic = { wallS: round(t.wallS) as number, cpuS, peakRssMiB: round(t.peakRssMiB, 0), load }
  say(`   restic backed it up in ${restic.wallS} s, ${cpuS ?? '?'} CPU-s, peak RSS ${restic.peakRssMiB ?? '?'} MiB (other CPU ${load.otherS} s)`)
  return { files, fileBytes: facts.fileBytes, makeS, holdfast, restic }
}

/** Issue 12's rows from the runs: the split (when run) gives every row but the shared box's. */
function tableFigures (runs: ModeRun[], small: SmallTreeResults | undefined, smallNote: string): TableFigures {
  const split = runs.find(r => r.mode === 'split')
  const shared = runs.find(r => r.mode === 'shared')
  const main = split ?? shared
  const label = (r: ModeRun | undefined): string | undefined => r === undefined ? undefined : r.mode === 'split' ? 'split' : 'shared box'
  const firstOf = (r: ModeRun | undefined, missing: string): Pair => r === undefined
    ? { missing }
    : { holdfast: r.holdfast.firstBackup.totalS, restic: r.restic?.initial.wallS, disturbedBy: disturbance([[r.holdfast.firstBackup.load, r.holdfast.firstBackup.totalS], [r.restic?.initial.load, r.restic?.initial.wallS]]), source: label(r), missing: r.restic === undefined ? 'restic skipped' : undefined }
  const h = main?.holdfast
  const r = main?.restic
  const src = label(main)
  const noRun = 'not run'
  const nc = h?.noChange
  const rs = h?.restore
  return {
    firstSplit: firstOf(split, 'needs --split or --both'),
    firstShared: firstOf(shared, 'needs a run without --split, or --both'),
    agentCpu: { holdfast: h?.firstBackup.agentCpuS, restic: r?.initial.cpuS, source: src },
    noChange: nc === undefined
      ? { missing: noRun }
      : { holdfast: nc.medianS, restic: r?.noChange?.medianS, source: src, disturbedBy: disturbance([...nc.runs.map(x => [x.load, x.totalS] as [PhaseLoad, number]), ...(r?.noChange?.runs ?? []).map(x => [x.load, x.wallS] as [PhaseLoad, number])]) },
    restoreWall: rs === undefined
      ? { missing: noRun }
      : { holdfast: rs.wallS, restic: r?.restore?.wallS, source: src, disturbedBy: disturbance([[rs.load, rs.wallS], [r?.restore?.load, r?.restore?.wallS]]) },
    restoreCpu: rs === undefined ? { missing: noRun } : { holdfast: rs.managerCpuS, restic: r?.restore?.cpuS, source: `${src ?? ''}, the manager process` },
    stored: { holdfast: h?.stored.totalBytes, restic: r?.repoBytes, source: src },
    agentRssCorpus: { holdfast: h?.firstBackup.agentPeakRssMiB, restic: r?.initial.peakRssMiB, source: src },
    agentRssSmall: small === undefined
      ? { missing: smallNote }
      : { holdfast: small.holdfast.peakRssMiB, restic: small.restic?.peakRssMiB, source: `${small.files} small files, agent staging only` },
    managerRssFirst: { holdfast: h?.firstBackup.managerPeakRssMiB, source: src },
    managerRssRestore: rs === undefined ? { missing: noRun } : { holdfast: rs.managerPeakRssMiB, source: `${src ?? ''}${rs.managerPeakRssReset ? '' : ', peak since start (clear_refs refused)'}` }
  }
}

function printTable (machine: MachineFacts, facts: TreeFacts, runs: ModeRun[], small: SmallTreeResults | undefined, rows: TableRow[]): void {
  const f = (x: number | undefined, unit = 's'): string => x === undefined ? '-' : `${x.toFixed(2)} ${unit}`
  say()
  say(`machine: ${machine.nproc} cpu (${machine.cpuModel}), ${machine.memTotalGiB} GiB, Node ${machine.node}, ${machine.restic}`)
  say(`corpus: ${facts.files} files, ${facts.dirs} dirs, ${facts.symlinks} symlinks, ${(facts.fileBytes / 1e9).toFixed(2)} GB of file data`)
  const rev = runs[0]?.holdfast.revision
  if (rev !== undefined) say(`holdfast: ${rev.commit}${rev.srcDirty === true ? ' + uncommitted changes in src/' : ''}`)
  for (const run of runs) {
    const h = run.holdfast
    const pin = run.pinning === undefined ? 'no pinning' : `agent on CPU ${run.pinning.agent} (its threads: ${h.cpusAllowed.agent.join(' ') || '?'}), manager on CPU ${run.pinning.manager} (its threads: ${h.cpusAllowed.manager.join(' ') || '?'}), restic on CPU ${run.pinning.restic}`
    say(`${run.mode}${run.firstOnly ? ' (first backup only)' : ''}: ${pin}`)
    say(`   first backup ${f(h.firstBackup.totalS)} = staging ${f(h.firstBackup.stagingS)} + pull/commit/ack ${f(h.firstBackup.pullS)}; manager ${f(h.firstBackup.managerCpuS, 'CPU-s')}; others used ${f(h.firstBackup.load.otherS, 'CPU-s')} (during restic's: ${f(run.restic?.initial.load.otherS, 'CPU-s')})`)
    if (h.restore !== undefined) say(`   restore: file creation probe ${h.restore.createProbeUsPerFile} / ${run.restic?.restore?.createProbeUsPerFile ?? '-'} µs/file (Holdfast / restic); restic's restore peak RSS ${run.restic?.restore?.peakRssMiB ?? '-'} MiB`)
  }
  if (small !== undefined) say(`small-file tree: ${small.files} files, agent staging ${f(small.holdfast.stagingS)} (${f(small.holdfast.cpuS, 'CPU-s')}), restic backup ${f(small.restic?.wallS)} (${f(small.restic?.cpuS, 'CPU-s')})`)
  say()
  for (const line of formatTargetTable(rows)) say(line)
  say()
}

async function main (): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      out: { type: 'string' },
      'nochange-runs': { type: 'string' },
      'restic-first': { type: 'boolean' },
      'skip-restic': { type: 'boolean' },
      'skip-verify': { type: 'boolean' },
      'quiet-wait': { type: 'string' },
      profile: { type: 'string' },
      workdir: { type: 'string' },
      label: { type: 'string' },
      keep: { type: 'boolean' },
      overlap: { type: 'boolean' },
      split: { type: 'boolean' },
      both: { type: 'boolean' },
      'small-files': { type: 'string' },
      'skip-small-tree': { type: 'boolean' },
      'small-tree': { type: 'string' }
    }
  })
  const corpus = resolve(ensureCorpus(positionals[0]))
  const workdir = resolve(values.workdir ?? '/var/tmp')
  const nochangeRuns = Math.max(1, Number(values['nochange-runs'] ?? 3))
  const quietWaitMs = Math.max(0, Number(values['quiet-wait'] ?? 180)) * 1000
  const keep = values.keep === true
  const skipRestic = values['skip-restic'] === true
  const deferred = new Deferred(keep)
  const machine = machineFacts()
  if ((values.split === true || values.both === true) && machine.nproc < 2) throw new Error('--split needs 2 CPUs (agent and restic on CPU 0, manager on CPU 1)')
  say(`== corpus ${corpus}`)
  const facts = treeFacts(corpus)
  const warmS = warmCache(corpus)
  say(`   ${facts.files} files, ${(facts.fileBytes / 1e9).toFixed(2)} GB; page cache warmed in ${warmS.toFixed(1)} s`)

  // --both: the shared box for its one row (first backup), then the split for every row
  const modes: Array<{ mode: Mode, firstOnly: boolean }> = values.both === true
    ? [{ mode: 'shared', firstOnly: true }, { mode: 'split', firstOnly: false }]
    : [{ mode: values.split === true ? 'split' : 'shared', firstOnly: false }]
  const runs: ModeRun[] = []
  let small: SmallTreeResults | undefined
  const smallFiles = Math.max(1, Number(values['small-files'] ?? facts.files * 10))
  try {
    for (const { mode, firstOnly } of modes) {
      const pin = mode === 'split' ? SPLIT : undefined
      say(`==== ${mode}${pin === undefined ? '' : ` (agent CPU ${pin.agent}, manager CPU ${pin.manager}, restic CPU ${pin.restic})`}${firstOnly ? ', first backup only' : ''}`)
      let holdfast: HoldfastResults | undefined
      let restic: ResticResults | undefined
      const firstDiscarded: Discarded[] = []
      const runHoldfast = async (): Promise<void> => {
        // the first backup needs a fresh fleet, so a disturbed one costs a whole Holdfast round
        for (let attempt = 1; ; attempt++) {
          holdfast = await benchHoldfast(corpus, workdir, { nochangeRuns, verify: values['skip-verify'] !== true, quietWaitMs, overlap: values.overlap === true, profileDir: values.profile === undefined ? undefined : resolve(values.profile), keep, pin, firstOnly, deferred })
          const fb = holdfast.firstBackup
          if (disturbed(fb.load, fb.totalS) && attempt < 2 && values.profile === undefined) {
            firstDiscarded.push({ wallS: fb.totalS, otherS: fb.load.otherS })
            say('   first backup disturbed by other processes: the Holdfast round again')
            warmCache(corpus)
            continue
          }
          break
        }
      }
      const runRestic = async (): Promise<void> => { if (!skipRestic) restic = await benchRestic(corpus, workdir, { nochangeRuns, quietWaitMs, pinTo: pin?.restic, firstOnly, deferred }) }
      // The page cache is warmed again right before each tool: this VM reclaims cold page cache
      // within minutes (kdamond), so a tree read 3 minutes ago may be partly gone.
      if (values['restic-first'] === true) { await runRestic(); warmCache(corpus); await runHoldfast() } else { await runHoldfast(); warmCache(corpus); await runRestic() }
      if (holdfast === undefined) throw new Error('Holdfast did not run')
      runs.push({ mode, pinning: pin, firstOnly, holdfast, firstBackupDiscarded: firstDiscarded, restic })
      if (modes.length > 1) warmCache(corpus)
    }
    // after every timed restore: making the tree is a bulk creation, and it is deleted last
    if (values['skip-small-tree'] !== true) {
      const last = modes[modes.length - 1]
      small = await benchSmallTree(smallFiles, workdir, { quietWaitMs, pin: last.mode === 'split' ? SPLIT : undefined, skipRestic, deferred, madeTree: values['small-tree'] === undefined ? undefined : resolve(values['small-tree']) })
    }
  } finally {
    say('== removing what the bench made (after every timed phase)')
    deferred.removeAll()
  }

  const rows = targetRows(tableFigures(runs, small, '--skip-small-tree: `npm run bench:agent` measures the agent on it'))
  const results = {
    bench: 'e2e-corpus',
    label: values.label,
    machine,
    corpus: { path: corpus, ...facts },
    order: values['restic-first'] === true ? 'restic first' : 'holdfast first',
    profiled: values.profile !== undefined,
    runs,
    smallTree: small,
    table: rows
  }
  printTable(machine, facts, runs, small, rows)
  const json = JSON.stringify(results, null, 2)
  process.stdout.write(json + '\n')
  if (values.out !== undefined) writeFileSync(values.out, json + '\n')
  let ok = true
  for (const run of runs) {
    const h = run.holdfast
    if (h.verify !== undefined && h.verify.differences !== 0) { say(`${run.mode}: restore differs from the source in ${h.verify.differences} places`); ok = false }
    if (h.restore !== undefined && h.restore.summary.errors !== 0) { say(`${run.mode}: restore reported ${h.restore.summary.errors} errors`); ok = false }
  }
  return ok ? 0 : 1
}

process.exitCode = await main().catch(err => {
  say(`bench failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`)
  return 1
})
