/**
 * The admin API: every command the daemons answer on their admin socket, with its request,
 * reply and progress types, and the one decoder that checks its request. The daemons register
 * handlers against these types (AdminServer checks each request with the decoder before a
 * handler sees it); the CLI calls through callManager/callAgent and never reaches into roles/
 * or store/: the types it prints are re-exported from here.
 */
import { isAbsolute } from 'node:path'
import { adminCall, type CommandSet, type RequestDecoders } from './admin-socket.js'
import { HoldfastError } from '../util/errors.js'
import { parsePathSpec } from '../model/path-spec.js'
import { checkRules, type RetentionRules } from '../store/maintenance/retention.js'
import type { PeerListRow, RoundResult, EndpointRestoreSummary } from '../roles/manager/manager.js'
import type { RetentionShow, PruneResult } from '../roles/manager/store-admin.js'
import type { AgentStatus } from '../roles/agent/agent.js'
import type { StageRoundResult } from '../staging/stager.js'
import type { SnapshotRow } from '../store/core/catalog.js'
import type { RestoreSummary, RestoreProgress } from '../store/restore.js'
import type { RestorePushProgress } from '../protocols/restore.js'
import type { PullProgress } from '../roles/manager/puller.js'
import type { ListResult, VersionsResult, FindResult } from '../store/queries/browse.js'
import type { StoreStats } from '../store/queries/stats.js'
import type { VerifyReport, VerifyProgress } from '../store/maintenance/verify.js'
import type { PruneProgress } from '../store/maintenance/prune.js'
import type { AuditEntry } from '../roles/manager/audit-log.js'
import type { MemberState, TokenRow } from '../roles/manager/membership.js'
import type { ConfigChange, ConfigGetReply, ConfigShowReply, AgentConfigState } from '../roles/manager/central-config.js'
import { checkCentralKey, type VersionedSettings } from '../model/central-settings.js'
import type { NodeStatus } from '../roles/node/node.js'
import type { DeployOutcome, DeployStatusRow, UpgradeReport } from '../roles/manager/deploy/deployer.js'

// The reply types, for the CLI (and tests) to print and read.
export type { PeerListRow, RoundResult, EndpointRestoreSummary, RetentionShow, PruneResult, AgentStatus, SnapshotRow, RestoreSummary, StoreStats, VerifyReport, VerifyProgress, PruneProgress, RetentionRules }
export type { ListResult, VersionsResult, FindResult, TreeEntry } from '../store/queries/browse.js'
export type { PruneEndpoint } from '../store/maintenance/prune.js'
export type { AuditEntry, MemberState, TokenRow }
export type { ConfigChange, ConfigGetReply, ConfigShowReply, AgentConfigState, VersionedSettings }
export type { NodeStatus, DeployOutcome, DeployStatusRow, UpgradeReport }
// What the CLI needs to turn --keep-* flags into the rules retention-set takes.
export { RULE_KEYS, UNLIMITED, parseDuration, ruleFlag } from '../store/maintenance/retention.js'

export type ScanReply = StageRoundResult

export interface ManagerStatus {
  peerId: string
  name: string
  listen: string[]
  mdns: boolean
  peers: number
  snapshots: number
  storedBytes: number
  /** The metrics endpoint's URL, when manager.metrics.listen is set. */
  metrics?: string
}

/** `peers add`: the peer the multiaddr names; added is false when it was listed already. */
export interface PeersAddReply { peerId: string, address: string, added: boolean }
/** `peers approve|revoke`: the peer and its state now. */
export interface MembershipReply { peerId: string, state: MemberState }
/** `token create`: the token to hand to the joining host (shown once; the manager keeps its hash). */
export interface TokenCreated extends TokenRow { token: string }

/** `peers remove`: the multiaddrs taken off the list. */
export interface PeersRemoveReply { removed: string[] }

/** Which snapshot: an id, or the newest committed at or before `at` (ms); neither: the latest. */
export interface SnapshotSelection { snapshot?: number, at?: number }

export interface RestoreRequest extends SnapshotSelection {
  endpoint: string
  /** An absolute directory to write into; or, with toEndpoint, none. */
  target?: string
  toEndpoint?: boolean
  /** With toEndpoint: replace files that exist there. */
  overwrite?: boolean
  /** With target: restore setuid/setgid bits too (dropped by default). */
  keepSetuid?: boolean
  /** A path spec, "<folder>[/<path>]" (model/path-spec.ts). */
  path?: string
}

export interface LsRequest extends SnapshotSelection { endpoint: string, path?: string, limit?: number }

interface Cmd<Req extends object, Reply, Progress = never> { request: Req, reply: Reply, progress: Progress }
type NoArgs = Record<string, never>

/** The manager's commands. */
export type ManagerCommands = {
  /** overdueAfterMs: flag endpoints overdue past this instead of manager.overdueAfterHours. */
  peers: Cmd<{ overdueAfterMs?: number }, PeerListRow[]>
  /** address: /ip4/…/tcp/…/p2p/<peer id>; persisted in the manager's data dir. */
  'peers-add': Cmd<{ address: string }, PeersAddReply>
  /** target: a peer id, or the multiaddr it was added with. */
  'peers-remove': Cmd<{ target: string }, PeersRemoveReply>
  /** A pending host becomes a member: it is pulled from now on. */
  'peers-approve': Cmd<{ peerId: string }, MembershipReply>
  /** Cut off for good: connections closed, later dials refused; its backups are kept. */
  'peers-revoke': Cmd<{ peerId: string }, MembershipReply>
  /** A join token: expiresInMs (default 24 h) and uses (default 1). */
  'token-create': Cmd<{ expiresInMs?: number, uses?: number }, TokenCreated>
  'token-list': Cmd<NoArgs, TokenRow[]>
  /** id: the token's id (or an unambiguous prefix of 6+ characters), as token list shows it. */
  'token-revoke': Cmd<{ id: string }, TokenRow>
  snapshots: Cmd<{ endpoint?: string }, SnapshotRow[]>
  restore: Cmd<RestoreRequest, RestoreSummary | EndpointRestoreSummary, RestoreProgress | RestorePushProgress>
  'backup-now': Cmd<{ expectPeers?: number, timeoutMs?: number }, RoundResult, PullProgress>
  status: Cmd<NoArgs, ManagerStatus>
  ls: Cmd<LsRequest, ListResult>
  versions: Cmd<{ endpoint: string, path: string }, VersionsResult>
  find: Cmd<{ pattern: string, endpoint?: string, limit?: number }, FindResult>
  stats: Cmd<NoArgs, StoreStats>
  verify: Cmd<{ readData?: boolean, limit?: number }, VerifyReport, VerifyProgress>
  'retention-show': Cmd<NoArgs, RetentionShow>
  /** rules: the scope's new keep rules; null clears them. hold: set or lift the legal hold. */
  'retention-set': Cmd<{ endpoint?: string, rules?: RetentionRules | null, hold?: boolean }, RetentionShow>
  /** repackThreshold: the dead fraction (0..1) at which a pack is repacked. */
  prune: Cmd<{ dryRun?: boolean, repackThreshold?: number, utc?: boolean }, PruneResult, PruneProgress>
  /** The audit log's entries at or after `since` (ms), oldest first. */
  audit: Cmd<{ since?: number }, AuditEntry[]>
  /** endpoint: 'all' (fleet-wide), or an endpoint's name or peer id. */
  'config-show': Cmd<{ endpoint: string }, ConfigShowReply>
  /** The value in effect for the endpoint, and which scope set it. */
  'config-get': Cmd<{ endpoint: string, key: string }, ConfigGetReply>
  /** value: the JSON the key takes (checked by the store); null removes the key from the scope. Audited. */
  'config-set': Cmd<{ endpoint: string, key: string, value: unknown }, ConfigChange>
  /** Offers the agent role to a bare node (by peer id or name) now, whatever the deploy policy says. */
  deploy: Cmd<{ node: string }, DeployOutcome>
  /** Every host's version and deploy state. */
  'deploy-status': Cmd<NoArgs, DeployStatusRow[]>
  /** Upgrades agents to `version`, `batch` at a time; stops after the first batch with a failure. */
  'deploy-upgrade': Cmd<{ version: string, batch?: number, healthTimeoutMs?: number }, UpgradeReport>
  /** Shelves a package tarball built elsewhere as `version`, signed with the manager's key. Audited. */
  'deploy-package-add': Cmd<{ tarball: string, version: string }, ShelvedPackageInfo>
}

/** A package on the manager's shelf (<data dir>/packages). */
export interface ShelvedPackageInfo { version: string, sha256: string, size: number, tarball: string }

/** The agent's commands. */
export type AgentCommands = {
  status: Cmd<NoArgs, AgentStatus>
  /** join: take the running round's answer if one runs (what changed after it began may wait for the next); default: a round that starts after the request. */
  'scan-now': Cmd<{ join?: boolean }, ScanReply>
}

/** A bare node's commands (roles/node/node.ts). */
export type NodeCommands = {
  status: Cmd<NoArgs, NodeStatus>
}

/** Reads one request's fields; rejects unknown ones, so a misspelt option is an error, not ignored. */
class Fields {
  constructor (private readonly cmd: string, private readonly args: Record<string, unknown>, allowed: readonly string[]) {
    for (const k of Object.keys(args)) if (!allowed.includes(k)) throw this.bad(`unknown argument '${k}'${allowed.length === 0 ? ' (it takes none)' : ` (it takes ${allowed.join(', ')})`}`)
  }

  bad (why: string): HoldfastError { return new HoldfastError('ADMIN_BAD_REQUEST', `'${this.cmd}': ${why}`) }

  private value (key: string): unknown {
    const v = this.args[key]
    return v === null ? undefined : v
  }

  str (key: string): string | undefined {
    const v = this.value(key)
    if (v !== undefined && typeof v !== 'string') throw this.bad(`'${key}' must be a string`)
    return v
  }

  needStr (key: string): string {
    const v = this.str(key)
    if (v === undefined || v === '') throw this.bad(`missing '${key}'`)
    return v
  }

  int (key: string, min = 0): number | undefined {
    const v = this.value(key)
    if (v !== undefined && (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min)) throw this.bad(`'${key}' must be a whole number ≥ ${min}`)
    return v
  }

  bool (key: string): boolean | undefined {
    const v = this.value(key)
    if (v !== undefined && typeof v !== 'boolean') throw this.bad(`'${key}' must be true or false`)
    return v
  }

  /** A path spec that names at least a folder. */
  spec (key: string, required: boolean): string | undefined {
    const v = required ? this.needStr(key) : this.str(key)
    if (v !== undefined && parsePathSpec(v).length === 0) throw this.bad(`'${key}' must name a folder ("<folder>[/<path>]"), not '${v}'`)
    return v
  }
}

/** Copies the defined values only: an absent field stays absent (strict optional types). */
function defined<T extends object> (o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T
}

function none (cmd: string): (args: Record<string, unknown>) => NoArgs {
  return args => { void new Fields(cmd, args, []); return {} }
}

function selection (f: Fields): SnapshotSelection {
  const sel = { snapshot: f.int('snapshot', 1), at: f.int('at') }
  if (sel.snapshot !== undefined && sel.at !== undefined) throw f.bad("give 'snapshot' or 'at', not both")
  return sel
}

export const MANAGER_API: RequestDecoders<ManagerCommands> = {
  peers: args => defined({ overdueAfterMs: new Fields('peers', args, ['overdueAfterMs']).int('overdueAfterMs') }),
  'peers-add': args => ({ address: new Fields('peers-add', args, ['address']).needStr('address') }),
  'peers-remove': args => ({ target: new Fields('peers-remove', args, ['target']).needStr('target') }),
  'peers-approve': args => ({ peerId: new Fields('peers-approve', args, ['peerId']).needStr('peerId') }),
  'peers-revoke': args => ({ peerId: new Fields('peers-revoke', args, ['peerId']).needStr('peerId') }),
  'token-create': args => { const f = new Fields('token-create', args, ['expiresInMs', 'uses']); return defined({ expiresInMs: f.int('expiresInMs', 1), uses: f.int('uses', 1) }) },
  'token-list': none('token-list'),
  'token-revoke': args => ({ id: new Fields('token-revoke', args, ['id']).needStr('id') }),
  snapshots: args => defined({ endpoint: new Fields('snapshots', args, ['endpoint']).str('endpoint') }),
  restore: args => {
    const f = new Fields('restore', args, ['endpoint', 'target', 'toEndpoint', 'overwrite', 'keepSetuid', 'snapshot', 'at', 'path'])
    const req: RestoreRequest = { endpoint: f.needStr('endpoint'), target: f.str('target'), toEndpoint: f.bool('toEndpoint'), overwrite: f.bool('overwrite'), keepSetuid: f.bool('keepSetuid'), ...selection(f), path: f.spec('path', false) }
    if (req.toEndpoint === true) {
      if (req.target !== undefined) throw f.bad("give 'target' or 'toEndpoint', not both")
      // the agent always drops setuid/setgid bits: the push protocol carries no such request
      if (req.keepSetuid === true) throw f.bad("'keepSetuid' goes with 'target' (an endpoint never restores setuid bits)")
    } else {
      if (req.target === undefined || !isAbsolute(req.target)) throw f.bad("needs an absolute 'target' directory (or 'toEndpoint')")
      if (req.overwrite === true) throw f.bad("'overwrite' goes with 'toEndpoint' (a target directory must be empty)")
    }
    return defined(req)
  },
  'backup-now': args => {
    const f = new Fields('backup-now', args, ['expectPeers', 'timeoutMs'])
    return defined({ expectPeers: f.int('expectPeers'), timeoutMs: f.int('timeoutMs') })
  },
  status: none('status'),
  ls: args => {
    const f = new Fields('ls', args, ['endpoint', 'snapshot', 'at', 'path', 'limit'])
    // an empty path is the root: the endpoint's folders
    return defined({ endpoint: f.needStr('endpoint'), ...selection(f), path: f.str('path'), limit: f.int('limit') })
  },
  versions: args => {
    const f = new Fields('versions', args, ['endpoint', 'path'])
    const path = f.spec('path', true) as string
    if (parsePathSpec(path)[0].path === undefined) throw f.bad(`'path' must be a path under a folder ("<folder>/<path>"), not '${path}'`)
    return { endpoint: f.needStr('endpoint'), path }
  },
  find: args => {
    const f = new Fields('find', args, ['pattern', 'endpoint', 'limit'])
    return defined({ pattern: f.needStr('pattern'), endpoint: f.str('endpoint'), limit: f.int('limit') })
  },
  stats: none('stats'),
  verify: args => {
    const f = new Fields('verify', args, ['readData', 'limit'])
    return defined({ readData: f.bool('readData'), limit: f.int('limit') })
  },
  'retention-show': none('retention-show'),
  'retention-set': args => {
    const f = new Fields('retention-set', args, ['endpoint', 'rules', 'hold'])
    // null is meaningful here (clear the rules), so it is read before Fields turns it into absent
    const rules = args.rules === null ? null : args.rules === undefined ? undefined : checkRules(args.rules)
    const req = defined({ endpoint: f.str('endpoint'), hold: f.bool('hold') })
    if (rules === undefined && req.hold === undefined) throw f.bad('nothing to set: give keep rules, a min-age, clear, hold or release')
    return rules === undefined ? req : { ...req, rules }
  },
  prune: args => {
    const f = new Fields('prune', args, ['dryRun', 'repackThreshold', 'utc'])
    const t = args.repackThreshold
    if (t !== undefined && (typeof t !== 'number' || !(t >= 0 && t <= 1))) throw f.bad("'repackThreshold' must be a number within 0..1")
    return defined({ dryRun: f.bool('dryRun'), repackThreshold: t, utc: f.bool('utc') })
  },
  audit: args => defined({ since: new Fields('audit', args, ['since']).int('since') }),
  'config-show': args => ({ endpoint: new Fields('config-show', args, ['endpoint']).needStr('endpoint') }),
  'config-get': args => {
    const f = new Fields('config-get', args, ['endpoint', 'key'])
    return { endpoint: f.needStr('endpoint'), key: checkCentralKey(f.needStr('key')) }
  },
  'config-set': args => {
    const f = new Fields('config-set', args, ['endpoint', 'key', 'value'])
    // the value's type is the key's business (checked with decodeCentralSettings by the store);
    // null is meaningful (remove the key), so it is read before Fields turns it into absent
    if (args.value === undefined) throw f.bad("missing 'value' (null removes the key)")
    return { endpoint: f.needStr('endpoint'), key: checkCentralKey(f.needStr('key')), value: args.value }
  },
  deploy: args => ({ node: new Fields('deploy', args, ['node']).needStr('node') }),
  'deploy-status': none('deploy-status'),
  'deploy-upgrade': args => {
    const f = new Fields('deploy-upgrade', args, ['version', 'batch', 'healthTimeoutMs'])
    const version = f.needStr('version')
    if (!/^[0-9A-Za-z][0-9A-Za-z.+-]{0,63}$/.test(version)) throw f.bad(`'${version}' is not a version`)
    return defined({ version, batch: f.int('batch', 1), healthTimeoutMs: f.int('healthTimeoutMs', 1) })
  },
  'deploy-package-add': args => {
    const f = new Fields('deploy-package-add', args, ['tarball', 'version'])
    const tarball = f.needStr('tarball')
    if (!tarball.startsWith('/')) throw f.bad('tarball must be an absolute path')
    const version = f.needStr('version')
    if (!/^[0-9A-Za-z][0-9A-Za-z.+-]{0,63}$/.test(version)) throw f.bad(`'${version}' is not a version`)
    return { tarball, version }
  }
}

export const AGENT_API: RequestDecoders<AgentCommands> = {
  status: none('status'),
  'scan-now': args => defined({ join: new Fields('scan-now', args, ['join']).bool('join') })
}

export const NODE_API: RequestDecoders<NodeCommands> = {
  status: none('status')
}

export interface CallOptions<P> { timeoutMs?: number, onProgress?: (p: P) => void }

/** Calls a manager command; the reply is the command's reply type. */
export async function callManager<C extends keyof ManagerCommands & string> (socket: string, cmd: C, request: ManagerCommands[C]['request'], options: CallOptions<ManagerCommands[C]['progress']> = {}): Promise<ManagerCommands[C]['reply']> {
  return await call<ManagerCommands, C>(socket, cmd, request, options)
}

/** Calls an agent command. */
export async function callAgent<C extends keyof AgentCommands & string> (socket: string, cmd: C, request: AgentCommands[C]['request'], options: CallOptions<AgentCommands[C]['progress']> = {}): Promise<AgentCommands[C]['reply']> {
  return await call<AgentCommands, C>(socket, cmd, request, options)
}

/** Calls a bare node's command. */
export async function callNode<C extends keyof NodeCommands & string> (socket: string, cmd: C, request: NodeCommands[C]['request'], options: CallOptions<NodeCommands[C]['progress']> = {}): Promise<NodeCommands[C]['reply']> {
  return await call<NodeCommands, C>(socket, cmd, request, options)
}

async function call<S extends CommandSet, C extends keyof S & string> (socket: string, cmd: C, request: S[C]['request'], options: CallOptions<S[C]['progress']>): Promise<S[C]['reply']> {
  // The one place a reply is taken on trust: the daemon answering is built against these
  // same types (and checked the request with the same decoder).
  const onProgress = options.onProgress as ((p: unknown) => void) | undefined
  return await adminCall(socket, cmd, request, { timeoutMs: options.timeoutMs, onProgress }) as S[C]['reply']
}
