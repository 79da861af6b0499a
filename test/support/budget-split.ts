/**
 * The bandwidth budget measured on the LAN test bed (shared by test/lan/budget.test.ts and
 * bench/budget.ts): one manager and N agents, each agent's link shaped above its share so the
 * budget, not the link, decides; all N pulled at once (backup-now, k = N); the rate each agent
 * sends is read from its bridge port's counters. One agent has less data: when its pull ends,
 * the others' shares rise, and the run records how soon that shows on the wire.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { cliJson, HOLDFAST_BIN } from './fleet.js'
import { seededBytes } from './trees.js'
import type { LanBed } from './lan.js'
import { startLanFleet, type LanFleet } from './lan-fleet.js'
import { until } from './wait.js'

/** Ethernet (14) + IPv4 (20) + TCP with timestamps (32): what each data packet adds to its payload. */
export const PACKET_HEADER_BYTES = 66
const SAMPLE_MS = 250
const FILE_BYTES = 4 * 1024 * 1024

export interface BudgetSplitOptions {
  agents: number
  /** B, bytes per second (manager.bandwidthBytesPerSecond). */
  budget: number
  /** Each agent's egress (tbf), bits per second: above any share it gets. */
  linkBits: number
  /** The window over which the split is measured. */
  windowMs: number
  /** Left out after all pulls run (connection set-up, the first batch). */
  settleMs?: number
  /** How long after a pull ends the others' rates are measured, starting 1 s after the end. */
  rebalanceWindowMs?: number
}

export interface RateFigure { agent: string, bytesPerSecond: number, wireBytesPerSecond: number, share: number, error: number }

export interface BudgetSplitResult {
  budget: number
  agents: number
  windowMs: number
  perPull: RateFigure[]
  total: { bytesPerSecond: number, wireBytesPerSecond: number, error: number }
  /** The short agent's traffic stopped (its pull ended) at this offset from the start of the window. */
  endedAtMs: number
  /** Measured from 1 s after that end, over rebalanceWindowMs. */
  rebalance: { share: number, perPull: RateFigure[], total: number, riseMs: number | undefined }
  logs: () => string
}

interface Sample { at: number, bytes: number, packets: number }

/** Payload rate between two samples: the bytes less each packet's headers, per second. */
function rate (a: Sample, b: Sample): { payload: number, wire: number } {
  const s = (b.at - a.at) / 1000
  return { payload: (b.bytes - a.bytes - PACKET_HEADER_BYTES * (b.packets - a.packets)) / s, wire: (b.bytes - a.bytes) / s }
}

function at (series: Sample[], t: number): Sample {
  // the first sample at or after t (series is in time order)
  const found = series.find(s => s.at >= t)
  if (found === undefined) throw new Error(`no sample at ${t}`)
  return found
}

export async function measureBudgetSplit (bed: LanBed, root: string, options: BudgetSplitOptions): Promise<{ lan: LanFleet, result: BudgetSplitResult }> {
  const n = options.agents
  const settleMs = options.settleMs ?? 3_000
  const rebalanceMs = options.rebalanceWindowMs ?? 2_000
  const share = options.budget / n
  const later = options.budget / (n - 1)
  // The short agent's pull ends ~8 s after the window (at its share: a head start before all
  // pulls run must not end it early); the others' go on well past the rebalance.
  const shortBytes = Math.ceil(share * (settleMs + options.windowMs + 8_000) / 1000)
  const bigBytes = Math.ceil((shortBytes + later * (rebalanceMs + 4_000) / 1000) * 1.5)
  const lan = await startLanFleet(bed, root, {
    agents: n,
    pullInterval: 3600,
    bandwidth: options.budget,
    fill: (folder, i) => {
      const total = i === n - 1 ? shortBytes : bigBytes
      for (let off = 0, f = 0; off < total; off += FILE_BYTES, f++) {
        writeFileSync(join(folder, `f${f}.bin`), seededBytes(`budget-${i}-${f}`, Math.min(FILE_BYTES, total - off)))
      }
    }
  })
  const { fleet, agents } = lan
  // k = N: every agent is pulled at once
  await fleet.stop('manager')
  fleet.patchConfig(fleet.managerConfig, c => { c.manager = { ...(c.manager as object), maxConcurrentPulls: n } })
  await fleet.startManager({ prefix: bed.wrap(lan.manager, []) })
  await until('the manager to find every agent', 60_000, async () => {
    const rows = await cliJson<Array<{ peerId: string, addresses: string[] }>>(['peers', '--socket', fleet.managerSocket])
    return agents.every(a => rows.some(r => r.peerId === a.peerId && r.addresses.length > 0)) ? true : undefined
  })
  await Promise.all(agents.map(async a => await cliJson(['scan-now', '--socket', a.socket], { timeoutMs: 120_000 })))
  for (const a of agents) bed.shape(a.host, { rate: options.linkBits, qdisc: 'tbf' })

  const series = new Map<string, Sample[]>(agents.map(a => [a.name, []]))
  const sample = (): void => {
    const ports = bed.portCounters()
    for (const a of agents) {
      const c = ports.get(a.host.name)
      if (c !== undefined) series.get(a.name)?.push({ at: c.at, bytes: c.rxBytes, packets: c.rxPackets })
    }
  }
  // backup-now from the manager's host; the bed kills it with the rest
  bed.spawn(lan.manager, [process.execPath, HOLDFAST_BIN, 'backup-now', '--socket', fleet.managerSocket, '--expect-peers', String(n), '--json'])
  const short = agents[n - 1].name
  const sending = (name: string, min: number): boolean => {
    const s = series.get(name) as Sample[]
    return s.length >= 2 && rate(s[s.length - 2], s[s.length - 1]).wire > min
  }
  // Bounded sampling loop: until every pull runs, then through the window, the short pull's
  // end and the rebalance window (each phase bounded in time).
  const deadline = Date.now() + 60_000 + settleMs + options.windowMs * 3 + rebalanceMs * 2
  let allAt: number | undefined
  let endedAt: number | undefined
  let quietSince: number | undefined
  for (let i = 0; Date.now() < deadline; i++) {
    sample()
    const now = Date.now()
    if (allAt === undefined) {
      if (agents.every(a => sending(a.name, share * 0.3))) allAt = now
    } else if (endedAt === undefined && now > allAt + settleMs + options.windowMs) {
      // the short pull has ended once its port has been quiet for a second
      if (sending(short, share * 0.05)) quietSince = undefined
      else quietSince ??= (series.get(short) as Sample[]).at(-2)?.at ?? now
      if (quietSince !== undefined && now - quietSince >= 1_000) endedAt = quietSince
    } else if (endedAt !== undefined && now > endedAt + 1_000 + rebalanceMs + SAMPLE_MS) {
      break
    }
    await delay(SAMPLE_MS)
  }
  if (allAt === undefined) throw new Error('the pulls never all ran at once')
  if (endedAt === undefined) throw new Error('the short pull did not end within the bound')
  const from = allAt + settleMs
  const to = from + options.windowMs

  const figure = (name: string, a: number, b: number, expected: number): RateFigure => {
    const s = series.get(name) as Sample[]
    const r = rate(at(s, a), at(s, b))
    return { agent: name, bytesPerSecond: Math.round(r.payload), wireBytesPerSecond: Math.round(r.wire), share: Math.round(expected), error: r.payload / expected - 1 }
  }
  const perPull = agents.map(a => figure(a.name, from, to, share))
  if (endedAt < to) throw new Error(`the short pull ended ${to - endedAt} ms before the window closed (${JSON.stringify(perPull)})`)
  const totalPayload = perPull.reduce((t, f) => t + f.bytesPerSecond, 0)
  const totalWire = perPull.reduce((t, f) => t + f.wireBytesPerSecond, 0)
  const others = agents.slice(0, n - 1)
  const rebalanceFrom = endedAt + 1_000
  const rebalancePer = others.map(a => figure(a.name, rebalanceFrom, rebalanceFrom + rebalanceMs, later))
  // rise time: the first 500 ms after the end over which the others together reach 95 % of B
  let riseMs: number | undefined
  for (let t = endedAt; t + 500 <= endedAt + 1_000 + rebalanceMs; t += SAMPLE_MS) {
    const sum = others.reduce((acc, a) => { const s = series.get(a.name) as Sample[]; return acc + rate(at(s, t), at(s, t + 500)).payload }, 0)
    if (sum >= options.budget * 0.95) { riseMs = t + 500 - endedAt; break }
  }
  return {
    lan,
    result: {
      budget: options.budget,
      agents: n,
      windowMs: options.windowMs,
      perPull,
      total: { bytesPerSecond: totalPayload, wireBytesPerSecond: totalWire, error: totalPayload / options.budget - 1 },
      endedAtMs: endedAt - from,
      rebalance: { share: Math.round(later), perPull: rebalancePer, total: rebalancePer.reduce((t, f) => t + f.bytesPerSecond, 0), riseMs },
      logs: () => ['manager', ...agents.map(a => `agent-${a.name}`)].map(k => `--- ${k} ---\n${fleet.log(k)}`).join('\n')
    }
  }
}
