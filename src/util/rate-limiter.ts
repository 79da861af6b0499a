import type { Clock } from './clock.js'

/**
 * A token bucket over bytes. `take(n)` waits until n bytes may pass at the configured rate.
 * The burst is small (a quarter second of traffic, at least one max frame) so a long pull
 * holds its average rate rather than front-loading.
 */
export class RateLimiter {
  private tokens: number
  private last: number
  private readonly burst: number

  constructor (private bytesPerSecond: number, private readonly clock: Clock, burstBytes?: number) {
    if (!(bytesPerSecond > 0)) throw new RangeError('bytesPerSecond must be > 0')
    this.burst = burstBytes ?? Math.max(64 * 1024, bytesPerSecond / 4)
    this.tokens = 0
    this.last = clock.now()
  }

  get rate (): number { return this.bytesPerSecond }

  /** Changes the rate for bytes not yet taken (the manager rebalances its budget). */
  setRate (bytesPerSecond: number): void {
    if (!(bytesPerSecond > 0)) throw new RangeError('bytesPerSecond must be > 0')
    this.refill()
    this.bytesPerSecond = bytesPerSecond
  }

  async take (bytes: number, signal?: AbortSignal): Promise<void> {
    this.refill()
    this.tokens -= bytes
    if (this.tokens >= 0) return
    // Debt model: the caller waits for the deficit to refill, so frames larger than the
    // burst still pass, and the average over any long window equals the rate.
    const waitMs = (-this.tokens / this.bytesPerSecond) * 1000
    await this.clock.sleep(Math.ceil(waitMs), signal)
    this.refill()
  }

  private refill (): void {
    const now = this.clock.now()
    const elapsed = Math.max(0, now - this.last) / 1000
    this.last = now
    this.tokens = Math.min(this.burst, this.tokens + elapsed * this.bytesPerSecond)
  }
}
