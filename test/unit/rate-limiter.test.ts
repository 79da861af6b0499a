import { strict as assert } from 'node:assert'
import { ManualClock } from '../../src/util/clock.js'
import { RateLimiter } from '../../src/util/rate-limiter.js'

const tick = async (): Promise<void> => { await new Promise(resolve => setImmediate(resolve)) }

/**
 * Runs `work` while a driver moves the manual clock forward in steps of `stepMs`; returns the
 * simulated time at which the work finished. Fails (never hangs) if it needs more than
 * `maxSimulatedMs`.
 */
async function drive (clock: ManualClock, work: () => Promise<void>, stepMs = 5, maxSimulatedMs = 600_000): Promise<number> {
  const started = clock.now()
  let done = false
  let failure: unknown
  let finishedAt = Number.NaN
  void work().then(() => { finishedAt = clock.now(); done = true }, (err: unknown) => { failure = err; done = true })
  while (!done) {
    if (clock.now() - started > maxSimulatedMs) throw new Error(`work did not finish within ${maxSimulatedMs} simulated ms`)
    await clock.advance(stepMs)
    await tick()
  }
  if (failure !== undefined) throw failure
  return finishedAt - started
}

async function takeAll (limiter: RateLimiter, total: number, piece: number): Promise<void> {
  for (let sent = 0; sent < total; sent += piece) await limiter.take(Math.min(piece, total - sent))
}

function assertWithin (actual: number, expected: number, fraction: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= expected * fraction, `${what}: ${actual} ms, expected ${expected} ms ±${fraction * 100}%`)
}

describe('RateLimiter', () => {
  it('rejects a rate that is not positive', () => {
    const clock = new ManualClock()
    for (const rate of [0, -1, Number.NaN]) {
      assert.throws(() => new RateLimiter(rate, clock), RangeError, String(rate))
    }
    assert.equal(new RateLimiter(1, clock).rate, 1)
  })

  it('paces N bytes at R bytes/s to about N/R of simulated time', async () => {
    const clock = new ManualClock(1_000_000)
    const limiter = new RateLimiter(1_000_000, clock)
    const elapsed = await drive(clock, async () => { await takeAll(limiter, 10_000_000, 64 * 1024) })
    assertWithin(elapsed, 10_000, 0.05, '10 MB at 1 MB/s')
  })

  it('keeps the average rate when each take is larger than the burst (debt model)', async () => {
    const clock = new ManualClock()
    const limiter = new RateLimiter(500_000, clock) // burst 125 000 bytes
    const elapsed = await drive(clock, async () => { await takeAll(limiter, 5_000_000, 1_000_000) }, 20)
    assertWithin(elapsed, 10_000, 0.05, '5 MB in 1 MB takes at 500 kB/s')
  })

  it('paces many small takes at a low rate', async () => {
    const clock = new ManualClock()
    const limiter = new RateLimiter(10_000, clock, 1000)
    const elapsed = await drive(clock, async () => { await takeAll(limiter, 100_000, 300) }, 10)
    assertWithin(elapsed, 10_000, 0.05, '100 kB in 300-byte takes at 10 kB/s')
  })

  it('actually waits: a take beyond the available tokens stays pending until time passes', async () => {
    const clock = new ManualClock()
    const limiter = new RateLimiter(1000, clock)
    let resolved = false
    const p = limiter.take(1000).then(() => { resolved = true })
    await tick(); await tick()
    assert.equal(resolved, false)
    assert.equal(clock.pendingSleepers, 1)
    await clock.advance(500)
    await tick()
    assert.equal(resolved, false, 'half the time is not enough')
    await clock.advance(500)
    await p
    assert.equal(resolved, true)
    assert.equal(clock.pendingSleepers, 0)
  })

  it('lets an idle limiter pass one burst at once, but no more than the burst', async () => {
    const clock = new ManualClock()
    const limiter = new RateLimiter(1_000_000, clock) // burst = max(64 KiB, 250 000)
    await clock.advance(60_000) // idle for a minute: tokens are capped at the burst
    await limiter.take(250_000) // resolves with no clock movement
    assert.equal(clock.pendingSleepers, 0)
    const elapsed = await drive(clock, async () => { await limiter.take(1_000_000) }, 5)
    assertWithin(elapsed, 1000, 0.05, 'the next 1 MB after the burst')
  })

  it('uses a minimum burst of 64 KiB and honours an explicit burst', async () => {
    const clock = new ManualClock()
    const slow = new RateLimiter(1000, clock)
    await clock.advance(3_600_000)
    await slow.take(64 * 1024)
    assert.equal(clock.pendingSleepers, 0)
    let resolved = false
    const p = slow.take(1).then(() => { resolved = true })
    await tick()
    assert.equal(resolved, false, 'the burst is used up')
    await clock.advance(1)
    await p

    const explicit = new RateLimiter(1000, clock, 10)
    await clock.advance(3_600_000)
    await explicit.take(10)
    let r2 = false
    const p2 = explicit.take(1000).then(() => { r2 = true })
    await tick()
    assert.equal(r2, false)
    await clock.advance(1000)
    await p2
    assert.equal(r2, true)
  })

  it('setRate changes the pace for the bytes not yet taken', async () => {
    const clock = new ManualClock()
    const limiter = new RateLimiter(1_000_000, clock)
    const elapsed = await drive(clock, async () => {
      await takeAll(limiter, 2_000_000, 50_000) // ~2 s
      const switchedAt = clock.now()
      limiter.setRate(4_000_000)
      assert.equal(limiter.rate, 4_000_000)
      await takeAll(limiter, 4_000_000, 50_000) // ~1 s
      assertWithin(clock.now() - switchedAt, 1000, 0.05, '4 MB at the new 4 MB/s')
    })
    assertWithin(elapsed, 3000, 0.05, '2 MB at 1 MB/s then 4 MB at 4 MB/s')
  })

  it('setRate to a lower rate slows the pace', async () => {
    const clock = new ManualClock()
    const limiter = new RateLimiter(1_000_000, clock)
    limiter.setRate(100_000)
    const elapsed = await drive(clock, async () => { await takeAll(limiter, 1_000_000, 10_000) }, 10)
    assertWithin(elapsed, 10_000, 0.05, '1 MB at 100 kB/s')
  })

  it('rejects take() with an already aborted signal when it would have to wait', async () => {
    const clock = new ManualClock()
    const limiter = new RateLimiter(1000, clock)
    const controller = new AbortController()
    const reason = new Error('cancelled')
    controller.abort(reason)
    await assert.rejects(limiter.take(5000, controller.signal), (err: unknown) => err === reason)
    assert.equal(clock.pendingSleepers, 0)
  })

  it('rejects a waiting take() when its signal is aborted, and removes the sleeper', async () => {
    const clock = new ManualClock()
    const limiter = new RateLimiter(1000, clock)
    const controller = new AbortController()
    const p = limiter.take(5000, controller.signal)
    await tick()
    assert.equal(clock.pendingSleepers, 1)
    const reason = new Error('pull cancelled')
    controller.abort(reason)
    await assert.rejects(p, (err: unknown) => err === reason)
    assert.equal(clock.pendingSleepers, 0)
  })
})
