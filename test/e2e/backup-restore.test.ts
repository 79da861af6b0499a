/**
 * End to end, as a user runs it: real daemons as separate OS processes, found over real mDNS
 * in the private namespace, driven through the real CLI.
 */
import { strict as assert } from 'node:assert'
import { mkdtempSync, readdirSync, rmSync, writeFileSync, openSync, writeSync, closeSync, renameSync, unlinkSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TestFleet, cliJson, runCli, type AgentHandle } from '../support/fleet.js'
import { compareTrees, makeSampleTree, seededBytes } from '../support/trees.js'
import { requirePrivateNetns } from '../support/mocha.js'
import type { EndpointRestoreSummary, RoundResult, PeerListRow } from '../../src/roles/manager/manager.js'
import type { SnapshotRow } from '../../src/store/core/catalog.js'

describe('end to end: two agents, one manager, real processes over mDNS', function () {
  let root: string
  let fleet: TestFleet
  let alice: AgentHandle
  let bob: AgentHandle

  before(async function () {
    requirePrivateNetns(this)
    root = mkdtempSync(join(tmpdir(), 'holdfast-e2e-'))
    fleet = new TestFleet(root)
    makeSampleTree(join(root, 'alice'), 'alice')
    makeSampleTree(join(root, 'bob'), 'bob')
    await fleet.init({ bandwidth: 200 * 1024 * 1024 })
    alice = await fleet.addAgent('alice', join(root, 'alice'))
    bob = await fleet.addAgent('bob', join(root, 'bob'))
    await fleet.startManager()
    await fleet.startAgent(alice)
    await fleet.startAgent(bob)
  })

  after(async function () {
    await fleet?.stopAll()
    if (root !== undefined) rmSync(root, { recursive: true, force: true })
  })

  it('finds both agents over mDNS, backs them up, and restores each bit-exact', async function () {
    for (const a of [alice, bob]) await cliJson(['scan-now', '--socket', a.socket])
    const round = await cliJson<RoundResult>(['backup-now', '--socket', fleet.managerSocket, '--expect-peers', '2', '--timeout', '30'])
    assert.equal(round.peers.length, 2)
    for (const p of round.peers) assert.ok(p.ok, `pull from ${p.name} failed: ${p.error ?? ''}`)

    const peers = await cliJson<PeerListRow[]>(['peers', '--socket', fleet.managerSocket])
    const agents = peers.filter(p => p.role === 'agent')
    assert.deepEqual(agents.map(p => p.peerId).sort(), [alice.peerId, bob.peerId].sort())
    for (const p of agents) {
      assert.equal(p.source, 'mdns')
      assert.equal(p.version, '0.1.0')
      assert.ok(p.lastBackup !== undefined && p.lastBackup > 0)
      assert.match(p.addresses[0], /^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\//)
    }

    for (const a of [alice, bob]) {
      const target = join(root, `restore-${a.name}`)
      const r = await runCli(['restore', '--socket', fleet.managerSocket, '--endpoint', a.peerId, '--target', target])
      assert.equal(r.code, 0, r.stderr)
      assert.deepEqual(compareTrees(a.folder, join(target, a.name)), [])
    }
  })

  it('restores a backup back onto the endpoint, under its restore directory, bit-exact; a second push needs --overwrite', async function () {
    const snaps = await cliJson<SnapshotRow[]>(['snapshots', '--socket', fleet.managerSocket, '--endpoint', 'bob'])
    const snap = snaps[snaps.length - 1]
    const pushed = await cliJson<EndpointRestoreSummary>(['restore', '--socket', fleet.managerSocket, '--endpoint', 'bob', '--to-endpoint'])
    assert.deepEqual(pushed.errors, [])
    assert.equal(pushed.snapshotId, snap.id)
    assert.equal(pushed.endpoint, bob.peerId)
    assert.match(pushed.label, new RegExp(`^restore-${snap.id}-\\d{8}T\\d{6}Z$`))
    assert.ok(pushed.files > 0 && pushed.bytes > 0)
    const written = join(bob.dataDir, 'restores', pushed.label)
    assert.deepEqual(readdirSync(written), ['bob'])
    assert.deepEqual(compareTrees(bob.folder, join(written, 'bob')), [])

    // the same snapshot again: the agent will not write into its earlier restore…
    const again = await runCli(['restore', '--socket', fleet.managerSocket, '--endpoint', 'bob', '--to-endpoint'])
    assert.notEqual(again.code, 0)
    assert.match(again.stderr, /RESTORE_TARGET_NOT_EMPTY/)
    assert.equal(again.stderr.trim().split('\n').length, 1)
    // …unless told to: a file changed there since is put back as it was
    writeFileSync(join(written, 'bob', 'README.txt'), 'changed on the endpoint after the restore\n')
    const over = await cliJson<EndpointRestoreSummary>(['restore', '--socket', fleet.managerSocket, '--endpoint', 'bob', '--to-endpoint', '--overwrite'])
    assert.deepEqual(over.errors, [])
    assert.equal(over.label, pushed.label)
    assert.deepEqual(compareTrees(bob.folder, join(written, 'bob')), [])
    // nothing was written outside the restore directory
    assert.deepEqual(readdirSync(join(bob.dataDir, 'restores')), [pushed.label])
  })

  it('stores identical content from two endpoints once', async function () {
    const snaps = await cliJson<SnapshotRow[]>(['snapshots', '--socket', fleet.managerSocket])
    const first = snaps.filter(s => s.setId === 1)
    assert.equal(first.length, 2)
    // Both trees hold the same 3 MiB installer; the second endpoint's snapshot did not store it again.
    const [earlier, later] = first.sort((x, y) => x.id - y.id)
    assert.ok(earlier.newBytes - later.newBytes > 3 * 1024 * 1024 * 0.9, `earlier ${earlier.newBytes}, later ${later.newBytes}`)
  })

  it('a second backup after an edit moves only the changed chunks', async function () {
    // Overwrite 100 bytes in the middle of alice's 6 MiB file, add a file, delete one, rename one.
    const big = join(alice.folder, 'big-alice.bin')
    const fd = openSync(big, 'r+')
    writeSync(fd, Buffer.alloc(100, 0x42), 0, 100, 3 * 1024 * 1024)
    closeSync(fd)
    writeFileSync(join(alice.folder, 'new-note.txt'), 'written after the first backup\n')
    unlinkSync(join(alice.folder, 'empty.txt'))
    renameSync(join(alice.folder, 'shared-installer.bin'), join(alice.folder, 'installer-renamed.bin'))
    await cliJson(['scan-now', '--socket', alice.socket])
    const round = await cliJson<RoundResult>(['backup-now', '--socket', fleet.managerSocket])
    const a = round.peers.find(p => p.peerId === alice.peerId)
    assert.ok(a?.ok, a?.error)
    assert.equal(a.snapshots.length, 1)
    // One 6 MiB random file cut into ~1 MiB chunks: the edit touches one or two of them
    // (at most 2 × 4 MiB max chunk); the rename moves nothing; the new note is tiny.
    assert.ok(a.bytesPulled > 0, 'something was pulled')
    assert.ok(a.bytesPulled <= 2 * 4 * 1024 * 1024 + 4096, `pulled ${a.bytesPulled} bytes`)
    assert.ok(a.bytesPulled < 6 * 1024 * 1024, `pulled ${a.bytesPulled} bytes: more than the whole file`)
    const b = round.peers.find(p => p.peerId === bob.peerId)
    assert.ok(b?.ok)
    assert.equal(b.snapshots.length, 0, 'bob changed nothing')

    const target = join(root, 'restore-alice-2')
    const r = await runCli(['restore', '--socket', fleet.managerSocket, '--endpoint', 'alice', '--target', target])
    assert.equal(r.code, 0, r.stderr)
    assert.deepEqual(compareTrees(alice.folder, join(target, 'alice')), [])
  })

  it('keeps the old version: restoring the first snapshot gives the tree before the edit', async function () {
    const snaps = await cliJson<SnapshotRow[]>(['snapshots', '--socket', fleet.managerSocket, '--endpoint', 'alice'])
    assert.equal(snaps.length, 2)
    const target = join(root, 'restore-alice-old')
    const r = await runCli(['restore', '--socket', fleet.managerSocket, '--endpoint', 'alice', '--snapshot', String(snaps[0].id), '--target', target])
    assert.equal(r.code, 0, r.stderr)
    assert.ok(existsSync(join(target, 'alice', 'empty.txt')), 'the deleted file is in the old snapshot')
    assert.ok(existsSync(join(target, 'alice', 'shared-installer.bin')))
    assert.ok(!existsSync(join(target, 'alice', 'new-note.txt')))
    const old = (await import('node:fs')).readFileSync(join(target, 'alice', 'big-alice.bin'))
    assert.ok(old.equals(seededBytes('big-alice', 6 * 1024 * 1024)), 'the big file as it was before the edit')
  })

  it('restores the tree as of a time (--at), and a deleted file from its last version', async function () {
    const snaps = await cliJson<SnapshotRow[]>(['snapshots', '--socket', fleet.managerSocket, '--endpoint', 'alice'])
    assert.equal(snaps.length, 2)
    // just after the first commit, before the second: the first snapshot's tree
    const between = new Date(snaps[0].committedAt + 1).toISOString()
    assert.ok(snaps[1].committedAt > snaps[0].committedAt + 1)
    const atTarget = join(root, 'restore-alice-at')
    const r = await runCli(['restore', '--socket', fleet.managerSocket, '--endpoint', 'alice', '--at', between, '--target', atTarget])
    assert.equal(r.code, 0, r.stderr)
    assert.ok(existsSync(join(atTarget, 'alice', 'empty.txt')), 'deleted later, present then')
    assert.ok(!existsSync(join(atTarget, 'alice', 'new-note.txt')), 'written later, absent then')
    // empty.txt was deleted in the second snapshot: asking for it restores its last version
    const deletedTarget = join(root, 'restore-deleted')
    const d = await runCli(['restore', '--socket', fleet.managerSocket, '--endpoint', 'alice', '--path', 'alice/empty.txt', '--target', deletedTarget, '--json'])
    assert.equal(d.code, 0, d.stderr)
    assert.equal((JSON.parse(d.stdout) as { snapshotId: number }).snapshotId, snaps[0].id)
    assert.ok(existsSync(join(deletedTarget, 'alice', 'empty.txt')))
    // with an explicit snapshot the deletion stands
    const e = await runCli(['restore', '--socket', fleet.managerSocket, '--endpoint', 'alice', '--snapshot', String(snaps[1].id), '--path', 'alice/empty.txt', '--target', join(root, 'restore-deleted-2')])
    assert.notEqual(e.code, 0)
    assert.match(e.stderr, /PATH_NOT_FOUND/)
  })

  it('restores one path only', async function () {
    const target = join(root, 'restore-one-path')
    const r = await runCli(['restore', '--socket', fleet.managerSocket, '--endpoint', 'bob', '--path', 'bob/docs/reports', '--target', target])
    assert.equal(r.code, 0, r.stderr)
    assert.deepEqual(compareTrees(join(bob.folder, 'docs', 'reports'), join(target, 'bob', 'docs', 'reports')), [])
    assert.ok(!existsSync(join(target, 'bob', 'README.txt')))
  })

  it('refuses a restore into a non-empty directory with a one-line error', async function () {
    const target = join(root, 'not-empty')
    makeSampleTree(target, 'x')
    const r = await runCli(['restore', '--socket', fleet.managerSocket, '--endpoint', 'bob', '--target', target])
    assert.notEqual(r.code, 0)
    assert.match(r.stderr, /RESTORE_TARGET_NOT_EMPTY/)
    assert.equal(r.stderr.trim().split('\n').length, 1)
  })
})
