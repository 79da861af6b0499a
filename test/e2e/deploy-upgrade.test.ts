/**
 * Upgrades end to end, with real processes on loopback: two hosts started as the systemd unit
 * starts them (`holdfast node --install-root DIR`, the upgrade supervisor), given the agent
 * role by the manager; a real package of this checkout under a bumped version, put on the
 * manager's shelf with `holdfast deploy package add` and rolled out with `holdfast deploy
 * --version`: the hosts restart into it, report it, and a backup taken on it restores
 * bit-exact. Then a package whose code exits at once: the supervisor rolls the first host
 * back, the manager says so and stops (the second host is not attempted). Then a package
 * whose bytes changed after signing: refused, the host keeps its version.
 */
import { strict as assert } from 'node:assert'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync, openSync, readSync, writeSync, closeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { TestFleet, cliJson, cliJsonStatus, runCli } from '../support/fleet.js'
import { compareTrees, makeSampleTree } from '../support/trees.js'
import { requirePrivateNetns } from '../support/mocha.js'
import { until } from '../support/wait.js'
import { buildPackage } from '../../src/deploy/package.js'
import { loadOrCreateIdentity } from '../../src/node/identity.js'
import { BUILT_VERSION } from '../../src/version.js'
import type { DeployStatusRow, PeerListRow, RoundResult, SnapshotRow, UpgradeReport } from '../../src/admin/api.js'

const REPO = fileURLToPath(new URL('../../../', import.meta.url))
const V2 = '0.2.0-e2e'
const BAD = '0.3.0-bad'
const TAMPERED = '0.4.0-tampered'

interface Host { name: string, dataDir: string, config: string, socket: string, peerId: string, installRoot: string }

describe('e2e: upgrades under the supervisor (real package, health, rollback, tampering)', function () {
  this.timeout(300_000)
  let pkgDir = ''
  let v2Tarball = ''
  let badTarball = ''
  let root = ''
  let fleet: TestFleet | undefined

  before(async function () {
    requirePrivateNetns(this)
    pkgDir = mkdtempSync(join(tmpdir(), 'holdfast-upgrade-pkg-'))
    // any key will do: `deploy package add` signs with the manager's
    const builder = await loadOrCreateIdentity(join(pkgDir, 'builder'))
    v2Tarball = (await buildPackage({ projectDir: REPO, outDir: pkgDir, privateKey: builder.privateKey, signer: builder.peerId, version: V2 })).tarball
    // a release whose program exits at once, before it could report healthy
    const badProject = join(pkgDir, 'bad-project')
    mkdirSync(join(badProject, 'bin'), { recursive: true })
    writeFileSync(join(badProject, 'package.json'), JSON.stringify({ name: 'holdfast', version: BAD, type: 'module' }) + '\n')
    writeFileSync(join(badProject, 'bin', 'holdfast.js'), '#!/usr/bin/env node\nprocess.exit(3)\n', { mode: 0o755 })
    badTarball = (await buildPackage({ projectDir: badProject, outDir: pkgDir, privateKey: builder.privateKey, signer: builder.peerId })).tarball
  })
  after(() => { if (pkgDir !== '') rmSync(pkgDir, { recursive: true, force: true }) })
  beforeEach(() => { root = mkdtempSync(join(tmpdir(), 'holdfast-upgrade-')) })
  afterEach(async () => {
    await fleet?.stopAll()
    fleet = undefined
    if (root !== '') rmSync(root, { recursive: true, force: true })
  })

  async function startHost (f: TestFleet, name: string): Promise<Host> {
    const dataDir = join(root, `node-${name}`)
    const out = await cliJson<{ config: string, peerId: string }>(['join', await f.createToken(), '--node', '--data-dir', dataDir, '--name', name, '--listen', '/ip4/127.0.0.1/tcp/0'])
    const host = { name, dataDir, config: out.config, socket: join(dataDir, 'admin.sock'), peerId: out.peerId, installRoot: join(root, `opt-${name}`) }
    await f.startDaemon(`node-${name}`, 'node', host.config, host.socket, { args: ['--install-root', host.installRoot] })
    return host
  }

  const current = (h: Host): string => readlinkSync(join(h.installRoot, 'current'))
  const upgradeState = (h: Host): { phase: string, current: string, failed?: { version: string, reason: string } } => JSON.parse(readFileSync(join(h.installRoot, 'upgrade-state.json'), 'utf8'))
  const status = async (f: TestFleet): Promise<DeployStatusRow[]> => await cliJson<DeployStatusRow[]>(['deploy', 'status', '--socket', f.managerSocket])
  const agentAnswers = async (h: Host): Promise<void> => {
    await until(`${h.name}'s agent answers`, 60_000, async () => (await runCli(['status', '--socket', h.socket, '--json'])).code === 0 ? true : undefined)
  }

  it('rolls a real package out, rolls a failing one back and stops, refuses a tampered one', async () => {
    const src = join(root, 'shared')
    makeSampleTree(src, 'upgrade')
    const f = new TestFleet(join(root, 'fleet'))
    fleet = f
    await f.init({ bandwidth: 200 * 1024 * 1024 })
    f.patchConfig(f.managerConfig, c => {
      c.manager = { ...(c.manager as Record<string, unknown>), deploy: { auto: 'approved', settings: { folders: [{ path: src }], settleSeconds: 0, scanIntervalSeconds: 3600 } } }
    })
    await f.startManager()
    const hosts = [await startHost(f, 'up-a'), await startHost(f, 'up-b')]

    // the first start bootstrapped `current` from the code it was started from
    for (const h of hosts) {
      assert.equal(current(h), `versions/${BUILT_VERSION}`)
      assert.equal(upgradeState(h).phase, 'healthy')
    }
    await until('both hosts run the agent', 60_000, async () => {
      const rows = await status(f)
      return hosts.every(h => rows.some(r => r.peerId === h.peerId && r.role === 'agent' && r.state === 'agent')) ? true : undefined
    })
    for (const h of hosts) await agentAnswers(h)

    // --- a real package of this checkout as V2 ---
    const added = await runCli(['deploy', 'package', 'add', v2Tarball, '--version', V2, '--socket', f.managerSocket])
    assert.equal(added.code, 0, added.stderr)
    const up = await cliJsonStatus<UpgradeReport>(['deploy', '--version', V2, '--batch', '1', '--health-timeout', '90', '--socket', f.managerSocket], { timeoutMs: 240_000 })
    assert.equal(up.code, 0, `${up.stderr}\n${JSON.stringify(up.json)}`)
    assert.equal(up.json.ok, true)
    assert.deepEqual(up.json.batches.map(b => b.map(o => [o.name, o.ok, o.version])), [[['up-a', true, V2]], [['up-b', true, V2]]])
    for (const h of hosts) {
      assert.equal(current(h), `versions/${V2}`)
      // the new version reported healthy to its supervisor
      await until(`${h.name} confirmed healthy on ${V2}`, 30_000, async () => upgradeState(h).phase === 'healthy' ? true : undefined)
      await agentAnswers(h)
    }
    const rows = await status(f)
    for (const h of hosts) {
      const row = rows.find(r => r.peerId === h.peerId)
      assert.equal(row?.version, V2, JSON.stringify(rows))
      assert.equal(row?.state, 'agent')
    }
    await until('the peer list shows V2', 30_000, async () => {
      const peers = await cliJson<PeerListRow[]>(['peers', '--socket', f.managerSocket])
      return hosts.every(h => peers.find(p => p.peerId === h.peerId)?.version === V2) ? true : undefined
    })

    // a backup taken on V2 restores bit-exact
    writeFileSync(join(src, 'after-upgrade.txt'), 'written once both hosts ran V2\n')
    for (const h of hosts) await cliJson(['scan-now', '--socket', h.socket])
    const round = await cliJson<RoundResult>(['backup-now', '--socket', f.managerSocket, '--expect-peers', '2', '--timeout', '30'])
    for (const p of round.peers) assert.ok(p.ok, `pull from ${p.name} failed: ${p.error ?? ''}`)
    for (const h of hosts) {
      const snaps = await cliJson<SnapshotRow[]>(['snapshots', '--endpoint', h.peerId, '--socket', f.managerSocket])
      assert.ok(snaps.length > 0)
      const target = join(root, `restore-${h.name}`)
      const r = await runCli(['restore', '--socket', f.managerSocket, '--endpoint', h.peerId, '--target', target])
      assert.equal(r.code, 0, r.stderr)
      assert.deepEqual(compareTrees(src, join(target, 'shared')), [])
    }

    // --- a package whose code exits at once: rolled back, the run stops at its batch ---
    const addedBad = await runCli(['deploy', 'package', 'add', badTarball, '--version', BAD, '--socket', f.managerSocket])
    assert.equal(addedBad.code, 0, addedBad.stderr)
    const bad = await cliJsonStatus<UpgradeReport>(['deploy', '--version', BAD, '--batch', '1', '--health-timeout', '90', '--socket', f.managerSocket], { timeoutMs: 240_000 })
    assert.equal(bad.code, 1, bad.stderr)
    assert.equal(bad.json.ok, false)
    assert.equal(bad.json.batches.length, 1, 'it stops at the failed batch')
    const [failed] = bad.json.batches[0]
    assert.equal(failed.name, 'up-a')
    assert.equal(failed.ok, false)
    assert.match(failed.message ?? '', new RegExp(`rolled back to ${V2.replace(/\./g, '\\.')}.*exited with code 3`), failed.message)
    assert.deepEqual(bad.json.notAttempted.map(h => [h.name, h.version]), [['up-b', V2]])
    const [a, b] = hosts
    assert.equal(current(a), `versions/${V2}`, 'the supervisor switched back')
    assert.equal(upgradeState(a).phase, 'rolled-back')
    assert.equal(upgradeState(a).failed?.version, BAD)
    assert.ok(!existsSync(join(b.installRoot, 'versions', BAD)), 'the second host was not offered it')
    assert.equal(current(b), `versions/${V2}`)
    await agentAnswers(a)
    const afterBad = await status(f)
    assert.equal(afterBad.find(r => r.peerId === a.peerId)?.version, V2)
    assert.equal(afterBad.find(r => r.peerId === a.peerId)?.state, 'failed')
    assert.equal(afterBad.find(r => r.peerId === b.peerId)?.state, 'agent')
    // both hosts are still backed up
    const round2 = await cliJson<RoundResult>(['backup-now', '--socket', f.managerSocket, '--expect-peers', '2', '--timeout', '30'])
    assert.equal(round2.peers.length, 2)
    for (const p of round2.peers) assert.ok(p.ok, `pull from ${p.name} failed after the rollback: ${p.error ?? ''}`)

    // --- bytes changed after signing: refused through /holdfast/deploy/1, nothing changes ---
    const addedT = await runCli(['deploy', 'package', 'add', badTarball, '--version', TAMPERED, '--socket', f.managerSocket])
    assert.equal(addedT.code, 0, addedT.stderr)
    flipByte(join(f.managerDir, 'packages', `holdfast-${TAMPERED}.tgz`))
    const stateBefore = readFileSync(join(a.installRoot, 'upgrade-state.json'), 'utf8')
    const tampered = await cliJsonStatus<UpgradeReport>(['deploy', '--version', TAMPERED, '--batch', '1', '--health-timeout', '30', '--socket', f.managerSocket], { timeoutMs: 120_000 })
    assert.equal(tampered.code, 1, tampered.stderr)
    assert.equal(tampered.json.batches.length, 1)
    assert.match(tampered.json.batches[0][0].message ?? '', /SHA-256/, JSON.stringify(tampered.json))
    assert.equal(tampered.json.notAttempted.length, 1)
    assert.equal(current(a), `versions/${V2}`)
    assert.ok(!existsSync(join(a.installRoot, 'versions', TAMPERED)))
    assert.equal(readFileSync(join(a.installRoot, 'upgrade-state.json'), 'utf8'), stateBefore, 'the upgrade state is as it was')
    assert.equal((await status(f)).find(r => r.peerId === a.peerId)?.version, V2)
    await agentAnswers(a)
  })
})

/** Changes one byte in the middle of a file (after it was signed). */
function flipByte (file: string): void {
  const fd = openSync(file, 'r+')
  try {
    const size = readFileSync(file).byteLength
    const at = Math.floor(size / 2)
    const b = Buffer.alloc(1)
    readSync(fd, b, 0, 1, at)
    b[0] = b[0] ^ 0xff
    writeSync(fd, b, 0, 1, at)
  } finally { closeSync(fd) }
}
