import { strict as assert } from 'node:assert'
import { Mutex, ReadWriteLock } from '../../src/util/mutex.js'

/** A promise and the function that settles it, to hold a lock open until the test says. */
function gate (): { promise: Promise<void>, open: () => void } {
  let open = (): void => {}
  const promise = new Promise<void>(resolve => { open = resolve })
  return { promise, open }
}

const tick = async (): Promise<void> => { for (let i = 0; i < 5; i++) await Promise.resolve() }

describe('Mutex and ReadWriteLock', () => {
  it('Mutex runs holders one at a time, in order, even when one fails', async () => {
    const m = new Mutex()
    const log: string[] = []
    const g = gate()
    const a = m.run(async () => { log.push('a start'); await g.promise; log.push('a end') })
    const b = m.run(async () => { log.push('b'); throw new Error('b fails') })
    const c = m.run(async () => { log.push('c') })
    await tick()
    assert.deepEqual(log, ['a start'])
    g.open()
    await a
    await assert.rejects(b, /b fails/)
    await c
    assert.deepEqual(log, ['a start', 'a end', 'b', 'c'])
  })

  it('readers share; a writer waits for them, and readers that come after the writer wait for it', async () => {
    const lock = new ReadWriteLock()
    const log: string[] = []
    const r1 = gate()
    const w = gate()
    const reader1 = lock.read(async () => { log.push('r1 in'); await r1.promise; log.push('r1 out') })
    const reader2 = lock.read(async () => { log.push('r2 in') })
    await tick()
    assert.deepEqual(log, ['r1 in', 'r2 in'], 'two readers at once')
    const writer = lock.write(async () => { log.push('w in'); await w.promise; log.push('w out') })
    const reader3 = lock.read(async () => { log.push('r3 in') })
    await tick()
    assert.ok(!log.includes('w in'), 'the writer waits for the reader still inside')
    assert.ok(!log.includes('r3 in'), 'a later reader does not jump the waiting writer')
    r1.open()
    await Promise.all([reader1, reader2])
    await tick()
    assert.equal(log[log.length - 1], 'w in')
    w.open()
    await Promise.all([writer, reader3])
    assert.deepEqual(log.slice(-3), ['w in', 'w out', 'r3 in'])
  })

  it('releases the lock when a holder throws', async () => {
    const lock = new ReadWriteLock()
    await assert.rejects(lock.write(async () => { throw new Error('boom') }), /boom/)
    assert.equal(await lock.read(async () => 42), 42)
    await assert.rejects(lock.read(async () => { throw new Error('bang') }), /bang/)
    assert.equal(await lock.write(async () => 'ok'), 'ok')
  })
})
