/**
 * `npm run bench:agent [-- CORPUS_DIR] [options]`: the agent's own budgets (issue 4), beside
 * restic 0.14 on the same tree in the same run:
 *   staging the whole tree   = agent process spawned → its first staging round sealed
 *                              (compare: restic's initial backup)
 *   re-scan, nothing changed = one `scan-now` on the unchanged tree (compare: restic's
 *                              no-change backup)
 *   agent peak RSS           = VmHWM of the agent process (all threads) over the staging and
 *                              re-scans, on the corpus and on a tree of ten times as many
 *                              small files
 *   agent CPU while idle     = CPU seconds of the agent over `--idle-seconds` (default 60)
 *                              with nothing changing, as % of one core
 * The agent runs as the real daemon (the CLI through the test harness), with no manager.
 *
 * Options: --skip-restic, --skip-small-tree, --small-files N (default 10 × the corpus's file
 * count), --idle-seconds S, --out FILE, --workdir DIR (default /var/tmp), --runs N (first
 * staging N times: CPU-s, peak RSS, median), --cpus LIST (pin the agent: taskset), --quiet-wait S,
 * --malloc-arenas N (MALLOC_ARENA_MAX for the agent process), --workers N (agent.workers: staging
 * workers; default 0 = one per core, at most 4).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { setTimeout as delay } from 'node:timers/promises'
import { TestFleet, pinPrefix, type AgentHandle } from '../test/support/fleet.js'
import { adminCall } from '../src/admin/admin-socket.js'
import { readFileSync } from 'node:fs'
import { ensureCorpus, machineFacts, makeSmallTree, median, procSample, round, runTimed, say, threadCpu, treeFacts, warmCache } from './support.js'

interface AgentRun {
  stagingS: number
  /** user + sys of the agent process (all threads) from spawn to the first round sealed */
  stagingCpuS?: number
  /** VmHWM of the agent right after the first round, before the re-scans */
  stagingPeakRssMiB?: number
  /** the agent's CPU-s by thread name at that moment ('exited': the staging workers, gone by then) */
  stagingThreads?: Record<string, number>
  sets: number
  rescanS: number[]
  rescanMedianS: number
  peakRssMiB?: number
  idle?: { seconds: number, cpuS?: number, percentOfCore?: number, rssMiB?: number }
}

async function measureAgent (tree: string, work: string, options: { idleSeconds: number, cpus?: string, env?: NodeJS.ProcessEnv, workers?: number }): Promise<AgentRun> {
  const fleet = new TestFleet(mkdtempSync(join(work, 'holdfast-agent-bench-')))
  try {
    await fleet.init({ mdns: false })
    const agent: AgentHandle = await fleet.addAgent('bench', tree, { mdns: false, settle: 0, scanInterval: 3600 })
    const workers = options.workers
    if (workers !== undefined) fleet.patchConfig(agent.config, c => { (c.agent as Record<string, unknown>).workers = workers })
    const t0 = performance.now()
    await fleet.startAgent(agent, { cpus: options.cpus, env: options.env })
    // The agent starts its first staging round on start; scan-now joins it.
    const first = await adminCall(agent.socket, 'scan-now', { join: true }, { timeoutMs: 3600_000 }) as { sets: unknown[] }
    const stagingS = (performance.now() - t0) / 1000
    const pid = fleet.process('agent-bench')?.pid
    const staged = procSample(pid)
    const stagingCpuS = staged === undefined ? undefined : staged.userS + staged.sysS
    const stagingThreads = threadCpu(pid)
    say(`   CPU-s by thread: ${JSON.stringify(stagingThreads)}`)
    say(`   staged in ${stagingS.toFixed(2)} s (${first.sets.length} sets), ${stagingCpuS?.toFixed(2) ?? '?'} CPU-s, peak RSS ${staged?.vmHwmMiB.toFixed(1) ?? '?'} MiB`)
    const rescans: number[] = []
    for (let i = 0; i < 3; i++) {
      const t = performance.now()
      await adminCall(agent.socket, 'scan-now', {}, { timeoutMs: 600_000 })
      rescans.push((performance.now() - t) / 1000)
    }
    say(`   re-scans: ${rescans.map(s => s.toFixed(2)).join(', ')} s`)
    const run: AgentRun = { stagingS: round(stagingS, 3) ?? stagingS, stagingCpuS: round(stagingCpuS, 2), stagingPeakRssMiB: round(staged?.vmHwmMiB, 1), stagingThreads, sets: first.sets.length, rescanS: rescans.map(s => round(s, 3) ?? s), rescanMedianS: round(median(rescans), 3) ?? 0, peakRssMiB: round(procSample(pid)?.vmHwmMiB, 1) }
    if (options.idleSeconds > 0) {
      const before = procSample(pid)
      await delay(options.idleSeconds * 1000)
      const after = procSample(pid)
      const cpuS = before !== undefined && after !== undefined ? after.userS + after.sysS - before.userS - before.sysS : undefined
      run.idle = { seconds: options.idleSeconds, cpuS: round(cpuS, 3), percentOfCore: cpuS === undefined ? undefined : round(cpuS / options.idleSeconds * 100, 3), rssMiB: round(after?.vmRssMiB, 1) }
      say(`   idle ${options.idleSeconds} s: ${run.idle.cpuS ?? '?'} CPU s (${run.idle.percentOfCore ?? '?'}% of a core)`)
    }
    run.peakRssMiB = round(procSample(pid)?.vmHwmMiB, 1)
    say(`   peak RSS ${run.peakRssMiB ?? '?'} MiB`)
    return run
  } finally {
    await fleet.stopAll()
    rmSync(fleet.root, { recursive: true, force: true })
  }
}

/** Waits (at most maxWaitMs) for the machine to be nearly idle, so others' work stays out of the figures. */
async function waitQuiet (maxWaitMs: number): Promise<{ waitedS: number, busy: number }> {
  const totals = (): [number, number] => {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
    const busy = f[0] + f[1] + f[2] + f[5] + f[6] + (f[7] ?? 0)
    return [busy, busy + f[3] + f[4]]
  }
  const started = performance.now()
  let busy = 1
  while (performance.now() - started < maxWaitMs) {
    const a = totals()
    await delay(2000)
    const b = totals()
    busy = (b[0] - a[0]) / Math.max(1, b[1] - a[1])
    if (busy <= 0.1) break
  }
  return { waitedS: round((performance.now() - started) / 1000, 1) ?? 0, busy: round(busy, 3) ?? busy }
}

async function main (): Promise<number> {
  const { values, positionals } = parseArgs({
    options: { 'skip-restic': { type: 'boolean' }, 'skip-small-tree': { type: 'boolean' }, runs: { type: 'string' }, cpus: { type: 'string' }, 'malloc-arenas': { type: 'string' }, workers: { type: 'string' }, 'quiet-wait': { type: 'string' }, 'small-files': { type: 'string' }, 'idle-seconds': { type: 'string' }, out: { type: 'string' }, workdir: { type: 'string' } },
    allowPositionals: true
  })
  const work = values.workdir ?? '/var/tmp'
  const corpus = ensureCorpus(positionals[0])
  const facts = treeFacts(corpus)
  say(`== corpus ${corpus}: ${facts.files} files, ${(facts.fileBytes / 1e9).toFixed(2)} GB`)
  say(`   page cache warmed in ${warmCache(corpus).toFixed(1)} s`)
  const quiet = await waitQuiet(Number(values['quiet-wait'] ?? 120) * 1000)
  const results: Record<string, unknown> = { bench: 'agent', machine: machineFacts(), corpus: { path: corpus, ...facts }, quietBeforeStart: quiet }

  if (values['skip-restic'] !== true) {
    const repo = mkdtempSync(join(work, 'restic-agent-bench-'))
    const env = { RESTIC_PASSWORD: 'bench', RESTIC_REPOSITORY: repo, RESTIC_CACHE_DIR: join(repo, '.cache') }
    try {
      say('== restic 0.14')
      await runTimed(['restic', 'init'], { env, timeoutMs: 120_000 })
      const initial = await runTimed(['restic', 'backup', '--quiet', corpus], { env, timeoutMs: 1800_000, peakRss: true, prefix: pinPrefix(values.cpus) })
      const again = []
      for (let i = 0; i < 3; i++) again.push((await runTimed(['restic', 'backup', '--quiet', corpus], { env, timeoutMs: 600_000 })).wallS)
      results.restic = { initialS: round(initial.wallS, 3), initialCpuS: round((initial.childUserS ?? NaN) + (initial.childSysS ?? NaN), 2), initialPeakRssMiB: round(initial.peakRssMiB, 1), noChangeS: again.map(s => round(s, 3)), noChangeMedianS: round(median(again), 3) }
      say(`   initial ${initial.wallS.toFixed(2)} s (${((initial.childUserS ?? NaN) + (initial.childSysS ?? NaN)).toFixed(2)} CPU-s, ${initial.peakRssMiB?.toFixed(1) ?? '?'} MiB), no change ${again.map(s => s.toFixed(2)).join(', ')} s`)
    } finally {
      rmSync(repo, { recursive: true, force: true })
    }
  }

  say('== Holdfast agent on the corpus')
  const idleSeconds = Number(values['idle-seconds'] ?? 60)
  // glibc's arenas: read at process start, so only the environment can set it
  const workers = values.workers === undefined ? undefined : Number(values.workers)
  const env = values['malloc-arenas'] === undefined ? undefined : { MALLOC_ARENA_MAX: values['malloc-arenas'] }
  results.agentEnv = env ?? {}
  const onCorpus = await measureAgent(corpus, work, { idleSeconds, cpus: values.cpus, env, workers })
  results.agent = onCorpus
  // more runs of the first staging alone (no idle wait): CPU-s and peak RSS vary run to run
  const more: AgentRun[] = []
  for (let i = 1; i < Number(values.runs ?? 1); i++) more.push(await measureAgent(corpus, work, { idleSeconds: 0, cpus: values.cpus, env, workers }))
  if (more.length > 0) {
    const all = [onCorpus, ...more]
    results.agentRuns = all.map(r => ({ stagingS: r.stagingS, stagingCpuS: r.stagingCpuS, stagingPeakRssMiB: r.stagingPeakRssMiB, peakRssMiB: r.peakRssMiB }))
    results.agentMedian = { stagingS: round(median(all.map(r => r.stagingS)), 3), stagingCpuS: round(median(all.map(r => r.stagingCpuS ?? NaN)), 2), stagingPeakRssMiB: round(median(all.map(r => r.stagingPeakRssMiB ?? NaN)), 1) }
    say(`   median of ${all.length}: ${JSON.stringify(results.agentMedian)}`)
  }

  if (values['skip-small-tree'] !== true) {
    const n = Number(values['small-files'] ?? facts.files * 10)
    const tree = mkdtempSync(join(work, 'holdfast-small-tree-'))
    try {
      say(`== making a tree of ${n} small files`)
      const t = performance.now()
      makeSmallTree(tree, n)
      say(`   made in ${((performance.now() - t) / 1000).toFixed(1)} s`)
      say('== Holdfast agent on the small-file tree')
      results.smallTree = { files: n, ...(await measureAgent(tree, work, { idleSeconds: 0, workers, env })) }
    } finally {
      rmSync(tree, { recursive: true, force: true })
    }
  }

  const restic = results.restic as { initialS: number, noChangeMedianS: number } | undefined
  if (restic !== undefined) {
    results.ratios = {
      stagingVsResticInitial: round(onCorpus.stagingS / restic.initialS, 3),
      rescanVsResticNoChange: round(onCorpus.rescanMedianS / restic.noChangeMedianS, 3)
    }
  }
  results.targets = { stagingVsResticInitial: 0.5, rescanVsResticNoChange: 0.3, peakRssMiB: 200, idlePercentOfCore: 1 }
  const json = JSON.stringify(results, null, 2)
  if (values.out !== undefined) writeFileSync(values.out, json + '\n')
  process.stdout.write(json + '\n')
  return 0
}

process.exitCode = await main()
