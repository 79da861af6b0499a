/** One-at-a-time: `run` waits for every earlier holder to finish. */
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve()

  async run<T> (fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn, fn)
    this.tail = result.catch(() => {})
    return await result
  }
}

/**
 * Many readers or one writer. Holders are served in arrival order, so a writer waiting behind
 * readers is not starved by readers that come after it.
 */
export class ReadWriteLock {
  private readers = 0
  private writer = false
  private readonly queue: Array<{ write: boolean, start: () => void }> = []

  async read<T> (fn: () => Promise<T>): Promise<T> {
    await this.acquire(false)
    try { return await fn() } finally { this.readers--; this.drain() }
  }

  async write<T> (fn: () => Promise<T>): Promise<T> {
    await this.acquire(true)
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
