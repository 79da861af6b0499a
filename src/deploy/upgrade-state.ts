/**
 * The upgrade state of an install root, in `<installRoot>/upgrade-state.json` (written whole,
 * durably). The `current` link says what runs; this file says whether that version has proven
 * itself since it was switched to, what to go back to if not, and a short history of why
 * (docs/architecture.md, "Packages and upgrades").
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { writeFileDurable } from '../util/durable-file.js'
import { HoldfastError } from '../util/errors.js'
import { isSafeVersion } from './package-manifest.js'

export const STATE_FILE = 'upgrade-state.json'
const HISTORY_MAX = 20

export type UpgradePhase =
  /** `current` was switched to a new version that has not yet reported healthy. */
  | 'switched'
  /** `current` reported healthy (or was installed by hand and is taken as good). */
  | 'healthy'
  /** the last switch failed its health check; `current` is the version before it. */
  | 'rolled-back'

export interface UpgradeEvent {
  at: string
  event: 'installed' | 'switched' | 'healthy' | 'rolled-back' | 'rollback-impossible'
  version: string
  from?: string
  reason?: string
}

export interface UpgradeState {
  format: 1
  phase: UpgradePhase
  /** The version `current` points at, as last recorded. */
  current: string
  /** While `switched`: the version to go back to (absent for a first install). */
  previous?: string
  /** While `switched`: how many times a supervisor has started `current` without a health report. */
  attempts: number
  /** After a rollback: the version that failed and why. */
  failed?: { version: string, reason: string }
  history: UpgradeEvent[]
}

export function readUpgradeState (installRoot: string): UpgradeState | undefined {
  let text: string
  try {
    text = readFileSync(join(installRoot, STATE_FILE), 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  let value: Partial<UpgradeState>
  try { value = JSON.parse(text) as Partial<UpgradeState> } catch (err) {
    throw new HoldfastError('UPGRADE_FAILED', `${join(installRoot, STATE_FILE)} is not JSON`, {}, { cause: err })
  }
  if (value.format !== 1 || !isSafeVersion(value.current) || !['switched', 'healthy', 'rolled-back'].includes(value.phase ?? '') ||
      (value.previous !== undefined && !isSafeVersion(value.previous))) {
    throw new HoldfastError('UPGRADE_FAILED', `${join(installRoot, STATE_FILE)} is damaged`)
  }
  return {
    format: 1,
    phase: value.phase as UpgradePhase,
    current: value.current,
    ...(value.previous !== undefined ? { previous: value.previous } : {}),
    attempts: typeof value.attempts === 'number' && value.attempts >= 0 ? value.attempts : 0,
    ...(value.failed !== undefined ? { failed: value.failed } : {}),
    history: Array.isArray(value.history) ? value.history.slice(-HISTORY_MAX) : []
  }
}

export function writeUpgradeState (installRoot: string, state: UpgradeState): void {
  const out: UpgradeState = { ...state, history: state.history.slice(-HISTORY_MAX) }
  writeFileDurable(join(installRoot, STATE_FILE), JSON.stringify(out, null, 2) + '\n', 0o644)
}

/** Appends one event to the history (kept to the last 20) without changing the phase. */
export function recordEvent (installRoot: string, event: UpgradeEvent): void {
  const state = readUpgradeState(installRoot)
  if (state === undefined) return
  writeUpgradeState(installRoot, { ...state, history: [...state.history, event] })
}
