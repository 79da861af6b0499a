/**
 * Zero-touch deployment on the LAN test bed: a manager and three bare nodes, each a separate
 * process in its own network namespace on the bridge, found over real mDNS across it. Every
 * node also runs in its own mount namespace, where the one protected path the manager's
 * policy names (the same on every host, as on a real fleet) is that host's own folder: so a
 * restore that mixed hosts up could not pass.
 *
 * The nodes join with `holdfast join <token> --node` (from inside their namespace: the token's
 * enrolment address is the manager's 198.18.0.x) and start as `holdfast node` while the
 * manager is down, so they are seen bare; from then on the test only starts the manager, whose
 * policy (`manager.deploy.auto: 'approved'`) gives each the agent role. Then backups restore
 * bit-exact per host, and central configuration reaches all three agents (`holdfast config
 * set all`) while a config naming a folder a host lacks is refused and shown in the peer list.
 * The nodes run under the upgrade supervisor (`--install-root`, as the systemd unit runs
 * them): a rolling upgrade, one host a batch, to a package whose program exits at once is
 * rolled back on its first host, the run stops there, and all three are still backed up.
 */
import { strict as assert } from 'node:assert'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { HOLDFAST_BIN, cliJson, cliJsonStatus, runCli } from '../support/fleet.js'
import { compareTrees, makeSampleTree } from '../support/trees.js'
import { LanBed, requireLan, sh, type LanHost } from '../support/lan.js'
import { startLanFleet, type LanFleet } from '../support/lan-fleet.js'
import { until } from '../support/wait.js'
import { bootstrapCurrent } from '../../src/deploy/bootstrap.js'
import { buildPackage } from '../../src/deploy/package.js'
import { loadOrCreateIdentity } from '../../src/node/identity.js'
import { BUILT_VERSION } from '../../src/version.js'
import type { AgentStatus, AuditEntry, DeployStatusRow, NodeStatus, PeerListRow, RoundResult, SnapshotRow, UpgradeReport } from '../../src/admin/api.js'

const NODES = ['n1', 'n2', 'n3']
const BAD = '0.3.0-bad'
const REPO = fileURLToPath(new URL('../../../', import.meta.url))

interface LanNode {
  name: string
  host: LanHost
  dataDir: string
  config: string
  socket: string
  peerId: string
  /** What this host has at the protected path (its own folder, bind-mounted there). */
  source: string
  /** Run under the upgrade supervisor from here, as the systemd unit runs it. */
  installRoot: string
}

describe('LAN: a manager deploys the agent to three bare nodes, and configures them centrally', function () {
  this.timeout(150_000)
  let root: string
  let bed: LanBed | undefined
  let lan: LanFleet
  /** The protected path: empty outside the nodes, each node's own folder inside it. */
  let protectedPath: string
  /** An install root bootstrapped once from this checkout; each node's starts as a hard-linked copy of its version. */
  let templateRoot: string
  const nodes: LanNode[] = []

  before(async function () {
    requireLan(this)
    root = mkdtempSync(join(tmpdir(), 'holdfast-lan-deploy-'))
    protectedPath = join(root, 'protected')
    mkdirSync(protectedPath)
    // The supervisor's first start copies this checkout (~50 MB) into its install root; three
    // such copies at once on a loaded machine cost ~20 s. One is made here, and each node gets
    // a hard-linked copy of its version directory with no `current` link: the node's first
    // start still makes it current and records it healthy (bootstrap.ts).
    templateRoot = join(root, 'opt-template')
    assert.equal(await bootstrapCurrent(templateRoot, REPO, BUILT_VERSION), BUILT_VERSION)
    bed = LanBed.create()
    lan = await startLanFleet(bed, root, {
      agents: 0,
      fill: () => {},
      bandwidth: 200 * 1024 * 1024,
      managerConfig: c => {
        c.manager = { ...(c.manager as Record<string, unknown>), deploy: { auto: 'approved', settings: { folders: [{ path: protectedPath }], settleSeconds: 0, scanIntervalSeconds: 3600 } } }
      }
    })
  })

  after(async function () {
    await lan?.fleet.stopAll()
    await bed?.destroy()
    if (root !== undefined) rmSync(root, { recursive: true, force: true })
  })

  afterEach(function () {
    if (this.currentTest?.state === 'failed' && lan !== undefined) {
      process.stderr.write(`--- manager log ---\n${lan.fleet.log('manager')}\n`)
      for (const n of nodes) process.stderr.write(`--- ${n.name} log ---\n${lan.fleet.log(`node-${n.name}`)}\n`)
    }
  })

  const peers = async (): Promise<PeerListRow[]> => await cliJson<PeerListRow[]>(['peers', '--socket', lan.fleet.managerSocket])
  const agentStatus = async (n: LanNode): Promise<AgentStatus> => await cliJson<AgentStatus>(['status', '--socket', n.socket])
  const contact = async (): Promise<RoundResult> => await cliJson<RoundResult>(['backup-now', '--socket', lan.fleet.managerSocket, '--expect-peers', String(NODES.length), '--timeout', '30'], { timeoutMs: 90_000 })

  /**
   * Runs a node in its namespace and in a mount namespace of its own, where its folder is
   * bind-mounted over the protected path (private propagation: the machine never sees it).
   */
  async function startNode (n: LanNode): Promise<void> {
    mkdirSync(join(n.installRoot, 'versions'), { recursive: true })
    sh(['cp', '-al', join(templateRoot, 'versions', BUILT_VERSION), join(n.installRoot, 'versions', BUILT_VERSION)])
    const mountOwn = ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', 'mount --bind "$1" "$2" && shift 2 && exec "$@"', 'sh', n.source, protectedPath]
    await lan.fleet.startDaemon(`node-${n.name}`, 'node', n.config, n.socket, { prefix: [...(bed as LanBed).wrap(n.host, []), ...mountOwn], args: ['--install-root', n.installRoot] })
  }

  it('three bare nodes become agents with no step on them, are backed up, and each restores bit-exact', async function () {
    const b = bed as LanBed
    // the three hosts join at once, as a person enrolling machines in a row would not wait
    const joined = await Promise.all(NODES.map(async (name, i): Promise<LanNode> => {
      const host = b.addHost(name)
      const dataDir = join(root, `node-${name}`)
      const source = join(root, `data-${name}`)
      makeSampleTree(source, `lan-deploy-${i}`, { bigFileBytes: 1024 * 1024 + i })
      const token = await lan.fleet.createToken()
      // join runs on the node's host: the manager's enrolment listener is at its 198.18.0.x
      const r = await b.run(host, [process.execPath, HOLDFAST_BIN, 'join', token, '--node', '--data-dir', dataDir, '--name', name, '--listen', '/ip4/0.0.0.0/tcp/0', '--json'])
      assert.equal(r.code, 0, r.stderr)
      const out = JSON.parse(r.stdout) as { config: string, peerId: string }
      const config = JSON.parse(readFileSync(out.config, 'utf8')) as Record<string, unknown>
      assert.equal(config.role, 'node')
      assert.equal(config.agent, undefined, 'a node config protects no folders')
      return { name, host, dataDir, config: out.config, socket: join(dataDir, 'admin.sock'), peerId: out.peerId, source, installRoot: join(root, `opt-${name}`) }
    }))
    nodes.push(...joined)
    assert.deepEqual(await cliJson<SnapshotRow[]>(['snapshots', '--socket', lan.fleet.managerSocket]), [], 'nothing of theirs is in the store yet')

    // the nodes start while the manager is down, so nothing can deploy them: they are bare
    await lan.fleet.stop('manager')
    await Promise.all(nodes.map(startNode))
    for (const n of nodes) {
      const s = await cliJson<NodeStatus>(['status', '--role', 'node', '--socket', n.socket])
      assert.equal(s.state, 'bare', `${n.name}: ${JSON.stringify(s)}`)
      assert.ok(!existsSync(join(n.dataDir, 'agent.json')), `${n.name} has no agent config`)
      assert.equal(s.role, 'node')
    }

    // from here on only the manager acts
    await lan.fleet.startManager({ prefix: b.wrap(lan.manager, []) })
    const rows = await until('every node runs the agent', 60_000, async () => {
      const r = await peers()
      return nodes.every(n => r.some(p => p.peerId === n.peerId && p.role === 'agent' && p.deploy?.state === 'agent')) ? r : undefined
    })
    for (const n of nodes) {
      const row = rows.find(p => p.peerId === n.peerId)
      assert.equal(row?.source, 'mdns', `${n.name} was found over mDNS`)
      for (const addr of row?.addresses ?? []) assert.ok(addr.startsWith(`/ip4/${n.host.ip}/tcp/`), `${n.name} listed at ${addr}`)
      await until(`${n.name}'s agent answers`, 30_000, async () => (await runCli(['status', '--socket', n.socket, '--json'])).code === 0 ? true : undefined)
      const s = await agentStatus(n)
      assert.deepEqual(s.folders.map(f => f.path), [protectedPath], `${n.name} protects what the policy names`)
      assert.ok(existsSync(join(n.dataDir, 'agent.json')))
    }
    const audit = await cliJson<AuditEntry[]>(['audit', '--socket', lan.fleet.managerSocket])
    assert.deepEqual(audit.filter(e => e.command === 'deploy' && e.outcome === 'ok').map(e => e.target).sort(), nodes.map(n => `${n.peerId} (${n.name})`).sort(), JSON.stringify(audit))

    for (const n of nodes) await cliJson(['scan-now', '--socket', n.socket])
    const round = await contact()
    assert.deepEqual(round.peers.map(p => p.peerId).sort(), nodes.map(n => n.peerId).sort())
    for (const p of round.peers) assert.ok(p.ok, `pull from ${p.name} failed: ${p.error ?? ''}`)
    // the three restores at once: each is its own CLI process and the store serves reads in parallel
    await Promise.all(nodes.map(async n => {
      // the scheduler may have pulled it already (it is woken when a host becomes an agent)
      const snaps = await cliJson<SnapshotRow[]>(['snapshots', '--endpoint', n.peerId, '--socket', lan.fleet.managerSocket])
      assert.ok(snaps.length > 0, `${n.name} sent no snapshot`)
      const target = join(root, `restore-${n.name}`)
      const r = await runCli(['restore', '--socket', lan.fleet.managerSocket, '--endpoint', n.peerId, '--target', target])
      assert.equal(r.code, 0, r.stderr)
      // each host's own files: the same path held a different tree on each
      assert.deepEqual(compareTrees(n.source, join(target, 'protected')), [], `${n.name} restores bit-exact`)
    }))
  })

  it('`holdfast config set all` reaches all three agents; a folder one host lacks is refused and shown in the peer list', async function () {
    assert.equal(nodes.length, NODES.length, 'the deploy test ran')
    for (const n of nodes) assert.equal((await agentStatus(n)).config.settleSeconds, 0, `${n.name} settles as deployed`)
    const set = await cliJson<{ version: number }>(['config', 'set', 'all', 'settleSeconds', '3', '--socket', lan.fleet.managerSocket])
    assert.equal(set.version, 1)
    const round = await contact()
    assert.ok(round.peers.every(p => p.ok), JSON.stringify(round))
    for (const n of nodes) {
      const s = await agentStatus(n)
      assert.equal(s.config.version, 1, `${n.name} applied version 1`)
      assert.equal(s.config.settleSeconds, 3, `${n.name} settles 3 s`)
    }

    // n2 is sent a folder it does not have; n1 and n3 are untouched by it
    const [n1, n2, n3] = nodes
    const missing = join(root, 'no-such-folder')
    const bad = await runCli(['config', 'set', n2.name, 'folders', JSON.stringify([missing]), '--socket', lan.fleet.managerSocket, '--json'])
    assert.equal(bad.code, 0, bad.stderr)
    await contact()
    const rows = await peers()
    const row2 = rows.find(p => p.peerId === n2.peerId)
    assert.equal(row2?.configWanted, 2, JSON.stringify(row2))
    assert.equal(row2?.configVersion, 1, 'n2 kept what it had')
    assert.match(row2?.configError ?? '', /CONFIG_REFUSED.*no-such-folder.*does not exist/, JSON.stringify(row2))
    for (const n of [n1, n3]) {
      const row = rows.find(p => p.peerId === n.peerId)
      assert.equal(row?.configVersion, 1, JSON.stringify(row))
      assert.equal(row?.configError, undefined)
    }
    const s2 = await agentStatus(n2)
    assert.equal(s2.config.version, 1)
    assert.deepEqual(s2.folders.map(f => f.path), [protectedPath], 'nothing of the refused config was applied')
    assert.match(s2.config.refused?.error ?? '', /does not exist/)
  })

  it('a rolling upgrade (batch 1) to a package that exits at once is rolled back on its first host and stops there; all three are still backed up', async function () {
    assert.equal(nodes.length, NODES.length, 'the deploy test ran')
    const current = (n: LanNode): string => readlinkSync(join(n.installRoot, 'current'))
    // the first start under the supervisor made the code it ran from the current version
    for (const n of nodes) assert.equal(current(n), `versions/${BUILT_VERSION}`)
    // a release whose program exits at once, before it could report healthy; signed by any
    // key (`deploy package add` signs it again with the manager's)
    const pkgDir = join(root, 'pkg')
    const builder = await loadOrCreateIdentity(join(pkgDir, 'builder'))
    const badProject = join(pkgDir, 'bad-project')
    mkdirSync(join(badProject, 'bin'), { recursive: true })
    writeFileSync(join(badProject, 'package.json'), JSON.stringify({ name: 'holdfast', version: BAD, type: 'module' }) + '\n')
    writeFileSync(join(badProject, 'bin', 'holdfast.js'), '#!/usr/bin/env node\nprocess.exit(3)\n', { mode: 0o755 })
    const bad = await buildPackage({ projectDir: badProject, outDir: pkgDir, privateKey: builder.privateKey, signer: builder.peerId })
    const added = await runCli(['deploy', 'package', 'add', bad.tarball, '--version', BAD, '--socket', lan.fleet.managerSocket])
    assert.equal(added.code, 0, added.stderr)

    const up = await cliJsonStatus<UpgradeReport>(['deploy', '--version', BAD, '--batch', '1', '--health-timeout', '60', '--socket', lan.fleet.managerSocket], { timeoutMs: 120_000 })
    assert.equal(up.code, 1, up.stderr)
    assert.equal(up.json.ok, false)
    assert.equal(up.json.batches.length, 1, 'it stops at the failed batch')
    assert.equal(up.json.batches[0].length, 1)
    const [failed] = up.json.batches[0]
    assert.equal(failed.ok, false)
    assert.match(failed.message ?? '', new RegExp(`rolled back to ${BUILT_VERSION.replace(/\./g, '\\.')}.*exited with code 3`), failed.message)
    const first = nodes.find(n => n.peerId === failed.peerId)
    assert.ok(first !== undefined, `the failed host ${failed.peerId} is one of the three`)
    const rest = nodes.filter(n => n !== first)
    assert.deepEqual(up.json.notAttempted.map(h => h.peerId).sort(), rest.map(n => n.peerId).sort())
    assert.equal(current(first), `versions/${BUILT_VERSION}`, 'the supervisor switched back')
    for (const n of rest) {
      assert.ok(!existsSync(join(n.installRoot, 'versions', BAD)), `${n.name} was not offered it`)
      assert.equal(current(n), `versions/${BUILT_VERSION}`)
    }
    const status = await cliJson<DeployStatusRow[]>(['deploy', 'status', '--socket', lan.fleet.managerSocket])
    for (const n of nodes) {
      const row = status.find(r => r.peerId === n.peerId)
      assert.equal(row?.version, BUILT_VERSION, JSON.stringify(row))
      assert.equal(row?.state, n === first ? 'failed' : 'agent', JSON.stringify(row))
    }

    // the rolled-back host runs its agent again; a file written now on each host is backed up
    await until(`${first.name}'s agent answers again`, 60_000, async () => (await runCli(['status', '--socket', first.socket, '--json'])).code === 0 ? true : undefined)
    for (const n of nodes) {
      writeFileSync(join(n.source, 'after-upgrade.txt'), `${n.name} after the failed upgrade\n`)
      await until(`${n.name} staged everything`, 30_000, async () => (await cliJson<{ settling: number }>(['scan-now', '--socket', n.socket])).settling === 0 ? true : undefined)
    }
    const round = await contact()
    assert.equal(round.peers.length, NODES.length)
    for (const p of round.peers) assert.ok(p.ok, `pull from ${p.name} failed after the upgrade: ${p.error ?? ''}`)
    await Promise.all(nodes.map(async n => {
      const target = join(root, `restore-after-${n.name}`)
      const r = await runCli(['restore', '--socket', lan.fleet.managerSocket, '--endpoint', n.peerId, '--target', target])
      assert.equal(r.code, 0, r.stderr)
      assert.deepEqual(compareTrees(n.source, join(target, 'protected')), [], `${n.name} restores bit-exact after the upgrade`)
    }))
  })
})
