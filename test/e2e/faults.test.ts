/**
 * Faults and limits, end to end with real processes: an agent killed mid-pull, the pull rate,
 * a manager of another fleet, a bad config, a protected folder that vanishes.
 */
import { strict as assert } from 'node:assert'
import { mkdtempSync, rmSync, writeFileSync, mkdirSync, renameSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TestFleet, cliJson, cliJsonStatus, runCli } from '../support/fleet.js'
import { compareTrees, makeSampleTree, seededBytes } from '../support/trees.js'
import { requirePrivateNetns } from '../support/mocha.js'
import { until } from '../support/wait.js'
import type { RoundResult, PeerListRow } from '../../src/roles/manager/manager.js'
import type { SnapshotRow } from '../../src/store/core/catalog.js'
import type { AgentStatus } from '../../src/roles/agent/agent.js'

const MiB = 1024 * 1024


describe('end to end: faults and limits', function () {
  let root: string
  let fleets: TestFleet[] = []

  beforeEach(function () {
    requirePrivateNetns(this)
    root = mkdtempSync(join(tmpdir(), 'holdfast-faults-'))
    fleets = []
  })

  afterEach(async function () {
    await Promise.all(fleets.map(async f => await f.stopAll()))
    if (root !== undefined) rmSync(root, { recursive: true, force: true })
  })

  it('an agent killed mid-pull fails that pull; the next round completes and restores bit-exact', async function () {
    const fleet = new TestFleet(join(root, 'f'))
    fleets.push(fleet)
    const src = join(root, 'src')
    mkdirSync(src)
    writeFileSync(join(src, 'large.bin'), seededBytes('large', 24 * MiB))
    await fleet.init({ bandwidth: 4 * MiB })
    const agent = await fleet.addAgent('victim', src)
    await fleet.startManager()
    await fleet.startAgent(agent)
    await cliJson(['scan-now', '--socket', agent.socket])

    const pull = cliJsonStatus<RoundResult>(['backup-now', '--socket', fleet.managerSocket, '--expect-peers', '1', '--timeout', '30'])
    // The manifest has been read (pending bytes known) once the fetch is under way.
    await until('the pull to start', 20_000, async () => {
      const peers = await cliJson<PeerListRow[]>(['peers', '--socket', fleet.managerSocket])
      return (peers[0]?.pendingBytes ?? 0) > 0 ? true : undefined
    })
    await fleet.stop('agent-victim', 'SIGKILL')
    const { code, json: failed } = await pull
    assert.equal(code, 1, 'backup-now exits non-zero when a pull failed')
    assert.equal(failed.peers.length, 1)
    assert.equal(failed.peers[0].ok, false, 'the interrupted pull is reported as failed')
    assert.equal((await cliJson<SnapshotRow[]>(['snapshots', '--socket', fleet.managerSocket])).length, 0, 'nothing committed from a cut pull')

    await fleet.startAgent(agent)
    const status = await cliJson<AgentStatus>(['status', '--socket', agent.socket])
    assert.equal(status.sealedSets, 1, 'the sealed set survived the kill and is still waiting')
    // The restarted agent listens on a new port; mDNS tells the manager. Bounded retries.
    const ok = await until('a successful round', 30_000, async () => {
      const r = (await cliJsonStatus<RoundResult>(['backup-now', '--socket', fleet.managerSocket])).json
      return r.peers[0]?.ok === true ? r : undefined
    })
    assert.ok(ok.peers[0].ok)
    // The scheduler pulls a returning agent by itself too, so the set may have landed before
    // this backup-now: what counts is that the store holds it exactly once.
    assert.equal((await cliJson<SnapshotRow[]>(['snapshots', '--socket', fleet.managerSocket])).length, 1, 'the interrupted set committed once')
    const target = join(root, 'restore')
    const r = await runCli(['restore', '--socket', fleet.managerSocket, '--endpoint', 'victim', '--target', target])
    assert.equal(r.code, 0, r.stderr)
    assert.deepEqual(compareTrees(src, join(target, 'src')), [])
    const after = await cliJson<AgentStatus>(['status', '--socket', agent.socket])
    assert.equal(after.sealedSets, 0, 'acked set freed')
    assert.equal(after.filesNotBackedUp, 0)
    assert.equal(after.spoolBytes, 0)
  })

  // The exact rate (±5%) and the agent's ceiling are checked on the injected clock in
  // test/integration/protocols.test.ts ('pacing on the injected clock'). Here the wall clock also
  // times the dial, manifest, verify, fsync and ack, so only a loose sanity bound holds.
  it('the pull is paced at the configured rate (loose wall-clock bound)', async function () {
    const fleet = new TestFleet(join(root, 'f'))
    fleets.push(fleet)
    const src = join(root, 'src')
    mkdirSync(src)
    // incompressible, so bytes on the wire ≈ file bytes
    writeFileSync(join(src, 'a.bin'), seededBytes('rate-a', 12 * MiB))
    writeFileSync(join(src, 'b.bin'), seededBytes('rate-b', 12 * MiB))
    const rate = 5 * MiB
    await fleet.init({ bandwidth: rate })
    const agent = await fleet.addAgent('paced', src)
    // Staged before the manager runs, and backup-now asked for as soon as it finds the agent:
    // the admin's visit goes first, so the scheduler's own first visit cannot take the data.
    await fleet.startAgent(agent)
    await cliJson(['scan-now', '--socket', agent.socket])
    await fleet.startManager()
    const round = await cliJson<RoundResult>(['backup-now', '--socket', fleet.managerSocket, '--expect-peers', '1', '--timeout', '30'])
    const p = round.peers[0]
    assert.ok(p.ok, p.error)
    assert.ok(p.bytesPulled > 24 * MiB, `pulled ${p.bytesPulled}`)
    const expectedMs = p.bytesPulled / rate * 1000
    const ratio = p.ms / expectedMs
    // Not faster than the rate (less the limiter's quarter-second burst), and not so slow that
    // pacing, not the machine, must be at fault.
    assert.ok(ratio > 0.85 && ratio < 3, `pull of ${p.bytesPulled} B took ${p.ms} ms; at ${rate} B/s it should take about ${Math.round(expectedMs)} ms (ratio ${ratio.toFixed(3)})`)
  })

  it('a manager of another fleet neither sees nor reaches the agents', async function () {
    const ours = new TestFleet(join(root, 'ours'))
    const rogue = new TestFleet(join(root, 'rogue'))
    fleets.push(ours, rogue)
    const src = join(root, 'src')
    makeSampleTree(src, 'secret')
    await ours.init()
    const agent = await ours.addAgent('target', src, { listen: '/ip4/127.0.0.1/tcp/0' })
    await ours.startAgent(agent)
    await cliJson(['scan-now', '--socket', agent.socket])
    const status = await cliJson<AgentStatus>(['status', '--socket', agent.socket])
    const addr = status.listen.find(a => a.startsWith('/ip4/127.0.0.1/'))
    assert.ok(addr !== undefined && addr.endsWith(`/p2p/${agent.peerId}`))
    // The rogue knows the agent's address and peer id, but not the fleet key.
    await rogue.init({ staticPeers: [addr] })
    await rogue.startManager()
    // even approved by the rogue (its admin would), the handshake is what keeps it out
    await cliJson(['peers', 'approve', agent.peerId, '--socket', rogue.managerSocket])
    const { code, json: r } = await cliJsonStatus<RoundResult>(['backup-now', '--socket', rogue.managerSocket])
    assert.equal(code, 1)
    assert.equal(r.peers.length, 1)
    assert.equal(r.peers[0].ok, false, 'the rogue cannot complete a handshake')
    assert.match(r.peers[0].error ?? '', /EncryptionFailed|handshake/i, 'it fails at the handshake, not before')
    assert.equal((await cliJson<SnapshotRow[]>(['snapshots', '--socket', rogue.managerSocket])).length, 0)
    // Nor does it list our agent from mDNS (other fleet's services are ignored).
    const peers = await cliJson<PeerListRow[]>(['peers', '--socket', rogue.managerSocket])
    assert.ok(peers.every(p => p.source === 'static'), JSON.stringify(peers))
    const after = await cliJson<AgentStatus>(['status', '--socket', agent.socket])
    assert.equal(after.sealedSets, 1, 'the set is still waiting for its own manager')
  })

  it('without multicast, a static peer is backed up and can be named in restores', async function () {
    const fleet = new TestFleet(join(root, 'f'))
    fleets.push(fleet)
    const src = join(root, 'src')
    makeSampleTree(src, 'static')
    await fleet.init({ mdns: false, bandwidth: 200 * MiB })
    const agent = await fleet.addAgent('desk-42', src, { mdns: false })
    await fleet.startAgent(agent)
    const status = await cliJson<AgentStatus>(['status', '--socket', agent.socket])
    assert.equal(status.mdns, false)
    const addr = status.listen.find(a => a.startsWith('/ip4/127.0.0.1/'))
    assert.ok(addr !== undefined)
    fleet.patchConfig(fleet.managerConfig, c => { c.staticPeers = [addr] })
    await fleet.startManager()
    await cliJson(['scan-now', '--socket', agent.socket])
    const { json: round } = await cliJsonStatus<RoundResult>(['backup-now', '--socket', fleet.managerSocket])
    assert.ok(round.peers[0]?.ok, JSON.stringify(round))
    const peers = await cliJson<PeerListRow[]>(['peers', '--socket', fleet.managerSocket])
    assert.equal(peers[0].source, 'static')
    assert.equal(peers[0].name, 'desk-42', 'the name comes from the agent\'s manifest')
    const target = join(root, 'restore')
    const r = await runCli(['restore', '--socket', fleet.managerSocket, '--endpoint', 'desk-42', '--target', target])
    assert.equal(r.code, 0, r.stderr)
    assert.deepEqual(compareTrees(src, join(target, 'src')), [])
  })

  it('a config with an unknown key is refused with a one-line error', async function () {
    const file = join(root, 'bad.json')
    writeFileSync(file, JSON.stringify({ role: 'agent', fleetKey: 'a'.repeat(64), dataDir: join(root, 'd'), agent: { folders: [root], scanIntervalSecs: 5 } }), { mode: 0o600 })
    const r = await runCli(['agent', '--config', file])
    assert.equal(r.code, 2)
    assert.match(r.stderr, /CONFIG_UNKNOWN_KEY: unknown config key 'agent.scanIntervalSecs'/)
    assert.equal(r.stderr.trim().split('\n').length, 1)
  })

  it('a protected folder that vanishes is reported, and nothing in it is recorded as deleted', async function () {
    const fleet = new TestFleet(join(root, 'f'))
    fleets.push(fleet)
    const src = join(root, 'src')
    makeSampleTree(src, 'moving')
    await fleet.init({ bandwidth: 200 * MiB })
    const agent = await fleet.addAgent('mover', src)
    await fleet.startManager()
    await fleet.startAgent(agent)
    await cliJson(['scan-now', '--socket', agent.socket])
    await cliJson<RoundResult>(['backup-now', '--socket', fleet.managerSocket, '--expect-peers', '1', '--timeout', '30'])
    renameSync(src, join(root, 'elsewhere'))
    const scan = await cliJson<{ errors: number, set?: unknown }>(['scan-now', '--socket', agent.socket])
    assert.equal(scan.errors, 1)
    assert.equal(scan.set, undefined, 'no staging set (and no deletions) from an unreadable folder')
    const status = await cliJson<AgentStatus>(['status', '--socket', agent.socket])
    assert.ok(status.errors.some(e => e.code === 'FOLDER_UNREADABLE'), JSON.stringify(status.errors))
    const target = join(root, 'restore')
    const r = await runCli(['restore', '--socket', fleet.managerSocket, '--endpoint', 'mover', '--target', target])
    assert.equal(r.code, 0, r.stderr)
    assert.deepEqual(compareTrees(join(root, 'elsewhere'), join(target, 'src')), [])
  })
})
