/**
 * A drip-feeding agent beside an honest one, under the REAL scheduler, visit and puller, over
 * real libp2p nodes on 127.0.0.1, into a real catalog and pack store. The drip-feeder is built
 * from the real manifest, fetch and ack services; only its chunk source is slowed (and its
 * upload ceiling set low, so each chunk leaves as it is read: a drip that never trips the idle
 * deadline). The honest agent's backup is not held up; the drip-feeder's pull is cut by the
 * fetch minimum-rate rule within its window, it is hung up on and backed off with the error in
 * the peer table; and prune's wait on the store lock is bounded: a pull still running when
 * the bound passes is cut, and prune runs.
 */
import { strict as assert } from 'node:assert'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromString } from '@libp2p/peer-id'
import { createHoldfastNode, type HoldfastNode } from '../../src/node/libp2p-node.js'
import { newFleetKey } from '../../src/node/fleet.js'
import { silentLogger } from '../../src/util/log.js'
import { systemClock } from '../../src/util/clock.js'
import { ReadWriteLock } from '../../src/util/mutex.js'
import { Catalog } from '../../src/store/core/catalog.js'
import { PackStore } from '../../src/store/core/packs.js'
import { Puller } from '../../src/roles/manager/puller.js'
import { PeerTable, type PeerRecord } from '../../src/roles/manager/peer-table.js'
import { Scheduler, type VisitOutcome } from '../../src/roles/manager/scheduler/scheduler.js'
import { BandwidthBudget } from '../../src/roles/manager/scheduler/bandwidth-budget.js'
import { createPullVisit } from '../../src/roles/manager/scheduler/visit.js'
import { until } from '../support/wait.js'
import { DripFeedingAgentWithSlowedChunkSource, MemoryAgent } from '../support/memory-agent.js'
import { ManifestClient } from '../../src/protocols/manifest.js'

const LOOPBACK = '/ip4/127.0.0.1/tcp/0'
const started: HoldfastNode[] = []
let dir = ''

async function node (fleetKey: string): Promise<HoldfastNode> {
  const n = await createHoldfastNode({ privateKey: await generateKeyPair('Ed25519'), fleetKey, listen: [LOOPBACK] })
  started.push(n)
  return n
}

interface Rig { scheduler: Scheduler, table: PeerTable, catalog: Catalog, packs: PackStore, puller: Puller, controller: AbortController, lock: ReadWriteLock, outcomes: Map<string, { outcome: VisitOutcome, at: number }> }

/** The manager's pull path as manager.ts assembles it: store read lock (preemptible) around each pull, hang-up on a violation. */
function rig (manager: HoldfastNode, agents: MemoryAgent[], t0: number): Rig {
  const catalog = new Catalog(join(dir, 'catalog.db'))
  const packs = new PackStore(join(dir, 'packs'))
  const puller = new Puller({ host: manager, catalog, packs, clock: systemClock, log: silentLogger })
  const table = new PeerTable({ addressTtlMs: 3_600_000 })
  for (const a of agents) table.upsert({ peerId: a.peerId, addrs: a.node.getMultiaddrs(), role: 'agent', version: 'test', name: '', source: 'static' }, systemClock.now())
  const lock = new ReadWriteLock(systemClock)
  const visit = createPullVisit({
    manifests: new ManifestClient(manager),
    puller,
    clock: systemClock,
    log: silentLogger,
    windows: { endpoints: new Map() },
    policy: { maxAgeMs: 24 * 3_600_000, maxAgeRateFraction: 0.25 },
    around: async fn => await lock.read(fn, { preemptible: true }),
    onViolation: async peer => { await manager.hangUp(peerIdFromString(peer.peerId), { signal: AbortSignal.timeout(2_000) }) }
  })
  const outcomes: Rig['outcomes'] = new Map()
  const controller = new AbortController()
  const scheduler = new Scheduler({
    clock: systemClock,
    table,
    visit: async (peer, ctx) => { const o = await visit(peer, ctx); outcomes.set(peer.peerId, { outcome: o, at: Date.now() - t0 }); return o },
    budget: new BandwidthBudget({ bytesPerSecond: 50_000_000 }, systemClock.now),
    log: silentLogger,
    maxConcurrent: 2,
    intervalMs: 3_600_000,
    sliceMs: 600_000,
    maxAgeMs: 24 * 3_600_000,
    random: () => 0
  }, controller.signal)
  return { scheduler, table, catalog, packs, puller, controller, lock, outcomes }
}

async function close (r: Rig): Promise<void> {
  r.controller.abort()
  await r.scheduler.drain()
  await r.puller.close()
  r.packs.close()
  r.catalog.close()
}

describe('A drip-feeding agent beside an honest one (real scheduler and puller over libp2p)', function () {
  this.timeout(120_000)
  let fleetKey = ''

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'holdfast-slow-'))
    fleetKey = newFleetKey()
  })

  afterEach(async () => {
    await Promise.all(started.splice(0).map(async n => { await n.stop() }))
    rmSync(dir, { recursive: true, force: true })
  })

  it('cuts the drip-feeder by the minimum-rate rule within its window, hangs up and backs it off; the honest backup is not delayed', async () => {
    // FETCH_LIMITS.minRate.windowMs, written out so the test also runs against code without it
    const window = 20_000
    const manager = await node(fleetKey)
    const honest = new MemoryAgent(await node(fleetKey), 8, 8) // 64 chunks, 1 MiB
    // 40 chunks at one per second (~16 KiB/s at best, well under 16 KiB/s once reads wait): would take ~40 s whole
    const drip = new DripFeedingAgentWithSlowedChunkSource(await node(fleetKey), 40, 1_000)
    await honest.start()
    await drip.start()
    const t0 = Date.now()
    const r = rig(manager, [drip, honest], t0)
    try {
      r.scheduler.tick()
      const honestDone = await until('the honest agent pulled', 60_000, async () => r.outcomes.get(honest.peerId))
      assert.equal(honestDone.outcome.kind, 'pulled', JSON.stringify(honestDone.outcome))
      assert.equal(honest.set, undefined, 'the honest agent\'s set was committed and acked')
      // its normal time on loopback is well under a second; the bound is for a loaded machine,
      // and below the window: it did not wait for the drip-feeder
      assert.ok(honestDone.at < window / 2, `honest backup took ${honestDone.at} ms beside the drip-feeder`)

      const dripDone = await until('the drip-feeder cut', window * 3, async () => r.outcomes.get(drip.peerId))
      const o = dripDone.outcome
      assert.ok(o.kind === 'failed' && o.code === 'TRANSFER_TOO_SLOW', `cut by the minimum rate, got ${JSON.stringify(o)}`)
      assert.equal(o.failure, 'error')
      assert.ok(dripDone.at >= window * 0.9 && dripDone.at < window * 2, `cut after ${dripDone.at} ms (window ${window} ms)`)
      assert.ok(drip.chunksServed < 40, `cut before the end (${drip.chunksServed} of 40 chunks read)`)
      assert.ok(drip.set !== undefined, 'nothing of the drip-feeder was acked')
      const peer = r.table.get(drip.peerId) as PeerRecord
      assert.match(peer.lastError ?? '', /TRANSFER_TOO_SLOW/, 'the peer list shows why')
      assert.equal(peer.failures, 1)
      const status = r.scheduler.status(peer).schedule
      assert.equal(status.state, 'backing-off', JSON.stringify(status))
      await until('the drip-feeder hung up on', 10_000, async () => manager.getConnections(drip.node.peerId).length === 0 ? true : undefined)
      assert.equal(r.catalog.snapshotCount(), 1, 'only the honest snapshot committed')
    } finally {
      await close(r)
    }
  })

  it('prune waits for a running pull at most its bound, then cuts it (LOCK_PREEMPTED, no backoff) and runs', async () => {
    const manager = await node(fleetKey)
    // slow enough to hold the lock for ~60 s if left alone; prune's bound is 3 s
    const drip = new DripFeedingAgentWithSlowedChunkSource(await node(fleetKey), 60, 1_000)
    await drip.start()
    const t0 = Date.now()
    const r = rig(manager, [drip], t0)
    try {
      r.scheduler.tick()
      await until('the pull holds the store lock', 20_000, async () => drip.chunksServed > 0 ? true : undefined)
      const asked = Date.now()
      const bound = 3_000
      const ran = await r.lock.write(async () => Date.now(), { preemptReadersAfterMs: bound })
      const waited = ran - asked
      assert.ok(waited >= bound * 0.9, `prune waited ${waited} ms: it should have waited for the pull up to its bound`)
      assert.ok(waited < bound + 10_000, `prune waited ${waited} ms, past its ${bound} ms bound`)
      const done = await until('the pull cut', 20_000, async () => r.outcomes.get(drip.peerId))
      const o = done.outcome
      assert.ok(o.kind === 'failed' && o.code === 'LOCK_PREEMPTED' && o.failure === 'local', JSON.stringify(o))
      assert.equal(r.catalog.snapshotCount(), 0)
    } finally {
      await close(r)
    }
  })
})
