/**
 * Fleet health (issue 9 items 4 and 5): the overdue flag and the state and "why" an endpoint
 * is shown with, the table `holdfast peers` prints, peers added by hand (persisted in a real
 * file, taken out of the peer table again), the metrics listen address, and a laptop that
 * comes back on a new address while overdue being visited at once (ManualClock, no sleeps).
 */
import { strict as assert } from 'node:assert'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { endpointHealth, type HealthInput } from '../../src/roles/manager/health/fleet-health.js'
import { renderPeers, parseOverdueAfter } from '../../src/cli/commands/peers.js'
import { StaticPeerFile, parseStaticPeer } from '../../src/roles/manager/static-peers.js'
import { PeerTable, type PeerRecord } from '../../src/roles/manager/peer-table.js'
import { Scheduler, type PeerScheduleStatus, type VisitOutcome } from '../../src/roles/manager/scheduler/scheduler.js'
import { BandwidthBudget } from '../../src/roles/manager/scheduler/bandwidth-budget.js'
import { parseListenAddress } from '../../src/model/listen-address.js'
import { ManualClock } from '../../src/util/clock.js'
import { silentLogger } from '../../src/util/log.js'
import type { PeerListRow } from '../../src/admin/api.js'

const H = 3_600_000
const NOW = 1_800_000_000_000
const PEER = '12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf'

function status (schedule: PeerScheduleStatus['schedule'], lastGoodAt?: number): PeerScheduleStatus {
  return { schedule, lastGoodAt, overdue: false }
}

function input (over: Partial<HealthInput>): HealthInput {
  return { addrs: 1, firstSeen: NOW - 100 * H, failures: 0, rate: 0, ...over }
}

describe('fleet health', () => {
  it('flags an endpoint overdue past the threshold, from its last good backup or, never backed up, from first sight', () => {
    const at = (lastGoodAt: number | undefined, threshold: number, storeLastBackup?: number): boolean =>
      endpointHealth(input({ schedule: status({ state: 'scheduled', nextAt: NOW + 60_000 }, lastGoodAt), storeLastBackup }), NOW, threshold).overdue
    assert.equal(at(NOW - 47 * H, 48 * H), false)
    assert.equal(at(NOW - 49 * H, 48 * H), true)
    assert.equal(at(NOW - 49 * H, 0), false, '0 turns the flag off')
    // the store's last snapshot stands in after a restart; the newer of the two counts
    assert.equal(at(undefined, 48 * H, NOW - H), false)
    assert.equal(at(NOW - 49 * H, 48 * H, NOW - H), false)
    // never backed up: overdue once it has been known for longer than the threshold
    assert.equal(endpointHealth(input({ firstSeen: NOW - 49 * H, schedule: status({ state: 'scheduled', nextAt: NOW }) }), NOW, 48 * H).overdue, true)
    assert.equal(endpointHealth(input({ firstSeen: NOW - H, schedule: status({ state: 'scheduled', nextAt: NOW }) }), NOW, 48 * H).overdue, false)
    const h = endpointHealth(input({ schedule: status({ state: 'scheduled', nextAt: NOW }, NOW - 2 * H) }), NOW, 48 * H)
    assert.equal(h.lastGoodAgeMs, 2 * H)
  })

  it('says what state an endpoint is in and why it is not being backed up', () => {
    const h = (schedule: PeerScheduleStatus['schedule'], over: Partial<HealthInput> = {}): ReturnType<typeof endpointHealth> =>
      endpointHealth(input({ schedule: status(schedule), ...over }), NOW, 48 * H)
    const pulling = h({ state: 'pulling', since: NOW - 1000, rate: 500_000, mode: 'idle', forced: false }, { rate: 480_000 })
    assert.deepEqual([pulling.state, pulling.rate, pulling.targetRate, pulling.why], ['backing up', 480_000, 500_000, undefined])
    const window = h({ state: 'not-uploading', reason: 'outside-window-not-idle', detail: "not idle, and outside its upload window 'Mon-Fri 18:00-07:00'", nextAt: NOW + 60_000 })
    assert.equal(window.state, 'waiting')
    assert.equal(window.reason, 'not-uploading')
    assert.match(window.why ?? '', /not idle, and outside its upload window 'Mon-Fri 18:00-07:00'; asked again in 1m/)
    const budget = h({ state: 'budget-exhausted' })
    assert.deepEqual([budget.state, budget.reason], ['waiting', 'budget-exhausted'])
    assert.match(budget.why ?? '', /budget is exhausted/)
    const erring = h({ state: 'backing-off', error: 'FRAME_MALFORMED: bad frame', failures: 3, nextAt: NOW + 120_000 }, { failures: 3, lastFailure: 'error' })
    assert.deepEqual([erring.state, erring.reason], ['waiting', 'backing-off'])
    assert.match(erring.why ?? '', /backing off after an error \(3 in a row\), retry in 2m: FRAME_MALFORMED: bad frame/)
    const gone = h({ state: 'backing-off', error: 'ECONNREFUSED: connect refused', failures: 2, nextAt: NOW + 4000 }, { failures: 2, lastFailure: 'unreachable' })
    assert.deepEqual([gone.state, gone.reason], ['offline', 'unreachable'])
    assert.match(gone.why ?? '', /unreachable \(2 tries\), retry in 4s: ECONNREFUSED/)
    const full = h({ state: 'backing-off', error: 'STORE_FULL: no space', failures: 1, nextAt: NOW + 60_000 }, { failures: 1, lastFailure: 'local' })
    assert.deepEqual([full.state, full.reason], ['waiting', 'store-full'])
    const noAddr = h({ state: 'unreachable', error: 'ETIMEDOUT' }, { addrs: 0, lastError: 'ETIMEDOUT' })
    assert.deepEqual([noAddr.state, noAddr.why], ['offline', 'no address known; last error: ETIMEDOUT'])
    const slot = h({ state: 'waiting-for-slot', since: NOW - 30_000 })
    assert.deepEqual([slot.state, slot.reason], ['waiting', 'waiting-for-slot'])
    const fine = h({ state: 'scheduled', nextAt: NOW + 300_000 })
    assert.deepEqual([fine.state, fine.reason, fine.why], ['online', 'up-to-date', 'up to date; next visit in 5m'])
  })

  it('renders the table with state, last seen, last good backup and age, bytes waiting, rate, overdue and why', () => {
    const row = (name: string, health: ReturnType<typeof endpointHealth>, pendingBytes?: number): PeerListRow =>
      ({ peerId: `${PEER.slice(0, -4)}${name.slice(0, 4).padEnd(4, 'x')}`, name, role: 'agent', version: '0.1.0', addresses: [], source: 'mdns', lastSeen: NOW - 5000, pendingBytes, health })
    const rows = [
      row('desk', endpointHealth(input({ schedule: status({ state: 'pulling', since: NOW, rate: 1_048_576, mode: 'window', forced: false }, NOW - 3 * H), rate: 1_000_000 }), NOW, 48 * H), 5 * 1_048_576),
      row('laptop', endpointHealth(input({ failures: 4, lastFailure: 'unreachable', schedule: status({ state: 'backing-off', error: 'ECONNREFUSED: refused', failures: 4, nextAt: NOW + 16_000 }, NOW - 50 * H) }), NOW, 48 * H))
    ]
    const text = renderPeers(rows, NOW)
    const [head, desk, laptop] = text.split('\n')
    assert.match(head ?? '', /^NAME\s+PEER\s+STATE\s+LAST SEEN\s+LAST GOOD BACKUP\s+WAITING\s+RATE\s+OVERDUE\s+WHY NOT BACKING UP$/)
    assert.match(desk ?? '', /^desk .* backing up +5s ago +3\.0h ago +5\.0 MiB +976\.6 KiB\/s +pulling \(window\), budget 1\.0 MiB\/s$/)
    assert.match(laptop ?? '', /^laptop .* offline +5s ago +2\.1d ago +- +- +OVERDUE +unreachable \(4 tries\), retry in 16s: ECONNREFUSED: refused$/)
    // a TTY cuts long lines rather than wrapping them into an unreadable table
    for (const line of renderPeers(rows, NOW, 60).split('\n')) assert.ok(line.length <= 60, line)
    assert.equal(parseOverdueAfter('48h'), 48 * H)
    assert.equal(parseOverdueAfter('30min'), 1_800_000)
    assert.equal(parseOverdueAfter('1.5s'), 1500)
    assert.throws(() => parseOverdueAfter('48'), { code: 'ADMIN_BAD_REQUEST' })
  })

  it('keeps peers added by hand in a real file across a restart, and takes them out by id or address', () => {
    const dir = mkdtempSync(join(tmpdir(), 'holdfast-static-'))
    try {
      const a = `/ip4/198.18.0.7/tcp/4001/p2p/${PEER}`
      const f = new StaticPeerFile(dir)
      assert.deepEqual(f.list(), [])
      assert.equal(f.add(parseStaticPeer(a)), true)
      assert.equal(f.add(parseStaticPeer(a)), false, 'listed once')
      assert.deepEqual(new StaticPeerFile(dir).list(), [{ address: a, peerId: PEER }], 'read back by a new instance (a restart)')
      assert.deepEqual(f.remove(PEER).map(p => p.address), [a])
      assert.deepEqual(new StaticPeerFile(dir).list(), [])
      assert.throws(() => parseStaticPeer('/ip4/198.18.0.4/tcp/1'), { code: 'ADMIN_BAD_REQUEST', message: /names no peer/ })
      assert.throws(() => parseStaticPeer('not an address'), { code: 'ADMIN_BAD_REQUEST' })
      writeFileSync(join(dir, 'static-peers.json'), '{"peers": [42]}')
      assert.throws(() => new StaticPeerFile(dir), { code: 'CONFIG_INVALID' })
      assert.match(readFileSync(join(dir, 'static-peers.json'), 'utf8'), /42/)
      // the peer table: removing a hand-added peer drops it; one also found over mDNS stays
      const t = new PeerTable()
      t.upsert({ peerId: PEER, addrs: [multiaddr(a)], role: 'agent', version: '', name: '', source: 'static' }, 1)
      assert.equal(t.dropStatic(PEER), true)
      assert.equal(t.get(PEER), undefined)
      t.upsert({ peerId: PEER, addrs: [multiaddr(a)], role: 'agent', version: '', name: '', source: 'static' }, 1)
      t.upsert({ peerId: PEER, addrs: [multiaddr(`/ip4/198.18.0.8/tcp/4001/p2p/${PEER}`)], role: 'agent', version: '1', name: 'n', source: 'mdns' }, 2)
      t.dropStatic(PEER)
      assert.deepEqual(t.get(PEER)?.addrs.map(String), [`/ip4/198.18.0.8/tcp/4001/p2p/${PEER}`])
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('reads a metrics listen address, loopback for a bare port', () => {
    assert.deepEqual(parseListenAddress('9464'), { host: '127.0.0.1', port: 9464 })
    assert.deepEqual(parseListenAddress('0.0.0.0:9464'), { host: '0.0.0.0', port: 9464 })
    assert.deepEqual(parseListenAddress('[::1]:0'), { host: '::1', port: 0 })
    for (const bad of ['localhost:9464', '127.0.0.1', '198.18.0.4:70000', '']) assert.throws(() => parseListenAddress(bad), { code: 'CONFIG_INVALID' }, bad)
  })

  it('a laptop back on a new address while overdue is visited at once, not at the time set before it left', async () => {
    const interval = 6 * H
    const clock = new ManualClock(NOW)
    const table = new PeerTable({ addressTtlMs: 24 * H })
    const laptop = '12D3KooWLaptop'
    const desk = '12D3KooWDesk'
    table.upsert({ peerId: laptop, addrs: [multiaddr('/ip4/198.18.0.5/tcp/4001')], role: 'agent', version: '1', name: 'laptop', source: 'mdns' }, clock.now())
    table.upsert({ peerId: desk, addrs: [multiaddr('/ip4/198.18.0.6/tcp/4001')], role: 'agent', version: '1', name: 'desk', source: 'mdns' }, clock.now())
    const visits: Array<{ peer: string, at: number }> = []
    let laptopBusy = true
    const visit = async (peer: PeerRecord): Promise<VisitOutcome> => {
      visits.push({ peer: peer.peerId, at: clock.now() })
      // the laptop's user is at it: it may not upload (and it is not overdue yet)
      if (peer.peerId === laptop && laptopBusy) return { kind: 'skipped', reason: 'outside-window-not-idle', detail: 'not idle', nothingPending: false }
      return { kind: 'pulled', mode: 'idle', more: false, bytesPulled: 1, snapshots: 1 }
    }
    const s = new Scheduler({ clock, table, visit, budget: new BandwidthBudget({ bytesPerSecond: 1_000_000 }, clock.now), log: silentLogger, maxConcurrent: 4, intervalMs: interval, sliceMs: 60_000, maxAgeMs: 2 * H, random: () => 0 })
    const run = async (ms: number): Promise<void> => {
      for (let t = 0; t < ms; t += 1000) { s.tick(); await clock.advance(1000) }
    }
    await run(5_000)
    assert.deepEqual(visits.map(v => v.peer).sort(), [desk, laptop].sort(), 'both visited once')
    // the laptop leaves (lid shut) for three hours: past max-age, before its next visit is due
    await clock.advance(3 * H)
    laptopBusy = false
    const before = visits.length
    // it comes back on another address (new network, new DHCP lease); the manager tells the scheduler
    const back = table.upsert({ peerId: laptop, addrs: [multiaddr('/ip4/198.18.0.9/tcp/4001')], role: 'agent', version: '1', name: 'laptop', source: 'mdns' }, clock.now())
    assert.equal(back.newAddress, true)
    s.returned(back.record)
    const returnedAt = clock.now()
    await run(3_000)
    const laptopVisits = visits.slice(before).filter(v => v.peer === laptop)
    assert.equal(laptopVisits.length, 1, 'visited once it was back')
    assert.ok((laptopVisits[0]?.at ?? Infinity) - returnedAt <= 2_000, 'within two seconds of its return')
    // the desk, backed up and not overdue, keeps its time
    assert.deepEqual(visits.slice(before).filter(v => v.peer === desk), [])
    // and a peer that missed nothing is not pulled early by a new address
    const deskBack = table.upsert({ peerId: desk, addrs: [multiaddr('/ip4/198.18.0.10/tcp/4001')], role: 'agent', version: '1', name: 'desk', source: 'mdns' }, clock.now())
    const deskRecord = deskBack.record
    s.returned(deskRecord)
    await run(3_000)
    assert.equal(s.status(deskRecord).schedule.state, 'scheduled')
    await s.drain()
  })
})
