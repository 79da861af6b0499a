/**
 * Upload windows: when an endpoint may upload whether or not its user is idle, as weekday and
 * time-of-day ranges in the endpoint's local time:
 *
 *   Mon-Fri 12:00-13:00, 18:00-07:00; Sat-Sun all
 *
 * Groups are separated by ';'. A group is an optional day list (`Mon`, `Mon-Fri`, `Fri-Mon`
 * wraps over the weekend, `Mon,Wed,Fri`; absent = every day) and then time ranges separated by
 * ',' or the word `all`. A range whose end is not after its start runs overnight and belongs to
 * the day it starts on (`Fri 18:00-07:00` ends Saturday 07:00). `24:00` may end a range. An
 * empty string means no window.
 *
 * Local time is the UTC instant shifted by the offset the endpoint reports in its manifest,
 * not by a time zone database on the manager: the endpoint knows whether DST is in force, and
 * the manager's own zone and DST rules do not matter.
 */
import { HoldfastError } from '../util/errors.js'

export const DAY_NAMES = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'] as const
const MINUTES_PER_DAY = 24 * 60
/** Longest window string accepted: a config or a manifest must not hand the parser a novel. */
export const MAX_WINDOW_SPEC_CHARS = 512
/** Real offsets run from UTC-12 to UTC+14. */
export const MAX_UTC_OFFSET_MINUTES = 14 * 60

export interface WindowRule {
  /** Days (0 = Sunday) the range starts on. */
  days: ReadonlySet<number>
  /** Minutes after local midnight; `end <= start` runs overnight into the next day. */
  start: number
  end: number
}

export interface UploadWindows {
  /** The text it was parsed from, normalised to single spaces. */
  spec: string
  rules: WindowRule[]
}

export const NO_WINDOWS: UploadWindows = Object.freeze({ spec: '', rules: [] })

function invalid (spec: string, why: string): HoldfastError {
  return new HoldfastError('CONFIG_INVALID', `upload window '${spec}': ${why}`, { spec })
}

function parseDay (spec: string, token: string): number {
  const i = DAY_NAMES.findIndex(d => d.toLowerCase() === token.toLowerCase())
  if (i < 0) throw invalid(spec, `'${token}' is not a day (${DAY_NAMES.join(', ')})`)
  return i
}

function parseDays (spec: string, text: string): Set<number> {
  const days = new Set<number>()
  for (const part of text.split(',')) {
    const [from, to, extra] = part.split('-')
    if (from === undefined || from === '' || extra !== undefined) throw invalid(spec, `'${part}' is not a day or a day range`)
    const a = parseDay(spec, from)
    if (to === undefined) { days.add(a); continue }
    const b = parseDay(spec, to)
    // Fri-Mon wraps over the weekend: walk forward from the first day to the last
    for (let d = a; ; d = (d + 1) % 7) {
      days.add(d)
      if (d === b) break
    }
  }
  return days
}

function parseTime (spec: string, text: string, allow24: boolean): number {
  const m = /^(\d{1,2}):(\d{2})$/.exec(text)
  if (m === null) throw invalid(spec, `'${text}' is not a time (HH:MM)`)
  const h = Number(m[1])
  const min = Number(m[2])
  if (h === 24 && min === 0 && allow24) return MINUTES_PER_DAY
  if (h > 23 || min > 59) throw invalid(spec, `'${text}' is not a time of day`)
  return h * 60 + min
}

/** Parses a window spec; throws CONFIG_INVALID saying what is wrong. */
export function parseUploadWindows (input: string): UploadWindows {
  if (input.length > MAX_WINDOW_SPEC_CHARS) throw invalid(input.slice(0, 40) + '…', `longer than ${MAX_WINDOW_SPEC_CHARS} characters`)
  const spec = input.trim().replace(/\s+/g, ' ')
  if (spec === '') return NO_WINDOWS
  const rules: WindowRule[] = []
  for (const rawGroup of spec.split(';')) {
    const group = rawGroup.trim()
    if (group === '') throw invalid(spec, 'an empty group between semicolons')
    // a day list, when present, is the first word and starts with a letter ('all' is not a day)
    const first = group.split(' ')[0] as string
    const hasDays = /^[a-z]/i.test(first) && first.toLowerCase() !== 'all'
    const days = hasDays ? parseDays(spec, first) : new Set([0, 1, 2, 3, 4, 5, 6])
    const rest = (hasDays ? group.slice(first.length) : group).trim()
    if (rest === '') throw invalid(spec, `'${group}' names days but no times (add 'all' for whole days)`)
    if (rest.toLowerCase() === 'all') { rules.push({ days, start: 0, end: MINUTES_PER_DAY }); continue }
    for (const rawRange of rest.split(',')) {
      const range = rawRange.trim().replace(/ ?- ?/, '-')
      const [from, to, extra] = range.split('-')
      if (from === undefined || to === undefined || extra !== undefined) throw invalid(spec, `'${rawRange.trim()}' is not a time range (HH:MM-HH:MM or all)`)
      const start = parseTime(spec, from, false)
      const end = parseTime(spec, to, true)
      if (start === end) throw invalid(spec, `'${range}' is empty (use 'all' for a whole day)`)
      rules.push({ days, start, end })
    }
  }
  return { spec, rules }
}

/** The endpoint's local weekday (0 = Sunday) and minute of day at a UTC instant. */
export function localTime (utcMs: number, offsetMinutes: number): { day: number, minute: number } {
  const local = new Date(utcMs + offsetMinutes * 60_000)
  return { day: local.getUTCDay(), minute: local.getUTCHours() * 60 + local.getUTCMinutes() }
}

/** Whether the instant falls inside any window, in the local time `offsetMinutes` east of UTC. */
export function insideWindow (windows: UploadWindows, utcMs: number, offsetMinutes: number): boolean {
  if (windows.rules.length === 0) return false
  const { day, minute } = localTime(utcMs, offsetMinutes)
  const yesterday = (day + 6) % 7
  for (const r of windows.rules) {
    if (r.start < r.end) {
      if (r.days.has(day) && minute >= r.start && minute < r.end) return true
    } else {
      // overnight: the evening part today, or the morning part of a window that began yesterday
      if (r.days.has(day) && minute >= r.start) return true
      if (r.days.has(yesterday) && minute < r.end) return true
    }
  }
  return false
}

/**
 * The offset (minutes east of UTC) of an IANA zone at an instant, for an endpoint that reports
 * a zone and no offset; undefined for a zone this runtime does not know.
 */
export function zoneOffsetMinutes (timeZone: string, utcMs: number): number | undefined {
  try {
    const parts = new Intl.DateTimeFormat('en-US', { timeZone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric' }).formatToParts(new Date(utcMs))
    const get = (t: string): number => Number(parts.find(p => p.type === t)?.value)
    const asUtc = Date.UTC(get('year'), get('month') - 1, get('day'), get('hour'), get('minute'))
    const offset = Math.round((asUtc - Math.floor(utcMs / 60_000) * 60_000) / 60_000)
    return Number.isFinite(offset) && Math.abs(offset) <= MAX_UTC_OFFSET_MINUTES ? offset : undefined
  } catch {
    return undefined
  }
}
