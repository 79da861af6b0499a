/**
 * When a changed path has settled (stopped changing long enough to be copied whole).
 *
 * Never by mtime: it is set by whoever wrote the file (an archive, a camera, a machine with a
 * wrong clock), so a file stamped 2100 would "settle" in 2100 and never be staged. The rule is
 * "unchanged since the agent first observed this (size, mtime, ctime, inode) for settleMs of
 * the agent's own clock". ctime is set by the kernel on every change, so a ctime at least
 * settleMs old (and not in the future) is a fast path that needs no earlier observation.
 * A ctime in the future (the system clock was set back) falls back to observation.
 */
import type { BigIntStats } from 'node:fs'

export interface SettleVerdict {
  settled: boolean
  /** When not settled: the earliest time (agent clock, ms) it can have settled. */
  settlesAt?: number
}

/** Remembers when each settling path's current state was first seen, across rounds. */
export interface SettleObserver {
  /** First time (agent clock, ms) `key` was seen with `fingerprint`; `now` when it is new. */
  firstSeen: (key: string, fingerprint: string, now: number) => number
}

export function fingerprintOf (st: BigIntStats): string {
  return `${st.size}:${st.mtimeNs}:${st.ctimeNs}:${st.ino}`
}

export function settleVerdict (st: BigIntStats, key: string, nowMs: number, settleMs: number, observer: SettleObserver): SettleVerdict {
  if (settleMs <= 0) return { settled: true }
  const nowNs = BigInt(Math.floor(nowMs)) * 1_000_000n
  const cutoffNs = BigInt(Math.floor(nowMs - settleMs)) * 1_000_000n
  // fast path: the kernel says nothing touched it for settleMs
  if (st.ctimeNs <= cutoffNs) return { settled: true }
  const first = observer.firstSeen(key, fingerprintOf(st), nowMs)
  if (nowMs - first >= settleMs) return { settled: true }
  let settlesAt = first + settleMs
  // a ctime in the recent past settles sooner than the observation; one in the future never counts
  if (st.ctimeNs <= nowNs) settlesAt = Math.min(settlesAt, Number(st.ctimeNs / 1_000_000n) + settleMs)
  return { settled: false, settlesAt }
}

/**
 * In-memory observations. Each round keeps only what it saw settling (`endRound`), so memory
 * is bounded by the paths settling now. An agent restart forgets them: a path that was
 * settling then waits settleMs again, which costs a delay, never a lost change.
 */
export class SettleTracker implements SettleObserver {
  private previous = new Map<string, { fingerprint: string, at: number }>()
  private current = new Map<string, { fingerprint: string, at: number }>()

  firstSeen (key: string, fingerprint: string, now: number): number {
    const seen = this.current.get(key) ?? this.previous.get(key)
    const at = seen !== undefined && seen.fingerprint === fingerprint ? seen.at : now
    this.current.set(key, { fingerprint, at })
    return at
  }

  /** Forgets what the round just ended did not see settling. */
  endRound (): void {
    this.previous = this.current
    this.current = new Map()
  }

  get size (): number { return this.previous.size + this.current.size }
}
