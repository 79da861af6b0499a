/**
 * Discovery hardening, in one process with real parts: the REAL Discovery fed synthesized
 * mDNS records through its record path (the one the multicast browser uses), the real peer
 * table, scheduler, visit and puller, a real honest agent and a real manager on 127.0.0.1.
 * 10,000 fake agents cost bounded memory and a bounded number of dials, the honest agent is
 * backed up on time, and a forged record for the honest agent's peer id moves neither its
 * proven address nor its role. Records with empty and oversized fields are dropped before
 * they reach the peer table. The peer table's expiry runs on a manual clock.
 */
import { strict as assert } from 'node:assert'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { createHoldfastNode, listenPort, type HoldfastNode } from '../../src/node/libp2p-node.js'
import { fleetTag, newFleetKey } from '../../src/node/fleet.js'
import { Discovery, RECORD_LIMITS, type ServiceRecordView } from '../../src/node/discovery.js'
import { ManifestClient } from '../../src/protocols/manifest.js'
import { silentLogger } from '../../src/util/log.js'
import { ManualClock, systemClock } from '../../src/util/clock.js'
import { Catalog } from '../../src/store/core/catalog.js'
import { PackStore } from '../../src/store/core/packs.js'
import { Puller } from '../../src/roles/manager/puller.js'
import { PEER_TABLE_DEFAULTS, PeerTable } from '../../src/roles/manager/peer-table.js'
import { Scheduler } from '../../src/roles/manager/scheduler/scheduler.js'
import { BandwidthBudget } from '../../src/roles/manager/scheduler/bandwidth-budget.js'
import { DIAL_BUDGET_DEFAULTS } from '../../src/roles/manager/scheduler/dial-budget.js'
import { createPullVisit } from '../../src/roles/manager/scheduler/visit.js'
import { MemoryAgent } from '../support/memory-agent.js'
import { until } from '../support/wait.js'

const LOOPBACK = '/ip4/127.0.0.1/tcp/0'
const FAKES = 10_000
const started: HoldfastNode[] = []

async function node (fleetKey: string): Promise<HoldfastNode> {
  const n = await createHoldfastNode({ privateKey: await generateKeyPair('Ed25519'), fleetKey, listen: [LOOPBACK] })
  started.push(n)
  return n
}

/** An mDNS record as bonjour-service hands it over. */
function record (peerId: string, fleet: string, port: number, role = 'agent', address = '127.0.0.1'): ServiceRecordView {
  return { txt: { peer: peerId, role, pv: '1', ver: 'test', name: '', fleet, port: String(port) }, port, addresses: [address] }
}

describe('Discovery under a flood of fake records (real Discovery, peer table, scheduler, puller)', function () {
  this.timeout(180_000)
  let dir = ''
  afterEach(async () => {
    await Promise.all(started.splice(0).map(async n => { await n.stop() }))
    if (dir !== '') rmSync(dir, { recursive: true, force: true })
  })

  it('10,000 fake agents: bounded table and dials; the honest agent is backed up on time; a forged record moves neither its address nor its role', async () => {
    dir = mkdtempSync(join(tmpdir(), 'holdfast-flood-'))
    const fleetKey = newFleetKey()
    const fleet = fleetTag(fleetKey)
    const manager = await node(fleetKey)
    const honest = new MemoryAgent(await node(fleetKey), 4, 4)
    await honest.start()
    // a port nobody listens on: dials to the fakes are refused at once, on loopback only
    const closed = await node(fleetKey)
    const deadPort = listenPort(closed)
    await closed.stop()

    const table = new PeerTable({ addressTtlMs: 3_600_000 })
    const discovery = new Discovery({
      self: { peerId: manager.peerId.toString(), role: 'manager', version: 'test', name: '', port: listenPort(manager), fleetTag: fleet },
      mdns: false,
      queryIntervalMs: 60_000,
      staticPeers: [],
      onPeer: peer => { table.upsert(peer, systemClock.now()) },
      clock: systemClock,
      log: silentLogger
    })
    discovery.start()
    // as manager.ts wires it: a dial that reached the peer proves its address
    manager.addEventListener('connection:open', evt => { if (evt.detail.direction === 'outbound') table.confirm(evt.detail.remotePeer.toString(), evt.detail.remoteAddr, systemClock.now()) })

    const catalog = new Catalog(join(dir, 'catalog.db'))
    const packs = new PackStore(join(dir, 'packs'))
    const puller = new Puller({ host: manager, catalog, packs, clock: systemClock, log: silentLogger })
    const visits = new Map<string, number>()
    const visit = createPullVisit({ manifests: new ManifestClient(manager), puller, clock: systemClock, log: silentLogger, windows: { endpoints: new Map() }, policy: { maxAgeMs: 24 * 3_600_000, maxAgeRateFraction: 0.25 } })
    const controller = new AbortController()
    const scheduler = new Scheduler({
      clock: systemClock,
      table,
      visit: async (peer, ctx) => { visits.set(peer.peerId, (visits.get(peer.peerId) ?? 0) + 1); return await visit(peer, ctx) },
      budget: new BandwidthBudget({ bytesPerSecond: 50_000_000 }, systemClock.now),
      log: silentLogger,
      maxConcurrent: 4,
      intervalMs: 20_000,
      sliceMs: 600_000,
      maxAgeMs: 24 * 3_600_000,
      random: () => 0
    }, controller.signal)
    const loop = scheduler.run()
    try {
      // the honest agent is found and backed up once, as before any attack
      const honestAddr = honest.node.getMultiaddrs()[0]
      discovery.onRecord(record(honest.peerId, fleet, Number(honestAddr.getComponents().find(c => c.name === 'tcp')?.value)))
      await until('the honest agent backed up', 30_000, async () => honest.set === undefined ? true : undefined)
      const proven = table.get(honest.peerId)?.addrs[0]?.toString()
      assert.ok(proven?.includes(`/tcp/${listenPort(honest.node)}`), `the address a dial proved comes first: ${proven}`)

      // records with empty and oversized fields, each otherwise valid (a fresh, real peer id
      // where the id is not the bad field): all dropped, no throw, the honest peer untouched
      const freshId = async (): Promise<string> => peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
      const port = String(deadPort)
      const badRecords: Array<{ what: string, view: ServiceRecordView, id?: string }> = []
      for (const [what, peer] of [['empty peer id', ''], ['200-byte peer id', 'x'.repeat(200)], ['oversized peer id', `12D3KooW${'A'.repeat(4_000)}`]] as const) {
        badRecords.push({ what, view: record(peer, fleet, deadPort) })
      }
      const txtCases: Array<[string, Record<string, string>]> = [
        ['empty role', { role: '' }], ['oversized role', { role: 'agent'.repeat(100) }],
        ['oversized name', { name: 'n'.repeat(10_000) }], ['oversized version', { ver: 'v'.repeat(10_000) }],
        ['empty port', { port: '' }], ['port 0', { port: '0' }], ['port above 65535', { port: '99999' }], ['oversized port', { port: '9'.repeat(300) }]
      ]
      for (const [what, txt] of txtCases) {
        const id = await freshId()
        const view = record(id, fleet, deadPort)
        badRecords.push({ what, id, view: { ...view, txt: { ...(view.txt as Record<string, string>), ...txt }, port: txt.port === undefined ? deadPort : Number(txt.port) } })
      }
      for (const [what, addresses] of [['no addresses', []], ['an empty address', ['']], ['an oversized address', ['1'.repeat(10_000)]]] as const) {
        const id = await freshId()
        badRecords.push({ what, id, view: { ...record(id, fleet, deadPort), addresses: [...addresses] } })
      }
      const sizeBefore = table.size
      for (const bad of badRecords) {
        assert.doesNotThrow(() => { discovery.onRecord(bad.view) }, bad.what)
        if (bad.id !== undefined) assert.equal(table.get(bad.id), undefined, `${bad.what}: the record was taken`)
      }
      assert.equal(table.size, sizeBefore, 'no bad record entered the peer table')
      assert.equal(table.get(honest.peerId)?.addrs[0]?.toString(), proven)
      // the control: the same record with sane fields is taken (the checks above are not
      // vacuous); one listing 1,000 addresses is taken with the first few only
      const control = await freshId()
      discovery.onRecord({ ...record(control, fleet, Number(port)), addresses: Array.from({ length: 1000 }, (_, i) => `198.18.0.${i % 250 + 1}`) })
      const taken = table.get(control)
      assert.ok(taken !== undefined, 'a sane record is taken')
      assert.ok(taken.addrs.length <= RECORD_LIMITS.maxAddrs, `${taken.addrs.length} addresses kept`)

      // the flood: 10,000 fake agents plus 2,000 more, and a forged record for the honest id
      const t0 = Date.now()
      const keys = await Promise.all(Array.from({ length: FAKES + 2_000 }, async () => await generateKeyPair('Ed25519')))
      const heapBefore = process.memoryUsage().heapUsed
      for (const key of keys) discovery.onRecord(record(peerIdFromPrivateKey(key).toString(), fleet, deadPort))
      discovery.onRecord(record(honest.peerId, fleet, deadPort, 'manager', '127.0.0.2'))
      assert.ok(table.size <= PEER_TABLE_DEFAULTS.maxPeers, `the table holds ${table.size} peers, above its bound`)
      const honestNow = table.get(honest.peerId)
      assert.ok(honestNow !== undefined, 'the honest agent (it answered) is not evicted by strangers')
      assert.equal(honestNow.role, 'agent', 'a record cannot change a known agent\'s role')
      assert.equal(honestNow.addrs[0]?.toString(), proven, 'the forged address does not displace the proven one')
      assert.ok(honestNow.addrs.some(a => a.toString().includes('127.0.0.2')), 'the new address is kept behind it, untried')
      assert.ok(process.memoryUsage().heapUsed - heapBefore < 200 * 1024 * 1024, 'bounded memory')

      // more data on the honest agent: backed up on time despite the flood
      const second = new MemoryAgent(honest.node, 2, 2, 2) // only to make a fresh set (id 2)
      honest.set = second.set
      for (const [k, v] of second.chunks) honest.chunks.set(k, v)
      const before = catalog.snapshotCount()
      await until('the honest agent backed up again despite the flood', 60_000, async () => honest.set === undefined ? true : undefined)
      assert.equal(catalog.snapshotCount(), before + 1)
      const elapsedMs = Date.now() - t0
      const fakeDials = [...visits.entries()].filter(([id]) => id !== honest.peerId).reduce((n, [, c]) => n + c, 0)
      const allowed = DIAL_BUDGET_DEFAULTS.burst + Math.ceil(elapsedMs / 60_000 * DIAL_BUDGET_DEFAULTS.perMinute) + 2
      assert.ok(fakeDials <= allowed, `${fakeDials} dials to fake peers in ${elapsedMs} ms; the budget allows ${allowed}`)
      // on time: its next visit was due 20 s (the interval) after the first
      assert.ok(elapsedMs < 50_000, `the honest agent's second backup took ${elapsedMs} ms after the flood began`)
    } finally {
      controller.abort()
      await loop.catch(() => {})
      discovery.stop()
      await puller.close()
      packs.close()
      catalog.close()
    }
  })

  it('entries expire: an mDNS peer not seen within its TTL is dropped, a static one stays', () => {
    const clock = new ManualClock(1_000)
    const table = new PeerTable({ addressTtlMs: 60_000, peerTtlMs: 3_600_000 })
    const id = (n: number): string => `12D3KooW${'A'.repeat(40)}${n}`
    table.upsert({ peerId: id(1), addrs: [multiaddr('/ip4/127.0.0.1/tcp/1')], role: 'agent', version: '', name: '', source: 'mdns' }, clock.now())
    table.upsert({ peerId: id(2), addrs: [multiaddr('/ip4/127.0.0.1/tcp/2')], role: 'agent', version: '', name: '', source: 'static' }, clock.now())
    void clock.advance(3_600_001)
    table.expire(clock.now())
    assert.equal(table.get(id(1)), undefined)
    assert.ok(table.get(id(2)) !== undefined)
    assert.equal(table.size, 1)
  })
})
