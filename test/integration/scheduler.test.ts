/**
 * The scheduler driving the REAL puller against agents that are real libp2p nodes (in-memory
 * spools behind the real manifest, fetch and ack services), on 127.0.0.1: an endpoint that is
 * busy and outside its window is not pulled, one inside its window is, the max-age override
 * pulls at its reduced rate, and a pull stopped at its slice resumes without re-sending a
 * stored chunk. The store is a real catalog and pack store on disk.
 */
import { strict as assert } from 'node:assert'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createHoldfastNode, type HoldfastNode } from '../../src/node/libp2p-node.js'
import { newFleetKey } from '../../src/node/fleet.js'
import { ManifestClient, ManifestService, type AgentManifest, type ManifestListRequest } from '../../src/protocols/manifest.js'
import { FetchService, type SpooledChunk } from '../../src/protocols/fetch.js'
import { AckService } from '../../src/protocols/ack.js'
import { chunkId, compressChunk } from '../../src/codec/chunk-codec.js'
import { toHex, type SetSummary, type StagedEntry } from '../../src/model/entry.js'
import { HoldfastError } from '../../src/util/errors.js'
import { silentLogger } from '../../src/util/log.js'
import { systemClock } from '../../src/util/clock.js'
import { Catalog } from '../../src/store/core/catalog.js'
import { PackStore } from '../../src/store/core/packs.js'
import { Puller } from '../../src/roles/manager/puller.js'
import { PeerTable, type PeerRecord } from '../../src/roles/manager/peer-table.js'
import { Scheduler, type VisitOutcome } from '../../src/roles/manager/scheduler/scheduler.js'
import { BandwidthBudget } from '../../src/roles/manager/scheduler/bandwidth-budget.js'
import { createPullVisit } from '../../src/roles/manager/scheduler/visit.js'
import { parseUploadWindows } from '../../src/model/upload-window.js'
import { until } from '../support/wait.js'

const LOOPBACK = '/ip4/127.0.0.1/tcp/0'
const started: HoldfastNode[] = []
let dir = ''

async function node (fleetKey: string): Promise<HoldfastNode> {
  const n = await createHoldfastNode({ privateKey: await generateKeyPair('Ed25519'), fleetKey, listen: [LOOPBACK] })
  started.push(n)
  return n
}

/** An agent with an in-memory spool: sealed sets of random files, served by the real services. */
class MemoryAgent {
  readonly chunks = new Map<string, SpooledChunk>()
  readonly sets = new Map<number, { summary: SetSummary, entries: StagedEntry[] }>()
  /** Compressed bytes the fetch service handed out: what crossed the wire. */
  bytesServed = 0
  requests: ManifestListRequest[] = []
  constructor (readonly node: HoldfastNode, public report: Partial<AgentManifest>) {}

  /** A set of `files` files of `chunksPerFile` random 16 KiB chunks, plus chunks shared with earlier sets. */
  addSet (id: number, files: number, chunksPerFile: number, reuse: Uint8Array[] = []): Uint8Array[] {
    const entries: StagedEntry[] = []
    const ids: Uint8Array[] = []
    let stored = 0
    for (let f = 0; f < files; f++) {
      const own: Uint8Array[] = []
      for (let c = 0; c < chunksPerFile; c++) {
        const plain = randomBytes(16 * 1024)
        const cid = chunkId(plain)
        const compressed = compressChunk(plain)
        this.chunks.set(toHex(cid), { rawLength: plain.byteLength, compressed })
        stored += compressed.byteLength
        own.push(cid)
      }
      const list = f === 0 ? [...reuse, ...own] : own
      ids.push(...own)
      entries.push({ folder: 'docs', path: new Uint8Array(Buffer.from(`set${id}/file${f}`)), type: 'file', mode: 0o100644, mtimeNs: 1_700_000_000_000_000_000n + BigInt(id), size: list.length * 16 * 1024, chunks: new Uint8Array(Buffer.concat(list.map(x => Buffer.from(x)))) })
    }
    this.sets.set(id, { summary: { id, sealedAt: 1000 + id, entries: entries.length, chunks: ids.length, rawBytes: ids.length * 16 * 1024, storedBytes: stored }, entries })
    return ids
  }

  async start (): Promise<void> {
    const allow = (): boolean => true
    await new ManifestService(this.node, {
      allow,
      log: silentLogger,
      source: {
        manifest: (request) => {
          if (request !== undefined) this.requests.push(request)
          return { agentVersion: 'test', idle: true, ...this.report, sets: [...this.sets.values()].map(s => s.summary) }
        },
        entries: (setId) => {
          const set = this.sets.get(setId)
          if (set === undefined) throw new HoldfastError('SET_UNKNOWN', `no sealed set ${setId}`)
          return set.entries
        }
      }
    }).start()
    await new FetchService(this.node, {
      allow,
      log: silentLogger,
      clock: systemClock,
      source: {
        readChunk: async (id) => {
          const c = this.chunks.get(toHex(id)) ?? null
          if (c !== null) this.bytesServed += c.compressed.byteLength
          return c
        }
      }
    }).start()
    await new AckService(this.node, { allow, log: silentLogger, sink: { acknowledge: async (setId) => { this.sets.delete(setId) } } }).start()
  }
}

interface Rig { scheduler: Scheduler, table: PeerTable, catalog: Catalog, packs: PackStore, puller: Puller, controller: AbortController, outcomes: Array<{ peer: string, outcome: VisitOutcome }> }

async function rig (manager: HoldfastNode, agents: MemoryAgent[], options: { windows?: Map<string, string>, bytesPerSecond?: number, lastBackup?: number, sliceMs?: number, maxConcurrent?: number }): Promise<Rig> {
  const catalog = new Catalog(join(dir, 'catalog.db'))
  const packs = new PackStore(join(dir, 'packs'))
  const puller = new Puller({ host: manager, catalog, packs, clock: systemClock, log: silentLogger })
  const table = new PeerTable({ addressTtlMs: 3_600_000 })
  for (const a of agents) table.upsert({ peerId: a.node.peerId.toString(), addrs: a.node.getMultiaddrs(), role: 'agent', version: 'test', name: '', source: 'static' }, systemClock.now())
  const windows = { endpoints: new Map([...(options.windows ?? new Map<string, string>())].map(([k, v]) => [k, parseUploadWindows(v)])) }
  const visit = createPullVisit({ manifests: new ManifestClient(manager), puller, clock: systemClock, log: silentLogger, windows, policy: { maxAgeMs: 24 * 3_600_000, maxAgeRateFraction: 0.25 } })
  const outcomes: Rig['outcomes'] = []
  const controller = new AbortController()
  const scheduler = new Scheduler({
    clock: systemClock,
    table,
    visit: async (peer, ctx) => { const o = await visit(peer, ctx); outcomes.push({ peer: peer.peerId, outcome: o }); return o },
    budget: new BandwidthBudget({ bytesPerSecond: options.bytesPerSecond ?? 50_000_000 }, systemClock.now),
    log: silentLogger,
    maxConcurrent: options.maxConcurrent ?? 4,
    intervalMs: 3_600_000,
    sliceMs: options.sliceMs ?? 600_000,
    maxAgeMs: 24 * 3_600_000,
    random: () => 0,
    lastBackupOf: () => options.lastBackup
  }, controller.signal)
  return { scheduler, table, catalog, packs, puller, controller, outcomes }
}

async function close (r: Rig): Promise<void> {
  r.controller.abort()
  await r.scheduler.drain()
  await r.puller.close()
  r.packs.close()
  r.catalog.close()
}

/** Windows around now in UTC (the agents report offset 0): one holding now, one 3 hours away. */
function windowsNow (): { inside: string, outside: string } {
  const h = new Date().getUTCHours()
  const hh = (n: number): string => `${String((h + n + 24) % 24).padStart(2, '0')}:00`
  return { inside: `${hh(0)}-${hh(1)}`, outside: `${hh(3)}-${hh(4)}` }
}

describe('Scheduler with the real puller over libp2p', function () {
  this.timeout(60_000)
  let fleetKey = ''

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'holdfast-sched-'))
    fleetKey = newFleetKey()
  })

  afterEach(async () => {
    await Promise.all(started.splice(0).map(async n => { await n.stop() }))
    rmSync(dir, { recursive: true, force: true })
  })

  it('pulls a busy endpoint inside its window, not one outside it; the windows reach the agent', async () => {
    const manager = await node(fleetKey)
    const w = windowsNow()
    const busyOutside = new MemoryAgent(await node(fleetKey), { idle: false, utcOffsetMinutes: 0 })
    const busyInside = new MemoryAgent(await node(fleetKey), { idle: false, utcOffsetMinutes: 0 })
    busyOutside.addSet(1, 2, 2)
    busyInside.addSet(1, 2, 2)
    await busyOutside.start()
    await busyInside.start()
    const outsideId = busyOutside.node.peerId.toString()
    const insideId = busyInside.node.peerId.toString()
    const r = await rig(manager, [busyOutside, busyInside], { windows: new Map([[outsideId, w.outside], [insideId, w.inside]]) })
    try {
      r.scheduler.tick()
      await until('both visited', 20_000, async () => r.outcomes.length >= 2 ? true : undefined)
      await r.scheduler.drain()
      assert.equal(busyOutside.bytesServed, 0, 'nothing pulled from the endpoint outside its window')
      assert.equal(busyOutside.sets.size, 1, 'its set still waits on it')
      const why = r.scheduler.status(r.table.get(outsideId) as PeerRecord).schedule
      assert.equal(why.state, 'not-uploading')
      assert.ok(why.state === 'not-uploading' && why.detail.includes(w.outside), JSON.stringify(why))
      assert.ok(busyInside.bytesServed > 0)
      assert.equal(busyInside.sets.size, 0, 'the endpoint inside its window was pulled and acked')
      assert.equal(r.catalog.snapshotCount(), 1)
      assert.deepEqual(busyInside.requests[0], { windows: w.inside }, 'the manager told the agent its windows with its first look')
      assert.equal(r.scheduler.status(r.table.get(insideId) as PeerRecord).lastMode, 'window')
      // an idle endpoint is pulled whatever its window
      busyOutside.report.idle = true
      const forced = await r.scheduler.visitNow([r.table.get(outsideId) as PeerRecord])
      assert.equal(forced[0]?.outcome.kind, 'pulled')
      assert.equal(busyOutside.sets.size, 0)
    } finally {
      await close(r)
    }
  })

  it('the max-age override pulls a never-idle endpoint anyway, at the reduced rate', async () => {
    const manager = await node(fleetKey)
    const w = windowsNow()
    const agent = new MemoryAgent(await node(fleetKey), { idle: false, utcOffsetMinutes: 0 })
    agent.addSet(1, 4, 4) // 16 chunks of 16 KiB random: ~256 KiB on the wire
    await agent.start()
    const id = agent.node.peerId.toString()
    const budget = 400_000
    const r = await rig(manager, [agent], { windows: new Map([[id, w.outside]]), bytesPerSecond: budget, lastBackup: Date.now() - 48 * 3_600_000 })
    try {
      const t0 = Date.now()
      r.scheduler.tick()
      let seenRate = 0
      await until('pulled', 30_000, async () => {
        const st = r.scheduler.status(r.table.get(id) as PeerRecord).schedule
        if (st.state === 'pulling' && st.mode === 'max-age') seenRate = st.rate
        return r.outcomes.length >= 1 ? true : undefined
      })
      const elapsed = (Date.now() - t0) / 1000
      await r.scheduler.drain()
      const outcome = r.outcomes[0]?.outcome
      assert.ok(outcome?.kind === 'pulled' && outcome.mode === 'max-age', JSON.stringify(outcome))
      assert.equal(agent.sets.size, 0)
      assert.equal(seenRate, budget * 0.25, 'a quarter of its share')
      // at 100 kB/s, ~260 kB takes over two seconds (the first quarter second is burst)
      const floor = agent.bytesServed / (budget * 0.25) - 0.5
      assert.ok(elapsed >= floor, `pulled ${agent.bytesServed} B in ${elapsed.toFixed(2)} s: faster than the reduced rate allows (${floor.toFixed(2)} s)`)
      assert.ok(elapsed < agent.bytesServed / budget * 4 + 5, `slow beyond reason: ${elapsed} s`)
    } finally {
      await close(r)
    }
  })

  it('a pull stopped at its slice resumes next turn without re-sending stored chunks', async () => {
    const manager = await node(fleetKey)
    const agent = new MemoryAgent(await node(fleetKey), { idle: true })
    const first = agent.addSet(1, 2, 3) // 6 chunks
    agent.addSet(2, 2, 3, first) // 6 new chunks, and a file that repeats all of set 1's
    agent.addSet(3, 1, 2, first.slice(0, 2)) // 2 new, 2 repeated
    const bytesOf = (ids: Uint8Array[]): number => ids.reduce((n, x) => n + (agent.chunks.get(toHex(x))?.compressed.byteLength ?? 0), 0)
    const firstBytes = bytesOf(first)
    let allUnique = 0
    for (const c of agent.chunks.values()) allUnique += c.compressed.byteLength
    await agent.start()
    const id = agent.node.peerId.toString()
    // a 1 ms slice: every turn ends after its first set
    const r = await rig(manager, [agent], { sliceMs: 1 })
    try {
      const peer = r.table.get(id) as PeerRecord
      r.scheduler.tick()
      await until('first turn', 20_000, async () => r.outcomes.length >= 1 ? true : undefined)
      await r.scheduler.drain()
      const one = r.outcomes[0]?.outcome
      assert.ok(one?.kind === 'pulled' && one.more, 'the first turn stopped at its slice with sets left')
      assert.equal(agent.bytesServed, firstBytes, 'the first turn fetched exactly set 1')
      assert.deepEqual([...agent.sets.keys()], [2, 3], 'set 1 acked, the rest waiting')
      const st = r.scheduler.status(peer).schedule
      assert.ok(st.state === 'waiting-for-slot' || st.state === 'pulling', `due again at once: ${st.state}`)
      for (let turn = 0; turn < 5 && agent.sets.size > 0; turn++) {
        const n = r.outcomes.length
        r.scheduler.tick()
        await until(`turn ${turn + 2}`, 20_000, async () => r.outcomes.length > n ? true : undefined)
        await r.scheduler.drain()
      }
      assert.equal(agent.sets.size, 0, 'every set pulled in the end')
      assert.equal(agent.bytesServed, allUnique, 'each chunk crossed the wire once: none already stored was sent again')
      assert.equal(r.catalog.snapshotCount(), 3)
    } finally {
      await close(r)
    }
  })
})
