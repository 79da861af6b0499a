import { HoldfastError } from './errors.js'
import { systemClock, type Clock } from './clock.js'

/** One-at-a-time: `run` waits for every earlier holder to finish. */
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve()

  async run<T> (fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn, fn)
    this.tail = result.catch(() => {})
    return await result
  }
}

export interface ReadOptions {
  /**
   * The holder may be cut by a writer that waited longer than its bound: `fn`'s signal fires
   * with LOCK_PREEMPTED and the holder must stop (a pull: nothing of the set in hand commits).
   */
  preemptible?: boolean
}

export interface WriteOptions {
  /** After waiting this long, cut the preemptible readers (non-preemptible ones are waited for). */
  preemptReadersAfterMs?: number
}

/**
 * Many readers or one writer. Holders are served in arrival order, so a writer waiting behind
 * readers is not starved by readers that come after it. A writer may bound its wait on
 * preemptible readers: a slow pull must not hold prune off forever.
 */
export class ReadWriteLock {
  private readers = 0
  private writer = false
  private readonly queue: Array<{ write: boolean, start: () => void }> = []
  private readonly preemptible = new Set<AbortController>()

  constructor (private readonly clock: Clock = systemClock) {}

  async read<T> (fn: (signal: AbortSignal) => Promise<T>, options: ReadOptions = {}): Promise<T> {
    await this.acquire(false)
    const controller = new AbortController()
    if (options.preemptible === true) this.preemptible.add(controller)
    try {
      return await fn(controller.signal)
    } finally {
      this.preemptible.delete(controller)
      this.readers--
      this.drain()
    }
  }

  async write<T> (fn: () => Promise<T>, options: WriteOptions = {}): Promise<T> {
    const bound = options.preemptReadersAfterMs
    const stopTimer = new AbortController()
    if (bound !== undefined) {
      void this.clock.sleep(bound, stopTimer.signal).then(() => {
        // only readers holding now are cut; the writer is at the head of the queue, so none come after
        for (const reader of this.preemptible) {
          reader.abort(new HoldfastError('LOCK_PREEMPTED', `cut after a writer (prune) waited ${Math.round(bound / 1000)} s for the store`))
        }
      }, () => {})
    }
    try {
      await this.acquire(true)
    } finally {
      stopTimer.abort()
    }
    try { return await fn() } finally { this.writer = false; this.drain() }
  }

  private async acquire (write: boolean): Promise<void> {
    await new Promise<void>(resolve => {
      this.queue.push({ write, start: resolve })
      this.drain()
    })
  }

  private drain (): void {
    while (this.queue.length > 0 && !this.writer) {
      const next = this.queue[0]
      if (next.write) {
        if (this.readers > 0) return
        this.queue.shift()
        this.writer = true
        next.start()
        return
      }
      this.queue.shift()
      this.readers++
      next.start()
    }
  }
}
