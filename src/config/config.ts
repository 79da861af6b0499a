/**
 * Configuration: one JSON file per daemon. Every key is checked; an unknown key is an error
 * (a typo must not silently leave a folder unprotected).
 */
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { isAbsolute, join, relative, resolve, dirname, basename } from 'node:path'
import { HoldfastError } from '../util/errors.js'
import { writeFileDurable } from '../util/durable-file.js'
import { parseUploadWindows } from '../model/upload-window.js'
import { parseBudgetProfiles, parseRate } from '../model/quantities.js'
import { parseListenAddress } from '../model/listen-address.js'
import { decodeCentralSettings, type CentralAgentSettings } from '../model/central-settings.js'

export type Role = 'agent' | 'manager' | 'node'

export interface FolderConfig {
  /** Absolute path of the protected folder. */
  path: string
  /** Name the folder's entries are filed under (unique per agent). */
  name: string
  /** Glob patterns never backed up, on top of the defaults (office locks, editor temporaries). */
  ignore: string[]
}

export type WatchMode = 'auto' | 'events' | 'scan'

export interface AgentConfig {
  folders: FolderConfig[]
  /** Seconds between reconcile scans. */
  scanIntervalSeconds: number
  /** A file changed less than this long ago is left for the next scan. */
  settleSeconds: number
  /** The agent's own ceiling on upload rate, bytes per second (0 = whatever the manager says). */
  maxUploadBytesPerSecond: number
  /** Staging worker threads (0 = one per core, at most 4). */
  workers: number
  /** Most bytes the spool may hold; 0 = 10% of the free disk space at start, at most 20 GiB. */
  spoolCapBytes: number
  /** Free space staging leaves on the spool's disk; 0 = max(1 GiB, 5% of the file system). */
  diskReserveBytes: number
  /**
   * 'events': file-system events (chokidar) prompt a scan; 'scan': the reconcile timer only;
   * 'auto': events while a folder has at most `watchMaxEntries` entries, scans past that
   * (chokidar keeps ~3.4 KB per file: PERF-NOTES.md).
   */
  watch: WatchMode
  watchMaxEntries: number
  /**
   * Where restores pushed by the manager are written, as `<restoreDir>/<label>/<folder>/<path>`
   * (absolute; default `<dataDir>/restores`). Nothing is written outside it.
   */
  restoreDir: string
  /** The agent's own upload windows (see scheduler/upload-window.ts); the manager's config for it wins. */
  uploadWindows: string
  /** Idle when the 1-minute load average per core (and the CPU busy share) is below this. */
  idleLoadPerCpu: number
  /** Idle needs this long without user input, where the platform tells (src/roles/agent/idle.ts). */
  idleInputSeconds: number
}

export interface ManagerConfig {
  /** Seconds between pull rounds. */
  pullIntervalSeconds: number
  /** The global pull budget in bytes per second, shared by active pulls. */
  bandwidthBytesPerSecond: number
  /** Pulls at once (k). */
  maxConcurrentPulls: number
  /** A pull's time slice before the next endpoint's turn. */
  sliceSeconds: number
  /** An endpoint whose last good backup is older than this is pulled anyway (0 = off). */
  maxAgeHours: number
  /** The share of its rate such a pull may use. */
  maxAgeRateFraction: number
  /** B by time of day in the manager's local time: `{ "08:00-18:00": "20Mbit" }`. */
  bandwidthProfiles: Record<string, string>
  /** Per-endpoint rate caps by name or peer id: `{ "laptop": "2MiB/s" }`. */
  endpointCaps: Record<string, string>
  /** Upload windows applied to endpoints: a default for all, and per endpoint by name or peer id. */
  uploadWindows: { default?: string, endpoints: Record<string, string> }
  /** `holdfast peers` flags an endpoint overdue when its last good backup is older than this (0 = never). */
  overdueAfterHours: number
  /** The Prometheus endpoint: "<ip>:<port>", or a port (loopback); "" (the default) = off. */
  metrics: { listen: string }
  /**
   * Which bare nodes get the agent role without an admin's `holdfast deploy <node>`: 'none',
   * 'approved' (every approved node), or a glob on the node's name ('lab-*'). `settings` is
   * the agent configuration an offer carries (docs/architecture.md, "Deploy").
   */
  deploy: { auto: string, settings: CentralAgentSettings }
}

export interface MdnsConfig {
  enabled: boolean
  /** Seconds between mDNS re-queries (the announcement on start covers most cases). */
  queryIntervalSeconds: number
}

export interface HoldfastConfig {
  role: Role
  name: string
  dataDir: string
  listen: string[]
  /** 32-byte fleet pre-shared key, hex. Gates every connection (Noise prologue). */
  fleetKey: string
  /** Agent: the manager peer ids it serves (pinned at join); required, so a key holder is not a manager. */
  managers: string[]
  /** Manager: whether a host that enrols with a valid token is approved at once (else pending). */
  membership: { autoApprove: boolean }
  mdns: MdnsConfig
  /** Multiaddrs with /p2p/<id>, dialled when multicast does not pass. */
  staticPeers: string[]
  adminSocket: string
  /** `group`: a group (name or gid) whose members may use the admin socket too; none by default. */
  admin: { group?: string | number }
  agent: AgentConfig
  manager: ManagerConfig
}

function isFolderSpec (f: unknown): boolean {
  if (typeof f === 'string') return true
  if (typeof f !== 'object' || f === null) return false
  const r = f as Record<string, unknown>
  return typeof r.path === 'string' &&
    (r.name === undefined || typeof r.name === 'string') &&
    (r.ignore === undefined || (Array.isArray(r.ignore) && r.ignore.every(g => typeof g === 'string'))) &&
    Object.keys(r).every(k => k === 'path' || k === 'name' || k === 'ignore')
}

type Shape = { [key: string]: 'string' | 'number' | 'boolean' | 'string[]' | 'folders' | 'stringMap' | 'centralSettings' | 'group' | Shape }

const SHAPE: Shape = {
  role: 'string',
  name: 'string',
  dataDir: 'string',
  listen: 'string[]',
  fleetKey: 'string',
  managers: 'string[]',
  membership: { autoApprove: 'boolean' },
  mdns: { enabled: 'boolean', queryIntervalSeconds: 'number' },
  staticPeers: 'string[]',
  adminSocket: 'string',
  admin: { group: 'group' },
  agent: { folders: 'folders', scanIntervalSeconds: 'number', settleSeconds: 'number', maxUploadBytesPerSecond: 'number', workers: 'number', spoolCapBytes: 'number', diskReserveBytes: 'number', watch: 'string', watchMaxEntries: 'number', restoreDir: 'string', uploadWindows: 'string', idleLoadPerCpu: 'number', idleInputSeconds: 'number' },
  manager: { pullIntervalSeconds: 'number', bandwidthBytesPerSecond: 'number', maxConcurrentPulls: 'number', sliceSeconds: 'number', maxAgeHours: 'number', maxAgeRateFraction: 'number', bandwidthProfiles: 'stringMap', endpointCaps: 'stringMap', uploadWindows: { default: 'string', endpoints: 'stringMap' }, overdueAfterHours: 'number', metrics: { listen: 'string' }, deploy: { auto: 'string', settings: 'centralSettings' } }
}

function checkShape (value: unknown, shape: Shape, where: string): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new HoldfastError('CONFIG_INVALID', `${where || 'config'} must be an object`)
  }
  for (const [key, v] of Object.entries(value)) {
    const path = where === '' ? key : `${where}.${key}`
    // own keys only: '__proto__' or 'constructor' must not match Object.prototype
    const expected = Object.hasOwn(shape, key) ? shape[key] : undefined
    if (expected === undefined) throw new HoldfastError('CONFIG_UNKNOWN_KEY', `unknown config key '${path}'`, { key: path })
    if (typeof expected === 'object') { checkShape(v, expected, path); continue }
    if (expected === 'centralSettings') { withKey(path, () => decodeCentralSettings(v)); continue }
    const ok = expected === 'string[]'
      ? Array.isArray(v) && v.every(x => typeof x === 'string')
      : expected === 'folders'
        ? Array.isArray(v) && v.every(isFolderSpec)
        : expected === 'stringMap'
          ? typeof v === 'object' && v !== null && !Array.isArray(v) && Object.values(v).every(x => typeof x === 'string')
          : expected === 'group'
            // a group name as useradd allows it, or a gid
            ? (typeof v === 'string' && /^(?:[A-Za-z_][A-Za-z0-9_.-]{0,31}|\d{1,10})$/.test(v)) || (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < 0xffffffff)
            : typeof v === expected && (expected !== 'number' || Number.isFinite(v))
    if (!ok) throw new HoldfastError('CONFIG_INVALID', `config key '${path}' must be ${expected === 'folders' ? 'a list of paths or {path, name?, ignore?: [globs]}' : expected === 'stringMap' ? 'an object of strings' : expected === 'group' ? 'a group name or a gid' : expected}`, { key: path })
  }
}

export type ConfigInput = Partial<Omit<HoldfastConfig, 'agent' | 'manager' | 'mdns' | 'membership' | 'admin'>> & {
  admin?: { group?: string | number }
  membership?: { autoApprove?: boolean }
  agent?: Partial<Omit<AgentConfig, 'folders'>> & { folders?: Array<string | { path: string, name?: string, ignore?: string[] }> }
  manager?: Partial<Omit<ManagerConfig, 'uploadWindows' | 'metrics' | 'deploy'>> & { uploadWindows?: { default?: string, endpoints?: Record<string, string> }, metrics?: { listen?: string }, deploy?: { auto?: string, settings?: CentralAgentSettings } }
  mdns?: Partial<MdnsConfig>
}

/** Fills defaults and validates. `baseDir` resolves relative paths (the config file's folder). */
export function resolveConfig (input: unknown, baseDir = process.cwd()): HoldfastConfig {
  checkShape(input, SHAPE, '')
  const raw = input as ConfigInput
  const role = raw.role ?? 'agent'
  if (role !== 'agent' && role !== 'manager' && role !== 'node') throw new HoldfastError('CONFIG_INVALID', `role must be 'agent', 'manager' or 'node', not '${String(role)}'`)
  const dataDir = resolve(baseDir, raw.dataDir ?? join(process.env.HOME ?? baseDir, '.holdfast', role))
  const fleetKey = raw.fleetKey ?? ''
  if (!/^[0-9a-f]{64}$/.test(fleetKey)) throw new HoldfastError('CONFIG_INVALID', 'fleetKey must be 64 hex characters (run `holdfast init` or `holdfast join`)')
  const folders = (raw.agent?.folders ?? []).map(f => {
    const spec: { path: string, name?: string, ignore?: string[] } = typeof f === 'string' ? { path: f } : f
    const path = resolve(baseDir, spec.path)
    return { path, name: spec.name ?? (basename(path) || 'root'), ignore: spec.ignore ?? [] }
  })
  const names = new Set<string>()
  for (const f of folders) {
    if (!/^[^/\0]{1,255}$/.test(f.name) || f.name === '.' || f.name === '..') throw new HoldfastError('CONFIG_INVALID', `folder name '${f.name}' is not a valid single path component`)
    if (names.has(f.name)) throw new HoldfastError('CONFIG_INVALID', `two protected folders are named '${f.name}'; give one a distinct name`)
    names.add(f.name)
  }
  const config: HoldfastConfig = {
    role,
    name: raw.name ?? hostname(),
    dataDir,
    listen: raw.listen ?? ['/ip4/0.0.0.0/tcp/0'],
    fleetKey,
    managers: raw.managers ?? [],
    membership: { autoApprove: raw.membership?.autoApprove ?? true },
    mdns: { enabled: raw.mdns?.enabled ?? true, queryIntervalSeconds: raw.mdns?.queryIntervalSeconds ?? 30 },
    staticPeers: raw.staticPeers ?? [],
    adminSocket: raw.adminSocket === undefined ? join(dataDir, 'admin.sock') : resolve(baseDir, raw.adminSocket),
    admin: raw.admin?.group === undefined ? {} : { group: raw.admin.group },
    agent: {
      folders,
      scanIntervalSeconds: raw.agent?.scanIntervalSeconds ?? 300,
      settleSeconds: raw.agent?.settleSeconds ?? 2,
      maxUploadBytesPerSecond: raw.agent?.maxUploadBytesPerSecond ?? 0,
      workers: raw.agent?.workers ?? 0,
      spoolCapBytes: raw.agent?.spoolCapBytes ?? 0,
      diskReserveBytes: raw.agent?.diskReserveBytes ?? 0,
      watch: raw.agent?.watch ?? 'auto',
      watchMaxEntries: raw.agent?.watchMaxEntries ?? 50_000,
      restoreDir: raw.agent?.restoreDir === undefined ? join(dataDir, 'restores') : resolve(baseDir, raw.agent.restoreDir),
      uploadWindows: raw.agent?.uploadWindows ?? '',
      idleLoadPerCpu: raw.agent?.idleLoadPerCpu ?? 0.5,
      idleInputSeconds: raw.agent?.idleInputSeconds ?? 300
    },
    manager: {
      pullIntervalSeconds: raw.manager?.pullIntervalSeconds ?? 60,
      // 10 Mbit/s: one endpoint's share of a 100 Mbit/s link split ten ways
      bandwidthBytesPerSecond: raw.manager?.bandwidthBytesPerSecond ?? 1_250_000,
      maxConcurrentPulls: raw.manager?.maxConcurrentPulls ?? 4,
      sliceSeconds: raw.manager?.sliceSeconds ?? 300,
      maxAgeHours: raw.manager?.maxAgeHours ?? 24,
      maxAgeRateFraction: raw.manager?.maxAgeRateFraction ?? 0.25,
      bandwidthProfiles: { ...raw.manager?.bandwidthProfiles },
      endpointCaps: { ...raw.manager?.endpointCaps },
      uploadWindows: { ...(raw.manager?.uploadWindows?.default === undefined ? {} : { default: raw.manager.uploadWindows.default }), endpoints: { ...raw.manager?.uploadWindows?.endpoints } },
      overdueAfterHours: raw.manager?.overdueAfterHours ?? 48,
      metrics: { listen: raw.manager?.metrics?.listen ?? '' },
      deploy: { auto: raw.manager?.deploy?.auto ?? 'none', settings: { ...raw.manager?.deploy?.settings } }
    }
  }
  if (config.admin.group !== undefined) {
    // the data directory is 0700: a socket under it stays out of the group's reach
    const rel = relative(config.dataDir, dirname(config.adminSocket))
    if (rel === '' || (!rel.startsWith('..') && !isAbsolute(rel))) throw new HoldfastError('CONFIG_INVALID', `admin.group needs adminSocket outside the data directory, which the group cannot enter (e.g. "adminSocket": "/run/holdfast/admin.sock")`, { key: 'admin.group' })
  }
  for (const [key, value, min] of [
    ['agent.scanIntervalSeconds', config.agent.scanIntervalSeconds, 1],
    ['agent.settleSeconds', config.agent.settleSeconds, 0],
    ['agent.maxUploadBytesPerSecond', config.agent.maxUploadBytesPerSecond, 0],
    ['agent.workers', config.agent.workers, 0],
    ['agent.spoolCapBytes', config.agent.spoolCapBytes, 0],
    ['agent.diskReserveBytes', config.agent.diskReserveBytes, 0],
    ['agent.watchMaxEntries', config.agent.watchMaxEntries, 0],
    ['manager.pullIntervalSeconds', config.manager.pullIntervalSeconds, 1],
    ['manager.bandwidthBytesPerSecond', config.manager.bandwidthBytesPerSecond, 1],
    ['mdns.queryIntervalSeconds', config.mdns.queryIntervalSeconds, 1],
    ['agent.idleLoadPerCpu', config.agent.idleLoadPerCpu, 0],
    ['agent.idleInputSeconds', config.agent.idleInputSeconds, 0],
    ['manager.maxConcurrentPulls', config.manager.maxConcurrentPulls, 1],
    ['manager.sliceSeconds', config.manager.sliceSeconds, 1],
    ['manager.maxAgeHours', config.manager.maxAgeHours, 0],
    ['manager.maxAgeRateFraction', config.manager.maxAgeRateFraction, 0.001],
    ['manager.overdueAfterHours', config.manager.overdueAfterHours, 0]
  ] as Array<[string, number, number]>) {
    if (value < min) throw new HoldfastError('CONFIG_INVALID', `config key '${key}' must be at least ${min}`)
  }
  if (config.manager.maxAgeRateFraction > 1) throw new HoldfastError('CONFIG_INVALID', "config key 'manager.maxAgeRateFraction' must be at most 1")
  if (!Number.isInteger(config.manager.maxConcurrentPulls)) throw new HoldfastError('CONFIG_INVALID', "config key 'manager.maxConcurrentPulls' must be a whole number")
  // windows and rates are checked now: a typo must fail at load, not at the first pull
  for (const [key, spec] of [['agent.uploadWindows', config.agent.uploadWindows], ['manager.uploadWindows.default', config.manager.uploadWindows.default ?? ''], ...Object.entries(config.manager.uploadWindows.endpoints).map(([k, v]) => [`manager.uploadWindows.endpoints.${k}`, v])] as Array<[string, string]>) {
    withKey(key, () => parseUploadWindows(spec))
  }
  withKey('manager.bandwidthProfiles', () => parseBudgetProfiles(config.manager.bandwidthProfiles))
  for (const [k, v] of Object.entries(config.manager.endpointCaps)) withKey(`manager.endpointCaps.${k}`, () => parseRate(v))
  if (config.manager.metrics.listen !== '') withKey('manager.metrics.listen', () => parseListenAddress(config.manager.metrics.listen))
  if (!['auto', 'events', 'scan'].includes(config.agent.watch)) throw new HoldfastError('CONFIG_INVALID', `agent.watch must be 'auto', 'events' or 'scan', not '${config.agent.watch}'`)
  if (raw.agent?.restoreDir !== undefined && (raw.agent.restoreDir === '' || raw.agent.restoreDir.includes('\0'))) throw new HoldfastError('CONFIG_INVALID', 'agent.restoreDir must be a directory path')
  // An agent serves its files, acks and restores only to the managers it pinned at join: with
  // none, it would serve any host holding the fleet key (docs/security.md, "Membership").
  if (role === 'agent' && config.managers.length === 0) throw new HoldfastError('CONFIG_INVALID', "an agent needs 'managers': the manager peer id it serves (run `holdfast join`)")
  if ((role === 'agent' || role === 'node') && !isAbsolute(config.dataDir)) throw new HoldfastError('CONFIG_INVALID', 'dataDir must resolve to an absolute path')
  // A bare node takes code and configuration from its manager: with no manager pinned, it
  // would take them from any host holding the fleet key.
  if (role === 'node' && config.managers.length === 0) throw new HoldfastError('CONFIG_INVALID', "a node needs 'managers': the manager peer id it takes its role from (run `holdfast join <token> --node`)")
  if (role === 'node' && config.agent.folders.length > 0) throw new HoldfastError('CONFIG_INVALID', 'a node protects no folders until its manager gives it the agent role; remove agent.folders')
  return config
}

function withKey (key: string, fn: () => unknown): void {
  try {
    fn()
  } catch (err) {
    if (err instanceof HoldfastError) throw new HoldfastError(err.code, `config key '${key}': ${err.message}`, { ...err.details, key })
    throw err
  }
}

export function loadConfig (file: string): HoldfastConfig {
  let text: string
  let fd: number
  try {
    fd = openSync(file, 'r')
  } catch (err) {
    throw new HoldfastError('CONFIG_INVALID', `cannot read config file ${file}: ${(err as Error).message}`)
  }
  try {
    // The config holds the fleet key: a copy others can read is a key others hold. Refused,
    // not tightened, so the admin learns it was exposed (checked on the open file, no race).
    const mode = fstatSync(fd).mode & 0o777
    if ((mode & 0o077) !== 0) {
      throw new HoldfastError('CONFIG_INVALID', `config file ${file} holds the fleet key and is readable or writable by others (mode ${mode.toString(8).padStart(4, '0')}); run: chmod 600 ${file}`, { mode })
    }
    text = readFileSync(fd, 'utf8')
  } catch (err) {
    if (err instanceof HoldfastError) throw err
    throw new HoldfastError('CONFIG_INVALID', `cannot read config file ${file}: ${(err as Error).message}`)
  } finally {
    closeSync(fd)
  }
  return parseConfigText(text, dirname(resolve(file)), `config file ${file}`)
}

/** A config file is a few KiB; one far larger is not a config (and is not parsed). */
export const MAX_CONFIG_CHARS = 1024 * 1024

/** Parses and resolves a config from its JSON text; `what` names it in errors. */
export function parseConfigText (text: string, baseDir: string, what = 'config'): HoldfastConfig {
  if (text.length > MAX_CONFIG_CHARS) throw new HoldfastError('CONFIG_INVALID', `${what} is larger than ${MAX_CONFIG_CHARS} characters`)
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw new HoldfastError('CONFIG_INVALID', `${what} is not valid JSON: ${(err as Error).message}`)
  }
  return resolveConfig(parsed, baseDir)
}

/**
 * Writes a config file as `holdfast init`/`join` do: durably and atomically (a power cut must
 * not leave a host with an empty config), mode 0600 (it holds the fleet key).
 */
export function writeConfig (file: string, raw: Record<string, unknown>): void {
  writeFileDurable(file, JSON.stringify(raw, null, 2) + '\n', 0o600)
}
