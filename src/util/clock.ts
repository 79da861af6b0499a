/**
 * An injected clock: every timer and every "now" in Holdfast goes through one, so tests can
 * drive time by hand instead of sleeping.
 */
export interface Clock {
  now: () => number
  /** Resolves after `ms`, or rejects with the signal's reason when aborted. */
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: async (ms, signal) => {
    await new Promise<void>((resolve, reject) => {
      if (signal?.aborted === true) { reject(signal.reason); return }
      const onAbort = (): void => { clearTimeout(timer); reject(signal?.reason) }
      const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve() }, ms)
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }
}

/** A clock for tests: time moves only when `advance` is called. */
export class ManualClock implements Clock {
  private current: number
  private waiters: Array<{ at: number, resolve: () => void }> = []

  constructor (start = 0) { this.current = start }

  now = (): number => this.current

  sleep = async (ms: number, signal?: AbortSignal): Promise<void> => {
    if (ms <= 0) return
    await new Promise<void>((resolve, reject) => {
      if (signal?.aborted === true) { reject(signal.reason); return }
      const waiter = { at: this.current + ms, resolve }
      this.waiters.push(waiter)
      signal?.addEventListener('abort', () => {
        this.waiters = this.waiters.filter(w => w !== waiter)
        reject(signal.reason)
      }, { once: true })
    })
  }

  /** Moves time forward, waking every sleeper whose time has come, in order. */
  async advance (ms: number): Promise<void> {
    const target = this.current + ms
    for (;;) {
      this.waiters.sort((a, b) => a.at - b.at)
      const next = this.waiters[0]
      if (next === undefined || next.at > target) break
      this.waiters.shift()
      this.current = next.at
      next.resolve()
      // let the woken task run before the next one wakes
      await new Promise(resolve => setImmediate(resolve))
    }
    this.current = target
  }

  get pendingSleepers (): number { return this.waiters.length }
}
