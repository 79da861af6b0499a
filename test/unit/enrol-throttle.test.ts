/**
 * EnrolThrottle on a manual clock: the global bucket bounds a flood that changes peer id and
 * IP on every attempt, buckets refill, a refused attempt takes nothing, and refusals are
 * reported as counts (the first at once, then at most once per report interval, the rest on
 * flush). The end-to-end behaviour with real nodes is in integration/enrol-throttle.test.ts.
 */
import { strict as assert } from 'node:assert'
import { ENROL_THROTTLE, EnrolThrottle, type RefusalReport } from '../../src/roles/manager/enrol-throttle.js'
import { ManualClock } from '../../src/util/clock.js'

describe('EnrolThrottle', () => {
  it('a flood from ever new ids and IPs is bounded by the global bucket; it refills at its rate', async () => {
    const clock = new ManualClock(0)
    const reports: RefusalReport[] = []
    const t = new EnrolThrottle(clock, r => { reports.push(r) })
    let admitted = 0
    for (let i = 0; i < 1000; i++) {
      const r = t.admit(`peer-${i}`, `198.18.0.${i % 250}:${i}`)
      if (r.ok) { admitted++; t.failed(`peer-${i}`, `198.18.0.${i % 250}:${i}`) }
    }
    assert.equal(admitted, ENROL_THROTTLE.global.burst / ENROL_THROTTLE.failureCost)
    const refused = t.admit('late', '198.18.0.99')
    assert.equal(refused.ok, false)
    assert.ok(!refused.ok && refused.retryInMs <= ENROL_THROTTLE.global.refillMs)
    await clock.advance(ENROL_THROTTLE.global.refillMs)
    assert.equal(t.admit('late', '198.18.0.99').ok, true, 'one interval later an attempt passes')
    // counted: one report at the first refusal, the rest pending until the interval or a flush
    assert.equal(reports.length, 1)
    assert.equal(reports[0].count, 1)
    t.flush()
    assert.equal(reports.reduce((a, r) => a + r.count, 0), 1000 - admitted + 1)
    t.flush()
    assert.equal(reports.length, 2, 'nothing pending, nothing reported')
  })

  it('a successful attempt costs one token; a failure costs failureCost; refusals take nothing', async () => {
    const clock = new ManualClock(0)
    const t = new EnrolThrottle(clock, () => {})
    // one peer id joining successfully several times (re-enrolment) up to its burst
    for (let i = 0; i < ENROL_THROTTLE.perPeer.burst; i++) assert.equal(t.admit('p', '198.18.0.1').ok, true)
    assert.equal(t.admit('p', '198.18.0.1').ok, false)
    // hammering while refused does not push the wait further
    for (let i = 0; i < 100; i++) t.admit('p', '198.18.0.1')
    await clock.advance(ENROL_THROTTLE.perPeer.refillMs)
    assert.equal(t.admit('p', '198.18.0.1').ok, true)
  })

  it('reports refusals at most once per interval while a flood goes on', async () => {
    const clock = new ManualClock(0)
    const reports: RefusalReport[] = []
    const t = new EnrolThrottle(clock, r => { reports.push(r) })
    for (let i = 0; i < ENROL_THROTTLE.perPeer.burst; i++) t.admit('p', '198.18.0.1')
    for (let s = 0; s < 300; s++) {
      // one refused attempt a second for five minutes (the peer's bucket refills slower than that is spent)
      t.admit('p', '198.18.0.1')
      await clock.advance(1000)
      if (t.admit('p', '198.18.0.1').ok) t.failed('p', '198.18.0.1')
    }
    assert.ok(reports.length >= 5 && reports.length <= 6, `${reports.length} reports in 300 s`)
  })
})
