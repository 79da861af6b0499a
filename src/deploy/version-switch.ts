/**
 * The `current` link of an install root and the moves of it: switch to an installed version,
 * roll back to the one before. The link is replaced atomically (a new link under a temporary
 * name, renamed over `current`), so a crash leaves either the old target or the new one, never
 * no link. Layout: `<installRoot>/versions/<version>/` and `<installRoot>/current ->
 * versions/<version>` (relative, so the root can be moved or bind-mounted).
 */
import { lstatSync, readlinkSync, renameSync, symlinkSync, unlinkSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { fsyncDir } from '../util/durable-file.js'
import { HoldfastError } from '../util/errors.js'
import { isSafeVersion } from './package-manifest.js'
import { readUpgradeState, writeUpgradeState, type UpgradeEvent, type UpgradeState } from './upgrade-state.js'

export const CURRENT_LINK = 'current'
export const VERSIONS_DIR = 'versions'

export function versionDir (installRoot: string, version: string): string {
  return join(installRoot, VERSIONS_DIR, version)
}

/** The version `current` points at, or undefined when there is no link (nothing installed yet). */
export function currentVersion (installRoot: string): string | undefined {
  let target: string
  try {
    target = readlinkSync(join(installRoot, CURRENT_LINK))
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return undefined
    if (code === 'EINVAL') throw new HoldfastError('UPGRADE_FAILED', `${join(installRoot, CURRENT_LINK)} is not a symbolic link`)
    throw err
  }
  const m = /^versions\/([^/]+)$/.exec(target)
  if (m === null || !isSafeVersion(m[1])) throw new HoldfastError('UPGRADE_FAILED', `${join(installRoot, CURRENT_LINK)} points at ${target}, not at versions/<version>`)
  return m[1]
}

function requireInstalled (installRoot: string, version: string): void {
  if (!isSafeVersion(version)) throw new HoldfastError('UPGRADE_FAILED', `${JSON.stringify(version).slice(0, 80)} is not a safe version name`)
  let isDir = false
  try { isDir = lstatSync(versionDir(installRoot, version)).isDirectory() } catch {}
  if (!isDir) throw new HoldfastError('UPGRADE_FAILED', `version ${version} is not installed in ${installRoot}`)
}

/** Points `current` at versions/<version>: one rename, then the directory fsync'd. */
function pointCurrent (installRoot: string, version: string): void {
  const tmp = join(installRoot, `.${CURRENT_LINK}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`)
  symlinkSync(`${VERSIONS_DIR}/${version}`, tmp)
  try {
    renameSync(tmp, join(installRoot, CURRENT_LINK))
  } catch (err) {
    try { unlinkSync(tmp) } catch {}
    throw err
  }
  fsyncDir(installRoot)
}

const stamp = (now: number): string => new Date(now).toISOString()

/**
 * The state as recorded, reconciled with the link: a crash between the link's rename and the
 * state's write leaves a link the state does not know, which is a switch not yet proven, with
 * the recorded version to go back to. No state at all (a version installed by hand) is taken as
 * healthy: there is nothing older to go back to.
 */
export function effectiveState (installRoot: string): UpgradeState | undefined {
  const linked = currentVersion(installRoot)
  const state = readUpgradeState(installRoot)
  if (linked === undefined) return state
  if (state === undefined) return { format: 1, phase: 'healthy', current: linked, attempts: 0, history: [] }
  if (state.current === linked) return state
  return { ...state, phase: 'switched', current: linked, previous: state.current, attempts: 0 }
}

/**
 * Switches `current` to an installed version and records the switch as awaiting health. The
 * link moves first, then the state: see effectiveState for a crash between the two. Switching
 * to the version already current changes nothing.
 */
export async function switchCurrent (installRoot: string, version: string, now: number = Date.now()): Promise<{ previous?: string }> {
  requireInstalled(installRoot, version)
  const before = effectiveState(installRoot)
  const previous = currentVersion(installRoot)
  if (previous === version) return {}
  pointCurrent(installRoot, version)
  const event: UpgradeEvent = { at: stamp(now), event: 'switched', version, ...(previous !== undefined ? { from: previous } : {}) }
  writeUpgradeState(installRoot, {
    format: 1,
    phase: 'switched',
    current: version,
    ...(previous !== undefined ? { previous } : {}),
    attempts: 0,
    history: [...(before?.history ?? []), event]
  })
  return previous !== undefined ? { previous } : {}
}

/**
 * Goes back to the version before the last switch, records why, and returns it; undefined (and
 * nothing changed but the history) when there is none to go back to: the phase is not
 * `switched`, it was a first install, or the previous version's directory is gone.
 */
export async function rollback (installRoot: string, reason = 'rollback requested', now: number = Date.now()): Promise<string | undefined> {
  const state = effectiveState(installRoot)
  if (state === undefined) return undefined
  const target = state.phase === 'switched' ? state.previous : undefined
  let installed = false
  if (target !== undefined) {
    try { requireInstalled(installRoot, target); installed = true } catch {}
  }
  if (target === undefined || !installed) {
    writeUpgradeState(installRoot, { ...state, history: [...state.history, { at: stamp(now), event: 'rollback-impossible', version: state.current, reason }] })
    return undefined
  }
  pointCurrent(installRoot, target)
  writeUpgradeState(installRoot, {
    format: 1,
    phase: 'rolled-back',
    current: target,
    attempts: 0,
    failed: { version: state.current, reason },
    history: [...state.history, { at: stamp(now), event: 'rolled-back', version: target, from: state.current, reason }]
  })
  return target
}

/** Records that `version` (still current) reported healthy: the switch is confirmed. */
export function markHealthy (installRoot: string, version: string, now: number = Date.now()): void {
  const state = effectiveState(installRoot)
  if (state === undefined || state.current !== version || state.phase !== 'switched') return
  writeUpgradeState(installRoot, {
    format: 1,
    phase: 'healthy',
    current: version,
    attempts: 0,
    history: [...state.history, { at: stamp(now), event: 'healthy', version }]
  })
}
