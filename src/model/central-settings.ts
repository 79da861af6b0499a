/**
 * The agent settings a manager may set centrally (`holdfast config set`, and the configuration a
 * deploy offer carries to a bare node). Everything else in an agent's config stays the
 * endpoint's own: where restores land, its own upload ceiling, its disk reserve, its identity
 * and pinned managers. A central change can protect more or less, but it cannot redirect
 * restored data or lift a limit the person at the endpoint set.
 */
import { HoldfastError } from '../util/errors.js'

export interface CentralFolder {
  /** Absolute path on the endpoint. */
  path: string
  name?: string
  ignore?: string[]
}

export interface CentralAgentSettings {
  /** Protected folders, absolute paths on the endpoint. */
  folders?: CentralFolder[]
  /**
   * A rule the endpoint expands into folders, for fleets whose machines differ:
   * `homes:uid>=1000` protects the home directory of every local user with uid ≥ 1000.
   */
  folderRule?: string
  settleSeconds?: number
  scanIntervalSeconds?: number
  spoolCapBytes?: number
  uploadWindows?: string
  idleLoadPerCpu?: number
  idleInputSeconds?: number
  workers?: number
}

/** Keys `holdfast config set` accepts, with the JSON type each takes. */
export const CENTRAL_KEYS = {
  folders: 'folders',
  folderRule: 'string',
  settleSeconds: 'number',
  scanIntervalSeconds: 'number',
  spoolCapBytes: 'number',
  uploadWindows: 'string',
  idleLoadPerCpu: 'number',
  idleInputSeconds: 'number',
  workers: 'number'
} as const satisfies Record<keyof CentralAgentSettings, 'folders' | 'string' | 'number'>

/** Agent keys the manager may never override: they protect the endpoint's own choices. */
export const LOCAL_ONLY_KEYS = ['restoreDir', 'maxUploadBytesPerSecond', 'diskReserveBytes', 'watch', 'watchMaxEntries'] as const

/** A central settings document as versioned by the manager: every change gets the next version. */
export interface VersionedSettings {
  version: number
  settings: CentralAgentSettings
}

const MAX_FOLDERS = 256
const MAX_STRING = 4096

function isFolder (v: unknown): v is CentralFolder {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false
  const r = v as Record<string, unknown>
  if (!Object.keys(r).every(k => k === 'path' || k === 'name' || k === 'ignore')) return false
  return typeof r.path === 'string' && r.path.startsWith('/') && r.path.length <= MAX_STRING && !r.path.includes('\0') &&
    (r.name === undefined || (typeof r.name === 'string' && r.name.length <= 255)) &&
    (r.ignore === undefined || (Array.isArray(r.ignore) && r.ignore.length <= 1024 && r.ignore.every(g => typeof g === 'string' && g.length <= MAX_STRING)))
}

/**
 * Checks a settings object key by key, as it comes off the wire or from `config set`: an
 * unknown or local-only key is CONFIG_UNKNOWN_KEY, a wrong type CONFIG_INVALID, naming the key.
 */
export function decodeCentralSettings (value: unknown): CentralAgentSettings {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new HoldfastError('CONFIG_INVALID', 'central settings must be an object')
  const out: Record<string, unknown> = {}
  for (const [key, v] of Object.entries(value)) {
    const kind = Object.hasOwn(CENTRAL_KEYS, key) ? CENTRAL_KEYS[key as keyof typeof CENTRAL_KEYS] : undefined
    if (kind === undefined) {
      const local = (LOCAL_ONLY_KEYS as readonly string[]).includes(key)
      throw new HoldfastError('CONFIG_UNKNOWN_KEY', local ? `'${key}' is the endpoint's own setting; the manager cannot set it` : `unknown agent setting '${key}'`, { key })
    }
    const ok = kind === 'folders'
      ? Array.isArray(v) && v.length <= MAX_FOLDERS && v.every(isFolder)
      : kind === 'string'
        ? typeof v === 'string' && v.length <= MAX_STRING
        : typeof v === 'number' && Number.isFinite(v) && v >= 0
    if (!ok) throw new HoldfastError('CONFIG_INVALID', `agent setting '${key}' must be ${kind === 'folders' ? `a list of at most ${MAX_FOLDERS} {path (absolute), name?, ignore?}` : kind === 'number' ? 'a number ≥ 0' : 'a string'}`, { key })
    out[key] = v
  }
  return out as CentralAgentSettings
}
