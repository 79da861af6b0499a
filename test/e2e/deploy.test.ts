/**
 * Zero-touch deployment with real daemons (separate processes, loopback, real mDNS in the
 * private namespace): bare nodes that join with `--node`, a manager that gives them the agent
 * role by policy or by `holdfast deploy`, backups and a bit-exact restore from the result, a
 * node that refuses a manager it did not pin, and a rolling upgrade that stops at its first
 * failed batch and leaves the rest of the fleet as it was.
 */
import { strict as assert } from 'node:assert'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { TestFleet, cliJson, cliJsonStatus, runCli } from '../support/fleet.js'
import { compareTrees, makeSampleTree } from '../support/trees.js'
import { requirePrivateNetns } from '../support/mocha.js'
import { until } from '../support/wait.js'
import { loadOrCreateIdentity } from '../../src/node/identity.js'
import { createHoldfastNode, type HoldfastNode } from '../../src/node/libp2p-node.js'
import { offerDeploy } from '../../src/protocols/deploy.js'
import type { AgentStatus, AuditEntry, DeployStatusRow, NodeStatus, PeerListRow, RoundResult, SnapshotRow, UpgradeReport } from '../../src/admin/api.js'

interface NodeHandle { name: string, dataDir: string, config: string, socket: string, peerId: string }

describe('e2e: zero-touch deployment (bare nodes, deploy policy, rolling upgrade)', function () {
  this.timeout(300_000)
  let root = ''
  let fleet: TestFleet | undefined
  let stranger: HoldfastNode | undefined

  beforeEach(function () {
    requirePrivateNetns(this)
    root = mkdtempSync(join(tmpdir(), 'holdfast-deploy-'))
  })
  afterEach(async () => {
    await stranger?.stop()
    stranger = undefined
    await fleet?.stopAll()
    fleet = undefined
    if (root !== '') rmSync(root, { recursive: true, force: true })
  })

  /** A manager with the given deploy policy, running. */
  async function managerWith (auto: string, folder: string): Promise<TestFleet> {
    const f = new TestFleet(join(root, 'fleet'))
    fleet = f
    await f.init({ bandwidth: 200 * 1024 * 1024 })
    f.patchConfig(f.managerConfig, c => {
      const m = (c.manager ?? {}) as Record<string, unknown>
      m.deploy = { auto, settings: { folders: [{ path: folder }], settleSeconds: 0, scanIntervalSeconds: 3600 } }
      c.manager = m
    })
    await f.startManager()
    return f
  }

  /** `holdfast join <token> --node`, then `holdfast node`. */
  async function startNode (f: TestFleet, name: string): Promise<NodeHandle> {
    const dataDir = join(root, `node-${name}`)
    const out = await cliJson<{ config: string, peerId: string }>(['join', await f.createToken(), '--node', '--data-dir', dataDir, '--name', name, '--listen', '/ip4/127.0.0.1/tcp/0'])
    const config = JSON.parse(readFileSync(out.config, 'utf8')) as Record<string, unknown>
    assert.equal(config.role, 'node')
    assert.equal(config.agent, undefined, 'a node config protects no folders')
    const node = { name, dataDir, config: out.config, socket: join(dataDir, 'admin.sock'), peerId: out.peerId }
    await f.startDaemon(`node-${name}`, 'node', node.config, node.socket)
    return node
  }

  const peers = async (f: TestFleet): Promise<PeerListRow[]> => await cliJson<PeerListRow[]>(['peers', '--socket', f.managerSocket])

  async function allAgents (f: TestFleet, nodes: NodeHandle[]): Promise<void> {
    await until('every node runs the agent', 60_000, async () => {
      const rows = await peers(f)
      return nodes.every(n => rows.some(r => r.peerId === n.peerId && r.role === 'agent' && r.deploy?.state === 'agent')) ? true : undefined
    })
    // the agent answers on the node's admin socket, with the folder the manager gave it
    for (const n of nodes) {
      await until(`${n.name}'s agent answers`, 30_000, async () => {
        const r = await runCli(['status', '--socket', n.socket, '--json'])
        return r.code === 0 ? true : undefined
      })
      assert.ok(existsSync(join(n.dataDir, 'agent.json')))
    }
  }

  async function backUpAndRestore (f: TestFleet, nodes: NodeHandle[], src: string): Promise<void> {
    for (const n of nodes) await cliJson(['scan-now', '--socket', n.socket])
    const round = await cliJson<RoundResult>(['backup-now', '--socket', f.managerSocket, '--expect-peers', String(nodes.length), '--timeout', '30'])
    assert.deepEqual(round.peers.map(p => p.peerId).sort(), nodes.map(n => n.peerId).sort())
    for (const p of round.peers) assert.ok(p.ok, `pull from ${p.name} failed: ${p.error ?? ''}`)
    for (const n of nodes) {
      // the scheduler may have pulled it already (it is woken when a host becomes an agent)
      const snaps = await cliJson<SnapshotRow[]>(['snapshots', '--endpoint', n.peerId, '--socket', f.managerSocket])
      assert.ok(snaps.length > 0, `${n.name} sent no snapshot`)
      const target = join(root, `restore-${n.name}`)
      const r = await runCli(['restore', '--socket', f.managerSocket, '--endpoint', n.peerId, '--target', target])
      assert.equal(r.code, 0, r.stderr)
      assert.deepEqual(compareTrees(src, join(target, 'shared')), [])
    }
  }

  it('policy "approved": three bare nodes become agents untouched, are backed up and restore bit-exact; a rolling upgrade stops at its failed batch', async () => {
    const src = join(root, 'shared')
    makeSampleTree(src, 'deploy')
    const f = await managerWith('approved', src)
    const nodes: NodeHandle[] = []
    for (const name of ['n1', 'n2', 'n3']) nodes.push(await startNode(f, name))
    await allAgents(f, nodes)
    for (const n of nodes) {
      const status = await cliJson<AgentStatus>(['status', '--socket', n.socket])
      assert.deepEqual(status.folders.map(x => x.path), [src])
    }
    await backUpAndRestore(f, nodes, src)
    const audit = await cliJson<AuditEntry[]>(['audit', '--socket', f.managerSocket])
    assert.equal(audit.filter(e => e.command === 'deploy' && e.outcome === 'ok').length, 3, JSON.stringify(audit))

    // Rolling upgrade with a package the agents cannot take (its signature is not the
    // manager's): batch 1 fails, batch 2 is never offered, and every host keeps its version.
    const tarball = Buffer.from('not really a package')
    mkdirSync(join(f.managerDir, 'packages'), { recursive: true })
    writeFileSync(join(f.managerDir, 'packages', 'x.tgz'), tarball)
    writeFileSync(join(f.managerDir, 'packages', '9.9.9.json'), JSON.stringify({
      tarball: 'x.tgz',
      signed: { manifest: { format: 1, name: 'holdfast', version: '9.9.9', sha256: createHash('sha256').update(tarball).digest('hex'), size: tarball.byteLength, builtAt: new Date().toISOString() }, signer: f.managerPeerId, signature: Buffer.alloc(64, 7).toString('base64') }
    }))
    const up = await cliJsonStatus<UpgradeReport>(['deploy', '--version', '9.9.9', '--batch', '2', '--socket', f.managerSocket])
    assert.equal(up.code, 1, up.stderr)
    assert.equal(up.json.ok, false)
    assert.equal(up.json.batches.length, 1, 'it stops after the first batch')
    assert.equal(up.json.batches[0].length, 2)
    for (const o of up.json.batches[0]) {
      assert.equal(o.ok, false)
      assert.ok((o.message ?? '').length > 0, 'says why')
    }
    assert.equal(up.json.notAttempted.length, 1)
    const failed = new Set(up.json.batches[0].map(o => o.peerId))
    assert.ok(!failed.has(up.json.notAttempted[0].peerId))
    const status = await cliJson<DeployStatusRow[]>(['deploy', 'status', '--socket', f.managerSocket])
    assert.equal(status.length, 3)
    for (const row of status) {
      assert.equal(row.role, 'agent')
      assert.equal(row.version, '0.1.0')
      assert.equal(row.state, failed.has(row.peerId) ? 'failed' : 'agent', JSON.stringify(row))
    }
    // backups go on on every host, the ones whose upgrade failed too
    const round = await cliJson<RoundResult>(['backup-now', '--socket', f.managerSocket, '--expect-peers', '3', '--timeout', '30'])
    for (const p of round.peers) assert.ok(p.ok, `pull from ${p.name} failed after the upgrade: ${p.error ?? ''}`)
  })

  it('policy "none": a node stays bare until `holdfast deploy <node>`, which is audited', async () => {
    const src = join(root, 'shared')
    makeSampleTree(src, 'manual')
    const f = await managerWith('none', src)
    const node = await startNode(f, 'lonely')
    const row = await until('the manager lists the bare node', 30_000, async () => (await peers(f)).find(r => r.peerId === node.peerId))
    assert.equal(row.role, 'node')
    assert.equal(row.deploy?.state, 'bare')
    // several mDNS announcements later it is still bare: the policy gives nothing
    await new Promise(resolve => setTimeout(resolve, 3000))
    assert.equal((await cliJson<NodeStatus>(['status', '--role', 'node', '--socket', node.socket])).state, 'bare')
    assert.ok(!existsSync(join(node.dataDir, 'agent.json')))

    const r = await cliJsonStatus<{ ok: boolean, version?: string }>(['deploy', 'lonely', '--socket', f.managerSocket])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.json.ok, true)
    assert.equal(r.json.version, '0.1.0')
    await allAgents(f, [node])
    await backUpAndRestore(f, [node], src)
    const audit = await cliJson<AuditEntry[]>(['audit', '--socket', f.managerSocket])
    assert.ok(audit.some(e => e.command === 'deploy' && e.target === 'lonely' && e.outcome === 'ok'), JSON.stringify(audit))
    const help = await runCli(['deploy', '--help'])
    assert.equal(help.code, 0)
    assert.match(help.stdout, /--version/)
  })

  it('a node refuses an offer from a manager it did not pin, and stays bare', async () => {
    const src = join(root, 'shared')
    makeSampleTree(src, 'stranger')
    const f = await managerWith('none', src)
    const node = await startNode(f, 'careful')
    const status = await cliJson<NodeStatus>(['status', '--role', 'node', '--socket', node.socket])
    const addr = status.listen.find(a => a.startsWith('/ip4/127.0.0.1/'))
    assert.ok(addr !== undefined)
    // a host with the fleet key (it passes Noise) and a manager's tools, but another identity
    const fleetKey = (JSON.parse(readFileSync(f.managerConfig, 'utf8')) as { fleetKey: string }).fleetKey
    const identity = await loadOrCreateIdentity(join(root, 'stranger'))
    stranger = await createHoldfastNode({ privateKey: identity.privateKey, fleetKey, listen: ['/ip4/127.0.0.1/tcp/0'] })
    await assert.rejects(offerDeploy(stranger, [multiaddr(addr)], { role: 'agent', settings: { folders: [{ path: src }] } }, undefined, { signal: AbortSignal.timeout(20_000) }))
    const after = await cliJson<NodeStatus>(['status', '--role', 'node', '--socket', node.socket])
    assert.equal(after.state, 'bare')
    assert.ok(!existsSync(join(node.dataDir, 'agent.json')), 'nothing was written')
    // the pinned manager is still heard: the node was not broken by the attempt
    const r = await cliJsonStatus<{ ok: boolean }>(['deploy', node.peerId, '--socket', f.managerSocket])
    assert.equal(r.code, 0, r.stderr)
  })
})
