/**
 * kill -9 crash rounds, end to end with real processes (issue 4 §7, issue 5 §1-2).
 *
 * A. The agent is killed at a random point of a staging round (scan, staging in workers,
 *    sealing, or just after): after a restart it resumes, the next backup succeeds, each new
 *    snapshot restores bit-exact, nothing is left in the spool, and at the end every snapshot
 *    of the run still restores bit-exact to the folder as it was in its round.
 * B. The manager is killed at a random point of a pull (dial, manifest, fetch, verify, pack
 *    fsync, catalog commit, ack): after a restart the interrupted set completes, every
 *    snapshot committed so far restores bit-exact to the folder as it was when its set was
 *    sealed, and no set is committed twice.
 *
 * Where each kill landed is read back from the dead daemon's files (A) or the restarted
 * manager's catalog and the agent (B), and each run must hit every named phase (A_PHASES,
 * B_PHASES) at least once. Random kill times reach the short windows only by chance, so one
 * round per named phase, chosen from the seed, kills on purpose: the daemon is started with
 * the test-only HOLDFAST_TEST_PAUSE_AT=<step> (src/util/test-pause.ts), stops dead there, and
 * is killed once its log says so; the round then asserts the kill landed in that phase.
 *
 * Every random choice comes from one seeded generator; the seed is printed, and
 * HOLDFAST_CRASH_SEED=<seed> replays the same mutations and kill delays (the kill point also
 * depends on timing, so a replay lands near, not exactly on, the same instant).
 * HOLDFAST_CRASH_ROUNDS sets the number of rounds of each suite (default 20);
 * HOLDFAST_CRASH_KEEP=1 keeps the fleet's directories (data, logs) for a look afterwards.
 */
import { strict as assert } from 'node:assert'
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { setTimeout as delay } from 'node:timers/promises'
import { TestFleet, cliJson, cliJsonStatus, runCli, type AgentHandle } from '../support/fleet.js'
import { compareTrees } from '../support/trees.js'
import { requirePrivateNetns } from '../support/mocha.js'
import { until } from '../support/wait.js'
import { FolderModel, Prng, crashRounds, crashSeed, describeTree, diffDescriptions, packBytes, phasesMissed, plannedKills, segmentFiles, waitForPause, type MutationPlan, type TreeDescription } from '../support/crash.js'
import { TEST_PAUSE_MARK, type TestPauseStep } from '../../src/util/test-pause.js'
import { adminCall } from '../../src/admin/admin-socket.js'
import type { RoundResult } from '../../src/roles/manager/manager.js'
import type { SnapshotRow } from '../../src/store/core/catalog.js'
import type { AgentStatus } from '../../src/roles/agent/agent.js'
import type { StageRoundResult } from '../../src/staging/stager.js'
import type { RestoreSummary } from '../../src/store/restore.js'
import type { VerifyReport } from '../../src/store/maintenance/verify.js'

const MiB = 1024 * 1024
const AGENT = 'crashy'
const AGENT_KEY = `agent-${AGENT}`

/** The agent's kill phases each run must hit, and the step a planned kill pauses the agent at. */
const A_PHASES = { 'mid-staging': 'stage-batch', 'after-seal': 'stage-sealed' } as const satisfies Record<string, TestPauseStep>
/** The manager's: chunks in a pack but not committed, and committed but not acked. */
const B_PHASES = { 'not committed, chunks in a pack': 'pull-packed', 'committed-not-acked': 'pull-committed' } as const satisfies Record<string, TestPauseStep>

function say (line: string): void { process.stdout.write(`      ${line}\n`) }

function mib (n: number): string { return `${(n / MiB).toFixed(1)} MiB` }

async function agentStatus (agent: AgentHandle): Promise<AgentStatus> {
  return await cliJson<AgentStatus>(['status', '--socket', agent.socket], { timeoutMs: 30_000 })
}

/** The agent's first scan (at start) is over, so scans from now on are ours. */
async function firstScanDone (agent: AgentHandle): Promise<void> {
  await until('the agent\'s first scan', 30_000, async () => (await agentStatus(agent)).lastScanAt !== undefined ? true : undefined)
}

/**
 * `backup-now` until a round pulls the agent successfully. After a restart the manager may
 * still hold the agent's old address (a restarted agent listens on a new port; a restarted
 * manager has to find the agent again over mDNS), so failed rounds are retried, bounded.
 */
async function backupUntilOk (fleet: TestFleet, ms = 90_000): Promise<{ result: RoundResult, attempts: number, errors: string[] }> {
  const deadline = Date.now() + ms
  const errors: string[] = []
  for (let attempts = 1; ; attempts++) {
    try {
      const { code, json } = await cliJsonStatus<RoundResult>(['backup-now', '--socket', fleet.managerSocket, '--expect-peers', '1', '--timeout', '30'], { timeoutMs: 120_000 })
      if (code === 0 && json.peers.length === 1 && json.peers[0].ok) return { result: json, attempts, errors }
      errors.push(json.peers.map(p => p.error ?? '?').join('; ') || 'no peers')
    } catch (err) {
      errors.push((err as Error).message)
    }
    if (Date.now() > deadline) throw new Error(`no successful backup within ${ms / 1000} s (${attempts} attempts): ${errors.slice(-5).join(' | ')}`)
    await delay(250)
  }
}

/** `holdfast verify --read-data`: the catalog and the packs agree and every stored chunk re-hashes. */
async function verifyStore (fleet: TestFleet): Promise<VerifyReport> {
  const { code, json } = await cliJsonStatus<VerifyReport>(['verify', '--read-data', '--socket', fleet.managerSocket], { timeoutMs: 300_000 })
  assert.ok(code === 0 && json.ok, `verify --read-data finds the store intact: ${JSON.stringify({ code, problemCounts: json.problemCounts, problems: json.problems.slice(0, 5), damaged: json.damaged.snapshotsTotal })}`)
  return json
}

/** Polls `check` about every millisecond, at most `ms`. */
async function pollUntil (ms: number, check: () => boolean): Promise<void> {
  const deadline = Date.now() + ms
  while (!check() && Date.now() < deadline) await delay(1)
}

/** Polls the manager's catalog (read-only, beside the running manager) until set `setId` has a snapshot, at most `ms`. */
async function pollCatalog (file: string, setId: number, ms: number, stop: () => boolean): Promise<void> {
  let db: DatabaseSync | undefined
  try {
    db = new DatabaseSync(file, { readOnly: true })
    const q = db.prepare('SELECT 1 AS found FROM snapshots WHERE set_id = ?')
    await pollUntil(ms, () => {
      try { return stop() || q.get(setId) !== undefined } catch { return stop() }
    })
  } finally {
    db?.close()
  }
}

/** The states of the agent's staging sets, read from its database while it is dead. */
function agentSetStates (dataDir: string): Record<string, number> | undefined {
  let db: DatabaseSync | undefined
  try {
    db = new DatabaseSync(join(dataDir, 'agent.db'), { readOnly: true })
    const out: Record<string, number> = {}
    for (const r of db.prepare('SELECT state, count(*) AS n FROM sets GROUP BY state').all()) out[String(r.state)] = Number(r.n)
    return out
  } catch {
    return undefined
  } finally {
    db?.close()
  }
}

/** The pid of a daemon the fleet started (its log lines of a test pause carry it). */
function pidOf (fleet: TestFleet, key: string): number {
  const pid = fleet.process(key)?.pid
  if (pid === undefined) throw new Error(`${key} is not running`)
  return pid
}

/** Restores snapshot `snapshotId` (by id, on the admin socket) and compares it with the tree it was taken of. */
async function restoreMatches (fleet: TestFleet, snapshotId: number, tree: TreeDescription, target: string, srcName: string): Promise<number> {
  const summary = await adminCall(fleet.managerSocket, 'restore', { endpoint: AGENT, target, snapshot: snapshotId }, { timeoutMs: 120_000 }) as RestoreSummary
  assert.deepEqual(summary.errors, [], `snapshot ${snapshotId} restores without errors`)
  assert.deepEqual(diffDescriptions(tree, describeTree(join(target, srcName))), [], `snapshot ${snapshotId} restores bit-exact to the folder as it was`)
  rmSync(target, { recursive: true, force: true })
  return summary.bytes
}

/**
 * Where a kill of the agent landed, from the dead agent's database: a set still 'staging'
 * (killed while staging), a new 'sealed' set (killed after sealing), or neither.
 */
function agentKillPhase (dataDir: string): string {
  const states = agentSetStates(dataDir)
  if (states === undefined) return 'unknown'
  return (states.staging ?? 0) > 0 ? 'mid-staging' : (states.sealed ?? 0) > 0 ? 'after-seal' : 'before-staging'
}

/** Keeps the daemons' logs of a failed test (the data directories are removed). */
function keepLogs (fleetRoot: string, suite: string, seed: number): string | undefined {
  try {
    const logs = readdirSync(fleetRoot).filter(n => n.endsWith('.log'))
    if (logs.length === 0) return undefined
    const dir = join(tmpdir(), `holdfast-crash-logs-${suite}-${seed}-${Date.now()}`)
    mkdirSync(dir, { recursive: true })
    for (const l of logs) copyFileSync(join(fleetRoot, l), join(dir, l))
    return dir
  } catch {
    return undefined
  }
}

/** Runs one round; a failure names the suite, seed and round, and carries the daemons' last log lines. */
async function inRound (fleet: TestFleet, suite: string, seed: number, round: number, body: () => Promise<void>): Promise<void> {
  try {
    await body()
  } catch (err) {
    const e = err as Error
    e.message = `[crash suite ${suite}, seed ${seed} (HOLDFAST_CRASH_SEED=${seed}), round ${round}] ${e.message}\n--- manager log (tail) ---\n${fleet.log('manager')}\n--- agent log (tail) ---\n${fleet.log(AGENT_KEY)}`
    throw e
  }
}

describe('end to end: kill -9 crash rounds', function () {
  let root: string | undefined
  let fleet: TestFleet | undefined
  let seed = 0
  let suite = ''

  beforeEach(function () {
    requirePrivateNetns(this)
    root = mkdtempSync(join(tmpdir(), 'holdfast-crash-'))
    fleet = undefined
  })

  afterEach(async function () {
    await fleet?.stopAll()
    if (root === undefined) return
    if (this.currentTest?.state === 'failed' && fleet !== undefined) {
      const kept = keepLogs(fleet.root, suite, seed)
      if (kept !== undefined) say(`daemon logs kept in ${kept}`)
    }
    if (process.env.HOLDFAST_CRASH_KEEP === '1') say(`kept ${root}`); else rmSync(root, { recursive: true, force: true })
    root = undefined
  })

  it('A: the agent killed at random points of scanning, staging and sealing, and at each named phase, resumes; every snapshot restores bit-exact', async function () {
    const named = Object.keys(A_PHASES) as Array<keyof typeof A_PHASES>
    // a calibration round and a planned kill per named phase, however few rounds were asked for
    const rounds = Math.max(crashRounds(), named.length + 1)
    this.timeout(90_000 + rounds * 25_000)
    seed = crashSeed()
    suite = 'A'
    const rng = new Prng(seed)
    const planned = plannedKills(rng, rounds, named)
    say(`agent crash rounds: ${rounds}, seed ${seed} (replay: HOLDFAST_CRASH_SEED=${seed} HOLDFAST_CRASH_ROUNDS=${rounds}); planned kills: ${[...planned].map(([r, p]) => `round ${r} ${p}`).join(', ')}`)
    const base = root as string
    const f = new TestFleet(join(base, 'fleet'))
    fleet = f
    const src = join(base, 'src')
    const model = new FolderModel(src, rng)
    await f.init({ bandwidth: 1024 * MiB })
    const agent = await f.addAgent(AGENT, src, { settle: 0 })
    // Staging starts when we ask (scan-now), so the kill delay is measured from its start:
    // no file-system events (with settle 0 they would start staging while the round's
    // mutations are still being made, before the clock below starts).
    f.patchConfig(agent.config, c => { (c.agent as Record<string, unknown>).watch = 'scan' })
    await f.startManager()
    await f.startAgent(agent)
    await firstScanDone(agent)
    model.seedSpecials()
    const plan: MutationPlan = {
      smallFiles: [3, 20],
      largeFiles: [1, 3],
      largeBytes: [2 * MiB, 10 * MiB],
      modify: [1, 5],
      delete: [0, 3],
      rename: [0, 3],
      maxTotalBytes: 48 * MiB
    }
    // Calibration (round 0, not killed): how long its staging round took for the bytes it
    // wrote. A round's kill then lands uniformly in [0, 1.5 × its expected staging time]
    // (linear in the bytes written, with 1 MiB's worth of fixed cost): in the scan, in the
    // workers' staging, in sealing, or just after the seal.
    let stage0Ms = 0
    let stage0Bytes = 0
    const phases = new Map<string, number>()
    const started = Date.now()
    // Every snapshot committed so far → the folder as it was in the round that committed it.
    const trees = new Map<number, TreeDescription>()
    let restoredNow = new Set<number>()

    for (let round = 0; round < rounds; round++) {
      await inRound(f, 'A', seed, round, async () => {
        const roundStarted = Date.now()
        const aim = planned.get(round)
        if (aim !== undefined) {
          // A planned kill: restart the agent with its kill point armed before the mutations,
          // so its own scan at start finds nothing to stage and the pause comes in ours.
          await f.stop(AGENT_KEY)
          await f.startAgent(agent, { env: { HOLDFAST_TEST_PAUSE_AT: A_PHASES[aim] } })
          await firstScanDone(agent)
        }
        // round 0 calibrates on a round with large files in it
        const m = model.mutate(round, round === 0 ? { ...plan, largeFiles: [2, 3] } : plan)
        assert.deepEqual(model.check(), [], 'the folder holds what the model says')
        // nothing writes to the folder until the next round: what every snapshot of this round must restore to
        const tree = describeTree(src)
        // scan-now straight on the admin socket (as the CLI sends it, without the CLI's start-up
        // time), so the delay below counts from the moment the agent is asked
        const t0 = Date.now()
        const scan = adminCall(agent.socket, 'scan-now', {}, { timeoutMs: 120_000 }).then(() => true, () => false)
        let what: string
        if (round === 0) {
          assert.ok(await scan, 'scan-now answered')
          stage0Ms = Date.now() - t0
          stage0Bytes = m.bytesWritten
          what = `calibration: staging ${mib(m.bytesWritten)} took ${stage0Ms} ms`
        } else if (aim !== undefined) {
          const step = A_PHASES[aim]
          let answered = false
          void scan.then(() => { answered = true })
          const paused = await waitForPause(f.logFile(AGENT_KEY), TEST_PAUSE_MARK, step, pidOf(f, AGENT_KEY), 60_000, () => answered)
          assert.ok(paused, `the agent paused at ${step} (HOLDFAST_TEST_PAUSE_AT) before scan-now answered`)
          await f.stop(AGENT_KEY, 'SIGKILL')
          await scan
          const phase = agentKillPhase(agent.dataDir)
          phases.set(phase, (phases.get(phase) ?? 0) + 1)
          assert.equal(phase, aim, `the planned kill at ${step} landed ${aim}`)
          what = `planned kill -9 at ${step} (${phase}; ${segmentFiles(join(agent.dataDir, 'spool')).length} segments on disk)`
          await f.startAgent(agent)
        } else {
          const expectedMs = Math.max(50, stage0Ms * (m.bytesWritten + MiB) / (stage0Bytes + MiB))
          const killAfter = Math.round(rng.uniform(0, 1.5 * expectedMs))
          await delay(killAfter)
          await f.stop(AGENT_KEY, 'SIGKILL')
          const answered = await scan
          const phase = agentKillPhase(agent.dataDir)
          const segs = segmentFiles(join(agent.dataDir, 'spool')).length
          phases.set(phase, (phases.get(phase) ?? 0) + 1)
          what = `kill -9 at ${killAfter} of ~${Math.round(expectedMs)} ms (${phase}; scan-now ${answered ? 'had finished' : 'cut'}; ${segs} segments on disk)`
          await f.startAgent(agent)
        }
        // After the restart: stage whatever is left (joins the round the agent starts by itself).
        await cliJson<StageRoundResult>(['scan-now', '--socket', agent.socket], { timeoutMs: 120_000 })
        const before = await agentStatus(agent)
        // The manager's own scheduler may have visited the restarted agent already (a new
        // address is visited within seconds) and acknowledged the round's set. Read in this
        // order, a status showing files backed up means the ack came first, so the snapshot
        // it acknowledged is in the catalog by the time we list it.
        const ackedBySchedule = (await cliJson<SnapshotRow[]>(['snapshots', '--socket', f.managerSocket])).some(s => !trees.has(s.id))
        if (!ackedBySchedule) {
          assert.ok(before.filesNotBackedUp >= m.changedFiles, `nothing is marked backed up before the manager acknowledged it: ${before.filesNotBackedUp} files not backed up, ${m.changedFiles} changed this round`)
          assert.ok(before.sealedSets >= 1, 'the round\'s changes are in a sealed set')
        }

        const { attempts, result } = await backupUntilOk(f)
        const pulledSets = result.peers[0].snapshots.length
        const after = await agentStatus(agent)
        assert.equal(after.sealedSets, 0, 'every sealed set was pulled and acknowledged')
        assert.equal(after.spoolBytes, 0, 'spool accounting is empty')
        assert.equal(after.filesNotBackedUp, 0, 'every tracked file is backed up')
        assert.deepEqual(segmentFiles(join(agent.dataDir, 'spool')), [], 'no segment left in the spool (no orphans)')

        // The snapshots this round committed: the latest through the CLI's default, any other by id.
        const snaps = await cliJson<SnapshotRow[]>(['snapshots', '--socket', f.managerSocket])
        const fresh = snaps.filter(s => !trees.has(s.id)).map(s => s.id)
        assert.ok(fresh.length >= 1, 'the round committed a snapshot')
        const latest = Math.max(...snaps.map(s => s.id))
        assert.ok(fresh.includes(latest), `the latest snapshot (${latest}) is one this round committed (${fresh.join(', ')})`)
        for (const id of fresh) trees.set(id, tree)
        restoredNow = new Set(fresh)
        const target = join(base, `restore-${round}`)
        const r = await runCli(['restore', '--socket', f.managerSocket, '--endpoint', AGENT, '--target', target, '--json'], { timeoutMs: 120_000 })
        assert.equal(r.code, 0, r.stderr)
        assert.deepEqual(compareTrees(src, join(target, basename(src))), [], 'the latest snapshot restores bit-exact')
        rmSync(target, { recursive: true, force: true })
        for (const id of fresh) if (id !== latest) await restoreMatches(f, id, tree, join(base, `restore-${round}-${id}`), basename(src))
        say(`round ${String(round).padStart(2)}: +${m.created} ~${m.modified} -${m.deleted} >${m.renamed} (${mib(m.bytesWritten)} written, tree ${mib(model.totalBytes())}); ${what}; backup ok after ${attempts} attempt(s), ${pulledSets} set(s); ${fresh.length} snapshot(s) restore bit-exact; ${Date.now() - roundStarted} ms`)
      })
    }
    const v = await verifyStore(f)
    say(`verify --read-data: ${v.packs.total} packs, ${v.chunks.total} chunks, ${mib(v.chunks.bytesRead)} re-hashed, no problems`)
    // Every snapshot of the run, not only each round's newest: a later kill must not have
    // damaged what an earlier round committed (the last round's were restored just now).
    const all = await cliJson<SnapshotRow[]>(['snapshots', '--socket', f.managerSocket])
    assert.deepEqual(all.map(s => s.id).sort((a, b) => a - b), [...trees.keys()].sort((a, b) => a - b), 'the catalog holds exactly the snapshots the rounds committed')
    const restoreStarted = Date.now()
    let restoredBytes = 0
    for (const s of all) {
      if (restoredNow.has(s.id)) continue
      restoredBytes += await restoreMatches(f, s.id, trees.get(s.id) as TreeDescription, join(base, `restore-all-${s.id}`), basename(src))
    }
    say(`agent crash rounds done in ${((Date.now() - started) / 1000).toFixed(1)} s; kill points: ${[...phases].map(([k, v]) => `${k} ${v}`).join(', ')}; all ${all.length} snapshots restore bit-exact (${mib(restoredBytes)} of earlier ones in ${Date.now() - restoreStarted} ms)`)
    assert.deepEqual(phasesMissed(phases, named), [], `every named kill phase was hit (${named.join(', ')})`)
  })

  it('B: the manager killed at random points of pull and commit, and at each named phase, restarts cleanly; every committed snapshot restores bit-exact and the interrupted set completes', async function () {
    const named = Object.keys(B_PHASES) as Array<keyof typeof B_PHASES>
    const rounds = Math.max(crashRounds(), named.length + 1)
    this.timeout(90_000 + rounds * 25_000)
    seed = crashSeed()
    suite = 'B'
    const rng = new Prng(seed)
    const planned = plannedKills(rng, rounds, named)
    say(`manager crash rounds: ${rounds}, seed ${seed} (replay: HOLDFAST_CRASH_SEED=${seed} HOLDFAST_CRASH_ROUNDS=${rounds}); planned kills: ${[...planned].map(([r, p]) => `round ${r} ${p}`).join(', ')}`)
    const base = root as string
    const f = new TestFleet(join(base, 'fleet'))
    fleet = f
    const src = join(base, 'src')
    const model = new FolderModel(src, rng)
    // A slow pull, so a random kill lands inside it: 1-8 MiB of new data per round at 4 MiB/s.
    // (Every round restores every snapshot so far, so the trees are kept small.)
    const rate = 4 * MiB
    await f.init({ bandwidth: rate })
    const agent = await f.addAgent(AGENT, src, { settle: 0 })
    // Sets sealed only by our scan-now, so each has a known expected tree: no file-system
    // events (with settle 0 they would seal sets halfway through a round's mutations).
    f.patchConfig(agent.config, c => { (c.agent as Record<string, unknown>).watch = 'scan' })
    await f.startManager()
    await f.startAgent(agent)
    await firstScanDone(agent)
    model.seedSpecials()
    const plan: MutationPlan = {
      smallFiles: [2, 10],
      largeFiles: [1, 2],
      largeBytes: [1 * MiB, 4 * MiB],
      modify: [1, 4],
      delete: [0, 3],
      rename: [0, 3],
      maxTotalBytes: 10 * MiB
    }
    // What the folder was when each set was sealed, and which snapshot committed it.
    const sealed: Array<{ setId: number, tree: TreeDescription }> = []
    let overheadMs = 0
    const phases = new Map<string, number>()
    const started = Date.now()
    let restoredBytes = 0
    let unreferencedPacks = 0

    for (let round = 0; round < rounds; round++) {
      await inRound(f, 'B', seed, round, async () => {
        const roundStarted = Date.now()
        const aim = planned.get(round)
        if (aim !== undefined) {
          // A planned kill: restart the manager with its kill point armed. Every set so far is
          // acknowledged, so nothing reaches the step before this round's backup-now.
          await f.stop('manager')
          await f.startManager({ env: { HOLDFAST_TEST_PAUSE_AT: B_PHASES[aim] } })
        }
        const m = model.mutate(round, plan)
        assert.deepEqual(model.check(), [], 'the folder holds what the model says')
        const scan = await cliJson<StageRoundResult>(['scan-now', '--socket', agent.socket], { timeoutMs: 120_000 })
        assert.ok(scan.set !== undefined, 'the round\'s changes were sealed into a set')
        assert.equal(scan.settling, 0, 'nothing left settling (settle 0)')
        sealed.push({ setId: scan.set.id, tree: describeTree(src) })
        const set = scan.set

        const packsBefore = packBytes(join(f.managerDir, 'packs'))
        const t0 = Date.now()
        // backup-now straight on the admin socket, so the kill delay counts from the request
        const pull = (adminCall(f.managerSocket, 'backup-now', { expectPeers: 1, timeoutMs: 30_000 }, { timeoutMs: 120_000 }) as Promise<RoundResult>)
          .then(r => r.peers.length === 1 && r.peers[0].ok, () => false)
        let what: string
        if (round === 0) {
          assert.ok(await pull, 'the first backup succeeded')
          const ms = Date.now() - t0
          overheadMs = Math.max(20, ms - set.storedBytes / rate * 1000)
          what = `calibration: backup-now of ${mib(set.storedBytes)} took ${ms} ms (overhead ${Math.round(overheadMs)} ms)`
        } else {
          // Where to kill: at a random time anywhere in the pull, or near its end (verify,
          // appends, pack fsync, catalog commit, ack), or as soon as the verified chunks reach
          // a pack (appends, fsync, commit), or as soon as the snapshot is committed (before or
          // during the ack).
          const expectedMs = overheadMs + set.storedBytes / rate * 1000
          const mode = aim !== undefined ? `planned at ${B_PHASES[aim]}` : rng.pick(['anywhere', 'anywhere', 'near-end', 'near-end', 'pack-written', 'committed'] as const)
          // (a pull tends to end a little before the estimate, which counts round 0's first dial)
          const killAfter = aim !== undefined ? 0 : Math.round(mode === 'anywhere' ? rng.uniform(0, expectedMs) : rng.uniform(0.6 * expectedMs, 1.0 * expectedMs))
          let pullDone = false
          void pull.then(() => { pullDone = true })
          if (aim !== undefined) {
            // (the restarted manager first has to find the agent again over mDNS)
            const paused = await waitForPause(f.logFile('manager'), TEST_PAUSE_MARK, B_PHASES[aim], pidOf(f, 'manager'), 3 * expectedMs + 40_000, () => pullDone)
            assert.ok(paused, `the manager paused at ${B_PHASES[aim]} (HOLDFAST_TEST_PAUSE_AT) before backup-now answered`)
          } else if (mode === 'pack-written') {
            await pollUntil(3 * expectedMs + 5000, () => pullDone || packBytes(join(f.managerDir, 'packs')) > packsBefore + 1024)
          } else if (mode === 'committed') {
            await pollCatalog(join(f.managerDir, 'catalog.db'), set.id, 3 * expectedMs + 5000, () => pullDone)
          } else {
            await delay(killAfter)
          }
          const killedAt = Date.now() - t0
          await f.stop('manager', 'SIGKILL')
          const finished = await pull
          const packsGrew = packBytes(join(f.managerDir, 'packs')) - packsBefore
          // Acked or not, from the agent, before the manager is back: a restarted manager's own
          // scheduler visits the agent at once and re-acks a committed set.
          const agentSealed = (await agentStatus(agent)).sealedSets
          await f.startManager()
          // Committed or not, from the restarted manager's catalog.
          const committed = (await cliJson<SnapshotRow[]>(['snapshots', '--socket', f.managerSocket])).some(s => s.setId === set.id)
          const phase = committed
            ? (agentSealed > 0 ? 'committed-not-acked' : 'after-ack')
            : (packsGrew > 1024 ? 'not committed, chunks in a pack' : 'not committed, nothing in a pack')
          phases.set(phase, (phases.get(phase) ?? 0) + 1)
          if (aim !== undefined) assert.equal(phase, aim, `the planned kill at ${B_PHASES[aim]} landed ${aim}`)
          what = `kill -9 (${mode}) at ${killedAt} of ~${Math.round(expectedMs)} ms: ${phase}; backup-now ${finished ? 'had finished' : 'cut'}; ${mib(packsGrew)} appended to packs`
        }

        const { attempts } = await backupUntilOk(f)
        // The catalog: exactly one snapshot per sealed set, none twice, none for a set not sealed.
        const snaps = await cliJson<SnapshotRow[]>(['snapshots', '--socket', f.managerSocket])
        assert.equal(snaps.length, sealed.length, `snapshots grow by exactly the sets sealed: ${snaps.length} snapshots for ${sealed.length} sets`)
        assert.deepEqual(snaps.map(s => s.setId).sort((a, b) => a - b), sealed.map(s => s.setId).sort((a, b) => a - b), 'one snapshot per sealed set')
        assert.equal(new Set(snaps.map(s => s.setId)).size, snaps.length, 'no set committed twice')
        const st = await agentStatus(agent)
        assert.equal(st.sealedSets, 0, 'the interrupted set completed and was acknowledged')
        assert.equal(st.spoolBytes, 0)
        assert.equal(st.filesNotBackedUp, 0)
        assert.deepEqual(segmentFiles(join(agent.dataDir, 'spool')), [], 'no segment left in the spool')

        // The store after the crash: catalog and packs agree, every chunk re-hashes.
        const v = await verifyStore(f)
        unreferencedPacks = v.packs.unreferenced.length
        // Every snapshot so far restores to the folder as it was when its set was sealed.
        for (const s of sealed) {
          const snap = snaps.find(x => x.setId === s.setId) as SnapshotRow
          const target = join(base, `restore-${round}-${snap.id}`)
          const summary = await adminCall(f.managerSocket, 'restore', { endpoint: AGENT, target, snapshot: snap.id }, { timeoutMs: 120_000 }) as RestoreSummary
          assert.deepEqual(summary.errors, [], `snapshot ${snap.id} (set ${s.setId}) restores without errors`)
          const diffs = diffDescriptions(s.tree, describeTree(join(target, basename(src))))
          assert.deepEqual(diffs, [], `snapshot ${snap.id} (set ${s.setId}) restores bit-exact to the folder as sealed`)
          restoredBytes += summary.bytes
          rmSync(target, { recursive: true, force: true })
        }
        say(`round ${String(round).padStart(2)}: +${m.created} ~${m.modified} -${m.deleted} >${m.renamed}, set ${set.id} (${mib(set.storedBytes)} to pull); ${what}; backup ok after ${attempts} attempt(s); ${sealed.length} snapshot(s) restore bit-exact; ${Date.now() - roundStarted} ms`)
      })
    }
    const mgr = await cliJson<{ storedBytes: number }>(['status', '--socket', f.managerSocket, '--role', 'manager'])
    say(`manager crash rounds done in ${((Date.now() - started) / 1000).toFixed(1)} s; kill points: ${[...phases].map(([k, v]) => `${k} ${v}`).join(', ')}; restored ${mib(restoredBytes)} in all; packs hold ${mib(packBytes(join(f.managerDir, 'packs')))} for ${mib(mgr.storedBytes)} of committed chunks (${unreferencedPacks} packs no chunk of the catalog is in)`)
    // Each restart recovers the packs a kill left: no orphan pack, no uncommitted tail beyond
    // the record headers (40 bytes a chunk) and pack magics.
    assert.deepEqual(phasesMissed(phases, named), [], `every named kill phase was hit (${named.join(', ')})`)
    assert.equal(unreferencedPacks, 0, 'packs no committed chunk is in were removed on restart')
    const onDisk = packBytes(join(f.managerDir, 'packs'))
    assert.ok(onDisk <= mgr.storedBytes * 1.02 + 1024 * 1024, `packs hold ${onDisk} bytes for ${mgr.storedBytes} bytes of committed chunks`)
  })
})
