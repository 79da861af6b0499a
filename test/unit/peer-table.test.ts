/**
 * The manager's peer table after restarts (issue 8): addresses are learned, merged, forgotten
 * and expired; an unreachable peer is retried soon and never backs off past the pull
 * interval; a fresh record for a backed-off peer makes it due at once. Time is a ManualClock.
 */
import { strict as assert } from 'node:assert'
import { multiaddr } from '@multiformats/multiaddr'
import { PeerTable, UNREACHABLE_FIRST_RETRY_MS } from '../../src/roles/manager/peer-table.js'
import type { DiscoveredPeer } from '../../src/node/discovery.js'
import { ManualClock } from '../../src/util/clock.js'

const PEER = '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'
const at = (port: number): ReturnType<typeof multiaddr> => multiaddr(`/ip4/127.0.0.1/tcp/${port}/p2p/${PEER}`)
const found = (port: number, source: DiscoveredPeer['source'] = 'mdns'): DiscoveredPeer =>
  ({ peerId: PEER, addrs: [at(port)], role: 'agent', version: '0.1.0', name: 'laptop', source })

describe('PeerTable: addresses and backoff across restarts', () => {
  it('a restarted agent\'s new address is dialled first, and the old one expires', async () => {
    const clock = new ManualClock(1_000)
    const table = new PeerTable({ addressTtlMs: 120_000 })
    table.upsert(found(4001), clock.now())
    await clock.advance(30_000)
    const r = table.upsert(found(4002), clock.now())
    assert.equal(r.newAddress, true)
    assert.deepEqual(r.record.addrs.map(String), [at(4002), at(4001)].map(String), 'newest first, old kept until it expires')
    // the live agent answers every re-query; the old address is never announced again
    for (let i = 0; i < 5; i++) { await clock.advance(30_000); table.upsert(found(4002), clock.now()) }
    table.expire(clock.now())
    assert.deepEqual(table.get(PEER)?.addrs.map(String), [at(4002)].map(String))
  })

  it('the newest address survives expiry when nothing fresher came; static addresses never expire', async () => {
    const clock = new ManualClock(0)
    const table = new PeerTable({ addressTtlMs: 60_000 })
    table.upsert(found(5000, 'static'), clock.now())
    table.upsert(found(4001), clock.now())
    await clock.advance(3_600_000)
    table.expire(clock.now())
    assert.deepEqual(new Set(table.get(PEER)?.addrs.map(String)), new Set([at(5000), at(4001)].map(String)))
  })

  it('a goodbye forgets the address it names', () => {
    const table = new PeerTable({ addressTtlMs: 60_000 })
    table.upsert(found(4001), 0)
    table.upsert(found(4002), 1)
    table.forget(PEER, [at(4001)])
    assert.deepEqual(table.get(PEER)?.addrs.map(String), [at(4002)].map(String))
  })

  it('an unreachable peer is retried within seconds and never waits longer than the pull interval', () => {
    const table = new PeerTable({ addressTtlMs: 60_000 })
    const peer = table.upsert(found(4001), 0).record
    const interval = 60_000
    const delays: number[] = []
    for (let i = 0; i < 12; i++) delays.push(table.recordFailure(peer, 'unreachable', 0, interval))
    assert.equal(delays[0], UNREACHABLE_FIRST_RETRY_MS)
    assert.ok(delays[0] <= 5_000, 'the first retry is a few seconds away')
    assert.ok(delays.every(d => d <= interval), `never past the interval: ${delays.join(',')}`)
    assert.equal(delays[11], interval)
  })

  it('a failed conversation still backs off exponentially, up to an hour', () => {
    const table = new PeerTable({ addressTtlMs: 60_000 })
    const peer = table.upsert(found(4001), 0).record
    const delays: number[] = []
    for (let i = 0; i < 12; i++) delays.push(table.recordFailure(peer, 'error', 0, 60_000))
    assert.deepEqual(delays.slice(0, 3), [60_000, 120_000, 240_000])
    assert.equal(delays[11], 3_600_000)
  })

  it('a fresh record of a backed-off peer makes it due now; a repeat of a known address does not', async () => {
    const clock = new ManualClock(0)
    const table = new PeerTable({ addressTtlMs: 600_000 })
    const peer = table.upsert(found(4001), clock.now()).record
    for (let i = 0; i < 7; i++) table.recordFailure(peer, 'error', clock.now(), 60_000)
    const backedOff = peer.nextAttemptAt
    assert.ok(backedOff > clock.now() + 60 * 60_000 - 1)
    await clock.advance(10_000)
    table.upsert(found(4001), clock.now())
    assert.equal(peer.nextAttemptAt, backedOff, 'the same record again changes nothing')
    table.upsert(found(4002), clock.now())
    assert.equal(peer.nextAttemptAt, 0, 'a new address: due now')
    assert.equal(table.nextRetryAt(), 0, 'and the scheduler sees it as a due retry')
    assert.equal(table.recordFailure(peer, 'unreachable', clock.now(), 60_000), UNREACHABLE_FIRST_RETRY_MS * 2, 'its backoff starts over')
  })
})
