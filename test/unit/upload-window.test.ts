/**
 * Upload windows: parsing (typed CONFIG_INVALID errors) and evaluation in the endpoint's local
 * time, given as the UTC offset it reports (so the manager's zone and DST never matter).
 */
import { strict as assert } from 'node:assert'
import { insideWindow, parseUploadWindows, zoneOffsetMinutes } from '../../src/model/upload-window.js'
import { holdfastCode } from './helpers.js'

/** A UTC instant for a local wall time at an offset: 2025-06-02 is a Monday. */
function at (day: 'Sun' | 'Mon' | 'Tue' | 'Wed' | 'Thu' | 'Fri' | 'Sat', hhmm: string, offsetMinutes = 0): number {
  const days = { Sun: 1, Mon: 2, Tue: 3, Wed: 4, Thu: 5, Fri: 6, Sat: 7 }
  const [h, m] = hhmm.split(':').map(Number) as [number, number]
  return Date.UTC(2025, 5, days[day], h, m) - offsetMinutes * 60_000
}

describe('upload windows', () => {
  const spec = parseUploadWindows('Mon-Fri 12:00-13:00, 18:00-07:00; Sat-Sun all')

  it('a weekday lunch window holds its start, not its end', () => {
    assert.equal(insideWindow(spec, at('Tue', '12:00'), 0), true)
    assert.equal(insideWindow(spec, at('Tue', '12:59'), 0), true)
    assert.equal(insideWindow(spec, at('Tue', '13:00'), 0), false)
    assert.equal(insideWindow(spec, at('Tue', '11:59'), 0), false)
  })

  it('an overnight window runs into the next morning and belongs to the day it starts', () => {
    assert.equal(insideWindow(spec, at('Wed', '23:30'), 0), true)
    assert.equal(insideWindow(spec, at('Thu', '06:59'), 0), true)
    assert.equal(insideWindow(spec, at('Thu', '07:00'), 0), false)
    // Friday evening runs into Saturday morning (Saturday is all day anyway); Monday 03:00
    // is the tail of a Sunday evening window, and Sunday is covered by 'all' only as a day
    assert.equal(insideWindow(spec, at('Mon', '03:00'), 0), false, 'Sun has no overnight range, so Monday 03:00 is outside')
    const onlyWeekdays = parseUploadWindows('Mon-Fri 22:00-06:00')
    assert.equal(insideWindow(onlyWeekdays, at('Sat', '05:00'), 0), true, 'Friday night ends Saturday morning')
    assert.equal(insideWindow(onlyWeekdays, at('Mon', '05:00'), 0), false, 'Sunday night is not a window')
    assert.equal(insideWindow(onlyWeekdays, at('Sun', '23:00'), 0), false)
  })

  it('a weekday range wraps over Sun-Mon', () => {
    const w = parseUploadWindows('Fri-Mon 09:00-10:00')
    for (const d of ['Fri', 'Sat', 'Sun', 'Mon'] as const) assert.equal(insideWindow(w, at(d, '09:30'), 0), true, d)
    for (const d of ['Tue', 'Wed', 'Thu'] as const) assert.equal(insideWindow(w, at(d, '09:30'), 0), false, d)
    const sunMon = parseUploadWindows('Sun-Mon all')
    assert.equal(insideWindow(sunMon, at('Sun', '00:00'), 0), true)
    assert.equal(insideWindow(sunMon, at('Mon', '23:59'), 0), true)
    assert.equal(insideWindow(sunMon, at('Tue', '00:00'), 0), false)
  })

  it('weekend all day, day lists, 24:00 and no day list (every day)', () => {
    assert.equal(insideWindow(spec, at('Sat', '15:00'), 0), true)
    assert.equal(insideWindow(spec, at('Sun', '00:00'), 0), true)
    const list = parseUploadWindows('Mon,Wed,Fri 20:00-24:00')
    assert.equal(insideWindow(list, at('Wed', '23:59'), 0), true)
    assert.equal(insideWindow(list, at('Thu', '00:00'), 0), false)
    assert.equal(insideWindow(list, at('Tue', '21:00'), 0), false)
    const daily = parseUploadWindows('01:00-02:00')
    for (const d of ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'] as const) assert.equal(insideWindow(daily, at(d, '01:30'), 0), true, d)
  })

  it('evaluates in the endpoint\'s reported offset, whatever the manager\'s zone', () => {
    const lunch = parseUploadWindows('Mon-Fri 12:00-13:00')
    // 12:30 in UTC+5:30 is 07:00 UTC; 12:30 in UTC-8 is 20:30 UTC
    assert.equal(insideWindow(lunch, at('Mon', '12:30', 330), 330), true)
    assert.equal(insideWindow(lunch, at('Mon', '12:30', 330), 0), false)
    assert.equal(insideWindow(lunch, at('Mon', '12:30', -480), -480), true)
    // the local day differs from the UTC day: Friday 23:30 in UTC-8 is Saturday UTC
    const friNight = parseUploadWindows('Fri 23:00-23:59')
    assert.equal(insideWindow(friNight, at('Fri', '23:30', -480), -480), true)
    // a DST change is just a new offset from the endpoint: the same wall time stays inside
    assert.equal(insideWindow(lunch, at('Mon', '12:30', 60), 60), true)
    assert.equal(insideWindow(lunch, at('Mon', '12:30', 120), 120), true)
  })

  it('an IANA zone gives its offset at the instant (for agents that report only a zone)', () => {
    assert.equal(zoneOffsetMinutes('Europe/Berlin', Date.UTC(2025, 0, 15, 12)), 60)
    assert.equal(zoneOffsetMinutes('Europe/Berlin', Date.UTC(2025, 6, 15, 12)), 120)
    assert.equal(zoneOffsetMinutes('Asia/Kolkata', Date.UTC(2025, 6, 15, 12)), 330)
    assert.equal(zoneOffsetMinutes('Not/A_Zone', 0), undefined)
  })

  it('an empty spec is no window; spaces and case are forgiven', () => {
    const none = parseUploadWindows('  ')
    assert.equal(none.rules.length, 0)
    assert.equal(insideWindow(none, at('Mon', '12:00'), 0), false)
    const loose = parseUploadWindows('mon-FRI  12:00 - 13:00 ;  sat all')
    assert.equal(insideWindow(loose, at('Thu', '12:10'), 0), true)
    assert.equal(insideWindow(loose, at('Sat', '03:00'), 0), true)
  })

  it('rejects what does not parse with CONFIG_INVALID saying what', () => {
    for (const [bad, says] of [
      ['Mon-Fri', 'no times'],
      ['Mon-Fry 12:00-13:00', "'Fry' is not a day"],
      ['12:00-25:00', 'not a time of day'],
      ['12:00-12:00', 'empty'],
      ['12:00', 'not a time range'],
      ['Mon-Fri 12-13', 'not a time'],
      ['Mon 10:00-11:00;;Tue all', 'empty group'],
      ['Mon-Tue-Wed 10:00-11:00', 'not a day or a day range'],
      ['24:00-01:00', 'not a time of day'],
      ['x'.repeat(600), 'longer than']
    ] as Array<[string, string]>) {
      assert.throws(() => parseUploadWindows(bad), holdfastCode('CONFIG_INVALID', says), bad)
    }
  })
})
