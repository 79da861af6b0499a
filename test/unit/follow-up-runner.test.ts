/**
 * FollowUpRunner: what `holdfast scan-now` relies on. A request made while a run is going
 * gets a run that starts after it (the running one may have begun before the caller's
 * change); requests made meanwhile share that one run.
 */
import { strict as assert } from 'node:assert'
import { FollowUpRunner } from '../../src/util/follow-up-runner.js'

interface Deferred { promise: Promise<number>, resolve: (n: number) => void, reject: (e: Error) => void }
function deferred (): Deferred {
  let resolve!: (n: number) => void
  let reject!: (e: Error) => void
  const promise = new Promise<number>((res, rej) => { resolve = res; reject = rej })
  return { promise, resolve, reject }
}

describe('unit: FollowUpRunner', function () {
  it('a request during a run gets the next run, not the running one; requests meanwhile share it', async function () {
    const runs: Deferred[] = []
    const runner = new FollowUpRunner(async () => { const d = deferred(); runs.push(d); return await d.promise })
    const first = runner.run()
    assert.equal(runs.length, 1)
    const second = runner.run()
    const third = runner.run()
    assert.equal(runs.length, 1, 'no second run starts while the first is going')
    runs[0].resolve(1)
    assert.equal(await first, 1)
    await new Promise(resolve => setImmediate(resolve))
    assert.equal(runs.length, 2, 'one follow-up run for both waiting requests')
    runs[1].resolve(2)
    assert.equal(await second, 2, 'the request made during run 1 is answered by run 2')
    assert.equal(await third, 2)
    assert.equal(runner.current, undefined)
  })

  it('a failed run does not fail the request waiting for the next one; a later request starts afresh', async function () {
    const runs: Deferred[] = []
    const runner = new FollowUpRunner(async () => { const d = deferred(); runs.push(d); return await d.promise })
    const first = runner.run()
    const second = runner.run()
    runs[0].reject(new Error('round failed'))
    await assert.rejects(first, /round failed/)
    await new Promise(resolve => setImmediate(resolve))
    runs[1].resolve(7)
    assert.equal(await second, 7)
    const later = runner.run()
    assert.equal(runs.length, 3)
    runs[2].resolve(8)
    assert.equal(await later, 8)
  })
  it('join takes the running run (the bench\'s "first round after start"), or starts one when none runs', async function () {
    const runs: Deferred[] = []
    const runner = new FollowUpRunner(async () => { const d = deferred(); runs.push(d); return await d.promise })
    const first = runner.run()
    const joined = runner.join()
    assert.equal(runs.length, 1)
    runs[0].resolve(4)
    assert.equal(await first, 4)
    assert.equal(await joined, 4, 'join answers with the running run')
    const fresh = runner.join()
    assert.equal(runs.length, 2, 'join with nothing running starts a run')
    runs[1].resolve(5)
    assert.equal(await fresh, 5)
  })
})
