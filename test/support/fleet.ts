/**
 * A fleet of real Holdfast daemons as separate OS processes, driven through the real CLI:
 * `init`, `join`, `manager`, `agent`, and the admin commands. Every process it starts is
 * tracked and stopped by `stopAll` (SIGTERM, then SIGKILL after a bound).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as delay } from 'node:timers/promises'
import { loadOrCreateIdentity } from '../../src/node/identity.js'
import { writeConfig } from '../../src/config/config.js'
import { Membership } from '../../src/roles/manager/membership.js'

export const HOLDFAST_BIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'bin', 'holdfast.js')

export interface CliResult { code: number, stdout: string, stderr: string, pid?: number }

/** taskset(1), for daemons pinned to CPUs (the bench's two-host split on one machine). */
export const TASKSET = '/usr/bin/taskset'

/** The command prefix that pins a process, and everything it starts, to a CPU list ("0", "1"). */
export function pinPrefix (cpus: string | undefined): string[] {
  return cpus === undefined ? [] : [TASKSET, '-c', cpus]
}

/** `prefix` runs the CLI through another command (e.g. taskset). */
export async function runCli (args: string[], options: { timeoutMs?: number, env?: NodeJS.ProcessEnv, prefix?: string[] } = {}): Promise<CliResult> {
  return await new Promise((resolve, reject) => {
    const argv = [...(options.prefix ?? []), process.execPath, HOLDFAST_BIN, ...args]
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...options.env } })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`holdfast ${args.join(' ')} took longer than ${options.timeoutMs ?? 120_000} ms`)) }, options.timeoutMs ?? 120_000)
    child.on('error', err => { clearTimeout(timer); reject(err) })
    child.on('close', code => { clearTimeout(timer); resolve({ code: code ?? 1, stdout, stderr, pid: child.pid ?? -1 }) })
  })
}

/** Runs the CLI with --json and parses its output; throws with stderr when it fails. */
export async function cliJson<T> (args: string[], options: { timeoutMs?: number } = {}): Promise<T> {
  const r = await runCli([...args, '--json'], options)
  if (r.code !== 0) throw new Error(`holdfast ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`)
  return JSON.parse(r.stdout) as T
}

/** Runs the CLI with --json and returns the exit status with the parsed output (for commands that report failure in both). */
export async function cliJsonStatus<T> (args: string[], options: { timeoutMs?: number } = {}): Promise<{ code: number, json: T, stderr: string }> {
  const r = await runCli([...args, '--json'], options)
  let json: T
  try { json = JSON.parse(r.stdout) as T } catch { throw new Error(`holdfast ${args.join(' ')} exited ${r.code} without JSON: ${r.stderr.trim()}`) }
  return { code: r.code, json, stderr: r.stderr }
}

export interface AgentHandle { name: string, dataDir: string, config: string, socket: string, folder: string, peerId: string }

/**
 * How a daemon is started: extra environment, a command to run it through, and the CPUs it
 * may run on (taskset; inherited by its worker threads and children). With `cpus`, the CLI
 * call that checks the daemon is up runs on the same CPUs, so a pinned daemon's start does
 * not put work on the other side's CPU.
 */
export interface DaemonStart { env?: NodeJS.ProcessEnv, prefix?: string[], cpus?: string, /** after `--config FILE`, e.g. ['--install-root', DIR] */ args?: string[] }

export class TestFleet {
  readonly managerDir: string
  readonly managerConfig: string
  readonly managerSocket: string
  managerPeerId = ''
  private readonly children = new Map<string, ChildProcess>()

  constructor (readonly root: string) {
    this.managerDir = join(root, 'manager')
    this.managerConfig = join(this.managerDir, 'manager.json')
    this.managerSocket = join(this.managerDir, 'admin.sock')
  }

  async init (options: { bandwidth?: number, mdns?: boolean, staticPeers?: string[], pullInterval?: number, listen?: string } = {}): Promise<void> {
    const args = ['init', '--data-dir', this.managerDir, '--listen', options.listen ?? '/ip4/127.0.0.1/tcp/0', '--name', 'test-manager', '--pull-interval', String(options.pullInterval ?? 3600)]
    if (options.bandwidth !== undefined) args.push('--bandwidth', String(options.bandwidth))
    if (options.mdns === false) args.push('--no-mdns')
    for (const p of options.staticPeers ?? []) args.push('--static-peer', p)
    const out = await cliJson<{ peerId: string }>(args)
    this.managerPeerId = out.peerId
  }

  /** A join token from the running manager (`holdfast token create`). */
  async createToken (options: { uses?: number, expires?: string } = {}): Promise<string> {
    const args = ['token', 'create', '--socket', this.managerSocket]
    if (options.uses !== undefined) args.push('--uses', String(options.uses))
    if (options.expires !== undefined) args.push('--expires', options.expires)
    return (await cliJson<{ token: string }>(args)).token
  }

  /**
   * A new agent. With the manager running: the real flow, `token create` then `join`. Before
   * it runs (most tests set the fleet up first, and the LAN tests start it inside a namespace
   * the host cannot dial), the enrolment is done offline: the agent's identity and config are
   * written as `join` writes them, and the manager's membership file approves its peer id, as
   * an admin's `peers approve` would. test/e2e/membership.test.ts covers the real exchange.
   */
  async addAgent (name: string, folder: string, options: { mdns?: boolean, listen?: string, settle?: number, scanInterval?: number } = {}): Promise<AgentHandle> {
    const dataDir = join(this.root, `agent-${name}`)
    const socket = join(dataDir, 'admin.sock')
    const listen = options.listen ?? '/ip4/127.0.0.1/tcp/0'
    if (this.children.has('manager')) {
      const args = ['join', await this.createToken(), '--data-dir', dataDir, '--folder', folder, '--name', name, '--listen', listen, '--settle', String(options.settle ?? 0), '--scan-interval', String(options.scanInterval ?? 3600)]
      if (options.mdns === false) args.push('--no-mdns')
      const out = await cliJson<{ config: string, peerId: string }>(args)
      return { name, dataDir, config: out.config, socket, folder, peerId: out.peerId }
    }
    mkdirSync(dataDir, { recursive: true, mode: 0o700 })
    const identity = await loadOrCreateIdentity(dataDir)
    const config = join(dataDir, 'agent.json')
    writeConfig(config, {
      role: 'agent',
      dataDir,
      name,
      fleetKey: (JSON.parse(readFileSync(this.managerConfig, 'utf8')) as { fleetKey: string }).fleetKey,
      managers: [this.managerPeerId],
      listen: [listen],
      mdns: { enabled: options.mdns !== false },
      agent: { folders: [folder], scanIntervalSeconds: options.scanInterval ?? 3600, settleSeconds: options.settle ?? 0 }
    })
    this.approveOffline([identity.peerId])
    return { name, dataDir, config, socket, folder, peerId: identity.peerId }
  }

  /** Approves peer ids in the manager's membership file; only while the manager is not running. */
  approveOffline (peerIds: string[]): void {
    if (this.children.has('manager')) throw new Error('approveOffline: the manager is running; use `holdfast peers approve`')
    const membership = new Membership(this.managerDir)
    for (const id of peerIds) membership.approve(id, Date.now())
  }

  /** Edits a daemon's JSON config in place (for settings the CLI does not expose). */
  patchConfig (file: string, patch: (c: Record<string, unknown>) => void): void {
    const c = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>
    patch(c)
    // configs hold the fleet key: loadConfig refuses one others can read
    writeFileSync(file, JSON.stringify(c, null, 2), { mode: 0o600 })
  }

  /**
   * `env` is added to the daemon's environment (e.g. HOLDFAST_TEST_PAUSE_AT for one start);
   * `prefix` runs it through another command, e.g. `ip netns exec NS` (test/support/lan.ts).
   */
  async startManager (options: DaemonStart = {}): Promise<void> {
    await this.startDaemon('manager', 'manager', this.managerConfig, this.managerSocket, options)
  }

  async startAgent (agent: AgentHandle, options: DaemonStart = {}): Promise<void> {
    await this.startDaemon(`agent-${agent.name}`, 'agent', agent.config, agent.socket, options)
  }

  process (key: string): ChildProcess | undefined { return this.children.get(key) }

  async startDaemon (key: string, role: 'manager' | 'agent' | 'node', config: string, socket: string, options: DaemonStart = {}): Promise<void> {
    mkdirSync(this.root, { recursive: true })
    const log = createWriteStream(join(this.root, `${key}.log`), { flags: 'a' })
    const argv = [...pinPrefix(options.cpus), ...(options.prefix ?? []), process.execPath, HOLDFAST_BIN, role, '--config', config, ...(options.args ?? [])]
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...options.env } })
    child.stdout?.pipe(log)
    child.stderr?.pipe(log)
    this.children.set(key, child)
    let exited = false
    child.on('exit', () => { exited = true })
    // Bounded wait for the admin socket: the daemon is up when it answers.
    for (let i = 0; i < 300; i++) {
      if (exited) throw new Error(`${key} exited during start; see ${join(this.root, `${key}.log`)}:\n${readLog(join(this.root, `${key}.log`))}`)
      if (existsSync(socket)) {
        const r = await runCli(['status', '--socket', socket, '--role', role, '--json'], { timeoutMs: 10_000, prefix: pinPrefix(options.cpus) })
        if (r.code === 0) return
      }
      await delay(100)
    }
    throw new Error(`${key} did not start within 30 s`)
  }

  async stop (key: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const child = this.children.get(key)
    if (child === undefined) return
    this.children.delete(key)
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise<void>(resolve => child.once('exit', () => { resolve() }))
    child.kill(signal)
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
    await exited
    clearTimeout(timer)
  }

  async stopAll (): Promise<void> {
    await Promise.all([...this.children.keys()].map(async k => await this.stop(k)))
  }

  log (key: string): string { return readLog(join(this.root, `${key}.log`)) }

  /** The file a daemon's stdout and stderr go to (appended to across restarts). */
  logFile (key: string): string { return join(this.root, `${key}.log`) }
}

function readLog (file: string): string {
  try { return readFileSync(file, 'utf8').split('\n').slice(-40).join('\n') } catch { return '(no log)' }
}
