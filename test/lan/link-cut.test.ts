/**
 * A link cut in the middle of a pull, on a shaped LAN link: the agent's host is limited to
 * 2 Mbit/s so a pull of a few MiB takes seconds, its link goes down mid-pull and comes back.
 * The pull must resume promptly once the link is back, and nothing may be lost or stored twice.
 */
import { strict as assert } from 'node:assert'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { cliJson, runCli, cliJsonStatus } from '../support/fleet.js'
import { compareTrees, seededBytes } from '../support/trees.js'
import { LanBed, requireLan } from '../support/lan.js'
import { startLanFleet, type LanFleet } from '../support/lan-fleet.js'
import { until } from '../support/wait.js'
import type { SnapshotRow } from '../../src/store/core/catalog.js'
import type { StoreStats } from '../../src/store/queries/stats.js'
import type { VerifyReport } from '../../src/store/maintenance/verify.js'

const MiB = 1024 * 1024
const RATE_BITS = 2_000_000
/** Long enough for the manager to give the cut pull up (its connection is dead, not slow). */
const DOWN_MS = 20_000
/** "Within seconds": data flows again this soon after the link is back. */
const RESUME_WITHIN_MS = 6_000

describe('LAN: a link cut in the middle of a pull', function () {
  let root: string
  let bed: LanBed | undefined
  let lan: LanFleet

  before(async function () {
    requireLan(this)
    root = mkdtempSync(join(tmpdir(), 'holdfast-lan-cut-'))
    bed = LanBed.create()
    lan = await startLanFleet(bed, root, {
      agents: 1,
      // a long interval: only a prompt retry, not the next round, can pass this test
      pullInterval: 120,
      fill: folder => {
        writeFileSync(join(folder, 'big.bin'), seededBytes('lan-cut', 3 * MiB))
        writeFileSync(join(folder, 'small.txt'), 'a small file\n')
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
      process.stderr.write(`--- manager log ---\n${lan.fleet.log('manager')}\n--- agent log ---\n${lan.fleet.log('agent-a1')}\n`)
    }
  })

  it('resumes within seconds of the link coming back; restores bit-exact; nothing stored twice', async function () {
    const b = bed as LanBed
    const agent = lan.agents[0]
    await cliJson(['scan-now', '--socket', agent.socket])
    await until('the manager to find the agent', 30_000, async () => {
      const rows = await cliJson<Array<{ peerId: string, addresses: string[] }>>(['peers', '--socket', lan.fleet.managerSocket])
      return rows.some(r => r.peerId === agent.peerId && r.addresses.length > 0) ? true : undefined
    })
    b.shape(agent.host, { rate: RATE_BITS })
    const base = b.counters(agent.host).txBytes
    // the round runs on while we cut the link; its outcome is checked below through the store
    const round = runCli(['backup-now', '--socket', lan.fleet.managerSocket, '--json'], { timeoutMs: 180_000 })

    // cut once a third of the data has crossed the link
    await until('a third of the pull to cross the link', 30_000, async () => b.counters(agent.host).txBytes - base > MiB ? true : undefined)
    b.linkDown(agent.host)
    const cutAt = b.counters(agent.host).txBytes
    await delay(DOWN_MS)
    const snapsWhileDown = await cliJson<SnapshotRow[]>(['snapshots', '--socket', lan.fleet.managerSocket])
    assert.equal(snapsWhileDown.length, 0, 'nothing committed while the link was down')
    b.linkUp(agent.host)
    const upAt = Date.now()

    // data flows again promptly: a new pull, not the next round a whole interval later
    await until('data to flow again after the link is back', 60_000, async () => b.counters(agent.host).txBytes - cutAt > 256 * 1024 ? true : undefined)
    const resumedMs = Date.now() - upAt
    const snaps = await until('the snapshot to commit', 90_000, async () => {
      const s = await cliJson<SnapshotRow[]>(['snapshots', '--socket', lan.fleet.managerSocket])
      return s.length > 0 ? s : undefined
    })
    assert.ok(resumedMs <= RESUME_WITHIN_MS, `the pull resumed ${resumedMs} ms after the link came back`)
    await round.catch(() => {})

    // exactly one snapshot of the one staged set; the store holds each chunk once and checks clean
    assert.equal(snaps.length, 1)
    assert.equal(snaps[0].setId, 1)
    const verify = await cliJsonStatus<VerifyReport>(['verify', '--socket', lan.fleet.managerSocket, '--read-data'])
    assert.equal(verify.code, 0, verify.stderr)
    assert.ok(verify.json.ok, JSON.stringify(verify.json))
    assert.equal(verify.json.problemsTotal, 0)
    const stats = await cliJson<StoreStats>(['stats', '--socket', lan.fleet.managerSocket])
    assert.equal(stats.total.snapshots, 1)
    assert.equal(stats.total.storeChunks, stats.total.chunks, 'no chunk stored twice')

    const target = join(root, 'restore')
    const r = await runCli(['restore', '--socket', lan.fleet.managerSocket, '--endpoint', agent.peerId, '--target', target])
    assert.equal(r.code, 0, r.stderr)
    assert.deepEqual(compareTrees(agent.folder, join(target, 'data-a1')), [])
  })
})
