/**
 * What dialling peers that never answered may cost. Anyone on the LAN can announce records,
 * each naming a new peer id; every one would be a dial. Peers that answered before (or that
 * the config names) are not limited; the others share a token bucket (dials per minute, with
 * a small burst) and at most a few slots at once, so 10,000 fake records cost a bounded
 * trickle of dials while the real fleet is pulled on time.
 */
import type { Clock } from '../../../util/clock.js'

export interface DialBudgetLimits {
  /** Sustained visits of never-answered peers per minute. */
  perMinute: number
  /** Visits that may start at once after a quiet spell. */
  burst: number
}

export const DIAL_BUDGET_DEFAULTS: Readonly<DialBudgetLimits> = Object.freeze({ perMinute: 60, burst: 8 })

export class DialBudget {
  private tokens: number
  private last: number

  constructor (private readonly limits: DialBudgetLimits, private readonly clock: Clock) {
    this.tokens = limits.burst
    this.last = clock.now()
  }

  /** Takes one dial if the budget allows it now. */
  tryTake (): boolean {
    const now = this.clock.now()
    this.tokens = Math.min(this.limits.burst, this.tokens + Math.max(0, now - this.last) * this.limits.perMinute / 60_000)
    this.last = now
    if (this.tokens < 1) return false
    this.tokens -= 1
    return true
  }
}
