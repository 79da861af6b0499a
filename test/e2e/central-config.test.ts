/**
 * Central configuration with real daemons (separate processes, loopback, no mDNS: agents are
 * added by address): `holdfast config set` on the manager reaches both agents on their next
 * contact, which apply it at once (a new folder is backed up and restores bit-exact) and keep
 * it across a restart without their agent.json being rewritten; a config an agent cannot apply
 * is refused, shown in the peer list, and changes nothing there; a local-only key is refused
 * by `config set`; every change is in the audit log.
 */
import { strict as assert } from 'node:assert'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TestFleet, cliJson, runCli, type AgentHandle } from '../support/fleet.js'
import { compareTrees, makeSampleTree } from '../support/trees.js'
import { until } from '../support/wait.js'
import type { AgentStatus, AuditEntry, ConfigShowReply, PeerListRow, RoundResult, ScanReply } from '../../src/admin/api.js'

describe('e2e: central configuration (holdfast config)', function () {
  this.timeout(300_000)
  let root = ''
  let fleet: TestFleet | undefined

  beforeEach(() => { root = mkdtempSync(join(tmpdir(), 'holdfast-central-')) })
  afterEach(async () => {
    await fleet?.stopAll()
    fleet = undefined
    if (root !== '') rmSync(root, { recursive: true, force: true })
  })

  /** A manager and two agents (own folders a-src, b-src), each added by its loopback address. */
  async function twoAgents (): Promise<{ f: TestFleet, a: AgentHandle, b: AgentHandle }> {
    const f = new TestFleet(join(root, 'fleet'))
    fleet = f
    await f.init({ mdns: false, bandwidth: 200 * 1024 * 1024 })
    makeSampleTree(join(root, 'a-src'), 'alpha')
    makeSampleTree(join(root, 'b-src'), 'beta')
    const a = await f.addAgent('a', join(root, 'a-src'), { mdns: false })
    const b = await f.addAgent('b', join(root, 'b-src'), { mdns: false })
    await f.startManager()
    for (const agent of [a, b]) {
      await f.startAgent(agent)
      await addPeer(f, agent)
    }
    return { f, a, b }
  }

  async function addPeer (f: TestFleet, agent: AgentHandle): Promise<void> {
    const status = await cliJson<AgentStatus>(['status', '--socket', agent.socket])
    const addr = status.listen.find(x => x.startsWith('/ip4/127.0.0.1/'))
    assert.ok(addr !== undefined, JSON.stringify(status.listen))
    await cliJson(['peers', 'add', addr, '--socket', f.managerSocket])
  }

  const status = async (agent: AgentHandle): Promise<AgentStatus> => await cliJson<AgentStatus>(['status', '--socket', agent.socket])
  const peers = async (f: TestFleet): Promise<PeerListRow[]> => await cliJson<PeerListRow[]>(['peers', '--socket', f.managerSocket])
  const contact = async (f: TestFleet): Promise<RoundResult> => await cliJson<RoundResult>(['backup-now', '--socket', f.managerSocket, '--expect-peers', '2'], { timeoutMs: 120_000 })

  /** Stages until nothing is settling (settleSeconds is 5 now: a bounded wait, not a sleep). */
  async function stageAll (agent: AgentHandle): Promise<void> {
    await until(`${agent.name} staged everything`, 60_000, async () => {
      const r = await cliJson<ScanReply>(['scan-now', '--socket', agent.socket])
      return r.settling === 0 ? true : undefined
    })
  }

  async function restoreAndCompare (f: TestFleet, agent: AgentHandle, folder: string, src: string): Promise<void> {
    const target = join(root, `restored-${agent.name}-${Math.random().toString(36).slice(2, 8)}`)
    await cliJson(['restore', '--socket', f.managerSocket, '--endpoint', agent.peerId, '--target', target], { timeoutMs: 120_000 })
    assert.deepEqual(compareTrees(src, join(target, folder)), [], `${agent.name}: ${folder} restores bit-exact`)
  }

  it('a fleet-wide change and an added folder reach both agents on their next contact, are backed up, audited, and kept across a restart', async () => {
    const { f, a, b } = await twoAgents()
    const shared = join(root, 'shared')
    makeSampleTree(shared, 'shared')
    const agentJson = readFileSync(a.config)
    const set1 = await runCli(['config', 'set', 'all', 'settleSeconds', '5', '--socket', f.managerSocket])
    assert.equal(set1.code, 0, set1.stderr)
    const set2 = await cliJson<{ version: number }>(['config', 'set', 'all', 'folders', JSON.stringify([shared]), '--socket', f.managerSocket])
    assert.equal(set2.version, 2)
    const round = await contact(f)
    assert.ok(round.peers.every(p => p.ok), JSON.stringify(round))
    for (const agent of [a, b]) {
      const s = await status(agent)
      assert.equal(s.config.version, 2, `${agent.name} applied version 2`)
      assert.equal(s.config.settleSeconds, 5)
      assert.deepEqual(s.folders.map(x => x.path).sort(), [agent.folder, shared].sort(), `${agent.name} protects its own folder and the new one`)
    }
    const rows = await peers(f)
    for (const agent of [a, b]) {
      const row = rows.find(r => r.peerId === agent.peerId)
      assert.equal(row?.configVersion, 2, JSON.stringify(row))
      assert.equal(row?.configWanted, 2)
      assert.equal(row?.configError, undefined)
    }
    // a file in the new folder is backed up and restores bit-exact, beside the agent's own
    writeFileSync(join(shared, 'added-later.bin'), Buffer.alloc(300_000, 7))
    for (const agent of [a, b]) await stageAll(agent)
    const pulled = await contact(f)
    assert.ok(pulled.peers.every(p => p.ok), JSON.stringify(pulled))
    for (const agent of [a, b]) {
      await restoreAndCompare(f, agent, 'shared', shared)
      await restoreAndCompare(f, agent, `${agent.name}-src`, agent.folder)
    }
    const audit = await cliJson<AuditEntry[]>(['audit', '--socket', f.managerSocket])
    const changes = audit.filter(e => e.command === 'config-change' && e.outcome === 'ok')
    assert.deepEqual(changes.map(e => e.target), ['all settleSeconds', 'all folders'], JSON.stringify(audit))
    assert.match(changes[0].detail ?? '', /\(unset\) → 5 \(version 1\)/)
    const show = await cliJson<ConfigShowReply>(['config', 'show', 'all', '--socket', f.managerSocket])
    assert.deepEqual(show.history.map(c => c.version), [1, 2])
    // a restarted agent keeps what it applied; its agent.json was never rewritten
    await f.stop('agent-a')
    await f.startAgent(a)
    const after = await status(a)
    assert.equal(after.config.version, 2)
    assert.equal(after.config.settleSeconds, 5)
    assert.deepEqual(after.folders.map(x => x.path).sort(), [a.folder, shared].sort())
    assert.deepEqual(readFileSync(a.config), agentJson, 'agent.json is the endpoint\'s and unchanged')
  })

  it('a config an agent cannot apply is refused, shown in the peer list, and the agent keeps protecting what it did; a local-only key is refused by config set', async () => {
    const { f, a, b } = await twoAgents()
    const local = await runCli(['config', 'set', 'all', 'restoreDir', join(root, 'elsewhere'), '--socket', f.managerSocket])
    assert.equal(local.code, 2, local.stderr)
    assert.match(local.stderr, /CONFIG_UNKNOWN_KEY.*endpoint's own/)
    const unknown = await runCli(['config', 'set', 'all', 'settleSecs', '5', '--socket', f.managerSocket])
    assert.equal(unknown.code, 2, unknown.stderr)
    const wrongType = await runCli(['config', 'set', 'all', 'settleSeconds', 'soon', '--socket', f.managerSocket])
    assert.equal(wrongType.code, 2, wrongType.stderr)
    assert.match(wrongType.stderr, /CONFIG_INVALID/)
    // b is given a folder it does not have (by name), then both a setting they can apply:
    // whenever b is visited, every version it is sent names the missing folder
    const missing = join(root, 'no-such-folder')
    const bad = await runCli(['config', 'set', 'b', 'folders', JSON.stringify([missing]), '--socket', f.managerSocket])
    assert.equal(bad.code, 0, bad.stderr)
    assert.equal((await runCli(['config', 'set', 'all', 'scanIntervalSeconds', '1800', '--socket', f.managerSocket])).code, 0)
    await contact(f)
    const rows = await peers(f)
    const rowA = rows.find(r => r.peerId === a.peerId)
    const rowB = rows.find(r => r.peerId === b.peerId)
    assert.equal(rowA?.configVersion, 2, JSON.stringify(rowA))
    assert.equal(rowA?.configError, undefined)
    assert.equal(rowB?.configWanted, 2, JSON.stringify(rowB))
    assert.equal(rowB?.configVersion, 0, 'b kept what it had')
    assert.match(rowB?.configError ?? '', /CONFIG_REFUSED.*no-such-folder.*does not exist/)
    const show = await cliJson<ConfigShowReply>(['config', 'show', 'b', '--socket', f.managerSocket])
    assert.match(show.agents[0]?.error ?? '', /does not exist/)
    assert.equal(show.effective?.version, 2)
    const table = await runCli(['peers', '--socket', f.managerSocket])
    assert.match(table.stdout, /config v2 refused: CONFIG_REFUSED/)
    const sb = await status(b)
    assert.equal(sb.config.version, 0)
    assert.equal(sb.config.scanIntervalSeconds, 3600, 'nothing of the refused config was applied')
    assert.deepEqual(sb.folders.map(x => x.path), [b.folder])
    assert.match(sb.config.refused?.error ?? '', /does not exist/)
    // b still backs up its own folder, a new file included
    writeFileSync(join(b.folder, 'after-refusal.txt'), 'still protected\n')
    await stageAll(b)
    const round = await contact(f)
    assert.ok(round.peers.every(p => p.ok), JSON.stringify(round))
    await restoreAndCompare(f, b, 'b-src', b.folder)
    // the folder appears: the next contact delivers the same version again, and it applies
    mkdirSync(missing)
    writeFileSync(join(missing, 'late.txt'), 'here now\n')
    await contact(f)
    const fixed = (await peers(f)).find(r => r.peerId === b.peerId)
    assert.equal(fixed?.configVersion, 2, JSON.stringify(fixed))
    assert.equal(fixed?.configError, undefined)
    assert.equal((await status(b)).config.scanIntervalSeconds, 1800)
  })
})
