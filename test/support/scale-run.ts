/**
 * One real manager (the CLI daemon, its own process) against many simulated agents
 * (sim-agents-worker.ts: real libp2p nodes and protocol services, a few processes of many
 * nodes each), found through the manager's static peers. Records how long until every agent's
 * set is committed and acked, the manager's peak RSS and CPU time (from /proc), and how long
 * the `peers` admin call takes while it works. Shared by test/e2e/scale-smoke.test.ts and
 * bench/scale.ts. Loopback only.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createInterface } from 'node:readline'
import { setTimeout as delay } from 'node:timers/promises'
import { TestFleet } from './fleet.js'
import { callManager } from '../../src/admin/api.js'
import type { SimAgentsConfig } from './sim-agents-worker.js'

const WORKER = join(dirname(fileURLToPath(import.meta.url)), 'sim-agents-worker.js')
const CLOCK_TICKS = 100 // USER_HZ on Linux

export interface ScaleOptions {
  agents: number
  processes: number
  files?: number
  fileBytes?: number
  /** Gives up after this long (the bound on the whole run). */
  timeoutMs: number
  maxConcurrentPulls?: number
  /** Extra environment for the manager (e.g. NODE_OPTIONS=--cpu-prof for a profile). */
  managerEnv?: NodeJS.ProcessEnv
}

export interface ProcFigures { vmHwmKiB: number, vmRssKiB: number, cpuMs: number }

export interface ScaleResult {
  agents: number
  processes: number
  backedUp: number
  /** From the manager's start (admin socket answering) to the last agent's ack. */
  allBackedUpMs: number | undefined
  /** Seconds the scheduler had (it ticks at least once a second): the bound on ticks. */
  maxTicks: number | undefined
  startFigures: ProcFigures
  endFigures: ProcFigures
  /** CPU the manager spent visiting them, per visit. */
  cpuMsPerVisit: number | undefined
  peersCallMs: { samples: number, max: number, median: number, p90: number, series: Array<[number, number]> }
  catalogBytes: number
  logs: () => string
}

export function procFigures (pid: number): ProcFigures {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kib = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN)
  // /proc/<pid>/stat: fields after the command's closing paren; utime and stime are 14 and 15
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const ticks = Number(fields[11]) + Number(fields[12])
  return { vmHwmKiB: kib('VmHWM'), vmRssKiB: kib('VmRSS'), cpuMs: ticks * 1000 / CLOCK_TICKS }
}

interface SimNode { name: string, peerId: string, addr: string }

export class ScaleRun {
  readonly fleet: TestFleet
  private readonly workers: ChildProcess[] = []
  private readonly nodes: SimNode[] = []
  private readonly acked = new Set<string>()

  constructor (readonly root: string) { this.fleet = new TestFleet(root) }

  /** Starts the workers' nodes; resolves once every node listens. */
  private async startWorkers (options: ScaleOptions, fleetKey: string): Promise<void> {
    const per = Math.ceil(options.agents / options.processes)
    const ready: Array<Promise<void>> = []
    for (let p = 0, left = options.agents; p < options.processes && left > 0; p++, left -= per) {
      const config: SimAgentsConfig = { fleetKey, managerPeerId: this.fleet.managerPeerId, count: Math.min(per, left), prefix: `sim${p}-`, files: options.files ?? 3, fileBytes: options.fileBytes ?? 16 * 1024, listen: '/ip4/127.0.0.1/tcp/0' }
      const child = spawn(process.execPath, [WORKER, JSON.stringify(config)], { stdio: ['pipe', 'pipe', 'inherit'] })
      this.workers.push(child)
      ready.push(new Promise((resolve, reject) => {
        const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
        lines.on('line', line => {
          const msg = JSON.parse(line) as { ready?: boolean, acked?: string } & Partial<SimNode>
          if (msg.ready === true) resolve()
          else if (msg.acked !== undefined) this.acked.add(msg.acked)
          else if (msg.peerId !== undefined && msg.addr !== undefined && msg.name !== undefined) this.nodes.push({ name: msg.name, peerId: msg.peerId, addr: msg.addr })
        })
        child.on('exit', code => { reject(new Error(`sim agent worker ${p} exited ${String(code)} before it was ready`)) })
      }))
    }
    const bound = delay(120_000).then(() => { throw new Error('sim agents did not start within 120 s') })
    await Promise.race([Promise.all(ready), bound])
  }

  async run (options: ScaleOptions): Promise<ScaleResult> {
    const fleet = this.fleet
    await fleet.init({ mdns: false, pullInterval: 3600, bandwidth: 1_000_000_000 })
    const fleetKey = (JSON.parse(readFileSync(fleet.managerConfig, 'utf8')) as { fleetKey: string }).fleetKey
    await this.startWorkers(options, fleetKey)
    const peers = this.nodes.map(n => n.addr.includes('/p2p/') ? n.addr : `${n.addr}/p2p/${n.peerId}`)
    fleet.patchConfig(fleet.managerConfig, c => {
      c.staticPeers = peers
      if (options.maxConcurrentPulls !== undefined) c.manager = { ...(c.manager as object), maxConcurrentPulls: options.maxConcurrentPulls }
    })
    // the simulated agents are members: approved as an admin would before the manager starts
    fleet.approveOffline(this.nodes.map(n => n.peerId))
    await fleet.startManager({ env: options.managerEnv })
    const pid = fleet.process('manager')?.pid as number
    const started = Date.now()
    const startFigures = procFigures(pid)
    const peersCalls: number[] = []
    const series: Array<[number, number]> = []
    let allBackedUpMs: number | undefined
    // bounded: every 250 ms until all are acked or the time is up; `peers` timed every second
    for (let i = 0; Date.now() - started < options.timeoutMs; i++) {
      if (this.acked.size >= options.agents) { allBackedUpMs = Date.now() - started; break }
      if (i % 4 === 0) {
        const t0 = performance.now()
        await callManager(fleet.managerSocket, 'peers', {}, { timeoutMs: 10_000 })
        peersCalls.push(performance.now() - t0)
        series.push([Date.now() - started, Math.round(performance.now() - t0)])
      }
      await delay(250)
    }
    const endFigures = procFigures(pid)
    // one more `peers` with every agent in the table and the catalog full
    const t0 = performance.now()
    await callManager(fleet.managerSocket, 'peers', {}, { timeoutMs: 10_000 })
    peersCalls.push(performance.now() - t0)
    series.push([Date.now() - started, Math.round(performance.now() - t0)])
    const sorted = [...peersCalls].sort((a, b) => a - b)
    let catalogBytes = 0
    for (const f of ['catalog.db', 'catalog.db-wal']) { try { catalogBytes += readFileSync(join(fleet.managerDir, f)).byteLength } catch {} }
    return {
      agents: options.agents,
      processes: this.workers.length,
      backedUp: this.acked.size,
      allBackedUpMs,
      maxTicks: allBackedUpMs === undefined ? undefined : Math.ceil(allBackedUpMs / 1000),
      startFigures,
      endFigures,
      cpuMsPerVisit: this.acked.size === 0 ? undefined : (endFigures.cpuMs - startFigures.cpuMs) / this.acked.size,
      peersCallMs: { samples: sorted.length, max: Math.round(sorted.at(-1) ?? 0), median: Math.round(sorted[Math.floor(sorted.length / 2)] ?? 0), p90: Math.round(sorted[Math.floor(sorted.length * 0.9)] ?? 0), series },
      catalogBytes,
      logs: () => fleet.log('manager')
    }
  }

  /** Stops the manager and every worker (by pid: SIGTERM, then SIGKILL after a bound). */
  async stop (): Promise<void> {
    await this.fleet.stopAll()
    await Promise.all(this.workers.map(async w => {
      if (w.exitCode !== null || w.signalCode !== null) return
      const exited = new Promise<void>(resolve => w.once('exit', () => { resolve() }))
      w.kill('SIGTERM')
      const timer = setTimeout(() => w.kill('SIGKILL'), 5_000)
      await exited
      clearTimeout(timer)
    }))
  }
}
