/**
 * How often the enrolment listener checks a join secret: token buckets per remote peer id,
 * per remote IP and for the whole listener. Anyone on the LAN can reach that listener (its
 * Noise prologue is public), so without a bound a stranger could make the manager check
 * secrets (and write audit lines) as fast as it can send them.
 *
 * An attempt takes one token from each of its three buckets and is refused, before its secret
 * is looked at, when any of them is empty; a failed attempt (a wrong secret) takes
 * `failureCost` in all, so guessing drains a bucket faster than joining does. Buckets never go
 * below zero and refused attempts take nothing: after a flood ends, a host joining from the
 * same IP waits at most one per-IP refill interval, from elsewhere one global interval.
 * A guess is hopeless anyway (the secret is 32 random bytes); this bounds the work and the
 * audit log, not the odds.
 *
 * Refusals are audited as counts, not one line each: the first refusal after a quiet period is
 * reported at once, later ones at most every `reportEveryMs` (and what is left on stop).
 */
import type { Clock } from '../../util/clock.js'

export interface BucketSpec {
  /** Attempts that may come at once. */
  burst: number
  /** One attempt's worth comes back every this many ms. */
  refillMs: number
}

export const ENROL_THROTTLE = Object.freeze({
  perPeer: Object.freeze({ burst: 5, refillMs: 60_000 }),
  // four wrong tokens in a row from one host (an admin's typos) are still checked
  perIp: Object.freeze({ burst: 20, refillMs: 15_000 }),
  global: Object.freeze({ burst: 30, refillMs: 2_000 }),
  /** What a failed attempt takes in all (the attempt's own token included). */
  failureCost: 5,
  reportEveryMs: 60_000,
  /** Peer ids and IPs tracked at most (each); the fullest are forgotten first. */
  maxTracked: 4096
})

class Bucket {
  private tokens: number
  private last: number
  constructor (private readonly spec: BucketSpec, now: number) {
    this.tokens = spec.burst
    this.last = now
  }

  level (now: number): number {
    this.tokens = Math.min(this.spec.burst, this.tokens + (now - this.last) / this.spec.refillMs)
    this.last = now
    return this.tokens
  }

  take (n: number, now: number): void { this.tokens = Math.max(0, this.level(now) - n) }

  /** Ms until one attempt's worth is back. */
  waitMs (now: number): number { return Math.max(0, Math.ceil((1 - this.level(now)) * this.spec.refillMs)) }

  full (now: number): boolean { return this.level(now) >= this.spec.burst }
}

/** What the refusals since the last report were. */
export interface RefusalReport { count: number, lastPeer: string, lastIp: string }

export class EnrolThrottle {
  private readonly peers = new Map<string, Bucket>()
  private readonly ips = new Map<string, Bucket>()
  private readonly global: Bucket
  private pending?: RefusalReport
  private lastReport = Number.NEGATIVE_INFINITY

  constructor (private readonly clock: Clock, private readonly report: (r: RefusalReport) => void, private readonly limits = ENROL_THROTTLE) {
    this.global = new Bucket(limits.global, clock.now())
  }

  /**
   * Whether an attempt from `peer` at `ip` may have its secret checked; takes its token when
   * it may. When not, the answer is how long until it could (ms).
   */
  admit (peer: string, ip: string): { ok: true } | { ok: false, retryInMs: number } {
    const now = this.clock.now()
    const buckets = [this.bucket(this.peers, peer, this.limits.perPeer, now), this.bucket(this.ips, ip, this.limits.perIp, now), this.global]
    const wait = Math.max(...buckets.map(b => b.waitMs(now)))
    if (wait > 0) {
      this.refused(peer, ip, now)
      return { ok: false, retryInMs: wait }
    }
    for (const b of buckets) b.take(1, now)
    return { ok: true }
  }

  /** An admitted attempt failed (a wrong, expired or used-up secret): it costs more. */
  failed (peer: string, ip: string): void {
    const now = this.clock.now()
    const extra = this.limits.failureCost - 1
    this.bucket(this.peers, peer, this.limits.perPeer, now).take(extra, now)
    this.bucket(this.ips, ip, this.limits.perIp, now).take(extra, now)
    this.global.take(extra, now)
  }

  /** Reports refusals not yet reported (on stop). */
  flush (): void {
    if (this.pending === undefined) return
    const r = this.pending
    this.pending = undefined
    this.lastReport = this.clock.now()
    this.report(r)
  }

  private refused (peer: string, ip: string, now: number): void {
    this.pending = { count: (this.pending?.count ?? 0) + 1, lastPeer: peer, lastIp: ip }
    if (now - this.lastReport >= this.limits.reportEveryMs) this.flush()
  }

  private bucket (map: Map<string, Bucket>, key: string, spec: BucketSpec, now: number): Bucket {
    let b = map.get(key)
    if (b !== undefined) return b
    if (map.size >= this.limits.maxTracked) {
      // a full bucket holds nothing worth keeping; else the oldest goes (the other two
      // buckets still bound what a host that cycles ids or addresses can do)
      let victim: string | undefined
      for (const [k, v] of map) { if (v.full(now)) { victim = k; break } }
      map.delete(victim ?? (map.keys().next().value as string))
    }
    b = new Bucket(spec, now)
    map.set(key, b)
    return b
  }
}
