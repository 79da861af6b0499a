/**
 * When an endpoint uploads: the manager has read its manifest and decides whether to pull now.
 * It pulls when the endpoint is idle or inside its upload window; when neither, it still pulls
 * (at a fraction of its share) once the last good backup is older than the max-age limit, so a
 * machine that is never idle is still protected. An admin's backup-now overrides all of it.
 */
import type { AgentManifest } from '../../../protocols/manifest.js'
import type { Logger } from '../../../util/log.js'
import { describeError } from '../../../util/errors.js'
import { MAX_UTC_OFFSET_MINUTES, NO_WINDOWS, insideWindow, parseUploadWindows, zoneOffsetMinutes, type UploadWindows } from '../../../model/upload-window.js'

export type AdmitMode = 'idle' | 'window' | 'max-age' | 'forced'

export type Admission =
  | { pull: true, mode: AdmitMode, fraction: number }
  | { pull: false, reason: 'outside-window-not-idle', detail: string }

export interface AdmissionPolicy {
  /** A last good backup older than this is pulled anyway (0 = never). */
  maxAgeMs: number
  /** Share of its rate a max-age pull may use. */
  maxAgeRateFraction: number
}

/** Windows from the manager's config: per endpoint (by name or peer id) and a default for all. */
export interface ManagerWindows {
  default?: UploadWindows
  endpoints: Map<string, UploadWindows>
}

/** Every day, all day: what applies when nobody set a window (the behaviour before windows). */
export const ALWAYS: UploadWindows = parseUploadWindows('all')

/**
 * The windows that apply to an endpoint: the manager's entry for it, else what the agent's own
 * config reports, else the manager's default, else always (windows and idleness are opt-in:
 * set a default of "" to pull only idle endpoints). A reported spec that does not parse is
 * logged and treated as no window (the agent is still pulled when idle).
 */
export function effectiveWindows (peer: { peerId: string, name: string }, manifest: AgentManifest | undefined, configured: ManagerWindows, log: Logger): UploadWindows {
  const own = configured.endpoints.get(peer.peerId) ?? configured.endpoints.get(peer.name)
  if (own !== undefined) return own
  const reported = manifest?.uploadWindows
  if (reported !== undefined && reported.trim() !== '') {
    try {
      return parseUploadWindows(reported)
    } catch (err) {
      log.warn('endpoint reports upload windows that do not parse; treating them as none', { peer: peer.peerId, windows: reported.slice(0, 80), err: describeError(err) })
      return NO_WINDOWS
    }
  }
  return configured.default ?? ALWAYS
}

/** The endpoint's offset east of UTC: as reported, else from its zone, else UTC (an old agent). */
export function endpointOffset (manifest: AgentManifest, now: number): number {
  if (manifest.utcOffsetMinutes !== undefined && Math.abs(manifest.utcOffsetMinutes) <= MAX_UTC_OFFSET_MINUTES) return manifest.utcOffsetMinutes
  if (manifest.timeZone !== undefined) return zoneOffsetMinutes(manifest.timeZone, now) ?? 0
  return 0
}

export function admit (input: { manifest: AgentManifest, windows: UploadWindows, now: number, lastGoodAt?: number, firstSeen: number, policy: AdmissionPolicy, forced: boolean }): Admission {
  const { manifest, windows, now, policy } = input
  if (input.forced) return { pull: true, mode: 'forced', fraction: 1 }
  // an old agent always reports idle: it is pulled as before
  if (manifest.idle) return { pull: true, mode: 'idle', fraction: 1 }
  if (insideWindow(windows, now, endpointOffset(manifest, now))) return { pull: true, mode: 'window', fraction: 1 }
  if (isOverdue(input.lastGoodAt, input.firstSeen, now, policy.maxAgeMs)) return { pull: true, mode: 'max-age', fraction: policy.maxAgeRateFraction }
  const detail = windows.rules.length === 0 ? 'not idle, and no upload window is set' : `not idle, and outside its upload window '${windows.spec}'`
  return { pull: false, reason: 'outside-window-not-idle', detail }
}

/** Whether the last good backup (or, never backed up, first sight) is older than the limit. */
export function isOverdue (lastGoodAt: number | undefined, firstSeen: number, now: number, maxAgeMs: number): boolean {
  if (maxAgeMs <= 0) return false
  return now - (lastGoodAt ?? firstSeen) > maxAgeMs
}
