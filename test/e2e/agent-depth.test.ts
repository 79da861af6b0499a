/**
 * The agent as a user meets it: changes staged promptly from file-system events, and every
 * kind of file round-tripping through real daemons bit-exact.
 */
import { strict as assert } from 'node:assert'
import { chmodSync, linkSync, mkdirSync, mkdtempSync, openSync, closeSync, writeSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync, ftruncateSync, lstatSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TestFleet, cliJson, runCli, type AgentHandle } from '../support/fleet.js'
import { compareTrees, seededBytes } from '../support/trees.js'
import { requirePrivateNetns } from '../support/mocha.js'
import { until } from '../support/wait.js'
import type { RoundResult } from '../../src/roles/manager/manager.js'
import type { AgentStatus } from '../../src/roles/agent/agent.js'

const MiB = 1024 * 1024


describe('end to end: agent depth', function () {
  let root: string
  let fleet: TestFleet
  let agent: AgentHandle
  let src: string

  before(async function () {
    requirePrivateNetns(this)
    root = mkdtempSync(join(tmpdir(), 'holdfast-agent-'))
    src = join(root, 'home')
    mkdirSync(src)
    writeFileSync(join(src, 'first.txt'), 'present at start')
    fleet = new TestFleet(join(root, 'fleet'))
    await fleet.init({ bandwidth: 500 * MiB })
    // no periodic scan within the test's lifetime: only events can prompt staging
    agent = await fleet.addAgent('laptop', src, { settle: 0, scanInterval: 3600 })
    await fleet.startManager()
    await fleet.startAgent(agent)
  })

  after(async function () {
    await fleet?.stopAll()
    if (root !== undefined) rmSync(root, { recursive: true, force: true })
  })

  it('stages a new file from a file-system event, without waiting for the reconcile scan', async function () {
    // the start-up scan stages first.txt
    await until('the start-up scan', 20_000, async () => {
      const s = await cliJson<AgentStatus>(['status', '--socket', agent.socket])
      // sealed, or already pulled and acked: the manager's scheduler may visit first
      return s.filesTracked >= 1 && (s.sealedSets >= 1 || s.lastAck !== undefined) ? s : undefined
    })
    const round = await cliJson<RoundResult>(['backup-now', '--socket', fleet.managerSocket, '--expect-peers', '1', '--timeout', '30'])
    assert.ok(round.peers[0]?.ok)
    const before = await cliJson<AgentStatus>(['status', '--socket', agent.socket])
    assert.equal(before.folders[0].watch, 'events')
    assert.equal(before.sealedSets, 0)
    writeFileSync(join(src, 'written-later.txt'), 'an event should bring this in')
    const staged = await until('event-driven staging', 15_000, async () => {
      const s = await cliJson<AgentStatus>(['status', '--socket', agent.socket])
      return s.sealedSets > 0 ? s : undefined
    })
    assert.equal(staged.filesNotBackedUp, 1)
  })

  it('round-trips every kind of file bit-exact: empty, large, sparse, hard links (as links), modes, odd names, deep paths, symlink loops, FIFOs recorded', async function () {
    this.timeout(120_000)
    const k = join(src, 'kinds')
    mkdirSync(k)
    writeFileSync(join(k, 'empty'), '')
    writeFileSync(join(k, 'large.bin'), seededBytes('large', 40 * MiB + 17))
    // sparse: 64 MiB with data only at both ends
    const sparse = join(k, 'sparse.img')
    const fd = openSync(sparse, 'w')
    writeSync(fd, Buffer.from('head'), 0, 4, 0)
    writeSync(fd, Buffer.from('tail'), 0, 4, 64 * MiB - 4)
    ftruncateSync(fd, 64 * MiB)
    closeSync(fd)
    writeFileSync(join(k, 'linked-a'), 'one inode, two names')
    linkSync(join(k, 'linked-a'), join(k, 'linked-b'))
    writeFileSync(join(k, 'private'), 'secret'); chmodSync(join(k, 'private'), 0o600)
    writeFileSync(join(k, 'read-only'), 'ro'); chmodSync(join(k, 'read-only'), 0o444)
    writeFileSync(join(k, 'setuid-tool'), '#!/bin/sh\n'); chmodSync(join(k, 'setuid-tool'), 0o4755)
    mkdirSync(join(k, 'locked-dir')); writeFileSync(join(k, 'locked-dir', 'inside'), 'x'); chmodSync(join(k, 'locked-dir'), 0o500)
    writeFileSync(join(k, 'line\nbreak'), 'a newline in the name')
    writeFileSync(join(k, ' leading and trailing '), 'spaces')
    writeFileSync(Buffer.concat([Buffer.from(k + '/'), Buffer.from([0xff, 0xfe, 0x41])]), 'not UTF-8 at all')
    writeFileSync(join(k, 'emoji-🗄️.txt'), 'utf-8 name')
    let deep = join(k, 'deep')
    for (let i = 0; i < 60; i++) deep = join(deep, `level-${i}`)
    mkdirSync(deep, { recursive: true })
    writeFileSync(join(deep, 'bottom.txt'), 'far down')
    symlinkSync('loop-b', join(k, 'loop-a'))
    symlinkSync('loop-a', join(k, 'loop-b'))
    symlinkSync('/etc/passwd', join(k, 'points-outside'))
    execFileSync('mkfifo', [join(k, 'a-fifo')])

    await cliJson(['scan-now', '--socket', agent.socket])
    const round = await cliJson<RoundResult>(['backup-now', '--socket', fleet.managerSocket])
    assert.ok(round.peers[0]?.ok, round.peers[0]?.error)
    // the sparse file's 64 MiB of zeros dedup to a handful of chunks: little was moved for it
    const target = join(root, 'restore')
    // --keep-setuid: the tree has a setuid file, compared mode for mode (the default drops the bit)
    const r = await runCli(['restore', '--socket', fleet.managerSocket, '--endpoint', 'laptop', '--target', target, '--keep-setuid'])
    assert.equal(r.code, 0, r.stderr)
    const restored = join(target, 'home')
    // FIFOs are recorded, not recreated; everything else must be identical
    assert.deepEqual(compareTrees(src, restored, { skip: p => p === 'kinds/a-fifo' }), [])
    assert.equal(lstatSync(join(restored, 'kinds', 'a-fifo'), { throwIfNoEntry: false }), undefined)
    const st = statSync(join(restored, 'kinds', 'sparse.img'))
    assert.equal(st.size, 64 * MiB)
    assert.ok(st.blocks * 512 <= 1 * MiB, `restored sparse file occupies ${st.blocks * 512} bytes`)
    assert.equal(readFileSync(join(restored, 'kinds', 'linked-b'), 'utf8'), 'one inode, two names')
    assert.equal(statSync(join(restored, 'kinds', 'linked-a')).ino, statSync(join(restored, 'kinds', 'linked-b')).ino, 'hard links are restored as links')
    chmodSync(join(k, 'locked-dir'), 0o700)
    chmodSync(join(restored, 'kinds', 'locked-dir'), 0o700)
  })

  it('shows its state in holdfast status, for people and as JSON', async function () {
    const json = await cliJson<AgentStatus>(['status', '--socket', agent.socket])
    assert.equal(json.peerId, agent.peerId)
    assert.ok(json.filesTracked > 80)
    assert.equal(json.filesNotBackedUp, 0)
    assert.ok(json.spoolCapBytes > 0)
    assert.equal(json.spoolFull, false)
    assert.ok(json.lastAck !== undefined && json.lastAck.ageSeconds >= 0)
    const human = await runCli(['status', '--socket', agent.socket])
    assert.equal(human.code, 0)
    for (const label of ['files tracked', 'settling', 'waiting for lock', 'staged, not pulled', 'spool', 'last backup']) assert.match(human.stdout, new RegExp(label))
  })
})
