/**
 * The LAN test bed: network namespaces as hosts on one switched segment.
 *
 *   hf-<runid>-br   holds a Linux bridge `br0` (the switch); nothing else
 *   hf-<runid>-<h>  one per host: `eth0` (a veth whose peer `p<n>` is a port of br0),
 *                   198.18.0.<n>/24, and a route for 224.0.0.0/4 on eth0 for mDNS
 *
 * Nothing is added to the machine's own namespace but the namespaces themselves, and no host
 * has a route anywhere but 198.18.0.0/24 and multicast (the network rule). Everything is named
 * with a run id holding our pid, removed by name in `destroy`, on SIGINT/SIGTERM and at exit,
 * and a later run sweeps the namespaces of a run whose pid is gone (a killed run).
 *
 * Needs real root (`ip netns add` mounts under /run/netns): the runner starts this layer outside
 * its `unshare -rn` namespace (scripts/run-tests.ts).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { setTimeout as delay } from 'node:timers/promises'

export const LAN_PREFIX = 'hf-'
export const LAN_SUBNET = '198.18.0'
const RUN_ID_RE = /^hf-p(\d+)r[0-9a-f]+-/
/** Every `ip`/`tc` call is bounded: a wedged command must not hang the suite. */
const IP_TIMEOUT_MS = 10_000

export interface LanHost {
  name: string
  ns: string
  /** The host's interface (inside `ns`). */
  dev: string
  /** Its bridge port (inside the bridge namespace). */
  port: string
  ip: string
}

export interface Shape {
  /** Bits per second. */
  rate: number
  /** tbf (one rate) or htb (a class per host, the shape the budget tests reuse). */
  qdisc?: 'tbf' | 'htb'
  /**
   * egress: what the host sends (an agent's fetch replies); ingress: what it receives (shaped
   * on its bridge port's egress, since a qdisc only shapes what leaves an interface).
   */
  direction?: 'egress' | 'ingress'
}

export interface ByteSample { at: number, txBytes: number, rxBytes: number, txPackets: number }

/** Runs `ip`, `tc` or another short command, bounded; throws with its stderr when it fails. */
export function sh (argv: string[], options: { allowFail?: boolean, input?: string } = {}): string {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', timeout: IP_TIMEOUT_MS, input: options.input })
  if ((r.status !== 0 || r.error !== undefined) && options.allowFail !== true) {
    throw new Error(`${argv.join(' ')} failed (${r.error?.message ?? `exit ${String(r.status)}`}): ${r.stderr.trim()}`)
  }
  return r.stdout ?? ''
}

/** Why namespaces cannot be made here, or undefined when they can (probes with a throwaway one). */
export function lanUnavailable (): string | undefined {
  if (process.getuid?.() !== 0) return 'the LAN test bed needs root (ip netns add)'
  const probe = `${LAN_PREFIX}p${process.pid}r0-probe`
  const r = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8', timeout: IP_TIMEOUT_MS })
  if (r.status !== 0) return `ip netns add failed: ${(r.stderr ?? r.error?.message ?? '').trim()}`
  spawnSync('ip', ['netns', 'del', probe], { timeout: IP_TIMEOUT_MS })
  return undefined
}

function namespaces (): string[] {
  return sh(['ip', 'netns', 'list'], { allowFail: true }).split('\n').map(l => l.split(' ')[0]).filter(n => n.startsWith(LAN_PREFIX))
}

function pidAlive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch (err) { return (err as NodeJS.ErrnoException).code === 'EPERM' }
}

/** Kills every process inside a namespace (by pid) and deletes it. Synchronous: usable at exit. */
function removeNamespace (ns: string): void {
  for (const line of sh(['ip', 'netns', 'pids', ns], { allowFail: true }).split('\n')) {
    const pid = Number(line.trim())
    if (Number.isInteger(pid) && pid > 1 && pid !== process.pid) { try { process.kill(pid, 'SIGKILL') } catch {} }
  }
  sh(['ip', 'netns', 'del', ns], { allowFail: true })
}

/** Removes namespaces left by an earlier run that was killed before its cleanup ran. */
export function sweepStaleNamespaces (): string[] {
  const swept: string[] = []
  for (const ns of namespaces()) {
    const m = RUN_ID_RE.exec(ns)
    if (m === null) continue
    const pid = Number(m[1])
    if (pid === process.pid || pidAlive(pid)) continue
    removeNamespace(ns)
    swept.push(ns)
  }
  return swept
}

const liveBeds = new Set<LanBed>()
let handlersInstalled = false
function installHandlers (): void {
  if (handlersInstalled) return
  handlersInstalled = true
  const cleanAll = (): void => { for (const bed of liveBeds) bed.destroySync() }
  process.on('exit', cleanAll)
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      cleanAll()
      process.exit(sig === 'SIGINT' ? 130 : 143)
    })
  }
}

export class LanBed {
  readonly runId: string
  readonly bridgeNs: string
  private readonly hosts = new Map<string, LanHost>()
  private readonly children = new Set<ChildProcess>()
  private nextOctet = 1
  private destroyed = false

  constructor () {
    // The pid in the name lets a later run tell a dead run's namespaces from a live one's.
    this.runId = `p${process.pid}r${randomBytes(2).toString('hex')}`
    this.bridgeNs = `${LAN_PREFIX}${this.runId}-br`
  }

  /** Sweeps stale namespaces, then makes the switch. */
  static create (): LanBed {
    sweepStaleNamespaces()
    const bed = new LanBed()
    installHandlers()
    liveBeds.add(bed)
    sh(['ip', 'netns', 'add', bed.bridgeNs])
    sh(['ip', '-n', bed.bridgeNs, 'link', 'add', 'br0', 'type', 'bridge'])
    // no STP or forwarding delay: ports forward at once, as on a small office switch
    sh(['ip', '-n', bed.bridgeNs, 'link', 'set', 'br0', 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0'])
    sh(['ip', '-n', bed.bridgeNs, 'link', 'set', 'br0', 'up'])
    return bed
  }

  host (name: string): LanHost {
    const h = this.hosts.get(name)
    if (h === undefined) throw new Error(`no host ${name} on this bed`)
    return h
  }

  allHosts (): LanHost[] { return [...this.hosts.values()] }

  /** A new host on the segment, with the next free 198.18.0.x address. */
  addHost (name: string): LanHost {
    if (!/^[a-z0-9]{1,12}$/.test(name)) throw new Error(`host name ${name}: 1-12 of [a-z0-9]`)
    const n = this.nextOctet++
    if (n > 250) throw new Error('the bed holds at most 250 hosts')
    const host: LanHost = { name, ns: `${LAN_PREFIX}${this.runId}-${name}`, dev: 'eth0', port: `p${n}`, ip: `${LAN_SUBNET}.${n}` }
    sh(['ip', 'netns', 'add', host.ns])
    this.hosts.set(name, host)
    // both ends are made inside our namespaces: the root namespace never holds the veth
    sh(['ip', '-n', host.ns, 'link', 'add', host.dev, 'type', 'veth', 'peer', 'name', host.port, 'netns', this.bridgeNs])
    sh(['ip', '-n', this.bridgeNs, 'link', 'set', host.port, 'master', 'br0'])
    sh(['ip', '-n', this.bridgeNs, 'link', 'set', host.port, 'up'])
    sh(['ip', '-n', host.ns, 'link', 'set', 'lo', 'up'])
    sh(['ip', '-n', host.ns, 'addr', 'add', `${host.ip}/24`, 'dev', host.dev])
    this.linkUp(host)
    return host
  }

  /** Brings a host's link up and routes multicast on it (the route goes with the link). */
  linkUp (host: LanHost): void {
    sh(['ip', '-n', host.ns, 'link', 'set', host.dev, 'up', 'multicast', 'on'])
    sh(['ip', '-n', host.ns, 'route', 'replace', '224.0.0.0/4', 'dev', host.dev])
  }

  /** Cuts a host's link, as a pulled cable would. */
  linkDown (host: LanHost): void {
    sh(['ip', '-n', host.ns, 'link', 'set', host.dev, 'down'])
  }

  /** Shapes a host's link to `rate` bits/s in one direction (replacing an earlier shape). */
  shape (host: LanHost, shape: Shape): void {
    const [ns, dev] = (shape.direction ?? 'egress') === 'egress' ? [host.ns, host.dev] : [this.bridgeNs, host.port]
    const rate = `${Math.round(shape.rate)}bit`
    // a burst of ~10 ms of traffic (at least 2 full frames) keeps the rate smooth at any speed
    const burst = Math.max(3200, Math.round(shape.rate / 8 / 100))
    if ((shape.qdisc ?? 'tbf') === 'tbf') {
      sh(['ip', 'netns', 'exec', ns, 'tc', 'qdisc', 'replace', 'dev', dev, 'root', 'tbf', 'rate', rate, 'burst', String(burst), 'latency', '200ms'])
    } else {
      sh(['ip', 'netns', 'exec', ns, 'tc', 'qdisc', 'del', 'dev', dev, 'root'], { allowFail: true })
      sh(['ip', 'netns', 'exec', ns, 'tc', 'qdisc', 'add', 'dev', dev, 'root', 'handle', '1:', 'htb', 'default', '10'])
      sh(['ip', 'netns', 'exec', ns, 'tc', 'class', 'add', 'dev', dev, 'parent', '1:', 'classid', '1:10', 'htb', 'rate', rate, 'ceil', rate, 'burst', String(burst)])
    }
  }

  unshape (host: LanHost, direction: Shape['direction'] = 'egress'): void {
    const [ns, dev] = direction === 'egress' ? [host.ns, host.dev] : [this.bridgeNs, host.port]
    sh(['ip', 'netns', 'exec', ns, 'tc', 'qdisc', 'del', 'dev', dev, 'root'], { allowFail: true })
  }

  /** Bytes the host's interface has sent and received (kernel counters). */
  counters (host: LanHost): { txBytes: number, rxBytes: number, txPackets: number } {
    const out = JSON.parse(sh(['ip', '-n', host.ns, '-s', '-j', 'link', 'show', 'dev', host.dev])) as Array<{ stats64?: { rx: { bytes: number }, tx: { bytes: number, packets: number } } }>
    const s = out[0]?.stats64
    if (s === undefined) throw new Error(`no counters for ${host.ns}/${host.dev}`)
    // packets too: a rate of TCP payload is the bytes less each packet's headers
    return { txBytes: s.tx.bytes, rxBytes: s.rx.bytes, txPackets: s.tx.packets }
  }

  /**
   * The bridge side of every host's link at once, by host name, in one `ip` call: what each
   * port received is what its host sent onto the segment (after any egress shaping).
   */
  portCounters (): Map<string, { rxBytes: number, rxPackets: number, at: number }> {
    const out = JSON.parse(sh(['ip', '-n', this.bridgeNs, '-s', '-j', 'link', 'show'])) as Array<{ ifname: string, stats64?: { rx: { bytes: number, packets: number } } }>
    const at = Date.now()
    const byPort = new Map(out.map(l => [l.ifname.split('@')[0], l.stats64]))
    const result = new Map<string, { rxBytes: number, rxPackets: number, at: number }>()
    for (const host of this.hosts.values()) {
      const s = byPort.get(host.port)
      if (s !== undefined) result.set(host.name, { rxBytes: s.rx.bytes, rxPackets: s.rx.packets, at })
    }
    return result
  }

  /** Samples a host's counters every `everyMs` for `forMs` (for rates over time). */
  async sampleBytes (host: LanHost, forMs: number, everyMs = 250, signal?: AbortSignal): Promise<ByteSample[]> {
    const samples: ByteSample[] = []
    const end = Date.now() + forMs
    for (let i = 0; i <= Math.ceil(forMs / everyMs) && signal?.aborted !== true; i++) {
      samples.push({ at: Date.now(), ...this.counters(host) })
      if (Date.now() >= end) break
      await delay(Math.min(everyMs, Math.max(0, end - Date.now())))
    }
    return samples
  }

  /** The argv that runs `argv` inside a host. */
  wrap (host: LanHost, argv: string[]): string[] { return ['ip', 'netns', 'exec', host.ns, ...argv] }

  /** Starts a process inside a host, tracked so `destroy` kills it (by pid). */
  spawn (host: LanHost, argv: string[]): ChildProcess {
    const w = this.wrap(host, argv)
    // `ip netns exec` execs the program itself (no fork), so the child's pid is the program's
    const child = spawn(w[0], w.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] })
    this.children.add(child)
    child.on('exit', () => { this.children.delete(child) })
    return child
  }

  /** Runs a command inside a host to completion, bounded by `timeoutMs`. */
  async run (host: LanHost, argv: string[], timeoutMs = 30_000): Promise<{ code: number, stdout: string, stderr: string }> {
    const child = this.spawn(host, argv)
    let stdout = ''
    let stderr = ''
    child.stdout?.setEncoding('utf8').on('data', (d: string) => { stdout += d })
    child.stderr?.setEncoding('utf8').on('data', (d: string) => { stderr += d })
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${argv.join(' ')} in ${host.name} took longer than ${timeoutMs} ms`)) }, timeoutMs)
      child.on('error', err => { clearTimeout(timer); reject(err) })
      child.on('close', code => { clearTimeout(timer); resolve({ code: code ?? 1, stdout, stderr }) })
    })
  }

  /** Kills what runs in the bed (SIGTERM, then SIGKILL) and removes its namespaces. */
  async destroy (): Promise<void> {
    if (this.destroyed) return
    const waits = [...this.children].map(async child => {
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = new Promise<void>(resolve => child.once('exit', () => { resolve() }))
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000)
      await exited
      clearTimeout(timer)
    })
    await Promise.all(waits)
    this.destroySync()
  }

  /** The part of `destroy` that can run in an exit or signal handler. */
  destroySync (): void {
    if (this.destroyed) return
    this.destroyed = true
    liveBeds.delete(this)
    for (const child of this.children) { try { child.kill('SIGKILL') } catch {} }
    for (const host of this.hosts.values()) removeNamespace(host.ns)
    removeNamespace(this.bridgeNs)
  }
}

/**
 * For the `before` hook of a LAN test: skips (outside CI) or fails (CI=true) when the machine
 * cannot make namespaces.
 */
export function requireLan (ctx: Mocha.Context): void {
  const why = lanUnavailable()
  if (why === undefined) return
  if (process.env.CI === 'true') throw new Error(`CI=true and the LAN test bed cannot run: ${why}`)
  // Reason: namespaces need root; a developer without it still runs the other layers.
  process.stderr.write(`LAN tests skipped: ${why}\n`)
  ctx.skip()
}
