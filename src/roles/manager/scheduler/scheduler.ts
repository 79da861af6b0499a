/**
 * The pull scheduler. On each tick every reachable agent that is due is visited in turn:
 *
 * - order: round-robin. A peer goes to the back of the queue each time a visit ends; the next
 *   visit after a complete one is due an interval later plus a random jitter, so a fleet found
 *   at once does not stay in lockstep.
 * - at most k visits at once; the rest wait for a slot (reported as such).
 * - a failing peer backs off (PeerTable.recordFailure: soon for an unreachable one,
 *   exponentially up to a cap for a failed conversation).
 * - fairness: a visit gets a time slice; a pull that reaches it stops after the set in hand is
 *   committed and acked, the peer goes to the back of the queue and is due again at once. The
 *   next turn resumes: the puller asks only for chunks the store lacks.
 * - every running visit holds a share of the bandwidth budget, rebalanced as visits start and end.
 *
 * What a visit does (manifest, admission, pull) is the VisitFn's business; this file only
 * decides who goes when, and keeps per-peer state that says why a peer is not being backed up.
 * Every timer goes through the injected clock.
 */
import type { Clock } from '../../../util/clock.js'
import type { Logger } from '../../../util/log.js'
import { describeError } from '../../../util/errors.js'
import { RateLimiter } from '../../../util/rate-limiter.js'
import { MAX_ERROR_BACKOFF_MS, isProven, type FailureKind, type PeerRecord, type PeerTable } from '../peer-table.js'
import { DIAL_BUDGET_DEFAULTS, DialBudget, type DialBudgetLimits } from './dial-budget.js'
import type { BandwidthBudget, BudgetShare } from './bandwidth-budget.js'
import { isOverdue, type AdmitMode } from './admission.js'

export interface VisitContext {
  signal: AbortSignal
  /** The pull's rate handle; the budget sets its rate while the pull runs. */
  limiter: RateLimiter
  share: BudgetShare
  /** Clock time after which the pull stops at the next set boundary (Infinity: never). */
  sliceEndsAt: number
  /** An admin's backup-now: windows and idleness do not matter. */
  forced: boolean
  lastGoodAt?: number
  /** The visit says why it pulls (idle, window, max-age), for the status. */
  setMode: (mode: AdmitMode) => void
}

export type VisitOutcome =
  /** warning: the pull went through but something is still wrong (a set skipped), for the peer list. */
  | { kind: 'pulled', mode: AdmitMode, more: boolean, bytesPulled: number, snapshots: number, detail?: unknown, warning?: string }
  /** The endpoint answered and has nothing waiting, or may not upload now. */
  | { kind: 'skipped', reason: 'outside-window-not-idle', detail: string, nothingPending: boolean }
  | { kind: 'failed', failure: FailureKind, error: string, code?: string }

export type VisitFn = (peer: PeerRecord, ctx: VisitContext) => Promise<VisitOutcome>

/** Why a peer is or is not being backed up right now: what the peer list shows. */
export type ScheduleState =
  | { state: 'pulling', since: number, rate: number, mode?: AdmitMode, forced: boolean }
  | { state: 'waiting-for-slot', since: number }
  | { state: 'budget-exhausted' }
  | { state: 'scheduled', nextAt: number }
  | { state: 'not-uploading', reason: 'outside-window-not-idle', detail: string, nextAt: number }
  | { state: 'backing-off', error: string, failures: number, nextAt: number }
  | { state: 'unreachable', error?: string }

export interface PeerScheduleStatus {
  schedule: ScheduleState
  lastVisitAt?: number
  lastGoodAt?: number
  /** Last good backup older than the max-age limit. */
  overdue: boolean
  lastMode?: AdmitMode
}

export interface SchedulerInit {
  clock: Clock
  table: PeerTable
  /** Whether an agent may be visited at all (the manager: approved members only); default all. */
  eligible?: (peer: PeerRecord) => boolean
  visit: VisitFn
  budget: BandwidthBudget
  log: Logger
  /** k: visits at once. */
  maxConcurrent: number
  /** Time between complete visits of one peer. */
  intervalMs: number
  /** Longest a pull runs before the next peer's turn (Infinity: no slicing). */
  sliceMs: number
  /** For the overdue flag (0 = never overdue). */
  maxAgeMs: number
  /** Jitter added to each next visit, as a fraction of the interval. */
  jitterFraction?: number
  random?: () => number
  /** A peer's per-endpoint cap in bytes per second, if it has one. */
  capOf?: (peer: PeerRecord) => number | undefined
  /** The last good backup the store knows of (after a restart the scheduler's memory is empty). */
  lastBackupOf?: (peer: PeerRecord) => number | undefined
  /** Longest the run loop sleeps between ticks: bounds what a clock jump or a profile change costs. */
  maxSleepMs?: number
  /** What visits of peers that never answered may cost (dial-budget.ts); they also get at most half the slots. */
  dialBudget?: DialBudgetLimits
}

/** What an admin's visit reports: its own outcome, and the scheduled visits it waited behind. */
export interface ForcedResult {
  outcome: VisitOutcome
  /** A scheduled visit already under way when backup-now came pulled these first (oldest first). */
  earlier: VisitOutcome[]
  /** When the first of those visits started (clock time), so a report times the whole pull. */
  earlierSince?: number
}

interface PeerState {
  dueAt: number
  /** Queue position: lower goes first; a finished visit takes a new, highest number. */
  turn: number
  running?: { since: number, share: BudgetShare, forced: boolean, mode?: AdmitMode, unproven: boolean }
  waitingSince?: number
  forcedWaiters: Array<(r: ForcedResult) => void>
  /** Scheduled visits that ended while an admin's visit of this peer was waiting to start. */
  carried: Array<{ outcome: VisitOutcome, since: number }>
  lastVisitAt?: number
  lastGoodAt?: number
  lastMode?: AdmitMode
  skip?: { reason: 'outside-window-not-idle', detail: string }
}

export class Scheduler {
  private readonly states = new Map<string, PeerState>()
  private readonly running = new Set<Promise<void>>()
  private turns = 0
  private wakeController = new AbortController()
  private readonly random: () => number
  private readonly jitterMs: number
  private readonly dialBudget: DialBudget

  constructor (private readonly init: SchedulerInit, private readonly signal: AbortSignal = new AbortController().signal) {
    this.random = init.random ?? Math.random
    this.jitterMs = Math.round(init.intervalMs * (init.jitterFraction ?? 0.1))
    this.dialBudget = new DialBudget(init.dialBudget ?? DIAL_BUDGET_DEFAULTS, init.clock)
  }

  get activeVisits (): number { return this.running.size }

  /** Starts visits for due peers while slots are free. Never waits for a visit. */
  tick (): void {
    const { clock, table, budget } = this.init
    const now = clock.now()
    table.expire(now)
    if (budget.changed()) budget.rebalance()
    const eligible = this.init.eligible
    const agents = eligible === undefined ? table.agents() : table.agents().filter(eligible)
    for (const peer of agents) this.stateOf(peer, now)
    // peers the table dropped (expired, evicted) leave no state behind: memory stays bounded
    if (this.states.size > agents.length) {
      const listed = new Set(agents.map(p => p.peerId))
      for (const [id, s] of this.states) if (!listed.has(id) && s.running === undefined && s.forcedWaiters.length === 0) this.states.delete(id)
    }
    const free = (): boolean => this.running.size < this.init.maxConcurrent
    // an admin's backup-now goes first, then due peers in queue order
    const forced = agents.filter(p => { const s = this.states.get(p.peerId) as PeerState; return s.running === undefined && s.forcedWaiters.length > 0 })
    const due = agents.filter(p => { const s = this.states.get(p.peerId) as PeerState; return s.running === undefined && s.forcedWaiters.length === 0 && this.isDue(p, s, now) })
    // peers that answered before go first: records are free to send, dials are not
    const byTurn = (a: PeerRecord, b: PeerRecord): number => Number(isProven(b)) - Number(isProven(a)) || (this.states.get(a.peerId) as PeerState).turn - (this.states.get(b.peerId) as PeerState).turn
    for (const peer of forced.sort(byTurn)) {
      if (!free()) break
      this.start(peer, true)
    }
    const paused = budget.total(now) <= 0
    const unprovenSlots = Math.max(1, Math.floor(this.init.maxConcurrent / 2))
    let unprovenRunning = 0
    for (const s of this.states.values()) if (s.running?.unproven === true) unprovenRunning++
    for (const peer of due.sort(byTurn)) {
      const s = this.states.get(peer.peerId) as PeerState
      if (paused || !free()) { s.waitingSince ??= now; continue }
      if (!isProven(peer)) {
        if (unprovenRunning >= unprovenSlots || !this.dialBudget.tryTake()) { s.waitingSince ??= now; continue }
        unprovenRunning++
      }
      this.start(peer, false)
    }
  }

  /** Ticks until stopped, sleeping until the next peer is due (at most maxSleepMs) or woken. */
  async run (): Promise<void> {
    const { clock } = this.init
    const maxSleep = this.init.maxSleepMs ?? 1000
    while (!this.signal.aborted) {
      try {
        this.tick()
      } catch (err) {
        this.init.log.error('scheduler tick failed', { err: describeError(err) })
      }
      const wait = Math.max(1, Math.min(maxSleep, this.nextDueAt() - clock.now()))
      try {
        await clock.sleep(wait, AbortSignal.any([this.signal, this.wakeController.signal]))
      } catch {
        if (this.signal.aborted) break
      }
      if (this.wakeController.signal.aborted) this.wakeController = new AbortController()
    }
    await this.drain()
  }

  /** Makes the run loop tick now (a slot came free, a peer was announced again). */
  wake (): void { this.wakeController.abort() }

  /**
   * A peer was announced at a new address: a laptop back on the network, an agent restarted
   * elsewhere. If it missed a backup while it was away (its last good one is older than the
   * interval, or past the max-age limit), it is due now, not at the time set before it left:
   * a laptop is often back for less time than an interval.
   */
  returned (peer: PeerRecord): void {
    const now = this.init.clock.now()
    const s = this.stateOf(peer, now)
    const last = s.lastGoodAt ?? peer.firstSeen
    const missed = now - last >= this.init.intervalMs || isOverdue(s.lastGoodAt, peer.firstSeen, now, this.init.maxAgeMs)
    if (s.running === undefined && missed && s.dueAt > now) s.dueAt = now
    this.wake()
  }

  /** Waits for every running visit to end. */
  async drain (): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled([...this.running])
  }

  /**
   * Visits each of these agents once now, regardless of windows, idleness or backoff, k at a
   * time, without slicing (an admin's backup-now). A peer being pulled already is visited
   * again once that pull ends. Resolves with each visit's outcome.
   */
  async visitNow (peers: PeerRecord[]): Promise<Array<{ peer: PeerRecord } & ForcedResult>> {
    const now = this.init.clock.now()
    const waits = peers.map(async peer => {
      const s = this.stateOf(peer, now)
      const result = await new Promise<ForcedResult>(resolve => { s.forcedWaiters.push(resolve) })
      return { peer, ...result }
    })
    this.tick()
    this.wake()
    return await Promise.all(waits)
  }

  status (peer: PeerRecord): PeerScheduleStatus {
    const now = this.init.clock.now()
    const s = this.stateOf(peer, now)
    const overdue = isOverdue(s.lastGoodAt, peer.firstSeen, now, this.init.maxAgeMs)
    const base = { lastVisitAt: s.lastVisitAt, lastGoodAt: s.lastGoodAt, overdue, lastMode: s.lastMode }
    return { ...base, schedule: this.stateNow(peer, s, now) }
  }

  private stateNow (peer: PeerRecord, s: PeerState, now: number): ScheduleState {
    if (s.running !== undefined) return { state: 'pulling', since: s.running.since, rate: s.running.share.rate, mode: s.running.mode, forced: s.running.forced }
    if (peer.addrs.length === 0) return { state: 'unreachable', error: peer.lastError }
    if (peer.failures > 0 && peer.nextAttemptAt > now) return { state: 'backing-off', error: peer.lastError ?? 'unknown error', failures: peer.failures, nextAt: peer.nextAttemptAt }
    if (this.isDue(peer, s, now)) {
      if (this.init.budget.total(now) <= 0) return { state: 'budget-exhausted' }
      return { state: 'waiting-for-slot', since: s.waitingSince ?? now }
    }
    if (s.skip !== undefined) return { state: 'not-uploading', reason: s.skip.reason, detail: s.skip.detail, nextAt: s.dueAt }
    return { state: 'scheduled', nextAt: s.dueAt }
  }

  private stateOf (peer: PeerRecord, now: number): PeerState {
    let s = this.states.get(peer.peerId)
    if (s === undefined) {
      // a new peer is due soon, not all at once with every other peer found in the same breath
      s = { dueAt: now + Math.floor(this.random() * Math.min(this.jitterMs, 5_000)), turn: ++this.turns, forcedWaiters: [], carried: [], lastGoodAt: this.init.lastBackupOf?.(peer) }
      this.states.set(peer.peerId, s)
    }
    // A clock that jumped back would leave times far in the future: never wait longer than
    // a legitimate schedule could have asked for.
    if (s.dueAt > now + this.init.intervalMs + this.jitterMs) s.dueAt = now + this.init.intervalMs
    if (peer.nextAttemptAt > now + MAX_ERROR_BACKOFF_MS) peer.nextAttemptAt = now + this.init.intervalMs
    if (s.lastGoodAt !== undefined && s.lastGoodAt > now) s.lastGoodAt = now
    return s
  }

  private isDue (peer: PeerRecord, s: PeerState, now: number): boolean {
    if (peer.addrs.length === 0) return false
    // a failing peer follows its backoff (which a fresh announcement resets to now)
    return peer.failures > 0 ? now >= peer.nextAttemptAt : now >= s.dueAt
  }

  private nextDueAt (): number {
    let at = Number.POSITIVE_INFINITY
    for (const peer of this.init.table.agents()) {
      const s = this.states.get(peer.peerId)
      if (s === undefined || s.running !== undefined || peer.addrs.length === 0) continue
      at = Math.min(at, peer.failures > 0 ? peer.nextAttemptAt : s.dueAt)
    }
    return at
  }

  private start (peer: PeerRecord, forced: boolean): void {
    const { clock, budget } = this.init
    const s = this.states.get(peer.peerId) as PeerState
    const now = clock.now()
    const waiters = forced ? s.forcedWaiters.splice(0) : []
    const carried = forced ? s.carried.splice(0) : []
    const earlier = carried.map(c => c.outcome)
    const earlierSince = carried.length === 0 ? undefined : Math.min(...carried.map(c => c.since))
    // the budget sets the real rate before the visit sees the limiter
    const limiter = new RateLimiter(1, clock)
    const share = budget.attach(peer.peerId, limiter, { cap: this.init.capOf?.(peer) })
    s.running = { since: now, share, forced, unproven: !isProven(peer) }
    s.waitingSince = undefined
    const ctx: VisitContext = {
      signal: this.signal,
      limiter,
      share,
      sliceEndsAt: forced ? Number.POSITIVE_INFINITY : now + this.init.sliceMs,
      forced,
      lastGoodAt: s.lastGoodAt,
      setMode: mode => { if (s.running !== undefined) s.running.mode = mode }
    }
    const run = (async () => {
      let outcome: VisitOutcome
      try {
        outcome = await this.init.visit(peer, ctx)
      } catch (err) {
        outcome = { kind: 'failed', failure: 'error', error: describeError(err) }
      } finally {
        share.release()
        s.running = undefined
      }
      this.settle(peer, s, outcome)
      // backup-now came while this scheduled visit ran: what it pulled belongs in that report
      if (!forced && s.forcedWaiters.length > 0) s.carried.push({ outcome, since: now })
      for (const w of waiters) w(earlierSince === undefined ? { outcome, earlier } : { outcome, earlier, earlierSince })
    })()
    this.running.add(run)
    void run.finally(() => {
      this.running.delete(run)
      // a slot came free: the next peer need not wait for the next tick
      if (!this.signal.aborted) this.wake()
    })
  }

  private settle (peer: PeerRecord, s: PeerState, outcome: VisitOutcome): void {
    const now = this.init.clock.now()
    s.lastVisitAt = now
    s.turn = ++this.turns
    const next = now + this.init.intervalMs + Math.floor(this.random() * this.jitterMs)
    if (outcome.kind === 'failed') {
      peer.lastError = outcome.error
      const delay = this.init.table.recordFailure(peer, outcome.failure, now, this.init.intervalMs)
      this.init.log.warn('pull failed; will retry', { peer: peer.peerId, err: outcome.error, reason: outcome.failure, retryInSeconds: Math.round(delay / 1000) })
      return
    }
    peer.failures = 0
    peer.nextAttemptAt = 0
    // it answered: no longer limited by the dial budget for strangers
    peer.lastContact ??= now
    peer.lastError = outcome.kind === 'pulled' ? outcome.warning : undefined
    if (outcome.kind === 'skipped') {
      s.skip = { reason: outcome.reason, detail: outcome.detail }
      if (outcome.nothingPending) s.lastGoodAt = now
      s.dueAt = next
      return
    }
    s.skip = undefined
    s.lastMode = outcome.mode
    if (outcome.more) {
      // its slice is over: back of the queue, and due again as soon as its turn comes
      s.dueAt = now
    } else {
      s.lastGoodAt = now
      s.dueAt = next
    }
  }
}
