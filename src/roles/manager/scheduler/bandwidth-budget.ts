/**
 * The manager's global bandwidth budget B, shared by the pulls running at once. Each pull has
 * a rate target (its RateLimiter); whenever a pull starts or ends, or the time-of-day profile
 * changes B, every target is set again, so a pull that ends hands its share to the others at
 * once. Shares follow weights (equal by default), a per-endpoint cap holds one endpoint below
 * its share and the rest goes to the others; a pull running on the max-age override gets only
 * a fraction of its share, and that remainder is deliberately left unused (the endpoint's user
 * is busy: the point of the reduced rate is to leave their link alone).
 */
import { HoldfastError } from '../../../util/errors.js'
import { insideWindow } from '../../../model/upload-window.js'
import type { BudgetProfile } from '../../../model/quantities.js'

/** Anything whose rate the budget can set: a RateLimiter, or a fake in tests. */
export interface RateTarget {
  setRate: (bytesPerSecond: number) => void
}

export { parseByteQuantity, parseRate, parseBudgetProfiles, type BudgetProfile } from '../../../model/quantities.js'

export interface BandwidthBudgetInit {
  /** B outside every profile, bytes per second. */
  bytesPerSecond: number
  profiles?: BudgetProfile[]
  /** The manager's local offset east of UTC at an instant (default: this process's zone). */
  localOffsetMinutes?: (utcMs: number) => number
}

export interface ShareOptions {
  /** Relative weight among the running pulls; 1 by default. */
  weight?: number
  /** Never above this, bytes per second (an endpoint's cap; 0 or absent = none). */
  cap?: number
  /** Fraction of its share it may use (the max-age override's reduced rate); 1 by default. */
  fraction?: number
}

/** One running pull's place in the budget. */
export interface BudgetShare {
  readonly key: string
  /** The rate last given to the pull. */
  readonly rate: number
  setFraction: (fraction: number) => void
  release: () => void
}

interface Entry { key: string, target: RateTarget, weight: number, cap: number, fraction: number, rate: number }

export class BandwidthBudget {
  private readonly entries = new Set<Entry>()
  private lastTotal: number

  constructor (private readonly init: BandwidthBudgetInit, private readonly now: () => number) {
    if (!(init.bytesPerSecond > 0)) throw new HoldfastError('CONFIG_INVALID', 'the bandwidth budget must be above 0')
    this.lastTotal = this.total()
  }

  /** B now: the first profile whose window holds the manager's local time, else the default. */
  total (at = this.now()): number {
    const offset = this.init.localOffsetMinutes?.(at) ?? -new Date(at).getTimezoneOffset()
    for (const p of this.init.profiles ?? []) if (insideWindow(p.windows, at, offset)) return p.bytesPerSecond
    return this.init.bytesPerSecond
  }

  get active (): number { return this.entries.size }

  /** Adds a pull and rebalances everyone; its target gets its first rate before this returns. */
  attach (key: string, target: RateTarget, options: ShareOptions = {}): BudgetShare {
    const entry: Entry = { key, target, weight: options.weight ?? 1, cap: options.cap ?? 0, fraction: options.fraction ?? 1, rate: 0 }
    if (!(entry.weight > 0)) throw new RangeError('weight must be > 0')
    this.entries.add(entry)
    this.rebalance()
    return {
      key,
      get rate () { return entry.rate },
      setFraction: (fraction: number) => { entry.fraction = Math.min(1, Math.max(0.001, fraction)); this.rebalance() },
      release: () => { if (this.entries.delete(entry)) this.rebalance() }
    }
  }

  /** Shares by weight, water-filled past caps; called on every change and on each tick. */
  rebalance (): void {
    const total = this.total()
    this.lastTotal = total
    const shares = split(total, [...this.entries].map(e => ({ weight: e.weight, cap: e.cap })))
    let i = 0
    for (const e of this.entries) {
      // a RateLimiter cannot run at 0: a paused budget leaves running pulls a trickle (1 B/s)
      // until their slice ends; the scheduler starts no new pull while B is 0
      const rate = Math.max(1, Math.floor((shares[i++] as number) * e.fraction))
      e.rate = rate
      e.target.setRate(rate)
    }
  }

  /** Whether B changed since the last rebalance (a profile boundary passed). */
  changed (): boolean { return this.total() !== this.lastTotal }

  /** What each running pull gets now, by key. */
  rates (): Map<string, number> { return new Map([...this.entries].map(e => [e.key, e.rate])) }
}

/** Splits `total` by weight; a capped member's unused share is split among the others. */
export function split (total: number, members: Array<{ weight: number, cap: number }>): number[] {
  const out = members.map(() => 0)
  let open = members.map((_, i) => i)
  let left = total
  // each pass either fixes at least one capped member or hands everything out: ≤ n passes
  for (let pass = 0; pass <= members.length && open.length > 0 && left > 0; pass++) {
    const weights = open.reduce((n, i) => n + (members[i] as { weight: number }).weight, 0)
    const capped = open.filter(i => { const m = members[i] as { weight: number, cap: number }; return m.cap > 0 && m.cap <= left * m.weight / weights })
    if (capped.length === 0) {
      for (const i of open) out[i] = left * (members[i] as { weight: number }).weight / weights
      return out
    }
    for (const i of capped) { out[i] = (members[i] as { cap: number }).cap; left -= out[i] as number }
    open = open.filter(i => !capped.includes(i))
  }
  return out
}
