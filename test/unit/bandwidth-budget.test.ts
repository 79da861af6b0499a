/**
 * The global bandwidth budget: split by weight among running pulls, rebalanced as pulls start
 * and end, per-endpoint caps (the rest goes to the others), a max-age pull's reduced share,
 * time-of-day profiles in the manager's local time, and the size/rate parser.
 */
import { strict as assert } from 'node:assert'
import { BandwidthBudget, parseBudgetProfiles, parseByteQuantity, parseRate, split, type RateTarget } from '../../src/roles/manager/scheduler/bandwidth-budget.js'
import { RateLimiter } from '../../src/util/rate-limiter.js'
import { ManualClock } from '../../src/util/clock.js'
import { holdfastCode } from './helpers.js'

class FakeTarget implements RateTarget {
  history: number[] = []
  setRate = (r: number): void => { this.history.push(r) }
  get rate (): number { return this.history.at(-1) ?? 0 }
}

const MBIT = 125_000

describe('bandwidth budget', () => {
  it('parses sizes and rates: bits decimal, bytes binary or decimal', () => {
    assert.equal(parseRate('20Mbit'), 20 * MBIT)
    assert.equal(parseRate('100Mbps'), 100 * MBIT)
    assert.equal(parseRate('10MiB/s'), 10 * 1024 * 1024)
    assert.equal(parseRate('1.5MB/s'), 1_500_000)
    assert.equal(parseRate('800'), 800)
    assert.equal(parseRate('0'), 0)
    assert.equal(parseByteQuantity('512KiB'), 512 * 1024)
    assert.equal(parseByteQuantity('2 GB'), 2e9)
    for (const bad of ['-5MiB', 'ten Mbit', '10 furlongs', '', '1e9', 'Mbit']) {
      assert.throws(() => parseRate(bad), holdfastCode('CONFIG_INVALID'), bad)
    }
  })

  it('splits B evenly among k pulls and rebalances on every start and end', () => {
    const clock = new ManualClock(0)
    const budget = new BandwidthBudget({ bytesPerSecond: 100 * MBIT, localOffsetMinutes: () => 0 }, clock.now)
    const t = [new FakeTarget(), new FakeTarget(), new FakeTarget(), new FakeTarget()]
    const a = budget.attach('a', t[0] as FakeTarget)
    assert.equal(t[0]?.rate, 100 * MBIT, 'alone, a pull gets all of B')
    const b = budget.attach('b', t[1] as FakeTarget)
    assert.deepEqual([t[0]?.rate, t[1]?.rate], [50 * MBIT, 50 * MBIT])
    budget.attach('c', t[2] as FakeTarget)
    budget.attach('d', t[3] as FakeTarget)
    assert.deepEqual(t.map(x => x.rate), [25, 25, 25, 25].map(n => n * MBIT))
    b.release()
    assert.deepEqual([t[0], t[2], t[3]].map(x => x?.rate), [1, 1, 1].map(() => Math.floor(100 * MBIT / 3)), 'the ended pull\'s share goes to the others at once')
    a.release()
    assert.deepEqual([t[2], t[3]].map(x => x?.rate), [50 * MBIT, 50 * MBIT])
    a.release() // twice is harmless
    assert.equal(budget.active, 2)
  })

  it('a real RateLimiter follows the budget', () => {
    const clock = new ManualClock(0)
    const budget = new BandwidthBudget({ bytesPerSecond: 1_000_000 }, clock.now)
    const l1 = new RateLimiter(1, clock)
    const l2 = new RateLimiter(1, clock)
    budget.attach('a', l1)
    const s2 = budget.attach('b', l2)
    assert.equal(l1.rate, 500_000)
    s2.release()
    assert.equal(l1.rate, 1_000_000)
  })

  it('weights, caps (the capped share goes to the others) and the max-age fraction', () => {
    assert.deepEqual(split(90, [{ weight: 1, cap: 0 }, { weight: 2, cap: 0 }]), [30, 60])
    assert.deepEqual(split(100, [{ weight: 1, cap: 10 }, { weight: 1, cap: 0 }, { weight: 1, cap: 0 }]), [10, 45, 45])
    assert.deepEqual(split(100, [{ weight: 1, cap: 10 }, { weight: 1, cap: 20 }]), [10, 20], 'all capped: the rest stays unused')
    const clock = new ManualClock(0)
    const budget = new BandwidthBudget({ bytesPerSecond: 100 * MBIT }, clock.now)
    const capped = new FakeTarget()
    const other = new FakeTarget()
    budget.attach('capped', capped, { cap: 5 * MBIT })
    const o = budget.attach('other', other)
    assert.deepEqual([capped.rate, other.rate], [5 * MBIT, 95 * MBIT])
    o.setFraction(0.25)
    assert.equal(other.rate, Math.floor(95 * MBIT * 0.25), 'a max-age pull uses a fraction of its share')
    assert.equal(capped.rate, 5 * MBIT, 'and leaves the rest unused rather than to a capped peer')
  })

  it('profiles by time of day in the manager\'s local time; a boundary is noticed on the next tick', async () => {
    const nine = Date.UTC(2025, 5, 2, 9, 0) // a Monday, 09:00 UTC = 11:00 at UTC+2
    const clock = new ManualClock(nine)
    const profiles = parseBudgetProfiles({ '08:00-18:00': '20Mbit', '18:00-08:00': '100Mbit' })
    const budget = new BandwidthBudget({ bytesPerSecond: 1, profiles, localOffsetMinutes: () => 120 }, clock.now)
    const t = new FakeTarget()
    budget.attach('a', t)
    assert.equal(t.rate, 20 * MBIT, 'office hours at the manager')
    await clock.advance(6 * 3_600_000 + 59 * 60_000) // 17:59 local
    assert.equal(budget.changed(), false)
    await clock.advance(60_000) // 18:00 local
    assert.equal(budget.changed(), true)
    budget.rebalance()
    assert.equal(t.rate, 100 * MBIT)
    const weekdays = parseBudgetProfiles({ 'Sat-Sun all': '100Mbit', 'Mon-Fri 08:00-18:00': '0' })
    const paused = new BandwidthBudget({ bytesPerSecond: 50 * MBIT, profiles: weekdays, localOffsetMinutes: () => 0 }, () => nine)
    assert.equal(paused.total(), 0, 'a profile may pause pulls')
    assert.equal(paused.total(Date.UTC(2025, 5, 2, 20)), 50 * MBIT, 'outside every profile: the default')
    assert.throws(() => parseBudgetProfiles({ '08:00-18:00': '-1Mbit' }), holdfastCode('CONFIG_INVALID'))
    assert.throws(() => parseBudgetProfiles({ '8-18': '1Mbit' }), holdfastCode('CONFIG_INVALID'))
  })
})
