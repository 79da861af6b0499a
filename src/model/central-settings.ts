/**
 * The agent settings a manager may set centrally (`holdfast config set`, and the configuration a
 * deploy offer carries to a bare node). Everything else in an agent's config stays the
 * endpoint's own: where restores land, its own upload ceiling, its disk reserve, its identity
 * and pinned managers. A central change can protect more or less, but it cannot redirect
 * restored data or lift a limit the person at the endpoint set.
 */
import { resolve } from 'node:path'
import { HoldfastError } from '../util/errors.js'
import { resolveConfig, type ConfigInput, type HoldfastConfig } from '../config/config.js'
import { parseUploadWindows } from './upload-window.js'
import { expandFolderRule, parseFolderRule } from './folder-rule.js'

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

/** A key the manager may set, or CONFIG_UNKNOWN_KEY saying why not (unknown, or the endpoint's own). */
export function checkCentralKey (key: string): keyof CentralAgentSettings {
  if (Object.hasOwn(CENTRAL_KEYS, key)) return key as keyof CentralAgentSettings
  const local = (LOCAL_ONLY_KEYS as readonly string[]).includes(key)
  const shown = key.length > 64 ? `${key.slice(0, 64)}…` : key
  throw new HoldfastError('CONFIG_UNKNOWN_KEY', local ? `'${shown}' is the endpoint's own setting; the manager cannot set it` : `unknown agent setting '${shown}' (known: ${Object.keys(CENTRAL_KEYS).join(', ')})`, { key: shown })
}

/**
 * Checks a settings object key by key, as it comes off the wire or from `config set`: an
 * unknown or local-only key is CONFIG_UNKNOWN_KEY, a wrong type CONFIG_INVALID, naming the key.
 */
export function decodeCentralSettings (value: unknown): CentralAgentSettings {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new HoldfastError('CONFIG_INVALID', 'central settings must be an object')
  const out: Record<string, unknown> = {}
  for (const [key, v] of Object.entries(value)) {
    const kind = CENTRAL_KEYS[checkCentralKey(key)]
    const ok = kind === 'folders'
      ? Array.isArray(v) && v.length <= MAX_FOLDERS && v.every(isFolder)
      : kind === 'string'
        ? typeof v === 'string' && v.length <= MAX_STRING
        : typeof v === 'number' && Number.isFinite(v) && v >= 0
    if (!ok) throw new HoldfastError('CONFIG_INVALID', `agent setting '${key}' must be ${kind === 'folders' ? `a list of at most ${MAX_FOLDERS} {path (absolute), name?, ignore?}` : kind === 'number' ? 'a number ≥ 0' : 'a string'}`, { key })
    // a rule or a window spec that cannot be read is refused at `config set`, not at every agent
    if (key === 'folderRule') parseFolderRule(v as string)
    if (key === 'uploadWindows') parseUploadWindows(v as string)
    out[key] = v
  }
  return out as CentralAgentSettings
}

/**
 * An endpoint's effective settings: the fleet-wide ones, then each more specific scope's
 * (its name, then its peer id), key by key: a scope that sets `folders` replaces the list.
 */
export function mergeSettings (...scopes: CentralAgentSettings[]): CentralAgentSettings {
  return Object.assign({}, ...scopes) as CentralAgentSettings
}

export interface ExpandOptions {
  /** A passwd file's text for `folderRule` (default: this host's /etc/passwd). */
  passwd?: string
  /** Whether a path is a directory (default: stat). */
  isDir?: (path: string) => boolean
  /** Resolves the local config's relative paths (default: the working directory). */
  baseDir?: string
}

/** The folders the settings protect on this host: the listed ones and what the rule expands to. */
export function centralFolders (settings: CentralAgentSettings, options: ExpandOptions = {}): CentralFolder[] {
  const listed = settings.folders ?? []
  if (settings.folderRule === undefined) return listed
  const expanded = expandFolderRule(settings.folderRule, options)
  if (expanded.length === 0) throw new HoldfastError('CONFIG_REFUSED', `folder rule '${settings.folderRule}' names no existing home directory on this host`, { key: 'folderRule' })
  const paths = new Set(listed.map(f => f.path))
  return [...listed, ...expanded.filter(f => !paths.has(f.path))]
}

/**
 * The agent's config: its local agent.json with the central settings over it. The central
 * value of a key wins over the local one, except folders, which are added to the endpoint's own
 * (a folder the person at the endpoint protects stays protected); the local-only keys
 * (LOCAL_ONLY_KEYS), identity and pinned managers are never touched. Checked by resolveConfig
 * like any config, so what it returns is as valid as a loaded file.
 */
export function agentConfigFrom (localRaw: ConfigInput, settings: CentralAgentSettings, options: ExpandOptions = {}): HoldfastConfig {
  const baseDir = options.baseDir ?? process.cwd()
  const central = centralFolders(settings, options)
  const local = localRaw.agent?.folders ?? []
  const localPaths = new Set(local.map(f => resolve(baseDir, typeof f === 'string' ? f : f.path)))
  const agent: Record<string, unknown> = { ...localRaw.agent }
  for (const key of Object.keys(CENTRAL_KEYS) as Array<keyof CentralAgentSettings>) {
    if (key === 'folders' || key === 'folderRule') continue
    const v = settings[key]
    if (v !== undefined) agent[key] = v
  }
  agent.folders = [...local, ...central.filter(f => !localPaths.has(f.path)).map(f => ({ ...f }))]
  return resolveConfig({ ...localRaw, agent }, baseDir)
}
