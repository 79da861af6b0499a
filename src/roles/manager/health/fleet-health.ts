/**
 * Fleet health: one endpoint's state as an admin reads it (online, offline, backing up,
 * waiting), why it is not being backed up, and whether it is overdue. Pure: the manager feeds
 * it what the peer table and the scheduler know, with its clock's now, so the same figures
 * reach `holdfast peers`, `--overdue` and the metrics endpoint.
 */
import type { FailureKind } from '../peer-table.js'
import type { PeerScheduleStatus } from '../scheduler/scheduler.js'
import { isOverdue, type AdmitMode } from '../scheduler/admission.js'

/** pending and revoked: a host the manager does not pull (roles/manager/membership.ts). */
export type EndpointState = 'online' | 'offline' | 'backing up' | 'waiting' | 'pending' | 'revoked'

/** Why an endpoint is not being backed up, for scripts (`why` says it for people). */
export type WhyCode =
  | 'up-to-date'
  | 'not-uploading'
  | 'budget-exhausted'
  | 'waiting-for-slot'
  | 'backing-off'
  | 'unreachable'
  | 'store-full'
  | 'not-scheduled'
  | 'not-approved'
  | 'revoked'

export interface EndpointHealth {
  state: EndpointState
  /** Absent while it is being backed up. */
  reason?: WhyCode
  why?: string
  /** The last good backup (a visit that left nothing waiting, or the store's last snapshot). */
  lastGoodAt?: number
  lastGoodAgeMs?: number
  /** The last good backup (or, never backed up, first sight) is older than the threshold. */
  overdue: boolean
  /** Bytes per second received lately (0 when not pulling). */
  rate: number
  /** The rate the budget gives its pull, while it runs. */
  targetRate?: number
  /** Why it is being pulled now: idle, window, max-age (at a reduced rate), forced (backup-now). */
  mode?: AdmitMode
  /** When the scheduler means to try it next, if it is not running. */
  nextAt?: number
}

export interface HealthInput {
  addrs: number
  firstSeen: number
  failures: number
  lastFailure?: FailureKind
  lastError?: string
  schedule?: PeerScheduleStatus
  /** The store's last snapshot of it, when the scheduler has no memory of one (after a restart). */
  storeLastBackup?: number
  /** Measured receive rate, bytes per second. */
  rate: number
}

export function endpointHealth (p: HealthInput, now: number, overdueAfterMs: number): EndpointHealth {
  const lastGoodAt = latest(p.schedule?.lastGoodAt, p.storeLastBackup)
  const base = {
    lastGoodAt,
    lastGoodAgeMs: lastGoodAt === undefined ? undefined : Math.max(0, now - lastGoodAt),
    overdue: isOverdue(lastGoodAt, p.firstSeen, now, overdueAfterMs),
    rate: 0
  }
  const s = p.schedule?.schedule
  if (s === undefined) return { ...base, state: p.addrs === 0 ? 'offline' : 'waiting', reason: 'not-scheduled', why: 'not scheduled yet (the manager is starting)' }
  switch (s.state) {
    case 'pulling':
      return { ...base, state: 'backing up', rate: p.rate, targetRate: s.rate, ...(s.mode === undefined ? {} : { mode: s.mode }) }
    case 'unreachable':
      return { ...base, state: 'offline', reason: 'unreachable', why: `no address known${p.lastError === undefined ? '' : `; last error: ${p.lastError}`}` }
    case 'backing-off': {
      const retry = `retry ${inTime(s.nextAt - now)}`
      if (p.lastFailure === 'unreachable') return { ...base, state: 'offline', reason: 'unreachable', why: `unreachable (${s.failures} ${s.failures === 1 ? 'try' : 'tries'}), ${retry}: ${s.error}`, nextAt: s.nextAt }
      if (p.lastFailure === 'local') return { ...base, state: 'waiting', reason: 'store-full', why: `the manager cannot store (${s.error}), ${retry}`, nextAt: s.nextAt }
      return { ...base, state: 'waiting', reason: 'backing-off', why: `backing off after an error (${s.failures} in a row), ${retry}: ${s.error}`, nextAt: s.nextAt }
    }
    case 'waiting-for-slot':
      return { ...base, state: 'waiting', reason: 'waiting-for-slot', why: `due; waiting for a free pull slot since ${ago(now - s.since)}` }
    case 'budget-exhausted':
      return { ...base, state: 'waiting', reason: 'budget-exhausted', why: 'due; the bandwidth budget is exhausted (a profile sets it to 0 now)' }
    case 'not-uploading':
      return { ...base, state: 'waiting', reason: 'not-uploading', why: `${s.detail}; asked again ${inTime(s.nextAt - now)}`, nextAt: s.nextAt }
    case 'scheduled':
      return { ...base, state: 'online', reason: 'up-to-date', why: `up to date; next visit ${inTime(s.nextAt - now)}`, nextAt: s.nextAt }
  }
}

function latest (a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined ? b : b === undefined ? a : Math.max(a, b)
}

/** "in 5s", "in 3m", "now": coarse on purpose, the table is read at a glance. */
export function inTime (ms: number): string {
  return ms <= 500 ? 'now' : `in ${span(ms)}`
}

export function ago (ms: number): string { return `${span(ms)} ago` }

export function span (ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000))
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.round(s / 60)}m`
  if (s < 86400) return `${(s / 3600).toFixed(s < 36000 ? 1 : 0)}h`
  return `${(s / 86400).toFixed(s < 864000 ? 1 : 0)}d`
}
