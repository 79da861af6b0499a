/**
 * The `holdfast` command line. Daemons (`manager`, `agent`) run in the foreground; admin
 * commands talk to a running daemon over its local admin socket. Every failure is one line on
 * stderr and a non-zero exit status; `--json` gives machine-readable output.
 */
import { parseArgs } from 'node:util'
import { existsSync, mkdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { loadConfig, resolveConfig, writeConfig, type HoldfastConfig, type Role } from '../config/config.js'
import { loadOrCreateIdentity } from '../node/identity.js'
import { decodeJoinToken, newFleetKey } from '../node/fleet.js'
import { enrolWithManager } from './enrol-client.js'
import { hostname } from 'node:os'
import { callAgent, callManager, callNode, type RestoreRequest } from '../admin/api.js'
import { HoldfastError, describeError, errorCode, exitStatusFor } from '../util/errors.js'
import { age, bytes, shortId, table } from './format.js'
import { HOLDFAST_VERSION } from '../version.js'
import type { Command } from './command.js'
import { intOption, selection, storeCommands } from './commands/store.js'
import { peerCommands } from './commands/peers.js'
import { auditCommand } from './commands/audit.js'
import { tokenCommand } from './commands/token.js'
import { configCommand } from './commands/config.js'
import { deployCommand } from './commands/deploy.js'
import { defaultDataDir, print, socketHelp, socketOptions, socketPath } from './socket.js'
import type { AgentStatus } from '../admin/api.js'
import { reexecWithHeapFlags, runDaemonProcess } from '../daemon/run-daemon.js'
import { superviseDaemon, underSupervisor } from '../daemon/supervise.js'


const SOCKET_HELP = socketHelp()
const SUPERVISOR_HELP = `  --install-root DIR     run under the upgrade supervisor from DIR/current (as the systemd
                         unit does, with /opt/holdfast): packages from the manager are
                         installed in DIR/versions/<v>, made current, and started; a version
                         that does not report healthy is rolled back. A DIR with no current
                         version is first given a copy of the code this command runs from.
                         Without it the host runs unsupervised and refuses packages.
  --health-deadline S    seconds a new version has to report healthy (default 120)`

const commands: Record<string, Command> = {
  init: {
    summary: 'create a fleet: the manager\'s config and identity (then `holdfast token create` for each host)',
    usage: `holdfast init [--data-dir DIR] [--listen MULTIADDR]... [--name NAME] [--no-mdns] [--force]

Creates DIR (default ~/.holdfast/manager) with manager.json (holding the new fleet key) and the
manager's identity. Start the manager, then make a join token per host with
\`holdfast token create\`: tokens are made by the running manager, which alone checks them.
  --listen MULTIADDR   where to listen (default /ip4/0.0.0.0/tcp/0); repeatable
  --bandwidth BYTES    the global pull budget in bytes per second (default 1250000 = 10 Mbit/s)
  --pull-interval S    seconds between pull rounds (default 60)
  --static-peer MA     an agent to dial when mDNS cannot reach it; repeatable
  --no-auto-approve    hosts that join with a valid token wait (pending) for \`holdfast peers approve\`
  --force              overwrite an existing config (a new fleet key: existing agents must rejoin)`,
    options: { 'data-dir': { type: 'string' }, listen: { type: 'string', multiple: true }, name: { type: 'string' }, 'no-mdns': { type: 'boolean' }, force: { type: 'boolean' }, bandwidth: { type: 'string' }, 'pull-interval': { type: 'string' }, 'static-peer': { type: 'string', multiple: true }, 'no-auto-approve': { type: 'boolean' }, json: { type: 'boolean' } },
    run: async (values) => {
      const dataDir = typeof values['data-dir'] === 'string' ? resolve(values['data-dir']) : defaultDataDir('manager')
      const file = join(dataDir, 'manager.json')
      if (existsSync(file) && values.force !== true) throw new HoldfastError('CONFIG_INVALID', `${file} exists; use --force to start a new fleet`)
      mkdirSync(dataDir, { recursive: true, mode: 0o700 })
      const raw: Record<string, unknown> = {
        role: 'manager',
        dataDir,
        fleetKey: newFleetKey(),
        listen: values.listen ?? ['/ip4/0.0.0.0/tcp/0'],
        mdns: { enabled: values['no-mdns'] !== true },
        staticPeers: values['static-peer'] ?? [],
        membership: { autoApprove: values['no-auto-approve'] !== true },
        manager: {
          bandwidthBytesPerSecond: values.bandwidth === undefined ? 1_250_000 : Number(values.bandwidth),
          pullIntervalSeconds: values['pull-interval'] === undefined ? 60 : Number(values['pull-interval'])
        }
      }
      if (typeof values.name === 'string') raw.name = values.name
      resolveConfig(raw, dataDir)
      const identity = await loadOrCreateIdentity(dataDir)
      writeConfig(file, raw)
      print(values, { config: file, peerId: identity.peerId }, () =>
        `fleet created\n  manager peer id: ${identity.peerId}\n  config:          ${file}\n\nStart the manager:  holdfast manager --config ${file}\nThen per endpoint:  holdfast token create --data-dir ${dataDir}   (on this host)\n                    holdfast join <token> --folder <path>          (on the endpoint)`)
      return 0
    }
  },
  join: {
    summary: 'make this host an agent of a fleet (enrols with the manager using a join token)',
    usage: `holdfast join TOKEN --folder PATH [--folder PATH]... [--data-dir DIR] [--name NAME]
holdfast join TOKEN --node [--data-dir DIR] [--name NAME]

Enrols with the manager named in TOKEN (made by \`holdfast token create\`; the manager must be
running and reachable): the manager checks the token and hands over the fleet key. Writes
DIR/agent.json (default ~/.holdfast/agent) with the fleet key, the manager's peer id (the only
manager this agent serves) and the folders to protect.
  --folder PATH        a folder to protect; repeatable
  --listen MULTIADDR   where to listen (default /ip4/0.0.0.0/tcp/0); repeatable
  --scan-interval S    seconds between reconcile scans (default 300)
  --settle S           leave a file this many seconds after it changed (default 2)
  --no-mdns            do not advertise over mDNS (the manager must list this host as a static peer)
  --node               make this host a bare node instead (DIR/node.json, default ~/.holdfast/node):
                       no folders; it waits for its manager to give it the agent role
                       (holdfast node; docs/architecture.md, "Deploy")
  --force              overwrite an existing agent.json`,
    options: { node: { type: 'boolean' }, 'data-dir': { type: 'string' }, folder: { type: 'string', multiple: true }, listen: { type: 'string', multiple: true }, name: { type: 'string' }, 'scan-interval': { type: 'string' }, settle: { type: 'string' }, 'no-mdns': { type: 'boolean' }, force: { type: 'boolean' }, json: { type: 'boolean' } },
    run: async (values, positionals) => {
      const token = positionals[0]
      if (token === undefined) throw new HoldfastError('CONFIG_INVALID', 'join needs the token that `holdfast init` printed')
      const folders = (values.folder as string[] | undefined) ?? []
      const asNode = values.node === true
      if (asNode && folders.length > 0) throw new HoldfastError('CONFIG_INVALID', 'a node takes no --folder: its manager says what to protect when it gives it the agent role')
      if (!asNode && folders.length === 0) throw new HoldfastError('CONFIG_INVALID', 'join needs at least one --folder to protect (or --node)')
      const role: Role = asNode ? 'node' : 'agent'
      const joinToken = decodeJoinToken(token)
      const dataDir = typeof values['data-dir'] === 'string' ? resolve(values['data-dir']) : defaultDataDir(role)
      const file = join(dataDir, `${role}.json`)
      if (existsSync(file) && values.force !== true) throw new HoldfastError('CONFIG_INVALID', `${file} exists; use --force to replace it`)
      mkdirSync(dataDir, { recursive: true, mode: 0o700 })
      // the agent's own identity enrols: the peer id the manager records is the one it will dial
      const identity = await loadOrCreateIdentity(dataDir)
      const name = typeof values.name === 'string' ? values.name : hostname()
      const { fleetKey, managerPeerId, state } = await enrolWithManager(identity.privateKey, joinToken, name)
      const raw: Record<string, unknown> = {
        role,
        dataDir,
        fleetKey,
        managers: [managerPeerId],
        listen: values.listen ?? ['/ip4/0.0.0.0/tcp/0'],
        mdns: { enabled: values['no-mdns'] !== true }
      }
      if (!asNode) {
        raw.agent = {
          folders: folders.map(f => resolve(f)),
          scanIntervalSeconds: values['scan-interval'] === undefined ? 300 : Number(values['scan-interval']),
          settleSeconds: values.settle === undefined ? 2 : Number(values.settle)
        }
      }
      if (typeof values.name === 'string') raw.name = values.name
      resolveConfig(raw, dataDir)
      writeConfig(file, raw)
      print(values, { config: file, peerId: identity.peerId, manager: managerPeerId, state }, () =>
        `joined the fleet of manager ${managerPeerId}${state === 'pending' ? ' (pending: backed up once an admin runs `holdfast peers approve` for it)' : ''}\n  ${role} peer id: ${identity.peerId}\n  config:        ${file}\n\nStart the ${role}:  holdfast ${role} --config ${file}`)
      return 0
    }
  },
  manager: {
    summary: 'run the manager daemon',
    usage: 'holdfast manager [--config FILE]     (default ~/.holdfast/manager/manager.json)',
    options: { config: { type: 'string' } },
    run: async (values) => await runDaemon('manager', values)
  },
  agent: {
    summary: 'run the agent daemon',
    usage: `holdfast agent [--config FILE] [--install-root DIR [--health-deadline S]]
                                     (default ~/.holdfast/agent/agent.json)
${SUPERVISOR_HELP}`,
    options: { config: { type: 'string' }, 'install-root': { type: 'string' }, 'health-deadline': { type: 'string' } },
    run: async (values) => await runDaemon('agent', values)
  },
  node: {
    summary: 'run a bare node: it waits for its manager to give it the agent role (then runs the agent)',
    usage: `holdfast node [--config FILE] [--install-root DIR [--health-deadline S]]
                                     (default ~/.holdfast/node/node.json, made by \`holdfast join TOKEN --node\`)

Advertises this host over mDNS with role node and serves its pinned manager only, for one
thing: an offer of the agent role (/holdfast/deploy/1). Once given it, it writes
<data dir>/agent.json and runs the agent in place, and does so at every start from then on.
\`holdfast status --role node\` shows its state (bare, deploying, agent, failed: why).
Exit 75 means a new version was installed and made current: restart it (the supervisor does).
${SUPERVISOR_HELP}`,
    options: { config: { type: 'string' }, 'install-root': { type: 'string' }, 'health-deadline': { type: 'string' } },
    run: async (values) => await runDaemon('node', values)
  },
  deploy: deployCommand,
  snapshots: {
    summary: 'list backups (snapshots) in the manager\'s store',
    usage: `holdfast snapshots [--endpoint PEER|NAME] [options]\n${SOCKET_HELP}`,
    options: { ...socketOptions, endpoint: { type: 'string' } },
    run: async (values) => {
      const rows = await callManager(socketPath(values, 'manager'), 'snapshots', typeof values.endpoint === 'string' ? { endpoint: values.endpoint } : {})
      print(values, rows, () => rows.length === 0
        ? 'no snapshots yet'
        : table(['ID', 'ENDPOINT', 'NAME', 'SET', 'COMMITTED', 'ENTRIES', 'SIZE', 'NEW DATA'],
          rows.map(r => [String(r.id), shortId(r.peerId), r.endpointName, String(r.setId), new Date(r.committedAt).toISOString(), String(r.entries), bytes(r.rawBytes), bytes(r.newBytes)])))
      return 0
    }
  },
  restore: {
    summary: 'restore an endpoint\'s files from the store into a directory, or back onto the endpoint',
    usage: `holdfast restore --endpoint PEER|NAME --target DIR [--snapshot ID | --at TIME] [--path FOLDER[/PATH]] [options]
holdfast restore --endpoint PEER|NAME --to-endpoint [--overwrite] [--snapshot ID | --at TIME] [--path FOLDER[/PATH]] [options]

Writes the endpoint's tree as of the snapshot (default: its latest; --at: the newest committed
at or before TIME, an ISO date or date-time) under DIR/<folder>/... DIR must be empty or not
exist. A --path deleted since is restored from its last version unless a snapshot is given.

  --to-endpoint   push the files to the endpoint itself (it must be online); the agent
                  writes them under its agent.restoreDir, in <restoreDir>/<label>/<folder>/...
                  (label: restore-<snapshot>-<time>), never outside it
  --overwrite     with --to-endpoint: replace files that exist there already
  --keep-setuid   with --target: restore setuid/setgid bits too (by default they are dropped,
                  and the summary says how many); the target must be a directory of the
                  manager daemon's user
${SOCKET_HELP}`,
    options: { ...socketOptions, endpoint: { type: 'string' }, target: { type: 'string' }, snapshot: { type: 'string' }, at: { type: 'string' }, path: { type: 'string' }, 'to-endpoint': { type: 'boolean' }, overwrite: { type: 'boolean' }, 'keep-setuid': { type: 'boolean' } },
    run: async (values) => {
      const toEndpoint = values['to-endpoint'] === true
      if (typeof values.endpoint !== 'string') throw new HoldfastError('ADMIN_BAD_REQUEST', 'restore needs --endpoint')
      if (toEndpoint === (typeof values.target === 'string')) throw new HoldfastError('ADMIN_BAD_REQUEST', 'restore needs --target DIR or --to-endpoint (one of them)')
      if (values.overwrite === true && !toEndpoint) throw new HoldfastError('ADMIN_BAD_REQUEST', '--overwrite goes with --to-endpoint (a --target directory must be empty)')
      const args: RestoreRequest = { endpoint: values.endpoint, ...selection(values) }
      if (typeof values.target === 'string') args.target = resolve(values.target)
      if (toEndpoint) { args.toEndpoint = true; args.overwrite = values.overwrite === true }
      if (values['keep-setuid'] === true) args.keepSetuid = true
      if (typeof values.path === 'string') args.path = values.path
      const summary = await callManager(socketPath(values, 'manager'), 'restore', args, {
        timeoutMs: 24 * 3600_000,
        onProgress: p => { if (values.json !== true && process.stderr.isTTY) process.stderr.write(`\r${p.files} files, ${bytes(p.bytes)}`) }
      })
      if (values.json !== true && process.stderr.isTTY) process.stderr.write('\n')
      const where = 'label' in summary ? `onto ${shortId(summary.endpoint)} under its restore directory, in ${summary.label}` : `into ${String(args.target)}`
      const omitted = 'label' in summary ? summary.errorsOmitted : 0
      print(values, summary, () => [
        `restored snapshot ${summary.snapshotId} ${where}: ${summary.files} files, ${summary.dirs} directories, ${summary.symlinks} symlinks, ${bytes(summary.bytes)} in ${(summary.ms / 1000).toFixed(1)} s`,
        ...('setuidStripped' in summary && summary.setuidStripped > 0 ? [`  note: ${summary.setuidStripped} files or directories had setuid/setgid bits, not restored (--keep-setuid restores them)`] : []),
        ...summary.errors.map(e => `  error: ${e.path}: ${e.code}: ${e.message}`),
        ...(omitted > 0 ? [`  … and ${omitted} more errors`] : [])
      ].join('\n'))
      return summary.errors.length === 0 && omitted === 0 ? 0 : 1
    }
  },
  'backup-now': {
    summary: 'make the manager pull from every agent now',
    usage: `holdfast backup-now [--expect-peers N] [--timeout S] [options]

  --expect-peers N   first wait (at most --timeout seconds) until N agents are found
${SOCKET_HELP}`,
    options: { ...socketOptions, 'expect-peers': { type: 'string' }, timeout: { type: 'string' } },
    run: async (values) => {
      const timeoutMs = (intOption(values, 'timeout') ?? 30) * 1000
      const result = await callManager(socketPath(values, 'manager'), 'backup-now', { expectPeers: intOption(values, 'expect-peers') ?? 0, timeoutMs }, { timeoutMs: 24 * 3600_000 })
      print(values, result, () => result.peers.length === 0
        ? 'no agents to back up'
        : table(['PEER', 'NAME', 'RESULT', 'SNAPSHOTS', 'PULLED'], result.peers.map(p => [shortId(p.peerId), p.name, p.ok ? 'ok' : `failed: ${p.error ?? ''}`, p.snapshots.map(s => String(s.snapshotId)).join(',') || '-', bytes(p.bytesPulled)])))
      return result.peers.every(p => p.ok) ? 0 : 1
    }
  },
  status: {
    summary: 'show an agent\'s state (or a manager\'s, with --role manager)',
    usage: `holdfast status [--role agent|manager|node] [options]\n${SOCKET_HELP}`,
    options: { ...socketOptions, role: { type: 'string' } },
    run: async (values) => {
      const role: Role = values.role === 'manager' ? 'manager' : values.role === 'node' ? 'node' : 'agent'
      if (role === 'node') {
        const status = await callNode(socketPath(values, role), 'status', {})
        print(values, status, () => `bare node ${status.name} (${status.peerId}), version ${status.version}: ${status.state}${status.why === undefined ? '' : `: ${status.why}`}\n  managers: ${status.managers.join(', ')}\n  listen:   ${status.listen.join(' ')}`)
      } else if (role === 'manager') {
        const status = await callManager(socketPath(values, role), 'status', {})
        print(values, status, () => JSON.stringify(status, null, 2))
      } else {
        const status = await callAgent(socketPath(values, role), 'status', {})
        print(values, status, () => agentStatusText(status))
      }
      return 0
    }
  },
  'scan-now': {
    summary: 'make the agent scan and stage its folders now',
    usage: `holdfast scan-now [options]\n\nIf a staging round is running, waits for it and then scans again: what changed before\nyou asked is staged when this returns.\n${SOCKET_HELP}`,
    options: socketOptions,
    run: async (values) => {
      const result = await callAgent(socketPath(values, 'agent'), 'scan-now', {}, { timeoutMs: 24 * 3600_000 })
      print(values, result, () => JSON.stringify(result, null, 2))
      return 0
    }
  }
}
commands.backups = { ...commands.snapshots, summary: 'same as snapshots' }
Object.assign(commands, storeCommands, peerCommands)
commands.audit = auditCommand
commands.token = tokenCommand
commands.config = configCommand

function agentStatusText (s: AgentStatus): string {
  return [
    `agent ${s.peerId} (${s.name})`,
    `  folders:           ${s.folders.map(f => `${f.name}=${f.path}`).join(', ')}`,
    `  files tracked:     ${s.filesTracked} (${s.filesNotBackedUp} not yet backed up)`,
    `  settling:          ${s.settling}`,
    `  waiting for lock:  ${s.waitingForLock}`,
    `  staged, not pulled: ${s.sealedSets} sets, ${bytes(s.stagedBytesNotPulled)}`,
    `  spool:             ${bytes(s.spoolBytes)} of ${bytes(s.spoolCapBytes)}${s.spoolFull ? ' (full: staging waits for the manager)' : ''}`,
    ...(s.diskLow === true ? ['  disk:              reserve reached: staging waits until space comes back'] : []),
    `  watching:          ${s.folders.map(f => `${f.name}: ${f.watch === 'events' ? 'file-system events + scans' : 'scans only'}`).join(', ')}`,
    `  last backup:       ${s.lastAck === undefined ? 'never' : `snapshot ${s.lastAck.snapshotId}, ${age(s.lastAck.at)}`}`,
    `  mDNS:              ${s.mdns ? 'on' : 'off'}`,
    `  upload windows:    ${s.uploadWindows.fromManager !== undefined ? `${s.uploadWindows.fromManager || 'none'} (from the manager)` : s.uploadWindows.own !== '' ? `${s.uploadWindows.own} (own config)` : 'none (uploads when idle)'}`,
    ...(s.idle === undefined ? [] : [`  idle:              ${s.idle.idle ? 'yes' : 'no'} (load ${s.idle.load} per core${s.idle.inputIdleSeconds === undefined ? '' : `, no input for ${s.idle.inputIdleSeconds} s`})`]),
    ...(s.errors.length === 0 ? [] : ['  errors:', ...s.errors.map(e => `    ${e.folder}/${e.path}: ${e.code}: ${e.message}`)])
  ].join('\n')
}

async function runDaemon (role: Role, values: Record<string, unknown>): Promise<number> {
  const file = typeof values.config === 'string' ? values.config : join(defaultDataDir(role), `${role}.json`)
  const config: HoldfastConfig = loadConfig(file)
  if (config.role !== role) throw new HoldfastError('CONFIG_INVALID', `${file} is a ${config.role} config, not a ${role} config`)
  const installRoot = typeof values['install-root'] === 'string' ? resolve(values['install-root']) : undefined
  if (installRoot === undefined && values['health-deadline'] !== undefined) throw new HoldfastError('ADMIN_BAD_REQUEST', '--health-deadline goes with --install-root')
  if (installRoot !== undefined && (role === 'node' || role === 'agent') && !underSupervisor()) {
    const deadline = values['health-deadline'] === undefined ? undefined : Number(values['health-deadline'])
    if (deadline !== undefined && (!Number.isFinite(deadline) || deadline <= 0)) throw new HoldfastError('ADMIN_BAD_REQUEST', '--health-deadline must be a number of seconds > 0')
    return await superviseDaemon(role, resolve(file), installRoot, deadline === undefined ? {} : { healthDeadlineMs: Math.round(deadline * 1000) })
  }
  // the config is checked: from here on this process is the daemon, under its heap flags
  reexecWithHeapFlags()
  const { exitCode, failure } = await runDaemonProcess(role, resolve(file), installRoot)
  if (failure !== undefined) {
    process.stderr.write(`holdfast ${role}: ${failure.message}\n`)
    // A start that failed midway (e.g. the admin socket refused after the libp2p node was up)
    // may leave listeners and timers behind that would keep the process alive.
    process.exit(exitStatusFor(failure.code))
  }
  return exitCode
}

function mainHelp (): string {
  const names = Object.keys(commands)
  const width = Math.max(...names.map(n => n.length))
  return `holdfast ${HOLDFAST_VERSION}: peer-to-peer LAN backup

Usage: holdfast <command> [options]     holdfast <command> --help

Commands:
${names.map(n => `  ${n.padEnd(width)}  ${commands[n].summary}`).join('\n')}
`
}

export async function main (argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') { process.stdout.write(mainHelp()); return name === undefined ? 2 : 0 }
  if (name === '--version' || name === '-v') { process.stdout.write(`${HOLDFAST_VERSION}\n`); return 0 }
  const command = commands[name]
  if (command === undefined) { process.stderr.write(`holdfast: unknown command '${name}' (see holdfast --help)\n`); return 2 }
  if (rest.includes('--help') || rest.includes('-h')) { process.stdout.write(`${command.usage}\n`); return 0 }
  let parsed: { values: Record<string, unknown>, positionals: string[] }
  try {
    parsed = parseArgs({ args: rest, options: command.options, allowPositionals: true, strict: true }) as { values: Record<string, unknown>, positionals: string[] }
  } catch (err) {
    process.stderr.write(`holdfast ${name}: ${(err as Error).message}\n`)
    return 2
  }
  try {
    return await command.run(parsed.values, parsed.positionals)
  } catch (err) {
    process.stderr.write(`holdfast ${name}: ${describeError(err)}\n`)
    return exitStatusFor(errorCode(err))
  }
}

