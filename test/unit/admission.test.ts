/**
 * When an endpoint uploads: idle, inside its window, or overdue (max-age, reduced rate); an
 * admin's backup-now overrides; a window from a manifest that does not parse is logged and
 * treated as none; with no window set anywhere, the endpoint is pulled as before windows.
 */
import { strict as assert } from 'node:assert'
import { admit, effectiveWindows, type ManagerWindows } from '../../src/roles/manager/scheduler/admission.js'
import { NO_WINDOWS, parseUploadWindows } from '../../src/model/upload-window.js'
import type { AgentManifest } from '../../src/protocols/manifest.js'
import type { Logger } from '../../src/util/log.js'
import { silentLogger } from '../../src/util/log.js'

const MON_NOON_UTC = Date.UTC(2025, 5, 2, 12, 0)
const policy = { maxAgeMs: 24 * 3_600_000, maxAgeRateFraction: 0.25 }
const busy = (extra: Partial<AgentManifest> = {}): AgentManifest => ({ agentVersion: '1', idle: false, sets: [], utcOffsetMinutes: 0, ...extra })

describe('admission', () => {
  it('idle, in window, overdue, forced, or not at all', () => {
    const lunch = parseUploadWindows('Mon-Fri 12:00-13:00')
    const base = { now: MON_NOON_UTC, firstSeen: MON_NOON_UTC - 1000, lastGoodAt: MON_NOON_UTC - 3_600_000, policy, forced: false }
    assert.deepEqual(admit({ ...base, manifest: busy({ idle: true }), windows: NO_WINDOWS }), { pull: true, mode: 'idle', fraction: 1 })
    assert.deepEqual(admit({ ...base, manifest: busy(), windows: lunch }), { pull: true, mode: 'window', fraction: 1 })
    // at UTC-3 it is 09:00 there: outside
    const outside = admit({ ...base, manifest: busy({ utcOffsetMinutes: -180 }), windows: lunch })
    assert.equal(outside.pull, false)
    assert.deepEqual(admit({ ...base, manifest: busy({ utcOffsetMinutes: -180 }), windows: lunch, lastGoodAt: MON_NOON_UTC - 25 * 3_600_000 }), { pull: true, mode: 'max-age', fraction: 0.25 })
    assert.deepEqual(admit({ ...base, manifest: busy({ utcOffsetMinutes: -180 }), windows: lunch, forced: true }), { pull: true, mode: 'forced', fraction: 1 })
    // a zone instead of an offset
    assert.equal(admit({ ...base, manifest: busy({ utcOffsetMinutes: undefined, timeZone: 'America/Sao_Paulo' }), windows: lunch }).pull, false)
  })

  it('windows: the manager\'s per endpoint, else the agent\'s own, else the default, else always', () => {
    const warnings: string[] = []
    const log: Logger = { ...silentLogger, warn: (m) => { warnings.push(m) }, child: () => log }
    const configured: ManagerWindows = { default: parseUploadWindows('Sat-Sun all'), endpoints: new Map([['laptop', parseUploadWindows('12:00-13:00')]]) }
    assert.equal(effectiveWindows({ peerId: 'p1', name: 'laptop' }, busy({ uploadWindows: 'all' }), configured, log).spec, '12:00-13:00')
    assert.equal(effectiveWindows({ peerId: 'p2', name: 'desk' }, busy({ uploadWindows: 'Mon 01:00-02:00' }), configured, log).spec, 'Mon 01:00-02:00')
    assert.equal(effectiveWindows({ peerId: 'p2', name: 'desk' }, busy(), configured, log).spec, 'Sat-Sun all')
    assert.equal(effectiveWindows({ peerId: 'p2', name: 'desk' }, busy(), { endpoints: new Map() }, log).spec, 'all', 'nobody set a window: pulled as before')
    assert.equal(warnings.length, 0)
    const bad = effectiveWindows({ peerId: 'p3', name: 'odd' }, busy({ uploadWindows: 'whenever 99:99' }), configured, log)
    assert.equal(bad.rules.length, 0, 'a reported window that does not parse is no window')
    assert.equal(warnings.length, 1)
    assert.equal(admit({ manifest: busy({ idle: true }), windows: bad, now: MON_NOON_UTC, firstSeen: 0, lastGoodAt: MON_NOON_UTC, policy, forced: false }).pull, true, 'and the endpoint is still pulled when idle')
  })
})
