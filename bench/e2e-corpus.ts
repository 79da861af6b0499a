/**
 * `npm run bench [-- CORPUS_DIR] [options]`: Holdfast against restic on one tree, in one run,
 * warm page cache, same machine (DESIGN.md §5 budgets).
 *
 * Holdfast runs as real daemons (manager + one agent, separate processes, the real CLI via the
 * TestFleet harness), talking over 127.0.0.1 only (mDNS off, the agent as a static peer).
 * Admin commands go over each daemon's admin socket with the same client the CLI uses
 * (adminCall), so the bench sees progress lines with their arrival times; the cost of a CLI
 * process start is measured separately and reported.
 *
 *   first backup = agent process spawned → its first staging round sealed (scan-now returns)
 *                  → manager's backup-now returns (chunks pulled, packs fsynced, snapshot
 *                  committed in the catalog, set acked by the agent)
 *   no change    = scan-now (nothing changed) + backup-now (nothing to pull)
 *   restore      = restore of the latest snapshot into an empty directory (then verified
 *                  with compareTrees, timed separately, not counted)
 *   stored       = packs/ + catalog.db (+ -wal, -shm) of the manager
 * restic 0.14 does the same on the same tree: init (not timed), backup, backup again,
 * restore latest, du of the repository.
 *
 * Options:
 *   --out FILE           write the results as JSON to FILE (always printed to stdout too)
 *   --nochange-runs N    no-change backups for each tool (default 3; the median is compared)
 *   --restic-first       run restic before Holdfast (default: Holdfast first)
 *   --skip-restic        Holdfast only (no ratios)
 *   --skip-verify        do not compare the restored tree with the source
 *   --profile DIR        run both daemons under --cpu-prof, profiles into DIR (timings are
 *                        then inflated; use for "where the time goes", not for figures)
 *   --workdir DIR        where temp dirs go (default /var/tmp)
 *   --keep               keep the temp dirs (fleet root, restore, restic repo)
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { basename, join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { TestFleet, runCli } from '../test/support/fleet.js'
import { compareTrees } from '../test/support/trees.js'
import { adminCall } from '../src/admin/admin-socket.js'
import type { RoundResult } from '../src/roles/manager/manager.js'
import type { StageRoundResult } from '../src/staging/stager.js'
import type { RestoreSummary } from '../src/store/restore.js'
import type { AgentStatus } from '../src/roles/agent/agent.js'
import { cpuDelta, duBytes, ensureCorpus, freePort, machineFacts, median, mib, procSample, round, runTimed, say, syncDisks, treeFacts, warmCache, type MachineFacts, type TreeFacts } from './support.js'

const LONG_MS = 20 * 60_000

/** DESIGN.md §5: Holdfast / restic, same run. */
export const TARGETS = Object.freeze({ firstBackup: { target: 0.7, floor: 0.4 }, noChange: { target: 0.3, floor: 0.15 } })

interface ProgressMark { atS: number, chunksDone: number, chunksTotal: number, bytesPulled: number }

interface HoldfastResults {
  cliStartS: number
  firstBackup: {
    totalS: number
    agentUpS: number
    stagingS: number
    pullS: number
    fromLogs: Record<string, number | undefined>
    pullPhases: Record<string, number | undefined>
    set?: StageRoundResult['set']
    snapshots: RoundResult['peers'][number]['snapshots']
    bytesPulled: number
    agentCpuS?: number
    managerCpuS?: number
    agentPeakRssMiB?: number
    managerPeakRssMiB?: number
  }
  noChange: { runs: Array<{ scanS: number, backupS: number, totalS: number }>, medianS: number }
  restore: { wallS: number, summary: Omit<RestoreSummary, 'errors'> & { errors: number }, managerPeakRssMiB?: number }
  verify?: { seconds: number, differences: number, sample: string[] }
  stored: { packsBytes: number, catalogBytes: number, totalBytes: number, packs: number }
  agentSpoolAfterAckBytes: number
}

interface ResticResults {
  version: string
  initial: { wallS: number, cpuS?: number, summary?: Record<string, unknown> }
  noChange: { runs: Array<{ wallS: number, cpuS?: number }>, medianS: number }
  restore: { wallS: number, cpuS?: number }
  repoBytes: number
}

function sec (ms: number): number { return Math.round(ms) / 1000 }

/** Timestamps (ms since epoch) of the first log line containing `needle`, from a daemon log. */
function logTime (file: string, needle: string): number | undefined {
  let text = ''
  try { text = readFileSync(file, 'utf8') } catch { return undefined }
  for (const line of text.split('\n')) {
    if (!line.includes(needle)) continue
    const t = Date.parse(line.slice(0, 24))
    if (Number.isFinite(t)) return t
  }
  return undefined
}

async function benchHoldfast (corpus: string, workdir: string, options: { nochangeRuns: number, verify: boolean, profileDir?: string, keep: boolean }): Promise<HoldfastResults> {
  const root = mkdtempSync(join(workdir, 'holdfast-bench-'))
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
    await fleet.startManager()
    const managerPid = fleet.process('manager')?.pid
    const managerBefore = procSample(managerPid)

    // ---- first backup: the clock starts when the agent process is spawned; its first staging
    // round starts on its own right after it is up.
    syncDisks()
    const wallT0 = Date.now()
    const t0 = performance.now()
    await fleet.startAgent(agent)
    if (options.profileDir !== undefined) {
      if (savedNodeOptions === undefined) delete process.env.NODE_OPTIONS; else process.env.NODE_OPTIONS = savedNodeOptions
    }
    const agentPid = fleet.process('agent-bench')?.pid
    const tUp = performance.now()
    say(`   agent up after ${sec(tUp - t0)} s; waiting for its first staging round`)
    const staged = await adminCall(agent.socket, 'scan-now', {}, { timeoutMs: LONG_MS }) as StageRoundResult
    const tStaged = performance.now()
    say(`   staged after ${sec(tStaged - t0)} s: ${JSON.stringify(staged.set)}`)
    const marks: ProgressMark[] = []
    const pulled = await adminCall(fleet.managerSocket, 'backup-now', { expectPeers: 1, timeoutMs: 60_000 }, {
      timeoutMs: LONG_MS,
      onProgress: p => {
        const q = p as { chunksDone: number, chunksTotal: number, bytesPulled: number }
        marks.push({ atS: (performance.now() - tStaged) / 1000, chunksDone: q.chunksDone, chunksTotal: q.chunksTotal, bytesPulled: q.bytesPulled })
      }
    }) as RoundResult
    const tDone = performance.now()
    const peer = pulled.peers[0]
    if (peer === undefined || !peer.ok || peer.snapshots.length !== 1) throw new Error(`first backup did not commit one snapshot: ${JSON.stringify(pulled)}`)
    const agentAfter = procSample(agentPid)
    const managerAfter = procSample(managerPid)
    const status = await adminCall(agent.socket, 'status', {}, { timeoutMs: 60_000 }) as AgentStatus
    if (status.lastAck === undefined || status.filesNotBackedUp !== 0 || status.sealedSets !== 0) {
      throw new Error(`agent does not report the set acknowledged: ${JSON.stringify({ lastAck: status.lastAck, notBackedUp: status.filesNotBackedUp, sealed: status.sealedSets })}`)
    }
    say(`   backed up after ${sec(tDone - t0)} s (pull ${sec(tDone - tStaged)} s)`)

    const agentLog = join(root, 'agent-bench.log')
    const managerLog = join(root, 'manager.log')
    const rel = (t: number | undefined): number | undefined => t === undefined ? undefined : sec(t - wallT0)
    const fromLogs = {
      agentStartedAtS: rel(logTime(agentLog, 'agent started')),
      setSealedAtS: rel(logTime(agentLog, 'sealed staging set')),
      agentAckedAtS: rel(logTime(agentLog, 'set acknowledged by manager')),
      managerCommittedAtS: rel(logTime(managerLog, 'snapshot committed and acknowledged'))
    }
    // Progress arrives once per fetch batch of 1024 chunks: before the first one the manager
    // listed the manifest, read all entries and looked up which chunks it lacks; after the last
    // one it fsyncs the packs, commits the catalog and sends the ack.
    const first = marks[0]
    const last = marks[marks.length - 1]
    const batchS = marks.length >= 2 ? (last.atS - first.atS) / (marks.length - 1) : undefined
    const pullPhases = {
      batches: marks.length,
      firstBatchDoneS: round(first?.atS, 3),
      secondsPerBatch: round(batchS, 3),
      manifestAndLookupS: first === undefined || batchS === undefined ? undefined : round(first.atS - batchS, 3),
      fetchS: first === undefined || batchS === undefined ? undefined : round(last.atS - first.atS + batchS, 3),
      syncCommitAckS: last === undefined ? undefined : round(sec(tDone - tStaged) - last.atS, 3),
      pullMiBps: last === undefined ? undefined : round(last.bytesPulled / 2 ** 20 / (sec(tDone - tStaged)), 1)
    }

    // ---- no-change backups
    const noChange: HoldfastResults['noChange']['runs'] = []
    for (let i = 0; i < options.nochangeRuns; i++) {
      syncDisks()
      const a = performance.now()
      const scan = await adminCall(agent.socket, 'scan-now', {}, { timeoutMs: LONG_MS }) as StageRoundResult
      const b = performance.now()
      const r = await adminCall(fleet.managerSocket, 'backup-now', { expectPeers: 1, timeoutMs: 60_000 }, { timeoutMs: LONG_MS }) as RoundResult
      const c = performance.now()
      if (scan.set !== undefined || scan.changed !== 0) throw new Error(`no-change scan staged something: ${JSON.stringify(scan)}`)
      if (r.peers[0]?.ok !== true || r.peers[0].snapshots.length !== 0) throw new Error(`no-change backup-now did not come back empty: ${JSON.stringify(r)}`)
      noChange.push({ scanS: sec(b - a), backupS: sec(c - b), totalS: sec(c - a) })
      say(`   no change #${i + 1}: scan ${sec(b - a)} s + backup-now ${sec(c - b)} s`)
    }

    // ---- stored size (the catalog's WAL counts: it is part of what is on disk)
    const packsDir = join(fleet.managerDir, 'packs')
    const packsBytes = duBytes(packsDir)
    const catalogBytes = ['catalog.db', 'catalog.db-wal', 'catalog.db-shm'].reduce((n, f) => n + duBytes(join(fleet.managerDir, f)), 0)
    const agentSpoolAfterAckBytes = duBytes(join(agent.dataDir, 'spool'))

    // ---- restore (by peer id: a static peer's name is never learnt by the manager, so the
    // catalog holds the endpoint with an empty name)
    const target = join(root, 'restore')
    syncDisks()
    const r0 = performance.now()
    const summary = await adminCall(fleet.managerSocket, 'restore', { endpoint: agent.peerId, target }, { timeoutMs: LONG_MS }) as RestoreSummary
    const restoreS = sec(performance.now() - r0)
    const managerAfterRestore = procSample(managerPid)
    say(`   restore: ${restoreS} s, ${summary.files} files, ${summary.errors.length} errors`)
    if (summary.errors.length > 0) say(`   first restore errors: ${JSON.stringify(summary.errors.slice(0, 5))}`)
    let verify: HoldfastResults['verify']
    if (options.verify) {
      const v0 = performance.now()
      const diffs = compareTrees(corpus, join(target, basename(corpus)))
      verify = { seconds: sec(performance.now() - v0), differences: diffs.length, sample: diffs.slice(0, 10).map(d => `${d.path}: ${d.what}`) }
      say(`   verify (not timed in the figures): ${verify.differences} differences in ${verify.seconds} s`)
    }
    rmSync(target, { recursive: true, force: true })

    return {
      cliStartS,
      firstBackup: {
        totalS: sec(tDone - t0),
        agentUpS: sec(tUp - t0),
        stagingS: sec(tStaged - t0),
        pullS: sec(tDone - tStaged),
        fromLogs,
        pullPhases,
        set: staged.set,
        snapshots: peer.snapshots,
        bytesPulled: peer.bytesPulled,
        agentCpuS: cpuDelta({ userS: 0, sysS: 0, vmHwmMiB: 0, vmRssMiB: 0 }, agentAfter),
        managerCpuS: cpuDelta(managerBefore, managerAfter),
        agentPeakRssMiB: round(agentAfter?.vmHwmMiB, 0),
        managerPeakRssMiB: round(managerAfter?.vmHwmMiB, 0)
      },
      noChange: { runs: noChange, medianS: median(noChange.map(r => r.totalS)) },
      restore: { wallS: restoreS, summary: { ...summary, errors: summary.errors.length }, managerPeakRssMiB: round(managerAfterRestore?.vmHwmMiB, 0) },
      verify,
      stored: { packsBytes, catalogBytes, totalBytes: packsBytes + catalogBytes, packs: readdirSync(packsDir).length },
      agentSpoolAfterAckBytes
    }
  } finally {
    await fleet.stopAll()
    process.off('SIGINT', stopOnSignal)
    process.off('SIGTERM', stopOnSignal)
    if (!options.keep) rmSync(root, { recursive: true, force: true }); else say(`   kept ${root}`)
  }
}

async function benchRestic (corpus: string, workdir: string, options: { nochangeRuns: number, keep: boolean }): Promise<ResticResults> {
  const root = mkdtempSync(join(workdir, 'restic-bench-'))
  const env = { RESTIC_PASSWORD: 'holdfast-bench', RESTIC_REPOSITORY: join(root, 'repo'), RESTIC_CACHE_DIR: join(root, 'cache'), RESTIC_PROGRESS_FPS: '0.1' }
  const cpu = (t: { childUserS?: number, childSysS?: number }): number | undefined => t.childUserS === undefined || t.childSysS === undefined ? undefined : round(t.childUserS + t.childSysS)
  const must = (t: { code: number, stderr: string }, what: string): void => { if (t.code !== 0) throw new Error(`restic ${what} failed (${t.code}): ${t.stderr.trim().slice(-2000)}`) }
  try {
    say(`== restic: repository in ${root}`)
    const version = (await runTimed(['restic', 'version'], { env, timeoutMs: 30_000 })).stdout.trim()
    must(await runTimed(['restic', 'init'], { env, timeoutMs: 120_000 }), 'init')
    syncDisks()
    const initial = await runTimed(['restic', 'backup', '--json', corpus], { env, timeoutMs: LONG_MS })
    must(initial, 'backup')
    const summaryLine = initial.stdout.trim().split('\n').reverse().find(l => l.includes('"message_type":"summary"'))
    const summary = summaryLine === undefined ? undefined : JSON.parse(summaryLine) as Record<string, unknown>
    say(`   initial backup: ${round(initial.wallS)} s (cpu ${cpu(initial)} s)`)
    const runs: ResticResults['noChange']['runs'] = []
    for (let i = 0; i < options.nochangeRuns; i++) {
      syncDisks()
      const t = await runTimed(['restic', 'backup', '--json', corpus], { env, timeoutMs: LONG_MS })
      must(t, 'backup (no change)')
      runs.push({ wallS: round(t.wallS) as number, cpuS: cpu(t) })
      say(`   no change #${i + 1}: ${round(t.wallS)} s`)
    }
    const repoBytes = duBytes(join(root, 'repo'))
    const target = join(root, 'restore')
    syncDisks()
    const restore = await runTimed(['restic', 'restore', 'latest', '--target', target], { env, timeoutMs: LONG_MS })
    must(restore, 'restore')
    say(`   restore: ${round(restore.wallS)} s`)
    return {
      version,
      initial: { wallS: round(initial.wallS) as number, cpuS: cpu(initial), summary },
      noChange: { runs, medianS: median(runs.map(r => r.wallS)) },
      restore: { wallS: round(restore.wallS) as number, cpuS: cpu(restore) },
      repoBytes
    }
  } finally {
    if (!options.keep) rmSync(root, { recursive: true, force: true }); else say(`   kept ${root}`)
  }
}

function ratio (a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined || b === undefined || b === 0 ? undefined : round(a / b, 2)
}

function verdict (r: number | undefined, t: { target: number, floor: number }): string {
  if (r === undefined) return '-'
  if (r <= t.floor) return `at the floor (≤ ${t.floor}×)`
  if (r <= t.target) return `target met (≤ ${t.target}×)`
  return `MISSED (target ${t.target}×)`
}

function printTable (machine: MachineFacts, facts: TreeFacts, h: HoldfastResults, r?: ResticResults): void {
  const rows: Array<[string, string, string, string, string]> = []
  const f = (x: number | undefined, unit = 's'): string => x === undefined ? '-' : `${x.toFixed(2)} ${unit}`
  const first = ratio(h.firstBackup.totalS, r?.initial.wallS)
  const none = ratio(h.noChange.medianS, r?.noChange.medianS)
  rows.push(['first backup (end to end)', f(h.firstBackup.totalS), f(r?.initial.wallS), first === undefined ? '-' : `${first}×`, verdict(first, TARGETS.firstBackup)])
  rows.push(['  staging (agent spawn → sealed)', f(h.firstBackup.stagingS), '', '', ''])
  rows.push(['  pull + commit + ack (backup-now)', f(h.firstBackup.pullS), '', '', ''])
  rows.push(['no-change backup (median)', f(h.noChange.medianS), f(r?.noChange.medianS), none === undefined ? '-' : `${none}×`, verdict(none, TARGETS.noChange)])
  const rest = ratio(h.restore.wallS, r?.restore.wallS)
  rows.push(['full restore', f(h.restore.wallS), f(r?.restore.wallS), rest === undefined ? '-' : `${rest}×`, ''])
  const st = ratio(h.stored.totalBytes, r?.repoBytes)
  rows.push(['stored size', mib(h.stored.totalBytes), r === undefined ? '-' : mib(r.repoBytes), st === undefined ? '-' : `${st}×`, ''])
  rows.push(['CPU s, first backup', f(h.firstBackup.agentCpuS === undefined ? undefined : h.firstBackup.agentCpuS + (h.firstBackup.managerCpuS ?? 0)), f(r?.initial.cpuS), '', 'Holdfast: agent + manager'])
  rows.push(['agent peak RSS (first backup)', f(h.firstBackup.agentPeakRssMiB, 'MiB'), '', '', ''])
  const widths = [0, 1, 2, 3, 4].map(i => Math.max(...rows.map(row => row[i].length), ['', 'Holdfast', 'restic', 'ratio', ''][i].length))
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i])).join('  ')
  say()
  say(`machine: ${machine.nproc} cpu (${machine.cpuModel}), ${machine.memTotalGiB} GiB, Node ${machine.node}, ${machine.restic}`)
  say(`corpus: ${facts.files} files, ${facts.dirs} dirs, ${facts.symlinks} symlinks, ${(facts.fileBytes / 1e9).toFixed(2)} GB of file data`)
  say(line(['', 'Holdfast', 'restic', 'ratio', '']))
  for (const row of rows) say(line(row))
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
      profile: { type: 'string' },
      workdir: { type: 'string' },
      keep: { type: 'boolean' }
    }
  })
  const corpus = resolve(ensureCorpus(positionals[0]))
  const workdir = resolve(values.workdir ?? '/var/tmp')
  const nochangeRuns = Math.max(1, Number(values['nochange-runs'] ?? 3))
  const keep = values.keep === true
  const machine = machineFacts()
  say(`== corpus ${corpus}`)
  const facts = treeFacts(corpus)
  const warmS = warmCache(corpus)
  say(`   ${facts.files} files, ${(facts.fileBytes / 1e9).toFixed(2)} GB; page cache warmed in ${warmS.toFixed(1)} s`)

  let holdfast: HoldfastResults | undefined
  let restic: ResticResults | undefined
  const runHoldfast = async (): Promise<void> => { holdfast = await benchHoldfast(corpus, workdir, { nochangeRuns, verify: values['skip-verify'] !== true, profileDir: values.profile === undefined ? undefined : resolve(values.profile), keep }) }
  const runRestic = async (): Promise<void> => { if (values['skip-restic'] !== true) restic = await benchRestic(corpus, workdir, { nochangeRuns, keep }) }
  if (values['restic-first'] === true) { await runRestic(); warmCache(corpus); await runHoldfast() } else { await runHoldfast(); warmCache(corpus); await runRestic() }
  if (holdfast === undefined) throw new Error('Holdfast did not run')
  const h = holdfast as HoldfastResults
  const r = restic as ResticResults | undefined

  const ratios = {
    firstBackup: ratio(h.firstBackup.totalS, r?.initial.wallS),
    noChange: ratio(h.noChange.medianS, r?.noChange.medianS),
    restore: ratio(h.restore.wallS, r?.restore.wallS),
    stored: ratio(h.stored.totalBytes, r?.repoBytes)
  }
  const results = {
    bench: 'e2e-corpus',
    machine,
    corpus: { path: corpus, ...facts },
    order: values['restic-first'] === true ? 'restic first' : 'holdfast first',
    profiled: values.profile !== undefined,
    holdfast: h,
    restic: r,
    ratios,
    targets: TARGETS,
    verdicts: { firstBackup: verdict(ratios.firstBackup, TARGETS.firstBackup), noChange: verdict(ratios.noChange, TARGETS.noChange) }
  }
  printTable(machine, facts, h, r)
  const json = JSON.stringify(results, null, 2)
  process.stdout.write(json + '\n')
  if (values.out !== undefined) writeFileSync(values.out, json + '\n')
  const verified = h.verify === undefined || h.verify.differences === 0
  if (!verified) say(`restore differs from the source in ${h.verify?.differences} places`)
  return verified && h.restore.summary.errors === 0 ? 0 : 1
}

process.exitCode = await main().catch(err => {
  say(`bench failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`)
  return 1
})
