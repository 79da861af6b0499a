/**
 * Membership with real daemons (separate processes, loopback, no mDNS: peers are added by
 * address so each case is deterministic): join tokens and the enrolment exchange, a key
 * holder that was never approved, a revoked host, and a host claiming the manager's role with
 * another identity. None gets another endpoint's data or makes the manager store anything.
 */
import { strict as assert } from 'node:assert'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { multiaddr } from '@multiformats/multiaddr'
import { TestFleet, cliJson, cliJsonStatus, runCli, type AgentHandle } from '../support/fleet.js'
import { compareTrees, makeSampleTree } from '../support/trees.js'
import { until } from '../support/wait.js'
import { decodeJoinToken, encodeJoinToken, newEnrolSecret } from '../../src/node/fleet.js'
import { loadOrCreateIdentity } from '../../src/node/identity.js'
import { createHoldfastNode, type HoldfastNode } from '../../src/node/libp2p-node.js'
import type { Connection } from '@libp2p/interface'
import type { AgentStatus, AuditEntry, PeerListRow, RoundResult, SnapshotRow } from '../../src/admin/api.js'

describe('e2e: membership (tokens, approval, revocation, pinned manager)', function () {
  this.timeout(300_000)
  let root = ''
  const fleets: TestFleet[] = []

  beforeEach(() => { root = mkdtempSync(join(tmpdir(), 'holdfast-membership-')) })
  afterEach(async () => {
    await Promise.all(fleets.splice(0).map(async f => { await f.stopAll() }))
    if (root !== '') rmSync(root, { recursive: true, force: true })
  })

  async function runningFleet (name = 'fleet'): Promise<TestFleet> {
    const fleet = new TestFleet(join(root, name))
    fleets.push(fleet)
    await fleet.init({ mdns: false, bandwidth: 200 * 1024 * 1024 })
    await fleet.startManager()
    return fleet
  }

  /** The agent's loopback multiaddr, for `peers add` (no mDNS in these tests). */
  async function addressOf (agent: AgentHandle): Promise<string> {
    const status = await cliJson<AgentStatus>(['status', '--socket', agent.socket])
    const addr = status.listen.find(a => a.startsWith('/ip4/127.0.0.1/'))
    assert.ok(addr !== undefined, JSON.stringify(status.listen))
    return addr
  }

  async function startStaged (fleet: TestFleet, agent: AgentHandle): Promise<string> {
    await fleet.startAgent(agent)
    await cliJson(['scan-now', '--socket', agent.socket])
    const addr = await addressOf(agent)
    await cliJson(['peers', 'add', addr, '--socket', fleet.managerSocket])
    return addr
  }

  /**
   * A dial the manager's gater refuses: the manager drops it once Noise proved the id. The
   * dialer may see it open first (its muxer choice is optimistic), so: rejected, or closed
   * within a bound, and never usable.
   */
  async function refused (host: HoldfastNode, addr: string): Promise<void> {
    let connection: Connection
    try {
      connection = await host.dial(multiaddr(addr), { signal: AbortSignal.timeout(10_000) })
    } catch {
      return
    }
    await until('the refused connection closed', 20_000, async () => connection.status === 'open' ? undefined : true)
  }

  const peers = async (fleet: TestFleet): Promise<PeerListRow[]> => await cliJson<PeerListRow[]>(['peers', '--socket', fleet.managerSocket])

  it('a valid token joins (the config pins the manager) and backs up; the join is audited', async () => {
    const fleet = await runningFleet()
    const src = join(root, 'src')
    makeSampleTree(src, 'joiner')
    const agent = await fleet.addAgent('joiner', src, { mdns: false })
    const config = JSON.parse(readFileSync(agent.config, 'utf8')) as { fleetKey: string, managers: string[] }
    const managerConfig = JSON.parse(readFileSync(fleet.managerConfig, 'utf8')) as { fleetKey: string }
    assert.equal(config.fleetKey, managerConfig.fleetKey, 'the manager handed over the fleet key')
    assert.deepEqual(config.managers, [fleet.managerPeerId], 'the manager is pinned')
    await startStaged(fleet, agent)
    const round = await cliJson<RoundResult>(['backup-now', '--socket', fleet.managerSocket], { timeoutMs: 120_000 })
    assert.equal(round.peers.length, 1)
    assert.equal(round.peers[0].ok, true, JSON.stringify(round))
    const target = join(root, 'restored')
    await cliJson(['restore', '--socket', fleet.managerSocket, '--endpoint', agent.peerId, '--target', target], { timeoutMs: 120_000 })
    assert.deepEqual(compareTrees(src, join(target, 'src')), [])
    const row = (await peers(fleet)).find(p => p.peerId === agent.peerId)
    assert.equal(row?.membership, 'approved')
    const audit = await cliJson<AuditEntry[]>(['audit', '--socket', fleet.managerSocket])
    assert.ok(audit.some(e => e.command === 'join' && e.outcome === 'ok' && e.target.startsWith(agent.peerId)), JSON.stringify(audit))
    assert.ok(audit.some(e => e.command === 'token-create'), 'token create is audited')
  })

  it('an expired, a used-up and a forged token are refused and the joiner learns nothing', async () => {
    const fleet = await runningFleet()
    const fleetKey = (JSON.parse(readFileSync(fleet.managerConfig, 'utf8')) as { fleetKey: string }).fleetKey
    const folder = join(root, 'f')
    mkdirSync(folder)
    const join_ = async (token: string, dir: string): Promise<{ code: number, out: string }> => {
      const r = await runCli(['join', token, '--data-dir', join(root, dir), '--folder', folder, '--no-mdns', '--listen', '/ip4/127.0.0.1/tcp/0'])
      return { code: r.code, out: r.stdout + r.stderr }
    }
    const once = await fleet.createToken({ uses: 1 })
    assert.equal((await join_(once, 'first')).code, 0, 'the first use enrols')
    const expired = await fleet.createToken({ expires: '1s' })
    const good = decodeJoinToken(await fleet.createToken())
    const forged = encodeJoinToken({ ...good, secret: newEnrolSecret() })
    await delay(1500)
    for (const [what, token] of [['used up', once], ['expired', expired], ['forged', forged]] as const) {
      const r = await join_(token, `refused-${what}`)
      assert.notEqual(r.code, 0, `${what}: ${r.out}`)
      assert.match(r.out, /ENROL_REFUSED/, what)
      assert.ok(!r.out.includes(fleetKey), `${what}: the fleet key never reaches a refused joiner`)
      assert.equal(existsSync(join(root, `refused-${what}`, 'agent.json')), false, `${what}: no config written`)
    }
    const tokens = await cliJson<Array<{ state: string }>>(['token', 'list', '--socket', fleet.managerSocket])
    assert.deepEqual(tokens.map(t => t.state).sort(), ['expired', 'live', 'used up'])
    const audit = await cliJson<AuditEntry[]>(['audit', '--socket', fleet.managerSocket])
    assert.equal(audit.filter(e => e.command === 'join' && e.outcome === 'failed').length, 3, JSON.stringify(audit))
  })

  it('a key holder that was never approved (config copied) is listed pending and not pulled until approved', async () => {
    const fleet = await runningFleet()
    const srcA = join(root, 'src-a')
    const srcB = join(root, 'src-b')
    makeSampleTree(srcA, 'member')
    makeSampleTree(srcB, 'stowaway')
    const member = await fleet.addAgent('member', srcA, { mdns: false })
    // a copy of a member's config on another host: the fleet key and the pinned manager, but
    // its own identity, which the manager never approved
    const dataDir = join(root, 'agent-stowaway')
    mkdirSync(dataDir, { recursive: true, mode: 0o700 })
    const copied = JSON.parse(readFileSync(member.config, 'utf8')) as Record<string, unknown>
    writeFileSync(join(dataDir, 'agent.json'), JSON.stringify({ ...copied, dataDir, name: 'stowaway', agent: { ...(copied.agent as object), folders: [srcB] } }), { mode: 0o600 })
    const stowaway: AgentHandle = { name: 'stowaway', dataDir, config: join(dataDir, 'agent.json'), socket: join(dataDir, 'admin.sock'), folder: srcB, peerId: (await loadOrCreateIdentity(dataDir)).peerId }
    await startStaged(fleet, member)
    await startStaged(fleet, stowaway)
    const round = await cliJson<RoundResult>(['backup-now', '--socket', fleet.managerSocket], { timeoutMs: 120_000 })
    assert.deepEqual(round.peers.map(p => p.peerId), [member.peerId], 'only the member is pulled')
    const listed = await until('the stowaway listed', 30_000, async () => (await peers(fleet)).find(p => p.peerId === stowaway.peerId))
    assert.equal(listed.membership, 'pending')
    assert.equal(listed.health?.state, 'pending')
    assert.match(listed.health?.why ?? '', /not approved/)
    const snaps = await cliJson<SnapshotRow[]>(['snapshots', '--socket', fleet.managerSocket])
    assert.ok(snaps.every(s => s.peerId === member.peerId), 'nothing of the stowaway is stored')
    assert.equal((await cliJson<AgentStatus>(['status', '--socket', stowaway.socket])).sealedSets, 1, 'its set was never pulled')
    // approve makes it a member
    await cliJson(['peers', 'approve', stowaway.peerId, '--socket', fleet.managerSocket])
    const after = await cliJson<RoundResult>(['backup-now', '--socket', fleet.managerSocket], { timeoutMs: 120_000 })
    assert.ok(after.peers.some(p => p.peerId === stowaway.peerId && p.ok), JSON.stringify(after))
    // approval lets the scheduler pull it on its own too, possibly before backup-now: count the store
    const stowed = (await cliJson<SnapshotRow[]>(['snapshots', '--socket', fleet.managerSocket])).filter(s => s.peerId === stowaway.peerId)
    assert.equal(stowed.length, 1, 'the approved host is backed up once')
    const audit = await cliJson<AuditEntry[]>(['audit', '--socket', fleet.managerSocket])
    assert.ok(audit.some(e => e.command === 'approve' && e.target === stowaway.peerId))
  })

  it('a revoked host: its connection is closed, its re-dial refused (also after a restart), its data still restorable', async () => {
    const fleet = await runningFleet()
    const src = join(root, 'src')
    makeSampleTree(src, 'leaver')
    const agent = await fleet.addAgent('leaver', src, { mdns: false })
    await startStaged(fleet, agent)
    const round = await cliJson<RoundResult>(['backup-now', '--socket', fleet.managerSocket], { timeoutMs: 120_000 })
    assert.equal(round.peers[0]?.ok, true, JSON.stringify(round))
    await fleet.stop(`agent-${agent.name}`)
    // the host itself, as a stolen laptop would dial in: its identity and the fleet key
    const fleetKey = (JSON.parse(readFileSync(fleet.managerConfig, 'utf8')) as { fleetKey: string }).fleetKey
    const { privateKey } = await loadOrCreateIdentity(agent.dataDir)
    const managerAddr = (await cliJson<{ listen: string[] }>(['status', '--role', 'manager', '--socket', fleet.managerSocket])).listen.find(a => a.startsWith('/ip4/127.0.0.1/'))
    assert.ok(managerAddr !== undefined)
    const host = await createHoldfastNode({ privateKey, fleetKey, listen: [] })
    try {
      const connection = await host.dial(multiaddr(managerAddr), { signal: AbortSignal.timeout(10_000) })
      assert.equal(connection.status, 'open', 'a member connects')
      const closed = new Promise<void>(resolve => { host.addEventListener('connection:close', () => { resolve() }, { once: true }) })
      await cliJson(['peers', 'revoke', agent.peerId, '--socket', fleet.managerSocket])
      await Promise.race([closed, delay(20_000).then(() => { throw new Error('the revoked host\'s connection was not closed within 20 s') })])
      await refused(host, managerAddr)
      // for good: a fresh token does not bring it back, and a restart keeps it out
      const token = decodeJoinToken(await fleet.createToken())
      const rejoin = await runCli(['join', encodeJoinToken(token), '--data-dir', agent.dataDir, '--folder', src, '--force', '--no-mdns'])
      assert.notEqual(rejoin.code, 0, rejoin.stdout)
      await fleet.stop('manager')
      await fleet.startManager()
      const again = (await cliJson<{ listen: string[] }>(['status', '--role', 'manager', '--socket', fleet.managerSocket])).listen.find(a => a.startsWith('/ip4/127.0.0.1/')) as string
      await refused(host, again)
    } finally {
      await host.stop()
    }
    const row = (await peers(fleet)).find(p => p.peerId === agent.peerId)
    assert.equal(row?.membership ?? 'revoked', 'revoked')
    const target = join(root, 'restored')
    await cliJson(['restore', '--socket', fleet.managerSocket, '--endpoint', agent.peerId, '--target', target], { timeoutMs: 120_000 })
    assert.deepEqual(compareTrees(src, join(target, 'src')), [], 'its backups are kept')
    const audit = await cliJson<AuditEntry[]>(['audit', '--socket', fleet.managerSocket])
    assert.ok(audit.some(e => e.command === 'revoke' && e.target === agent.peerId))
  })

  it('a host claiming the manager role with another identity (it holds the fleet key) gets nothing from an agent', async () => {
    const fleet = await runningFleet()
    const src = join(root, 'src')
    makeSampleTree(src, 'victim')
    const agent = await fleet.addAgent('victim', src, { mdns: false })
    await fleet.startAgent(agent)
    await cliJson(['scan-now', '--socket', agent.socket])
    const addr = await addressOf(agent)
    // the impostor: a manager of its own, given our fleet key, that approves and dials the agent
    const impostor = new TestFleet(join(root, 'impostor'))
    fleets.push(impostor)
    await impostor.init({ mdns: false, staticPeers: [addr] })
    const fleetKey = (JSON.parse(readFileSync(fleet.managerConfig, 'utf8')) as { fleetKey: string }).fleetKey
    impostor.patchConfig(impostor.managerConfig, c => { c.fleetKey = fleetKey })
    await impostor.startManager()
    await cliJson(['peers', 'approve', agent.peerId, '--socket', impostor.managerSocket])
    const { json: r } = await cliJsonStatus<RoundResult>(['backup-now', '--socket', impostor.managerSocket], { timeoutMs: 120_000 })
    assert.equal(r.peers.length, 1)
    assert.equal(r.peers[0].ok, false)
    assert.match(r.peers[0].error ?? '', /PEER_NOT_ALLOWED/, 'the handshake succeeds (same key); the agent refuses the id')
    assert.equal((await cliJson<SnapshotRow[]>(['snapshots', '--socket', impostor.managerSocket])).length, 0)
    assert.equal((await cliJson<AgentStatus>(['status', '--socket', agent.socket])).sealedSets, 1, 'the set waits for its own manager')
    // an agent that pins no manager would serve the impostor: it does not start
    await fleet.stop(`agent-${agent.name}`)
    fleet.patchConfig(agent.config, c => { c.managers = [] })
    await assert.rejects(fleet.startAgent(agent), /exited during start[\s\S]*CONFIG_INVALID[\s\S]*managers/)
  })
})
