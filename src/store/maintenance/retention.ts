/**
 * Retention policies: which snapshots of an endpoint to keep. Pure functions over snapshot ids
 * and times; the catalog stores the policies (retention_policies) and prune.ts applies them.
 *
 * Rules, like restic's `forget`:
 * - keep-last N: the N newest snapshots;
 * - keep-hourly / -daily / -weekly / -monthly / -yearly N: going from the newest snapshot to
 *   the oldest, the newest snapshot of each hour (day, ISO week, month, year) that has one,
 *   for the N newest such periods; N = -1 ('unlimited') keeps one for every period;
 * - while a rule still has periods left when the oldest snapshot is reached, the oldest is
 *   kept too (restic 0.17: the history kept is as long as the rule allows);
 * - a snapshot kept by any rule is kept; the newest snapshot is always kept;
 * - min-age D: a snapshot committed less than D ago is always kept;
 * - a legal hold (on the endpoint, or global) keeps every snapshot of the endpoint;
 * - no rules at all (no policy, or every count 0 and no min-age): keep everything.
 * A snapshot's time is when the manager committed it (its clock, not the agent's), the same
 * time `--at` uses. Periods are calendar periods in local time (or UTC when asked).
 *
 * An endpoint's own rules, when it has some, replace the global rules as a whole (they are not
 * merged rule by rule); a hold applies from either scope.
 */
import { HoldfastError } from '../../util/errors.js'

export const UNLIMITED = -1

export interface RetentionRules {
  keepLast?: number
  keepHourly?: number
  keepDaily?: number
  keepWeekly?: number
  keepMonthly?: number
  keepYearly?: number
  /** Milliseconds: snapshots younger than this are always kept. */
  minAgeMs?: number
}

export const RULE_KEYS = ['keepLast', 'keepHourly', 'keepDaily', 'keepWeekly', 'keepMonthly', 'keepYearly'] as const
export type RuleKey = typeof RULE_KEYS[number]

/** A stored policy: endpointId 0 is the policy for every endpoint. */
export interface RetentionPolicyRow {
  endpointId: number
  /** Keep rules set at this scope (undefined: none here). */
  rules?: RetentionRules
  hold: boolean
  updatedAt: number
}

export interface EffectivePolicy {
  /** The rules that apply (undefined: keep everything). */
  rules?: RetentionRules
  rulesFrom: 'endpoint' | 'global' | 'none'
  hold: boolean
  holdFrom?: 'endpoint' | 'global'
}

export type KeepReason = 'newest' | 'last' | 'hourly' | 'daily' | 'weekly' | 'monthly' | 'yearly' | 'oldest' | 'min-age' | 'hold' | 'no-policy'

export interface SnapshotTime { id: number, time: number }

export interface RetentionDecision {
  id: number
  time: number
  keep: boolean
  /** Why it is kept (empty when it goes). */
  reasons: KeepReason[]
}

/** True when the rules would remove something (some count or a min-age is set). */
export function hasRules (rules: RetentionRules | undefined): boolean {
  if (rules === undefined) return false
  return RULE_KEYS.some(k => (rules[k] ?? 0) !== 0)
}

export function effectivePolicy (global: RetentionPolicyRow | undefined, own: RetentionPolicyRow | undefined): EffectivePolicy {
  const out: EffectivePolicy = { rulesFrom: 'none', hold: false }
  if (own?.rules !== undefined) { out.rules = own.rules; out.rulesFrom = 'endpoint' } else if (global?.rules !== undefined) { out.rules = global.rules; out.rulesFrom = 'global' }
  if (own?.hold === true) { out.hold = true; out.holdFrom = 'endpoint' } else if (global?.hold === true) { out.hold = true; out.holdFrom = 'global' }
  return out
}

interface Fields { y: number, mo: number, d: number, h: number, dow: number }

function fields (time: number, utc: boolean): Fields {
  const t = new Date(time)
  return utc
    ? { y: t.getUTCFullYear(), mo: t.getUTCMonth() + 1, d: t.getUTCDate(), h: t.getUTCHours(), dow: t.getUTCDay() }
    : { y: t.getFullYear(), mo: t.getMonth() + 1, d: t.getDate(), h: t.getHours(), dow: t.getDay() }
}

/** ISO 8601 week of the calendar date (its year can differ from the date's around New Year). */
export function isoWeek (y: number, mo: number, d: number): { year: number, week: number } {
  const day = Date.UTC(y, mo - 1, d)
  const dow = (new Date(day).getUTCDay() + 6) % 7 // Monday 0
  const thursday = new Date(day + (3 - dow) * 86_400_000)
  const year = thursday.getUTCFullYear()
  const week = 1 + Math.floor((thursday.getTime() - Date.UTC(year, 0, 1)) / (7 * 86_400_000))
  return { year, week }
}

type Bucket = (s: SnapshotTime, index: number) => string

function buckets (utc: boolean): Record<RuleKey, Bucket> {
  const f = (s: SnapshotTime): Fields => fields(s.time, utc)
  return {
    keepLast: (_s, i) => String(i),
    keepHourly: s => { const x = f(s); return `${x.y}-${x.mo}-${x.d} ${x.h}` },
    keepDaily: s => { const x = f(s); return `${x.y}-${x.mo}-${x.d}` },
    keepWeekly: s => { const x = f(s); const w = isoWeek(x.y, x.mo, x.d); return `${w.year}W${w.week}` },
    keepMonthly: s => { const x = f(s); return `${x.y}-${x.mo}` },
    keepYearly: s => String(f(s).y)
  }
}

const REASON: Record<RuleKey, KeepReason> = { keepLast: 'last', keepHourly: 'hourly', keepDaily: 'daily', keepWeekly: 'weekly', keepMonthly: 'monthly', keepYearly: 'yearly' }

/**
 * Which snapshots the policy keeps. `snapshots` in any order; the order of snapshots is their
 * id (commit order), which is also how "newest" is meant. Returns decisions newest first.
 */
export function selectSnapshots (snapshots: SnapshotTime[], policy: EffectivePolicy, options: { now: number, utc?: boolean }): RetentionDecision[] {
  const list = [...snapshots].sort((a, b) => b.id - a.id)
  if (policy.hold) return list.map(s => ({ ...s, keep: true, reasons: ['hold'] }))
  const rules = policy.rules
  if (!hasRules(rules) && (rules?.minAgeMs ?? 0) === 0) return list.map(s => ({ ...s, keep: true, reasons: ['no-policy'] }))
  const r = rules as RetentionRules
  const fns = buckets(options.utc === true)
  const state = RULE_KEYS.filter(k => (r[k] ?? 0) !== 0).map(k => ({ key: k, left: r[k] as number, last: undefined as string | undefined }))
  return list.map((s, i) => {
    const reasons: KeepReason[] = []
    if (i === 0) reasons.push('newest')
    for (const b of state) {
      if (b.left === 0) continue
      const val = fns[b.key](s, i)
      const oldest = i === list.length - 1
      if (val !== b.last) {
        reasons.push(REASON[b.key])
        b.last = val
        if (b.left > 0) b.left--
      } else if (oldest) {
        // periods left over: keep the oldest too, so the history is as long as the rule allows
        reasons.push('oldest')
        if (b.left > 0) b.left--
      }
    }
    if ((r.minAgeMs ?? 0) > 0 && options.now - s.time < (r.minAgeMs as number)) reasons.push('min-age')
    return { ...s, keep: reasons.length > 0, reasons: [...new Set(reasons)] }
  })
}

const UNIT_MS: Record<string, number> = { h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000, m: 30 * 86_400_000, y: 365 * 86_400_000 }

/** "30d", "12h", "2w", "6m" (30-day months), "1y" (365 days), or combinations ("1y6m"); "0" is none. */
export function parseDuration (text: string): number {
  const t = text.trim()
  if (t === '0') return 0
  if (!/^(\d+[hdwmy])+$/.test(t)) throw new HoldfastError('ADMIN_BAD_REQUEST', `a duration is a number and a unit (h, d, w, m = 30 days, y = 365 days), e.g. 30d or 1y6m; not '${text}'`)
  let ms = 0
  for (const m of t.matchAll(/(\d+)([hdwmy])/g)) ms += Number(m[1]) * UNIT_MS[m[2]]
  if (!Number.isSafeInteger(ms)) throw new HoldfastError('ADMIN_BAD_REQUEST', `duration '${text}' is too long`)
  return ms
}

export function formatDuration (ms: number): string {
  if (ms === 0) return '0'
  const days = Math.floor(ms / UNIT_MS.d)
  const hours = Math.floor((ms % UNIT_MS.d) / UNIT_MS.h)
  if (days === 0) return `${hours}h`
  return hours === 0 ? `${days}d` : `${days}d${hours}h`
}

/** "keep-last 3, keep-daily 7, min-age 30d" (or "keep everything"). */
export function describeRules (rules: RetentionRules | undefined): string {
  if (rules === undefined || (!hasRules(rules) && (rules.minAgeMs ?? 0) === 0)) return 'keep everything'
  const parts: string[] = []
  for (const k of RULE_KEYS) {
    const n = rules[k] ?? 0
    if (n !== 0) parts.push(`${ruleFlag(k)} ${n === UNLIMITED ? 'unlimited' : n}`)
  }
  if ((rules.minAgeMs ?? 0) > 0) parts.push(`min-age ${formatDuration(rules.minAgeMs as number)}`)
  return parts.join(', ')
}

/** keepDaily → "keep-daily". */
export function ruleFlag (key: RuleKey): string {
  return key.replace(/[A-Z]/g, c => `-${c.toLowerCase()}`)
}

/** Checks rules that came as untyped JSON (admin requests). */
export function checkRules (raw: unknown): RetentionRules {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new HoldfastError('ADMIN_BAD_REQUEST', 'rules must be an object')
  const obj = raw as Record<string, unknown>
  const out: RetentionRules = {}
  for (const [k, v] of Object.entries(obj)) {
    if ((RULE_KEYS as readonly string[]).includes(k)) {
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < UNLIMITED) throw new HoldfastError('ADMIN_BAD_REQUEST', `${ruleFlag(k as RuleKey)} must be a whole number ≥ 0 or unlimited`)
      out[k as RuleKey] = v
    } else if (k === 'minAgeMs') {
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new HoldfastError('ADMIN_BAD_REQUEST', 'min-age must be a duration ≥ 0')
      out.minAgeMs = v
    } else {
      throw new HoldfastError('ADMIN_BAD_REQUEST', `unknown retention rule '${k}'`)
    }
  }
  return out
}
