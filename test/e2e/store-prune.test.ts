/**
 * Retention and prune end to end: real daemons as separate processes (found over mDNS in the
 * private namespace), real backups, and the real CLI.
 * A. Five backups with edits, deletions and re-creations; `retention set/show`, a hold, then
 *    `prune --dry-run` (changes nothing) and `prune`: the policy's snapshots stay and restore
 *    bit-exact, a file deleted in the newest backup is still restorable from the kept one
 *    before it, the packs take less space, verify --read-data passes.
 * B. A prune asked for while a slow pull is in progress: it waits for the pull to commit,
 *    both succeed, and the pulled snapshot (which reuses chunks only snapshots the prune
 *    removes held until then) restores bit-exact; verify --read-data passes.
 */
import { strict as assert } from 'node:assert'
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TestFleet, cliJson, cliJsonStatus, runCli, type AgentHandle } from '../support/fleet.js'
import { makeSampleTree } from '../support/trees.js'
import { requirePrivateNetns } from '../support/mocha.js'
import { until } from '../support/wait.js'
import { Prng, describeTree, diffDescriptions, packBytes, sha256, type TreeDescription } from '../support/crash.js'
import type { PeerListRow, RoundResult } from '../../src/roles/manager/manager.js'
import type { SnapshotRow } from '../../src/store/core/catalog.js'
import type { RestoreSummary } from '../../src/store/restore.js'
import type { VerifyReport } from '../../src/store/maintenance/verify.js'
import type { AgentStatus } from '../../src/roles/agent/agent.js'
import type { PruneResult, RetentionShow } from '../../src/roles/manager/store-admin.js'

const MiB = 1024 * 1024

/** A fleet of one agent whose staging happens only when asked (scan-now), so each backup is one snapshot. */
async function startFleet (root: string, name: string, bandwidth: number): Promise<{ fleet: TestFleet, agent: AgentHandle }> {
  const fleet = new TestFleet(join(root, 'fleet'))
  await fleet.init({ bandwidth })
  mkdirSync(join(root, name))
  const agent = await fleet.addAgent(name, join(root, name))
  fleet.patchConfig(agent.config, c => { (c.agent as Record<string, unknown>).watch = 'scan' })
  await fleet.startManager()
  await fleet.startAgent(agent)
  await until('the agent\'s first scan', 30_000, async () => (await cliJson<AgentStatus>(['status', '--socket', agent.socket])).lastScanAt !== undefined ? true : undefined)
  return { fleet, agent }
}

/** scan-now, then one pull round: returns the one snapshot it committed. */
async function backup (fleet: TestFleet, agent: AgentHandle): Promise<number> {
  await cliJson(['scan-now', '--socket', agent.socket])
  const round = await cliJson<RoundResult>(['backup-now', '--socket', fleet.managerSocket, '--expect-peers', '1', '--timeout', '30'], { timeoutMs: 120_000 })
  assert.equal(round.peers.length, 1)
  assert.ok(round.peers[0].ok, `pull failed: ${round.peers[0].error ?? ''}`)
  assert.equal(round.peers[0].snapshots.length, 1, 'one staging set per backup')
  return round.peers[0].snapshots[0].snapshotId
}

/** Restores a snapshot through the CLI and compares it with the folder as it was backed up. */
async function assertRestores (fleet: TestFleet, root: string, agent: AgentHandle, snapshotId: number, expected: TreeDescription): Promise<void> {
  const target = mkdtempSync(join(root, 'restore-'))
  const r = await cliJson<RestoreSummary>(['restore', '--socket', fleet.managerSocket, '--endpoint', agent.name, '--snapshot', String(snapshotId), '--target', target], { timeoutMs: 120_000 })
  assert.deepEqual(r.errors, [])
  assert.deepEqual(diffDescriptions(expected, describeTree(join(target, agent.name))), [], `snapshot ${snapshotId} restores bit-exact`)
  rmSync(target, { recursive: true, force: true })
}

async function verifyOk (fleet: TestFleet): Promise<VerifyReport> {
  const { code, json } = await cliJsonStatus<VerifyReport>(['verify', '--read-data', '--socket', fleet.managerSocket], { timeoutMs: 300_000 })
  assert.ok(code === 0 && json.ok, `verify --read-data: ${JSON.stringify({ code, counts: json.problemCounts, problems: json.problems.slice(0, 3) })}`)
  return json
}

describe('end to end: retention and prune through the CLI', function () {
  this.timeout(300_000)
  let root: string
  let fleet: TestFleet
  let alice: AgentHandle
  let sock: string[]
  const expected = new Map<number, TreeDescription>()
  const ids: number[] = []
  let lateGone: Buffer = Buffer.alloc(0)

  before(async function () {
    requirePrivateNetns(this)
    root = mkdtempSync(join(tmpdir(), 'holdfast-e2e-prune-'))
    ;({ fleet, agent: alice } = await startFleet(root, 'alice', 200 * MiB))
    sock = ['--socket', fleet.managerSocket]
    const rng = new Prng(0xa11ce)
    const f = (p: string): string => join(alice.folder, p)
    const record = async (): Promise<void> => {
      const id = await backup(fleet, alice)
      ids.push(id)
      expected.set(id, describeTree(alice.folder))
    }
    // 1: the sample tree, a 3 MiB file, and two files that go later
    makeSampleTree(alice.folder, 'alice', { bigFileBytes: 3 * MiB })
    writeFileSync(f('gone.txt'), 'deleted in backup 3, back in backup 4\n')
    lateGone = rng.bytes(300_000)
    writeFileSync(f('late-gone.bin'), lateGone)
    await record()
    // 2: the big file rewritten, notes edited, a new file
    writeFileSync(f('big-alice.bin'), rng.bytes(3 * MiB))
    writeFileSync(f('docs/notes.md'), 'second version\n'.repeat(1000))
    writeFileSync(f('r2.bin'), rng.bytes(512 * 1024))
    await record()
    // 3: a deletion, a rewrite, a new file
    unlinkSync(f('gone.txt'))
    writeFileSync(f('r2.bin'), rng.bytes(512 * 1024))
    writeFileSync(f('r3.bin'), rng.bytes(MiB))
    await record()
    // 4: a re-creation, an append, r3 deleted again
    writeFileSync(f('gone.txt'), 'back again, other contents\n')
    appendFileSync(f('big-alice.bin'), rng.bytes(100_000))
    unlinkSync(f('r3.bin'))
    await record()
    // 5: late-gone.bin deleted, notes edited
    unlinkSync(f('late-gone.bin'))
    writeFileSync(f('docs/notes.md'), 'fifth version\n'.repeat(1200))
    await record()
  })

  after(async function () {
    await fleet?.stopAll()
    if (root !== undefined) rmSync(root, { recursive: true, force: true })
  })

  it('retention set/show: keep everything by default, a policy for all, a hold on one endpoint', async () => {
    const none = await cliJson<RetentionShow>(['retention', 'show', ...sock])
    assert.equal(none.global.text, 'keep everything')
    assert.deepEqual(none.endpoints.map(e => [e.endpoint, e.snapshots, e.effective.rulesFrom]), [['alice', 5, 'none']])
    const dryNone = await cliJson<PruneResult>(['prune', '--dry-run', ...sock])
    assert.equal(dryNone.snapshots.removed, 0)

    const set = await cliJson<RetentionShow>(['retention', 'set', '--keep-last', '2', '--min-age', '0', ...sock])
    assert.deepEqual(set.global.rules, { keepLast: 2, minAgeMs: 0 })
    assert.equal(set.endpoints[0].effective.rulesFrom, 'global')
    const held = await cliJson<RetentionShow>(['retention', 'set', '--endpoint', 'alice', '--hold', ...sock])
    assert.deepEqual([held.endpoints[0].effective.hold, held.endpoints[0].effective.holdFrom, held.endpoints[0].effective.rulesFrom], [true, 'endpoint', 'global'])
    const dryHeld = await cliJson<PruneResult>(['prune', '--dry-run', ...sock])
    assert.equal(dryHeld.snapshots.removed, 0)
    assert.ok(dryHeld.endpoints[0].snapshots.every(s => s.keep && s.reasons[0] === 'hold'))
    const human = await runCli(['retention', 'show', ...sock])
    assert.equal(human.code, 0, human.stderr)
    assert.match(human.stdout, /^all endpoints: keep-last 2/m)
    assert.match(human.stdout, /alice\s+5\s+keep-last 2\s+all endpoints\s+held \(own\)/)
    const released = await cliJson<RetentionShow>(['retention', 'set', '--endpoint', 'alice', '--release', ...sock])
    assert.equal(released.endpoints[0].effective.hold, false)
    assert.equal(released.endpoints[0].own, undefined, 'a scope with neither rules nor a hold has no policy')

    // bad input: one line, exit 2
    for (const args of [['retention', 'set', '--keep-daily', 'x'], ['retention', 'set', '--min-age', '30'], ['retention', 'set'], ['retention', 'set', '--hold', '--release'], ['retention', 'frob'], ['prune', '--repack-threshold', '150']]) {
      const r = await runCli([...args, ...sock])
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`)
      assert.match(r.stderr, /ADMIN_BAD_REQUEST/)
      assert.equal(r.stderr.trim().split('\n').length, 1)
    }
    const nobody = await runCli(['retention', 'set', '--endpoint', 'nobody', '--hold', ...sock])
    assert.equal(nobody.code, 1)
    assert.match(nobody.stderr, /PEER_UNKNOWN/)
    for (const cmd of ['retention', 'prune']) {
      const help = await runCli([cmd, '--help'])
      assert.equal(help.code, 0)
      assert.match(help.stdout, new RegExp(`^holdfast ${cmd}`))
      assert.match(help.stdout, /--json/)
    }
  })

  it('prune --dry-run shows what would go and changes nothing; prune removes it, every kept snapshot restores bit-exact, the store shrinks, verify passes', async () => {
    const packsDir = join(fleet.managerDir, 'packs')
    const bytesBefore = packBytes(packsDir)
    const statusBefore = await cliJson<{ storedBytes: number, snapshots: number }>(['status', '--role', 'manager', ...sock])
    const dry = await cliJson<PruneResult>(['prune', '--dry-run', ...sock])
    assert.equal(dry.dryRun, true)
    const [e] = dry.endpoints
    assert.deepEqual(e.snapshots.map(s => [s.id, s.keep]), [...ids].reverse().map((id, i) => [id, i < 2]))
    assert.deepEqual(e.snapshots.filter(s => !s.keep).map(s => s.mergedInto), [ids[3], ids[3], ids[3]])
    assert.deepEqual(e.snapshots[0].reasons, ['newest', 'last'])
    assert.ok(dry.versions.dropped > 0 && dry.versions.moved > 0)
    assert.ok(dry.chunks.dead > 0 && dry.bytes.reclaimed > 4 * MiB, `at least the first big file, the first r2 and r3 (${dry.bytes.reclaimed})`)
    assert.equal(packBytes(packsDir), bytesBefore, 'a dry run changes no pack')
    assert.deepEqual((await cliJson<SnapshotRow[]>(['snapshots', ...sock])).map(s => s.id), ids, 'nor the catalog')
    const human = await runCli(['prune', '--dry-run', ...sock])
    assert.equal(human.code, 0, human.stderr)
    assert.match(human.stdout, /^alice: keep-last 2: would keep 2 of 5 snapshots, would remove 3/m)
    assert.match(human.stdout, new RegExp(`${ids[0]}\\s+\\d+\\s+\\S+ \\S+\\s+remove\\s+no rule keeps it; its latest versions go to ${ids[3]}`))
    assert.match(human.stdout, new RegExp(`${ids[4]}\\s+\\d+\\s+\\S+ \\S+\\s+keep\\s+newest, last`))
    assert.match(human.stdout, /^space: .* would come back/m)

    const r = await cliJson<PruneResult>(['prune', ...sock], { timeoutMs: 300_000 })
    assert.equal(r.dryRun, false)
    assert.deepEqual([r.snapshots, r.versions, r.chunks.dead], [dry.snapshots, dry.versions, dry.chunks.dead])
    assert.deepEqual(r.packs.problems, [])
    assert.deepEqual((await cliJson<SnapshotRow[]>(['snapshots', ...sock])).map(s => s.id), ids.slice(3))
    const bytesAfter = packBytes(packsDir)
    assert.ok(bytesAfter < bytesBefore - 4 * MiB, `packs: ${bytesBefore} → ${bytesAfter}`)
    assert.ok(Math.abs(r.bytes.reclaimed - dry.bytes.reclaimed) <= 64, `the dry run's estimate (${dry.bytes.reclaimed}) against what came back (${r.bytes.reclaimed})`)
    assert.equal(bytesAfter, r.bytes.after)
    const statusAfter = await cliJson<{ storedBytes: number, snapshots: number }>(['status', '--role', 'manager', ...sock])
    assert.ok(statusAfter.storedBytes < statusBefore.storedBytes - 4 * MiB)
    assert.equal(statusAfter.snapshots, 2)

    for (const id of ids.slice(3)) await assertRestores(fleet, root, alice, id, expected.get(id) as TreeDescription)
    // deleted in the newest backup: still restorable, from the kept snapshot before it
    const target = join(mkdtempSync(join(root, 'late-')), 't')
    const one = await cliJson<RestoreSummary>(['restore', ...sock, '--endpoint', 'alice', '--path', 'alice/late-gone.bin', '--target', target])
    assert.equal(one.snapshotId, ids[3])
    assert.equal(describeTree(join(target, 'alice')).get('late-gone.bin')?.sha256, sha256(lateGone))
    const v = await verifyOk(fleet)
    assert.deepEqual(v.packs.unreferenced, [])

    // nothing more to do
    const again = await cliJson<PruneResult>(['prune', ...sock])
    assert.deepEqual([again.snapshots.removed, again.bytes.reclaimed], [0, 0])
  })
})

describe('end to end: prune while a pull is in progress', function () {
  this.timeout(300_000)
  let root: string
  let fleet: TestFleet
  let bob: AgentHandle

  before(async function () {
    requirePrivateNetns(this)
    root = mkdtempSync(join(tmpdir(), 'holdfast-e2e-prune-pull-'))
    // 3 MiB/s: the 12 MiB set below takes about four seconds to pull
    ;({ fleet, agent: bob } = await startFleet(root, 'bob', 3 * MiB))
  })

  after(async function () {
    await fleet?.stopAll()
    if (root !== undefined) rmSync(root, { recursive: true, force: true })
  })

  it('waits for the pull to commit, then removes the old snapshots; the pulled snapshot restores bit-exact and verify passes', async () => {
    const sock = ['--socket', fleet.managerSocket]
    const rng = new Prng(0xb0b)
    const reused = rng.bytes(MiB)
    const f = (p: string): string => join(bob.folder, p)
    writeFileSync(f('reused.bin'), reused)
    writeFileSync(f('small.txt'), 'small\n')
    const s1 = await backup(fleet, bob)
    unlinkSync(f('reused.bin'))
    const s2 = await backup(fleet, bob)
    // from now on, only s1 holds reused.bin's chunks: a prune that removed s1 and s2 while the
    // next pull relies on them (the pull does not fetch chunks the store says it has) would
    // leave the new snapshot broken
    await cliJson(['retention', 'set', '--keep-last', '1', ...sock])
    writeFileSync(f('reused.bin'), reused)
    writeFileSync(f('large.bin'), rng.bytes(12 * MiB))
    await cliJson(['scan-now', '--socket', bob.socket])
    const expected = describeTree(bob.folder)

    const round = cliJson<RoundResult>(['backup-now', ...sock, '--expect-peers', '1', '--timeout', '30'], { timeoutMs: 120_000 })
    // the round is under way once the manager has read the agent's manifest (pending sets)
    await until('the pull to start', 30_000, async () => {
      const peers = await cliJson<PeerListRow[]>(['peers', ...sock])
      return peers.some(p => p.peerId === bob.peerId && (p.pendingSets ?? 0) > 0) ? true : undefined
    })
    const pruned = cliJson<PruneResult>(['prune', ...sock], { timeoutMs: 300_000 })
    const [pulled, r] = await Promise.all([round, pruned])
    assert.ok(pulled.peers[0].ok, pulled.peers[0].error)
    assert.equal(pulled.peers[0].snapshots.length, 1)
    const s3 = pulled.peers[0].snapshots[0].snapshotId
    assert.ok(pulled.peers[0].bytesPulled > 12 * MiB && pulled.peers[0].bytesPulled < 12.5 * MiB, `reused.bin was not fetched again (${pulled.peers[0].bytesPulled} bytes)`)

    const snaps = await cliJson<SnapshotRow[]>(['snapshots', ...sock])
    assert.deepEqual(snaps.map(s => s.id), [s3], 'keep-last 1: the pulled snapshot')
    assert.ok(r.lockWaitMs > 0 && r.startedAt >= snaps[0].committedAt, `prune began after the pull committed (${r.startedAt} vs ${snaps[0].committedAt}, waited ${r.lockWaitMs} ms)`)
    assert.deepEqual(r.endpoints[0].snapshots.map(s => [s.id, s.keep]), [[s3, true], [s2, false], [s1, false]])
    assert.deepEqual(r.packs.problems, [])
    await assertRestores(fleet, root, bob, s3, expected)
    await verifyOk(fleet)
  })
})
