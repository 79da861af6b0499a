/**
 * The minimum sustained rate of a transfer: a peer that sends slower than a protocol's floor
 * over a window is cut, so a drip-feeding peer (one frame just inside every idle deadline)
 * cannot hold a pull slot, the store's read lock and a stream for the whole exchange deadline.
 * Time the receiver spends away (its own verification, its own pacing) does not count: only
 * time spent waiting for the peer is measured.
 */
import { HoldfastError } from '../util/errors.js'
import type { Clock } from '../util/clock.js'

export interface MinRateLimit {
  /** The window over which the rate is measured; a transfer shorter than it is never cut. */
  windowMs: number
  /** Bytes per second below which a transfer is too slow, whatever was asked. */
  floorBytesPerSecond: number
  /** Fraction of the rate the receiver asked for that the sender must keep up. */
  fractionOfAsked: number
}

/**
 * The rate a transfer must keep up: max(floor, fraction × asked). Never more than half of what
 * was asked (a manager that asks for 8 KiB/s must not cut an agent for sending at 8 KiB/s).
 */
export function minRateFor (limit: MinRateLimit, askedBytesPerSecond: number): number {
  const wanted = Math.max(limit.floorBytesPerSecond, limit.fractionOfAsked * askedBytesPerSecond)
  return askedBytesPerSecond > 0 ? Math.min(wanted, askedBytesPerSecond / 2) : wanted
}

/** How often the watch looks, as a fraction of its window. */
const CHECKS_PER_WINDOW = 4

/**
 * Watches one transfer. `observe(bytes)` counts what arrived; `away()`/`back()` bracket time
 * the receiver is busy elsewhere. `signal` fires with TRANSFER_TOO_SLOW when a whole window
 * of waiting brought less than the minimum. `stop()` ends the watch (always call it).
 */
export class MinRateWatch {
  private readonly controller = new AbortController()
  private readonly stopper = new AbortController()
  private bytes = 0
  private waitedMs = 0
  private lastAt: number
  private awaySince?: number
  readonly minBytesPerSecond: number

  constructor (private readonly limit: MinRateLimit, askedBytesPerSecond: number, private readonly clock: Clock, private readonly what: string) {
    this.minBytesPerSecond = minRateFor(limit, askedBytesPerSecond)
    this.lastAt = clock.now()
    void this.loop()
  }

  get signal (): AbortSignal { return this.controller.signal }

  /** The typed error the watch cut the transfer with, if it did. */
  get reason (): HoldfastError | undefined {
    return this.controller.signal.aborted ? this.controller.signal.reason as HoldfastError : undefined
  }

  observe (bytes: number): void { this.bytes += bytes }

  away (): void {
    this.account()
    this.awaySince ??= this.clock.now()
  }

  back (): void {
    if (this.awaySince === undefined) return
    this.awaySince = undefined
    this.lastAt = this.clock.now()
  }

  stop (): void { this.stopper.abort() }

  /** Adds the time spent waiting for the peer since the last look. */
  private account (): void {
    const now = this.clock.now()
    if (this.awaySince === undefined) this.waitedMs += Math.max(0, now - this.lastAt)
    this.lastAt = now
  }

  private async loop (): Promise<void> {
    const { windowMs } = this.limit
    // bounded: the transfer's own deadline stops it at the latest
    while (!this.stopper.signal.aborted) {
      try { await this.clock.sleep(Math.max(1, Math.floor(windowMs / CHECKS_PER_WINDOW)), this.stopper.signal) } catch { return }
      this.account()
      if (this.waitedMs < windowMs) continue
      const rate = this.bytes / (this.waitedMs / 1000)
      if (rate < this.minBytesPerSecond) {
        this.controller.abort(new HoldfastError('TRANSFER_TOO_SLOW',
          `${this.what}: ${Math.round(rate)} B/s over ${Math.round(this.waitedMs / 1000)} s, below the minimum of ${Math.round(this.minBytesPerSecond)} B/s`,
          { bytesPerSecond: Math.round(rate), minBytesPerSecond: Math.round(this.minBytesPerSecond), windowMs: this.waitedMs }))
        return
      }
      this.bytes = 0
      this.waitedMs = 0
    }
  }
}
