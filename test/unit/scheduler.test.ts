/**
 * The pull scheduler with a ManualClock and a fake visit (the real puller is covered by the
 * integration tests): at most k at once, round-robin with jitter, backoff, fairness through
 * time slices, the budget split among running visits, status that says why, and clock jumps.
 */
import { strict as assert } from 'node:assert'
import { multiaddr } from '@multiformats/multiaddr'
import { PeerTable, type PeerRecord } from '../../src/roles/manager/peer-table.js'
import { Scheduler, type VisitContext, type VisitOutcome } from '../../src/roles/manager/scheduler/scheduler.js'
import { BandwidthBudget } from '../../src/roles/manager/scheduler/bandwidth-budget.js'
import { ManualClock } from '../../src/util/clock.js'
import { silentLogger } from '../../src/util/log.js'
import { makeRng } from './helpers.js'

const INTERVAL = 60_000
const ID = (i: number): string => `12D3KooWPeer${String(i).padStart(4, '0')}`

function table (n: number, clock: ManualClock): PeerTable {
  const t = new PeerTable({ addressTtlMs: 24 * 3_600_000 })
  for (let i = 0; i < n; i++) {
    // endpoints that answered before (as a fleet's are): the dial budget for strangers is
    // discovery-flood.test.ts's subject, not these tests'
    t.upsert({ peerId: ID(i), addrs: [multiaddr(`/ip4/127.0.0.1/tcp/${4000 + i}`)], role: 'agent', version: '1', name: `host${i}`, source: 'mdns' }, clock.now() + i).record.lastContact = clock.now()
  }
  return t
}

/**
 * A fake visit: each peer has `work` slices of 10 s to do; a visit works until done or its
 * slice ends, taking time on the ManualClock. Records who ran when, and the most at once.
 */
class FakeVisits {
  running = 0
  maxRunning = 0
  log: Array<{ peer: string, start: number, end: number }> = []
  rates: Array<{ peer: string, rate: number }> = []
  work = new Map<string, number>()
  fail = new Map<string, 'unreachable' | 'error'>()
  skip = new Set<string>()
  constructor (private readonly clock: ManualClock) {}

  visit = async (peer: PeerRecord, ctx: VisitContext): Promise<VisitOutcome> => {
    this.running++
    this.maxRunning = Math.max(this.maxRunning, this.running)
    const start = this.clock.now()
    try {
      const failure = this.fail.get(peer.peerId)
      if (failure !== undefined) return { kind: 'failed', failure, error: `fake ${failure}` }
      if (this.skip.has(peer.peerId)) return { kind: 'skipped', reason: 'outside-window-not-idle', detail: 'not idle (fake)', nothingPending: false }
      this.rates.push({ peer: peer.peerId, rate: ctx.limiter.rate })
      let left = this.work.get(peer.peerId) ?? 0
      if (left <= 0) left = 1 // a visit always has a set to pull
      while (left > 0) {
        await this.clock.sleep(10_000, ctx.signal) // one set
        left--
        if (this.clock.now() >= ctx.sliceEndsAt) break
      }
      this.work.set(peer.peerId, left)
      return { kind: 'pulled', mode: 'idle', more: left > 0, bytesPulled: 0, snapshots: 1 }
    } finally {
      this.running--
      this.log.push({ peer: peer.peerId, start, end: this.clock.now() })
    }
  }
}

function makeScheduler (clock: ManualClock, peers: PeerTable, fake: FakeVisits, over: Partial<ConstructorParameters<typeof Scheduler>[0]> = {}): { s: Scheduler, budget: BandwidthBudget } {
  const budget = new BandwidthBudget({ bytesPerSecond: 1_000_000 }, clock.now)
  const s = new Scheduler({ clock, table: peers, visit: fake.visit, budget, log: silentLogger, maxConcurrent: 4, intervalMs: INTERVAL, sliceMs: 30_000, maxAgeMs: 24 * 3_600_000, random: (r => () => r(1000) / 1000)(makeRng(7)), ...over })
  return { s, budget }
}

/** Lets running visits finish (advancing the clock), bounded. */
async function finish (clock: ManualClock, s: Scheduler): Promise<void> {
  for (let i = 0; i < 10_000 && s.activeVisits > 0; i++) await clock.advance(1000)
  assert.equal(s.activeVisits, 0, 'visits finished')
  await s.drain()
}

/** Ticks once a simulated second for `ms`, letting visits run. */
async function runFor (clock: ManualClock, s: Scheduler, ms: number): Promise<void> {
  for (let t = 0; t < ms; t += 1000) {
    s.tick()
    await clock.advance(1000)
  }
}

describe('Scheduler', () => {
  it('never runs more than k visits at once, and visits every due peer', async () => {
    const clock = new ManualClock(1_000_000)
    const peers = table(10, clock)
    const fake = new FakeVisits(clock)
    const { s } = makeScheduler(clock, peers, fake, { maxConcurrent: 3 })
    await runFor(clock, s, 50_000)
    assert.equal(fake.maxRunning, 3)
    assert.deepEqual(new Set(fake.log.map(l => l.peer)), new Set(peers.agents().map(p => p.peerId)))
    await finish(clock, s)
  })

  it('peers that never answered get at most half the slots and a bounded trickle of dials', async () => {
    const clock = new ManualClock(1_000_000)
    const peers = table(2, clock)
    // twenty strangers (records anyone could send) that never answer a dial
    for (let i = 100; i < 120; i++) peers.upsert({ peerId: ID(i), addrs: [multiaddr(`/ip4/127.0.0.1/tcp/${4000 + i}`)], role: 'agent', version: '1', name: `fake${i}`, source: 'mdns' }, clock.now())
    const fake = new FakeVisits(clock)
    let strangersAtOnce = 0
    let strangersRunning = 0
    const visit = fake.visit
    fake.visit = async (peer, ctx) => {
      if (!peer.name.startsWith('fake')) return await visit(peer, ctx)
      strangersRunning++
      strangersAtOnce = Math.max(strangersAtOnce, strangersRunning)
      try {
        await clock.sleep(5_000, ctx.signal) // a dial that times out
        return { kind: 'failed', failure: 'unreachable', error: 'fake unreachable' }
      } finally { strangersRunning-- }
    }
    const { s } = makeScheduler(clock, peers, fake, { maxConcurrent: 4, dialBudget: { perMinute: 6, burst: 2 } })
    await runFor(clock, s, 60_000)
    assert.ok(strangersAtOnce <= 2, `strangers held ${strangersAtOnce} of 4 slots at once`)
    const honest = fake.log.filter(l => l.peer === ID(0) || l.peer === ID(1))
    assert.ok(honest.length >= 2 && honest.every(l => l.start < 1_000_000 + 10_000), 'the two known endpoints were visited at once')
    await finish(clock, s)
  })

  it('splits the budget among the running visits', async () => {
    const clock = new ManualClock(0)
    const peers = table(2, clock)
    const fake = new FakeVisits(clock)
    const { s } = makeScheduler(clock, peers, fake, { maxConcurrent: 2, random: () => 0 })
    s.tick()
    // both start in the same tick: the first saw the whole budget, and both now hold half
    assert.equal(fake.rates.length, 2)
    assert.equal(fake.rates[1]?.rate, 500_000)
    const pulling = peers.agents().map(p => s.status(p).schedule)
    assert.deepEqual(pulling.map(x => x.state === 'pulling' ? x.rate : -1), [500_000, 500_000])
    await clock.advance(20_000)
    await finish(clock, s)
  })

  it('round-robin with jitter: next visits spread over the interval, in turn', async () => {
    const clock = new ManualClock(0)
    const peers = table(8, clock)
    const fake = new FakeVisits(clock)
    const { s } = makeScheduler(clock, peers, fake, { maxConcurrent: 8, jitterFraction: 0.2 })
    await runFor(clock, s, 3 * INTERVAL)
    const byPeer = new Map<string, number[]>()
    for (const l of fake.log) byPeer.set(l.peer, [...(byPeer.get(l.peer) ?? []), l.start])
    // every peer visited repeatedly; gaps between its visits are interval + (10 s visit) + jitter
    const gaps: number[] = []
    for (const starts of byPeer.values()) {
      assert.ok(starts.length >= 2, 'each peer visited more than once')
      for (let i = 1; i < starts.length; i++) gaps.push((starts[i] as number) - (starts[i - 1] as number))
    }
    for (const g of gaps) assert.ok(g >= INTERVAL + 10_000 && g <= INTERVAL + 10_000 + 0.2 * INTERVAL + 1000, `gap ${g}`)
    assert.ok(new Set(gaps).size > 1, 'jitter: not all peers on the same beat')
    const secondRound = [...byPeer.values()].map(v => v[1] as number)
    assert.ok(new Set(secondRound).size > 1, 'the fleet does not move in lockstep')
  })

  it('a huge first backup does not starve the others: slices, back of the queue, then resume', async () => {
    const clock = new ManualClock(0)
    const peers = table(4, clock)
    const fake = new FakeVisits(clock)
    const huge = ID(0)
    fake.work.set(huge, 12) // 12 sets = 120 s of pulling
    const { s } = makeScheduler(clock, peers, fake, { maxConcurrent: 1, sliceMs: 30_000, random: () => 0 })
    await runFor(clock, s, 200_000)
    await finish(clock, s)
    const order = fake.log.map(l => l.peer)
    const firstOthers = [ID(1), ID(2), ID(3)].map(p => order.indexOf(p))
    const secondHuge = order.indexOf(huge, order.indexOf(huge) + 1)
    assert.equal(order[0], huge, 'the huge one was found first')
    assert.ok(firstOthers.every(i => i >= 0 && i < secondHuge), `every other peer had a turn before the huge one's second slice: ${order.join(' ')}`)
    const hugeVisits = fake.log.filter(l => l.peer === huge)
    for (const v of hugeVisits) assert.ok(v.end - v.start <= 30_000, 'each turn ends at its slice')
    assert.equal(fake.work.get(huge), 0, 'and it resumed until done')
    assert.ok(hugeVisits.length >= 4)
  })

  it('backs off a failing peer exponentially up to the cap, and reports why', async () => {
    const clock = new ManualClock(0)
    const peers = table(2, clock)
    const fake = new FakeVisits(clock)
    fake.fail.set(ID(0), 'error')
    const { s } = makeScheduler(clock, peers, fake, { random: () => 0 })
    await runFor(clock, s, 8 * 3_600_000 / 60) // 8 simulated minutes at 1 s ticks
    const failing = fake.log.filter(l => l.peer === ID(0)).map(l => l.start)
    const gaps = failing.slice(1).map((t, i) => t - (failing[i] as number))
    // (one tick of slack: a failure is settled on the tick after it happened)
    assert.ok(gaps[0] !== undefined && gaps[0] >= INTERVAL && gaps[0] <= INTERVAL + 1000, `first retry after ${String(gaps[0])}`)
    assert.ok(gaps[1] !== undefined && gaps[1] >= 2 * INTERVAL && gaps[1] <= 2 * INTERVAL + 1000, `second retry after ${String(gaps[1])}`)
    const st = s.status(peers.get(ID(0)) as PeerRecord)
    assert.equal(st.schedule.state, 'backing-off')
    assert.ok(st.schedule.state === 'backing-off' && st.schedule.error === 'fake error' && st.schedule.failures === failing.length)
    // the cap: failures far in, the delay is at most an hour
    const peer = peers.get(ID(0)) as PeerRecord
    for (let i = 0; i < 20; i++) peers.recordFailure(peer, 'error', clock.now(), INTERVAL)
    assert.ok(peer.nextAttemptAt - clock.now() <= 3_600_000)
    assert.equal(s.status(peers.get(ID(1)) as PeerRecord).schedule.state, 'scheduled', 'the healthy peer is simply scheduled')
    await finish(clock, s)
  })

  it('says why a peer is not backed up: not idle outside its window, waiting for a slot, budget paused', async () => {
    const clock = new ManualClock(0)
    const peers = table(3, clock)
    const fake = new FakeVisits(clock)
    fake.skip.add(ID(0))
    fake.work.set(ID(1), 5)
    const { s } = makeScheduler(clock, peers, fake, { maxConcurrent: 1, random: () => 0, sliceMs: 1e9 })
    s.tick()
    await clock.advance(0)
    await runFor(clock, s, 2_000)
    const st = (i: number): string => s.status(peers.get(ID(i)) as PeerRecord).schedule.state
    assert.equal(st(0), 'not-uploading')
    const why = s.status(peers.get(ID(0)) as PeerRecord).schedule
    assert.ok(why.state === 'not-uploading' && why.detail.includes('not idle'))
    assert.equal(st(1), 'pulling')
    assert.equal(st(2), 'waiting-for-slot')
    await finish(clock, s)
    const paused = makeScheduler(clock, table(1, clock), new FakeVisits(clock), { random: () => 0 })
    const budget = new BandwidthBudget({ bytesPerSecond: 1, profiles: [{ windows: { spec: 'all', rules: [{ days: new Set([0, 1, 2, 3, 4, 5, 6]), start: 0, end: 1440 }] }, bytesPerSecond: 0 }] }, clock.now)
    const s2 = new Scheduler({ clock, table: table(1, clock), visit: new FakeVisits(clock).visit, budget, log: silentLogger, maxConcurrent: 1, intervalMs: INTERVAL, sliceMs: 1000, maxAgeMs: 0, random: () => 0 })
    s2.tick()
    assert.equal(s2.activeVisits, 0)
    assert.equal(s2.status(table(1, clock).agents()[0] as PeerRecord).schedule.state, 'budget-exhausted')
    await finish(clock, paused.s)
  })

  it('a clock that jumps back or forward does not wedge it', async () => {
    const clock = new ManualClock(10 * 86_400_000)
    const peers = table(2, clock)
    const fake = new FakeVisits(clock)
    const { s } = makeScheduler(clock, peers, fake, { random: () => 0 })
    await runFor(clock, s, 20_000)
    const before = fake.log.length
    assert.equal(before, 2)
    await clock.advance(-86_400_000) // a day back
    await runFor(clock, s, INTERVAL + 20_000)
    assert.equal(fake.log.length, 4, 'visited again within an interval of the new now, not a day later')
    const p = peers.get(ID(0)) as PeerRecord
    const st = s.status(p)
    assert.ok(st.lastGoodAt !== undefined && st.lastGoodAt <= clock.now(), 'no last backup in the future')
    await clock.advance(30 * 86_400_000) // a month forward
    assert.equal(s.status(p).overdue, true)
    // mDNS re-announces live peers every few seconds; the month without a record expired them
    for (let i = 0; i < 2; i++) peers.upsert({ peerId: ID(i), addrs: [multiaddr(`/ip4/127.0.0.1/tcp/${4000 + i}`)], role: 'agent', version: '1', name: `host${i}`, source: 'mdns' }, clock.now())
    await runFor(clock, s, 20_000)
    assert.equal(fake.log.length, 6, 'everyone due at once, visited, no more than k')
    assert.ok(fake.maxRunning <= 4)
    await finish(clock, s)
  })

  it('backup-now visits every agent once, k at a time, even those backing off', async () => {
    const clock = new ManualClock(0)
    const peers = table(6, clock)
    const fake = new FakeVisits(clock)
    const { s } = makeScheduler(clock, peers, fake, { maxConcurrent: 2, random: () => 0 })
    const p0 = peers.get(ID(0)) as PeerRecord
    peers.recordFailure(p0, 'error', clock.now(), INTERVAL)
    for (let i = 0; i < 6; i++) fake.work.set(ID(i), 5) // more than one slice each
    const done = s.visitNow(peers.agents())
    let results: Awaited<typeof done> | undefined
    void done.then(r => { results = r })
    for (let i = 0; i < 400 && results === undefined; i++) { s.tick(); await clock.advance(1000) }
    assert.ok(results !== undefined, 'backup-now finished')
    assert.equal(results.length, 6)
    assert.ok(results.every(r => r.outcome.kind === 'pulled' && !r.outcome.more), 'each pulled to the end: no slicing for an admin')
    assert.ok(fake.maxRunning <= 2)
    await finish(clock, s)
  })
})
